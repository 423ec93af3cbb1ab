"""Integers ↔ analog bits (Bit Diffusion, Chen, Zhang & Hinton 2023, §2 and App. A–C).

A symbol ``v ∈ {0, …, K−1}`` becomes ``n = ⌈log2 K⌉`` bits, and each bit ``β ∈ {0, 1}`` becomes the real
number ``(2β − 1)·b`` ∈ {−b, +b} ("analog bits", scale ``b``). Decoding thresholds at 0 (``bit = a > 0``),
whatever ``b``.

Encodings (the paper's ``b_type``):

* ``"binary"`` (``uint8``): the plain binary code of ``v``, **LSB-first**: bit ``i`` is ``(v >> i) & 1``, as
  the paper's ``int2bit`` (Algorithm 3).
* ``"gray"``: the reflected binary Gray code ``g = v ^ (v >> 1)``, then its binary bits; neighbouring values
  differ in exactly one bit. Decoding inverts the Gray code with a prefix XOR.
* ``"random"`` (``uint8 (rand)``): a fixed permutation ``p`` of ``0..K−1``; ``v`` is coded as the binary bits
  of ``p[v]``. ``p`` is what ``numpy.random.seed(42); p = numpy.arange(K); numpy.random.shuffle(p)`` gives
  (computed with a private ``numpy.random.RandomState(42)``; for ``K = 256`` it starts 228, 6, 79, 206, as the
  official table).
* ``"onehot"``: ``K`` channels, ``+b`` at ``v`` and ``−b`` elsewhere; decoded by argmax (always valid).
* ``"continuous"``: not bits — one real number per symbol, ``(2v/(K−1) − 1)·b`` ∈ [−b, b] (the paper's
  continuous-pixel DDPM reference of Table 1, on the same network and sampler); decoded by rounding to the
  nearest level, clamped to ``0..K−1`` (always valid).

Invalid codes. When ``K`` is not a power of two some bit patterns name no symbol: a binary pattern ``≥ K``, a
Gray pattern whose decoded value is ``≥ K``, or a ``"random"`` pattern ``≥ K`` (outside the permutation's
range). The one policy for all of them: **the decoded value is clamped to K−1** (the paper is silent; SCD-Net
also clamps token ids). :meth:`BitCodec.count_invalid` counts such symbols and
``decode(a, return_invalid=True)`` returns their mask.

Layouts: images ``[B, C, H, W]`` become ``[B, C·n, H, W]`` with the ``n`` bits of channel ``c`` contiguous at
analog channels ``c·n … c·n+n−1``, LSB first (official ``rgb2bit``: ``[R bit0..7, G bit0..7, B bit0..7]``);
sequences ``[B, L]`` become ``[B, L, n]``.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Literal, overload

import numpy as np
import torch
from torch import Tensor

from bitcompose.core.config import Config

__all__ = ["BitCodec", "ENCODINGS"]

ENCODINGS = ("binary", "gray", "random", "onehot", "continuous")

# "random" and "onehot" build tables (or channels) with K entries; binary/gray never build tables (except on
# request, in code_table()). Caps keep a typo from allocating gigabytes, and keep bit patterns inside int64.
_MAX_TABLE_VALUES = 2**24
_MAX_BITS = 62


def _gray_decode(code: Tensor, num_bits: int) -> Tensor:
    """Inverse of ``g = v ^ (v >> 1)`` for ``num_bits``-bit codes: ``v = g ^ (g >> 1) ^ (g >> 2) ^ …``.

    ``code``: int64 tensor of any shape; returns the same shape. Uses ⌈log2 num_bits⌉ vectorised steps.
    """
    value = code
    shift = 1
    while shift < num_bits:
        value = value ^ (value >> shift)
        shift *= 2
    return value


@dataclass(frozen=True)
class BitCodec(Config):
    """Integers in ``{0, …, K−1}`` ↔ analog bits in ``{−scale, +scale}`` (or one real in ``[−scale, scale]``).

    Args:
        num_values: alphabet size ``K ≥ 2`` (any integer, not only powers of two).
        encoding: ``"binary"`` (LSB-first), ``"gray"``, ``"random"`` (fixed seed-42 permutation),
            ``"onehot"`` or ``"continuous"`` (the value itself, rescaled to ``[−scale, scale]``).
        scale: the bit scale ``b > 0``; bits are ``±scale``.

    Attributes:
        num_bits: analog channels per symbol: ``⌈log2 K⌉`` (1 for K = 2), ``K`` for one-hot, 1 for continuous.

    Example:
        >>> codec = BitCodec(8)
        >>> codec.encode(torch.tensor([6])).tolist()  # 6 = 0b110, LSB first -> bits [0, 1, 1]
        [[-1.0, 1.0, 1.0]]
    """

    num_values: int
    encoding: str = "binary"
    scale: float = 1.0
    num_bits: int = field(init=False)
    _perm: Tensor | None = field(init=False, repr=False, compare=False)
    _inv_perm: Tensor | None = field(init=False, repr=False, compare=False)
    _cache: dict[tuple[str, torch.device], Tensor] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        k = self.num_values
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"num_values must be an integer, got {k!r} ({type(k).__name__})")
        k = operator.index(k)
        if k < 2:
            raise ValueError(f"num_values must be >= 2 (an alphabet of at least two symbols), got {k}")
        if not isinstance(self.encoding, str) or self.encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r}; expected one of {', '.join(ENCODINGS)}")
        s = self.scale
        if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)):
            raise ValueError(f"scale must be a positive real number, got {s!r}")
        s = float(s)
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"scale must be positive and finite, got {s}")
        if self.encoding in ("random", "onehot") and k > _MAX_TABLE_VALUES:
            raise ValueError(
                f"num_values={k} is too large for encoding {self.encoding!r} (it builds a table of K "
                f"entries); the limit is {_MAX_TABLE_VALUES}"
            )
        num_bits = {"onehot": k, "continuous": 1}.get(self.encoding, (k - 1).bit_length())
        if self.encoding in ("binary", "gray", "random") and num_bits > _MAX_BITS:
            raise ValueError(f"num_values={k} needs {num_bits} bits; at most {_MAX_BITS} are supported")
        perm = inv_perm = None
        if self.encoding == "random":
            p = np.arange(k, dtype=np.int64)
            np.random.RandomState(42).shuffle(p)  # private RNG: the global numpy state is untouched
            perm = torch.from_numpy(p)
            inv_perm = torch.empty_like(perm)
            inv_perm[perm] = torch.arange(k, dtype=torch.int64)
        set_ = object.__setattr__
        set_(self, "num_values", k)
        set_(self, "scale", s)
        set_(self, "num_bits", num_bits)
        set_(self, "_perm", perm)
        set_(self, "_inv_perm", inv_perm)
        set_(self, "_cache", {})

    # ------------------------------------------------------------------ tables

    def _table(self, name: str, device: torch.device) -> Tensor:
        """The permutation (``"perm"``) or its inverse (``"inv_perm"``) on ``device`` (cached per device)."""
        key = (name, device)
        table = self._cache.get(key)
        if table is None:
            base = self._perm if name == "perm" else self._inv_perm
            assert base is not None
            table = base.to(device)
            self._cache[key] = table
        return table

    @property
    def permutation(self) -> Tensor | None:
        """For ``"random"``: int64 ``[K]`` with ``permutation[v]`` = the code of ``v``; ``None`` otherwise."""
        return None if self._perm is None else self._perm.clone()

    @property
    def lattice(self) -> Tensor:
        """The values one analog channel takes, float64 ``[V]`` sorted: ``[−b, b]`` for bits and one-hot codes, the
        ``K`` levels ``(2v/(K−1) − 1)·b`` for ``"continuous"`` (the decoder lattice of the likelihood bound)."""
        if self.encoding == "continuous":
            return (
                2.0 * torch.arange(self.num_values, dtype=torch.float64) / (self.num_values - 1) - 1
            ) * self.scale
        return torch.tensor([-self.scale, self.scale], dtype=torch.float64)

    def code_table(
        self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """The analog code of every value: float ``[K, num_bits]``, row ``v`` = ``encode(v)``.

        Used by the softmax-factorised output head (expected code under a K-way softmax). Builds
        ``K·num_bits`` numbers, so call it only when the table is needed.
        """
        values = torch.arange(self.num_values, device=device)
        return self.encode(values).to(dtype)

    # ------------------------------------------------------------------ checks

    def _check_values(self, x: Tensor, what: str) -> None:
        if not isinstance(x, Tensor):
            raise ValueError(f"{what} expects a torch.Tensor of integers, got {type(x).__name__}")
        if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
            raise ValueError(
                f"{what} expects an integer tensor (values 0..{self.num_values - 1}), got dtype {x.dtype}; "
                "convert explicitly (e.g. x.round().long()) if the values are integral"
            )
        if x.numel() > 0:
            lo, hi = int(x.min()), int(x.max())
            if lo < 0 or hi >= self.num_values:
                raise ValueError(
                    f"{what}: values must lie in [0, {self.num_values - 1}] (num_values={self.num_values}), "
                    f"got min {lo}, max {hi}"
                )

    def _check_analog(self, a: Tensor, what: str) -> None:
        if not isinstance(a, Tensor):
            raise ValueError(f"{what} expects a torch.Tensor of analog bits, got {type(a).__name__}")
        if not a.is_floating_point():
            raise ValueError(f"{what} expects a floating-point tensor of analog bits, got dtype {a.dtype}")
        if a.ndim == 0 or a.shape[-1] != self.num_bits:
            raise ValueError(
                f"{what} expects a trailing dimension of size num_bits={self.num_bits} ({self!r}), "
                f"got shape {tuple(a.shape)}"
            )
        if bool(torch.isnan(a).any()):
            raise ValueError(f"{what}: the analog bits contain NaN")

    # ------------------------------------------------------------------ core

    def encode(self, x: Tensor) -> Tensor:
        """Integers → analog bits.

        Args:
            x: integer tensor ``[...]`` with values in ``[0, K)`` (any integer dtype, any device).

        Returns:
            float32 ``[..., num_bits]`` with values in ``{−scale, +scale}`` (``continuous``: ``[−scale, scale]``),
            on ``x``'s device.
        """
        self._check_values(x, "encode")
        v = x.long()
        if self.encoding == "continuous":
            level = v.to(torch.float32) * (2.0 / (self.num_values - 1)) - 1.0
            return (level * self.scale).unsqueeze(-1)
        if self.encoding == "onehot":
            bits = torch.nn.functional.one_hot(v, self.num_values)
        else:
            if self.encoding == "gray":
                code = v ^ (v >> 1)
            elif self.encoding == "random":
                code = self._table("perm", v.device)[v]
            else:
                code = v
            shifts = torch.arange(self.num_bits, device=v.device, dtype=torch.int64)
            bits = (code.unsqueeze(-1) >> shifts) & 1
        return bits.to(torch.float32) * (2.0 * self.scale) - self.scale

    def _decode(self, a: Tensor) -> tuple[Tensor, Tensor]:
        if self.encoding == "continuous":
            level = (a[..., 0].double() / self.scale + 1.0) * (0.5 * (self.num_values - 1))
            value = level.round().clamp(0, self.num_values - 1).long()
            return value, torch.zeros_like(value, dtype=torch.bool)
        if self.encoding == "onehot":
            value = a.argmax(dim=-1)
            return value, torch.zeros_like(value, dtype=torch.bool)
        shifts = torch.arange(self.num_bits, device=a.device, dtype=torch.int64)
        code = ((a > 0).long() << shifts).sum(dim=-1)
        k = self.num_values
        if self.encoding == "random":
            invalid = code >= k
            value = self._table("inv_perm", a.device)[code.clamp_max(k - 1)]
        else:
            value = _gray_decode(code, self.num_bits) if self.encoding == "gray" else code
            invalid = value >= k
        value = torch.where(invalid, torch.full_like(value, k - 1), value)
        return value, invalid

    @overload
    def decode(self, a: Tensor, return_invalid: Literal[False] = ...) -> Tensor: ...

    @overload
    def decode(self, a: Tensor, return_invalid: Literal[True]) -> tuple[Tensor, Tensor]: ...

    def decode(self, a: Tensor, return_invalid: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Analog bits → integers (threshold at 0; argmax for one-hot).

        Args:
            a: float ``[..., num_bits]`` (any real values; only the sign matters, or the argmax for one-hot).
            return_invalid: also return the bool mask ``[...]`` of symbols whose code was invalid.

        Returns:
            int64 ``[...]`` in ``[0, K)``; invalid codes decode to ``K − 1``. With ``return_invalid``, a tuple
            ``(values, invalid_mask)``.
        """
        return self._checked_decode(a, "decode", return_invalid)

    def _checked_decode(self, a: Tensor, what: str, return_invalid: bool) -> Tensor | tuple[Tensor, Tensor]:
        self._check_analog(a, what)
        value, invalid = self._decode(a)
        return (value, invalid) if return_invalid else value

    def count_invalid(self, a: Tensor) -> int:
        """Number of symbols in ``a`` (float ``[..., num_bits]``) with an invalid code (0 for one-hot)."""
        self._check_analog(a, "count_invalid")
        return int(self._decode(a)[1].sum())

    # ------------------------------------------------------------------ layouts

    def encode_images(self, x: Tensor) -> Tensor:
        """Images ``long [B, C, H, W]`` → ``float [B, C·n, H, W]``, n = num_bits.

        Channel ``c`` occupies analog channels ``c·n … c·n+n−1`` (LSB first), as the official ``rgb2bit``.
        """
        if not isinstance(x, Tensor) or x.ndim != 4:
            raise ValueError(f"encode_images expects a tensor [B, C, H, W], got shape {_shape(x)}")
        b, c, h, w = x.shape
        bits = self.encode(x)  # [B, C, H, W, n]
        return bits.permute(0, 1, 4, 2, 3).reshape(b, c * self.num_bits, h, w)

    @overload
    def decode_images(self, a: Tensor, return_invalid: Literal[False] = ...) -> Tensor: ...

    @overload
    def decode_images(self, a: Tensor, return_invalid: Literal[True]) -> tuple[Tensor, Tensor]: ...

    def decode_images(self, a: Tensor, return_invalid: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Inverse of :meth:`encode_images`: ``float [B, C·num_bits, H, W]`` → ``long [B, C, H, W]``.

        With ``return_invalid``, also the bool mask ``[B, C, H, W]`` of invalid codes.
        """
        if not isinstance(a, Tensor) or a.ndim != 4:
            raise ValueError(f"decode_images expects a tensor [B, C*num_bits, H, W], got shape {_shape(a)}")
        b, cn, h, w = a.shape
        if cn % self.num_bits != 0:
            raise ValueError(
                f"decode_images: {cn} channels is not a multiple of num_bits={self.num_bits} ({self!r})"
            )
        bits = a.reshape(b, cn // self.num_bits, self.num_bits, h, w).permute(0, 1, 3, 4, 2)
        return self._checked_decode(bits, "decode_images", return_invalid)

    def encode_sequence(self, x: Tensor) -> Tensor:
        """Token sequences ``long [B, L]`` → ``float [B, L, num_bits]``."""
        if not isinstance(x, Tensor) or x.ndim != 2:
            raise ValueError(f"encode_sequence expects a tensor [B, L], got shape {_shape(x)}")
        return self.encode(x)

    @overload
    def decode_sequence(self, a: Tensor, return_invalid: Literal[False] = ...) -> Tensor: ...

    @overload
    def decode_sequence(self, a: Tensor, return_invalid: Literal[True]) -> tuple[Tensor, Tensor]: ...

    def decode_sequence(self, a: Tensor, return_invalid: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Inverse of :meth:`encode_sequence`: ``float [B, L, num_bits]`` → ``long [B, L]`` (+ mask)."""
        if not isinstance(a, Tensor) or a.ndim != 3:
            raise ValueError(f"decode_sequence expects a tensor [B, L, num_bits], got shape {_shape(a)}")
        return self._checked_decode(a, "decode_sequence", return_invalid)


def _shape(x: object) -> object:
    return tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
