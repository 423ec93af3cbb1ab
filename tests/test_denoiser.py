"""The Bit Diffusion objective: forward process, self-conditioning, label dropout, parameterisations."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from bitcompose import BitDenoiser, CosineSchedule, LossDraws, diffusion_loss


class RecordingNet(nn.Module):
    """A tiny per-element net f(x_in, gamma, cond) that records its inputs; output = w * x_t + c."""

    def __init__(self, channels: int, self_condition: bool = True, out_const: float = 0.0) -> None:
        super().__init__()
        self.channels = channels
        self.w = nn.Parameter(torch.tensor(0.5))
        self.c = nn.Parameter(torch.tensor(out_const))
        self.inputs: list[tuple[Tensor, Tensor, object]] = []

    def forward(self, x_in: Tensor, gamma: Tensor, cond: object = None) -> Tensor:
        self.inputs.append((x_in, gamma, cond))
        return self.w * x_in[:, : self.channels] + self.c


def test_forward_process_and_x0_loss() -> None:
    """With noise, t and masks given explicitly the loss equals the formula computed by hand."""
    net = RecordingNet(3)
    den = BitDenoiser(net, self_condition=False)
    x0 = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]])
    t = torch.tensor([0.2, 0.9])
    noise = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    out = diffusion_loss(den, x0, draws=LossDraws(t, noise))
    g = CosineSchedule().gamma(t).reshape(-1, 1)
    x_t = g.sqrt() * x0 + (1 - g).sqrt() * noise
    torch.testing.assert_close(net.inputs[0][0], x_t)
    torch.testing.assert_close(net.inputs[0][1], g.flatten())  # conditioned on gamma(t), not t
    torch.testing.assert_close(out.loss, ((0.5 * x_t - x0) ** 2).mean())


def test_self_condition_mask_fraction_and_stop_gradient() -> None:
    net = RecordingNet(2, out_const=5.0)  # first-pass estimate 0.5 * x_t + 5 is clipped to scale
    den = BitDenoiser(net, scale=1.0, self_condition=True)
    x0 = torch.ones(4000, 2)
    out = diffusion_loss(den, x0, generator=torch.Generator().manual_seed(0))
    frac = float(out.self_cond_mask.float().mean())
    assert abs(frac - 0.5) < 4 * (0.25 / 4000) ** 0.5
    assert len(net.inputs) == 2
    first_in, main_in = net.inputs[0][0], net.inputs[1][0]
    assert first_in.shape[0] == int(out.self_cond_mask.sum())  # first pass only on the selected examples
    assert bool((first_in[:, 2:] == 0).all())  # the first pass sees a zero estimate
    sc = main_in[:, 2:]
    assert not sc.requires_grad  # stop-gradient
    m = out.self_cond_mask
    assert bool((sc[m] == 1.0).all())  # clipped to [-b, b]
    assert bool((sc[~m] == 0.0).all())
    out.loss.backward()
    assert net.w.grad is not None and torch.isfinite(net.w.grad)


def test_self_condition_first_pass_carries_no_gradient() -> None:
    """The gradient equals the one obtained with the estimate supplied as a constant."""

    class Lin(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x_in: Tensor, gamma: Tensor, cond: object = None) -> Tensor:
            return self.lin(x_in)

    lin = Lin()
    with torch.no_grad():
        lin.lin.weight.copy_(torch.linspace(-1, 1, 8).reshape(2, 4))
    den = BitDenoiser(lin, self_condition=True)
    x0 = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
    t, noise = torch.tensor([0.3, 0.5, 0.7]), torch.randn(3, 2, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([True, False, True])
    loss = diffusion_loss(den, x0, draws=LossDraws(t, noise, mask)).loss
    (grad,) = torch.autograd.grad(loss, lin.lin.weight)

    g = CosineSchedule().gamma(t).reshape(-1, 1)
    x_t = g.sqrt() * x0 + (1 - g).sqrt() * noise
    with torch.no_grad():
        est = lin(torch.cat([x_t, torch.zeros_like(x_t)], 1), g.flatten()).clamp(-1, 1)
    sc = torch.where(mask.reshape(-1, 1), est, torch.zeros_like(est))
    ref = ((lin(torch.cat([x_t, sc], 1), g.flatten()) - x0) ** 2).mean()
    (ref_grad,) = torch.autograd.grad(ref, lin.lin.weight)
    torch.testing.assert_close(grad, ref_grad)


def test_label_dropout_uses_null_class() -> None:
    net = RecordingNet(1)
    den = BitDenoiser(net, self_condition=False)
    labels = torch.arange(1000) % 10
    diffusion_loss(den, torch.ones(1000, 1), cond=labels, cond_drop_prob=0.3, generator=torch.Generator())
    seen = net.inputs[-1][2]
    assert isinstance(seen, Tensor)
    dropped = seen == -1
    assert 0.25 < float(dropped.float().mean()) < 0.35
    assert bool((seen[~dropped] == labels[~dropped]).all())
    with pytest.raises(ValueError, match="labels"):
        diffusion_loss(den, torch.ones(4, 1), cond=torch.rand(4, 3), cond_drop_prob=0.1)


def test_eps_and_logistic_parameterisations() -> None:
    t = torch.tensor([0.4, 0.6])
    x0 = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    noise = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
    eps_net = RecordingNet(2)
    den = BitDenoiser(eps_net, prediction="eps", self_condition=False)
    loss = diffusion_loss(den, x0, draws=LossDraws(t, noise)).loss
    x_t = eps_net.inputs[0][0]
    torch.testing.assert_close(loss, ((0.5 * x_t - noise) ** 2).mean())
    s = CosineSchedule()
    a, sg = s.alpha(t).reshape(-1, 1), s.sigma(t).reshape(-1, 1)
    torch.testing.assert_close(den(x_t, t), (x_t - sg * 0.5 * x_t) / a)

    log_net = RecordingNet(2)
    den_l = BitDenoiser(log_net, prediction="logistic", scale=0.5, self_condition=False)
    loss_l = diffusion_loss(den_l, 0.5 * x0, draws=LossDraws(t, noise)).loss
    f = 0.5 * log_net.inputs[0][0]
    torch.testing.assert_close(loss_l, -torch.log(torch.sigmoid(f * x0)).mean())
    out = den_l(log_net.inputs[0][0], t)
    torch.testing.assert_close(out, (2 * torch.sigmoid(f) - 1) * 0.5)
    assert bool((out.abs() <= 0.5).all())


def test_bad_inputs() -> None:
    den = BitDenoiser(RecordingNet(2), self_condition=True)
    with pytest.raises(ValueError, match="prediction"):
        BitDenoiser(RecordingNet(2), prediction="v")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float"):
        diffusion_loss(den, torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        den(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="self_cond"):
        den(torch.zeros(3, 2), torch.zeros(3), self_cond=torch.zeros(3, 5))
    plain = BitDenoiser(RecordingNet(2, self_condition=False), self_condition=False)
    with pytest.raises(ValueError, match="self_condition=False"):
        plain(torch.zeros(3, 2), torch.zeros(3), self_cond=torch.zeros(3, 2))
