"""Fragments: molecules built as trees of drug-like fragments joined at attachment points.

The vocabulary (`vocabulary`: "all", the first K, or comma-separated names) is
`gflownets.chemistry.fragment_library.LIBRARY`: 32 rings, linkers and end groups, each with 1 to
3 attachment points (a dummy atom standing for one hydrogen). A molecule is a tree of 1 to
`max_fragments` (default 9, as the molecule task of the trajectory balance paper) fragments;
every join is a single bond between two attachment atoms, and the points left open are capped
with hydrogen. Since each point replaces a hydrogen, every state (not only the finished ones)
is a molecule RDKit sanitises; the mask also enforces the library's attachment rule
(`fragment_library.compatible`: no peroxide, hydrazine, N-O, acyl halide, ... bonds).
Stereo elements an attachment creates are left unspecified (see the library).

State: one flat long tensor of 4 N entries (N = max_fragments), four blocks of one entry per node
slot, -1 where unused: the fragment id, the parent node, the parent's point the node hangs
from, and the node's own point used for that bond (the root has no parent: -1, -1, -1).

Forward actions (A = 3 points per node at most, Q = the (fragment, point) *ports* of the
vocabulary: all points of all fragments, in vocabulary order), in this order:
- `attach(i, a, q)` = (i A + a) Q + q: a new node in the first empty slot n, fragment q's
  fragment, joined by its point q to the open point a of node i; needs n < N, point a present
  and open on node i, and the two attachment atoms compatible. The new fragment may join by
  any of its points, so every tree of fragments is reachable (joining always by a fixed point
  would make some unreachable: a fragment whose fixed point is capped could only be the root);
- `first(f)` = N A Q + f: place fragment f as node 0 of the empty graph (s0);
- exit (last): once there are `min_fragments` nodes, or earlier where nothing else is
  allowed (every point used); never in the empty graph.
Default sizes: Q = 55 ports, so 9 * 3 * 55 + 32 + 1 = 1518 actions.

Invariant of every reachable state: nodes fill the slots in order, and each node k >= 1 hangs
from a node of smaller index, at a point used once. The last node n - 1 is therefore always a
leaf (no node of larger index exists to hang from it), and the backward move is *remove the last
node*: backward action a undoes forward action a, and the backward mask allows exactly one
action per state, the one that added its last node (`attach(parent, parent point, port)`, or
`first(f)` for a single node). So `backward_step(step(s, a), a) == s`, each state has exactly
one parent (the state graph is a tree and P_B is 1), and every parent is enumerated once.

Note on the target, as in `atoms`: states are *labelled* trees (node slots in construction
order, points numbered), so one molecule has several finished states: its fragment trees
(a molecule may be cut into fragments in more than one way, e.g. an ethylene or two sp3
carbons), each in every order of its nodes compatible with the tree (any root, parents before
children) and with symmetric points counted apart. A GFlowNet samples each state in proportion
to R, so a molecule in proportion to R times its number of labelled forms; `exact_metrics`
reports the distance over molecules (`l1_molecules`) next to the one over states.

The reward is the molecule's score (`score`, a spec of `gflownets.chemistry.rewards`, QED by
default as in `atoms`: cheap, in [0, 1], and meaningful for molecules of several rings),
tempered as R = score^beta or exp(beta * score) and floored at `floor`; SMILES and scores are
cached per state row and per canonical SMILES, as in `atoms`. Exact evaluation enumerates up to
500,000 states (the level sizes are known before a level is built, as each state has one parent):
ethylene, oxygen and fluoro with 3 nodes give 136 states (the `tiny` preset), the first 4
fragments with 3 nodes 1,184.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from gflownets.chemistry.fragment_library import (KINDS, LIBRARY, MAX_POINTS, LibraryFragment, assemble,
                                                  compatible, parse_fragment, select)
from gflownets.envs.base import draw_device
from gflownets.envs.molecules import GraphInputs, GraphLayout, MoleculeConfig, MoleculeEnv
from gflownets.envs.limits import require_at_most
from gflownets.errors import ConfigError, DataError, TooManyStates

#: the most fragments of a molecule: the MLP's input holds an N-way parent one-hot per node, and
#: the graph policy an N x N adjacency
MAX_FRAGMENTS = 40
#: partial trees a search for a molecule's fragment tree expands before it gives up (reading SMILES)
SEARCH_LIMIT = 20_000


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class FragmentsConfig(MoleculeConfig):
    vocabulary: str = _field("all", f"fragments to build with: 'all' ({len(LIBRARY)}), a count K (the first K), "
                                    "or comma-separated names of gflownets.chemistry.fragment_library.LIBRARY")
    max_fragments: int = _field(9, "most fragments of a molecule")
    min_fragments: int = _field(1, "fewest fragments before exit is allowed (a molecule with no open point "
                                   "may exit earlier)")

    def fragment_list(self) -> tuple[LibraryFragment, ...]:
        return select(self.vocabulary)

    def validate(self) -> None:
        self.fragment_list()
        if self.max_fragments < 1:
            raise ConfigError(f"max_fragments must be >= 1, got {self.max_fragments}")
        require_at_most("max_fragments", self.max_fragments, MAX_FRAGMENTS,
                        "states hold each node's parent, and the graph policy an N x N adjacency")
        if not 1 <= self.min_fragments <= self.max_fragments:
            raise ConfigError(f"min_fragments must be in [1, max_fragments={self.max_fragments}], "
                              f"got {self.min_fragments}")
        super().validate()


def _embeds(partial: Any, mol: Any) -> bool:
    """Whether the partial molecule (dummy atoms at its undecided points) can grow into `mol`:
    its heavy atoms match a substructure of `mol` in which each atom has as many heavy
    neighbours as in `partial`, plus at most one per dummy it carries."""
    from rdkit import Chem

    core = Chem.RWMol(partial)
    slack = [sum(n.GetAtomicNum() == 0 for n in atom.GetNeighbors()) for atom in partial.GetAtoms()]
    dummies = [atom.GetIdx() for atom in partial.GetAtoms() if atom.GetAtomicNum() == 0]
    for index in reversed(dummies):
        core.RemoveAtom(index)
    kept = sorted(set(range(partial.GetNumAtoms())) - set(dummies))  # core atom -> partial atom
    degree = [core.GetAtomWithIdx(k).GetDegree() for k in range(core.GetNumAtoms())]
    for match in mol.GetSubstructMatches(core, uniquify=False, maxMatches=10_000):
        if all(0 <= mol.GetAtomWithIdx(m).GetDegree() - degree[k] <= slack[kept[k]] for k, m in enumerate(match)):
            return True
    return False


class Fragments(MoleculeEnv):
    """Molecules as trees of library fragments joined at compatible attachment points; RDKit
    reward (QED by default). See the module docstring for the state and action layout."""

    compilable = True  # masks, features and steps are branch-free tensor code (scatters, gathers)

    name = "fragments"
    Config = FragmentsConfig
    presets = {"tiny": dict(vocabulary="ethylene,oxygen,fluoro", max_fragments=3)}

    def setup(self, config: FragmentsConfig) -> None:
        self.fragments = config.fragment_list()
        self.fragment_smiles = [f.smiles for f in self.fragments]
        parsed = [parse_fragment(s) for s in self.fragment_smiles]
        self.n_fragments = V = len(self.fragments)
        self.max_fragments = N = config.max_fragments
        self.min_fragments = config.min_fragments
        self.max_points = A = MAX_POINTS
        #: (V,) attachment points of each fragment
        self.n_points = torch.tensor([len(p.atoms) for p in parsed], dtype=torch.long)
        #: kind (index into KINDS) of each point, -1 where a fragment has fewer than A points
        self.point_kind = torch.full((V, A), -1, dtype=torch.long)
        ports = []
        for f, p in enumerate(parsed):
            for b, kind in enumerate(p.kinds):
                self.point_kind[f, b] = KINDS.index(kind)
                ports.append((f, b))
        self.n_ports = Q = len(ports)
        #: (Q,) fragment and point of each port; (V, A) port of each (fragment, point), -1 if none
        self.port_fragment = torch.tensor([f for f, _ in ports], dtype=torch.long)
        self.port_point = torch.tensor([b for _, b in ports], dtype=torch.long)
        self.port_index = torch.full((V, A), -1, dtype=torch.long)
        self.port_index[self.port_fragment, self.port_point] = torch.arange(Q)
        #: (V, A, Q) whether point a of fragment v may take port q (the point exists, kinds compatible)
        ok = [[[b < len(p.kinds) and compatible(p.kinds[b], parsed[g].kinds[c]) for g, c in ports]
               for b in range(A)] for p in parsed]
        self.attach_ok = torch.tensor(ok, dtype=torch.bool).reshape(V, A, Q)
        self.first_offset = N * A * Q
        self.n_actions = N * A * Q + V + 1
        self.state_shape = (4 * N,)
        self.max_steps = N + 1  # N placements, then exit
        self.feature_dim = N * (V + 1 + (A + 1) + (N + 1) + (A + 1) + A)
        self.setup_molecules(config)
        self._fragment_mols: list[Any] | None = None  # each fragment's molecule, made by the first SMILES read

    # ------------------------------------------------------------------ reading states
    def _blocks(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(fragment, parent, parent point, own point), each (B, N)."""
        N = self.max_fragments
        return states[:, :N], states[:, N:2 * N], states[:, 2 * N:3 * N], states[:, 3 * N:]

    def n_nodes(self, states: torch.Tensor) -> torch.Tensor:
        return (states[:, :self.max_fragments] >= 0).sum(dim=1)

    def point_use(self, states: torch.Tensor) -> torch.Tensor:
        """(B, N, A) how many bonds use each point of each node (0 or 1 in every state): a node's
        own point, and the parent points its children hang from."""
        N, A = self.max_fragments, self.max_points
        _, parent, parent_point, own = self._blocks(states)
        slots = torch.arange(N, device=states.device)
        dump = N * A  # an extra column for the entries that name no point
        own_index = torch.where(own >= 0, slots * A + own, torch.full_like(own, dump))
        parent_index = torch.where(parent >= 0, parent * A + parent_point, torch.full_like(parent, dump))
        counts = states.new_zeros(states.shape[0], N * A + 1)
        ones = torch.ones_like(own)
        counts.scatter_add_(1, own_index.clamp(0, dump), ones).scatter_add_(1, parent_index.clamp(0, dump), ones)
        return counts[:, :dump].reshape(states.shape[0], N, A)

    def open_points(self, states: torch.Tensor) -> torch.Tensor:
        """(B, N, A) bool: the points present on a node and not used."""
        fragment = states[:, :self.max_fragments]
        present = torch.arange(self.max_points, device=states.device) < self.n_points[fragment.clamp(min=0)][:, :, None]
        return present & (fragment >= 0)[:, :, None] & (self.point_use(states) == 0)

    # ------------------------------------------------------------------ interface
    @property
    def initial_state(self) -> torch.Tensor:
        return torch.full(self.state_shape, -1, dtype=torch.long, device=self.device)

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        B, N = states.shape[0], self.max_fragments
        fragment = states[:, :N]
        n = self.n_nodes(states)
        attach = self.open_points(states)[:, :, :, None] & self.attach_ok[fragment.clamp(min=0)]  # (B, N, A, Q)
        attach = attach & (n < N)[:, None, None, None]
        first = (n == 0)[:, None].expand(B, self.n_fragments)
        moves = torch.cat([attach.reshape(B, self.first_offset), first], dim=1)
        exit_ = (n >= 1) & ((n >= self.min_fragments) | ~moves.any(dim=1))
        return torch.cat([moves, exit_[:, None]], dim=1)

    def _last_action(self, states: torch.Tensor) -> torch.Tensor:
        """(B,) the forward action that added each state's last node (meaningless for s0)."""
        A, Q = self.max_points, self.n_ports
        fragment, parent, parent_point, own = self._blocks(states)
        rows = torch.arange(states.shape[0], device=states.device)
        last = (self.n_nodes(states) - 1).clamp(min=0)
        f = fragment[rows, last].clamp(min=0)
        port = self.port_index[f, own[rows, last].clamp(min=0)].clamp(min=0)
        attach = (parent[rows, last].clamp(min=0) * A + parent_point[rows, last].clamp(min=0)) * Q + port
        return torch.where(last >= 1, attach, self.first_offset + f)

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Exactly one action per state but s0: the one that added its last node."""
        n = self.n_nodes(states)
        column = torch.where(n >= 1, self._last_action(states), torch.full_like(n, self.n_actions - 1))
        mask = torch.zeros(states.shape[0], self.n_actions, dtype=torch.bool, device=states.device)
        mask.scatter_(1, column[:, None], True)
        return mask[:, :-1]

    def _slots(self, slot: torch.Tensor) -> torch.Tensor:
        """(B, 4) the state entries of node `slot` in the four blocks."""
        N = self.max_fragments
        return slot[:, None] + N * torch.arange(4, device=slot.device)

    def _step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        A, Q = self.max_points, self.n_ports
        is_first = actions >= self.first_offset
        slot = torch.where(is_first, torch.zeros_like(actions), self.n_nodes(states)).clamp(max=self.max_fragments - 1)
        port = actions % Q
        none = torch.full_like(actions, -1)
        fragment = torch.where(is_first, actions - self.first_offset, self.port_fragment[port])
        parent = torch.where(is_first, none, actions // (A * Q))
        parent_point = torch.where(is_first, none, (actions // Q) % A)
        own = torch.where(is_first, none, self.port_point[port])
        out = states.clone()
        out.scatter_(1, self._slots(slot), torch.stack([fragment, parent, parent_point, own], dim=1))
        return out

    def _backward_step(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Remove the last node (the only undo the backward mask allows)."""
        slot = (self.n_nodes(states) - 1).clamp(min=0)
        out = states.clone()
        out.scatter_(1, self._slots(slot), -1)
        return out

    def mutate(self, objects: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One node's fragment swapped for a uniformly drawn one that takes the same joins (the
        node's own point and its children's points exist on it, with compatible kinds); the tree
        is kept. Symmetric: the node and the fragment are drawn uniformly and the swap back
        takes the same joins. A swap that does not fit, or draws the same fragment, is not made."""
        device = draw_device(generator, objects)
        draw = torch.rand(objects.shape[0], generator=generator, device=device).to(objects.device)
        node = (draw * self.n_nodes(objects)).long().clamp(max=self.max_fragments - 1)
        new = torch.randint(self.n_fragments, (objects.shape[0],), generator=generator, device=device)
        return self.swap(objects, node, new.to(objects.device))

    def swap(self, objects: torch.Tensor, node: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """Each object with the fragment of its node `node` replaced by fragment `new` where the
        new fragment takes the node's joins; unchanged where it does not (`mutate`'s move)."""
        B, N = objects.shape[0], self.max_fragments
        fragment, parent, parent_point, own = self._blocks(objects)
        rows = torch.arange(B, device=objects.device)
        # the node's join to its parent: its own point must exist on the new fragment and fit the parent's
        has_parent = node >= 1
        own_port = self.port_index[new, own[rows, node].clamp(min=0)]
        up = self.attach_ok[fragment[rows, parent[rows, node].clamp(min=0)].clamp(min=0),
                            parent_point[rows, node].clamp(min=0), own_port.clamp(min=0)]
        fits = ~has_parent | ((own_port >= 0) & up)
        # its children's joins: each child's parent point must exist on the new fragment and fit the child
        child = (parent == node[:, None]) & (fragment >= 0)  # (B, N)
        point = parent_point.clamp(min=0)
        child_port = self.port_index[fragment.clamp(min=0), own.clamp(min=0)].clamp(min=0)  # (B, N)
        down = self.attach_ok[new[:, None].expand(B, N), point, child_port]  # (False where the point is missing)
        fits &= (down | ~child).all(dim=1)
        mutants = objects.clone()
        mutants[rows, node] = torch.where(fits, new, fragment[rows, node])
        return mutants

    def features(self, states: torch.Tensor) -> torch.Tensor:
        """The MLP's input, per node slot: one-hot fragment (or empty), own point, parent and
        parent point (or none), and which of its points are used."""
        fragment, parent, parent_point, own = self._blocks(states)
        N, A, V = self.max_fragments, self.max_points, self.n_fragments
        parts = [F.one_hot(fragment + 1, V + 1), F.one_hot(own + 1, A + 1), F.one_hot(parent + 1, N + 1),
                 F.one_hot(parent_point + 1, A + 1), (self.point_use(states) > 0).long()]
        return torch.cat(parts, dim=2).reshape(states.shape[0], self.feature_dim).float()

    # ------------------------------------------------------------------ graph policy
    def graph_layout(self) -> GraphLayout:
        """Node actions: attach each port at each of the node's points; no pair actions; graph
        actions: place the first fragment. One edge type (every join is a single bond)."""
        return GraphLayout(max_nodes=self.max_fragments, node_features=self.n_fragments + 3 * self.max_points + 2,
                           edge_types=1, node_actions=self.max_points * self.n_ports, pair_actions=0,
                           graph_actions=self.n_fragments)

    def graph_inputs(self, states: torch.Tensor) -> GraphInputs:
        """Node features: fragment one-hot, used and open points, the own point (one-hot), a
        flag on the last node (the one a backward step removes) and the position (k + 1) / N;
        adjacency: the tree's joins."""
        fragment, parent, _, own = self._blocks(states)
        B, N, A = states.shape[0], self.max_fragments, self.max_points
        mask = fragment >= 0
        kind = F.one_hot(fragment.clamp(min=0), self.n_fragments) * mask[:, :, None]
        used = (self.point_use(states) > 0) & mask[:, :, None]
        own_point = F.one_hot(own + 1, A + 1)[:, :, 1:]
        slots = torch.arange(N, device=states.device)
        last = (slots == (self.n_nodes(states) - 1)[:, None]) & mask
        position = ((slots + 1).float() / N).expand(B, N) * mask
        nodes = torch.cat([kind.float(), used.float(), self.open_points(states).float(), own_point.float(),
                           last[:, :, None].float(), position[:, :, None]], dim=2)
        joins = states.new_zeros(B, N, N + 1)
        joins.scatter_(2, torch.where(parent >= 0, parent, torch.full_like(parent, N))[:, :, None], 1)
        joins = joins[:, :, :N].float()
        adjacency = (joins + joins.transpose(1, 2))[:, None]
        return GraphInputs(nodes, mask, adjacency)

    # ------------------------------------------------------------------ molecules and reward
    def _tree(self, row: np.ndarray) -> tuple[list[str], list[tuple[int, int, int, int]]]:
        """The fragment SMILES of a state row's nodes and its joins (node, point, parent, parent point)."""
        N = self.max_fragments
        fragment, parent, parent_point, own = row[:N], row[N:2 * N], row[2 * N:3 * N], row[3 * N:]
        n = int((fragment >= 0).sum())
        nodes = [self.fragment_smiles[int(f)] for f in fragment[:n]]
        joins = [(k, int(own[k]), int(parent[k]), int(parent_point[k])) for k in range(1, n)]
        return nodes, joins

    def _molecule_smiles(self, row: np.ndarray) -> str | None:
        """Canonical SMILES of one state row (None for the empty graph, or where RDKit refuses
        the molecule, which the library's construction rules out)."""
        from rdkit import Chem

        nodes, joins = self._tree(row)
        if not nodes:
            return None
        try:
            return Chem.MolToSmiles(assemble(nodes, joins))
        except Exception:  # noqa: BLE001 - RDKit raises several kinds; an invalid molecule is None
            return None

    def _row_of_molecule(self, mol: Any) -> np.ndarray:
        """A fragment tree of a molecule, found depth first over decisions taken one open point
        at a time, in node and point order: join a fragment there (larger ones first, only
        fragments that occur in `mol`), or leave it a hydrogen for good. A partial tree is kept
        while its molecule (its undecided points left out) is a substructure of `mol` with fewer
        heavy atoms, and of partial trees with equal molecules and undecided points one is
        expanded. The first tree found, which may be any of the molecule's labelled forms;
        DataError where none exists (or none within SEARCH_LIMIT expanded partial trees)."""
        from rdkit import Chem

        target, heavy = Chem.MolToSmiles(mol), mol.GetNumAtoms()
        if self._fragment_mols is None:
            self._fragment_mols = [assemble([smiles], []) for smiles in self.fragment_smiles]
        fits = torch.tensor([mol.HasSubstructMatch(f) for f in self._fragment_mols])
        if not fits.any():
            raise DataError(f"it contains none of the {self.n_fragments} fragments")
        size = torch.tensor([f.GetNumAtoms() for f in self._fragment_mols])
        A, Q = self.max_points, self.n_ports

        def undecided(state: torch.Tensor, closed: frozenset) -> list[tuple[int, int]]:
            """The open points of a partial tree not yet left as hydrogens, in node and point order."""
            points = self.open_points(state[None].to(self.device))[0].cpu().nonzero().tolist()
            return [(i, a) for i, a in points if (i, a) not in closed]

        order = [f for f in torch.argsort(size, stable=True).tolist() if fits[f] and size[f] <= heavy]
        roots = self._step(self.initial_states(len(order)),
                           self.first_offset + torch.tensor(order, dtype=torch.long, device=self.device)).cpu()
        # (state, heavy atoms, points left as hydrogens, points still undecided)
        stack = [(r, int(size[f]), frozenset(), undecided(r, frozenset())) for r, f in zip(roots, order)]
        seen = set()
        for _ in range(SEARCH_LIMIT):
            if not stack:
                raise DataError(f"no tree of at most {self.max_fragments} of the {self.n_fragments} fragments "
                                "(joined by the attachment rule) makes it")
            state, atoms, closed, points = stack.pop()
            if atoms == heavy:
                if self._molecule_smiles(state.cpu().numpy()) == target:
                    return state.cpu().numpy()
                continue
            if not points:
                continue
            i, a = points[0]
            mask = self.forward_mask(state[None].to(self.device))[0].cpu()
            ports = mask[(i * A + a) * Q:(i * A + a + 1) * Q].nonzero()[:, 0]
            ports = ports[fits[self.port_fragment[ports]] & (atoms + size[self.port_fragment[ports]] <= heavy)]
            ports = ports[torch.argsort(size[self.port_fragment[ports]], stable=True)]  # the largest popped first
            options = [(state, atoms, closed | {(i, a)}, points[1:])]
            children = self._step(state.expand(len(ports), -1).to(self.device), ((i * A + a) * Q + ports).to(self.device))
            options += [(c, atoms + int(size[self.port_fragment[q]]), closed, undecided(c, closed))
                        for c, q in zip(children.cpu(), ports)]
            for option in options:
                child, grown, _, open_ = option
                nodes, joins = self._tree(child.cpu().numpy())
                partial = assemble(nodes, joins, keep=set(open_))
                key = (len(nodes), Chem.MolToSmiles(partial))
                if key not in seen:
                    seen.add(key)
                    if grown == heavy or _embeds(partial, mol):
                        stack.append(option)
        raise DataError(f"no fragment tree found within {SEARCH_LIMIT} partial trees (a large molecule whose "
                        "fragments match it in many ways?)")

    # ------------------------------------------------------------------ enumeration
    def _enumerate(self) -> torch.Tensor:
        """Level by level. Each state has one parent, so the children of a level are distinct
        and the next level holds exactly as many states as the edges into it: a space too large
        is refused from the count, before the level is built."""
        chunk = max(1, 16_000_000 // (self.n_actions * self.state_shape[0]))
        levels = [self.initial_states(1)]
        total = 1
        while True:
            frontier = levels[-1]
            edges = sum(int(self.forward_mask(frontier[i:i + chunk])[:, :-1].sum())
                        for i in range(0, len(frontier), chunk))
            if edges == 0:
                break
            total += edges
            if total > self.max_enumerable_states:
                raise TooManyStates(f"{self.name}: more than {self.max_enumerable_states} states, too many to "
                                    "enumerate and score exactly (lower max_fragments, or use a smaller vocabulary)")
            found = []
            for i in range(0, len(frontier), chunk):
                part = frontier[i:i + chunk]
                rows, actions = self.forward_mask(part)[:, :-1].nonzero(as_tuple=True)
                found.append(self._step(part[rows], actions))
            levels.append(torch.cat(found))
        return torch.cat(levels)

    # ------------------------------------------------------------------ objects (CSV)
    @property
    def object_columns(self) -> list[str]:
        slots = range(self.max_fragments)
        return ([f"fragment{k}" for k in slots] + [f"parent{k}" for k in slots]
                + [f"parent_point{k}" for k in slots] + [f"point{k}" for k in slots])

    def objects_from_rows(self, rows: np.ndarray) -> torch.Tensor:
        """States from CSV rows (fragment ids as indices into the vocabulary, -1 for empty slots;
        then parents, parent points, own points); a DataError naming the row for anything that is
        not a state: values out of range, gaps between nodes, a node not hanging from an earlier
        one, a point that does not exist or is used twice, or a join the attachment rule forbids."""
        rows = np.asarray(rows)
        columns = self.object_columns
        if rows.ndim != 2 or rows.shape[1] != len(columns):
            got = rows.shape[-1] if rows.ndim else 0
            raise DataError(f"fragments objects need {len(columns)} columns (fragment0.., parent0.., "
                            f"parent_point0.., point0..), got {got}")
        for r, row in enumerate(rows.astype(np.int64)):
            why = self._row_problem(row)
            if why:
                raise DataError(f"row {r + 1}: {why}")
        return torch.as_tensor(rows.astype(np.int64), device=self.device)

    def _row_problem(self, row: np.ndarray) -> str | None:
        """Why a row is not a state of this environment (None if it is one)."""
        N, V = self.max_fragments, self.n_fragments
        fragment, parent, parent_point, own = row[:N], row[N:2 * N], row[2 * N:3 * N], row[3 * N:]
        if ((fragment < -1) | (fragment >= V)).any():
            bad = fragment[(fragment < -1) | (fragment >= V)][0]
            return f"fragment value {bad} is not a fragment index in [-1, {V - 1}]"
        n = int((fragment >= 0).sum())
        if n == 0:
            return "the molecule has no fragment"
        if (fragment[:n] < 0).any():
            return "fragments must fill slots fragment0, fragment1, ... without gaps (-1 only after the last)"
        if (row.reshape(4, N)[1:, n:] != -1).any() or (row.reshape(4, N)[1:, 0] != -1).any():
            return "parent, parent_point and point must be -1 for node 0 and the empty slots"
        points = self.n_points.tolist()
        used: set[tuple[int, int]] = set()
        for k in range(1, n):
            p, a, b = int(parent[k]), int(parent_point[k]), int(own[k])
            if not 0 <= p < k:
                return f"node {k} hangs from parent{k}={p}, not a node of smaller index"
            if not 0 <= a < points[fragment[p]]:
                return f"parent_point{k}={a}: {self.fragments[fragment[p]].name} has {points[fragment[p]]} point(s)"
            if not 0 <= b < points[fragment[k]]:
                return f"point{k}={b}: {self.fragments[fragment[k]].name} has {points[fragment[k]]} point(s)"
            if (p, a) in used or (k, b) in used:
                return f"node {k}'s join uses a point that is already used"
            used.update({(p, a), (k, b)})
            if not self.attach_ok[fragment[p], a, self.port_index[fragment[k], b]]:
                return (f"node {k} ({self.fragments[fragment[k]].name}) may not join "
                        f"{self.fragments[fragment[p]].name} at that point (attachment rule)")
        return None
