"""The MOSES metrics of generated molecules (Polykovskiy et al. 2020), computed with RDKit and fcd-torch.

Our own code for MOSES's definitions (``moses.metrics``, whose package does not import with current RDKit and
pandas; a test checks the two agree where it does), against MOSES's precomputed statistics of its test set
(``test_stats.npz`` in the ``molsets`` wheel):

- **valid**: fraction of the generated strings RDKit parses and sanitises.
- **unique@k**: distinct canonical SMILES among the first ``k`` valid ones, over ``k`` (all valid if fewer).
- **novelty**: distinct valid canonical SMILES not in MOSES's training set, over the distinct valid ones.
- **FCD/Test**: Fréchet distance of ChemNet's penultimate activations (fcd-torch, which ships the weights) of the
  valid molecules to the test set's precomputed mean and covariance. Biased upwards at small ``n``: compare only
  at equal ``n``, beside the floor.
- **SNN/Test**: mean over the valid molecules of the largest Tanimoto similarity (Morgan radius 2, 1024 bits) to
  a test molecule.
- **Frag/Test**, **Scaf/Test**: cosine similarity of the counts of BRICS fragments / Bemis-Murcko scaffolds (with
  at least two rings) to the test set's.
- **IntDiv**: one minus the mean Tanimoto similarity over all pairs of valid molecules (self-pairs included, as
  MOSES does).

The floor of every metric is the same computation on ``n`` molecules of MOSES's training set (the "Train" row of
MOSES's table): what the yardstick gives real molecules at this ``n`` — its novelty is 0 by definition.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import torch

from bitcompose.seq.data import moses_file

__all__ = ["METRICS", "molecule_metrics", "canonical_smiles", "missing_rdkit", "rdkit_mol"]

#: The metrics, in MOSES's order.
METRICS = (
    "valid",
    "unique@1k",
    "unique@10k",
    "novelty",
    "FCD/Test",
    "SNN/Test",
    "Frag/Test",
    "Scaf/Test",
    "IntDiv",
)


def missing_rdkit() -> str | None:
    """Why the molecule metrics cannot run here (``None`` if they can)."""
    try:
        import fcd_torch  # noqa: F401
        import rdkit  # noqa: F401
    except ImportError as exc:
        return f"the molecule metrics need rdkit and fcd-torch ({exc.name} is missing): make install installs them"
    return None


def rdkit_mol(smiles: str) -> Any:
    """RDKit's sanitised molecule of a SMILES string, or ``None`` if it is not a valid molecule."""
    from rdkit import Chem, rdBase

    rdBase.DisableLog("rdApp.*")  # an invalid string is counted, not printed
    if not smiles:
        return None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    try:
        Chem.SanitizeMol(mol)
    except ValueError:
        return None
    return mol


