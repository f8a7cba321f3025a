"""Which silos the ServerApp admits, driven through the in-process Grid with real
ClientApps reading their own image folders or exports: label mapping by name, refusals
with reasons (audit log and the silo's own log), permanent forgetting and readmission,
re-cut or changed data."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from tests.images import write_images
from tests.server.federation.fake_grid import FakeGrid
from tests.server.federation.rounds_helpers import folder_silo_grid
from tmc.common.data import DatasetSpec, FederatedPartition, PartitionSpec, export_silo
from tmc.common.federation.config import FederationConfig
from tmc.common.models import MaterializedBase, materialize
from tmc.server.federation import Federation, RoundSummary
from tmc.server.registry import BaseRecord, Registry

CLASSES = "bird,cat,dog,fish"


def _config(tmp_path: Path, **overrides: object) -> FederationConfig:
    values: dict[str, object] = {
        "registry": str(tmp_path / "registry"),
        "dataset": "imagefolder",
        "class-names": CLASSES,
        "image-size": 8,
        "base-weights": "init",
        "rounds": 1,
        "epochs": 1,
        "evaluate-server": False,
        "wait-seconds": 1.0,
        "hello-timeout": 5.0,
        "round-timeout": 5.0,
    }
    values.update(overrides)
    return FederationConfig.from_run_config(values)


def _run(config: FederationConfig, grid: FakeGrid, base: MaterializedBase) -> RoundSummary:
    data = config.data_spec()
    with Registry.open_or_create(
        config.registry_path,
        base=BaseRecord.from_materialized(base),
        max_norm=config.max_norm,
        theta0=base.theta0(),
        data=data,
    ) as registry:
        federation = Federation(grid, config, registry, base, data=data, run_id=3, poll_interval=0)
        (summary,) = federation.run()
    return summary


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "silos"
    write_images(root / "silo-a", {"dog": 3, "cat": 3}, seed=1)
    write_images(root / "silo-b" / "train", {"fish": 3, "bird": 3}, seed=2)
    write_images(root / "silo-b" / "test", {"fish": 1}, seed=3)
    write_images(root / "silo-gray", {"cat": 2}, mode="L", seed=4)
    write_images(root / "silo-x", {"cat": 2, "horse": 2}, seed=5)
    (root / "silo-empty" / "cat").mkdir(parents=True)
    return {p.name: p for p in root.iterdir()}


@pytest.fixture
def image_base(tmp_path: Path) -> MaterializedBase:
    return materialize(_config(tmp_path).base_spec())


def test_own_folders_train_and_misfits_are_refused_with_reasons(
    tmp_path: Path,
    folders: dict[str, Path],
    image_base: MaterializedBase,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = _config(tmp_path)
    caplog.set_level(logging.ERROR, logger="tmc.client.app")
    summary = _run(config, folder_silo_grid(config, tmp_path, folders), image_base)
    assert summary.accepted_silos == ("silo-a", "silo-b")
    reasons = {r.silo: r.reason for r in summary.rejected}
    assert "grayscale, 1 channel" in reasons["silo-gray"]
    assert "'horse'" in reasons["silo-x"]
    assert reasons["silo-empty"] == "the silo holds no training images"
    with Registry.open(config.registry_path) as registry:
        classes = {r.silo: r.classes for r in registry.list_components()}
        audited = {e.silo for e in registry.audit_log() if e.action == "reject"}
    assert classes == {"silo-a": (1, 2), "silo-b": (0, 3)}  # by name, not folder order
    assert audited == {"silo-gray", "silo-x", "silo-empty"}
    told = [r.getMessage() for r in caplog.records if "the server refused" in r.getMessage()]
    assert any(m.startswith("the server refused silo silo-gray: images are") for m in told)


def test_forgetting_is_permanent_until_the_silo_is_readmitted(
    tmp_path: Path, folders: dict[str, Path], image_base: MaterializedBase
) -> None:
    config = _config(tmp_path)
    silos = {k: folders[k] for k in ("silo-a", "silo-b")}
    first = _run(config, folder_silo_grid(config, tmp_path, silos), image_base)
    assert first.accepted_silos == ("silo-a", "silo-b")
    with Registry.open(config.registry_path) as registry:
        registry.forget(silo="silo-a", actor="operator", reason="withdrew consent")

    again = _run(config, folder_silo_grid(config, tmp_path, silos), image_base)
    assert again.accepted == ()
    (refusal,) = again.rejected
    assert refusal.silo == "silo-a"
    assert refusal.reason.startswith("forgotten on ")
    assert refusal.reason.endswith(": withdrew consent")

    with Registry.open(config.registry_path) as registry:
        registry.readmit("silo-a", actor="operator", reason="consent renewed")
        assert [e.action for e in registry.audit_log()][-1] == "readmit"
    back = _run(config, folder_silo_grid(config, tmp_path, silos), image_base)
    assert back.accepted_silos == ("silo-a",)
    assert [first.round, again.round, back.round] == [1, 2, 3], "a round that adds nothing counts"
    with Registry.open(config.registry_path) as registry:
        active = [(r.silo, r.increment) for r in registry.list_components()]
        assert sorted(active) == [("silo-a", 0), ("silo-b", 0)]
        assert registry.verify().ok


def test_a_silo_whose_data_changed_is_refused(
    tmp_path: Path, folders: dict[str, Path], image_base: MaterializedBase
) -> None:
    config = _config(tmp_path)
    silos = {"silo-a": folders["silo-a"]}
    assert _run(config, folder_silo_grid(config, tmp_path, silos), image_base).accepted_silos == (
        "silo-a",
    )
    write_images(folders["silo-a"], {"cat": 5}, seed=7)
    summary = _run(config, folder_silo_grid(config, tmp_path, silos), image_base)
    (refusal,) = summary.rejected
    assert "the data of increment 0 are not those its component was trained on" in refusal.reason


def test_a_folder_that_grows_by_increments_adds_components(
    tmp_path: Path, image_base: MaterializedBase
) -> None:
    """Continual learning on a silo's own data: each new sub-folder of increments/ is
    learnt by a new component in the next round; the earlier one stays as it was."""
    config = _config(tmp_path)
    root = tmp_path / "hospital" / "increments"
    write_images(root / "2026-01", {"cat": 3, "dog": 3}, seed=1)
    silos = {"silo-a": root.parent}
    first = _run(config, folder_silo_grid(config, tmp_path, silos), image_base)
    assert first.accepted_silos == ("silo-a",)
    with Registry.open(config.registry_path) as registry:
        (january,) = registry.list_components()

    write_images(root / "2026-02", {"bird": 3}, seed=2)
    second = _run(config, folder_silo_grid(config, tmp_path, silos), image_base)
    assert second.accepted_silos == ("silo-a",)
    with Registry.open(config.registry_path) as registry:
        by_increment = {r.increment: r for r in registry.list_components()}
        assert sorted(by_increment) == [0, 1]
        assert by_increment[0].id == january.id  # untouched
        assert by_increment[1].classes == (0,)  # bird, learnt from February alone
        assert registry.verify().ok

    # An increment slipped in before the others shifts them: refused, saying how to add data.
    write_images(root / "2025-12", {"fish": 2}, seed=3)
    third = _run(config, folder_silo_grid(config, tmp_path, silos), image_base)
    (refusal,) = third.rejected
    assert "the data of increment 0 are not those" in refusal.reason
    assert "named to sort after the others" in refusal.reason


def test_a_silo_exported_with_other_settings_is_refused(
    tmp_path: Path, digits_base: MaterializedBase
) -> None:
    """Three silos were cut with num-silos=3; a fourth exported with num-silos=4 would hold
    samples of the others: refused, saying what differs."""
    exports = tmp_path / "exports"
    dataset = DatasetSpec(name="digits")
    three = FederatedPartition(dataset, PartitionSpec(split="class", num_silos=3))
    four = FederatedPartition(dataset, PartitionSpec(split="class", num_silos=4))
    export_silo(three, 0, exports / "silo-0")
    export_silo(four, 3, exports / "silo-3")
    config = FederationConfig.from_run_config(
        {
            "registry": str(tmp_path / "registry"),
            "rounds": 1,
            "epochs": 1,
            "increments": 1,
            "evaluate-server": False,
            "wait-seconds": 1.0,
            "hello-timeout": 5.0,
            "round-timeout": 5.0,
        }
    )
    silos = {"silo-0": exports / "silo-0", "silo-3": exports / "silo-3"}
    summary = _run(config, folder_silo_grid(config, tmp_path, silos), digits_base)
    assert summary.accepted_silos == ("silo-0",)
    (refusal,) = summary.rejected
    assert refusal.silo == "silo-3"
    assert "num-silos: 3 vs 4" in refusal.reason
    with Registry.open(config.registry_path) as registry:
        recorded = registry.settings.partition
    assert recorded is not None
    assert recorded.partition.num_silos == 3


@pytest.mark.timeout(120)
def test_a_hostile_folder_is_refused_in_one_line_and_the_round_goes_on(
    tmp_path: Path, image_base: MaterializedBase, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder that turned hostile after ``tmc silo start`` checked it (a FIFO named like
    an image): the node answers hello with the one-line reason, the server refuses it with
    that reason in the audit log, and the other silo trains."""
    root = tmp_path / "silos"
    write_images(root / "silo-a", {"dog": 3, "cat": 3}, seed=1)
    write_images(root / "silo-b", {"fish": 3, "bird": 3}, seed=2)
    os.mkfifo(root / "silo-a" / "cat" / "scan.png")
    config = _config(tmp_path)
    caplog.set_level(logging.ERROR, logger="tmc.client.app")
    summary = _run(
        config, folder_silo_grid(config, tmp_path, {p.name: p for p in root.iterdir()}), image_base
    )
    assert summary.accepted_silos == ("silo-b",)
    (refusal,) = summary.rejected
    assert "scan.png is named like an image but is a FIFO" in refusal.reason
    with Registry.open(config.registry_path) as registry:
        reasons = [
            str(e.details.get("reason")) for e in registry.audit_log() if e.action == "reject"
        ]
    assert any("FIFO" in reason for reason in reasons)
    lines = [r for r in caplog.records if "FIFO" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].exc_info is None
    assert "\n" not in lines[0].getMessage()
