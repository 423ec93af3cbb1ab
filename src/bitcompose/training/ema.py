"""Exponential moving average (EMA) of a model's weights.

The shadow starts as an exact float32 copy of the online model (``ema.module``), so it can be called directly
for sampling, and its ``state_dict`` is what checkpoints store. Floating-point parameters *and* buffers are
averaged; integer buffers (counters) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

__all__ = ["EMA", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / torch.compile wrappers (or ``model`` itself)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


class EMA:
    """Float32 exponential moving average ``shadow <- decay * shadow + (1 - decay) * weights``.

    Args:
        model: the online model (wrappers such as DDP or ``torch.compile`` are unwrapped).
        decay: the EMA decay, ``0 <= decay < 1`` (``0`` makes the shadow a copy of the last weights).

    Attributes:
        module: the shadow model (float32, ``eval()`` mode, no gradients); use it for sampling.
        decay: the decay.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not isinstance(decay, (int, float)) or not (0.0 <= float(decay) < 1.0):
            raise ValueError(f"EMA decay must satisfy 0 <= decay < 1, got {decay!r}")
        self.decay = float(decay)
        self.module: nn.Module = copy.deepcopy(unwrap_model(model))
        for tensor in self._tensors(self.module).values():
            if tensor.is_floating_point():
                tensor.data = tensor.data.float()
        self.module.eval()
        self.module.requires_grad_(False)

    @staticmethod
    def _tensors(module: nn.Module) -> dict[str, Tensor]:
        named: dict[str, Tensor] = dict(module.named_parameters())
        named.update(dict(module.named_buffers()))
        return named

    @property
    def shadow(self) -> dict[str, Tensor]:
        """The shadow tensors by state-dict name (float32 for floating-point entries)."""
        return self.module.state_dict()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow towards the current weights of ``model`` (call after each optimiser step)."""
        online = self._tensors(unwrap_model(model))
        shadow = self._tensors(self.module)
        if online.keys() != shadow.keys():
            missing = sorted(set(shadow) ^ set(online))
            raise ValueError(f"EMA.update: model does not match the shadow (differing names: {missing[:5]})")
        floats_s, floats_w = [], []
        for name, s in shadow.items():
            w = online[name].detach()
            if s.is_floating_point():
                floats_s.append(s)
                floats_w.append(w.to(device=s.device, dtype=s.dtype))
            else:
                s.copy_(w)
        if floats_s:  # one fused multi-tensor kernel instead of one lerp per tensor
            torch._foreach_lerp_(floats_s, floats_w, 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Copy the shadow weights into ``model`` (cast to its dtypes and devices)."""
        online = self._tensors(unwrap_model(model))
        for name, s in self._tensors(self.module).items():
            if name not in online:
                raise ValueError(f"EMA.copy_to: model has no tensor named {name!r}")
            online[name].copy_(s.to(dtype=online[name].dtype, device=online[name].device))

    def to(self, device: torch.device | str) -> EMA:
        """Move the shadow to ``device`` (keeps float32); returns ``self``."""
        self.module.to(device)
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """The shadow weights (a dict of tensors; safe to store with safetensors)."""
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load shadow weights saved by :meth:`state_dict` (strict: names and shapes must match)."""
        from bitcompose.training.checkpoint import load_state_strict

        load_state_strict(self.module, state, what="EMA weights")
        for tensor in self._tensors(self.module).values():
            if tensor.is_floating_point() and tensor.dtype != torch.float32:
                tensor.data = tensor.data.float()
