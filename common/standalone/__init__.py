"""What runs an exported model outside the project: ``loader.py`` imports only the standard
library, torch and (for ResNets) torchvision, so it can be copied anywhere on its own
(docs/standalone.md shows it whole)."""

from tmc.common.standalone.loader import (
    ARCHITECTURES,
    DELTA_PREFIX,
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEY,
    THETA0_PREFIX,
    ModelFileError,
    SmallCNN,
    TMCModel,
    build_network,
    load,
    preprocess,
    read_inputs,
    read_npy,
)

__all__ = [
    "ARCHITECTURES",
    "DELTA_PREFIX",
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "THETA0_PREFIX",
    "ModelFileError",
    "SmallCNN",
    "TMCModel",
    "build_network",
    "load",
    "preprocess",
    "read_inputs",
    "read_npy",
]
