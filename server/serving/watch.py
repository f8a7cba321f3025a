"""A cheap "has the registry changed?" check, fit for every request.

SQLite's ``PRAGMA data_version`` changes whenever another connection commits to the
database, in this process or another, and costs microseconds. The watch holds its own
read-only connection (which never writes, so every change it sees is someone else's
commit): callers re-read the registry only when it says something changed.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from tmc.server.registry.sqlite import DB_FILENAME


class RegistryWatch:
    """Reports commits to a registry's database since the previous call. Thread-safe."""

    def __init__(self, root: Path) -> None:
        path = root / DB_FILENAME
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        self._seen = self._read()

    def _read(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        """Whether anything was committed since the last call (or since construction)."""
        with self._lock:
            current = self._read()
            if current == self._seen:
                return False
            self._seen = current
            return True

    def close(self) -> None:
        with self._lock:
            self._conn.close()


__all__ = ["RegistryWatch"]
