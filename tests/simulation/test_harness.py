"""The federation end to end through Flower's simulation engine (Ray): real ServerApp,
real ClientApps in Ray actors, a real SQLite registry on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, Context, Message
from flwr.clientapp import ClientApp

from tmc.client import make_client_app
from tmc.common.components import compose
from tmc.common.data import load_dataset
from tmc.common.federation import DELTA, REPLY
from tmc.common.federation.config import FederationConfig
from tmc.common.models import materialize
from tmc.common.tangent import TangentModel
from tmc.common.training import evaluate
from tmc.server.federation import RoundSummary
from tmc.server.registry import Registry
from tmc.simulation import simulate

pytestmark = pytest.mark.integration


def _config(registry: Path, **overrides: object) -> FederationConfig:
    values: dict[str, object] = {
        "registry": str(registry),
        "num-silos": 3,
        "increments": 3,
        "rounds": 2,
        "epochs": 10,
        "min-silos": 3,
        "wait-seconds": 60.0,
    }
    values.update(overrides)
    return FederationConfig.from_run_config(values)


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[FederationConfig, list[RoundSummary]]:
    config = _config(tmp_path_factory.mktemp("federation") / "registry")
    return config, simulate(config)


def test_composition_beats_every_single_silo(
    federation: tuple[FederationConfig, list[RoundSummary]],
) -> None:
    config, summaries = federation
    assert [s.round for s in summaries] == [1, 2]
    assert [s.components for s in summaries] == [3, 6]
    assert all(not s.rejected for s in summaries)
    base = materialize(config.base_spec())
    model = TangentModel(base.network, base.tangent_names)
    test_set = load_dataset(config.dataset_spec(), train=False)
    with Registry.open(config.registry_path) as registry:
        model.load_delta(dict(registry.composed_delta()))
        composed_accuracy = evaluate(model, test_set).accuracy
        assert composed_accuracy == pytest.approx(summaries[-1].accuracy)
        for record in registry.list_components():
            model.load_delta(dict(registry.get_component(record.id).delta))
            alone = evaluate(model, test_set).accuracy
            assert composed_accuracy > alone, (record.silo, record.increment, alone)


def test_arrival_order_does_not_change_the_stored_version(
    federation: tuple[FederationConfig, list[RoundSummary]], tmp_path: Path
) -> None:
    """The components the federation received, committed again in reverse and in a
    shuffled order, give the stored version's bytes exactly."""
    config, _ = federation
    with Registry.open(config.registry_path) as registry:
        stored = registry.version_bytes()
        components = [registry.get_component(r.id) for r in registry.list_components()]
        base = registry.base
    for name, order in (
        ("reversed", components[::-1]),
        ("shuffled", components[1::2] + components[::2]),
    ):
        with Registry.create(tmp_path / name, base=base) as replay:
            for component in order:
                replay.add(component)
            replay.commit_version()
            assert replay.version_bytes() == stored, name


def test_forgetting_a_silo_is_exact_and_survives_reopening(
    federation: tuple[FederationConfig, list[RoundSummary]],
) -> None:
    config, _ = federation
    with Registry.open(config.registry_path) as registry:
        kept = [
            registry.get_component(r.id) for r in registry.list_components() if r.silo != "silo-1"
        ]
        expected = registry.compose(exclude_silos=["silo-1"])
        result = registry.forget(silo="silo-1", actor="test", reason="asked by silo-1")
        assert len(result.removed) == 2
        assert registry.composed_delta().equal(compose(kept))
        assert registry.composed_delta().equal(expected)
    with Registry.open(config.registry_path) as registry:
        assert registry.composed_delta().equal(compose(kept))
        assert {r.silo for r in registry.list_components()} == {"silo-0", "silo-2"}
        assert registry.verify().ok


def test_a_second_run_continues_the_registry_and_refuses_the_forgotten_silo(
    federation: tuple[FederationConfig, list[RoundSummary]],
) -> None:
    """Runs after the forgetting test: silo-1 is tombstoned, so it stays out; the others
    train their next increment and nothing is retrained."""
    config, _ = federation
    with Registry.open(config.registry_path) as registry:
        before = {(r.silo, r.increment): r.id for r in registry.list_components(status="all")}
        assert registry.tombstone("silo-1") is not None
    summaries = simulate(config.model_copy(update={"rounds": 1}))
    assert [s.round for s in summaries] == [3]
    refused = {r.silo: r.reason for r in summaries[0].rejected}
    assert refused["silo-1"].startswith("forgotten on "), refused
    assert refused["silo-1"].endswith(": asked by silo-1"), refused
    with Registry.open(config.registry_path) as registry:
        after = {(r.silo, r.increment): r.id for r in registry.list_components(status="all")}
        assert all(after[key] == value for key, value in before.items())  # nothing retrained
        new = sorted(set(after) - set(before))
        assert new == [("silo-0", 2), ("silo-2", 2)]
        assert registry.verify().ok


def _faulty_client(config: FederationConfig) -> ClientApp:
    """Silo 1's ClientApp raises, silo 2 sends NaN, silo 3 wrong shapes, silo 4 another
    base; silo 0 is honest."""
    real = make_client_app(config.to_run_config())
    app = ClientApp()

    @app.query("hello")
    def hello(msg: Message, context: Context) -> Message:
        return real(msg, context)

    @app.query("theta0")
    def theta0(msg: Message, context: Context) -> Message:
        return real(msg, context)

    @app.evaluate()
    def evaluate_(msg: Message, context: Context) -> Message:
        return real(msg, context)

    @app.train("component")
    def train(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        if partition == 1:
            raise RuntimeError("GPU fell off the bus")
        reply = real(msg, context)
        arrays = reply.content.array_records[DELTA]
        name = sorted(arrays)[0]
        if partition == 2:
            poisoned = arrays[name].numpy().copy()
            poisoned.flat[0] = np.nan
            arrays[name] = Array(poisoned)
        elif partition == 3:
            arrays[name] = Array(np.zeros(7, dtype=np.float32))
        elif partition == 4:
            record = reply.content.config_records[REPLY]
            text = str(record["json"])
            start = text.index('"base_sha256":"') + len('"base_sha256":"')
            record["json"] = text[:start] + "f" * 64 + text[start + 64 :]
        return reply

    return app


def test_faulty_silos_are_refused_and_the_round_completes(tmp_path: Path) -> None:
    config = _config(
        tmp_path / "registry", **{"num-silos": 5, "min-silos": 5, "rounds": 1, "epochs": 2}
    )
    (summary,) = simulate(config, client_app=_faulty_client(config))
    assert summary.accepted_silos == ("silo-0",)
    reasons = {r.silo: r.reason for r in summary.rejected}
    assert "GPU fell off the bus" in reasons["silo-1"]
    assert "NaN" in reasons["silo-2"]
    assert "shape" in reasons["silo-3"]
    assert "base" in reasons["silo-4"]
    with Registry.open(config.registry_path) as registry:
        audited = {
            e.silo: e.details["reason"] for e in registry.audit_log() if e.action == "reject"
        }
        assert audited == reasons
        assert [r.silo for r in registry.list_components()] == ["silo-0"]
        assert registry.verify().ok
