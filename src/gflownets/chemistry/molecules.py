"""RDKit molecules from SMILES, quietly: parsing (None for an invalid SMILES, without RDKit's
log lines), canonical SMILES and Morgan fingerprints (radius 2, 2048 bits), shared by the
rewards, the metrics and the fragment chains."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

#: an RDKit molecule (rdkit.Chem.Mol); typed loosely so that importing this module stays cheap
Mol = Any

#: Morgan fingerprints of the metrics and of the Tanimoto reward (ECFP4-like)
MORGAN_RADIUS = 2
MORGAN_BITS = 2048


@contextlib.contextmanager
def rdkit_quiet() -> Iterator[None]:
    """RDKit's log blocked (an invalid SMILES otherwise prints a parse error per molecule to
    stderr), then restored to what it was (`rdBase.BlockLogs`, unlike `RDLogger.DisableLog`,
    leaves a user's own setting alone)."""
    from rdkit import rdBase

    block = rdBase.BlockLogs()
    try:
        yield
    finally:
        del block


def parse_smiles(smiles: Sequence[str]) -> list[Mol | None]:
    """One sanitised RDKit molecule per SMILES; None for an invalid or empty one (no atoms)."""
    from rdkit import Chem

    with rdkit_quiet():
        mols = [Chem.MolFromSmiles(s) if isinstance(s, str) and s.strip() else None for s in smiles]
    return [m if m is not None and m.GetNumAtoms() > 0 else None for m in mols]


def canonical_smiles(smiles: Sequence[str]) -> list[str | None]:
    """RDKit's canonical SMILES of each molecule (None where invalid): equal strings, equal molecules."""
    from rdkit import Chem

    return [None if m is None else Chem.MolToSmiles(m) for m in parse_smiles(smiles)]


@functools.lru_cache(maxsize=1)
def _morgan_generator() -> Any:
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_BITS)


def fingerprints(mols: Sequence[Mol]) -> list[Any]:
    """Morgan bit vectors (radius 2, 2048 bits) of valid molecules, for Tanimoto similarities."""
    generator = _morgan_generator()
    return [generator.GetFingerprint(m) for m in mols]


def rdkit_version() -> str:
    """The RDKit version, part of every cache key: canonical SMILES and descriptors can change with it."""
    import rdkit

    return str(rdkit.__version__)
