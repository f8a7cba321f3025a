"""The tangent (linearised) model and its reference implementation by ``torch.func.jvp``."""

from common.tangent.model import TangentModel
from common.tangent.reference import jvp_forward, jvp_forward_dual

__all__ = ["TangentModel", "jvp_forward", "jvp_forward_dual"]
