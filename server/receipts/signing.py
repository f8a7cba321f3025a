"""The server's receipt key: Ed25519, kept in the registry folder (0600) or given by path."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tmc.common.errors import ConfigError
from tmc.common.files import atomic_write_bytes

KEY_FILE = Path("keys") / "receipt-ed25519.pem"


class ReceiptSigner:
    """Signs receipts; its public key (raw, hex) is what a silo pins."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> ReceiptSigner:
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read the receipt key {path}: {exc.strerror}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"the receipt key {path} is readable by others (mode {stat.S_IMODE(mode):o}): "
                "chmod 600 it"
            )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError as exc:
            raise ConfigError(f"{path} is not a PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path} is not an Ed25519 key")
        return cls(key)

    @classmethod
    def for_registry(cls, root: Path, key_file: Path | None = None) -> ReceiptSigner:
        """The key at ``key_file``, else the registry's own, created on first use."""
        if key_file is not None:
            return cls.from_file(key_file)
        path = root / KEY_FILE
        if not path.exists():
            (root / KEY_FILE.parent).mkdir(mode=0o700, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                # O_EXCL: two processes creating the key at once keep one of them.
                fd = os.open(path.with_suffix(".lock"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                if not path.exists():
                    atomic_write_bytes(path, pem)
                path.with_suffix(".lock").unlink()
        return cls.from_file(path)

    @property
    def public_key(self) -> str:
        return (
            self._key.public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            .hex()
        )

    def sign(self, data: bytes) -> str:
        return self._key.sign(data).hex()


def registry_public_key(root: Path) -> str | None:
    """The public key of the registry's own receipt key, or None if it has none yet."""
    path = root / KEY_FILE
    return ReceiptSigner.from_file(path).public_key if path.exists() else None


__all__ = ["KEY_FILE", "ReceiptSigner", "registry_public_key"]
