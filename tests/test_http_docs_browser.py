"""/docs in a real headless Chromium: Swagger UI renders every route from /openapi.json, offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.http_harness import LiveServer, server_config

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists() and shutil.which("chromium") is None, reason="chromium is missing"),
]


def test_swagger_ui_lists_the_routes(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with LiveServer(server_config(tmp_path)) as live, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            outside: list[str] = []
            page.on("request", lambda request: outside.append(request.url)
                    if not request.url.startswith(live.base) else None)
            page.goto(f"{live.base}/docs")
            page.wait_for_selector(".opblock", timeout=20_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert "/prompt" in [p.replace("\u200b", "") for p in paths]
            assert any("/api/history" in p.replace("\u200b", "") for p in paths)
            assert outside == []  # no CDN or any other host is contacted
        finally:
            browser.close()
