"""``tmc predict``, ``evaluate``, ``export``, ``registry versions`` and ``registry history``:
the registry alone (θ0, data spec) answers; class names; versions; one-line refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.registries import add_components, digits_registry
from tmc.cli import app
from tmc.common.data import DatasetSpec, load_dataset
from tmc.common.models import MaterializedBase
from tmc.server.composed import ComposedModel
from tmc.server.federation import RoundSummary
from tmc.server.federation.history import append_round
from tmc.server.registry import Registry
from tmc.server.registry.blobs import sha256_hex

runner = CliRunner()


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, object]:
    result = runner.invoke(app, [*args, "--json"], env={"COLUMNS": "200", **(env or {})})
    return result.exit_code, json.loads(result.stdout)


def _refused(*args: str) -> str:
    """The one line a refused command writes on stderr (exit 2, nothing on stdout)."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, digits_base: MaterializedBase) -> Path:
    """Three class silos, two rounds: versions 1 (3 components) and 2 (6). Read only."""
    return digits_registry(tmp_path_factory.mktemp("model-cli") / "registry", digits_base, rounds=2)


@pytest.fixture
def fresh(tmp_path: Path, digits_base: MaterializedBase) -> Path:
    return digits_registry(tmp_path / "registry", digits_base, rounds=2)


def test_predict_answers_with_class_names_logits_and_past_versions(
    shared: Path, tmp_path: Path
) -> None:
    batch = tmp_path / "batch.npy"
    np.save(batch, np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32))
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    env = {"TMC_CACHE_DIR": str(empty), "HOME": str(tmp_path)}
    code, now = _run("predict", "--registry", str(shared), str(batch), "--top", "2", env=env)
    assert code == 0, now
    assert isinstance(now, dict)
    assert (now["version"], now["components"]) == (2, 6)
    assert now["classes"] == [str(d) for d in range(10)]
    with Registry.open(shared, actor="test") as opened:
        expected = ComposedModel.from_registry(opened).scores(torch.from_numpy(np.load(batch)))
    for index, answer in enumerate(now["predictions"]):
        logits = torch.tensor(answer["logits"])
        assert answer["input"] == f"{batch}[{index}]"
        assert torch.allclose(logits, expected[index], atol=1e-5)
        assert answer["label"] == int(logits.argmax())
        assert answer["class"] == now["classes"][answer["label"]]
        assert [t["label"] for t in answer["top"]] == logits.topk(2).indices.tolist()
        assert answer["top"][0]["class"] == answer["class"]
    assert list(empty.iterdir()) == []
    code, past = _run("predict", "--registry", str(shared), str(batch), "--version", "1")
    assert code == 0, past
    assert isinstance(past, dict)
    assert past["version"] == 1
    assert past["components"] == 3
    assert past["predictions"][0]["logits"] != now["predictions"][0]["logits"]
    table = runner.invoke(app, ["predict", "--registry", str(shared), str(batch)])
    assert table.exit_code == 0, table.output
    assert f"{now['predictions'][0]['class']}: " in table.stdout


def test_predict_refuses_bad_inputs_in_one_line(shared: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 1, 9, 9), dtype=np.float32))
    words = tmp_path / "words.npy"
    np.save(words, np.array(["a", "b"]))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    registry = ["predict", "--registry", str(shared)]
    assert "(1, 8, 8)" in _refused(*registry, str(wrong))
    assert "not real numbers" in _refused(*registry, str(words))
    assert "broken.png" in _refused(*registry, str(broken))
    assert "pickled.npy" in _refused(*registry, str(pickled))
    assert "does not exist" in _refused(*registry, str(tmp_path / "missing.png"))
    assert "does not exist" in _refused(*registry, str(tmp_path))
    assert "no version 7" in _refused(*registry, str(wrong), "--version", "7")
    code, payload = _run(*registry, str(wrong))
    assert code == 2
    assert payload == {"error": "DataError", "message": payload["message"]}


