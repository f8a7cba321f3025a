"""Credentials of the admin API: bearer tokens, stored as hashes, each with a role.

A credentials file (JSON, owner-only: 0600) lists tokens by their sha256, never the tokens
themselves::

    {"version": 1, "tokens": [
        {"label": "ops", "role": "operator", "sha256": "…", "created_at": "…"},
        {"label": "hospital-a", "role": "silo:hospital-a", "sha256": "…", "created_at": "…"}]}

A client sends ``authorization: Bearer <token>`` as gRPC metadata. ``operator`` may do
everything; ``silo:<name>`` may list and forget that silo's components only; ``viewer`` may
only look at the operator dashboard's pages (``tmc dashboard``): the admin API refuses it
every call, and the dashboard every action. The server
re-reads the file when it changes, so a revoked token stops working without a restart; if
the file becomes unreadable, every request is refused until it is fixed (fail closed).
Tokens are printed once, when created, and never logged.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from tmc.common.components.component import SHA256_PATTERN, SILO_PATTERN
from tmc.common.files import atomic_write_bytes
from tmc.common.schema import StrictModel
from tmc.server.admin.errors import CredentialsError, UnauthenticatedError

_log = logging.getLogger(__name__)

OPERATOR = "operator"
VIEWER = "viewer"
SILO_PREFIX = "silo:"
ROLE_PATTERN = r"^(operator|viewer|silo:[A-Za-z0-9][A-Za-z0-9._-]{0,63})$"
LABEL_PATTERN = SILO_PATTERN
TOKEN_PREFIX = "tmc_"
MAX_TOKEN_CHARS = 512
_TOKEN_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TokenEntry(StrictModel):
    """One credential: who it is for (label), what it may do (role), its token's hash."""

    label: str = Field(pattern=LABEL_PATTERN)
    role: str = Field(pattern=ROLE_PATTERN)
    sha256: str = Field(pattern=SHA256_PATTERN)
    created_at: datetime = Field(default_factory=_utc_now)


class CredentialsFile(StrictModel):
    version: Literal[1] = 1
    tokens: tuple[TokenEntry, ...] = ()

    @field_validator("tokens")
    @classmethod
    def _unique_labels(cls, value: tuple[TokenEntry, ...]) -> tuple[TokenEntry, ...]:
        labels = [t.label for t in value]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"duplicate token labels: {', '.join(duplicates)}")
        return value


@dataclass(frozen=True)
class Principal:
    """Who sent a request: a token's role and label (never the token)."""

    role: str
    label: str

    @property
    def is_operator(self) -> bool:
        return self.role == OPERATOR

    @property
    def is_viewer(self) -> bool:
        return self.role == VIEWER

    @property
    def silo(self) -> str | None:
        """The silo a silo token belongs to; None for the operator."""
        return self.role.removeprefix(SILO_PREFIX) if self.role.startswith(SILO_PREFIX) else None

    @property
    def actor(self) -> str:
        """How the audit log names this caller, e.g. ``operator/ops``, ``silo:a/a-key``."""
        return f"{self.role}/{self.label}"

    def may_touch(self, silo: str) -> bool:
        return self.is_operator or self.silo == silo


def role_for(*, operator: bool, silo: str | None, viewer: bool = False) -> str:
    """The role string of ``--operator``, ``--viewer`` or ``--silo NAME`` (exactly one)."""
    if operator + viewer + (silo is not None) != 1:
        raise CredentialsError("give exactly one of --operator, --viewer or --silo NAME")
    role = OPERATOR if operator else VIEWER if viewer else f"{SILO_PREFIX}{silo}"
    if not re.fullmatch(ROLE_PATTERN, role):
        raise CredentialsError(
            f"{silo!r} is not a valid silo name (letters, digits, '.', '_', '-'; at most 64)"
        )
    return role


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh token: 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


# -- the file ------------------------------------------------------------------------------


def read_credentials(path: Path, *, require_private: bool = True) -> CredentialsFile:
    """Parse a credentials file; refuse one that others may read or write."""
    try:
        info = path.stat()
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CredentialsError(
            f"no credentials file at {path}: create one with `tmc admin token create`"
        ) from exc
    except OSError as exc:
        raise CredentialsError(f"cannot read the credentials file {path}: {exc}") from exc
    mode = stat.S_IMODE(info.st_mode)
    if require_private and mode & 0o077:
        raise CredentialsError(
            f"the credentials file {path} is accessible to other users (mode {mode:04o}): "
            f"run `chmod 600 {path}`; it is not used until then"
        )
    try:
        return CredentialsFile.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise CredentialsError(f"the credentials file {path} is malformed: {problems}") from None


