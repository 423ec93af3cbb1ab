"""The core pieces fit together: codec -> U-Net denoiser -> loss -> sampler -> decode."""

from __future__ import annotations

import torch

from bitcompose import BitCodec, BitDenoiser, UNet, diffusion_loss, sample, unet_config


def _tiny(num_values: int, encoding: str = "binary", head: str = "linear") -> tuple[BitCodec, BitDenoiser]:
    codec = BitCodec(num_values, encoding)
    extra = (
        {"output_head": "softmax", "softmax_groups": 1, "softmax_num_values": num_values}
        if head == "softmax"
        else {}
    )
    cfg = unet_config("tiny", data_channels=codec.num_bits, image_size=8, num_classes=10, **extra)
    net = UNet(cfg, code_table=codec.code_table() if head == "softmax" else None)
    return codec, BitDenoiser(net, self_condition=True)


def test_train_step_and_sample_end_to_end() -> None:
    torch.manual_seed(0)  # parameter init only (test process); the library itself uses explicit generators
    codec, den = _tiny(17)
    images = torch.randint(0, 17, (4, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, -1])
    x0 = codec.encode_images(images)
    opt = torch.optim.Adam(den.parameters(), lr=1e-3)
    out = diffusion_loss(den, x0, cond=labels, generator=torch.Generator().manual_seed(1), cond_drop_prob=0.1)
    out.loss.backward()
    opt.step()
    assert torch.isfinite(out.loss)
    den.eval()
    x = sample(
        den,
        (3, codec.num_bits, 8, 8),
        steps=3,
        sampler="ddpm",
        td=0.5,
        cond=torch.tensor([1, 2, 3]),
        guidance=1.0,
        generator=torch.Generator().manual_seed(2),
        progress=False,
    ).samples
    assert x.shape == (3, codec.num_bits, 8, 8) and bool((x.abs() <= 1).all())
    ints = codec.decode_images(x)
    assert ints.shape == (3, 1, 8, 8) and int(ints.max()) < 17 and int(ints.min()) >= 0


def test_softmax_head_denoiser_outputs_expected_codes() -> None:
    torch.manual_seed(0)
    codec, den = _tiny(17, "random", head="softmax")
    x = torch.randn(2, codec.num_bits, 8, 8)
    x0 = den(x, torch.rand(2))
    assert bool((x0.abs() <= 1 + 1e-6).all())
    # an untrained softmax head starts from near-uniform probabilities: the expected code is the table mean
    torch.testing.assert_close(x0[0, :, 0, 0], codec.code_table().mean(0), atol=1e-3, rtol=0)
