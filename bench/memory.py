"""Peak resident memory of one operation, sampled from ``/proc/self/statm`` (Linux).

``resource.getrusage`` reports the process's peak since it started, which says nothing
about an operation run after a bigger one; sampling the resident set every few
milliseconds while the operation runs gives its own peak above what was resident before.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * _PAGE


def measured(fn: Callable[[], T], *, interval_s: float = 0.005) -> tuple[T, float, int]:
    """``fn()``'s value, wall seconds and peak resident bytes above the resident set before
    it started (sampled every ``interval_s``: a spike shorter than that can be missed)."""
    before = resident_bytes()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, resident_bytes())
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        value = fn()
    finally:
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    peak = max(peak, resident_bytes())
    return value, seconds, peak - before


__all__ = ["measured", "resident_bytes"]