def canonical_smiles(smiles: str) -> str | None:
    """RDKit's canonical SMILES of a string, or ``None`` if it is not a valid molecule."""
    from rdkit import Chem

    mol = rdkit_mol(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


@cache
def _test_stats() -> dict[str, Any]:
    return dict(np.load(moses_file("test_stats.npz"), allow_pickle=True)["stats"].item())


@cache
def _train_set() -> frozenset[str]:
    from bitcompose.seq.data import load_sequences

    return frozenset(load_sequences("moses").train)


def _fingerprints(mols: Sequence[Any]) -> np.ndarray:
    """Morgan fingerprints (radius 2, 1024 bits) ``uint8 [N, 1024]``."""
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    return np.stack([gen.GetFingerprintAsNumPy(m).astype(np.uint8) for m in mols])


def _tanimoto_agg(ref: np.ndarray, gen: np.ndarray, agg: str, chunk: int = 8192) -> np.ndarray:
    """Per generated fingerprint, the max (or mean) Tanimoto similarity to the reference ones: ``[N_gen]``."""
    g = torch.from_numpy(gen).float()
    g_sum = g.sum(1)
    best = torch.zeros(g.shape[0], dtype=torch.float64)
    total = torch.zeros(g.shape[0], dtype=torch.float64)
    for start in range(0, ref.shape[0], chunk):
        r = torch.from_numpy(ref[start : start + chunk]).float()
        tp = r @ g.T  # [R, G]
        jac = tp / (r.sum(1, keepdim=True) + g_sum[None, :] - tp)
        jac = torch.nan_to_num(jac, nan=1.0).double()  # two empty fingerprints are identical
        if agg == "max":
            best = torch.maximum(best, jac.max(0).values)
        else:
            total += jac.sum(0)
    return (best if agg == "max" else total / ref.shape[0]).numpy()


def _fragments(mols: Sequence[Any]) -> Counter[str]:
    from rdkit import Chem
    from rdkit.Chem import rdmolops

    counts: Counter[str] = Counter()
    for mol in mols:
        counts.update(Chem.MolToSmiles(rdmolops.FragmentOnBRICSBonds(mol)).split("."))
    return counts


def _scaffolds(mols: Sequence[Any], min_rings: int = 2) -> Counter[str]:
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    counts: Counter[str] = Counter()
    for mol in mols:
        try:
            scaffold = MurckoScaffold.GetScaffoldForMol(mol)
        except (ValueError, RuntimeError):
            continue
        smiles = Chem.MolToSmiles(scaffold)
        if smiles and scaffold.GetRingInfo().NumRings() >= min_rings:
            counts[smiles] += 1
    return counts


def _cosine(ref: Counter[str], gen: Counter[str]) -> float:
    if not ref or not gen:
        return math.nan
    keys = sorted(set(ref) | set(gen))
    a = np.array([ref.get(k, 0) for k in keys], dtype=np.float64)
    b = np.array([gen.get(k, 0) for k in keys], dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _fcd(smiles: Sequence[str], stats: dict[str, Any]) -> float:
    from fcd_torch import FCD
    from fcd_torch.utils import calculate_frechet_distance

    if len(smiles) < 2:
        return math.nan
    with torch.random.fork_rng(devices=[]):  # fcd-torch builds its network through the global RNG
        pgen = FCD(device="cpu", n_jobs=1).precalc(list(smiles))
    return float(calculate_frechet_distance(stats["mu"], stats["sigma"], pgen["mu"], pgen["sigma"]))


def molecule_metrics(smiles: Sequence[str]) -> dict[str, float]:
    """MOSES's metrics of generated SMILES against its test set (definitions in the module docstring).

    Args:
        smiles: the generated strings (invalid ones count against ``valid`` only).

    Returns:
        ``{metric: value}`` for :data:`METRICS`, plus ``n`` (strings) and ``n_valid``; a metric of no valid
        molecule is NaN.

    Raises:
        ValueError: no strings. ImportError: rdkit or fcd-torch is missing (:func:`missing_rdkit`).
    """
    if len(smiles) == 0:
        raise ValueError("no molecules to evaluate")
    why = missing_rdkit()
    if why is not None:
        raise ImportError(why)
    from rdkit import Chem

    mols = [rdkit_mol(s) for s in smiles]
    valid_mols = [m for m in mols if m is not None]
    canon = [Chem.MolToSmiles(m) for m in valid_mols]
    out: dict[str, float] = {"n": float(len(smiles)), "n_valid": float(len(canon))}
    out["valid"] = len(canon) / len(smiles)
    for name, k in (("unique@1k", 1000), ("unique@10k", 10000)):
        head = canon[:k]
        out[name] = len(set(head)) / len(head) if head else math.nan
    distinct = set(canon)
    out["novelty"] = len(distinct - _train_set()) / len(distinct) if distinct else math.nan
    stats = _test_stats()
    if not canon:
        out.update({k: math.nan for k in METRICS if k not in out})
        return out
    out["FCD/Test"] = _fcd(canon, stats["FCD"])
    fps = _fingerprints(valid_mols)
    out["SNN/Test"] = float(_tanimoto_agg(stats["SNN"]["fps"], fps, "max").mean())
    out["Frag/Test"] = _cosine(stats["Frag"]["frag"], _fragments(valid_mols))
    out["Scaf/Test"] = _cosine(stats["Scaf"]["scaf"], _scaffolds(valid_mols))
    out["IntDiv"] = float(1.0 - _tanimoto_agg(fps, fps, "mean").mean())
    return out
