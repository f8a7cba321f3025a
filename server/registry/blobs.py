"""Content-addressed tensor files under the registry root.

Layout (every folder 0o700, every file 0o600: these are other people's contributions)::

    blobs/<id[:2]>/<id>.safetensors     one component, named by its component id
    sums/<sha256>.safetensors           the exact running sum (ExactSum limbs)
    versions/<sha256>.safetensors       a version's composed Δ (the export format)
    base/<sha256>.safetensors           θ0 itself, named by its tensors' hash, so that the
                                        registry never depends on a cache or a weights file

Files are written atomically (temp file, fsync, rename) and read back whole, under a size
limit derived from the base's shapes, with their sha256 checked against the value recorded
in the metadata; a mismatch is an :class:`IntegrityError` that names the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from tmc.common.components import Component, Delta, ExactSum, TangentSchema, component_from_bytes
from tmc.common.components.codec import MAX_HEADER_BYTES
from tmc.common.errors import ComponentError, IntegrityError, RegistryError
from tmc.common.files import atomic_write_bytes
from tmc.common.hashing import tensors_sha256
from tmc.server.registry.entities import canonical_json
from tmc.server.registry.errors import MissingBlobError, StorageError

SUFFIX = ".safetensors"
SUM_KEY = "tmc.sum"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FILE_MODE = 0o600
_DIR_MODE = 0o700
MAX_THETA0_BYTES = 2**31
"""The most bytes a θ0 file may have (the zoo's largest base is a small fraction of it): a
file swapped for an endless one is refused rather than read into memory."""
_SUBDIRS = ("blobs", "sums", "versions", "base")
THETA0_KEY = "tmc.theta0_sha256"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) owner-only, whatever the process umask is."""
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != _DIR_MODE:
        path.chmod(_DIR_MODE)


def read_regular(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes, not followed
    through a link; a special file (a FIFO, a device) would block or never end, and a link
    may lead anywhere: each is an :class:`IntegrityError` naming ``what``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise MissingBlobError(f"{what} is missing") from exc
    except OSError as exc:  # ELOOP: a symbolic link
        raise IntegrityError(f"{what} cannot be opened as a file: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IntegrityError(f"{what} is not a regular file: it is not what the registry wrote")
        if info.st_size > limit:
            raise IntegrityError(
                f"{what} is {info.st_size} bytes, over the {limit} bytes allowed: it is not "
                "what the registry wrote"
            )
        with os.fdopen(os.dup(fd), "rb") as stream:
            data = stream.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise IntegrityError(f"{what} grew past {limit} bytes while it was read")
    return data


def _checked_key(key: str) -> str:
    # Keys become file names: only 64 hex digits, so no path can escape the registry.
    if not _HEX64.fullmatch(key):
        raise RegistryError(f"invalid blob key {key[:80]!r}: expected 64 hex digits")
    return key


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (already hash-verified)."""
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    metadata = header.get("__metadata__", {})
    return {str(k): str(v) for k, v in metadata.items()}


class BlobStore:
    """Tensor files of one registry. ``counts`` tallies reads and writes by kind, so tests
    and benchmarks can check costs by counting rather than timing."""

    def __init__(self, root: Path, schema: TangentSchema) -> None:
        self.root = root
        self.schema = schema
        self.counts: Counter[str] = Counter()
        numel = schema.numel
        # float32 Δ at most: 4 bytes a value (int8 per channel: 1 + 4 per channel ≤ 5)
        self.max_component_bytes = 8 + MAX_HEADER_BYTES + 5 * numel
        self.max_sum_bytes = 8 + (1 << 20) + 16 * numel
        self.max_version_bytes = 8 + (64 << 20) + 4 * numel  # header lists every id

    def ensure_dirs(self) -> None:
        for sub in _SUBDIRS:
            ensure_private_dir(self.root / sub)

    # -- paths -------------------------------------------------------------------------------

    def component_path(self, component_id: str) -> Path:
        key = _checked_key(component_id)
        return self.root / "blobs" / key[:2] / f"{key}{SUFFIX}"

    def sum_path(self, sha256: str) -> Path:
        return self.root / "sums" / f"{_checked_key(sha256)}{SUFFIX}"

    def version_path(self, sha256: str) -> Path:
        return self.root / "versions" / f"{_checked_key(sha256)}{SUFFIX}"

    def theta0_path(self) -> Path:
        return self.root / "base" / f"{_checked_key(self.schema.base_sha256)}{SUFFIX}"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # -- generic I/O -------------------------------------------------------------------------

    def _write(self, path: Path, data: bytes, kind: str) -> str:
        try:
            ensure_private_dir(path.parent)
            atomic_write_bytes(path, data, mode=_FILE_MODE)
        except OSError as exc:
            raise StorageError(
                f"cannot write {kind} file {self.relative(path)}: {exc.strerror or exc}; "
                "nothing was committed and the registry is unchanged"
            ) from exc
        self.counts[f"{kind}_writes"] += 1
        return sha256_hex(data)

    def _read(self, path: Path, expected_sha256: str, limit: int, kind: str) -> bytes:
        self.counts[f"{kind}_reads"] += 1
        data = read_regular(path, limit, f"{kind} file {self.relative(path)}")
        actual = sha256_hex(data)
        if actual != expected_sha256:
            raise IntegrityError(
                f"{kind} file {self.relative(path)} hashes to {actual[:12]}…, but the registry "
                f"recorded {expected_sha256[:12]}…: it was altered or corrupted"
            )
        return data

    def _delete(self, path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def _list(self, folder: Path, pattern: str) -> list[str]:
        if not folder.is_dir():
            return []
        keys = (p.name.removesuffix(SUFFIX) for p in folder.glob(pattern))
        return sorted(k for k in keys if _HEX64.fullmatch(k))

    # -- components --------------------------------------------------------------------------

    def write_component(self, component_id: str, data: bytes) -> str:
        """Store a component's serialised bytes; returns their sha256."""
        return self._write(self.component_path(component_id), data, "component")

    def read_component(self, component_id: str, blob_sha256: str) -> Component:
        path = self.component_path(component_id)
        data = self._read(path, blob_sha256, self.max_component_bytes, "component")
        try:
            component = component_from_bytes(data, max_bytes=self.max_component_bytes)
        except ComponentError as exc:
            raise IntegrityError(f"component file {self.relative(path)}: {exc}") from exc
        if component.id != component_id:
            raise IntegrityError(
                f"component file {self.relative(path)} holds component {component.id[:12]}…"
            )
        return component

    def has_component(self, component_id: str) -> bool:
        return self.component_path(component_id).is_file()

    def delete_component(self, component_id: str) -> bool:
        path = self.component_path(component_id)
        deleted = self._delete(path)
        with contextlib.suppress(OSError):  # drop the shard folder once it is empty
            path.parent.rmdir()
        return deleted

    def list_components(self) -> list[str]:
        keys = self._list(self.root / "blobs", f"??/*{SUFFIX}")
        return [k for k in keys if self.component_path(k).is_file()]  # misplaced: strays

    # -- running sums ------------------------------------------------------------------------

    @staticmethod
    def encode_sum(acc: ExactSum) -> bytes:
        """The accumulator as safetensors (one metadata key: safetensors orders several
        arbitrarily, and the file is named by its hash)."""
        metadata = {SUM_KEY: canonical_json({**acc.state_metadata(), "format": 1})}
        return save(acc.to_tensors(), metadata=metadata)

    def write_sum_bytes(self, data: bytes) -> str:
        sha = sha256_hex(data)
        self._write(self.sum_path(sha), data, "sum")
        return sha

    def write_sum(self, acc: ExactSum) -> str:
        return self.write_sum_bytes(self.encode_sum(acc))

    def read_sum(self, sha256: str) -> ExactSum:
        path = self.sum_path(sha256)
        data = self._read(path, sha256, self.max_sum_bytes, "sum")
        try:
            state = json.loads(safetensors_metadata(data)[SUM_KEY])
            acc = ExactSum.from_tensors(load(data), state)
        except (KeyError, ValueError, SafetensorError) as exc:
            raise IntegrityError(f"running-sum file {self.relative(path)} is unreadable") from exc
        if acc.shapes != dict(self.schema.shapes):
            raise IntegrityError(f"running-sum file {self.relative(path)} has other shapes")
        return acc

    def delete_sum(self, sha256: str) -> bool:
        return self._delete(self.sum_path(sha256))

    def list_sums(self) -> list[str]:
        return self._list(self.root / "sums", f"*{SUFFIX}")

    # -- composed Δ of versions --------------------------------------------------------------

    def write_version(self, data: bytes) -> str:
        sha = sha256_hex(data)
        self._write(self.version_path(sha), data, "version")
        return sha

    def read_version(self, sha256: str) -> bytes:
        return self._read(self.version_path(sha256), sha256, self.max_version_bytes, "version")

    def read_version_delta(self, sha256: str, delta_sha256: str) -> Delta:
        data = self.read_version(sha256)
        path = self.relative(self.version_path(sha256))
        try:
            delta = Delta(load(data))
        except (SafetensorError, ComponentError) as exc:
            raise IntegrityError(f"version file {path} is unreadable: {exc}") from exc
        if tensors_sha256(delta) != delta_sha256:
            raise IntegrityError(f"version file {path} does not hold the recorded Δ")
        return delta

    def delete_version(self, sha256: str) -> bool:
        return self._delete(self.version_path(sha256))

    def list_versions(self) -> list[str]:
        return self._list(self.root / "versions", f"*{SUFFIX}")

    # -- θ0 ------------------------------------------------------------------------------------

    def has_theta0(self) -> bool:
        return self.theta0_path().is_file()

    def write_theta0(self, state: Mapping[str, torch.Tensor]) -> str:
        """Store θ0 after checking that it is this registry's (its tensors' sha256)."""
        actual = tensors_sha256(state)
        if actual != self.schema.base_sha256:
            raise IntegrityError(
                f"θ0 offered to the registry hashes to {actual[:12]}…, but the registry's base "
                f"is {self.schema.base_sha256[:12]}…: not stored"
            )
        tensors = {name: value.detach().cpu().contiguous() for name, value in state.items()}
        return self._write(self.theta0_path(), save(tensors, metadata={THETA0_KEY: actual}), "base")

    def read_theta0(self) -> dict[str, torch.Tensor]:
        """θ0 as stored, verified against the base's hash."""
        path = self.theta0_path()
        self.counts["base_reads"] += 1
        try:
            state = load(read_regular(path, MAX_THETA0_BYTES, f"θ0 file {self.relative(path)}"))
        except MissingBlobError as exc:
            raise MissingBlobError(
                f"the registry does not hold θ0 ({self.relative(path)}): it was created before "
                "registries stored their base, or the file was removed; one run of the "
                "ServerApp with the same base stores it"
            ) from exc
        except SafetensorError as exc:
            raise IntegrityError(f"θ0 file {self.relative(path)} is unreadable: {exc}") from exc
        if tensors_sha256(state) != self.schema.base_sha256:
            raise IntegrityError(
                f"θ0 file {self.relative(path)} does not hash to the registry's base "
                f"{self.schema.base_sha256[:12]}…: it was altered or corrupted"
            )
        return state

    # -- leftovers ---------------------------------------------------------------------------

    def stray_files(self) -> list[Path]:
        """Temp files of interrupted writes and files that are no blob at all."""
        strays: list[Path] = []
        for sub in _SUBDIRS:
            folder = self.root / sub
            if not folder.is_dir():
                continue
            for path in folder.rglob("*"):
                if path.is_dir():
                    continue
                key = path.name.removesuffix(SUFFIX)
                if not (path.name.endswith(SUFFIX) and _HEX64.fullmatch(key)):
                    strays.append(path)
                elif sub == "blobs" and path != self.component_path(key):
                    strays.append(path)  # a component file outside its shard folder
                elif sub != "blobs" and path.parent != folder:
                    strays.append(path)
        return sorted(strays)

    def delete_path(self, path: Path) -> bool:
        """Delete a stray file (only inside this registry)."""
        if self.root not in path.parents:
            raise RegistryError(f"refusing to delete {path}: outside the registry")
        with contextlib.suppress(IsADirectoryError):
            return self._delete(path)
        return False

    def file_modes(self) -> dict[str, int]:
        """Permission bits of every file and folder (for checks and tests)."""
        modes: dict[str, int] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in [*dirnames, *filenames]:
                full = Path(dirpath) / name
                modes[self.relative(full)] = full.stat().st_mode & 0o777
        return modes
