"""The tangent (linearised) model, its two execution paths and the ``torch.func.jvp``
reference."""

from tmc.common.tangent.functional import JvpForward
from tmc.common.tangent.model import PathChoice, PathName, TangentModel
from tmc.common.tangent.reference import jvp_forward, jvp_forward_dual

__all__ = [
    "JvpForward",
    "PathChoice",
    "PathName",
    "TangentModel",
    "jvp_forward",
    "jvp_forward_dual",
]
