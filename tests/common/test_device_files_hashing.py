"""Small shared pieces: device choice, atomic writes, canonical tensor hashes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tmc.common.device import resolve_device
from tmc.common.errors import ConfigError
from tmc.common.files import atomic_write_bytes
from tmc.common.hashing import tensors_sha256


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ConfigError, match="one of"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="not available"):
            resolve_device("cuda:0")


def test_atomic_write_replaces_whole_file_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["file.bin"]


def test_atomic_write_failure_leaves_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "file.bin"
    atomic_write_bytes(path, b"old")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_tensor_hash_is_canonical() -> None:
    a = {"x": torch.arange(6.0).reshape(2, 3), "y": torch.tensor([1], dtype=torch.int64)}
    b = {"y": a["y"].clone(), "x": a["x"].t().contiguous().t()}  # other order, other strides
    assert tensors_sha256(a) == tensors_sha256(b)
    assert tensors_sha256(a) != tensors_sha256({**a, "x": a["x"].double()})
    assert tensors_sha256(a) != tensors_sha256({**a, "x": a["x"].reshape(3, 2)})
