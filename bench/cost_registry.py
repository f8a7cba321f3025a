"""Time to compose and to forget through the registry on disk, with N components registered.

Each component holds one tensor of ``parameters`` float32 values (1 M by default) and comes
from its own silo. For each N a registry (SQLite + safetensors files, as in production) is
filled with N pending components and kept as a snapshot (blobs hard-linked, the database
copied), so that every repetition starts from the same state:

* ``compose_seconds``: ``commit_version`` of the N pending components from scratch (reads
  and sums all N, writes the version and the exact running sum);
* ``forget_seconds``: ``forget(silo=...)`` of one silo holding one component, with N
  components active and committed (the exact running sum minus that component, a new
  version, the component's file deleted);
* ``compose_incremental_seconds``: ``commit_version`` after adding one new component to the
  N − 1 left by that forget (back to N); the add itself is not timed.

Repetitions rotate over N (every N is measured under the same load) and the median is taken.
Forget and re-add alternate, so N stays the same in every repetition.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from tmc.common.components import Component, ComponentMeta, Delta, component_to_bytes
from tmc.server.registry import BaseRecord, Registry

BASE_SHA = "0" * 64
TENSOR = "w"


def synthetic_component(index: int, shape: tuple[int, ...], silo: str) -> Component:
    generator = torch.Generator().manual_seed(index)
    delta = Delta({TENSOR: torch.randn(shape, generator=generator) * 0.01})
    meta = ComponentMeta(base_sha256=BASE_SHA, silo=silo, num_examples=10)
    return Component(delta, meta)


def snapshot(src: Path, dst: Path) -> None:
    """Copy a closed registry: content-addressed files are immutable (written by rename,
    removed by unlink), so they are hard-linked; the SQLite files are copied."""

    def link_or_copy(s: str, d: str) -> object:
        if Path(s).name.startswith("registry.db"):
            return shutil.copy2(s, d)
        os.link(s, d)
        return d

    shutil.copytree(src, dst, copy_function=link_or_copy)


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _stats(values: Sequence[float]) -> dict[str, float | int]:
    return {
        "min_s": min(values),
        "median_s": statistics.median(values),
        "max_s": max(values),
        "reps": len(values),
    }


def _fill(root: Path, base: BaseRecord, count: int, shape: tuple[int, ...]) -> list[float]:
    """A registry at ``root`` with ``count`` pending components (silo-i holds the i-th);
    returns each add's seconds."""
    times: list[float] = []
    with Registry.create(root, base=base) as registry:
        for index in range(count):
            component = synthetic_component(index, shape, f"silo-{index}")
            times.append(_seconds(lambda c=component: registry.add(c)))  # type: ignore[misc]
    return times


def measure_registry(
    counts: Sequence[int],
    *,
    workdir: Path,
    parameters: int = 1_000_000,
    compose_reps: int = 3,
    reps: int = 5,
    warmup: int = 1,
) -> dict[str, Any]:
    """Medians (seconds) of compose from scratch, incremental compose and forget, keyed by
    N, with their spreads and the median time to add one component."""
    shape = (parameters,)
    base = BaseRecord(spec_json="{}", sha256=BASE_SHA, shapes={TENSOR: shape})
    pristine = {n: workdir / f"pristine-{n}" for n in counts}
    add_times = {n: _fill(pristine[n], base, n, shape) for n in counts}

    # Compose from scratch: restore the snapshot of N pending components, time the commit.
    compose: dict[int, list[float]] = {n: [] for n in counts}
    live: dict[int, Registry] = {}
    for rep in range(compose_reps):
        k = rep % len(counts)
        for n in list(counts[k:]) + list(counts[:k]):
            root = workdir / f"live-{n}"
            if n in live:
                live.pop(n).close()
                shutil.rmtree(root)
            snapshot(pristine[n], root)
            registry = Registry.open(root)
            compose[n].append(_seconds(lambda r=registry: r.commit_version(reason="bench")))  # type: ignore[misc]
            live[n] = registry

    # Forget one silo (N active), then add one and commit it (N - 1 -> N); rotate over N.
    forget: dict[int, list[float]] = {n: [] for n in counts}
    incremental: dict[int, list[float]] = {n: [] for n in counts}
    for rep in range(warmup + reps):
        fresh = synthetic_component(10_000_000 + rep, shape, f"new-{rep}")
        k = rep % len(counts)
        for n in list(counts[k:]) + list(counts[:k]):
            registry = live[n]
            oldest = f"silo-{rep}" if rep < n else f"new-{rep - n}"
            f_s = _seconds(
                lambda r=registry, s=oldest: r.forget(silo=s, actor="bench", reason="bench")  # type: ignore[misc]
            )
            registry.add(fresh)
            c_s = _seconds(lambda r=registry: r.commit_version(reason="bench"))  # type: ignore[misc]
            if len(registry.list_components(status="active")) != n:
                raise RuntimeError(f"registry of N={n} drifted from N active components")
            if rep >= warmup:
                forget[n].append(f_s)
                incremental[n].append(c_s)
    disk = {
        str(n): sum(p.stat().st_size for p in (workdir / f"live-{n}").rglob("*") if p.is_file())
        for n in counts
    }
    for registry in live.values():
        registry.close()
    probe = synthetic_component(0, shape, "silo-0")
    return {
        "counts": list(counts),
        "parameters_per_component": parameters,
        "component_bytes": len(component_to_bytes(probe)),
        "compose_reps": compose_reps,
        "reps": reps,
        "warmup": warmup,
        "compose_seconds": {str(n): statistics.median(compose[n]) for n in counts},
        "compose_incremental_seconds": {str(n): statistics.median(incremental[n]) for n in counts},
        "forget_seconds": {str(n): statistics.median(forget[n]) for n in counts},
        "add_ms_median": {str(n): statistics.median(add_times[n]) * 1e3 for n in counts},
        "disk_bytes": disk,
        "spread": {
            **{f"compose/{n}": _stats(compose[n]) for n in counts},
            **{f"compose_incremental/{n}": _stats(incremental[n]) for n in counts},
            **{f"forget/{n}": _stats(forget[n]) for n in counts},
        },
    }
