from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from _train_tiny import tiny_config, tiny_dataset
from bitcompose.figures.grids import PAD_VALUE, make_grid, save_grid
from bitcompose.images.evaluate import balanced_labels, generate
from bitcompose.images.model import load_model
from bitcompose.images.trainer import ImageTrainer


def test_balanced_labels_every_prefix_is_balanced() -> None:
    labels = balanced_labels(25, 10)
    assert labels.tolist() == list(range(10)) * 2 + [0, 1, 2, 3, 4]
    for m in (10, 20):
        assert torch.bincount(labels[:m], minlength=10).tolist() == [m // 10] * 10


def test_generate_is_deterministic_and_checks_labels(tmp_path: Path) -> None:
    ImageTrainer(tiny_config(steps=1), tmp_path / "r", dataset=tiny_dataset(), progress=False).train()
    model = load_model(tmp_path / "r")
    two = dataclasses.replace(model.config.sample, steps=2)
    a = generate(model, 7, two, seed=3, batch_size=4, progress=False)
    b = generate(model, 7, two, seed=3, batch_size=4, progress=False)
    c = generate(model, 7, two, seed=4, batch_size=4, progress=False)
    assert a.images.shape == (7, 1, 4, 4) and a.images.dtype == torch.long
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.labels is not None and a.labels.tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert a.settings["steps"] == 2 and a.settings["sampler"] == "ddim" and a.settings["ema"] is True
    assert 0.0 <= a.invalid_fraction <= 1.0
    with pytest.raises(ValueError, match="lie in 0..2"):
        generate(model, 2, dataclasses.replace(two, steps=1), labels=torch.tensor([0, 3]), progress=False)
    with pytest.raises(ValueError, match=">= 1"):
        generate(model, 0, dataclasses.replace(two, steps=1), progress=False)


def test_grid_layout_and_levels(tmp_path: Path) -> None:
    images = torch.tensor([0, 1, 2, 3]).reshape(4, 1, 1, 1)  # 4 one-pixel images, K = 4
    grid = make_grid(images, nrow=3, num_values=4, padding=1)
    assert grid.shape == (5, 7) and grid.dtype.name == "uint8"
    assert [grid[1, 1], grid[1, 3], grid[1, 5], grid[3, 1]] == [0, 85, 170, 255]
    assert grid[3, 3] == PAD_VALUE and (grid[0] == PAD_VALUE).all()  # empty cell and padding: mid-grey,
    assert 0 < PAD_VALUE < 255  # apart from a black or white background
    two = torch.tensor([[0, 3], [3, 0]]).reshape(2, 2, 1, 1)  # 2 images with 2 channels: shown side by side
    assert make_grid(two, nrow=2, num_values=4, padding=1).shape == (3, 7)
    path = save_grid(images, tmp_path / "g" / "x.png", nrow=2, num_values=4, upscale=3)
    from PIL import Image

    assert Image.open(path).size == (3 * 5, 3 * 5)
    with pytest.raises(ValueError, match="0..3"):
        make_grid(images + 1, nrow=2, num_values=4)
    with pytest.raises(ValueError, match="integer"):
        make_grid(images.float(), nrow=2, num_values=4)
