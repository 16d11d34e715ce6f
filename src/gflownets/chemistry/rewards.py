"""Molecular rewards computed locally with RDKit: scores of molecules, composed and tempered.

A *score* maps a batch of valid RDKit molecules to one float each (`Score`); the built-in ones:

- `qed`: quantitative estimate of drug-likeness (Bickerton et al. 2012), in [0, 1];
- `sa`: synthetic accessibility (Ertl & Schuffenhauer 2009; the SA_Score module that ships in
  the rdkit wheel under `RDConfig.RDContribDir`), from 1 (easy) to 10 (hard), normalised to
  (10 - SA) / 9 in [0, 1] so that higher is better, as every other score;
- `logp(lo,hi)`, `mw(lo,hi)`, `tpsa(lo,hi)`: property windows, 1 inside [lo, hi] and
  exp(-d^2 / (2 w^2)) at a distance d outside (w: an optional third argument, by default 1 for
  Crippen logP, 50 Da for the molecular weight, 20 A^2 for the topological polar surface area);
- `tanimoto(SMILES)`: Tanimoto similarity of Morgan fingerprints (radius 2, 2048 bits) to a
  target molecule, 1 for the target itself;
- a user's function `custom(fn, on=...)`, or `module:function` in a spec: of one RDKit molecule
  (`on="mol"`, the default), one SMILES (`"smiles"`), or a whole batch of either
  (`"mol-batch"`, `"smiles-batch"`: one call for all molecules, for an expensive model).

A `MolecularReward` is the product of its scores (composition), tempered by `beta`:
R = score^beta (`transform="power"`) or R = exp(beta * score) (`"exp"`). Each score is called
once per batch with every valid molecule of it; an invalid SMILES gets score 0 and log-reward
-inf, which an environment's reward floor turns into its smallest reward.

Specs are text, as options take them: terms joined by `*` (or `,`), e.g. "qed*sa",
"qed,logp(1,3)", "tanimoto(CC(=O)Oc1ccccc1C(=O)O)", "my_scores:potency(smiles-batch)";
`parse_reward` raises a ConfigError naming an unknown term and the known ones.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import inspect
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gflownets.chemistry.molecules import Mol, fingerprints, parse_smiles, rdkit_version
from gflownets.errors import ConfigError, RewardError
from gflownets.user_code import load_object

#: default decay widths of the property windows, in each property's unit
WINDOW_WIDTHS = {"logp": 1.0, "mw": 50.0, "tpsa": 20.0}
#: how a user's function is called: on one molecule or SMILES at a time, or on the whole batch
CUSTOM_INPUTS = ("mol", "smiles", "mol-batch", "smiles-batch")
TRANSFORMS = ("power", "exp")


@dataclasses.dataclass(frozen=True)
class Score:
    """One named molecular score: `fn` maps a list of valid RDKit molecules to one float each
    (a list, array or tensor of that length). `identity` says exactly what it computes, for
    cache keys (a user's function: its name and a hash of its source); None when that cannot
    be known, and results of the score are then never cached."""

    name: str
    fn: Callable[[list[Mol]], Any] = dataclasses.field(repr=False, compare=False)
    identity: str | None = None

    def __call__(self, mols: Sequence[Mol]) -> np.ndarray:
        """float64 (len(mols),) scores; a RewardError for a result of another length, or a NaN or
        infinite value (naming the molecule)."""
        mols = list(mols)
        if not mols:
            return np.zeros(0, dtype=np.float64)
        result = self.fn(mols)
        if hasattr(result, "detach"):  # a torch tensor
            result = result.detach().cpu().numpy()
        try:
            values = np.asarray(result, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise RewardError(f"score {self.name} returned {type(result).__name__}, not numbers ({err})") from None
        if len(values) != len(mols):
            raise RewardError(f"score {self.name} returned {len(values)} values for {len(mols)} molecules")
        bad = ~np.isfinite(values)
        if bad.any():
            from rdkit import Chem

            i = int(np.argmax(bad))
            raise RewardError(f"score {self.name} is {values[i]} for {Chem.MolToSmiles(mols[i])}")
        return values


# ---------------------------------------------------------------------- built-in scores
def qed() -> Score:
    """QED, in [0, 1]."""
    from rdkit.Chem import QED

    return Score("qed", lambda mols: [QED.qed(m) for m in mols], "qed")


@functools.lru_cache(maxsize=1)
def _sascorer() -> Any:
    """RDKit's Contrib SA_Score module, loaded from its file (it is not an importable package)."""
    from rdkit import RDConfig

    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    if not os.path.isfile(path):
        raise ConfigError(f"score sa: RDKit's SA_Score module is not at {path} (this rdkit build lacks Contrib)")
    spec = importlib.util.spec_from_file_location("gflownets_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sa_raw(mols: Sequence[Mol]) -> np.ndarray:
    """The synthetic accessibility score itself, 1 (easy) to 10 (hard)."""
    scorer = _sascorer()
    return np.array([scorer.calculateScore(m) for m in mols], dtype=np.float64)


def sa() -> Score:
    """Synthetic accessibility as (10 - SA) / 9: 1 for the easiest molecules, 0 for the hardest."""
    _sascorer()  # a missing module is an error when the reward is built, not in the first batch
    return Score("sa", lambda mols: (10.0 - sa_raw(mols)) / 9.0, "sa:(10-SA)/9")


def _descriptor(name: str) -> Callable[[Mol], float]:
    from rdkit.Chem import Crippen, Descriptors, rdMolDescriptors

    return {"logp": Crippen.MolLogP, "mw": Descriptors.MolWt, "tpsa": rdMolDescriptors.CalcTPSA}[name]


def window(descriptor: str, low: float, high: float, width: float | None = None) -> Score:
    """1 where `descriptor` (logp, mw or tpsa) is in [low, high], exp(-d^2 / (2 width^2)) at a
    distance d outside."""
    if descriptor not in WINDOW_WIDTHS:
        raise ConfigError(f"window on {descriptor!r}: known properties are {', '.join(WINDOW_WIDTHS)}")
    width = WINDOW_WIDTHS[descriptor] if width is None else float(width)
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ConfigError(f"{descriptor} window: need finite low <= high, got {low}, {high}")
    if not (math.isfinite(width) and width > 0):
        raise ConfigError(f"{descriptor} window: the width must be > 0, got {width}")
    compute = _descriptor(descriptor)

    def score(mols: list[Mol]) -> np.ndarray:
        x = np.array([compute(m) for m in mols], dtype=np.float64)
        d = np.maximum(np.maximum(low - x, x - high), 0.0)
        return np.exp(-0.5 * (d / width) ** 2)

    name = f"{descriptor}({_number(low)},{_number(high)},{_number(width)})"
    return Score(name, score, name)


def tanimoto(target: str) -> Score:
    """Tanimoto similarity of Morgan fingerprints (radius 2, 2048 bits) to the `target` SMILES."""
    from rdkit import Chem, DataStructs

    mol = parse_smiles([target])[0]
    if mol is None:
        raise ConfigError(f"tanimoto: the target {target!r} is not a valid SMILES")
    reference = fingerprints([mol])[0]
    name = f"tanimoto({Chem.MolToSmiles(mol)})"
    return Score(name, lambda mols: DataStructs.BulkTanimotoSimilarity(reference, fingerprints(mols)), name)


def custom(fn: Callable[..., Any], on: str = "mol", name: str | None = None) -> Score:
    """A user's score: `fn` of one RDKit molecule (`on="mol"`), one canonical SMILES
    (`"smiles"`), or of the list of all of them in one call (`"mol-batch"`, `"smiles-batch"`),
    returning floats (>= 0 for a power-tempered reward). Cached results are keyed by `name` and
    a hash of `fn`'s source; a function whose source cannot be read is never cached."""
    if on not in CUSTOM_INPUTS:
        raise ConfigError(f"a custom score takes one of {', '.join(CUSTOM_INPUTS)}, got {on!r}")
    if not callable(fn):
        raise ConfigError(f"a custom score needs a function, got {type(fn).__name__}")
    name = name or f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"

    def score(mols: list[Mol]) -> Any:
        if on.startswith("smiles"):
            from rdkit import Chem

            inputs = [Chem.MolToSmiles(m) for m in mols]
        else:
            inputs = mols
        return fn(inputs) if on.endswith("batch") else [fn(x) for x in inputs]

    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        identity = None
    else:
        identity = f"{name}({on}) source-sha256:{hashlib.sha256(source.encode()).hexdigest()}"
    return Score(f"{name}({on})" if on != "mol" else name, score, identity)


def _number(x: float) -> str:
    return f"{x:g}"


# ---------------------------------------------------------------------- composition
def log_rewards_of_scores(scores: np.ndarray, beta: float, transform: str = "power") -> np.ndarray:
    """log R of composite scores: beta * log(score) (`power`: R = score^beta; a score of 0 gives
    -inf, for the reward floor) or beta * score (`exp`: R = exp(beta * score))."""
    scores = np.asarray(scores, dtype=np.float64)
    if transform == "exp":
        return beta * scores
    if transform != "power":
        raise ConfigError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
    if (scores < 0).any():
        raise RewardError(f"R = score^beta needs scores >= 0, got {scores[scores < 0][0]} (use transform exp)")
    with np.errstate(divide="ignore"):
        return beta * np.log(scores)


@dataclasses.dataclass(frozen=True)
class MolecularReward:
    """The product of `terms` (each a `Score`), tempered: R = product^beta (`transform="power"`)
    or exp(beta * product) (`"exp"`). Callable on SMILES: `reward(smiles)` gives R."""

    terms: tuple[Score, ...]
    beta: float = 1.0
    transform: str = "power"

    def __post_init__(self) -> None:
        if not self.terms:
            raise ConfigError("a molecular reward needs at least one score")
        if self.transform not in TRANSFORMS:
            raise ConfigError(f"transform must be one of {', '.join(TRANSFORMS)}, got {self.transform!r}")
        if not math.isfinite(self.beta):
            raise ConfigError(f"beta must be finite, got {self.beta}")

    @property
    def spec(self) -> str:
        """The composite score as a spec string ("qed*sa"), without the temperature."""
        return "*".join(term.name for term in self.terms)

    @property
    def identity(self) -> str | None:
        """What the composite score computes, for cache keys (None: not cacheable)."""
        parts = [term.identity for term in self.terms]
        return None if any(p is None for p in parts) else "*".join(parts)

    def score_molecules(self, mols: Sequence[Mol | None]) -> np.ndarray:
        """float64 composite scores; 0 where the molecule is None (invalid). Every term is called
        once, with all the valid molecules."""
        out = np.zeros(len(mols), dtype=np.float64)
        valid = [i for i, m in enumerate(mols) if m is not None]
        if valid:
            batch = [mols[i] for i in valid]
            product = np.ones(len(batch), dtype=np.float64)
            for term in self.terms:
                product *= term(batch)
            out[valid] = product
        return out

    def scores(self, smiles: Sequence[str]) -> np.ndarray:
        """Composite scores of SMILES strings (0 for an invalid one)."""
        return self.score_molecules(parse_smiles(smiles))

    def log_rewards(self, smiles: Sequence[str]) -> np.ndarray:
        """log R of each SMILES; -inf for an invalid one (whatever the transform)."""
        mols = parse_smiles(smiles)
        log_r = log_rewards_of_scores(self.score_molecules(mols), self.beta, self.transform)
        log_r[[m is None for m in mols]] = -np.inf
        return log_r

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        """R of each SMILES (0 for an invalid one)."""
        return np.exp(self.log_rewards(smiles))


# ---------------------------------------------------------------------- specs
def _window_factory(descriptor: str) -> Callable[[list[str]], Score]:
    def make(args: list[str]) -> Score:
        if len(args) not in (2, 3):
            raise ConfigError(f"{descriptor} takes (low,high) or (low,high,width), e.g. {descriptor}"
                              f"({'1,3' if descriptor == 'logp' else '200,500' if descriptor == 'mw' else '20,140'})")
        try:
            numbers = [float(a) for a in args]
        except ValueError:
            raise ConfigError(f"{descriptor}({','.join(args)}): the bounds must be numbers") from None
        return window(descriptor, *numbers)
    return make


def _no_arguments(name: str, factory: Callable[[], Score]) -> Callable[[list[str]], Score]:
    def make(args: list[str]) -> Score:
        if args:
            raise ConfigError(f"{name} takes no arguments, got {name}({','.join(args)})")
        return factory()
    return make


def _tanimoto_factory(args: list[str]) -> Score:
    if len(args) != 1 or not args[0]:
        raise ConfigError("tanimoto takes one target SMILES, e.g. tanimoto(CC(=O)Oc1ccccc1C(=O)O)")
    return tanimoto(args[0])


#: built-in score names of a spec -> factory of the score from the spec's arguments (as text)
SCORES: dict[str, Callable[[list[str]], Score]] = {
    "qed": _no_arguments("qed", qed),
    "sa": _no_arguments("sa", sa),
    "logp": _window_factory("logp"),
    "mw": _window_factory("mw"),
    "tpsa": _window_factory("tpsa"),
    "tanimoto": _tanimoto_factory,
}

_TERM = re.compile(r"^(?P<name>[A-Za-z_][\w.]*(?::[A-Za-z_][\w.]*)?)\s*(?:\((?P<args>.*)\))?$", re.DOTALL)


def split_top_level(text: str, separators: str) -> list[str]:
    """`text` split at the `separators` outside parentheses (SMILES arguments keep theirs)."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"unbalanced ')' in {text!r}")
        if depth == 0 and char in separators:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth:
        raise ConfigError(f"unbalanced '(' in {text!r}")
    parts.append("".join(current).strip())
    return parts


def _load_function(spec: str) -> Callable[..., Any]:
    """The user's function named by "module:function"."""
    target = load_object(spec, "score")
    if not callable(target):
        raise ConfigError(f"score {spec!r} is not a function")
    return target


def parse_term(term: str) -> Score:
    """One score of a spec: a built-in name with its arguments, or "module:function(INPUT)"."""
    match = _TERM.match(term.strip())
    if not match:
        raise ConfigError(f"cannot read the score {term!r}: expected a name such as qed, logp(1,3) or "
                          f"module:function; known: {', '.join(SCORES)}")
    name, args_text = match["name"], match["args"]
    if ":" in name:
        on = (args_text or "mol").strip()
        if on not in CUSTOM_INPUTS:
            raise ConfigError(f"score {term!r}: a function takes ({'|'.join(CUSTOM_INPUTS)}), got ({on})")
        return custom(_load_function(name), on=on, name=name)
    key = name.lower()
    if key not in SCORES:
        raise ConfigError(f"unknown score {name!r}; known: {', '.join(SCORES)}, or module:function")
    if key == "tanimoto":
        args = [] if args_text is None else [args_text.strip()]
    else:
        text = (args_text or "").strip()
        args = [a.strip() for a in split_top_level(text, ",")] if text else []
    return SCORES[key](args)


def check_score_options(score: str, beta: float, transform: str, floor: float, mode_threshold: float) -> None:
    """The checks every molecule environment makes of its reward options (ConfigError naming
    the first bad one); an unknown score name is caught by parsing the spec."""
    if transform not in TRANSFORMS:
        raise ConfigError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
    if not math.isfinite(beta):
        raise ConfigError(f"beta must be finite, got {beta}")
    if not 0 < floor < 1:
        raise ConfigError(f"floor must be in (0, 1), got {floor}")
    if not math.isfinite(mode_threshold):
        raise ConfigError(f"mode_threshold must be finite, got {mode_threshold}")
    parse_reward(score, beta, transform)


class SmilesScorer:
    """The composite score of a spec ("qed*sa") as a picklable function of a list of SMILES:
    float64 scores, NaN where a SMILES is invalid. It travels by its spec and parses it again
    where it runs (a reward worker), since its terms are closures."""

    def __init__(self, spec: str, reward: MolecularReward | None = None):
        self.spec = spec
        self._reward = reward

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        if self._reward is None:
            self._reward = parse_reward(self.spec)
        mols = parse_smiles(smiles)
        scores = self._reward.score_molecules(mols)
        scores[[m is None for m in mols]] = np.nan
        return scores

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "_reward": None}


def parse_reward(spec: str, beta: float = 1.0, transform: str = "power") -> MolecularReward:
    """A `MolecularReward` from a spec such as "qed*sa" or "qed,logp(1,3)" (terms joined by `*`
    or `,`), tempered by `beta` and `transform` (power: R = score^beta; exp: R = exp(beta score))."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"a molecular score spec is needed, e.g. 'qed' or 'qed*sa'; got {spec!r}")
    terms = split_top_level(spec, "*,")
    if any(not t for t in terms):
        raise ConfigError(f"empty score in {spec!r}: join scores with '*' or ','")
    return MolecularReward(tuple(parse_term(t) for t in terms), float(beta), transform)


def identity_key(*parts: Any) -> str:
    """A short stable hash of what a cached table depends on (the RDKit version included)."""
    text = "\n".join(map(str, (*parts, f"rdkit {rdkit_version()}")))
    return hashlib.sha256(text.encode()).hexdigest()[:20]
