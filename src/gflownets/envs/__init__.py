"""Environments: batched state tensors, masks, transitions and rewards (one class each)."""

from gflownets.envs.atoms import Atoms
from gflownets.envs.base import DiscreteEnv, EnvConfig
from gflownets.envs.bits import Bits, BitsConfig
from gflownets.envs.bitseq import BitSeq, BitSeqConfig
from gflownets.envs.dag import DAG, DAGConfig
from gflownets.envs.ehrlich import Ehrlich, EhrlichConfig, EhrlichFunction
from gflownets.envs.fragment_chains import FragmentChains, FragmentChainsConfig
from gflownets.envs.fragments import Fragments, FragmentsConfig
from gflownets.envs.hypergrid import Hypergrid, HypergridConfig
from gflownets.envs.multi_objective import BraninCurrin, BraninCurrinConfig
from gflownets.envs.sequences import Sequence, SequenceConfig, SequenceEnv
from gflownets.envs.sets import Sets, SetsConfig

#: name -> class; the CLI builds `gflownets train NAME` from this table.
ENVIRONMENTS: dict[str, type[DiscreteEnv]] = {
    cls.name: cls for cls in (Hypergrid, Sets, BitSeq, Sequence, Ehrlich, DAG, Bits, BraninCurrin, FragmentChains,
                              Atoms, Fragments)}

__all__ = ["DAG", "DAGConfig", "DiscreteEnv", "EnvConfig", "Hypergrid", "HypergridConfig", "Sets",
           "SetsConfig", "SequenceEnv", "Sequence", "SequenceConfig", "BitSeq", "BitSeqConfig",
           "Ehrlich", "EhrlichConfig", "EhrlichFunction", "Bits", "BitsConfig", "BraninCurrin", "BraninCurrinConfig",
           "FragmentChains", "FragmentChainsConfig", "Fragments", "FragmentsConfig", "ENVIRONMENTS"]
