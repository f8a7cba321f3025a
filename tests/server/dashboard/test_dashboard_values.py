"""The dashboard's silo page shows the silo's kept values over versions (and only those),
or how to compute them when none are kept."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.registries import digits_registry
from tmc.common.models import MaterializedBase
from tmc.server.admin import create_token
from tmc.server.dashboard import Sessions, create_app
from tmc.server.registry import Registry
from tmc.server.valuation import kept_valuations, value_version
from tmc.server.valuation.split import evaluation_split

SILOS = (("silo-0", (0, 1, 2, 3, 4)), ("silo-1", (5, 6, 7, 8, 9)))


def _rows(html: str) -> dict[str, list[str]]:
    """Version -> the cells of its row in the values table."""
    rows = re.findall(r'<tr data-value-version="(\d+)">(.*?)</tr>', html, re.S)
    cells = (re.findall(r"<td[^>]*>(.*?)</td>", body, re.S) for _, body in rows)
    return {
        version: [re.sub(r"<[^>]+>", "", cell).strip() for cell in row]
        for (version, _), row in zip(rows, cells, strict=True)
    }


def test_the_silo_page_shows_its_kept_values(tmp_path: Path, digits_base: MaterializedBase) -> None:
    root = digits_registry(tmp_path / "registry", digits_base, silos=SILOS, rounds=2)
    credentials = tmp_path / "admin-credentials.json"
    viewer, _ = create_token(credentials, role="viewer", label="watch")
    with Registry.open(root, actor="dashboard") as registry:
        app = create_app(registry, Sessions(credentials))
        with TestClient(app, follow_redirects=False) as client:
            assert client.post("/login", data={"token": viewer}).status_code == 303
            assert 'href="/silos/silo-1"' in client.get("/silos").text
            empty = client.get("/silos/silo-1")
            assert empty.status_code == 200
            assert 'id="no-values"' in empty.text
            assert "tmc registry value" in empty.text
            assert _rows(empty.text) == {}

            split = evaluation_split(registry, "digits")
            kept = {v: value_version(registry, split, version=v) for v in (1, 2)}
            page = client.get("/silos/silo-1")
            assert page.status_code == 200
            assert 'id="no-values"' not in page.text
            rows = _rows(page.text)
            assert set(rows) == {"1", "2"}
            for version, valuation in kept.items():
                mine = next(s for s in valuation.silos if s.silo == "silo-1")
                cells = rows[str(version)]
                assert cells[1] == f"{100 * mine.leave_one_out:+.2f}"
                assert cells[2] == f"{100 * mine.shapley:+.2f}"
                assert cells[3] == f"{100 * valuation.accuracy:.2f}%"
                assert cells[5] == "exact"

            unknown = client.get("/silos/silo-9")
            assert unknown.status_code == 404
            assert "silo &#39;silo-9&#39; has no component" in unknown.text


def _form_token(html: str) -> str:
    found = re.search(r'name="form_token" value="([0-9a-f]{64})"', html)
    assert found is not None, html
    return found.group(1)


def test_an_operator_computes_values_a_viewer_may_not(
    tmp_path: Path, digits_base: MaterializedBase
) -> None:
    root = digits_registry(tmp_path / "registry", digits_base, silos=SILOS, rounds=2)
    credentials = tmp_path / "admin-credentials.json"
    operator, _ = create_token(credentials, role="operator", label="ops")
    viewer, _ = create_token(credentials, role="viewer", label="watch")
    with Registry.open(root, actor="dashboard") as registry:
        app = create_app(registry, Sessions(credentials))
        with TestClient(app, follow_redirects=False) as client:
            assert client.post("/login", data={"token": viewer}).status_code == 303
            page = client.get("/silos/silo-0").text
            assert "Compute the current version" not in page
            refused = client.post("/silos/silo-0/values", data={"form_token": _form_token(page)})
            assert refused.status_code == 403
            assert kept_valuations(root) == []

            client.cookies.clear()
            assert client.post("/login", data={"token": operator}).status_code == 303
            page = client.get("/silos/silo-0").text
            assert "Compute the current version" in page
            token = _form_token(page)
            bad = client.post("/silos/silo-0/values", data={"form_token": "0" * 64})
            assert bad.status_code == 403
            wrong = client.post(
                "/silos/silo-0/values", data={"form_token": token, "dataset": "mnist"}
            )
            assert wrong.status_code == 400
            assert kept_valuations(root) == []
            done = client.post("/silos/silo-0/values", data={"form_token": token})
            assert done.status_code == 303
            assert done.headers["location"] == "/silos/silo-0"
            kept = kept_valuations(root)
            assert [v.version for v in kept] == [2]
            mine = next(s for s in kept[0].silos if s.silo == "silo-0")
            cells = _rows(client.get("/silos/silo-0").text)["2"]
            assert cells[2] == f"{100 * mine.shapley:+.2f}"