def test_evaluate_scores_versions_and_tasks(shared: Path) -> None:
    code, scores = _run("evaluate", "--registry", str(shared), "--task-incremental")
    assert code == 0, scores
    assert isinstance(scores, dict)
    assert (scores["version"], scores["components"], scores["num_examples"]) == (2, 6, 540)
    assert set(scores["per_class"]) == {str(d) for d in range(10)}
    assert scores["tasks"] == {
        "silo-0": ["0", "1", "2"],
        "silo-1": ["3", "4", "5", "6"],
        "silo-2": ["7", "8", "9"],
    }
    assert scores["task_examples"] == 540
    # Independently: the argmax restricted to each image's silo's classes.
    test_set = load_dataset(DatasetSpec(name="digits"), train=False)
    images, labels = test_set.images(np.arange(len(test_set))), torch.from_numpy(test_set.targets)
    with Registry.open(shared, actor="test") as opened:
        logits = ComposedModel.from_registry(opened).scores(images)
    blocks = [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    task_of = {c: block for block in blocks for c in block}
    hits = [
        block[int(logits[i, block].argmax())] == int(label)
        for i, label in enumerate(labels)
        for block in [task_of[int(label)]]
    ]
    assert scores["task_accuracy"] == pytest.approx(sum(hits) / len(hits), abs=1e-6)
    assert scores["accuracy"] == pytest.approx(
        float((logits.argmax(1) == labels).float().mean()), abs=1e-6
    )
    assert scores["task_accuracy"] >= scores["accuracy"]
    code, past = _run("evaluate", "--registry", str(shared), "--version", "1")
    assert code == 0, past
    assert isinstance(past, dict)
    assert (past["version"], past["components"]) == (1, 3)
    assert "task_accuracy" not in past
    text = runner.invoke(app, ["evaluate", "--registry", str(shared), "--task-incremental"])
    assert "task accuracy" in text.stdout


def test_task_incremental_needs_disjoint_silos(
    tmp_path: Path, digits_base: MaterializedBase
) -> None:
    overlapping = digits_registry(
        tmp_path / "registry", digits_base, silos=[("a", (0, 1, 2, 3)), ("b", (3, 4, 5))]
    )
    line = _refused("evaluate", "--registry", str(overlapping), "--task-incremental")
    assert "'a' and 'b' share classes [3]" in line
    code, _ = _run("evaluate", "--registry", str(overlapping))
    assert code == 0


def test_export_full_model_delta_only_and_past_versions(fresh: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.safetensors"
    code, first = _run("export", "--registry", str(fresh), "--out", str(out))
    assert code == 0, first
    assert first == {
        "out": str(out),
        "sha256": sha256_hex(out.read_bytes()),
        "bytes": out.stat().st_size,
        "kind": "model",
        "version": 2,
    }
    again = tmp_path / "again.safetensors"
    assert _run("export", "--registry", str(fresh), "--out", str(again))[0] == 0
    assert again.read_bytes() == out.read_bytes()
    code, past = _run("export", "--registry", str(fresh), "--out", str(again), "--version", "1")
    assert code == 0, past
    assert isinstance(past, dict)
    assert past["version"] == 1
    assert past["sha256"] != first["sha256"]
    delta = tmp_path / "delta.safetensors"
    code, composition = _run(
        "export", "--registry", str(fresh), "--delta-only", "--out", str(delta)
    )
    assert code == 0, composition
    with Registry.open(fresh, actor="test") as opened:
        assert delta.read_bytes() == opened.export_bytes()
        opened.forget(silo="silo-0", actor="test", reason="asked")
    text = runner.invoke(app, ["export", "--registry", str(fresh), "--out", str(out)])
    assert text.exit_code == 0, text.output
    assert "wrote model version 3" in text.stdout
    assert "cannot be exported" in _refused(
        "export", "--registry", str(fresh), "--out", str(out), "--version", "2"
    )
    assert "--delta-only" in _refused(
        "export", "--registry", str(fresh), "--out", str(out), "--version", "3", "--delta-only"
    )


def test_a_registry_without_theta0_is_refused_in_one_line(
    tmp_path: Path, digits_base: MaterializedBase
) -> None:
    old = digits_registry(tmp_path / "old", digits_base, theta0=False)
    for command in (
        ["export", "--registry", str(old), "--out", str(tmp_path / "m.safetensors")],
        ["predict", "--registry", str(old), str(tmp_path / "x.npy")],
        ["evaluate", "--registry", str(old)],
    ):
        np.save(tmp_path / "x.npy", np.zeros((1, 8, 8), dtype=np.float32))
        assert "does not hold θ0" in _refused(*command)
    assert not (tmp_path / "m.safetensors").exists()


def _round(number: int, version: int, accuracy: float, at: datetime) -> RoundSummary:
    return RoundSummary(
        run_id=1,
        round=number,
        silos_asked=("silo-0", "silo-1", "silo-2"),
        accepted=(),
        accepted_silos=("silo-0", "silo-1", "silo-2"),
        rejected=(),
        idle=(),
        version=version,
        components=3 * number,
        accuracy=accuracy,
        seconds=1.0,
        finished_at=at,
    )


def test_versions_and_history_show_forgets_and_readmissions(
    fresh: Path, digits_base: MaterializedBase
) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    append_round(fresh, _round(1, 1, 0.5, start))
    append_round(fresh, _round(2, 2, 0.75, start + timedelta(minutes=1)))
    with Registry.open(fresh, actor="test") as opened:
        opened.forget(silo="silo-1", actor="alice", reason="withdrew consent")
        opened.readmit("silo-1", actor="bob", reason="consent renewed")
        add_components(opened, digits_base, [("silo-1", (3, 4, 5, 6))], round=3)
        opened.commit_version(round=3, reason="round 3")
    append_round(fresh, _round(3, 4, 0.875, datetime.now(UTC) + timedelta(seconds=1)))

    code, versions = _run("registry", "versions", "--registry", str(fresh))
    assert code == 0, versions
    assert isinstance(versions, list)
    assert [v["number"] for v in versions] == [1, 2, 3, 4]
    assert [v["purged"] for v in versions] == [True, True, False, False]
    assert [v["current"] for v in versions] == [False, False, False, True]
    assert [v["components"] for v in versions] == [3, 6, 4, 5]
    assert [v["accuracy"] for v in versions] == [0.5, 0.75, None, 0.875]
    assert versions[2]["silos"] == ["silo-0", "silo-2"]
    assert versions[2]["actor"] == "alice"
    assert versions[3]["silos"] == ["silo-0", "silo-1", "silo-2"]
    assert versions[3]["round"] == 3
    assert {"created_at", "reason", "weighting"} <= set(versions[0])

    code, history = _run("registry", "history", "--registry", str(fresh))
    assert code == 0, history
    assert isinstance(history, dict)
    assert [r["round"] for r in history["rounds"]] == [1, 2, 3]
    forget, readmit = history["events"]
    assert (forget["action"], forget["silo"], forget["actor"]) == ("forget", "silo-1", "alice")
    assert (forget["components"], forget["version"], forget["reason"]) == (
        2,
        3,
        "withdrew consent",
    )
    assert len(forget["component_ids"]) == 2
    assert (readmit["action"], readmit["actor"], readmit["reason"]) == (
        "readmit",
        "bob",
        "consent renewed",
    )
    assert history["current"]["version"] == 4
    assert history["current"]["components"] == 5

    text = runner.invoke(
        app, ["registry", "history", "--registry", str(fresh)], env={"COLUMNS": "200"}
    )
    assert text.exit_code == 0, text.output
    order = ["round 1", "round 2", "forget silo-1", "readmit silo-1", "round 3", "current model"]
    positions = [text.stdout.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert "version 4, 5 component(s)" in text.stdout


def test_history_plot_and_an_empty_registry(fresh: Path, tmp_path: Path) -> None:
    append_round(fresh, _round(1, 1, 0.5, datetime.now(UTC)))
    plot = tmp_path / "accuracy.png"
    result = runner.invoke(
        app, ["registry", "history", "--registry", str(fresh), "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no registry" in _refused("registry", "history", "--registry", str(tmp_path / "none"))
