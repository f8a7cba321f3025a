"""Concurrent writers lose nothing: threads sharing a registry, threads and processes each
with their own handle on one SQLite registry, and a writer killed at a random point."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from pathlib import Path

import pytest

from tests.server.registry.registry_helpers import (
    add_worker,
    churn_worker,
    kill,
    make_component,
)
from tmc.common.components import compose
from tmc.server.registry import BaseRecord, Registry


def _run_threads(target: object, count: int) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


def test_four_threads_sharing_one_registry(registry: Registry) -> None:
    components = [
        make_component(f"t{t}", 100 * t + i, increment=i) for t in range(4) for i in range(8)
    ]

    def work(t: int) -> None:
        for i, component in enumerate(components[8 * t : 8 * t + 8]):
            registry.add(component, actor=f"thread-{t}")
            if i % 3 == 0:
                registry.commit_version(actor=f"thread-{t}")
            if i == 5:
                registry.reject(silo=f"t{t}", round=i, reason="late")

    _run_threads(work, 4)
    registry.commit_version()
    assert {r.id for r in registry.list_components()} == {c.id for c in components}
    assert registry.composed_delta().equal(compose(components))
    assert sum(e.action == "add" for e in registry.audit_log()) == 32
    assert registry.verify().clean


def test_four_threads_with_their_own_handles(root: Path, base: BaseRecord) -> None:
    Registry.create(root, base=base).close()
    components = [
        make_component(f"h{t}", 100 * t + i, increment=i) for t in range(4) for i in range(6)
    ]

    def work(t: int) -> None:
        with Registry.open(root, actor=f"handle-{t}") as registry:
            for i, component in enumerate(components[6 * t : 6 * t + 6]):
                registry.add(component)
                if i % 2:
                    registry.commit_version()

    _run_threads(work, 4)
    with Registry.open(root) as registry:
        registry.commit_version()
        assert len(registry.list_components()) == 24
        assert registry.composed_delta().equal(compose(components))
        assert registry.verify().clean


@pytest.mark.integration
def test_two_processes_adding_at_once(root: Path, base: BaseRecord) -> None:
    # This process and a spawned one write at the same time, each through its own handle
    # (one spawned process rather than two: importing torch dominates the test's time).
    Registry.create(root, base=base).close()
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=add_worker, args=(str(root), "p1", 12))
    process.start()
    try:
        with Registry.open(root) as registry:
            while not registry.list_components(silo="p1"):  # overlap with the other writer
                assert process.is_alive() or process.exitcode == 0
                time.sleep(0.005)
        add_worker(str(root), "p0", 12)
    finally:
        process.join(timeout=120)
    assert process.exitcode == 0
    expected = [make_component(s, 1000 + i, increment=i) for s in ("p0", "p1") for i in range(12)]
    with Registry.open(root) as registry:
        assert {r.id for r in registry.list_components()} == {c.id for c in expected}
        registry.commit_version()
        assert registry.composed_delta().equal(compose(expected))
        assert registry.verify().clean
        assert sum(e.action == "add" for e in registry.audit_log()) == 24


@pytest.mark.integration
def test_a_writer_killed_at_any_point_leaves_a_consistent_registry(
    root: Path, base: BaseRecord, tmp_path: Path
) -> None:
    with Registry.create(root, base=base) as registry:
        registry.add(make_component("steady", 1))
        registry.commit_version()
    ready = tmp_path / "ready"
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=churn_worker, args=(str(root), str(ready)))
    process.start()
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert process.is_alive(), "churn worker died"
            assert time.monotonic() < deadline, "churn worker stalled"
            time.sleep(0.02)
        time.sleep(random.uniform(0.0, 0.3))  # somewhere inside an add, commit or forget
    finally:
        if process.pid is not None:
            kill(process.pid)
        process.join(timeout=30)
    with Registry.open(root) as registry:
        report = registry.verify()
        assert report.clean, (report.problems, report.garbage)
        active = [registry.get_component(r.id) for r in registry.list_components()]
        assert any(c.meta.silo == "steady" for c in active)
        registry.commit_version()
        assert registry.composed_delta().equal(compose(active))
