"""Tests of the paper-style U-Net (bitcompose.nets)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bitcompose.nets import UNet, UNetConfig, count_parameters, unet_config
from bitcompose.nets.embeddings import NoiseLevelEmbedding, sinusoidal_embedding


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _inputs(cfg: UNetConfig, batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    x = torch.randn(batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    gamma = torch.rand(batch, generator=g)
    return x, gamma


def _randomize_output_conv(net: UNet, seed: int = 1) -> None:
    """Replace the near-zero output conv by O(1) weights so that the output depends visibly on the inputs."""
    g = _gen(seed)
    with torch.no_grad():
        net.conv_out.weight.copy_(torch.randn(net.conv_out.weight.shape, generator=g) * 0.1)


# ------------------------------------------------------------------------------------------- forward/backward


@pytest.mark.parametrize("self_condition", [True, False])
def test_tiny_forward_backward_shapes_and_gradients(self_condition: bool) -> None:
    torch.manual_seed(0)
    cfg = unet_config("tiny", self_condition=self_condition)
    assert cfg.in_channels == (2 * cfg.data_channels if self_condition else cfg.data_channels)
    net = UNet(cfg)
    assert net.conv_in.in_channels == cfg.in_channels
    x, gamma = _inputs(cfg)
    out = net(x, gamma, None)
    assert out.shape == (3, cfg.data_channels, cfg.image_size, cfg.image_size)
    loss = (out - torch.ones_like(out)).pow(2).mean()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # The near-zero (not exactly zero) output init lets the gradient reach the first layers from step one.
    assert net.conv_in.weight.grad is not None and net.conv_in.weight.grad.abs().sum() > 0
    assert net.embedding.linear1.weight.grad is not None and net.embedding.linear1.weight.grad.abs().sum() > 0


def test_initial_output_is_near_zero() -> None:
    torch.manual_seed(0)
    cfg = unet_config("tiny", num_classes=10)
    net = UNet(cfg)
    x, gamma = _inputs(cfg, batch=4)
    out = net(x * 3.0, gamma, torch.tensor([0, 3, -1, 9]))
    assert out.abs().max() < 1e-3
    assert out.abs().max() > 0  # near zero, not exactly zero


def test_class_labels_null_class_and_none() -> None:
    torch.manual_seed(0)
    cfg = unet_config("tiny", num_classes=10)
    net = UNet(cfg).eval()
    _randomize_output_conv(net)
    x, gamma = _inputs(cfg, batch=4)
    labels = torch.tensor([0, 3, -1, 9])
    out = net(x, gamma, labels)
    assert out.shape == (4, cfg.data_channels, 8, 8)
    # None means "null class" for every example, exactly like labels of -1.
    out_none = net(x, gamma, None)
    out_null = net(x, gamma, torch.full((4,), -1))
    torch.testing.assert_close(out_none, out_null, rtol=0, atol=0)
    # Example 2 has label -1 in both calls: identical; the labelled examples differ from the null class.
    torch.testing.assert_close(out[2], out_null[2])
    for i in (0, 1, 3):
        assert not torch.allclose(out[i], out_null[i], atol=1e-6)
    # Gradients reach the class table: rows used get a gradient, unused rows get none.
    net.zero_grad()
    net(x, gamma, labels).sum().backward()
    emb = net.embedding.class_embedding
    assert emb is not None and emb.weight.grad is not None
    row_norms = emb.weight.grad.abs().sum(dim=1)
    used = {0, 3, 9, 10}  # 10 = null row
    for r in range(11):
        assert (row_norms[r] > 0) == (r in used), r


def test_gamma_conditioning_and_scalar_gamma() -> None:
    torch.manual_seed(0)
    cfg = unet_config("tiny")
    net = UNet(cfg).eval()
    _randomize_output_conv(net)
    x, _ = _inputs(cfg, batch=2)
    out_a = net(x, torch.tensor([0.2, 0.2]))
    out_b = net(x, torch.tensor(0.2))  # scalar broadcast
    torch.testing.assert_close(out_a, out_b)
    out_c = net(x, torch.tensor([0.9, 0.9]))
    assert not torch.allclose(out_a, out_c, atol=1e-6)
    with pytest.raises(ValueError, match="gamma"):
        net(x, torch.rand(3))


def test_input_shape_errors() -> None:
    cfg = unet_config("tiny")
    net = UNet(cfg)
    with pytest.raises(ValueError, match="self_condition"):
        net(torch.zeros(2, cfg.data_channels, 8, 8), torch.rand(2))  # forgot the estimate
    with pytest.raises(ValueError, match="x_in"):
        net(torch.zeros(2, cfg.in_channels, 16, 16), torch.rand(2))


def test_28_pixel_images_with_three_stages() -> None:
    torch.manual_seed(0)
    cfg = unet_config("small", base_channels=32, num_res_blocks=1)
    assert cfg.resolutions == (28, 14, 7)
    assert cfg.attn_resolutions == (7,)
    net = UNet(cfg)
    x, gamma = _inputs(cfg, batch=1)
    assert net(x, gamma).shape == (1, 8, 28, 28)
    assert unet_config("small", image_size=32).attn_resolutions == (8,)
    with pytest.raises(ValueError, match="divisible"):
        unet_config("small", image_size=30)


# ------------------------------------------------------------------------------------------- parameter counts


def _meta_count(cfg: UNetConfig) -> int:
    with torch.device("meta"):
        return count_parameters(UNet(cfg))


def test_paper_parameter_counts_on_meta_device() -> None:
    n_cifar = _meta_count(unet_config("cifar10"))
    n_imnet = _meta_count(unet_config("imagenet64"))
    assert abs(n_cifar - 51e6) / 51e6 < 0.15
    assert abs(n_imnet - 240e6) / 240e6 < 0.15
    # Golden values of this architecture (report: 52.0M and 247.2M).
    assert n_cifar == 52_016_920
    assert n_imnet == 247_189_848


def test_count_parameters_closed_form() -> None:
    assert count_parameters(torch.nn.Linear(3, 4)) == 16
    # The class table adds (num_classes + 1) rows of width 4·base_channels.
    cfg = unet_config("tiny")
    diff = _meta_count(unet_config("tiny", num_classes=10)) - _meta_count(cfg)
    assert diff == 11 * 4 * cfg.base_channels
    # Self-conditioning only widens conv_in (3×3 kernels).
    diff = _meta_count(cfg) - _meta_count(unet_config("tiny", self_condition=False))
    assert diff == cfg.data_channels * cfg.base_channels * 9
    assert 2e5 < _meta_count(cfg) < 1e6


# ------------------------------------------------------------------------------------------- softmax head


def _softmax_cfg(groups: int, k: int, nb: int) -> UNetConfig:
    return unet_config(
        "tiny", data_channels=groups * nb, output_head="softmax", softmax_groups=groups, softmax_num_values=k
    )


def test_softmax_head_hand_checked_case() -> None:
    table = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])  # K=4 codes of 2 bits
    net = UNet(_softmax_cfg(1, 4, 2), code_table=table).eval()
    with torch.no_grad():
        net.conv_out.weight.zero_()
        net.conv_out.bias.copy_(torch.log(torch.tensor([1.0, 2.0, 3.0, 4.0])))  # probs = [.1, .2, .3, .4]
    x, gamma = _inputs(net.config, batch=2)
    out = net(x, gamma)
    assert out.shape == (2, 2, 8, 8)
    # bit 0: -.1 + .2 - .3 + .4 = 0.2; bit 1: -.1 - .2 + .3 + .4 = 0.4
    torch.testing.assert_close(out[:, 0], torch.full((2, 8, 8), 0.2))
    torch.testing.assert_close(out[:, 1], torch.full((2, 8, 8), 0.4))


def test_softmax_head_equals_probs_at_table_and_stays_in_range() -> None:
    torch.manual_seed(0)
    g = _gen(3)
    groups, k, nb, b = 3, 5, 3, 0.5
    table = (torch.randint(0, 2, (k, nb), generator=g).float() * 2 - 1) * b
    net = UNet(_softmax_cfg(groups, k, nb), code_table=table).eval()
    with torch.no_grad():
        net.conv_out.weight.copy_(torch.randn(net.conv_out.weight.shape, generator=g) * 5.0)  # big logits
    x, gamma = _inputs(net.config, batch=2)
    logits = net.logits(x, gamma)
    assert logits.shape == (2, groups * k, 8, 8)
    out = net(x, gamma)
    assert out.shape == (2, groups * nb, 8, 8)
    assert out.abs().max() <= b + 1e-6
    assert out.abs().max() > 0.1  # non-trivial
    for grp in range(groups):
        probs = logits[:, grp * k : (grp + 1) * k].softmax(dim=1)  # [B, K, H, W]
        expected = torch.einsum("bkhw,kn->bnhw", probs, table)
        torch.testing.assert_close(out[:, grp * nb : (grp + 1) * nb], expected)
    # The table is a buffer (saved with the weights, moved with .to()).
    assert "code_table" in dict(net.named_buffers())


def test_softmax_head_matches_bitcodec_layout() -> None:
    bits = pytest.importorskip("bitcompose.core.bits")
    codec = bits.BitCodec(num_values=6, encoding="gray")
    groups = 3
    net = UNet(_softmax_cfg(groups, 6, codec.num_bits), code_table=codec.code_table()).eval()
    values = [4, 0, 5]  # the value each channel group should predict
    with torch.no_grad():
        net.conv_out.weight.zero_()
        bias = torch.full((groups, 6), -50.0)
        for grp, v in enumerate(values):
            bias[grp, v] = 50.0
        net.conv_out.bias.copy_(bias.reshape(-1))
    x, gamma = _inputs(net.config, batch=2)
    out = net(x, gamma)
    image = torch.tensor(values).reshape(1, 3, 1, 1).expand(2, 3, 8, 8)
    torch.testing.assert_close(out, codec.encode_images(image))
    assert torch.equal(codec.decode_images(out), image)


def test_softmax_head_code_table_errors() -> None:
    cfg = _softmax_cfg(3, 4, 2)
    with pytest.raises(ValueError, match="code_table"):
        UNet(cfg)
    with pytest.raises(ValueError, match="code_table"):
        UNet(cfg, code_table=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="code_table"):
        UNet(cfg, code_table=torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="code_table"):
        UNet(unet_config("tiny"), code_table=torch.zeros(4, 2))


# ------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"num_groups": 12}, "num_groups"),
        ({"image_size": 7}, "divisible"),
        ({"attn_resolutions": (2,)}, "attn_resolutions"),
        ({"channel_mults": ()}, "channel_mults"),
        ({"channel_mults": (1, 0)}, "channel_mults"),
        ({"num_res_blocks": 0}, "num_res_blocks"),
        ({"data_channels": 0}, "data_channels"),
        ({"num_classes": -1}, "num_classes"),
        ({"dropout": 1.0}, "dropout"),
        ({"time_scaling": 0.0}, "time_scaling"),
        ({"self_condition": 1}, "self_condition"),
        ({"output_head": "sigmoid"}, "output_head"),
        ({"output_head": "softmax"}, "softmax_groups"),
        ({"softmax_groups": 1, "softmax_num_values": 4}, "softmax"),
        ({"output_head": "softmax", "softmax_groups": 2, "softmax_num_values": 4}, "divisible"),
        ({"base_channels": 40, "num_groups": 8, "per_head_dim": 12}, "heads"),
    ],
)
def test_bad_configs_raise(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        unet_config("tiny", **overrides)


def test_unknown_preset_and_override() -> None:
    with pytest.raises(ValueError, match="preset"):
        unet_config("cifar100")
    with pytest.raises(ValueError, match="unknown"):
        unet_config("tiny", channels=3)


def test_bad_labels_raise() -> None:
    net = UNet(unet_config("tiny", num_classes=10))
    x, gamma = _inputs(net.config, batch=2)
    for bad in (torch.tensor([0, 10]), torch.tensor([-2, 0])):
        with pytest.raises(ValueError, match="class labels"):
            net(x, gamma, bad)
    with pytest.raises(ValueError, match="integer"):
        net(x, gamma, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        net(x, gamma, torch.tensor([0, 1, 2]))
    uncond = UNet(unet_config("tiny"))
    with pytest.raises(ValueError, match="unconditional"):
        uncond(x, gamma, torch.tensor([0, 1]))


def test_config_dict_round_trip_through_json() -> None:
    cfg = unet_config(
        "imagenet64", dropout=0.1, output_head="softmax", softmax_groups=3, softmax_num_values=256
    )
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["channel_mults"] == [1, 2, 3, 4]
    back = UNetConfig.from_dict(data)
    assert back == cfg
    assert isinstance(back.channel_mults, tuple)
    with pytest.raises(ValueError, match="unknown"):
        UNetConfig.from_dict({**data, "depth": 3})
    with pytest.raises(ValueError, match="required"):
        UNetConfig.from_dict({"image_size": 8})


# ------------------------------------------------------------------------------------------- embeddings


def test_sinusoidal_embedding_closed_form() -> None:
    x = torch.tensor([0.0, 2.0])
    emb = sinusoidal_embedding(x, 4, max_period=100.0)
    # frequencies 100^0 = 1 and 100^(-1/2) = 0.1
    expected = torch.tensor(
        [[0.0, 0.0, 1.0, 1.0], [math.sin(2.0), math.sin(0.2), math.cos(2.0), math.cos(0.2)]]
    )
    torch.testing.assert_close(emb, expected)
    with pytest.raises(ValueError):
        sinusoidal_embedding(x, 3)


def test_embedding_uses_gamma_times_time_scaling() -> None:
    torch.manual_seed(0)
    a = NoiseLevelEmbedding(8, time_scaling=1000.0)
    b = NoiseLevelEmbedding(8, time_scaling=1.0)
    b.load_state_dict(a.state_dict())
    gamma = torch.tensor([0.0003, 0.7])
    torch.testing.assert_close(a(gamma), b(gamma * 1000.0))
    assert a(gamma).shape == (2, 32)
