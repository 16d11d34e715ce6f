"""The fragment vocabulary of the `fragments` environment: drug-like building blocks with
attachment points, the rule saying which attachment points may be bonded, and the assembly of
a tree of fragments into one RDKit molecule.

Each fragment is a SMILES in which every dummy atom `[*]` marks one attachment point: the
dummy stands for one hydrogen of the atom it is bonded to (the *attachment atom*). Joining two
points makes a single bond between their attachment atoms and drops both dummies; a point left
open at the end is capped with hydrogen (the dummy becomes the hydrogen it stood for). As every
point replaces one hydrogen, no bond ever exceeds a valence and no aromatic ring loses its
Kekulé structure: every assembly sanitises in RDKit, whatever fragments are joined at whatever
points (the tests check it on every fragment and on thousands of random trees).

Why these fragments: the rings, linkers and end groups that recur in small-molecule drugs
(benzene, pyridine, pyrimidine and five-membered heteroaromatics; saturated cyclohexane,
piperidine, piperazine, morpholine, tetrahydropyran, cyclopropane; sp3 carbon, ethylene,
isopropyl, tert-butyl; ether/hydroxyl O, amine N, carbonyl, carboxyl/ester, amide; methyl-
sulfonyl and sulfamoyl; F, Cl, Br, nitrile, CF3), a few dozen as in the fragment vocabularies
of Bengio et al. (2021), written by hand (nothing downloaded). Points sit where medicinal
chemists substitute: 1,2,4 on benzene (so ortho, meta and para patterns are all reachable),
2,5 / 1,3 / 1,4 on the heteroaromatics, the nitrogen and C4 of the saturated rings; an atom
with several dummies (the sp3 carbon, the amine) can take several substituents. Capped
fragments are sensible groups: phenyl, methyl, hydroxyl, NH2, aldehyde, formate/acid, formamide.
The sulfonyls have their one point on sulfur: open, it is an S-H, which happens only in the
one-fragment molecule (a one-point fragment joined to anything uses its point), as HF or HCl do;
the score judges those. At most `MAX_POINTS` = 3 points per fragment, to keep the action space small.

Stereochemistry: no fragment holds a stereocentre or a stereogenic double bond once capped.
Attachments can create stereo elements (a CH bearing three different groups, a
1,4-disubstituted cyclohexane's cis/trans pair); these are left *unspecified*: a molecule
stands for all its stereoisomers, its SMILES carries no `@` or `/`, and sanitisation is not
affected.

Attachment rule (`compatible`): each attachment atom has a *kind* read from RDKit: "C" (a
carbon, aliphatic or aromatic), "C*" (an electrophilic carbon: doubly or triply bonded to a
heteroatom, i.e. acyl or nitrile carbon), "N", "O", "S" (sulfonyl sulfur) or "X" (halogen).
Carbon binds anything; otherwise only C*-C*, C*-N, C*-O (ketone, amide, ester, dicarbonyl) and
N-S (sulfonamide) are allowed. So no peroxide, hydrazine, N-O, hypohalite, N-halide, acyl
halide, S-O or S-S bond is ever made: every such molecule would sanitise, but none is a drug-like
building block of our molecules.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Collection, Sequence
from typing import Any

from gflownets.errors import ConfigError

#: the most attachment points of one fragment (the action layout reserves this many per node)
MAX_POINTS = 3
#: kinds of attachment atoms (see the module docstring), in this order
KINDS = ("C", "C*", "N", "O", "S", "X")
#: the unordered pairs of kinds besides those with "C" that may be bonded
_ALLOWED = {frozenset(("C*",)), frozenset(("C*", "N")), frozenset(("C*", "O")), frozenset(("N", "S"))}


@dataclasses.dataclass(frozen=True)
class LibraryFragment:
    """A building block: its name and its SMILES, one dummy atom `[*]` per attachment point (the
    points are numbered in the order of the dummies in the SMILES)."""

    name: str
    smiles: str


#: The vocabulary, in the order of `--vocabulary K` (the first K): the first few mix a ring, linkers and
#: an end group, so that a small K is already a varied (and, with few nodes, enumerable) space.
#: Points (the dummies, in order): benzene 1,2,4; pyridine, pyrimidine, thiophene, furan 2,5;
#: pyrrole and pyrazole 1,3; imidazole 1,4; thiazole 2,4; indole 5; cyclohexane, piperidine,
#: piperazine 1,4; morpholine N4; tetrahydropyran C4. Names hold no comma (`select` splits on them).
LIBRARY: tuple[LibraryFragment, ...] = (
    LibraryFragment("benzene", "[*]c1ccc([*])c([*])c1"),
    LibraryFragment("ethylene", "[*]CC[*]"),
    LibraryFragment("oxygen", "[*]O[*]"),
    LibraryFragment("fluoro", "[*]F"),
    LibraryFragment("amine", "[*]N([*])[*]"),
    LibraryFragment("carbonyl", "[*]C(=O)[*]"),
    LibraryFragment("pyridine", "[*]c1ccc([*])nc1"),
    LibraryFragment("piperidine", "[*]N1CCC([*])CC1"),
    LibraryFragment("amide", "[*]C(=O)N([*])[*]"),
    LibraryFragment("chloro", "[*]Cl"),
    LibraryFragment("sp3-carbon", "[*]C([*])[*]"),
    LibraryFragment("pyrimidine", "[*]c1ncc([*])cn1"),
    LibraryFragment("thiophene", "[*]c1ccc([*])s1"),
    LibraryFragment("furan", "[*]c1ccc([*])o1"),
    LibraryFragment("pyrrole", "[*]n1ccc([*])c1"),
    LibraryFragment("imidazole", "[*]n1cnc([*])c1"),
    LibraryFragment("pyrazole", "[*]n1ccc([*])n1"),
    LibraryFragment("thiazole", "[*]c1nc([*])cs1"),
    LibraryFragment("indole", "[*]c1ccc2[nH]ccc2c1"),
    LibraryFragment("cyclohexane", "[*]C1CCC([*])CC1"),
    LibraryFragment("piperazine", "[*]N1CCN([*])CC1"),
    LibraryFragment("morpholine", "[*]N1CCOCC1"),
    LibraryFragment("tetrahydropyran", "[*]C1CCOCC1"),
    LibraryFragment("cyclopropyl", "[*]C1CC1"),
    LibraryFragment("isopropyl", "[*]C(C)C"),
    LibraryFragment("tert-butyl", "[*]C(C)(C)C"),
    LibraryFragment("carboxyl", "[*]C(=O)O[*]"),
    LibraryFragment("methylsulfonyl", "[*]S(=O)(=O)C"),
    LibraryFragment("sulfamoyl", "[*]S(=O)(=O)N"),
    LibraryFragment("bromo", "[*]Br"),
    LibraryFragment("nitrile", "[*]C#N"),
    LibraryFragment("trifluoromethyl", "[*]C(F)(F)F"),
)


def compatible(kind_a: str, kind_b: str) -> bool:
    """Whether attachment atoms of these kinds may be joined by a single bond (module docstring)."""
    return "C" in (kind_a, kind_b) or frozenset((kind_a, kind_b)) in _ALLOWED


def select(spec: str | int) -> tuple[LibraryFragment, ...]:
    """The fragments a `vocabulary` option names: "all", an integer K (the first K of `LIBRARY`),
    or comma-separated fragment names (each once). A ConfigError naming the option otherwise."""
    text = str(spec).strip()
    if text == "all":
        return LIBRARY
    if text.isdigit():
        k = int(text)
        if not 1 <= k <= len(LIBRARY):
            raise ConfigError(f"vocabulary must be 'all', a count in [1, {len(LIBRARY)}] or fragment names; got {k}")
        return LIBRARY[:k]
    by_name = {f.name: f for f in LIBRARY}
    names = [part.strip() for part in text.split(",")]
    unknown = [n for n in names if n not in by_name]
    if not text or unknown:
        raise ConfigError(f"vocabulary: unknown fragment(s) {', '.join(map(repr, unknown or [text]))}; known: "
                          f"{', '.join(by_name)} (or 'all', or a count K for the first K)")
    if len(set(names)) != len(names):
        raise ConfigError(f"vocabulary: {text!r} names a fragment twice")
    return tuple(by_name[n] for n in names)


@dataclasses.dataclass(frozen=True)
class ParsedFragment:
    """A fragment read by RDKit: its molecule with the dummies, the index of each point's dummy
    and attachment atom, and each point's kind."""

    mol: Any
    dummies: tuple[int, ...]
    atoms: tuple[int, ...]
    kinds: tuple[str, ...]


