"""The live model follows the registry: a new version or a forget is picked up without a
restart, and a version that contained a forgotten component is never answered from."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from tests.registries import add_components, digits_registry
from tests.server.serving.serving_helpers import Served, settings_for
from tmc.common.models import MaterializedBase
from tmc.server.registry import Registry
from tmc.server.serving import (
    LiveModel,
    ModelUnavailableError,
    RegistryWatch,
    ServingMetrics,
    create_app,
)
from tmc.server.serving.holder import Served as Loaded

BATCH = np.zeros((1, 1, 8, 8), dtype=np.float32).tolist()


def _silo_ids(registry: Path, silo: str) -> set[str]:
    with Registry.open(registry, actor="test") as opened:
        return {r.id for r in opened.list_components(silo=silo, status="all")}


def _answer(served: Served) -> dict[str, object]:
    response = served.client.post("/v1/predict", json={"inputs": BATCH}, headers=served.headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _poll(served: Served, version: int, limit_s: float = 30.0) -> dict[str, object]:
    """Answers until one comes from ``version`` (bounded: the test fails past the limit)."""
    deadline = time.monotonic() + limit_s
    while True:
        body = _answer(served)
        if body["version"] == version:
            return body
        assert time.monotonic() < deadline, f"still served {body['version']}, not {version}"
        time.sleep(0.05)


def test_a_new_version_is_served_without_a_restart(
    served: Served, digits_base: MaterializedBase
) -> None:
    assert _answer(served)["version"] == 2
    with Registry.open(served.registry, actor="test") as registry:
        add_components(registry, digits_base, [("silo-3", (0, 1))], round=3)
        committed = registry.commit_version(round=3)
    body = _poll(served, committed.number)
    assert body["component_ids"] == list(committed.component_ids)
    assert len(committed.component_ids) == 7


def test_a_forget_is_out_of_the_very_next_answer(served: Served) -> None:
    gone = _silo_ids(served.registry, "silo-1")
    assert gone <= set(_answer(served)["component_ids"])  # type: ignore[arg-type]
    with Registry.open(served.registry, actor="test") as registry:
        result = registry.forget(silo="silo-1", actor="test", reason="test")
    # No polling needed: the answer after the forget returned is already without the silo
    # (it waits for the successor rather than answer from the purged version).
    body = _answer(served)
    assert body["version"] == result.version.number
    assert body["component_ids"] == list(result.version.component_ids)
    assert not gone & set(body["component_ids"])  # type: ignore[arg-type]
    model = served.client.get("/v1/model", headers=served.headers).json()
    assert not gone & set(model["component_ids"])


def _live(registry: Path, *, poll_s: float, wait_s: float) -> LiveModel:
    return LiveModel(registry, metrics=ServingMetrics(), poll_s=poll_s, wait_s=wait_s).start()


def test_a_purged_version_is_refused_before_its_successor_is_loaded(registry: Path) -> None:
    # The follower polls once a minute here, and a request may not wait: between the forget
    # and the reload, the old model is in memory but must not answer.
    live = _live(registry, poll_s=60.0, wait_s=0.0)
    try:
        assert live.current().number == 2
        with Registry.open(registry, actor="test") as opened:
            opened.forget(silo="silo-0", actor="test")
        with pytest.raises(ModelUnavailableError, match="contained a forgotten component"):
            live.current()
        with pytest.raises(ModelUnavailableError):
            live.answer(lambda served: served.number)
        assert not live.valid(2)
        assert not live.valid(1)
    finally:
        live.close()


def test_an_answer_computed_while_a_forget_commits_is_computed_again(registry: Path) -> None:
    live = _live(registry, poll_s=60.0, wait_s=30.0)
    gone = _silo_ids(registry, "silo-2")
    used: list[int] = []

    def compute(served: Loaded) -> torch.Tensor:
        used.append(served.number)
        if len(used) == 1:  # the forget commits while this request runs on version 2
            with Registry.open(registry, actor="test") as opened:
                opened.forget(silo="silo-2", actor="test")
        return served.composed.scores(torch.zeros(1, 1, 8, 8))

    try:
        _, served = live.answer(compute)
        assert used == [2, 3]
        assert served.number == 3
        assert not gone & set(served.component_ids)
    finally:
        live.close()


def test_a_past_version_purged_while_answering_is_not_returned(registry: Path) -> None:
    live = _live(registry, poll_s=60.0, wait_s=30.0)

    def compute(served: Loaded) -> int:
        with Registry.open(registry, actor="test") as opened:
            opened.forget(silo="silo-0", actor="test")
        return served.number

    try:
        with pytest.raises(KeyError, match="forgotten since"):
            live.answer(compute, version=1)
    finally:
        live.close()


def test_the_watch_sees_commits_of_other_connections_only_once(
    registry: Path, digits_base: MaterializedBase
) -> None:
    watch = RegistryWatch(registry)
    try:
        assert not watch.changed()
        with Registry.open(registry, actor="test") as opened:
            assert not watch.changed()  # opening (and its empty recovery) commits nothing
            add_components(opened, digits_base, [("silo-9", (0,))], round=5)
        assert watch.changed()
        assert not watch.changed()
    finally:
        watch.close()


def test_a_registry_without_a_version_answers_503_until_a_round_commits(
    tmp_path: Path, credentials: tuple[Path, str], digits_base: MaterializedBase
) -> None:
    root = digits_registry(tmp_path / "empty", digits_base, rounds=0)
    path, token = credentials
    headers = {"authorization": f"Bearer {token}"}
    app = create_app(settings_for(root, path))
    with TestClient(app) as client:
        waiting = client.post("/v1/predict", json={"inputs": BATCH}, headers=headers)
        assert waiting.status_code == 503
        assert "no version to serve yet" in waiting.json()["message"]
        assert waiting.headers["retry-after"] == "1"
        assert client.get("/healthz").json() == {"status": "starting", "version": None}
        with Registry.open(root, actor="test") as registry:
            add_components(registry, digits_base, [("silo-0", (0, 1))], round=1)
            registry.commit_version(round=1)
        deadline = time.monotonic() + 30
        while client.get("/healthz").json()["status"] != "ok":
            assert time.monotonic() < deadline, "the first version was never loaded"
            time.sleep(0.05)
        assert (
            client.post("/v1/predict", json={"inputs": BATCH}, headers=headers).json()["version"]
            == 1
        )
