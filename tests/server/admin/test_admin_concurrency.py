"""20 admin clients at once, forgetting and listing: every forget applied exactly once, no
lost or duplicated version, an audit log with exactly one event per removed component."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.server.admin.admin_helpers import ClientFactory, Tokens, populate
from tests.server.registry.registry_helpers import make_component
from tmc.common.components import compose
from tmc.server.admin import create_token
from tmc.server.registry import ComponentRecord, ForgetResult, Registry

CLIENTS = 20
SILOS = 24  # four silos are never forgotten
PER_SILO = 2


@pytest.fixture
def root(tmp_path: Path) -> Path:  # overrides conftest's: a registry with more silos
    path = tmp_path / "registry"
    populate(path, silos=SILOS, per_silo=PER_SILO)
    return path


def test_twenty_clients_forgetting_and_listing(
    root: Path, tokens: Tokens, connect: ClientFactory
) -> None:
    with Registry.open(root, actor="test") as local:
        targets = {
            f"silo-{i}": {r.id for r in local.list_components(silo=f"silo-{i}")}
            for i in range(CLIENTS)
        }
        versions_before = len(local.versions())
    # Even clients use their silo's own token, odd ones the operator's.
    silo_tokens = {
        i: create_token(tokens.path, role=f"silo:silo-{i}", label=f"key-{i}")[0]
        for i in range(0, CLIENTS, 2)
    }
    actors = {
        f"silo-{i}": f"silo:silo-{i}/key-{i}" if i % 2 == 0 else "operator/ops"
        for i in range(CLIENTS)
    }
    clients = [connect(silo_tokens.get(i, tokens.operator)) for i in range(CLIENTS)]
    results: dict[int, list[ForgetResult]] = {}
    listings: list[tuple[int, list[ComponentRecord]]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(CLIENTS)

    def work(i: int) -> None:
        try:
            client = clients[i]
            start.wait(timeout=30)
            listings.append((i, client.list_components(status="all")))
            first = client.forget(silo=f"silo-{i}", reason=f"client {i}")
            listings.append((i, client.list_components(status="all")))
            repeat = client.forget(silo=f"silo-{i}", reason=f"client {i} again")
            results[i] = [first, repeat]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sorted(results) == list(range(CLIENTS))

    for i, (first, repeat) in results.items():
        assert set(first.removed) == targets[f"silo-{i}"]  # applied, and exactly this silo
        assert repeat.removed == ()  # applied once only
    first_versions = [results[i][0].version.number for i in range(CLIENTS)]
    assert len(set(first_versions)) == CLIENTS  # one new version per forget, none shared
    for i, listing in listings:  # consistent snapshots: every row, forgotten or not
        if i in silo_tokens:  # a silo token lists its own silo only
            assert {r.id for r in listing} == targets[f"silo-{i}"]
        else:
            assert len(listing) == SILOS * PER_SILO

    with Registry.open(root, actor="test") as local:
        assert len(local.versions()) == versions_before + CLIENTS  # nothing lost or doubled
        forgets = [e for e in local.audit_log() if e.action == "forget"]
        per_component = Counter(e.component_id for e in forgets)
        assert set(per_component) == set().union(*targets.values())
        assert set(per_component.values()) == {1}  # exactly one event per removed component
        for event in forgets:
            assert event.actor == actors[str(event.silo)]
        kept = [
            make_component(f"silo-{s}", 100 * s + i, increment=i)
            for s in range(CLIENTS, SILOS)
            for i in range(PER_SILO)
        ]
        assert local.composed_delta().equal(compose(kept))
        assert {r.silo for r in local.list_components()} == {
            f"silo-{s}" for s in range(CLIENTS, SILOS)
        }
        report = local.verify()
        assert report.ok, report.problems
