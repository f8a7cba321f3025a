"""Choosing the compute device: CUDA when present, CPU otherwise, or what the user names."""

from __future__ import annotations

import re

import torch

from tmc.common.errors import ConfigError

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto | cpu | cuda | cuda:N`` into a :class:`torch.device`.

    ``auto`` picks the first CUDA device when one is available and the CPU otherwise. Asking
    for CUDA on a machine without it is an error rather than a silent fall-back, so that a
    silo that expects its GPU learns at once that it is not being used.
    """
    if not _DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(f"device must be one of auto, cpu, cuda, cuda:N; got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} was asked for but CUDA is not available on this machine; "
                "use device='auto' or 'cpu'"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    return torch.device(name)
