"""DP components in the registry: their accounting is stored, listed, served and shown."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from common.components import Component, PrivacyMeta
from server.admin.convert import component_from_pb, component_to_pb
from server.cli import app
from server.registry import BaseRecord, Registry
from tests.server.registry.registry_helpers import make_component

PRIVACY = PrivacyMeta(
    epsilon=2.5,
    delta=1e-5,
    noise_multiplier=3.25,
    clip=1.0,
    steps=120,
    sampling_rate=0.125,
    accountant="dp-accounting RDP",
    accountant_version="0.6.0",
)


def _private(silo: str, seed: int) -> Component:
    plain = make_component(silo, seed)
    meta = plain.meta.model_copy(update={"privacy": PRIVACY})
    return Component(plain.delta, meta)


def test_privacy_round_trips_through_the_registry(registry: Registry) -> None:
    private, plain = _private("silo-a", 1), make_component("silo-b", 2)
    assert registry.add(private).privacy == PRIVACY
    assert registry.add(plain).privacy is None
    by_id = {r.id: r for r in registry.list_components()}
    assert by_id[private.id].privacy == PRIVACY
    assert by_id[plain.id].privacy is None
    assert registry.get_component(private.id).meta.privacy == PRIVACY
    assert registry.get_component(private.id).id == private.id
    assert registry.get_component(plain.id).id == plain.id
    registry.commit_version()
    assert registry.verify().ok
    for record in by_id.values():  # the admin API carries it both ways, losslessly
        assert component_from_pb(component_to_pb(record)) == record


def test_privacy_persists_and_is_listed(root: Path, base: BaseRecord) -> None:
    private, plain = _private("silo-a", 1), make_component("silo-b", 2)
    with Registry.create(root, base=base, store="sqlite") as registry:
        registry.add(private)
        registry.add(plain)
    with Registry.open(root) as registry:
        stored = {r.id: r.privacy for r in registry.list_components()}
    assert stored == {private.id: PRIVACY, plain.id: None}
    runner = CliRunner()
    result = runner.invoke(app, ["registry", "list", "--registry", str(root), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["silo"]: r for r in json.loads(result.stdout)}
    assert rows["silo-a"]["epsilon"] == 2.5
    assert rows["silo-a"]["privacy"] == PRIVACY.model_dump(mode="json")
    assert rows["silo-b"]["epsilon"] is None
    assert rows["silo-b"]["privacy"] is None
    table = runner.invoke(
        app, ["registry", "list", "--registry", str(root)], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    assert "ε" in table.output
    assert "2.5 (δ 1e-05)" in table.output
