"""Chains of two-ended fragments (the molecules of the `fragment-chains` environment): the
vocabulary, the assembly of a chain into one molecule, and the table of every chain of a
length with its molecule and score, computed once and cached on disk.

Each fragment has two attachment points, a head and a tail; a chain joins each fragment's tail
to the next one's head by a single bond, and the two ends left open are capped with hydrogen.
Every fragment is written twice: with its attachment points (`attached`, "[*]C(=O)N[*]", head
first), and as a *linear* SMILES whose first atom is the head and whose last atom outside
branches is the tail, so that the concatenation of linear SMILES is the SMILES of the chain
(ring-closure digits are closed inside each fragment and may be reused). The tests check for all
chains of three fragments that this equals joining the attached forms with `Chem.molzip`.

The table of a (vocabulary, length) pair is the canonical SMILES of every chain (V^L of them,
chain i = its fragment indices read as a base-V number, first fragment most significant) and
of the distinct molecules among them; the scores are computed once per distinct molecule. Both
are cached under `cache_directory()` as compressed .npz files of plain arrays (loaded with
`allow_pickle=False`), named by a hash of what they depend on: the fragments, the length, the
score's identity and the RDKit version; files are written atomically (a temporary file, then
a rename), so concurrent runs never read half a file.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from gflownets.caches import cache_directory
from gflownets.chemistry.molecules import parse_smiles, rdkit_quiet
from gflownets.chemistry.rewards import MolecularReward, identity_key
from gflownets.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Fragment:
    """A two-ended building block: its name, its SMILES with the attachment points (head first),
    and its linear SMILES (head atom first, tail atom last outside branches)."""

    name: str
    attached: str
    linear: str


#: The vocabulary, in the order of `--fragments K` (the first K): small K still mixes rings and
#: linkers. Chosen as common medicinal-chemistry linkers and rings, each with an open valence at
#: both ends so that every chain sanitises; an open end capped with hydrogen is a sensible end
#: group (phenyl, formamide / amine, hydroxyl, ethyl, pyridyl, piperazinyl, aldehyde,
#: thienyl, difluoromethyl), so the molecules stay drug-like: QED 0.08 to 0.95 at length 5 (median 0.69).
FRAGMENTS: tuple[Fragment, ...] = (
    Fragment("p-phenylene", "[*]c1ccc([*])cc1", "c1ccc(cc1)"),
    Fragment("amide", "[*]C(=O)N[*]", "C(=O)N"),
    Fragment("ether", "[*]O[*]", "O"),
    Fragment("ethylene", "[*]CC[*]", "CC"),
    Fragment("pyridine-2,5-diyl", "[*]c1ccc([*])nc1", "c1ccc(nc1)"),
    Fragment("piperazine-1,4-diyl", "[*]N1CCN([*])CC1", "N1CCN(CC1)"),
    Fragment("amine", "[*]N[*]", "N"),
    Fragment("carbonyl", "[*]C(=O)[*]", "C(=O)"),
    Fragment("thiophene-2,5-diyl", "[*]c1ccc([*])s1", "c1ccc(s1)"),
    Fragment("m-phenylene", "[*]c1cccc([*])c1", "c1cccc(c1)"),
    Fragment("difluoromethylene", "[*]C(F)(F)[*]", "C(F)(F)"),
)

#: the most chains a table holds: every chain is assembled and every distinct molecule scored
#: once, at about 1.5 ms each on one core (QED dominates): 2e6 chains take the better part of an hour
MAX_CHAINS = 2_000_000
#: bump when the files' layout changes, so old caches are not read
CACHE_FORMAT = 1


def vocabulary(n_fragments: int) -> tuple[Fragment, ...]:
    """The first `n_fragments` fragments of `FRAGMENTS`."""
    if not 1 <= n_fragments <= len(FRAGMENTS):
        raise ConfigError(f"fragments must be in [1, {len(FRAGMENTS)}], got {n_fragments}")
    return FRAGMENTS[:n_fragments]


def chain_smiles(chains: np.ndarray, fragments: tuple[Fragment, ...]) -> list[str]:
    """The SMILES of each chain ((B, L) fragment indices), by concatenating linear SMILES (not
    canonical; `canonical_chain_smiles` canonicalises)."""
    linear = [f.linear for f in fragments]
    return ["".join(linear[i] for i in row) for row in np.asarray(chains).tolist()]


def canonical_chain_smiles(chains: np.ndarray, fragments: tuple[Fragment, ...]) -> list[str]:
    """RDKit's canonical SMILES of each chain; a RuntimeError names a chain that does not
    sanitise (none of `FRAGMENTS`' chains: the tests check it)."""
    from rdkit import Chem

    out = []
    with rdkit_quiet():
        for row, text in zip(np.asarray(chains).tolist(), chain_smiles(chains, fragments)):
            mol = Chem.MolFromSmiles(text)
            if mol is None:
                raise RuntimeError(f"chain {row} ({text}) is not a valid molecule")
            out.append(Chem.MolToSmiles(mol))
    return out


def all_chains(n_fragments: int, length: int) -> np.ndarray:
    """(V^L, L) every chain, row i being i written in base V (first fragment most significant)."""
    index = np.arange(n_fragments ** length, dtype=np.int64)
    powers = n_fragments ** np.arange(length - 1, -1, -1, dtype=np.int64)
    return (index[:, None] // powers) % n_fragments


def chain_index(chains: np.ndarray, n_fragments: int) -> np.ndarray:
    """Row of each chain in `all_chains` (its base-V number)."""
    chains = np.asarray(chains, dtype=np.int64)
    powers = n_fragments ** np.arange(chains.shape[1] - 1, -1, -1, dtype=np.int64)
    return chains @ powers


@dataclasses.dataclass
class ChainTable:
    """Every chain of a vocabulary and length: `molecule[i]` is chain i's index into `smiles`
    (the distinct canonical SMILES, sorted), `scores[m]` the composite score of molecule m;
    `seconds`: how long each part took to compute here (0 where it came from the cache)."""

    smiles: np.ndarray
    molecule: np.ndarray
    scores: np.ndarray
    seconds: dict[str, float]

    @property
    def chain_scores(self) -> np.ndarray:
        """(V^L,) float64 score of every chain."""
        return self.scores[self.molecule]


def chain_table(fragments: tuple[Fragment, ...], length: int, reward: MolecularReward,
                cache: bool = True, cache_dir: str | Path | None = None) -> ChainTable:
    """The molecules and scores of every chain of `length` fragments, from the disk cache when
    it holds them (`cache`), else computed (and then cached). A score whose identity is unknown
    (a user's function without readable source) is computed every time."""
    n_chains = len(fragments) ** length
    if n_chains > MAX_CHAINS:
        raise ConfigError(f"{len(fragments)}^{length} = {n_chains} chains, more than {MAX_CHAINS}: every chain is "
                          "assembled and every distinct molecule scored once, up front")
    folder = Path(cache_dir) if cache_dir is not None else cache_directory()
    seconds = {"molecules": 0.0, "scores": 0.0}
    # molecules: depend on the fragments and the length only
    molecules_key = identity_key("fragment-chains molecules", CACHE_FORMAT, length,
                                 *(f"{f.name} {f.linear}" for f in fragments))
    path = folder / f"fragment-chains-molecules-{molecules_key}.npz"
    arrays = _load(path, molecules_key, {"smiles", "molecule"}) if cache else None
    if arrays is not None and len(arrays["molecule"]) == n_chains:
        smiles, molecule = arrays["smiles"], arrays["molecule"]
    else:
        start = time.perf_counter()
        canonical = canonical_chain_smiles(all_chains(len(fragments), length), fragments)
        smiles, molecule = np.unique(np.array(canonical), return_inverse=True)
        molecule = molecule.astype(np.int32).reshape(-1)
        seconds["molecules"] = time.perf_counter() - start
        if cache:
            _save(path, molecules_key, smiles=smiles, molecule=molecule)
    # scores: of each distinct molecule, for one composite score
    identity = reward.identity
    scores_key = None if identity is None else identity_key("fragment-chains scores", CACHE_FORMAT,
                                                            molecules_key, identity)
    path = folder / f"fragment-chains-scores-{scores_key}.npz"
    arrays = _load(path, scores_key, {"scores"}) if cache and scores_key else None
    if arrays is not None and len(arrays["scores"]) == len(smiles):
        scores = arrays["scores"]
    else:
        start = time.perf_counter()
        scores = reward.score_molecules(parse_smiles(smiles.tolist()))
        seconds["scores"] = time.perf_counter() - start
        if cache and scores_key:
            _save(path, scores_key, scores=scores)
    return ChainTable(smiles, molecule.astype(np.int64), scores.astype(np.float64), seconds)


def _load(path: Path, key: str, names: set[str]) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file written for `key`; None when it is missing, unreadable,
    holds another key or lacks an array (it is then recomputed and replaced)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key or not names <= set(data.files):
                return None
            return {name: data[name] for name in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _save(path: Path, key: str, **arrays: np.ndarray) -> None:
    """Write a cache file atomically (a temporary file in the same folder, then a rename); a
    folder that cannot be written is reported on stderr and the table is simply not cached."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez_compressed(file, key=np.array(key), **arrays)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as err:
        print(f"warning: cannot cache {path.name} in {path.parent} ({err}); it will be computed again next time",
              file=sys.stderr)
