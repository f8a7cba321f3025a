"""``POST /v1/predict`` and ``GET /v1/model``: the answers are the composed model's and
``tmc predict``'s, name the version and components, and /metrics counts them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from tests.server.serving.serving_helpers import Served
from tmc.cli import app as tmc_app
from tmc.server.composed import ComposedModel
from tmc.server.registry import Registry
from tmc.server.serving import Served as LoadedModel


def _composed(registry: Path, version: int | None = None) -> ComposedModel:
    with Registry.open(registry, actor="test") as opened:
        return ComposedModel.from_registry(opened, version)


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_arrays_are_answered_by_the_current_composed_model(shared: Served) -> None:
    served = shared
    batch = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    response = served.client.post(
        "/v1/predict?top=2", json={"inputs": batch.tolist()}, headers=served.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    composed = _composed(served.registry)
    expected = composed.scores(torch.from_numpy(batch))
    assert body["version"] == composed.version.number == 2
    assert body["component_ids"] == list(composed.version.component_ids)
    assert len(body["component_ids"]) == 6
    logits = torch.tensor([p["logits"] for p in body["predictions"]])
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    for prediction, row in zip(body["predictions"], expected, strict=True):
        label = int(row.argmax())
        assert prediction["label"] == label
        assert prediction["class"] == composed.classes[label]
        assert len(prediction["top"]) == 2
        assert sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert prediction["probability"] == pytest.approx(max(prediction["probabilities"]))


def test_images_are_answered_as_tmc_predict_answers_them(shared: Served, tmp_path: Path) -> None:
    served = shared
    paths = []
    for seed in range(2):
        path = tmp_path / f"image-{seed}.png"
        path.write_bytes(_png(seed))
        paths.append(path)
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
    response = served.client.post("/v1/predict", files=files, headers=served.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    cli = CliRunner().invoke(
        tmc_app, ["predict", "--registry", str(served.registry), *map(str, paths), "--json"]
    )
    assert cli.exit_code == 0, cli.output
    expected = json.loads(cli.stdout)
    assert body["version"] == expected["version"]
    assert [p["input"] for p in body["predictions"]] == [p.name for p in paths]
    assert [p["class"] for p in body["predictions"]] == [
        p["class"] for p in expected["predictions"]
    ]
    np.testing.assert_allclose(
        [p["logits"] for p in body["predictions"]],
        [p["logits"] for p in expected["predictions"]],
        rtol=1e-5,
        atol=1e-5,
    )


def test_a_past_version_is_served_on_request(shared: Served) -> None:
    served = shared
    batch = np.random.default_rng(1).random((1, 1, 8, 8), dtype=np.float32)
    response = served.client.post(
        "/v1/predict?version=1", json={"inputs": batch.tolist()}, headers=served.headers
    )
    assert response.status_code == 200, response.text
    old = _composed(served.registry, 1)
    assert response.json()["version"] == 1
    assert response.json()["component_ids"] == list(old.version.component_ids)
    torch.testing.assert_close(
        torch.tensor(response.json()["predictions"][0]["logits"]),
        old.scores(torch.from_numpy(batch))[0],
        rtol=1e-5,
        atol=1e-5,
    )


def test_model_names_version_components_classes_input_and_theta0(shared: Served) -> None:
    served = shared
    response = served.client.get("/v1/model", headers=served.headers)
    assert response.status_code == 200, response.text
    info = response.json()
    composed = _composed(served.registry)
    assert info["version"] == 2
    assert info["component_ids"] == list(composed.version.component_ids)
    assert info["components"] == 6
    assert info["classes"] == list(composed.classes)
    assert info["input"] == composed.data.input.model_dump(mode="json")
    assert info["theta0_sha256"] == composed.base.sha256
    assert info["delta_sha256"] == composed.version.delta_sha256
    assert served.client.get("/v1/model?version=1", headers=served.headers).json()["version"] == 1


def test_openapi_describes_the_endpoints(shared: Served) -> None:
    served = shared
    schema = served.client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/model", "/metrics", "/healthz"} <= set(schema["paths"])
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert served.client.get("/docs").status_code == 200


def test_metrics_scrape_parses_and_counts(served: Served) -> None:
    batch = np.zeros((2, 1, 8, 8), dtype=np.float32).tolist()
    assert served.client.post("/v1/predict", json={"inputs": batch}, headers=served.headers)
    assert served.client.post("/v1/predict", json={"inputs": batch}).status_code == 401
    response = served.client.get("/metrics", headers=served.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples[("tmc_serve_prediction_requests_total", (("status", "200"),))] == 1
    assert samples[("tmc_serve_prediction_requests_total", (("status", "401"),))] == 1
    assert samples[("tmc_serve_prediction_latency_seconds_count", ())] == 2
    assert samples[("tmc_serve_predicted_items_total", ())] == 2
    assert samples[("tmc_serve_model_version", ())] == 2
    assert samples[("tmc_serve_active_components", ())] == 6
    assert samples[("tmc_serve_model_reloads_total", (("outcome", "loaded"),))] == 1
    assert served.client.get("/metrics").status_code == 401


def test_health_needs_no_token_and_names_the_version(shared: Served) -> None:
    served = shared
    assert served.client.get("/healthz").json() == {"status": "ok", "version": 2}


def test_a_fault_of_the_server_is_a_json_500_that_names_no_internals(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object, batch: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(LoadedModel, "scores", broken)
    client = TestClient(served.client.app, raise_server_exceptions=False)
    batch = np.zeros((1, 1, 8, 8), dtype=np.float32).tolist()
    response = client.post("/v1/predict", json={"inputs": batch}, headers=served.headers)
    assert response.status_code == 500
    assert response.json() == {
        "error": "InternalError",
        "message": "the server failed: RuntimeError",
    }
