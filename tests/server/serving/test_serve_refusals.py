"""Bad input to every serve endpoint: a clear 4xx JSON error naming what is wrong (never a
500), and nothing changed: the registry's audit log, its version and the served model."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import numpy as np
import pytest

from tests.server.serving.serving_helpers import Served
from tmc.server.registry import Registry

BATCH = np.zeros((2, 1, 8, 8), dtype=np.float32).tolist()
HUNDRED_MB = 100 * 1024 * 1024

Request = Callable[[Served], httpx.Response]


def _predict(served: Served, **kwargs: object) -> httpx.Response:
    return served.client.post("/v1/predict", **kwargs)  # type: ignore[arg-type]


CASES: dict[str, tuple[Request, int, str]] = {
    "no token": (lambda s: _predict(s, json={"inputs": BATCH}), 401, "no credential"),
    "wrong token": (
        lambda s: _predict(
            s, json={"inputs": BATCH}, headers={"authorization": "Bearer tmc_not-a-token"}
        ),
        401,
        "not recognised",
    ),
    "not bearer": (
        lambda s: s.client.get("/v1/model", headers={"authorization": "Basic dXNlcg=="}),
        401,
        "Bearer <token>",
    ),
    "no token for the model": (lambda s: s.client.get("/v1/model"), 401, "no credential"),
    "wrong shape": (
        lambda s: _predict(s, json={"inputs": np.zeros((2, 3, 8, 8)).tolist()}, headers=s.headers),
        422,
        "(N, 1, 8, 8)",
    ),
    "ragged": (
        lambda s: _predict(s, json={"inputs": [[[[0.0, 1.0]]], [[[0.0]]]]}, headers=s.headers),
        422,
        "ragged",
    ),
    "too few dimensions": (
        lambda s: _predict(s, json={"inputs": [[1.0, 2.0]]}, headers=s.headers),
        422,
        "(N, C, H, W)",
    ),
    "not numbers": (
        lambda s: _predict(s, json={"inputs": [[[["a"]]]]}, headers=s.headers),
        422,
        "inputs.0.0.0.0",
    ),
    "not json": (
        lambda s: _predict(
            s,
            content=b"{not json",
            headers={**s.headers, "content-type": "application/json"},
        ),
        422,
        "JSON",
    ),
    "unknown field": (
        lambda s: _predict(s, json={"inputs": BATCH, "extra": 1}, headers=s.headers),
        422,
        "extra",
    ),
    "non-image": (
        lambda s: _predict(
            s,
            files=[("files", ("notes.png", b"plain text, no pixels", "image/png"))],
            headers=s.headers,
        ),
        422,
        "notes.png is not a PNG or JPEG image",
    ),
    "no file": (
        lambda s: _predict(s, files=[("other", (None, b"x"))], headers=s.headers),
        422,
        "no image",
    ),
    "other media type": (
        lambda s: _predict(s, content=b"x", headers={**s.headers, "content-type": "text/plain"}),
        415,
        "text/plain",
    ),
    "batch over the limit": (
        lambda s: _predict(s, json={"inputs": np.zeros((9, 1, 8, 8)).tolist()}, headers=s.headers),
        413,
        "at most 8",
    ),
    "too many files": (
        lambda s: _predict(
            s,
            files=[("files", (f"{i}.png", b"x", "image/png")) for i in range(9)],
            headers=s.headers,
        ),
        413,
        "at most 8",
    ),
    "100 MB body": (
        lambda s: _predict(
            s, content=b"0" * HUNDRED_MB, headers={**s.headers, "content-type": "application/json"}
        ),
        413,
        "exceeds this server's limit",
    ),
    "not finite": (
        lambda s: _predict(
            s,
            content=b'{"inputs": [[[[NaN]]]]}',
            headers={**s.headers, "content-type": "application/json"},
        ),
        422,
        "finite",
    ),
    "chunked body over the limit": (
        lambda s: _predict(
            s,
            content=(b"0" * (1024 * 1024) for _ in range(17)),
            headers={**s.headers, "content-type": "application/json"},
        ),
        413,
        "exceeds this server's limit",
    ),
    "unknown version": (
        lambda s: _predict(s, params={"version": 99}, json={"inputs": BATCH}, headers=s.headers),
        404,
        "no version 99",
    ),
    "unknown version of the model": (
        lambda s: s.client.get("/v1/model", params={"version": 99}, headers=s.headers),
        404,
        "no version 99",
    ),
    "version not a number": (
        lambda s: s.client.get("/v1/model", params={"version": "x"}, headers=s.headers),
        422,
        "version",
    ),
    "top out of range": (
        lambda s: _predict(s, params={"top": 0}, json={"inputs": BATCH}, headers=s.headers),
        422,
        "top",
    ),
    "unknown path": (lambda s: s.client.get("/v1/nothing", headers=s.headers), 404, "Not Found"),
    "wrong method": (lambda s: s.client.get("/v1/predict", headers=s.headers), 405, "Method"),
}


def _state(served: Served) -> tuple[int, int, int | None]:
    with Registry.open(served.registry, actor="test") as registry:
        status = registry.status()
    return status.audit_events, status.active, status.current_version


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_a_clear_4xx_and_changes_nothing(shared: Served, case: str) -> None:
    served = shared
    send, status, words = CASES[case]
    before = _state(served)
    response = send(served)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    assert words in body["message"], body
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    assert _state(served) == before
    good = _predict(served, json={"inputs": BATCH}, headers=served.headers)
    assert good.status_code == 200
    assert good.json()["version"] == before[2]


def test_a_forgotten_version_asked_for_by_number_is_refused(served: Served) -> None:
    with Registry.open(served.registry, actor="test") as registry:
        registry.forget(silo="silo-1", actor="test")
    response = _predict(
        served, params={"version": 1}, json={"inputs": BATCH}, headers=served.headers
    )
    assert response.status_code == 404, response.text
    assert "forgotten" in response.json()["message"]
