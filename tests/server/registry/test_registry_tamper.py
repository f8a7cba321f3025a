"""The tamper suite: for every table and file of a registry, an edit that changes what the
model means, and ``verify`` fails naming it. Each case edits a fresh registry (θ0, the data
spec, three components, a version) behind the registry's back, as someone with write access
to its folder could, then opens it and verifies."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.server.registry.registry_helpers import make_base, make_component
from tmc.common.data import DataSpec, InputSpec
from tmc.common.hashing import tensors_sha256
from tmc.server.registry import Registry
from tmc.server.registry.anchor import ANCHOR_FILENAME

DATA = DataSpec(classes=("cat", "dog", "owl"), input=InputSpec(channels=3, size=8))

Tamper = Callable[[Path], None]


def _build(root: Path) -> None:
    state = {"a": torch.arange(32.0).view(8, 4), "b": torch.ones(16)}
    base = make_base(sha=tensors_sha256(state))
    with Registry.create(root, base=base, theta0=state, data=DATA) as registry:
        registry.add(make_component("silo-a", 1, base_sha=base.sha256), round=1)
        registry.add(make_component("silo-a", 2, base_sha=base.sha256, increment=1), round=1)
        registry.add(make_component("silo-b", 3, base_sha=base.sha256), round=1)
        registry.commit_version(round=1)
        assert registry.verify().ok


def _sql(*statements: str) -> Tamper:
    def tamper(root: Path) -> None:
        with sqlite3.connect(root / "registry.db") as db:
            for statement in statements:
                db.execute(statement)

    return tamper


def _theta0(root: Path) -> Path:
    (path,) = (root / "base").iterdir()
    return path


def _remove_theta0(root: Path) -> None:
    _theta0(root).unlink()


def _theta0_fifo(root: Path) -> None:
    path = _theta0(root)
    path.unlink()
    os.mkfifo(path)


def _theta0_link(root: Path) -> None:
    path = _theta0(root)
    path.unlink()
    path.symlink_to("/dev/zero")


def _reverse_classes(root: Path) -> None:
    with sqlite3.connect(root / "registry.db") as db:
        (body,) = db.execute("SELECT body FROM settings").fetchone()
        settings = json.loads(body)
        settings["data"]["classes"].reverse()
        db.execute("UPDATE settings SET body = ?", (json.dumps(settings),))


def _remove_anchor(root: Path) -> None:
    (root / ANCHOR_FILENAME).unlink()


def _edit_blob(root: Path) -> None:
    path = next(p for p in (root / "blobs").rglob("*.safetensors"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


_DELETE_NEWEST = (
    "DROP TRIGGER audit_no_delete",
    "DELETE FROM audit WHERE seq > (SELECT MAX(seq) - 2 FROM audit)",
)

CASES: dict[str, tuple[Tamper, str]] = {
    "θ0 file removed": (_remove_theta0, "does not hold θ0"),
    "θ0 replaced by a FIFO": (_theta0_fifo, "is not a regular file"),
    "θ0 replaced by a link to /dev/zero": (_theta0_link, "cannot be opened as a file"),
    "settings: class names reversed": (_reverse_classes, "settings row is not the one"),
    "settings: weighting changed": (
        _sql("UPDATE settings SET body = json_set(body, '$.weighting', 'num-examples')"),
        "settings row is not the one",
    ),
    "audit: newest events deleted": (_sql(*_DELETE_NEWEST), "the newest 2 were deleted"),
    "audit: an event edited": (
        _sql(
            "DROP TRIGGER audit_no_update",
            "UPDATE audit SET actor = 'nobody' WHERE seq = 2",
        ),
        "does not match its chain hash",
    ),
    "trigger dropped: audit append-only": (
        _sql("DROP TRIGGER audit_no_update"),
        "audit_no_update is missing",
    ),
    "trigger dropped: one component per increment": (
        _sql("DROP TRIGGER components_one_active_insert"),
        "components_one_active_insert is missing",
    ),
    "trigger replaced by a no-op": (
        _sql(
            "DROP TRIGGER audit_no_delete",
            "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT 1; END",
        ),
        "audit_no_delete is not the schema's",
    ),
    "index dropped": (_sql("DROP INDEX components_by_silo"), "components_by_silo is missing"),
    "anchor file removed": (_remove_anchor, "audit.anchor is missing"),
    "anchor file replaced by garbage": (
        lambda root: (root / ANCHOR_FILENAME).write_text("{}"),
        "is not an audit anchor",
    ),
    "component row: round": (_sql("UPDATE components SET round = 9"), "round"),
    "component row: increment": (
        _sql("UPDATE components SET increment = 5 WHERE silo = 'silo-b'"),
        "increment",
    ),
    "component row: classes": (_sql("UPDATE components SET classes = '[7]'"), "classes"),
    "component row: task": (_sql("UPDATE components SET task = 'other'"), "task"),
    # equal within rounding is equal (thread counts change the sum's last bits); not more
    "component row: norm": (_sql("UPDATE components SET norm = norm * 1.000001"), "norm"),
    "component row: fingerprint": (
        _sql(f"UPDATE components SET data_fingerprint = '{'e' * 64}'"),
        "data_fingerprint",
    ),
    "component row: created_at": (
        _sql("UPDATE components SET created_at = '2020-01-01T00:00:00.000000Z'"),
        "created_at",
    ),
    "component row: metrics": (_sql("UPDATE components SET metrics = '{}'"), "metrics"),
    "component row: actor": (_sql("UPDATE components SET actor = 'silo:evil'"), "actor"),
    "component row: received round": (
        _sql("UPDATE components SET received_round = 4"),
        "received_round",
    ),
    "component row: examples": (_sql("UPDATE components SET num_examples = 999"), "num_examples"),
    "component file edited": (_edit_blob, "it was altered or corrupted"),
    "version row: its Δ's hash": (
        _sql(f"UPDATE versions SET delta_sha256 = '{'d' * 64}'"),
        "version 1",
    ),
    "version members: one removed": (
        _sql(
            "DELETE FROM version_members WHERE component_id = "
            "(SELECT MIN(component_id) FROM version_members)"
        ),
        "lists other components than the running sum",
    ),
    "running sum: its count": (
        _sql("UPDATE running_sum SET count = count + 1"),
        "does not match its pointer",
    ),
    "two active components for one increment": (
        _sql(
            "DROP TRIGGER components_one_active_update",
            "UPDATE components SET increment = 0 WHERE silo = 'silo-a'",
        ),
        "has two active components for increment 0",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_verify_names_each_edit_that_changes_the_models_meaning(name: str, root: Path) -> None:
    tamper, expected = CASES[name]
    _build(root)
    tamper(root)
    with Registry.open(root) as registry:
        report = registry.verify()
    assert not report.ok
    assert any(expected in problem for problem in report.problems), report.problems


def test_deleted_audit_events_stay_caught_after_later_commits(root: Path) -> None:
    """The anchor does not follow a log that was cut short: appending to it again does
    not make the deletion disappear."""
    _build(root)
    _sql(*_DELETE_NEWEST)(root)
    with Registry.open(root) as registry:
        registry.reject(silo="silo-c", round=2, reason="late")  # a legitimate append
        registry.commit_version(round=2, reason="again")
        report = registry.verify()
    assert not report.ok
    assert any("audit log" in p and "audit.anchor" in p for p in report.problems), report
