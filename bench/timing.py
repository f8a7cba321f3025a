"""Interleaved timing: every repetition runs each candidate once, in rotating order.

Timing candidates one after the other lets a burst of load on a shared machine fall on one
of them only; interleaving spreads it over all of them, and the median of the repetitions
discards the bursts (``docs/notes/benchmarks.md``: side by side, median and spread).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Stats:
    """Wall times of one candidate over the repetitions, in milliseconds."""

    min_ms: float
    median_ms: float
    max_ms: float
    reps: int
    times_ms: tuple[float, ...] = field(default=(), repr=False)
    """Each repetition's time, in repetition order (aligned across candidates)."""

    def as_dict(self) -> dict[str, float | int]:
        return {k: v for k, v in asdict(self).items() if k != "times_ms"}


def paired_ratio(numerator: Stats, denominator: Stats) -> float:
    """Median over repetitions of the per-repetition time ratio. The candidates of one
    repetition ran back to back, under the same load, so this ratio shrugs off load that
    changes between repetitions (a complement to the ratio of medians)."""
    if len(numerator.times_ms) != len(denominator.times_ms) or not numerator.times_ms:
        raise ValueError("paired_ratio needs the per-repetition times of one interleaved run")
    return statistics.median(
        a / b for a, b in zip(numerator.times_ms, denominator.times_ms, strict=True)
    )


def interleaved_medians(
    fns: Mapping[str, Callable[[], object]],
    reps: int,
    warmup: int = 2,
    sync: Callable[[], None] | None = None,
) -> dict[str, Stats]:
    """Time each of ``fns`` ``reps`` times, interleaved in rotating order, after ``warmup``
    untimed rounds. ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock read
    so that asynchronous devices are timed to completion."""
    if reps < 1:
        raise ValueError("reps must be at least 1")
    names = list(fns)
    wait = sync if sync is not None else _nothing
    for _ in range(warmup):
        for name in names:
            fns[name]()
    wait()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            wait()
            start = time.perf_counter()
            fns[name]()
            wait()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {
        name: Stats(min(ts), statistics.median(ts), max(ts), len(ts), tuple(ts))
        for name, ts in times.items()
    }


def _nothing() -> None:
    return None
