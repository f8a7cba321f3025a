"""The dashboard's pages and actions through FastAPI's TestClient: every page shows the
registry's own content, every request needs an operator's (or, to look only, a viewer's)
token, a forget removes exactly
what its confirmation page listed, and bad input gets a 4xx page with nothing changed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.server.admin.admin_helpers import snapshot
from tests.server.registry.registry_helpers import make_base, make_component
from tmc.common.components import Component, PrivacyMeta
from tmc.server.admin import create_token, revoke_token
from tmc.server.dashboard import COOKIE, Sessions, create_app
from tmc.server.federation.history import Rejection, RoundSummary, append_round
from tmc.server.registry import Registry

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
PAGES = (
    "/silos",
    "/silos/silo-1",
    "/versions",
    "/versions/1",
    "/versions/accuracy.png",
    "/components",
    "/audit",
)


@dataclass(frozen=True)
class Board:
    root: Path
    credentials: Path
    operator: str
    silo_token: str
    viewer: str
    client: TestClient


def _populate(root: Path) -> None:
    """Three silos (two components each, one with DP), two versions, a round history."""
    with Registry.create(root, base=make_base()) as registry:
        for s in range(3):
            for i in range(2):
                component = make_component(f"silo-{s}", 100 * s + i, increment=i, round=i + 1)
                if s == 2:
                    meta = component.meta.model_copy(update={"privacy": PRIVACY})
                    component = Component(component.delta, meta)
                registry.add(component)
            if s == 1:
                registry.commit_version(round=1, reason="round 1")
        registry.commit_version(round=2, reason="round 2")
    for number, accepted in ((1, ("silo-0", "silo-1")), (2, ("silo-0", "silo-2"))):
        append_round(
            root,
            RoundSummary(
                run_id=7,
                round=number,
                silos_asked=("silo-0", "silo-1", "silo-2"),
                accepted=(),
                accepted_silos=accepted,
                rejected=(Rejection(silo="silo-1", reason="over the norm bound"),)
                if number == 2
                else (),
                idle=("silo-2",) if number == 1 else (),
                version=number,
                components=2 * number + 2,
                accuracy=0.5 + 0.1 * number,
                seconds=1.0,
            ),
        )


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    root = tmp_path / "registry"
    _populate(root)
    credentials = tmp_path / "admin-credentials.json"
    operator, _ = create_token(credentials, role="operator", label="ops")
    silo_token, _ = create_token(credentials, role="silo:silo-0", label="silo-0-key")
    viewer, _ = create_token(credentials, role="viewer", label="watch")
    with Registry.open(root, actor="dashboard") as registry:
        app = create_app(registry, Sessions(credentials))
        with TestClient(app, follow_redirects=False) as client:
            yield Board(root, credentials, operator, silo_token, viewer, client)


def _login(board: Board, token: str | None = None) -> None:
    response = board.client.post("/login", data={"token": token or board.operator})
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie


def _form_token(html: str) -> str:
    found = re.search(r'name="form_token" value="([0-9a-f]{64})"', html)
    assert found is not None, html
    return found.group(1)


def _ids(html: str) -> set[str]:
    return set(re.findall(r'data-component="([0-9a-f]{64})"', html))


def test_every_page_needs_an_operator_token(board: Board) -> None:
    before = snapshot(board.root)
    for path in PAGES:
        response = board.client.get(path)
        assert response.status_code == 401, path
        assert 'name="token"' in response.text  # the login form, and nothing of the registry
        assert "silo-1" not in response.text
    board.client.cookies.set(COOKIE, "tmc_not-a-known-token")
    response = board.client.get("/silos")
    assert response.status_code == 401
    assert "not recognised" in response.text
    assert board.client.post("/login", data={"token": "tmc_wrong"}).status_code == 401
    board.client.cookies.clear()
    response = board.client.post("/login", data={"token": board.silo_token})
    assert response.status_code == 403
    assert "needs an operator (or viewer) token" in response.text
    board.client.cookies.set(COOKIE, board.silo_token)
    assert board.client.get("/silos").status_code == 403
    forget = board.client.post("/silos/silo-0/forget", data={"form_token": "x", "plan": "0" * 64})
    assert forget.status_code == 403
    assert snapshot(board.root) == before


def test_a_viewer_may_look_but_not_act(board: Board) -> None:
    _login(board, board.viewer)
    for path in PAGES:
        assert board.client.get(path).status_code == 200, path
    silos = board.client.get("/silos").text
    assert "view only" in silos
    assert "Forget…" not in silos
    before = snapshot(board.root)
    for path in ("/silos/silo-0/forget", "/silos/silo-0/readmit"):
        refused = board.client.get(path)
        assert refused.status_code == 403
        assert "may look, not forget or readmit" in refused.text
    token = _form_token(silos)  # a valid form token of the viewer's own session
    forget = board.client.post("/silos/silo-0/forget", data={"form_token": token, "plan": "0" * 64})
    assert forget.status_code == 403
    readmit = board.client.post("/silos/silo-0/readmit", data={"form_token": token})
    assert readmit.status_code == 403
    assert snapshot(board.root) == before
    assert board.client.post("/logout", data={"form_token": token}).status_code == 303


def test_a_revoked_token_stops_working_at_once(board: Board) -> None:
    _login(board)
    assert board.client.get("/silos").status_code == 200
    revoke_token(board.credentials, "ops")
    response = board.client.get("/silos")
    assert response.status_code == 401
    assert COOKIE in response.headers.get("set-cookie", "")  # the dead cookie is cleared


def test_pages_show_the_registry(board: Board) -> None:
    _login(board)
    with Registry.open(board.root, actor="test") as registry:
        components = registry.list_components(status="all")
        versions = registry.versions()
        events = registry.audit_log()
    silos = board.client.get("/silos").text
    rows = dict(re.findall(r'<tr data-silo="([^"]+)">(.*?)</tr>', silos, re.S))
    assert set(rows) == {"silo-0", "silo-1", "silo-2"}
    assert "contributed" in rows["silo-0"]
    assert "refused" in rows["silo-1"]
    assert "over the norm bound" in rows["silo-1"]
    assert "2.5 (1e-05)" in rows["silo-2"]
    assert "no DP" in rows["silo-0"]
    assert "Last round recorded: 2 (run 7)" in silos
    page = board.client.get("/versions").text
    assert set(re.findall(r'data-version="(\d+)"', page)) == {str(v.number) for v in versions}
    assert 'src="/versions/accuracy.png"' in page
    plot = board.client.get("/versions/accuracy.png")
    assert plot.headers["content-type"] == "image/png"
    assert plot.content[:8] == b"\x89PNG\r\n\x1a\n"
    first = board.client.get("/versions/1").text
    assert _ids(first) == set(versions[0].component_ids)
    assert _ids(board.client.get("/components").text) == {c.id for c in components}
    audit = board.client.get("/audit").text
    assert set(re.findall(r'data-seq="(\d+)"', audit)) == {str(e.seq) for e in events}
    csp = board.client.get("/silos").headers["content-security-policy"]
    assert "default-src 'none'" in csp


def test_forget_preview_lists_exactly_what_the_forget_removes(board: Board) -> None:
    _login(board)
    with Registry.open(board.root, actor="test") as registry:
        expected = {c.id for c in registry.list_components(silo="silo-1")}
        current = registry.current_version()
    assert current is not None
    assert len(expected) == 2
    preview = board.client.get("/silos/silo-1/forget")
    assert preview.status_code == 200
    listed = _ids(preview.text)
    assert listed == expected
    assert f'id="resulting">{current.number + 1}<' in preview.text
    assert "increment(s) 0, 1" in preview.text
    plan = re.search(r'name="plan" value="([0-9a-f]{64})"', preview.text)
    assert plan is not None
    response = board.client.post(
        "/silos/silo-1/forget",
        data={
            "form_token": _form_token(preview.text),
            "plan": plan.group(1),
            "reason": "withdrew consent",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/versions/{current.number + 1}"
    with Registry.open(board.root, actor="test") as registry:
        version = registry.current_version()
        assert version is not None
        assert version.number == current.number + 1
        assert set(version.component_ids) == set(current.component_ids) - listed
        forgotten = {c.id for c in registry.list_components(status="forgotten")}
        assert forgotten == listed
        assert registry.tombstone("silo-1") is not None
        events = [e for e in registry.audit_log() if e.action == "forget"]
        assert {e.component_id for e in events} == listed
        assert {e.actor for e in events} == {"dashboard:operator/ops"}
        assert {e.details["reason"] for e in events} == {"withdrew consent"}
        assert registry.verify().ok
    page = board.client.get(response.headers["location"]).text
    assert "current" in page
    assert _ids(page) == set(version.component_ids)


def test_forget_refuses_a_stale_plan_or_a_bad_form_token(board: Board) -> None:
    _login(board)
    preview = board.client.get("/silos/silo-0/forget").text
    plan = re.search(r'name="plan" value="([0-9a-f]{64})"', preview)
    assert plan is not None
    form = {"form_token": _form_token(preview), "plan": plan.group(1)}
    before = snapshot(board.root)
    wrong = board.client.post("/silos/silo-0/forget", data={**form, "form_token": "f" * 64})
    assert wrong.status_code == 403
    assert "form token" in wrong.text
    assert snapshot(board.root) == before
    with Registry.open(board.root, actor="test") as registry:  # a round commits meanwhile
        registry.add(make_component("silo-0", 9, increment=5, round=3))
        registry.commit_version(round=3, reason="round 3")
    before = snapshot(board.root)
    stale = board.client.post("/silos/silo-0/forget", data=form)
    assert stale.status_code == 409
    assert "review the new list" in stale.text
    assert snapshot(board.root) == before


def test_readmit_after_a_forget(board: Board) -> None:
    _login(board)
    assert board.client.get("/silos/silo-0/readmit").status_code == 404  # not forgotten
    preview = board.client.get("/silos/silo-0/forget").text
    plan = re.search(r'name="plan" value="([0-9a-f]{64})"', preview)
    assert plan is not None
    token = _form_token(preview)
    forgot = board.client.post(
        "/silos/silo-0/forget", data={"form_token": token, "plan": plan.group(1)}
    )
    assert forgot.status_code == 303
    silos = board.client.get("/silos").text
    assert "Readmit…" in silos
    page = board.client.get("/silos/silo-0/readmit")
    assert page.status_code == 200
    assert "no component is removed" in page.text
    done = board.client.post(
        "/silos/silo-0/readmit", data={"form_token": token, "reason": "new consent"}
    )
    assert done.status_code == 303
    with Registry.open(board.root, actor="test") as registry:
        assert registry.tombstone("silo-0") is None
        last = registry.audit_log()[-1]
        assert (last.action, last.silo, last.actor) == (
            "readmit",
            "silo-0",
            "dashboard:operator/ops",
        )


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("get", "/silos/nobody/forget", None, 404),
        ("get", "/silos/bad name!/forget", None, 400),
        ("get", "/versions/999", None, 404),
        ("get", f"/versions/{2**70}", None, 400),
        ("get", "/versions/zero", None, 400),
        ("get", "/components?status=bogus", None, 400),
        ("get", "/audit?before=-1", None, 400),
        ("get", "/no-such-page", None, 404),
        ("post", "/silos/silo-0/forget", b'{"plan": "x"}', 400),
        ("post", "/silos/silo-0/forget", b"form_token=a&plan=" + b"0" * 20_000, 400),
        ("post", "/silos/silo-0/forget", b"form_token=a&form_token=b&plan=x", 400),
        ("post", "/silos/silo-0/forget", b"\xff\xfe", 400),
        ("post", "/silos/silo-2/readmit", b"form_token=a", 403),
        ("delete", "/silos", None, 405),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    board: Board, method: str, path: str, body: bytes | None, status: int
) -> None:
    _login(board)
    before = snapshot(board.root)
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if body is not None and body.startswith(b"{"):
        headers = {"content-type": "application/json"}
    response = board.client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert "text/html" in response.headers["content-type"]
    assert re.search(r'<p id="message">\S', response.text) or status == 405
    assert snapshot(board.root) == before
