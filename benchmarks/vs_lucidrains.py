"""Side by side with the most used Bit Diffusion port, lucidrains ``bit-diffusion`` 0.1.4, in one process.

Both train at matched size on 32×32 RGB at 8 bits per channel, batch 32, Adam, self-conditioning: the port's
``Unet(dim=32, dim_mults=(1, 2, 4))`` (2.71M parameters) and this project's ``bench32`` preset (2.68M) in fp32 and
at its default precision. Steps are interleaved round by round (``--rounds``) and the medians reported, then each
samples 16 images with 100 DDIM steps.

The port is not a dependency. It imports torchvision and accelerate at module level but this benchmark uses
neither, so install it without its dependencies, in a separate environment, and the script stubs the two::

    python -m venv /tmp/peer && /tmp/peer/bin/pip install torch==2.13.0
    /tmp/peer/bin/pip install --no-deps bit-diffusion==0.1.4 einops ema-pytorch
    /tmp/peer/bin/pip install numpy safetensors tqdm pillow
    PYTHONPATH=src /tmp/peer/bin/python benchmarks/vs_lucidrains.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import types
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))


def _stub_unused_imports() -> None:
    tv = types.ModuleType("torchvision")
    tv.transforms = types.SimpleNamespace()  # type: ignore[attr-defined]
    tv.utils = types.SimpleNamespace()  # type: ignore[attr-defined]
    acc = types.ModuleType("accelerate")
    acc.Accelerator = object  # type: ignore[attr-defined]
    sys.modules.setdefault("torchvision", tv)
    sys.modules.setdefault("accelerate", acc)


def run(rounds: int) -> dict[str, Any]:
    _stub_unused_imports()
    try:
        from bit_diffusion import BitDiffusion, Unet  # the port (see the module docstring)
    except ImportError:
        sys.exit("vs_lucidrains: the port bit-diffusion 0.1.4 is not installed; see this script's docstring")
    from train_throughput import fake_dataset

    from bitcompose import sample
    from bitcompose.images.config import preset
    from bitcompose.images.model import make_denoiser
    from bitcompose.images.trainer import ImageTrainer
    from bitcompose.training.dist import DistInfo

    torch.manual_seed(0)
    peer_net = Unet(dim=32, channels=3, dim_mults=(1, 2, 4))
    peer = BitDiffusion(peer_net, image_size=32, timesteps=100, use_ddim=True)
    opt = torch.optim.Adam(peer.parameters(), lr=1e-4)
    images = torch.rand(32, 3, 32, 32)

    def peer_step() -> None:
        loss = peer(images)
        opt.zero_grad()
        loss.backward()
        opt.step()

    ours = {}
    for precision in ("fp32", "auto"):
        cfg = preset("bench32").with_overrides(
            [f"precision={precision}", f"sample.precision={precision}", "device=cpu"]
        )
        ours[precision] = ImageTrainer(cfg, tempfile.mkdtemp(), dataset=fake_dataset(cfg, 128), progress=False,
                                       dist_info=DistInfo(device=torch.device("cpu")))  # fmt: skip
    steps = {"peer": peer_step, **{f"ours_{p}": t.train_step for p, t in ours.items()}}
    for step in steps.values():
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    out: dict[str, Any] = {
        name: {"train_img_per_s": 32 / statistics.median(t), "train_img_per_s_best": 32 / min(t)}
        for name, t in times.items()
    }
    out["peer"]["params"] = sum(p.numel() for p in peer_net.parameters())
    start = time.perf_counter()
    peer.sample(batch_size=16)
    out["peer"]["sample_img_per_s"] = 16 / (time.perf_counter() - start)
    for precision, trainer in ours.items():
        den = make_denoiser(trainer.ema.module, trainer.config.model, trainer.spec.num_values).eval()
        g = torch.Generator().manual_seed(0)
        sample(den, (16, 24, 32, 32), steps=2, generator=g, precision=precision)
        start = time.perf_counter()
        sample(den, (16, 24, 32, 32), steps=100, generator=g, precision=precision)
        out[f"ours_{precision}"] |= {
            "sample_img_per_s": 16 / (time.perf_counter() - start),
            "precision": trainer.precision,
            "params": sum(p.numel() for p in trainer.net.parameters()),
        }
    for name in ("ours_fp32", "ours_auto"):
        out[name]["train_ratio_to_peer"] = out[name]["train_img_per_s"] / out["peer"]["train_img_per_s"]
        out[name]["sample_ratio_to_peer"] = out[name]["sample_img_per_s"] / out["peer"]["sample_img_per_s"]
    out |= {"rounds": rounds, "torch": torch.__version__, "load_avg_1min": os.getloadavg()[0]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    r = run(args.rounds)
    print(json.dumps(r) if args.json else json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
