"""The template editor page in a real headless Chromium (Playwright), against a real server with
auth on: edit and save, fill values, run with live progress, see the image, see errors.

The main server runs in bearer mode: the page's token field supplies the token to every API call
(``Authorization`` header) and to the websocket (``?token=``). The page's three static files are
fetched with the header added by the test, standing in for a server that serves them without auth.
A second server in basic mode checks the browser's own credential handling."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from templates_server import SOLID_TEMPLATE, RunningServer, running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
USER, PASSWORD = "editor", "pa55-word"
TOKEN = "t0ken-for-the-page"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists() and shutil.which("chromium") is None, reason="/usr/bin/chromium is missing"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("web-ui"), mode="bearer", token=TOKEN) as running:
        with httpx.Client(base_url=running.base_url, headers=AUTH) as http:
            assert http.post("/templates", json=SOLID_TEMPLATE).status_code == 201
            broken = SOLID_TEMPLATE | {"name": "broken"}
            assert http.post("/templates", json=broken).status_code == 201
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any, server: RunningServer) -> Iterator[Any]:
    context = browser.new_context()
    context.route(
        "**/templates-ui/**",
        lambda route: route.continue_(headers=route.request.headers | AUTH),
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.base_url + "/templates-ui/")
    # without the token the API answers 401 and the page asks for it
    page.wait_for_selector("#auth[open]")
    page.fill("#token", TOKEN)
    page.click("#token-form button")
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def open_template(page: Any, name: str) -> None:
    page.click(f'#template-list button[data-name="{name}"]')
    page.wait_for_function(f"document.getElementById('name').value === {json.dumps(name)}")
    page.wait_for_selector("#syntax.ok")


def stored(server: RunningServer, name: str) -> dict:
    with httpx.Client(base_url=server.base_url, headers=AUTH) as http:
        return http.get(f"/templates/{name}").json()


def test_edit_save_fill_run_and_see_the_image(page: Any, server: RunningServer) -> None:
    page.wait_for_selector("#template-list button")
    assert page.locator('#template-list button[data-name="text-to-image"]').count() == 1
    open_template(page, "solid")

    # placeholder checklist: predefined present/absent, custom ones listed
    checklist = page.inner_text("#predefined")
    assert "✓ %width%" in checklist and "✗ %seed%" in checklist
    assert "%red%" in page.inner_text("#custom") and "%prefix%" in page.inner_text("#custom")

    # edit the workflow JSON: a slower, more visible progress, and a new description
    workflow = json.loads(page.input_value("#workflow"))
    workflow["1"]["inputs"]["delay"] = 0.15
    page.fill("#workflow", json.dumps(workflow, indent=2))
    page.fill("#description", "edited in the browser")
    page.wait_for_selector("#syntax.ok")
    page.click("#save")
    page.wait_for_function("document.getElementById('message').textContent.startsWith('Saved solid')")
    saved = stored(server, "solid")
    assert saved["description"] == "edited in the browser" and saved["workflow"]["1"]["inputs"]["delay"] == 0.15

    # the values form shows the defaults; fill some values and run
    assert page.input_value("#value-width") == "16"
    page.fill("#value-width", "32")
    page.fill("#value-steps", "6")
    page.fill("#value-red", "0.1")
    page.wait_for_function("document.getElementById('connection').textContent.startsWith('connected')")
    page.click("#run")
    # live progress from the websocket: a step of the six is reported before the end
    page.wait_for_function(
        "/step \\d of 6/.test(document.getElementById('run-status').textContent)"
    )
    image = page.wait_for_selector("#results img")
    page.wait_for_function("document.getElementById('run-status').textContent === 'done'")
    size = page.evaluate(
        "(img) => img.decode().then(() => [img.naturalWidth, img.naturalHeight])", image
    )
    assert size == [32, 16]
    assert page.evaluate("document.getElementById('progress').value") == 6
    page.wait_for_selector("#gallery img")


def test_broken_json_and_bad_values_show_errors(page: Any, server: RunningServer) -> None:
    page.wait_for_selector("#template-list button")
    open_template(page, "broken")
    before = stored(server, "broken")

    page.fill("#workflow", '{"1": {"class_type": "TemplateTestSolid", "inputs": {')
    page.wait_for_selector("#syntax.error")
    assert "JSON error" in page.inner_text("#syntax")
    assert page.get_attribute("#workflow", "aria-invalid") == "true"
    page.click("#save")
    page.wait_for_function("document.getElementById('message').textContent.includes('nothing was saved')")
    assert stored(server, "broken")["etag"] == before["etag"]

    # a workflow that parses but is invalid for the engine: the run is refused with the node's error
    workflow = json.loads(json.dumps(before["workflow"]))
    workflow["2"]["class_type"] = "NoSuchNode"
    page.fill("#workflow", json.dumps(workflow, indent=2))
    page.wait_for_selector("#syntax.ok")
    page.click("#run")  # saves first, then runs
    message = page.locator("#message")
    message.get_by_text("NoSuchNode").wait_for()
    assert page.inner_text("#run-status") == "rejected"

    # wrong value types are reported naming the placeholder and the node
    workflow["2"]["class_type"] = "ImageInvert"
    page.fill("#workflow", json.dumps(workflow, indent=2))
    page.wait_for_selector("#syntax.ok")
    page.fill("#value-red", "bright")
    page.click("#run")
    message.get_by_text("%red%").wait_for()
    assert "node 1" in message.inner_text()


def test_custom_placeholders_add_rename_remove(page: Any) -> None:
    page.wait_for_selector("#template-list button")
    open_template(page, "solid")
    page.fill("#custom-name", "tint")
    page.fill("#custom-default", "0.4")
    page.click("#add-custom button")
    page.locator("#custom").get_by_text("%tint%").wait_for()
    assert page.input_value("#value-tint") == "0.4"

    page.once("dialog", lambda dialog: dialog.accept("shade"))
    page.get_by_role("button", name="Rename placeholder red").click()
    page.locator("#custom").get_by_text("%shade%").wait_for()
    workflow = json.loads(page.input_value("#workflow"))
    assert workflow["1"]["inputs"]["red"] == "%shade%"

    page.get_by_role("button", name="Remove placeholder prefix").click()
    page.wait_for_function("!document.getElementById('custom').textContent.includes('%prefix%')")
    workflow = json.loads(page.input_value("#workflow"))
    assert workflow["3"]["inputs"]["filename_prefix"] == "solid"  # replaced by its default value


def test_basic_auth_page_lists_and_runs(browser: Any, tmp_path: Path) -> None:
    with running_server(tmp_path, mode="basic", user=USER, password=PASSWORD) as basic:
        with httpx.Client(base_url=basic.base_url, auth=(USER, PASSWORD)) as http:
            assert http.post("/templates", json=SOLID_TEMPLATE).status_code == 201
        context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
        try:
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.goto(basic.base_url + "/templates-ui/")
            page.wait_for_selector('#template-list button[data-name="solid"]')
            open_template(page, "solid")
            page.click("#run")
            image = page.wait_for_selector("#results img")
            assert page.evaluate("(img) => img.decode().then(() => img.naturalWidth)", image) == 16
            assert page.inner_text("#run-status") == "done"
        finally:
            context.close()
