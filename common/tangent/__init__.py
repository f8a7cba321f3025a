"""The tangent (linearised) model, its two backends behind one interface, the per-op rules
of the dual-path engine (``tmc.common.tangent.ops``) and the ``torch.func.jvp`` reference."""

from tmc.common.tangent.backend import Linearised, PathName, TangentBackend
from tmc.common.tangent.dual_engine import DualPathBackend
from tmc.common.tangent.functional import JvpForward
from tmc.common.tangent.jvp_engine import JvpBackend
from tmc.common.tangent.model import PathChoice, TangentModel, select_backend
from tmc.common.tangent.reference import jvp_forward, jvp_forward_dual

__all__ = [
    "DualPathBackend",
    "JvpBackend",
    "JvpForward",
    "Linearised",
    "PathChoice",
    "PathName",
    "TangentBackend",
    "TangentModel",
    "jvp_forward",
    "jvp_forward_dual",
    "select_backend",
]
