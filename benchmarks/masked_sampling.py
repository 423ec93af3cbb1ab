"""Per-step cost of the absorbing-state sampler outside its network, beside the former loop.

``masked_sample`` now draws categories only for the symbols it reveals and keeps the network input up to date
instead of rebuilding the one-hot codes of every symbol each step; the former loop drew a category for every
symbol every step. The network is a stub returning zero logits, so only the sampler's own work is timed (the
study's MNIST case: 500 images of 14×14 with 256 levels, 400 steps).

Usage::

    python benchmarks/masked_sampling.py [--batch 500] [--size 14] [--levels 256] [--steps 400] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import Tensor, nn

from bitcompose.diffusion.masked import MaskedDenoiser, mask_inputs, masked_sample


class ZeroLogits(nn.Module):
    """A network stub: uniform logits, no compute."""

    def forward(self, x: Tensor, gamma: Tensor, cond: object = None) -> Tensor:
        return torch.zeros_like(x)


def former_loop(den: MaskedDenoiser, shape: tuple[int, ...], steps: int, g: torch.Generator) -> None:
    """The sampler before: the one-hot codes of every symbol rebuilt and a category drawn for every symbol."""
    k, scale = den.num_values, den.scale
    b, ck, *rest = shape
    symbols = torch.zeros((b, ck // k, *rest), dtype=torch.long)
    masked = torch.ones_like(symbols, dtype=torch.bool)
    for i in range(steps):
        t, s = 1 - i / steps, 1 - (i + 1) / steps
        onehot = torch.nn.functional.one_hot(symbols, k).movedim(-1, 2).float() * (2 * scale) - scale
        x_t = mask_inputs(onehot.reshape(shape), masked, k)
        logits = den.logits(x_t, torch.full((b,), t))
        probs = logits.softmax(dim=2).movedim(2, -1).reshape(-1, k)
        draw = torch.multinomial(probs, 1, generator=g).reshape(symbols.shape)
        reveal = masked & (torch.rand(symbols.shape, generator=g) < (t - s) / t)
        symbols = torch.where(reveal, draw, symbols)
        masked = masked & ~reveal


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--size", type=int, default=14)
    p.add_argument("--levels", type=int, default=256)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--former-steps", type=int, default=40, help="steps timed of the former loop (it is slow)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    den = MaskedDenoiser(ZeroLogits(), num_values=args.levels)
    shape = (args.batch, args.levels, args.size, args.size)
    start = time.perf_counter()
    masked_sample(den, shape, steps=args.steps, generator=torch.Generator().manual_seed(0))
    now = (time.perf_counter() - start) / args.steps
    start = time.perf_counter()
    former_loop(den, shape, args.former_steps, torch.Generator().manual_seed(0))
    before = (time.perf_counter() - start) / args.former_steps
    report = {"shape": list(shape), "steps": args.steps, "ms_per_step": 1000 * now, "former_ms_per_step": 1000 * before,
              "threads": torch.get_num_threads()}  # fmt: skip
    print(json.dumps(report) if args.json else f"sampler's own work: {1000 * now:.0f} ms/step now, "
          f"{1000 * before:.0f} ms/step before (shape {shape}, {torch.get_num_threads()} threads)")  # fmt: skip


if __name__ == "__main__":
    main()
