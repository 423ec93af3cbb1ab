"""A tiny x0-form energy model learns the digits as well as a tiny x0 score model trained the same way, and the
ε-like form does not (so the comparison can fail): held-out x0-MSE at high noise after the same steps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from bitcompose.data.small_images import small_dataset
from bitcompose.experiments.image_models import small_model_config
from bitcompose.images.config import DataConfig, TrainConfig
from bitcompose.images.model import load_model
from bitcompose.images.trainer import ImageTrainer

STEPS = 100


def _config(prediction: str, energy: str) -> TrainConfig:
    base = small_model_config("tiny", DataConfig(name="digits", conditional=True), "score", STEPS, 4)
    model = dataclasses.replace(
        base.model, prediction=prediction, energy=energy, base_channels=16, per_head_dim=16
    )
    optim = dataclasses.replace(
        base.optim, ema_decay=None, warmup_steps=20
    )  # a short run: its online weights
    return dataclasses.replace(
        base, model=model, optim=optim, self_cond_prob=0.5, log_every=10**6, checkpoint_every=0
    )


@torch.no_grad()
def _held_out_mse(run: Path, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """The clipped x0 estimate's MSE at t = 0.5 and 0.85 (same noise for every model; predicting 0 scores 1)."""
    loaded = load_model(run, ema=False)
    den = loaded.denoiser.eval()
    x0 = loaded.codec.encode_images(images)
    out = []
    for t_value in (0.5, 0.85):
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(100 * t_value)))
        t = torch.full((len(x0),), t_value)
        alpha, sigma = den.schedule.alpha(t)[:, None, None, None], den.schedule.sigma(t)[:, None, None, None]
        est = den(alpha * x0 + sigma * noise, t, torch.zeros_like(x0), labels)
        out.append(float((est.clamp(-den.scale, den.scale) - x0).pow(2).mean()))
    return out


@pytest.mark.slow
def test_the_x0_form_energy_learns_like_the_x0_model_and_the_eps_form_does_not(tmp_path: Path) -> None:
    train, held_out = small_dataset("digits").split(0.1, 0)
    assert held_out.labels is not None
    mse = {}
    for prediction, energy in (("x0", "x0"), ("energy", "x0"), ("energy", "diff")):
        run = tmp_path / f"{prediction}-{energy}"
        ImageTrainer(_config(prediction, energy), run, dataset=train, progress=False).train()
        mse[prediction, energy] = _held_out_mse(run, held_out.images, held_out.labels)
    score, energy_x0, energy_diff = mse["x0", "x0"], mse["energy", "x0"], mse["energy", "diff"]
    assert max(score) < 0.8  # the x0 model learned something (predicting 0 scores 1)
    for e, s in zip(energy_x0, score, strict=True):
        assert e <= 1.15 * s, (energy_x0, score)
    assert energy_diff[1] > 1.5 * score[1], (energy_diff, score)  # the ε-like form fails at high noise
