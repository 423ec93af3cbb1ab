"""Autoregressive caption baseline: the same image encoder and decoder size as the diffusion captioner.

Token embedding + learned positions, causal self-attention, cross-attention to the image tokens, a linear
vocabulary head trained with cross-entropy under teacher forcing (the paper's "Autoregressive Transformer" row of
Table 3). A learned start symbol (row ``V`` of the embedding table) precedes every caption, so the tokenizer needs
no BOS id. Decoding: greedy or beam search (no KV cache: captions are short).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitcompose.nets.caption import CaptionNetConfig, DecoderLayer, ImageEncoder

__all__ = ["CaptionARNet", "causal_mask"]


def causal_mask(length: int, device: torch.device | None = None) -> Tensor:
    """Bool ``[L, L]`` mask, True above the diagonal (position i may not attend to j > i)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


class CaptionARNet(nn.Module):
    """Image encoder + causal Transformer decoder over token ids.

    Args:
        config: the shared sizes (``encoding``, ``bit_scale``, ``self_condition`` and ``output_head`` unused).
    """

    def __init__(self, config: CaptionNetConfig) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        self.start_id = config.vocab_size
        self.encoder = ImageEncoder(config)
        self.embed = nn.Embedding(config.vocab_size + 1, d)
        self.pos = nn.Parameter(torch.randn(1, config.max_len, d) * 0.02)
        self.layers = nn.ModuleList(
            DecoderLayer(d, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.out_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size)

    def encode(self, images: Tensor) -> Tensor:
        """Image tokens ``[B, N, d]`` from images ``[B, C, H, W]``."""
        return self.encoder(images)

    def forward(self, inputs: Tensor, memory: Tensor) -> Tensor:
        """Next-token logits.

        Args:
            inputs: long ``[B, T]`` with ``T <= L``: the start id followed by the first ``T−1`` tokens.
            memory: image tokens ``[B, N, d]`` (from :meth:`encode`).

        Returns:
            float ``[B, T, V]``: logits of token ``i`` given ``inputs[:, :i+1]``.
        """
        t = inputs.shape[1]
        if inputs.ndim != 2 or not 1 <= t <= self.config.max_len:
            raise ValueError(
                f"inputs must be [B, T] with 1 <= T <= {self.config.max_len}, got {tuple(inputs.shape)}"
            )
        h = self.embed(inputs) + self.pos[:, :t]
        mask = causal_mask(t, inputs.device)
        for layer in self.layers:
            h = layer(h, memory, attn_mask=mask)
        return self.head(self.out_norm(h))

    def shift_right(self, tokens: Tensor) -> Tensor:
        """Teacher-forcing inputs: ``[start, tokens[:, :-1]]`` (long ``[B, L]`` → ``[B, L]``)."""
        start = torch.full_like(tokens[:, :1], self.start_id)
        return torch.cat([start, tokens[:, :-1]], dim=1)

    def loss(self, images: Tensor, tokens: Tensor, ignore_index: int = -100) -> Tensor:
        """Mean cross-entropy of ``tokens`` (long ``[B, L]``) given images (teacher forcing)."""
        logits = self(self.shift_right(tokens), self.encode(images))
        return F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten(), ignore_index=ignore_index)

    @torch.no_grad()
    def greedy(self, images: Tensor, eos_id: int | None = None, pad_id: int | None = None) -> Tensor:
        """Greedy decoding: long ``[B, L]``; after an ``eos_id`` every position is ``pad_id`` (if both given)."""
        return self.beam_search(images, beam=1, eos_id=eos_id, pad_id=pad_id)

    @torch.no_grad()
    def beam_search(
        self,
        images: Tensor,
        beam: int = 4,
        eos_id: int | None = None,
        pad_id: int | None = None,
        length_penalty: float = 0.0,
    ) -> Tensor:
        """Beam search over whole captions.

        A beam is finished once it emits ``eos_id``; it then keeps its score and is extended with ``pad_id``
        (or ``eos_id`` when no pad id is given). Scores are summed log-probabilities divided by
        ``length**length_penalty`` when ranking finished beams (0 = plain sum). With ``beam=1`` this is greedy.

        Args:
            images: float ``[B, C, H, W]``.
            beam: beam width ``K >= 1``.
            eos_id: end-of-caption id (None: always decode ``L`` tokens).
            pad_id: id written after the end.
            length_penalty: exponent of the length normalisation.

        Returns:
            long ``[B, L]``: the best caption per image.
        """
        if beam < 1:
            raise ValueError(f"beam must be >= 1, got {beam}")
        fill = pad_id if pad_id is not None else eos_id
        memory = self.encode(images)
        b, n, d = memory.shape
        big_l = self.config.max_len
        mem = memory[:, None].expand(b, beam, n, d).reshape(b * beam, n, d)
        seqs = torch.full((b * beam, 1), self.start_id, dtype=torch.long, device=memory.device)
        scores = torch.zeros(b, beam, device=memory.device)
        scores[:, 1:] = float("-inf")  # all beams start identical: keep one alive
        finished = torch.zeros(b * beam, dtype=torch.bool, device=memory.device)
        lengths = torch.zeros(b * beam, device=memory.device)
        for _ in range(big_l):
            logp = F.log_softmax(self(seqs, mem)[:, -1].float(), dim=-1)  # [B*K, V]
            v = logp.shape[-1]
            if eos_id is not None and fill is not None:
                # a finished beam can only continue with the fill token, at no cost
                frozen = torch.full_like(logp, float("-inf"))
                frozen[:, fill] = 0.0
                logp = torch.where(finished[:, None], frozen, logp)
            cand = (scores.reshape(-1, 1) + logp).reshape(b, beam * v)
            top_scores, top_idx = cand.topk(beam, dim=1)  # [B, K]
            src = (top_idx // v) + torch.arange(b, device=memory.device)[:, None] * beam
            tok = top_idx % v
            src = src.reshape(-1)
            seqs = torch.cat([seqs[src], tok.reshape(-1, 1)], dim=1)
            was_finished = finished[src]
            lengths = lengths[src] + (~was_finished).float()
            finished = was_finished | (tok.reshape(-1) == eos_id if eos_id is not None else False)
            scores = top_scores
            if bool(finished.all()):
                break
        out = seqs[:, 1:]
        if out.shape[1] < big_l:
            pad = torch.full((out.shape[0], big_l - out.shape[1]), fill if fill is not None else 0)
            out = torch.cat([out, pad.to(out)], dim=1)
        ranked = scores / lengths.clamp_min(1.0).reshape(b, beam) ** length_penalty
        best = ranked.argmax(dim=1) + torch.arange(b, device=memory.device) * beam
        return out[best]
