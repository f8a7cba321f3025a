"""Test data and subprocess workers for the registry tests (import as
``tests.server.registry.registry_helpers``: spawned processes must be able to import it)."""

from __future__ import annotations

import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

from tmc.common.components import Component, ComponentMeta, Delta
from tmc.server.registry import BaseRecord, Registry

BASE_SHA = "0" * 64
OTHER_SHA = "1" * 64
SHAPES: dict[str, tuple[int, ...]] = {"a": (8, 4), "b": (16,)}
CREATED = datetime(2025, 1, 1, tzinfo=UTC)  # fixed, so the same seed gives the same id


def make_base(sha: str = BASE_SHA, shapes: dict[str, tuple[int, ...]] | None = None) -> BaseRecord:
    return BaseRecord(spec_json='{"test":true}', sha256=sha, shapes=shapes or SHAPES)


def make_delta(
    seed: int, *, scale: float = 1.0, shapes: dict[str, tuple[int, ...]] | None = None
) -> Delta:
    generator = torch.Generator().manual_seed(seed)
    return Delta(
        {n: torch.randn(s, generator=generator) * scale for n, s in (shapes or SHAPES).items()}
    )


def make_component(
    silo: str,
    seed: int,
    *,
    base_sha: str = BASE_SHA,
    scale: float = 1.0,
    examples: int | None = None,
    round: int = 0,
    increment: int = 0,
    delta: Delta | None = None,
) -> Component:
    meta = ComponentMeta(
        base_sha256=base_sha,
        silo=silo,
        round=round,
        increment=increment,
        num_examples=examples if examples is not None else 10 + seed,
        classes=(seed % 10,),
        metrics={"accuracy": 0.5},
        created_at=CREATED,
    )
    return Component(delta if delta is not None else make_delta(seed, scale=scale), meta)


def make_components(silos: int, per_silo: int, *, seed0: int = 0) -> list[Component]:
    """``per_silo`` components for each of ``silos`` silos, with varied magnitudes (so that
    a float running sum would depend on order: the exact one must not)."""
    out = []
    for s in range(silos):
        for i in range(per_silo):
            seed = seed0 + s * 100 + i
            out.append(make_component(f"silo-{s}", seed, scale=10.0 ** (seed % 5 - 2), increment=i))
    return out


# -- workers run in spawned processes --------------------------------------------------------


def add_worker(root: str, silo: str, count: int) -> None:
    """Open the registry and add ``count`` components of ``silo`` one by one."""
    with Registry.open(Path(root)) as registry:
        for i in range(count):
            registry.add(make_component(silo, 1000 + i, increment=i), actor=f"proc-{silo}")
            if i % 3 == 2:
                registry.commit_version(reason=f"{silo} {i}", actor=f"proc-{silo}")


def churn_worker(root: str, ready: str) -> None:
    """Add, commit and forget forever (until killed), touching ``ready`` once it has run
    through a few cycles."""
    with Registry.open(Path(root)) as registry:
        cycle = 0
        while True:
            for i in range(3):
                registry.add(make_component(f"churn-{cycle}", 5000 + 10 * cycle + i, increment=i))
            registry.commit_version(reason=f"cycle {cycle}")
            registry.forget(silo=f"churn-{cycle}", actor="churn", reason="cycle")
            cycle += 1
            if cycle == 3:
                Path(ready).touch()


def kill(pid: int) -> None:
    if sys.platform != "win32":
        os.kill(pid, signal.SIGKILL)
