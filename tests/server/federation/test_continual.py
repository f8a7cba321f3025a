"""Continual runs (``rounds = 0``) through the in-process Grid: a round starts only when a
silo holds an increment it has not contributed, only that silo is sent a training
message, a check that finds nothing new is skipped (not numbered, not in the history),
a forgotten silo is refused at the next check, and a stop (SIGTERM included) ends the
run after what was being committed, never in the middle of it."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flwr.app import Message

from tests.images import write_images
from tests.server.federation.fake_grid import FakeGrid
from tests.server.federation.rounds_helpers import folder_silo_grid
from tmc.common.federation import TRAIN
from tmc.common.federation.config import FederationConfig
from tmc.common.models import MaterializedBase, materialize
from tmc.server.federation import (
    Federation,
    RoundSummary,
    StopRequest,
    read_history,
    run_continually,
)
from tmc.server.registry import BaseRecord, Registry

CLASSES = "bird,cat,dog,fish"


def _config(tmp_path: Path, **overrides: object) -> FederationConfig:
    values: dict[str, object] = {
        "registry": str(tmp_path / "registry"),
        "dataset": "imagefolder",
        "class-names": CLASSES,
        "image-size": 8,
        "base-weights": "init",
        "rounds": 0,
        "round-interval": 0.0,
        "max-idle-rounds": 2,
        "epochs": 1,
        "evaluate-server": False,
        "wait-seconds": 1.0,
        "hello-timeout": 5.0,
        "round-timeout": 5.0,
    }
    values.update(overrides)
    return FederationConfig.from_run_config(values)


def _training_messages(grid: FakeGrid) -> list[int]:
    """Records the node of every training message the server pushes."""
    sent: list[int] = []
    push = grid.push_messages

    def counting(messages: object) -> object:
        batch = list(messages)  # type: ignore[call-overload]
        sent.extend(m.metadata.dst_node_id for m in batch if m.metadata.message_type == TRAIN)
        return push(batch)

    grid.push_messages = counting  # type: ignore[method-assign]
    return sent


def _continual(
    config: FederationConfig,
    grid: FakeGrid,
    base: MaterializedBase,
    *,
    on_round: Callable[[RoundSummary], None] | None = None,
    stop: StopRequest | None = None,
) -> list[RoundSummary]:
    data = config.data_spec()
    with Registry.open_or_create(
        config.registry_path,
        base=BaseRecord.from_materialized(base),
        max_norm=config.max_norm,
        theta0=base.theta0(),
        data=data,
    ) as registry:
        federation = Federation(
            grid,
            config,
            registry,
            base,
            data=data,
            run_id=5,
            poll_interval=0,
            on_round=on_round,
            stop=stop,
        )
        with federation.stop.on_signals():
            return run_continually(federation)


@pytest.fixture
def image_base(tmp_path: Path) -> MaterializedBase:
    return materialize(_config(tmp_path).base_spec())


def test_a_round_starts_only_when_a_silo_has_a_new_increment(
    tmp_path: Path, image_base: MaterializedBase
) -> None:
    config = _config(tmp_path)
    folders = {name: tmp_path / name / "increments" for name in ("silo-a", "silo-b")}
    write_images(folders["silo-a"] / "2026-01", {"cat": 3, "dog": 3}, seed=1)
    write_images(folders["silo-b"] / "2026-01", {"bird": 3, "fish": 3}, seed=2)
    grid = folder_silo_grid(config, tmp_path, {name: path.parent for name, path in folders.items()})
    nodes = {grid.nodes[n].context.node_config["silo-id"]: n for n in grid.nodes}
    trained = _training_messages(grid)

    def drop_in_february(summary: RoundSummary) -> None:
        if summary.round == 1:  # new images arrive on silo-a's disk, nobody types anything
            write_images(folders["silo-a"] / "2026-02", {"bird": 3}, seed=3)

    summaries = _continual(config, grid, image_base, on_round=drop_in_february)

    assert [s.round for s in summaries] == [1, 2]
    assert summaries[0].accepted_silos == ("silo-a", "silo-b")
    assert summaries[1].accepted_silos == ("silo-a",)
    assert summaries[1].idle == ("silo-b",)
    # silo-b got one training message (round 1); the two skipped checks sent none at all
    assert sorted(trained) == sorted([nodes["silo-a"], nodes["silo-b"], nodes["silo-a"]])
    assert [h.round for h in read_history(config.registry_path)] == [1, 2]
    with Registry.open(config.registry_path) as registry:
        assert [v.round for v in registry.versions()] == [1, 2]
        assert registry.contributed_increments("silo-a").keys() == {0, 1}
        assert registry.verify().ok


def test_a_silo_forgotten_during_the_run_is_refused_at_the_next_check(
    tmp_path: Path, image_base: MaterializedBase
) -> None:
    config = _config(tmp_path, **{"max-idle-rounds": 3})
    folder = tmp_path / "silo-a" / "increments"
    write_images(folder / "2026-01", {"cat": 3}, seed=1)
    grid = folder_silo_grid(config, tmp_path, {"silo-a": folder.parent})

    def forget_after_round_1(summary: RoundSummary) -> None:
        with Registry.open(config.registry_path) as registry:
            registry.forget(silo="silo-a", actor="operator", reason="withdrew consent")
        write_images(folder / "2026-02", {"dog": 3}, seed=2)  # new data it may not give

    summaries = _continual(config, grid, image_base, on_round=forget_after_round_1)

    assert [s.round for s in summaries] == [1]
    with Registry.open(config.registry_path) as registry:
        assert registry.list_components(status="active") == []
        refusals = [e for e in registry.audit_log() if e.action == "reject"]
        assert registry.verify().ok
    # refused once, at the first check after the forget; not again at each later check
    assert len(refusals) == 1, refusals
    assert str(refusals[0].details["reason"]).startswith("forgotten on ")


@pytest.fixture
def default_sigterm() -> Iterator[None]:
    """SIGTERM with its default disposition during the test: a handler left by code run
    earlier in this process (Ray's driver installs one that exits with 143) would be
    passed the signal on when the run ends, as a real process's handler should be."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("default_sigterm")
def test_sigterm_during_a_round_ends_the_run_after_its_commits(
    make_config: Callable[..., FederationConfig],
    make_grid: Callable[..., FakeGrid],
    digits_base: MaterializedBase,
) -> None:
    config = make_config(rounds=0, increments=3, **{"round-interval": 0.0})
    received: list[int] = []

    def terminate_while_replies_arrive(replies: list[Message]) -> list[Message]:
        if any(r.metadata.message_type == TRAIN for r in replies) and not received:
            received.append(len(replies))
            os.kill(os.getpid(), signal.SIGTERM)  # as `docker stop` would
        return replies

    grid = make_grid(config, order=terminate_while_replies_arrive)
    stop = StopRequest()
    summaries = _continual(config, grid, digits_base, stop=stop)

    assert stop.reason == "signal SIGTERM"
    (only,) = summaries  # silos still hold increments 1 and 2: no further round
    assert len(only.accepted) == received[0] == 3  # every reply pulled was committed
    assert only.version is not None
    assert only.accuracy is None  # a stopping run commits, then leaves: no evaluation
    with Registry.open(config.registry_path) as registry:
        assert len(registry.list_components(status="active")) == 3
        assert registry.current_version() is not None
        assert registry.verify().ok
