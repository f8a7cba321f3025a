"""Base models: the zoo, specs, weights and materialised θ0."""

from tmc.common.models.efficientnet_lite import EfficientNetLite, efficientnet_lite0
from tmc.common.models.materialize import (
    MaterializedBase,
    default_cache_dir,
    from_theta0,
    materialize,
    spec_sha256,
)
from tmc.common.models.small_cnn import SmallCNN, small_cnn
from tmc.common.models.spec import (
    BaseModelSpec,
    FileWeights,
    InitWeights,
    PackagedWeights,
    PretrainedWeights,
    TorchHubWeights,
)
from tmc.common.models.zoo import (
    ARCHITECTURES,
    Architecture,
    PackagedFile,
    build_network,
    get_architecture,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "BaseModelSpec",
    "EfficientNetLite",
    "FileWeights",
    "InitWeights",
    "MaterializedBase",
    "PackagedFile",
    "PackagedWeights",
    "PretrainedWeights",
    "SmallCNN",
    "TorchHubWeights",
    "build_network",
    "default_cache_dir",
    "efficientnet_lite0",
    "from_theta0",
    "get_architecture",
    "materialize",
    "small_cnn",
    "spec_sha256",
]
