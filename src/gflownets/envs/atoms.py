"""Atoms: molecules built one heavy atom or one bond at a time, every state a valid molecule.

A state is a molecular graph of at most `max_atoms` heavy atoms of the `elements` (default
C, N, O, F, S, Cl), with Kekulé bond orders 1..`max_bond` and implicit hydrogens filling the
rest of each atom's valence (C 4, N 3, O 2, F 1, S 2, Cl 1; also P 3, Br 1, I 1 when listed).
No charges, no radicals, no aromatic flags: whatever stays within the valences is a molecule
RDKit sanitises, so the masks alone keep every state (not only the finished ones) valid.

State: one flat long tensor of `max_atoms + max_atoms (max_atoms - 1) / 2` entries: the element
index of each atom slot (-1 where empty), then the bond order (0..max_bond) of every pair
i < j in the row-major order of `torch.triu_indices(N, N, 1)`. Whole batches are masked and
stepped with tensor operations; RDKit only sees finished molecules, on the reward path.

s0 is a single atom of the `start` element (default C), or, with `start any`, the empty graph,
whose first action places an atom of any element (then molecules without carbon are reachable).

Forward actions (N = max_atoms, T = number of elements, P = N (N - 1) / 2), in this order:
- `add(i, t)` = i * T + t: a new atom of element t in the first empty slot n, bonded to atom i
  by a single bond; needs n < N and a free valence on i;
- `bond(p)` = N T + p: raise the order of pair p = (i, j) by one (0 -> 1 makes a new bond,
  closing a ring); needs both atoms present with a free valence and an order below max_bond;
- `first(t)` = N T + P + t (only with `start any`): place atom 0 of element t in the empty graph;
- exit (last): allowed once the molecule has `min_atoms` atoms, or earlier where nothing else
  is (a molecule that cannot grow, e.g. O=C=O with min_atoms 4); never in the empty graph.
Rings of every size >= 3 are allowed (RDKit accepts cyclopropane as it accepts cyclopropyne;
the score judges them); a "ring" of two atoms is a multiple bond, one pair entry.

Invariant of every reachable state: atom slots fill in order (atom k exists iff k < n), and
every atom k >= 1 is bonded to an atom of a smaller index (its attachment, whose bond can only
be raised). So the molecule is connected, and the invariant is checkable locally, without a
graph search. Conversely, each graph with the invariant within the valences is reachable
(add its atoms in index order, each on an earlier neighbour, then raise the remaining bonds).

Backward action a undoes forward action a, and the backward mask allows exactly the undoings
whose parent satisfies the invariant, so `backward_step(step(s, a), a) == s` and every parent
is enumerated once per edge:
- undo `add(i, t)`: the last atom n - 1 >= 1 is of element t and its only bond is a single bond
  to i (the forward action is then determined); the parent lacks that atom;
- undo `bond(i, j)`: the order is >= 2, or it is 1 and j (the larger index) has another
  neighbour of smaller index, so removing the bond keeps the invariant. The one single bond it
  excludes, that of a last atom's only neighbour, is exactly the undo of `add`: the two
  backward moves never reach one parent twice;
- undo `first(t)`: the molecule is one atom of element t.
Only s0 has no parent: a state of n >= 2 atoms has a last atom, which is either a single-bonded
leaf (undo add), or has a multiple bond, or two bonds to earlier atoms (undo bond).

The reward is the molecule's score (`score`, a spec of `gflownets.chemistry.rewards`, QED by
default) tempered as in `fragment-chains`: R = score^beta or exp(beta * score). RDKit builds
each distinct state's molecule once and each distinct canonical SMILES is scored once (bounded
in-memory caches). Exact evaluation enumerates up to 500,000 states (elements C,O: 57 states
with 3 atoms, 722 with 4, 302,200 with 6) and refuses larger spaces from their edge counts,
before building them (the default space, in ~3 s).

Note on the target: states are *labelled* graphs (atom slots are numbered in construction
order), so one molecule is several finished states; a GFlowNet samples each state in proportion
to R, and so a molecule in proportion to R times its number of labelled forms. `exact_metrics`
reports the distance over molecules (`l1_molecules`) next to the one over states.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from gflownets.envs.molecules import GraphInputs, GraphLayout, MoleculeConfig, MoleculeEnv
from gflownets.envs.limits import require_at_most
from gflownets.errors import ConfigError, DataError, TooManyStates

#: element -> valence (bonds it makes with no charge; implicit hydrogens fill the rest)
VALENCES = {"C": 4, "N": 3, "O": 2, "F": 1, "S": 2, "Cl": 1, "P": 3, "Br": 1, "I": 1}
#: the `start` value for an empty s0 whose first action places an atom of any element
ANY = "any"
#: the most atoms: the state holds N (N - 1) / 2 bond orders and the graph policy a dense N x N
#: adjacency per bond order, both quadratic in N
MAX_ATOMS = 40
#: rows stepped at once while enumerating the states (bounds the memory of one level's children)
ENUMERATION_CHUNK = 65_536


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


def parse_elements(text: str) -> list[str]:
    """Element symbols of a comma-separated list ("C,N,O,cl" -> ["C", "N", "O", "Cl"]), each
    known (`VALENCES`) and listed once; a ConfigError naming the option otherwise."""
    by_lower = {symbol.lower(): symbol for symbol in VALENCES}
    symbols = [part.strip() for part in str(text).split(",")]
    if not symbols or any(not s for s in symbols):
        raise ConfigError(f"elements must be a comma-separated list of element symbols, e.g. C,N,O; got {text!r}")
    out = []
    for symbol in symbols:
        if symbol.lower() not in by_lower:
            raise ConfigError(f"elements: unknown element {symbol!r}; known: {', '.join(VALENCES)}")
        out.append(by_lower[symbol.lower()])
    if len(set(out)) != len(out):
        raise ConfigError(f"elements: {text!r} lists an element twice")
    return out


@dataclasses.dataclass
class AtomsConfig(MoleculeConfig):
    elements: str = _field("C,N,O,F,S,Cl", "comma-separated heavy atoms to build with (known: "
                                           f"{', '.join(VALENCES)})")
    max_atoms: int = _field(9, "most heavy atoms of a molecule")
    min_atoms: int = _field(1, "fewest heavy atoms before exit is allowed (a molecule that cannot grow "
                               "may exit earlier)")
    start: str = _field("C", "element of the single atom of s0, or 'any': s0 is empty and the first "
                             "action places an atom of any element")
    max_bond: int = _field(3, "highest bond order: 1 single bonds only, 2 up to double, 3 up to triple")
    mode_threshold: float = _field(0.55, "score above which sampled molecules count towards the modes metric "
                                         "(pairwise Tanimoto < 0.7); QED of molecules of <= 9 heavy atoms "
                                         "rarely exceeds 0.6")

    def element_list(self) -> list[str]:
        return parse_elements(self.elements)

    def validate(self) -> None:
        elements = self.element_list()
        if self.max_atoms < 1:
            raise ConfigError(f"max_atoms must be >= 1, got {self.max_atoms}")
        require_at_most("max_atoms", self.max_atoms, MAX_ATOMS,
                        "states hold every pair's bond order, and the graph policy an N x N adjacency")
        if not 1 <= self.min_atoms <= self.max_atoms:
            raise ConfigError(f"min_atoms must be in [1, max_atoms={self.max_atoms}], got {self.min_atoms}")
        if self.start != ANY and self.start not in elements:
            raise ConfigError(f"start must be one of the elements ({', '.join(elements)}) or '{ANY}', "
                              f"got {self.start!r}")
        if not 1 <= self.max_bond <= 3:
            raise ConfigError(f"max_bond must be 1, 2 or 3, got {self.max_bond}")
        super().validate()


class _Graphs(NamedTuple):
    """A batch of states read as graphs (`Atoms._graphs`)."""

    nodes: torch.Tensor    # (B, N) element index, -1 where empty
    bonds: torch.Tensor    # (B, P) bond orders
    exists: torch.Tensor   # (B, N) bool
    n: torch.Tensor        # (B,) atoms
    adjacency: torch.Tensor  # (B, N, N) bond orders, symmetric
    free: torch.Tensor     # (B, N) free valence (0 where empty)


class Atoms(MoleculeEnv):
    """Molecules built atom by atom and bond by bond within valences; RDKit reward (QED by default)."""

    compilable = True  # masks, features and steps are branch-free tensor code (scatters, gathers)

    name = "atoms"
    Config = AtomsConfig
    presets = {"tiny": dict(elements="C,O", max_atoms=4)}

    def setup(self, config: AtomsConfig) -> None:
        self.elements = config.element_list()
        self.n_elements = T = len(self.elements)
        self.max_atoms = N = config.max_atoms
        self.max_bond = config.max_bond
        self.min_atoms = config.min_atoms
        self.start_element = None if config.start == ANY else self.elements.index(config.start)
        #: (T,) valence of each element
        self.valence = torch.tensor([VALENCES[e] for e in self.elements], dtype=torch.long)
        self.max_valence = int(self.valence.max())
        pairs = torch.triu_indices(N, N, 1)
        #: (P,) the two atoms of each pair, i < j
        self.pair_i, self.pair_j = pairs[0].clone(), pairs[1].clone()
        self.n_pairs = P = N * (N - 1) // 2
        #: (N, N) pair index of (i, j) and (j, i); -1 on the diagonal
        self.pair_index = torch.full((N, N), -1, dtype=torch.long)
        self.pair_index[self.pair_i, self.pair_j] = torch.arange(P)
        self.pair_index[self.pair_j, self.pair_i] = torch.arange(P)
        #: the pairs again as NumPy arrays, for RDKit's construction (on the CPU whatever the device)
        self._pairs_numpy = (self.pair_i.cpu().numpy().copy(), self.pair_j.cpu().numpy().copy())
        #: (N, N) True where k < j: [j, k] marks the earlier atoms of j
        self._earlier = torch.ones(N, N, dtype=torch.bool).tril(-1)
        self.bond_offset = N * T
        self.first_offset = N * T + P
        self.n_first = T if self.start_element is None else 0
        self.n_actions = N * T + P + self.n_first + 1
        self.state_shape = (N + P,)
        # every non-exit action adds one to the total bond order, except placing the first atom
        most_bonds = min(N * self.max_valence // 2, P * self.max_bond)
        self.max_steps = most_bonds + (self.start_element is None) + 1
        self.feature_dim = N * (T + 1) + P * (self.max_bond + 1)
        self.setup_molecules(config)

    # ------------------------------------------------------------------ reading states
    def _graphs(self, states: torch.Tensor) -> _Graphs:
        N = self.max_atoms
        nodes, bonds = states[:, :N], states[:, N:]
        exists = nodes >= 0
        adjacency = states.new_zeros(states.shape[0], N, N)
        adjacency[:, self.pair_i, self.pair_j] = bonds
        adjacency[:, self.pair_j, self.pair_i] = bonds
        valence = self.valence[nodes.clamp(min=0)] * exists
        return _Graphs(nodes, bonds, exists, exists.sum(dim=1), adjacency, valence - adjacency.sum(dim=2))

    def adjacency(self, states: torch.Tensor) -> torch.Tensor:
        """(B, N, N) symmetric bond orders."""
        return self._graphs(states).adjacency

    def n_atoms(self, states: torch.Tensor) -> torch.Tensor:
        return (states[:, :self.max_atoms] >= 0).sum(dim=1)

    # ------------------------------------------------------------------ interface
    @property
    def initial_state(self) -> torch.Tensor:
        state = torch.zeros(self.state_shape, dtype=torch.long, device=self.device)
        state[:self.max_atoms] = -1
        if self.start_element is not None:
            state[0] = self.start_element
        return state

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        g = self._graphs(states)
        B, T = states.shape[0], self.n_elements
        room = g.n < self.max_atoms
        add = ((g.free >= 1) & room[:, None])[:, :, None].expand(B, self.max_atoms, T)
        bond = (g.free[:, self.pair_i] >= 1) & (g.free[:, self.pair_j] >= 1) & (g.bonds < self.max_bond)
        parts = [add.reshape(B, self.max_atoms * T), bond]
        if self.n_first:
            parts.append((g.n == 0)[:, None].expand(B, T))
        moves = torch.cat(parts, dim=1)
        exit_ = (g.n >= 1) & ((g.n >= self.min_atoms) | ~moves.any(dim=1))
        return torch.cat([moves, exit_[:, None]], dim=1)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        g = self._graphs(states)
        B, T = states.shape[0], self.n_elements
        rows = torch.arange(B, device=states.device)
        last = (g.n - 1).clamp(min=0)
        last_bonds = g.adjacency[rows, last]                          # (B, N) orders of the last atom's bonds
        leaf = (g.n >= 2) & (last_bonds.sum(dim=1) == 1)              # one single bond, nothing else
        element = torch.arange(T, device=states.device) == g.nodes[rows, last][:, None]  # (B, T)
        undo_add = (leaf[:, None] & (last_bonds == 1))[:, :, None] & element[:, None, :]
        earlier = ((g.adjacency > 0) & self._earlier).sum(dim=2)        # (B, N) neighbours of smaller index
        undo_bond = (g.bonds >= 2) | ((g.bonds == 1) & (earlier[:, self.pair_j] >= 2))
        parts = [undo_add.reshape(B, self.max_atoms * T), undo_bond]
        if self.n_first:
            first = torch.arange(T, device=states.device) == g.nodes[:, 0, None]
            parts.append((g.n == 1)[:, None] & first)
        return torch.cat(parts, dim=1)

    def _decode(self, actions: torch.Tensor, slot: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """What an action touches: (is a node placed/removed, the node slot, its element, is a
        pair's order changed, the pair). `slot`: the slot an `add` fills or empties."""
        T, P = self.n_elements, self.n_pairs
        is_add = actions < self.bond_offset
        is_bond = (actions >= self.bond_offset) & (actions < self.first_offset)
        is_first = actions >= self.first_offset  # only ever drawn when start is 'any'
        node_slot = torch.where(is_first, torch.zeros_like(slot), slot).clamp(0, self.max_atoms - 1)
        element = torch.where(is_first, actions - self.first_offset, actions % T)
        attach = (actions // T).clamp(max=self.max_atoms - 1)
        pair = torch.where(is_add, self.pair_index[attach, node_slot], actions - self.bond_offset)
        return is_add | is_first, node_slot, element, is_add | is_bond, pair.clamp(0, max(P - 1, 0))

    def _apply(self, states: torch.Tensor, actions: torch.Tensor, forward: bool) -> torch.Tensor:
        """One batched step without Python branches per row: a node entry set (or cleared) and
        a pair's order raised (or lowered), each only on the rows whose action does so."""
        N = self.max_atoms
        n = self.n_atoms(states)
        touches_node, slot, element, touches_pair, pair = self._decode(actions, n if forward else n - 1)
        out = states.clone()
        current = out.gather(1, slot[:, None]).squeeze(1)
        value = torch.where(touches_node, element if forward else torch.full_like(element, -1), current)
        out.scatter_(1, slot[:, None], value[:, None])
        if self.n_pairs:
            delta = touches_pair.long() if forward else -touches_pair.long()
            out[:, N:] = out[:, N:].scatter_add(1, pair[:, None], delta[:, None])
        return out

    def _step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self._apply(states, actions, forward=True)

    def _backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self._apply(states, actions, forward=False)

    def features(self, states: torch.Tensor) -> torch.Tensor:
        """The MLP's input: one-hot element (or empty) of each slot, one-hot order of each pair."""
        N = self.max_atoms
        nodes = F.one_hot(states[:, :N] + 1, self.n_elements + 1).flatten(1)
        bonds = F.one_hot(states[:, N:], self.max_bond + 1).flatten(1)
        return torch.cat([nodes, bonds], dim=1).float()

    # ------------------------------------------------------------------ graph policy
    def graph_layout(self) -> GraphLayout:
        """Node actions: add an atom of each element on node i; pair actions: raise the bond;
        graph actions: place the first atom (start 'any')."""
        return GraphLayout(max_nodes=self.max_atoms, node_features=self.n_elements + self.max_valence + 3,
                           edge_types=self.max_bond, node_actions=self.n_elements, pair_actions=1,
                           graph_actions=self.n_first)

    def graph_inputs(self, states: torch.Tensor) -> GraphInputs:
        """Node features: element one-hot, free valence one-hot (0..max valence), a flag on the
        last atom (the only one an undo of `add` removes) and the slot's position (k + 1) / N
        (which neighbours are earlier decides the backward moves); adjacency per bond order."""
        g = self._graphs(states)
        N = self.max_atoms
        mask = g.exists
        element = F.one_hot(g.nodes.clamp(min=0), self.n_elements) * mask[:, :, None]
        free = F.one_hot(g.free.clamp(0, self.max_valence), self.max_valence + 1) * mask[:, :, None]
        slots = torch.arange(N, device=states.device)
        last = (slots == (g.n - 1)[:, None]) & mask
        position = ((slots + 1).float() / N).expand(states.shape[0], N) * mask
        nodes = torch.cat([element.float(), free.float(), last[:, :, None].float(), position[:, :, None]], dim=2)
        orders = torch.arange(1, self.max_bond + 1, device=states.device)
        adjacency = (g.adjacency[:, None] == orders[None, :, None, None]).float()
        return GraphInputs(nodes, mask, adjacency)

    # ------------------------------------------------------------------ molecules and reward
    def _molecule_smiles(self, row: np.ndarray) -> str | None:
        """Canonical SMILES of one state row (None if RDKit refuses it, which the valence masks
        rule out for every state of this environment)."""
        from rdkit import Chem

        N = self.max_atoms
        nodes, bonds = row[:N], row[N:]
        mol = Chem.RWMol()
        for t in nodes[nodes >= 0]:
            mol.AddAtom(Chem.Atom(self.elements[int(t)]))
        if mol.GetNumAtoms() == 0:
            return None
        kinds = (None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE)
        pair_i, pair_j = self._pairs_numpy
        for p in np.flatnonzero(bonds):
            mol.AddBond(int(pair_i[p]), int(pair_j[p]), kinds[int(bonds[p])])
        try:
            Chem.SanitizeMol(mol)
        except Exception:  # noqa: BLE001 - RDKit raises several kinds; an invalid molecule is None
            return None
        return Chem.MolToSmiles(mol)

    def _row_of_molecule(self, mol: Any) -> np.ndarray:
        """The state of a molecule: its Kekulé form, atoms numbered breadth first from the start
        element's atom of lowest canonical rank (any atom's with `start any`), neighbours in rank
        order, so that each atom is bonded to an earlier one. One of its labelled forms, always
        the same one for one molecule."""
        from rdkit import Chem

        mol = Chem.RWMol(mol)
        Chem.Kekulize(mol, clearAromaticFlags=True)
        atoms = list(mol.GetAtoms())
        if len(Chem.GetMolFrags(mol)) > 1:
            raise DataError("not one connected molecule")
        if len(atoms) > self.max_atoms:
            raise DataError(f"{len(atoms)} heavy atoms, more than max_atoms={self.max_atoms}")
        for atom in atoms:
            symbol = atom.GetSymbol()
            if symbol not in self.elements:
                raise DataError(f"element {symbol} is not among the elements {','.join(self.elements)}")
            if atom.GetFormalCharge() or atom.GetNumRadicalElectrons():
                raise DataError(f"a charged or radical {symbol} (this environment builds neutral molecules)")
            bonded = sum(int(bond.GetBondTypeAsDouble()) for bond in atom.GetBonds())
            if bonded + atom.GetTotalNumHs() != VALENCES[symbol]:
                raise DataError(f"a {symbol} of valence {bonded + atom.GetTotalNumHs()} (this environment's "
                                f"{symbol} has valence {VALENCES[symbol]})")
        for bond in mol.GetBonds():
            if bond.GetBondTypeAsDouble() > self.max_bond:
                raise DataError(f"a bond of order {bond.GetBondTypeAsDouble():g}, above max_bond={self.max_bond}")
        rank = list(Chem.CanonicalRankAtoms(mol))
        roots = [a.GetIdx() for a in atoms if self.start_element is None or a.GetSymbol() == self.config.start]
        if not roots:
            raise DataError(f"no {self.config.start} atom, which every molecule starts from (start)")
        order = [min(roots, key=rank.__getitem__)]
        for index in order:  # breadth first; `order` grows as it is read
            neighbours = sorted((n.GetIdx() for n in mol.GetAtomWithIdx(index).GetNeighbors()), key=rank.__getitem__)
            order.extend(n for n in neighbours if n not in order)
        slot = {index: k for k, index in enumerate(order)}
        row = np.zeros(self.state_shape, dtype=np.int64)
        row[:self.max_atoms] = -1
        for index, k in slot.items():
            row[k] = self.elements.index(mol.GetAtomWithIdx(index).GetSymbol())
        pair_index = self.pair_index.cpu().numpy()
        for bond in mol.GetBonds():
            pair = pair_index[slot[bond.GetBeginAtomIdx()], slot[bond.GetEndAtomIdx()]]
            row[self.max_atoms + pair] = int(bond.GetBondTypeAsDouble())
        return row

    # ------------------------------------------------------------------ enumeration
    def _enumerate(self) -> torch.Tensor:
        """Level by level: every action adds one bond order (or places the first atom), so each
        level is the distinct children of the previous one. Refused early, before a level is
        built, when its edges alone prove it too large: a state of level k + 1 has at most k + 1
        parents (one per bonded pair, the undone attachment included), so a level reached by
        E edges holds at least E / (k + 1) states."""
        limit = self.max_enumerable_states
        # children stepped at once: about 16M state entries (128 MB) per chunk
        chunk = max(1, 16_000_000 // (self.n_actions * self.state_shape[0]))
        levels = [self.initial_states(1)]
        total = 1
        while True:
            frontier, k = levels[-1], len(levels) - 1
            edges = sum(int(self.forward_mask(frontier[i:i + chunk])[:, :-1].sum())
                        for i in range(0, len(frontier), chunk))
            if edges == 0:
                break
            if total + math.ceil(edges / min(k + 1, self.n_pairs + 1)) > limit:
                raise TooManyStates(self._too_many())
            found = []
            for i in range(0, len(frontier), chunk):
                part = frontier[i:i + chunk]
                rows, actions = self.forward_mask(part)[:, :-1].nonzero(as_tuple=True)
                found.append(torch.unique(self._step(part[rows], actions), dim=0))
            level = torch.unique(torch.cat(found), dim=0)
            total += len(level)
            if total > limit:
                raise TooManyStates(self._too_many())
            levels.append(level)
        return torch.cat(levels)

    def _too_many(self) -> str:
        return (f"{self.name}: more than {self.max_enumerable_states} states, too many to enumerate and score "
                "exactly (lower max_atoms, or use fewer elements)")

    # ------------------------------------------------------------------ objects (CSV)
    @property
    def object_columns(self) -> list[str]:
        atoms = [f"atom{k}" for k in range(self.max_atoms)]
        return atoms + [f"bond{i}_{j}" for i, j in zip(self.pair_i.tolist(), self.pair_j.tolist())]

    def objects_from_rows(self, rows: np.ndarray) -> torch.Tensor:
        """States from CSV rows (atom elements as indices into `elements`, -1 for empty slots, then
        bond orders); a DataError naming the row for anything that is not a state of this
        environment: values out of range, gaps between atoms, a bond to an empty slot, a
        valence exceeded, an atom not bonded to an earlier one, another first atom than `start`."""
        rows = np.asarray(rows)
        columns = self.object_columns
        if rows.ndim != 2 or rows.shape[1] != len(columns):
            got = rows.shape[-1] if rows.ndim else 0
            raise DataError(f"atoms objects need {len(columns)} columns (atom0..atom{self.max_atoms - 1}, then "
                            f"bond0_1, ...), got {got}")
        N, T = self.max_atoms, self.n_elements
        nodes, bonds = rows[:, :N], rows[:, N:]

        def fail(mask: np.ndarray, why: str) -> None:
            if mask.any():
                r = int(np.argwhere(mask)[0][0])
                raise DataError(f"row {r + 1}: {why(r) if callable(why) else why}")

        bad = (nodes < -1) | (nodes >= T)
        fail(bad.any(axis=1), lambda r: f"atom value {nodes[r][bad[r]][0]} is not an element index in [-1, {T - 1}] "
                                        f"(elements {','.join(self.elements)})")
        bad = (bonds < 0) | (bonds > self.max_bond)
        fail(bad.any(axis=1), lambda r: f"bond order {bonds[r][bad[r]][0]} is outside [0, {self.max_bond}]")
        exists = nodes >= 0
        n = exists.sum(axis=1)
        fail((exists != (np.arange(N) < n[:, None])).any(axis=1), "atoms must fill slots atom0, atom1, ... "
                                                                   "without gaps (-1 only after the last atom)")
        fail(n == 0, "the molecule has no atom")
        if self.start_element is not None:
            fail(nodes[:, 0] != self.start_element, f"atom0 must be the start element {self.config.start} "
                                                    f"(index {self.start_element})")
        states = torch.as_tensor(rows.astype(np.int64), device=self.device)
        g = self._graphs(states)
        dangling = ((g.adjacency > 0) & ~g.exists[:, None, :]).any(dim=(1, 2)).cpu().numpy()
        fail(dangling, "a bond joins an empty atom slot")
        over = (g.free < 0).cpu().numpy()
        fail(over.any(axis=1), lambda r: f"atom{int(np.argmax(over[r]))} "
                                         f"({self.elements[nodes[r, int(np.argmax(over[r]))]]}) exceeds its valence")
        earlier = ((g.adjacency > 0) & self._earlier).sum(dim=2).cpu().numpy()
        orphan = (earlier == 0) & exists & (np.arange(N) >= 1)
        fail(orphan.any(axis=1), lambda r: f"atom{int(np.argmax(orphan[r]))} has no bond to an atom of smaller "
                                           "index (atoms are numbered in construction order, each bonded to an "
                                           "earlier one)")
        return states

