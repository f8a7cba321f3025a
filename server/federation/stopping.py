"""Stopping a continual federation between commits, never in the middle of one.

Flower's ``flwr-serverapp`` exits from its SIGINT/SIGTERM handler (``flwr stop`` makes
its runtime client send the process SIGINT), which raises ``SystemExit`` wherever the
main thread happens to be, a registry commit included. While a continual run is going,
:meth:`StopRequest.on_signals` replaces those handlers by one that only asks the loop to
stop; the loop finishes what it is committing, returns, and the first signal is then
handed to the handler it replaced, so Flower still winds the process down its own way.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_Handler = Callable[[int, FrameType | None], object] | int | None


class StopRequest:
    """Whether someone asked the run to stop (a signal, a test, ``tmc simulate``)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.signal: int | None = None

    def request(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            log.warning("stop requested (%s): finishing what is being committed", reason)
        self._event.set()

    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as a stop is requested."""
        return self._event.wait(seconds)

    @contextmanager
    def on_signals(self) -> Iterator[StopRequest]:
        """SIGINT and SIGTERM request a stop while inside. Only the main thread may set
        signal handlers; elsewhere (``tmc simulate`` runs the ServerApp in a thread, whose
        command sets its own) this does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self.signal is None:
                self.signal = signum
            self.request(f"signal {signal.Signals(signum).name}")

        previous: dict[int, _Handler] = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            received = self.signal
            handler = previous.get(received) if received is not None else None
            # Python's own SIGINT handler would turn a clean stop into KeyboardInterrupt.
            if (
                received is not None
                and callable(handler)
                and handler is not signal.default_int_handler
            ):
                log.info("continual run stopped cleanly; passing the signal on")
                signal.raise_signal(received)


__all__ = ["STOP_SIGNALS", "StopRequest"]
