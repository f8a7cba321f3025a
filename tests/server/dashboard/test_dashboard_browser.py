"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright):
``tmc dashboard`` runs under uvicorn on a free loopback port over a real registry; the
browser logs in with the operator token, forgets a silo through the confirmation page and
sees the new version. Screenshots go to ``$TMC_DASHBOARD_SCREENSHOTS`` (the docs' images are
made so) or the test's temporary folder.

``$TMC_DASHBOARD_REGISTRY`` runs it over a copy of a registry of your own (one made by
``tmc simulate`` has a round history, so the versions page shows the accuracy plot).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from tests.processes import Processes, free_port, wait_for_port
from tests.registries import digits_registry
from tmc.server.admin import create_token
from tmc.server.registry import Registry

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")
SCREENSHOTS_ENV = "TMC_DASHBOARD_SCREENSHOTS"
REGISTRY_ENV = "TMC_DASHBOARD_REGISTRY"
VIEWPORT = {"width": 1180, "height": 760}


def _registry(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    own = os.environ.get(REGISTRY_ENV)
    if own:
        shutil.copytree(own, root)
        return root
    return digits_registry(root, request.getfixturevalue("digits_base"), rounds=2)


def _shoot(page: Page, folder: Path, name: str) -> None:
    """A small PNG of the page: 128 colours are plenty for tables and text."""
    image = Image.open(io.BytesIO(page.screenshot(full_page=True)))
    small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(folder / f"dashboard-{name}.png", optimize=True)


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed: apt-get install -y chromium"
)
def test_log_in_forget_a_silo_and_see_the_new_version(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    root = _registry(request, tmp_path)
    credentials = tmp_path / "admin-credentials.json"
    token, _ = create_token(credentials, role="operator", label="ops")
    with Registry.open(root, actor="test") as registry:
        silos = [s.silo for s in registry.silos() if s.active]
        target = silos[1]
        removed = {c.id for c in registry.list_components(silo=target)}
        before = registry.current_version()
    assert before is not None
    assert removed
    shots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes = Processes(tmp_path / "logs")
    try:
        server = processes.start(
            "dashboard",
            [
                sys.executable,
                "-c",
                "from tmc.cli import main; main()",
                "dashboard",
                "--registry",
                str(root),
                "--token-file",
                str(credentials),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
        )
        wait_for_port("127.0.0.1", port, timeout=60, watch=[server])
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"{base}/silos")
                assert page.locator("input#token").is_visible()  # not logged in: the form
                _shoot(page, shots, "login")
                page.fill("input#token", token)
                page.click("button[type=submit]")
                page.wait_for_url(f"{base}/silos")
                assert page.locator("tr[data-silo]").count() == len(silos)
                _shoot(page, shots, "silos")
                page.goto(f"{base}/versions")
                assert page.locator("#current strong").inner_text() == str(before.number)
                _shoot(page, shots, "versions")
                page.goto(f"{base}/silos")
                page.locator(f'tr[data-silo="{target}"] a', has_text="Forget").click()
                page.wait_for_url(f"{base}/silos/{target}/forget")
                listed = set(
                    page.locator("tr[data-component]").evaluate_all(
                        "rows => rows.map(r => r.dataset.component)"
                    )
                )
                assert listed == removed
                resulting = page.locator("#resulting").inner_text()
                assert resulting == str(before.number + 1)
                page.fill("input#reason", "the silo withdrew its consent")
                _shoot(page, shots, "forget")
                page.click("button#confirm")
                page.wait_for_url(f"{base}/versions/{resulting}")
                heading = page.locator("h1").inner_text()
                assert re.fullmatch(rf"Version {resulting}\s+current", heading), heading
                assert target not in page.locator("#silos").inner_text()
                _shoot(page, shots, "version")
                page.goto(f"{base}/audit")
                assert page.locator('tr[data-action="forget"]').count() == len(removed)
                _shoot(page, shots, "audit")
                page.goto(f"{base}/silos")
                row = page.locator(f'tr[data-silo="{target}"]')
                assert "forgotten" in row.inner_text()
                assert row.locator("a", has_text="Readmit").count() == 1
                _shoot(page, shots, "silos-forgotten")
            finally:
                browser.close()
    finally:
        leftovers = processes.stop_all()
    assert leftovers == []
    with Registry.open(root, actor="test") as registry:
        after = registry.current_version()
        assert after is not None
        assert after.number == before.number + 1
        assert set(after.component_ids) == set(before.component_ids) - removed
        assert {c.id for c in registry.list_components(status="forgotten")} >= removed
        assert registry.tombstone(target) is not None
        assert registry.verify().ok
