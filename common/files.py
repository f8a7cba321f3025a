"""Crash-safe file writes: a reader sees the old file or the new one, never a partial one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from tmc.common.errors import ConfigError


def fsync_directory(directory: Path) -> None:
    """Persist a directory entry (a rename or unlink) across a power loss (POSIX)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    Files are created with ``mode`` (owner-only by default: these files hold other people's
    contributions). If anything fails the temp file is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def require_file_destination(path: Path, what: str) -> Path:
    """``path`` if a file can be written there; else a ConfigError saying why (it is a
    folder, or a parent is a file), so a caller refuses before doing or recording anything."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(
            f"{what} {path} is a folder: give a file name (e.g. {path / 'model.safetensors'})"
        )
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{what} {path} cannot be written: {parent} is a file, not a folder")
    return path
