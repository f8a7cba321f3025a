"""The live model: the registry's current version, followed without a restart.

A background thread polls the registry; when a new version is committed (a round, a
forget) it loads that version's composed model off the request path and swaps it in under
a lock, so requests already running finish on the model they started with.

A forget must never be answered through, not even while its successor loads. A forget
commits, in one transaction, a new version and the *purge* of every older version that
contained a forgotten component. So every answer is checked, after its computation and
before it is returned, against the registry's purge marks (:meth:`LiveModel.answer`):
``RegistryWatch`` says in microseconds whether anything was committed since the last
look, and only then is the registry read again. An answer computed on a purged version
is thrown away and computed again on the successor (waited for up to ``wait_s``), or the
request is refused with 503; it is never sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from tmc.common.errors import NotFoundError, TMCError
from tmc.server.composed import ComposedModel
from tmc.server.registry import Registry
from tmc.server.registry.model_file import require_data
from tmc.server.serving.errors import ModelUnavailableError
from tmc.server.serving.metrics import ServingMetrics
from tmc.server.serving.watch import RegistryWatch

_log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Served:
    """One loaded version: the model and what it was composed of."""

    composed: ComposedModel
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def scores(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's logits for ``batch``, safe from several request threads at once."""
        if self.composed.model.path == "jvp":
            # torch.func.functional_call swaps the network's parameters while it runs, so
            # the generic path takes one request at a time; the traced path only reads.
            with self._lock:
                return self.composed.scores(batch)
        return self.composed.scores(batch)

    @property
    def number(self) -> int:
        return self.composed.version.number

    @property
    def component_ids(self) -> tuple[str, ...]:
        return self.composed.version.component_ids


class LiveModel:
    """The served model of the registry at ``root``. :meth:`start` loads the current
    version (if any) and starts following; :meth:`close` stops. Thread-safe."""

    def __init__(
        self,
        root: Path,
        *,
        metrics: ServingMetrics,
        poll_s: float = 0.25,
        wait_s: float = 5.0,
    ) -> None:
        self.root = root
        self.poll_s = poll_s
        self.wait_s = wait_s
        self._metrics = metrics
        self._registry = Registry.open(root, actor="serve")
        try:  # a registry that cannot say what its model takes is refused at once
            require_data(self._registry.settings.data, root)
        except BaseException:
            self._registry.close()
            raise
        self._watch = RegistryWatch(root)
        self._cond = threading.Condition()
        self._served: Served | None = None
        self._pinned: Served | None = None  # the last past version asked for by ?version=
        self._purged: set[int] = set()  # purge marks never go away
        self._unpurged: set[int] = set()  # valid until the registry next changes
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None  # logged once, not at every poll

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LiveModel:
        """Load the current version, then follow. A failed first load (a damaged blob) is
        logged and retried like any other: the service answers 503 until it loads."""
        try:
            self._follow_once()
        except TMCError as exc:
            self._failed(str(exc))
        self._thread = threading.Thread(target=self._follow, name="tmc-serve-follow", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
        self._watch.close()
        self._registry.close()

    # -- answering ---------------------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        return self._registry

    @property
    def served_number(self) -> int | None:
        """The version loaded to answer from (it may be awaiting invalidation's check)."""
        served = self._served
        return None if served is None else served.number

    def current(self) -> Served:
        """The served version, waiting up to ``wait_s`` for one that may be answered from."""
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while True:
                served = self._served
                if served is None:
                    break  # start() loaded whatever there was: only a round can help now
                if self.valid(served.number):
                    return served
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.set()
                self._cond.wait(min(left, self.poll_s))
        if served is None:
            raise ModelUnavailableError(
                f"the registry at {self.root} has no version to serve yet (none committed); "
                "retry once a round has committed one"
            )
        raise ModelUnavailableError(
            f"version {served.number} contained a forgotten component and its successor is "
            f"not loaded yet (waited {self.wait_s:g} s); retry shortly"
        )

    def version(self, number: int) -> Served:
        """A past (or the current) version by number; NotFoundError if there is none or
        its Δ was deleted by a forget. A past version is loaded on the request path."""
        served = self._served
        if served is not None and served.number == number and self.valid(number):
            return served
        pinned = self._pinned
        if pinned is not None and pinned.number == number and self.valid(number):
            return pinned
        version = self._registry.version(number)  # NotFoundError: no such version
        if version.purged:
            self._mark_purged(number)
            raise NotFoundError(_purged_message(number))
        loaded = Served(ComposedModel.from_registry(self._registry, number))
        self._pinned = loaded
        return loaded

    def answer(
        self, compute: Callable[[Served], T], version: int | None = None
    ) -> tuple[T, Served]:
        """``compute`` on the served version (or ``version``), returned only if that
        version still contains no forgotten component once the computation is done."""
        deadline = time.monotonic() + self.wait_s
        while True:
            served = self.current() if version is None else self.version(version)
            result = compute(served)
            if self.valid(served.number):
                return result, served
            if version is not None:
                raise NotFoundError(_purged_message(version))
            _log.info(
                "serve: version %d was purged during a request; answering again", served.number
            )
            if time.monotonic() > deadline:
                raise ModelUnavailableError(
                    f"version {served.number} was invalidated by a forget while answering and "
                    "no successor is loaded yet; retry shortly"
                )

    def valid(self, number: int) -> bool:
        """Whether version ``number`` contains no forgotten component, as of now."""
        with self._cond:
            if self._watch.changed():
                self._unpurged.clear()
                self._wake.set()  # the follower looks for a new version at once
            if number in self._purged:
                return False
            if number in self._unpurged:
                return True
            try:
                purged = self._registry.version(number).purged
            except NotFoundError:
                purged = True
            if purged:
                self._mark_purged(number)
                return False
            self._unpurged.add(number)
            return True

    def _mark_purged(self, number: int) -> None:
        with self._cond:
            if number not in self._purged:
                self._purged.add(number)
                if self._served is not None and self._served.number == number:
                    self._metrics.invalidations.inc()
                    _log.info("serve: version %d contained a forgotten component", number)

    # -- following ---------------------------------------------------------------------------

    def _follow(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._follow_once()
            except TMCError as exc:
                self._failed(str(exc))
            except Exception as exc:  # the follower must outlive one bad read; retried
                self._failed(f"unexpected {type(exc).__name__}: {exc}")

    def _failed(self, message: str) -> None:
        self._metrics.reloads.labels(outcome="failed").inc()
        if message != self._last_error:
            _log.error("serve: cannot load the registry's current version: %s", message)
        self._last_error = message

    def _follow_once(self) -> None:
        """Load the registry's current version if it is not the one served."""
        latest = self._registry.current_version()
        served = self._served
        if latest is None or (served is not None and served.number == latest.number):
            return
        try:
            loaded = Served(ComposedModel.from_registry(self._registry, latest.number))
        except NotFoundError:
            return  # purged by a forget meanwhile: its successor is next
        if not self.valid(loaded.number):
            return
        with self._cond:
            self._served = loaded
            self._cond.notify_all()
        self._last_error = None
        self._metrics.served(loaded.number, len(loaded.component_ids))
        _log.info(
            "serve: now serving version %d (%d components)",
            loaded.number,
            len(loaded.component_ids),
        )


def _purged_message(number: int) -> str:
    return (
        f"version {number} contained components that were forgotten since: it is no longer "
        "served (ask for the current version)"
    )


__all__ = ["LiveModel", "Served"]
