from __future__ import annotations

import json

import pytest

from bitcompose.images.config import PRESET_NAMES, TrainConfig, preset


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_round_trip_json(name: str) -> None:
    cfg = preset(name)
    assert cfg.preset == name
    again = TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


def test_paper_settings() -> None:
    c = preset("cifar10")
    assert (c.batch_size, c.optim.lr, c.optim.weight_decay, c.optim.warmup_steps) == (128, 1e-4, 0.0, 10_000)
    assert (c.optim.ema_decay, c.steps, c.data.random_flip, c.data.conditional) == (
        0.9999,
        1_500_000,
        True,
        True,
    )
    assert (c.model.base_channels, c.model.channel_mults, c.model.num_res_blocks) == (256, (1, 1, 1), 3)
    assert c.model.attn_resolutions == (16, 8)
    i = preset("imagenet64")
    assert (i.batch_size, i.optim.lr, i.steps, i.optim.ema_decay, i.data.random_flip) == (
        1024,
        2e-4,
        500_000,
        0.9999,
        True,
    )
    assert (i.model.base_channels, i.model.channel_mults) == (192, (1, 2, 3, 4))


def test_overrides_are_typed() -> None:
    cfg = preset("digits").with_overrides(
        [
            "optim.lr=3e-4",
            "model.encoding=gray",
            "model.channel_mults=1,2,2",
            "model.attn_resolutions=()",
            "optim.betas=(0.9, 0.99)",
            "data.levels=8",
            "data.random_flip=true",
            "steps=7",
        ],
    )
    assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.model.encoding == "gray"
    assert cfg.model.channel_mults == (1, 2, 2)
    assert cfg.model.attn_resolutions == ()
    assert cfg.optim.betas == (0.9, 0.99)
    assert cfg.data.levels == 8 and cfg.data.random_flip is True and cfg.steps == 7
    assert cfg.with_overrides(["data.levels=none"]).data.levels is None
    # Untouched fields keep their values.
    assert cfg.batch_size == preset("digits").batch_size


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'"),
        ("foo=1", "unknown config key 'foo'"),
        ("optim.lr.x=1", "optim.lr is a value"),
        ("optim=1", "group of settings"),
        ("optim.lr=abc", "expected a number"),
        ("steps=1.5", "expected an integer"),
        ("compile=maybe", "expected true or false"),
        ("optim.betas=0.9", "expected 2"),
        ("model.encoding=utf8", "model.encoding must be one of"),
        ("optim.ema_decay=1.0", "ema_decay"),
        ("steps", "key=value"),
        ("cond_drop_prob=0.1", None),
    ],
)
def test_bad_overrides(override: str, message: str | None) -> None:
    if message is None:  # valid for the conditional digits preset
        assert preset("digits").with_overrides([override]).cond_drop_prob == 0.1
        return
    with pytest.raises(ValueError, match=message):
        preset("digits").with_overrides([override])


def test_cross_field_checks_and_unknown_preset() -> None:
    with pytest.raises(ValueError, match="conditional"):
        preset("digits").with_overrides(["data.conditional=false", "cond_drop_prob=0.2"])
    with pytest.raises(ValueError, match="self_condition"):
        preset("digits").with_overrides(["model.self_condition=false"])
    assert (
        preset("digits").with_overrides(["model.self_condition=false", "self_cond_prob=0"]).self_cond_prob
        == 0
    )
    with pytest.raises(ValueError, match="unknown preset 'cifar100'"):
        preset("cifar100")
    with pytest.raises(ValueError, match="unknown config key"):
        TrainConfig.from_dict({"optim": {"lr": 1e-3, "momentum": 0.9}})
    with pytest.raises(ValueError, match="must be a number"):
        TrainConfig.from_dict({"optim": {"lr": "fast"}})


def test_custom_is_sized_for_a_small_data_set() -> None:
    """64 images of 12×12 get a ≈ 0.5M-parameter U-Net at batch 32, not the 6M "small" one at batch 64."""
    from bitcompose.images.config import fit_to_data, preset
    from bitcompose.images.model import DataSpec, build_codec, build_unet
    from bitcompose.nets.unet import count_parameters

    base = preset("custom")
    small, notes = fit_to_data(
        base, channels=1, image_size=12, labelled=False, num_images=64, size_model=True
    )
    big, _ = fit_to_data(base, channels=1, image_size=12, labelled=False, num_images=5000, size_model=True)
    kept, _ = fit_to_data(base, channels=1, image_size=12, labelled=False, num_images=64, size_model=False)
    assert small.batch_size == 32 and small.model.base_channels == 32 and small.model.num_res_blocks == 1
    assert any("64 images: a small U-Net" in n for n in notes)
    assert big.model == kept.model and big.batch_size == base.batch_size  # enough data, or model.* given
    spec = DataSpec(channels=1, image_size=12, num_values=256, num_classes=0, name="mine")

    def params(config: object) -> int:
        codec = build_codec(config.model, 256)  # type: ignore[attr-defined]
        return count_parameters(build_unet(config.model, spec, codec))  # type: ignore[attr-defined]

    assert params(small) < 1_000_000 < 5_000_000 < params(kept)
