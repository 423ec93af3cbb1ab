"""A trained captioner (diffusion or autoregressive) loaded from a run folder, and caption generation.

Run folder layout (written by :func:`bitcompose.captioning.train.train_captioner`)::

    run/
        tokenizer.model      SentencePiece model
        checkpoint/          config.json + model.safetensors + ema.safetensors + training_state.pt
        train_log.json       losses, wall-clock time, machine
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bitcompose.captioning.config import CaptionRunConfig
from bitcompose.captioning.tokenizer import load_tokenizer
from bitcompose.core.grid import TimeGrid
from bitcompose.core.sampling import StepInfo, resolve_generator
from bitcompose.diffusion import BitDenoiser
from bitcompose.diffusion.as_model import as_model
from bitcompose.diffusion.samplers import SamplingOptions, sample_model
from bitcompose.nets.ar_decoder import CaptionARNet
from bitcompose.nets.caption import CaptionDiffusionNet, CaptionNetConfig
from bitcompose.training.checkpoint import find_checkpoint, load_checkpoint, load_state_strict

__all__ = ["Captioner", "build_net", "load_captioner", "TOKENIZER_FILE"]

TOKENIZER_FILE = "tokenizer.model"


def build_net(run: CaptionRunConfig, net_config: CaptionNetConfig) -> nn.Module:
    """A fresh network for ``run.model`` (``"diffusion"`` → :class:`CaptionDiffusionNet`, ``"ar"`` → AR)."""
    return CaptionDiffusionNet(net_config) if run.model == "diffusion" else CaptionARNet(net_config)


@dataclass
class Captioner:
    """A captioning model ready for sampling.

    Attributes:
        run: the run configuration.
        net_config: network sizes.
        net: the network (EMA weights, eval mode).
        tokenizer: the run's tokenizer (``encode_batch``, ``decode_batch``, ``eos_id``, ``pad_id``).
        path: the run folder (None for an in-memory model).
    """

    run: CaptionRunConfig
    net_config: CaptionNetConfig
    net: nn.Module
    tokenizer: Any
    path: Path | None = None

    @property
    def kind(self) -> str:
        """``"diffusion"`` or ``"ar"``."""
        return self.run.model

    @torch.no_grad()
    def generate(
        self,
        images: Tensor,
        *,
        steps: int = 10,
        td: float = 0.0,
        sampler: str = "ddim",
        beam: int = 1,
        generator: torch.Generator | None = None,
        batch_size: int = 256,
        decode: str = "bits",
    ) -> Tensor:
        """Token ids of one caption per image: long ``[B, L]``.

        Args:
            images: float ``[B, 3, H, W]`` in ``[−1, 1]``.
            steps, td, sampler: diffusion sampling settings (td in units of steps); ignored by the AR model.
            beam: beam width of the AR model (1 = greedy); ignored by the diffusion model.
            generator: source of the diffusion noise.
            batch_size: images per forward batch.
            decode: diffusion output rule: ``"bits"`` thresholds the final x0 estimate at 0 (the paper's rule);
                ``"argmax"`` (softmax head only) takes the most probable token of the last network call's
                vocabulary softmax — the same sampling trajectory, only the final read-out differs.
        """
        if decode not in ("bits", "argmax"):
            raise ValueError(f"decode must be 'bits' or 'argmax', got {decode!r}")
        if decode == "argmax" and self.net_config.output_head != "softmax":
            raise ValueError("decode='argmax' needs a diffusion model with the softmax output head")
        self.net.eval()
        outs = []
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size]
            if isinstance(self.net, CaptionARNet):
                outs.append(
                    self.net.beam_search(
                        chunk, beam=beam, eos_id=self.tokenizer.eos_id, pad_id=self.tokenizer.pad_id
                    )
                )
                continue
            assert isinstance(self.net, CaptionDiffusionNet)
            ids = self._diffusion_ids(chunk, steps, td, sampler, generator, decode)
            outs.append(ids)
        return torch.cat(outs, dim=0)

    def _diffusion_ids(
        self,
        images: Tensor,
        steps: int,
        td: float,
        sampler: str,
        generator: torch.Generator | None,
        decode: str,
    ) -> Tensor:
        """Token ids ``[B, L]`` of the diffusion captioner for one batch of images."""
        net = self.net
        assert isinstance(net, CaptionDiffusionNet)
        cfg = self.net_config
        den = BitDenoiser(net, scale=cfg.bit_scale, self_condition=cfg.self_condition, channel_dim=-1)
        memory = net.encode(images)
        generator = resolve_generator(generator)
        x_init = torch.randn((images.shape[0], cfg.max_len, cfg.num_bits), generator=generator)
        seen: list[StepInfo] = []
        result = sample_model(
            as_model(den, cond=memory),
            x_init,
            TimeGrid.uniform(steps, td),
            SamplingOptions(sampler=sampler),
            generator=generator,
            callback=seen.append if decode == "argmax" else None,
        )
        if decode == "bits":
            return cfg.codec.decode_sequence(result.samples)
        # argmax: the vocabulary logits of the last network call, recomputed from its inputs
        x_last, sc_last = x_init, torch.zeros_like(x_init)
        if len(seen) > 1 and seen[-2].x0 is not None:
            x_last, sc_last = seen[-2].x, seen[-2].x0
        t_last = torch.full((images.shape[0],), seen[-1].t)
        x_in = torch.cat([x_last, sc_last], dim=-1) if cfg.self_condition else x_last
        return net.forward_with_logits(x_in, den.schedule.gamma(t_last), memory)[1].argmax(dim=-1)

    def caption(self, images: Tensor, **kwargs: Any) -> list[str]:
        """Caption strings for images ``[B, 3, H, W]`` (keyword arguments as :meth:`generate`)."""
        ids = self.generate(images, **kwargs)
        return list(self.tokenizer.decode_batch(ids))


def load_captioner(path: str | Path, *, use_ema: bool = True) -> Captioner:
    """Load a trained captioner from a run folder (or its ``checkpoint/`` folder).

    Raises:
        FileNotFoundError: no checkpoint, or no tokenizer next to it.
        ValueError: the checkpoint is not a captioning run or does not match its configuration.
    """
    path = Path(path)
    ckpt_dir = find_checkpoint(path)
    run_dir = ckpt_dir.parent if ckpt_dir.name == "checkpoint" else ckpt_dir
    tok_path = run_dir / TOKENIZER_FILE
    if not tok_path.is_file():
        raise FileNotFoundError(f"tokenizer not found: {tok_path} (is {run_dir} a captioning run folder?)")
    ckpt = load_checkpoint(ckpt_dir)
    if ckpt.config.get("kind") != "captioning":
        raise ValueError(
            f"{ckpt_dir} is not a captioning checkpoint (config kind={ckpt.config.get('kind')!r})"
        )
    run = CaptionRunConfig.from_dict(ckpt.config["run"])
    net_config = CaptionNetConfig.from_dict(ckpt.config["net"])
    tokenizer = load_tokenizer(tok_path)
    if tokenizer.vocab_size != net_config.vocab_size:
        raise ValueError(
            f"tokenizer {tok_path} has {tokenizer.vocab_size} ids but the model was built for {net_config.vocab_size}"
        )
    net = build_net(run, net_config)
    state = ckpt.ema_state if (use_ema and ckpt.ema_state is not None) else ckpt.model_state
    load_state_strict(net, state, what=f"weights of {ckpt_dir}")
    net.eval()
    return Captioner(run=run, net_config=net_config, net=net, tokenizer=tokenizer, path=run_dir)
