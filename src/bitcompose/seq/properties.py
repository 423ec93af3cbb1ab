"""Molecular properties as condition labels, and composed property requests ("qed:high AND NOT logp:2-3").

A property-conditioned sequence model (``SeqRunConfig(condition="properties")``) learns ``p(x | a)`` for every
attribute ``a`` of :data:`ATTRIBUTES` (one bin of one property) and, through label dropout, ``p(x)``; a request
composes them (:mod:`bitcompose.seq.compose`). The properties are RDKit's own functions on the decoded molecule:
QED (Bickerton et al. 2012, ``rdkit.Chem.QED.qed``) and the Wildman–Crippen logP (``Crippen.MolLogP``). The bins
split MOSES's training molecules into usable shares (measured on 3,000 of them: QED 18 / 44 / 38 %, logP
8 / 15 / 42 / 34 / 2 %); "qed:high AND logp:2-3" holds for 18 % of them, "qed:high AND NOT logp:2-3" for 20 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bitcompose.seq.molecules import rdkit_mol

__all__ = [
    "ATTRIBUTES",
    "PROPERTIES",
    "Attribute",
    "LabelMemo",
    "Request",
    "attribute_id",
    "attribute_labels",
    "parse_request",
    "property_values",
    "satisfied",
]


@dataclass(frozen=True)
class Attribute:
    """One condition label: ``low <= property < high``.

    Attributes:
        name: its spelling in a request (``qed:high``, ``logp:2-3``).
        prop: the property (a key of :data:`PROPERTIES`).
        low, high: the bin, ``[low, high)``.
    """

    name: str
    prop: str
    low: float
    high: float


#: The properties, in the column order of :func:`property_values`.
PROPERTIES = ("qed", "logp")

_INF = math.inf
#: The condition labels: label ``i`` of a property-conditioned model is ``ATTRIBUTES[i]``.
ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("qed:low", "qed", -_INF, 0.7),
    Attribute("qed:mid", "qed", 0.7, 0.85),
    Attribute("qed:high", "qed", 0.85, _INF),
    Attribute("logp:<1", "logp", -_INF, 1.0),
    Attribute("logp:1-2", "logp", 1.0, 2.0),
    Attribute("logp:2-3", "logp", 2.0, 3.0),
    Attribute("logp:3-4", "logp", 3.0, 4.0),
    Attribute("logp:>4", "logp", 4.0, _INF),
)


def attribute_id(name: str) -> int:
    """The label of an attribute name (case-insensitive); ``ValueError`` naming the known ones otherwise."""
    for i, a in enumerate(ATTRIBUTES):
        if a.name == name.strip().lower():
            return i
    raise ValueError(f"unknown property {name!r}; expected one of {', '.join(a.name for a in ATTRIBUTES)}")


def property_values(smiles: Sequence[str]) -> Tensor:
    """``float64 [n, P]``: the :data:`PROPERTIES` of each molecule (NaN for a string that is not a molecule)."""
    from rdkit.Chem import QED, Crippen

    logp = Crippen.MolLogP  # type: ignore[attr-defined]  # (built by RDKit at import; its stubs miss it)

    out = torch.full((len(smiles), len(PROPERTIES)), math.nan, dtype=torch.float64)
    for i, s in enumerate(smiles):
        mol = rdkit_mol(s)
        if mol is not None:
            out[i, 0], out[i, 1] = QED.qed(mol), logp(mol)
    return out


def attribute_labels(values: Tensor) -> Tensor:
    """``long [n, P]``: for each molecule and property (``values`` from :func:`property_values`), the label of
    the attribute whose bin holds it (−1 for an invalid molecule)."""
    labels = torch.full(values.shape, -1, dtype=torch.long)
    for i, a in enumerate(ATTRIBUTES):
        v = values[:, PROPERTIES.index(a.prop)]
        labels[:, PROPERTIES.index(a.prop)][(v >= a.low) & (v < a.high)] = i
    return labels


class LabelMemo:
    """:func:`attribute_labels` of molecules, each computed once (RDKit's QED costs ≈ 2 ms per molecule) and kept
    for the rest of a training run."""

    def __init__(self) -> None:
        self._rows: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __call__(self, smiles: Sequence[str]) -> Tensor:
        """``long [n, P]``: the labels of ``smiles``."""
        new = [s for s in dict.fromkeys(smiles) if s not in self._rows]
        if new:
            self._rows.update(zip(new, attribute_labels(property_values(new)), strict=True))
        return torch.stack([self._rows[s] for s in smiles])


@dataclass(frozen=True)
class Request:
    """A conjunction of attributes, each asked for or (``NOT``) against.

    Attributes:
        terms: ``(label, negated)`` per term, in the order written.
    """

    terms: tuple[tuple[int, bool], ...]

    @property
    def text(self) -> str:
        """The request as :func:`parse_request` reads it."""
        return " AND ".join(("NOT " if neg else "") + ATTRIBUTES[a].name for a, neg in self.terms)


def parse_request(text: str) -> Request:
    """``"qed:high AND logp:2-3"``, ``"qed:high AND NOT logp:2-3"`` (``AND``/``NOT`` in any case) → a Request.

    Raises:
        ValueError: an empty request, an unknown attribute, a first term negated (a NOT needs something to
            compose with), or one attribute named twice.
    """
    words = text.split()
    usage = f"a request is attributes joined by AND (e.g. 'qed:high AND logp:2-3'), got {text!r}"
    terms: list[tuple[int, bool]] = []
    i = 0
    while True:
        negated = i < len(words) and words[i].lower() == "not"
        i += negated
        if i >= len(words) or words[i].lower() in ("and", "not"):
            raise ValueError(usage)
        terms.append((attribute_id(words[i]), negated))
        i += 1
        if i == len(words):
            break
        if words[i].lower() != "and":
            raise ValueError(f"expected AND after {words[i - 1]!r} in the request {text!r}")
        i += 1
    if terms[0][1]:
        raise ValueError(f"the first term of a request cannot be negated: {text!r}")
    if len({a for a, _ in terms}) < len(terms):
        raise ValueError(f"an attribute is named twice in {text!r}")
    return Request(tuple(terms))


def satisfied(smiles: Sequence[str], request: Request) -> Tensor:
    """``bool [n]``: the molecule is valid and every term of ``request`` holds (RDKit's QED and logP)."""
    values = property_values(smiles)
    ok = ~values.isnan().any(dim=1)
    for a, neg in request.terms:
        attr = ATTRIBUTES[a]
        v = values[:, PROPERTIES.index(attr.prop)]
        inside = (v >= attr.low) & (v < attr.high)
        ok &= ~inside if neg else inside
    return ok
