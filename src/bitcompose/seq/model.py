"""A trained sequence model loaded from its run folder: sampling sequences and their likelihood bound.

Bits: any sampler of :func:`bitcompose.diffusion.samplers.sample_model` (DDIM, DDPM, DPM-Solver++(2M)) with
asymmetric time intervals ``td`` and self-conditioning, the final x0 estimate thresholded at 0 (the paper's rule);
a code that names no token (a ``K`` that is not a power of two) reads as the end token. Masked: ancestral
absorbing-state sampling, one network evaluation per step. Either way, a sequence stops at its first end token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bitcompose.core.grid import TimeGrid
from bitcompose.core.sampling import resolve_generator
from bitcompose.diffusion.as_model import as_model
from bitcompose.diffusion.likelihood import nll_bound
from bitcompose.diffusion.masked import MaskedDenoiser, masked_sample
from bitcompose.diffusion.samplers import SamplingOptions, sample_model
from bitcompose.nets.seq import SeqNetConfig, build_seq_net
from bitcompose.seq.config import SeqRunConfig
from bitcompose.seq.tokenizer import END, SeqTokenizer
from bitcompose.seq.train import DATA_FILE, TOKENIZER_FILE, encode_codes, make_denoiser
from bitcompose.training.checkpoint import find_checkpoint, load_checkpoint, load_state_strict

__all__ = ["SeqModel", "load_seq_model"]


@dataclass
class SeqModel:
    """A sequence model ready for sampling.

    Attributes:
        run: the run configuration.
        net_config: the network's sizes (``vocab_size``, ``max_len``, ``model``).
        net: the network (EMA weights, eval mode).
        tokenizer: the run's tokeniser.
        data: the run's ``data.json`` (source, fingerprint, split sizes).
        path: the run folder (None in memory).
    """

    run: SeqRunConfig
    net_config: SeqNetConfig
    net: nn.Module
    tokenizer: SeqTokenizer
    data: dict[str, Any]
    path: Path | None = None

    @property
    def kind(self) -> str:
        """``"bits"`` or ``"masked"``."""
        return self.net_config.model

    @torch.no_grad()
    def generate(
        self,
        n: int,
        *,
        steps: int = 100,
        sampler: str = "ddim",
        td: float = 0.0,
        generator: torch.Generator | None = None,
        batch_size: int = 500,
        precision: str = "fp32",
        return_invalid: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Token ids of ``n`` sampled sequences: long ``[n, L]`` (with ``return_invalid``, also the bool mask
        ``[n, L]`` of the positions whose bits named no token and were read as the end token).

        Args:
            n: sequences.
            steps: network evaluations (DPM-Solver++(2M) and DDIM/DDPM: one per step; masked: one per step).
            sampler: ``ddim``, ``ddpm`` or ``dpmpp2m`` (bits); ignored by the masked model.
            td: asymmetric time interval in steps (bits).
            generator: the source of all noise.
            batch_size: sequences per batch.
            precision: ``fp32`` or ``bf16`` (autocast of the network).
        """
        if n < 1 or steps < 1 or batch_size < 1:
            raise ValueError(f"n, steps and batch_size must be >= 1, got {n}, {steps}, {batch_size}")
        SamplingOptions(sampler=sampler, precision=precision)  # one-line errors before any work
        generator = resolve_generator(generator)
        cfg, den = self.net_config, make_denoiser(self.net, self.net_config)
        out, bad = [], []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            if isinstance(den, MaskedDenoiser):
                codes = masked_sample(
                    den,
                    (b, cfg.vocab_size, cfg.max_len),
                    steps=steps,
                    generator=generator,
                    precision=precision,
                )
                out.append(codes.argmax(dim=1))
                bad.append(torch.zeros_like(out[-1], dtype=torch.bool))
                continue
            x_init = torch.randn((b, cfg.max_len, cfg.codec.num_bits), generator=generator)
            result = sample_model(
                as_model(den),
                x_init,
                TimeGrid.uniform(steps, td),
                SamplingOptions(sampler=sampler, precision=precision),
                generator=generator,
            )
            ids, invalid = cfg.codec.decode_sequence(result.samples, return_invalid=True)
            out.append(torch.where(invalid, torch.full_like(ids, END), ids))
            bad.append(invalid)
        return (torch.cat(out), torch.cat(bad)) if return_invalid else torch.cat(out)

    def sample(self, n: int, **kwargs: Any) -> list[str]:
        """``n`` sampled sequences as strings (keyword arguments as :meth:`generate`)."""
        ids = self.generate(n, **kwargs)
        assert isinstance(ids, Tensor)
        return self.tokenizer.decode(ids)

    @torch.no_grad()
    def nll(
        self, sequences: list[str], *, draws: int = 4, generator: torch.Generator | None = None
    ) -> Tensor:
        """The variational bound on −log p of each sequence, nats ``float64 [B]`` (the same units for both
        models: the padded sequence of ``L`` ids, a bijection of the sequence; divide by tokens for a rate).

        Raises:
            ValueError: a sequence with an unknown token or longer than the model's ``L``.
        """
        ids = self.tokenizer.encode(sequences, self.net_config.max_len)
        x0 = encode_codes(self.net_config, ids)
        den = make_denoiser(self.net, self.net_config)
        return nll_bound(den, x0, generator=resolve_generator(generator), draws=draws)


def load_seq_model(path: str | Path, *, use_ema: bool = True) -> SeqModel:
    """Load a trained sequence model from its run folder (or its ``checkpoint/`` folder).

    Raises:
        FileNotFoundError: no checkpoint, or no tokeniser next to it.
        ValueError: the checkpoint is not a sequence run, or does not match its configuration.
    """
    ckpt_dir = find_checkpoint(Path(path))
    run_dir = ckpt_dir.parent if ckpt_dir.name == "checkpoint" else ckpt_dir
    tok_path = run_dir / TOKENIZER_FILE
    if not tok_path.is_file():
        raise FileNotFoundError(f"tokeniser not found: {tok_path} (is {run_dir} a sequence run folder?)")
    ckpt = load_checkpoint(ckpt_dir, training_state=False)
    if ckpt.config.get("kind") != "seq":
        raise ValueError(f"{ckpt_dir} is not a sequence model (config kind={ckpt.config.get('kind')!r})")
    run = SeqRunConfig.from_dict(ckpt.config["run"])
    net_config = SeqNetConfig.from_dict(ckpt.config["net"])
    tokenizer = SeqTokenizer.load(tok_path)
    if tokenizer.vocab_size != net_config.vocab_size:
        raise ValueError(
            f"tokeniser {tok_path} has {tokenizer.vocab_size} ids but the model was built for "
            f"{net_config.vocab_size}"
        )
    net = build_seq_net(net_config)
    state = ckpt.ema_state if (use_ema and ckpt.ema_state is not None) else ckpt.model_state
    load_state_strict(net, state, what=f"weights of {ckpt_dir}")
    net.eval()
    data_path = run_dir / DATA_FILE
    data = json.loads(data_path.read_text()) if data_path.is_file() else {}
    return SeqModel(run, net_config, net, tokenizer, data, run_dir)