def _kind(atom: Any) -> str:
    symbol = atom.GetSymbol()
    if symbol in ("F", "Cl", "Br", "I"):
        return "X"
    if symbol != "C":
        return symbol
    hetero_multiple = any(b.GetBondTypeAsDouble() >= 2 and b.GetOtherAtom(atom).GetSymbol() in ("O", "N", "S")
                          for b in atom.GetBonds())
    return "C*" if hetero_multiple else "C"


@functools.lru_cache(maxsize=None)
def parse_fragment(smiles: str) -> ParsedFragment:
    """RDKit's reading of one fragment SMILES (cached); a ValueError for a SMILES RDKit refuses,
    a dummy not bonded to exactly one atom, or more than MAX_POINTS points."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"fragment {smiles!r} is not a valid SMILES")
    dummies, atoms, kinds = [], [], []
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() == 0:
            neighbours = atom.GetNeighbors()
            if len(neighbours) != 1 or atom.GetBonds()[0].GetBondType() != Chem.BondType.SINGLE:
                raise ValueError(f"fragment {smiles!r}: each [*] must hang off one atom by a single bond")
            dummies.append(atom.GetIdx())
            atoms.append(neighbours[0].GetIdx())
            kinds.append(_kind(neighbours[0]))
    if not 1 <= len(dummies) <= MAX_POINTS:
        raise ValueError(f"fragment {smiles!r} has {len(dummies)} attachment points, not 1..{MAX_POINTS}")
    return ParsedFragment(mol, tuple(dummies), tuple(atoms), tuple(kinds))


def assemble(fragments: Sequence[str], bonds: Sequence[tuple[int, int, int, int]],
             keep: Collection[tuple[int, int]] = ()) -> Any:
    """The sanitised RDKit molecule of a tree of fragments: `fragments` are the nodes' SMILES,
    `bonds` the joins (node, point, other node, other point); open points become hydrogens,
    except those in `keep` (node, point), which stay dummy atoms. Raises what RDKit raises if the
    molecule does not sanitise (never, for `LIBRARY`)."""
    from rdkit import Chem

    parsed = [parse_fragment(s) for s in fragments]
    mol = Chem.RWMol()
    offsets = []
    for p in parsed:
        offsets.append(mol.GetNumAtoms())
        mol.InsertMol(p.mol)
    used = set()
    for node, point, other, other_point in bonds:
        a = offsets[node] + parsed[node].atoms[point]
        b = offsets[other] + parsed[other].atoms[other_point]
        mol.AddBond(a, b, Chem.BondType.SINGLE)
        used.add(offsets[node] + parsed[node].dummies[point])
        used.add(offsets[other] + parsed[other].dummies[other_point])
    for node, p in enumerate(parsed):
        for point, dummy in enumerate(p.dummies):
            if offsets[node] + dummy not in used and (node, point) not in keep:
                mol.GetAtomWithIdx(offsets[node] + dummy).SetAtomicNum(1)  # the hydrogen it stood for
    for index in sorted(used, reverse=True):
        mol.RemoveAtom(index)
    Chem.SanitizeMol(mol)
    return Chem.RemoveHs(mol)
