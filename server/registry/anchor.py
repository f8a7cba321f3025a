"""The audit chain's anchor: ``audit.anchor``, a file beside ``registry.db`` that records
how many audit events the log held, the chain hash of the last one and the digest of the
registry's settings, rewritten after every commit that appended to the log.

The hash chain alone proves that no event was edited or removed from the middle; deleting
the newest events (or the settings row's edits) leaves a shorter chain that is still
consistent. The anchor is kept out of the database, where deleting rows cannot reach it:
``verify`` compares the log with it. It only moves forward: it is rewritten only when the
log still holds the event it names, with that hash, so that a log cut short and appended
to again is not anchored anew. It is written after the commit (a crash in between leaves
it one commit behind, which verify accepts: the log extends it), under an ``flock`` on the
registry folder so that two processes' commits cannot move it back.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import Field, ValidationError

from tmc.common.components.component import SHA256_PATTERN
from tmc.common.errors import IntegrityError
from tmc.common.files import atomic_write_bytes
from tmc.common.schema import StrictModel
from tmc.server.registry.blobs import read_regular
from tmc.server.registry.entities import AuditEvent, RegistrySettings

ANCHOR_FILENAME = "audit.anchor"
_MAX_ANCHOR_BYTES = 4096


class AuditAnchor(StrictModel):
    """What the audit log and the settings were at the last commit."""

    events: int = Field(ge=0)
    head_sha256: str | None = Field(None, pattern=SHA256_PATTERN)
    settings_sha256: str = Field(pattern=SHA256_PATTERN)


def settings_digest(settings: RegistrySettings) -> str:
    return hashlib.sha256(settings.model_dump_json().encode()).hexdigest()


def read_anchor(root: Path) -> AuditAnchor:
    """The registry's anchor; a MissingBlobError or IntegrityError saying what is wrong."""
    data = read_regular(root / ANCHOR_FILENAME, _MAX_ANCHOR_BYTES, f"{ANCHOR_FILENAME}")
    try:
        return AuditAnchor.model_validate_json(data)
    except ValidationError as exc:
        raise IntegrityError(f"{ANCHOR_FILENAME} is not an audit anchor: {exc}") from exc


def write_anchor(
    root: Path,
    *,
    last_event: Callable[[], AuditEvent | None],
    event_at: Callable[[int], AuditEvent | None],
    settings: Callable[[], RegistrySettings | None],
    settings_changed: bool,
) -> bool:
    """Move the anchor to the log's newest event and, when ``settings_changed`` (or there
    is no anchor yet), to the settings row as it is now; both are read under the lock, so
    that a slower process cannot move the anchor back. ``event_at`` gives the log's event
    at a sequence number (to check that the log still extends the current anchor). False
    when the anchor was left as it was: the log no longer extends it, or there are no
    settings yet (verify reports the first; a registry being created is anchored by the
    commit that writes its settings)."""
    with _anchor_lock(root):
        _clear_interrupted(root)
        try:
            current: AuditAnchor | None = read_anchor(root)
        except (IntegrityError, OSError):
            current = None
        if current is not None and not _extends(current, event_at):
            return False
        if settings_changed or current is None:
            now = settings()
            if now is None:
                return False
            digest = settings_digest(now)
        else:
            digest = current.settings_sha256
        last = last_event()
        anchor = AuditAnchor(
            events=0 if last is None else last.seq,
            head_sha256=None if last is None else last.chain_sha256,
            settings_sha256=digest,
        )
        if anchor != current:
            atomic_write_bytes(root / ANCHOR_FILENAME, anchor.model_dump_json().encode())
        return True


@contextmanager
def _anchor_lock(root: Path) -> Iterator[None]:
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _clear_interrupted(root: Path) -> list[Path]:
    # Under the anchor lock no write is in flight: a temp file is a killed writer's.
    found = sorted(root.glob(f".{ANCHOR_FILENAME}.*.tmp"))
    for path in found:
        path.unlink(missing_ok=True)
    return found


def clear_interrupted_writes(root: Path) -> list[Path]:
    """Remove the temp files of anchor writes that a crash interrupted; returns them."""
    with _anchor_lock(root):
        return _clear_interrupted(root)


def _extends(anchor: AuditAnchor, event_at: Callable[[int], AuditEvent | None]) -> bool:
    if anchor.events == 0:
        return True
    event = event_at(anchor.events)
    return event is not None and event.chain_sha256 == anchor.head_sha256


def anchor_problems(
    anchor: AuditAnchor,
    *,
    last: AuditEvent | None,
    at_anchor: AuditEvent | None,
    settings: RegistrySettings,
) -> list[str]:
    """How the log and the settings differ from what ``anchor`` recorded."""
    problems: list[str] = []
    held = 0 if last is None else last.seq
    if held < anchor.events:
        problems.append(
            f"audit log: it ends at event {held}, but {ANCHOR_FILENAME} records "
            f"{anchor.events} events: the newest {anchor.events - held} were deleted"
        )
    elif anchor.events and (at_anchor is None or at_anchor.chain_sha256 != anchor.head_sha256):
        problems.append(
            f"audit log: event {anchor.events} is not the one {ANCHOR_FILENAME} records "
            "(the log was cut and written again)"
        )
    if settings_digest(settings) != anchor.settings_sha256:
        problems.append(
            f"settings: the settings row is not the one {ANCHOR_FILENAME} records (it was "
            "edited outside the registry: base, classes, input, weighting or privacy floor)"
        )
    return problems


__all__ = [
    "ANCHOR_FILENAME",
    "AuditAnchor",
    "anchor_problems",
    "clear_interrupted_writes",
    "read_anchor",
    "settings_digest",
    "write_anchor",
]
