"""The likelihood bound against closed forms: exact denoisers of i.i.d. symbols give their entropy."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from bitcompose.core.bits import BitCodec
from bitcompose.core.schedules import CosineSchedule
from bitcompose.diffusion.denoiser import BitDenoiser
from bitcompose.diffusion.likelihood import bits_per_dim, bound_terms, nll_bound
from bitcompose.diffusion.masked import MaskedDenoiser

SCHEDULE = CosineSchedule()


class ExactCodeDenoiser:
    """The exact x0 denoiser of data whose symbols are i.i.d. with probabilities ``probs`` ``[K]``, each written
    as the code ``codes[v]`` ``[K, n]`` (laid out as ``[B, S, n]``): the posterior mean over the K codes."""

    scale = 1.0
    self_condition = False
    schedule = SCHEDULE

    def __init__(self, probs: Tensor, codes: Tensor) -> None:
        self.log_probs = probs.double().log()
        self.codes = codes.double()

    def __call__(self, z: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: object = None) -> Tensor:
        alpha = SCHEDULE.alpha(t.double()).view(-1, 1, 1, 1)
        sigma = SCHEDULE.sigma(t.double()).view(-1, 1, 1)
        zz = z.double().unsqueeze(2)  # [B, S, 1, n]
        logits = self.log_probs - ((zz - alpha * self.codes) ** 2).sum(-1) / (2 * sigma**2)  # [B, S, K]
        return (logits.softmax(-1) @ self.codes).to(z.dtype)


def _iid(probs: Tensor, n: int, symbols: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(probs, n * symbols, replacement=True, generator=g).view(n, symbols)


def _entropy_bits(probs: Tensor) -> float:
    p = probs.double()
    return float(-(p * p.log2()).sum())


def _bound_bits_per_symbol(
    den: ExactCodeDenoiser, x0: Tensor, symbols: int, **kw: object
) -> tuple[float, float]:
    nats = nll_bound(den, x0, generator=torch.Generator().manual_seed(1), **kw)  # type: ignore[arg-type]
    return bits_per_dim(nats, symbols)


@pytest.mark.parametrize("p, entropy", [(0.5, 1.0), (0.9, 0.469)])
def test_iid_bits_with_the_exact_denoiser_give_their_entropy(p: float, entropy: float) -> None:
    probs = torch.tensor([1 - p, p])
    codes = torch.tensor([[-1.0], [1.0]])
    x0 = codes[_iid(probs, 4000, 16)]  # [4000, 16, 1]: 4,000 samples of 16 bits
    mean, se = _bound_bits_per_symbol(ExactCodeDenoiser(probs, codes), x0, 16)
    assert abs(_entropy_bits(probs) - entropy) < 5e-4
    assert se <= 0.02  # the bar for the default estimator
    assert abs(mean - entropy) < 0.02
    assert abs(mean - entropy) < 4 * se + 2e-3


def test_a_wrong_denoiser_gives_a_looser_bound() -> None:
    probs = torch.tensor([0.1, 0.9])
    codes = torch.tensor([[-1.0], [1.0]])
    x0 = codes[_iid(probs, 2000, 16)]
    right, se = _bound_bits_per_symbol(ExactCodeDenoiser(probs, codes), x0, 16)
    wrong, se_w = _bound_bits_per_symbol(ExactCodeDenoiser(torch.tensor([0.5, 0.5]), codes), x0, 16)
    # the fair-bit model's cross-entropy on these bits is 1 bit; the right model's is their entropy 0.469
    assert wrong > right + 0.3
    assert abs(wrong - 1.0) < 4 * se_w + 0.01


def test_continuous_pixels_bits_and_masked_agree_on_iid_symbols() -> None:
    """K = 4 symbols with a skewed law: the continuous-pixel bound (a 4-level lattice), the 2-bit binary code's
    bound and the absorbing-state ELBO of its exact model all give the entropy, in the same units."""
    probs = torch.tensor([0.5, 0.25, 0.15, 0.10])
    entropy = _entropy_bits(probs)
    symbols = _iid(probs, 3000, 8)
    continuous = BitCodec(4, "continuous")
    binary = BitCodec(4, "binary")
    for codec, kw in ((continuous, {"values": continuous.lattice}), (binary, {})):
        codes = codec.code_table(dtype=torch.float64).float()
        x0 = codes[symbols]  # [B, 8, n]
        mean, se = _bound_bits_per_symbol(ExactCodeDenoiser(probs, codes), x0, 8, **kw)
        assert abs(mean - entropy) < max(4 * se, 0.01), (codec.encoding, mean, entropy, se)

    class PriorLogits(nn.Module):  # the exact absorbing-state model of i.i.d. symbols: the law itself
        def forward(self, x: Tensor, gamma: Tensor, cond: object = None) -> Tensor:
            b, ck, *rest = x.shape
            logits = probs.log().view(1, 1, 4, *([1] * len(rest))).expand(b, ck // 4, 4, *rest)
            return logits.reshape(x.shape)

    masked = MaskedDenoiser(PriorLogits(), num_values=4)
    onehot = BitCodec(4, "onehot").encode(symbols).movedim(-1, 1)  # [B, 1·K, 8]: one channel of 8 symbols
    nats = nll_bound(masked, onehot, generator=torch.Generator().manual_seed(2))
    mean, se = bits_per_dim(nats, 8)
    assert abs(mean - entropy) < max(4 * se, 0.01)


def test_bound_terms_are_finite_and_the_end_points_are_negligible() -> None:
    probs = torch.tensor([0.5, 0.5])
    codes = torch.tensor([[-1.0], [1.0]])
    x0 = codes[_iid(probs, 64, 16)]
    terms = bound_terms(ExactCodeDenoiser(probs, codes), x0, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(terms.total).all()
    assert float(terms.prior.max()) < 1e-6 and float(terms.decoder.max()) < 1e-6
    lo, hi = terms.log_snr_range
    assert lo < -15 and abs(hi - 2 * math.log(6.0)) < 1e-9


def test_bad_input_is_refused() -> None:
    probs = torch.tensor([0.5, 0.5])
    den = ExactCodeDenoiser(probs, torch.tensor([[-1.0], [1.0]]))
    with pytest.raises(ValueError, match="lattice"):
        nll_bound(den, torch.full((4, 3, 1), 0.3))
    with pytest.raises(ValueError, match="batched float"):
        nll_bound(den, torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="draws"):
        nll_bound(den, torch.ones(4, 3, 1), draws=0)
    with pytest.raises(ValueError, match="log_snr_max"):
        nll_bound(den, torch.ones(4, 3, 1), log_snr_max=40.0)
    with pytest.raises(ValueError, match="at least two"):
        bits_per_dim(torch.ones(1), 4)


def _tiny_denoiser(seed: int) -> BitDenoiser:
    from bitcompose.nets.unet import UNet, UNetConfig

    torch.manual_seed(seed)
    cfg = UNetConfig(
        data_channels=1, image_size=4, base_channels=8, channel_mults=(1,), num_res_blocks=1, num_groups=4
    )
    return BitDenoiser(UNet(cfg), self_condition=True)


def test_the_bound_of_a_tiny_model_is_finite_and_falls_with_training() -> None:
    from bitcompose.diffusion.loss import diffusion_loss

    g = torch.Generator().manual_seed(0)
    data = torch.where(torch.rand(256, 1, 4, 4, generator=g) < 0.8, 1.0, -1.0)
    data[:, :, :2] = 1.0  # half the pixels always on: learnable structure
    den = _tiny_denoiser(0)
    held_out = data[:128]

    def bound() -> float:
        den.eval()
        return bits_per_dim(nll_bound(den, held_out, generator=torch.Generator().manual_seed(5)), 16)[0]

    before = bound()
    opt = torch.optim.Adam(den.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(150):
        den.train()
        idx = torch.randint(0, 256, (32,), generator=gen)
        loss = diffusion_loss(den, data[idx], generator=gen).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = bound()
    assert math.isfinite(before) and math.isfinite(after)
    assert after < before - 0.1


@pytest.mark.parametrize("prediction", ["x0", "eps", "logistic", "energy"])
def test_every_parameterisation_has_a_finite_bound_and_the_draws_are_the_generators(prediction: str) -> None:
    from bitcompose.nets.unet import UNet, UNetConfig

    torch.manual_seed(0)
    net = UNet(UNetConfig(data_channels=1, image_size=4, base_channels=8, channel_mults=(1,), num_res_blocks=1,
                          num_groups=4, self_condition=False))  # fmt: skip
    den = BitDenoiser(net, prediction=prediction, self_condition=False).eval()  # type: ignore[arg-type]
    x0 = torch.where(torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.5, 1.0, -1.0)
    a = nll_bound(den, x0, generator=torch.Generator().manual_seed(3))
    b = nll_bound(den, x0, generator=torch.Generator().manual_seed(3))
    c = nll_bound(den, x0, generator=torch.Generator().manual_seed(4))
    assert a.shape == (6,) and torch.isfinite(a).all() and (a > 0).all()
    assert torch.equal(a, b) and not torch.equal(a, c)  # all randomness is the generator's


def test_a_zero_self_conditioning_input_is_the_one_pass_denoiser() -> None:
    den = _tiny_denoiser(3).eval()
    with torch.no_grad():  # away from the zero-initialised output layers, where both inputs give x̂ = 0
        for p in den.parameters():
            p.normal_(0.0, 0.2, generator=torch.Generator().manual_seed(p.numel()))
    x0 = torch.where(torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(2)) < 0.5, 1.0, -1.0)
    calls: list[bool] = []

    def one_pass(z: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: object = None) -> Tensor:
        calls.append(self_cond is None)
        return den(z, t, None, cond)

    zero = nll_bound(den, x0, generator=torch.Generator().manual_seed(4), self_condition=False)
    ref = nll_bound(one_pass, x0, generator=torch.Generator().manual_seed(4), self_condition=False)
    two = nll_bound(den, x0, generator=torch.Generator().manual_seed(4))
    assert calls and all(calls)
    torch.testing.assert_close(zero, ref)
    assert not torch.allclose(zero, two)  # the default feeds the first pass's estimate back