def _write_credentials(path: Path, credentials: CredentialsFile) -> None:
    text = json.dumps(credentials.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode(), mode=0o600)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of a credentials file between processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def create_token(path: Path, *, role: str, label: str | None = None) -> tuple[str, TokenEntry]:
    """Add a new token for ``role`` to the credentials file (created 0600 if absent).
    Returns the token, which is not stored anywhere: show it once to its owner."""
    token = new_token()
    digest = hash_token(token)
    with _locked(path):
        current = read_credentials(path) if path.exists() else CredentialsFile()
        chosen = label or _default_label(role, current)
        if any(t.label == chosen for t in current.tokens):
            raise CredentialsError(
                f"{path} already has a token labelled {chosen!r}: choose another --label "
                f"(or revoke the old one first); nothing was changed"
            )
        try:
            entry = TokenEntry(label=chosen, role=role, sha256=digest)
        except ValidationError:
            raise CredentialsError(
                f"{chosen!r} is not a valid label (letters, digits, '.', '_', '-'; at most 64)"
            ) from None
        _write_credentials(path, CredentialsFile(tokens=(*current.tokens, entry)))
    return token, entry


def _default_label(role: str, current: CredentialsFile) -> str:
    stem = role.removeprefix(SILO_PREFIX)[:56]
    taken = {t.label for t in current.tokens}
    number = 1
    while f"{stem}-{number}" in taken:
        number += 1
    return f"{stem}-{number}"


def revoke_token(path: Path, label: str) -> TokenEntry:
    """Remove the token labelled ``label``; a running server stops accepting it at once."""
    with _locked(path):
        current = read_credentials(path)
        kept = tuple(t for t in current.tokens if t.label != label)
        if len(kept) == len(current.tokens):
            raise CredentialsError(f"{path} has no token labelled {label!r}; nothing was changed")
        _write_credentials(path, CredentialsFile(tokens=kept))
    return next(t for t in current.tokens if t.label == label)


# -- checking requests -----------------------------------------------------------------------


class Authenticator:
    """Checks the bearer token of each request against the credentials file (re-read when
    it changes). Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: tuple[TokenEntry, ...] = ()
        self._seen: tuple[int, ...] | None = None
        self._failure: CredentialsError | None = None
        self._reload()
        if self._failure is not None:
            raise self._failure

    def _reload(self) -> None:
        try:
            info = self.path.stat()
        except OSError:
            key = None
        else:
            # ctime and mode too: a chmod changes neither the content nor the mtime
            key = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size, info.st_mode)
        if key is not None and key == self._seen and self._failure is None:
            return
        try:
            credentials = read_credentials(self.path)
        except CredentialsError as exc:
            if self._failure is None:
                _log.error("admin API: refusing every request until fixed: %s", exc)
            self._failure = exc
            self._seen = None
            return
        self._entries, self._seen, self._failure = credentials.tokens, key, None
        _log.info("admin API: %d credential(s) loaded from %s", len(self._entries), self.path)

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        """The principal of a request's metadata, or :class:`UnauthenticatedError`."""
        token = _bearer_token(metadata or ())
        digest = hash_token(token)
        with self._lock:
            self._reload()
            if self._failure is not None:
                raise CredentialsError(
                    "the server cannot read its credentials file; the operator must fix it"
                )
            entries = self._entries
        found: TokenEntry | None = None
        for entry in entries:  # no early exit: the time taken does not depend on the match
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        if found is None:
            raise UnauthenticatedError("the token is not recognised (unknown or revoked)")
        return Principal(role=found.role, label=found.label)


def _bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    values = [value for key, value in metadata if key.lower() == "authorization"]
    if not values:
        raise UnauthenticatedError(
            "no credential: send the metadata 'authorization: Bearer <token>'"
        )
    if len(values) > 1:
        raise UnauthenticatedError("several authorization headers: send exactly one")
    value = values[0]
    if isinstance(value, bytes):
        raise UnauthenticatedError("the authorization header must be text, not binary")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthenticatedError("the authorization header must read 'Bearer <token>'")
    if len(token) > MAX_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token):
        raise UnauthenticatedError("the token is malformed (printable ASCII, at most 512)")
    return token
