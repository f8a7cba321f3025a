"""One run per registry: an OS-level lock on ``run.lock`` in the registry folder, held for
the whole of a run (``tmc simulate``, a ServerApp).

Two runs on one registry would each train every (silo, increment) the registry lacks, so
the second would commit the same work twice. The lock is ``flock`` on a file in the
folder: the kernel releases it when its holder exits, however it dies, so a crashed run
never leaves the registry locked. The file names its holder (pid, host, command, since
when), so that a refused run can say who has the registry.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from pydantic import Field, ValidationError

from tmc.common.schema import StrictModel
from tmc.server.registry.blobs import ensure_private_dir
from tmc.server.registry.entities import utc_now
from tmc.server.registry.errors import RegistryBusyError

LOCK_FILENAME = "run.lock"
_MAX_HOLDER_BYTES = 4096


class RunHolder(StrictModel):
    """Who holds a registry's run lock."""

    pid: int = Field(ge=0)
    host: str = Field(max_length=256)
    command: str = Field(max_length=1000)
    since: datetime

    @classmethod
    def of_this_process(cls, command: str | None = None) -> RunHolder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname()[:256],
            command=(command or " ".join(sys.argv))[:1000],
            since=utc_now(),
        )

    def describe(self) -> str:
        return (
            f"pid {self.pid} on {self.host}, running {self.command!r}, "
            f"since {self.since:%Y-%m-%d %H:%M:%S} UTC"
        )


def _read_holder(fd: int) -> RunHolder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        return RunHolder.model_validate_json(os.read(fd, _MAX_HOLDER_BYTES))
    except ValidationError:
        return None  # the holder has the lock but has not written its name yet


@contextmanager
def run_lock(root: Path | str, *, command: str | None = None) -> Iterator[RunHolder]:
    """Hold ``root``'s run lock for the block, or raise :class:`RegistryBusyError` naming
    the run that holds it. Creates ``root`` (owner-only) when it does not exist yet."""
    root = Path(root)
    ensure_private_dir(root)
    path = root / LOCK_FILENAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = _read_holder(fd)
            who = holder.describe() if holder is not None else "a run that is starting"
            raise RegistryBusyError(
                f"the registry {root} is in use by another run ({who}); one run per "
                "registry: wait for it to finish, or stop it"
            ) from exc
        holder = RunHolder.of_this_process(command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.model_dump_json().encode(), 0)
        os.fsync(fd)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)  # nobody holds it now; the kernel drops the lock on close
    finally:
        os.close(fd)


__all__ = ["LOCK_FILENAME", "RunHolder", "run_lock"]
