"""``small-cnn``: the built-in default base network.

Sized for scikit-learn's 8×8 ``digits`` (it trains in seconds on a CPU) but works on any
input size thanks to adaptive pooling. Its modules are named like torchvision's ResNets
(``stem``, ``layer1``, ``layer2``, ``fc``) so that tangent scopes read the same way for
every architecture: the stem stays frozen, the stages and the head can be linearised.
"""

from __future__ import annotations

# The class is defined in the standalone loader, which must run without the project (it is
# copied out of it, see docs/standalone.md); one definition keeps the state-dict keys of an exported
# model and of the project's own network the same.
from tmc.common.standalone.loader import SmallCNN


def small_cnn(*, num_classes: int, in_channels: int = 1) -> SmallCNN:
    """Build an untrained :class:`SmallCNN` (weights follow torch's default initialisation)."""
    return SmallCNN(num_classes=num_classes, in_channels=in_channels)


__all__ = ["SmallCNN", "small_cnn"]
