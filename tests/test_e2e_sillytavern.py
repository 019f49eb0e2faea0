"""SillyTavern's two ComfyUI workflows, end to end on the micro model.

First headless: the fixture files from ``../shared/fixtures/sillytavern`` are filled by
graphengine.templates (tree substitution, and SillyTavern's own text substitution) with the values
SillyTavern really sends — a prompt holding ``$'``, quotes and Unicode, seed 2^53−1, ``cfg`` as an
integer, numbers as strings, the character avatar as raw base64 PNG — and run through the Engine.
Then SillyTavern's HTTP sequence against a real server: ``POST /prompt`` as ``text/plain``, the full
``GET /history`` polled every 100 ms, the lowest-id output's first image fetched with an unencoded
``/view`` query.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e_support import (
    MICRO_NAME,
    SILLYTAVERN_DIR,
    MicroWorld,
    ServedApp,
    b64,
    free_port,
    gradient_png,
    read_png,
)

pytest_plugins = ("tests.e2e_support",)  # the session fixture micro_world

pytestmark = pytest.mark.skipif(not SILLYTAVERN_DIR.is_dir(), reason="../shared/fixtures/sillytavern is absent")

DEFAULT = "Default_Comfy_Workflow.json"
AVATAR = "Char_Avatar_Comfy_Workflow.json"
PROMPT = 'portrait of "Zoë" the café cat 猫 🐱, costs $\' and $& and $$, back\\slash'
NEGATIVE = "blurry, 'low' quality, ümlaut"
MAX_SAFE_INTEGER = 9007199254740991
CHARACTER_CARD = b64(json.dumps({"name": "Zoë", "description": "a cat " * 200}).encode())


def avatar_b64() -> str:
    """A character avatar as SillyTavern sends it: raw base64 of a PNG with a big tEXt chunk."""
    return b64(gradient_png(48, 40, text={"chara": CHARACTER_CARD}))


def fixture_text(name: str) -> str:
    return (SILLYTAVERN_DIR / name).read_text(encoding="utf-8")


def tree_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "model": MICRO_NAME,
        "sampler": "euler",
        "scheduler": "normal",
        "steps": "2",  # a numeric placeholder given as a string (SillyTavern's custom placeholders are)
        "scale": 7,  # cfg as an integer, as SillyTavern's UI stores it
        "width": 64,
        "height": 64,
        "denoise": "0.7",
        "seed": MAX_SAFE_INTEGER,
        "char_avatar": avatar_b64(),
    }
    values.update(overrides)
    return values


def render_tree(name: str, registry: Any, **overrides: Any) -> dict[str, Any]:
    from graphengine.templates import render

    return render(json.loads(fixture_text(name)), tree_values(**overrides), registry)


def sillytavern_settings(**overrides: Any) -> Any:
    from graphengine.templates import SillyTavernSettings

    settings: dict[str, Any] = {
        "prompt": "a \"quoted\" cat — 猫 🐱",
        "negative_prompt": NEGATIVE,
        "seed": MAX_SAFE_INTEGER,
        "model": MICRO_NAME,
        "sampler": "euler",
        "scheduler": "normal",
        "steps": "2",  # stays a JSON string in SillyTavern's text substitution: the server must coerce
        "scale": 7,
        "width": 64,
        "height": 64,
        "char_avatar": avatar_b64(),
    }
    settings.update(overrides)
    return SillyTavernSettings(**settings)


def render_exact(name: str, **overrides: Any) -> str:
    """The workflow text exactly as SillyTavern would substitute it."""
    from graphengine.templates import render_sillytavern

    return render_sillytavern(fixture_text(name), sillytavern_settings(**overrides))


def saved_image(world: MicroWorld, run: Any, node: str = "9") -> tuple[tuple[int, int], bytes, dict[str, str]]:
    assert run.status == "success", run.error
    images = run.outputs[node]["images"]
    assert len(images) == 1 and images[0]["type"] == "output"
    path = world.file_of(images[0])
    assert path.is_file() and path.name.startswith("SillyTavern_") and path.suffix == ".png"
    return read_png(path)


# --- headless ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [DEFAULT, AVATAR])
def test_workflow_filled_by_templates_runs_and_is_seed_deterministic(micro_world: MicroWorld, name: str) -> None:
    engine = micro_world.engine
    prompt = render_tree(name, engine.registry)
    sampler = prompt["3"]["inputs"]
    assert prompt["6"]["inputs"]["text"] == PROMPT  # $', quotes, backslash and Unicode survive intact
    assert prompt["7"]["inputs"]["text"] == NEGATIVE
    assert sampler["seed"] == MAX_SAFE_INTEGER and sampler["steps"] == 2 and sampler["cfg"] == 7

    first = engine.run(prompt)
    size, pixels, text = saved_image(micro_world, first)
    assert size == (64, 64)
    embedded = json.loads(text["prompt"])  # the PNG carries the prompt that made it
    assert embedded["6"]["inputs"]["text"] == PROMPT and embedded["3"]["inputs"]["seed"] == MAX_SAFE_INTEGER

    other_seed = render_tree(name, engine.registry, seed=12345)
    second = engine.run(other_seed)
    assert "3" in second.executed  # the sampler really ran again
    _, other_pixels, _ = saved_image(micro_world, second)
    assert other_pixels != pixels

    again = engine.run(prompt)  # back to the first seed: sampled afresh, not served from cache
    assert "3" in again.executed
    _, same_pixels, _ = saved_image(micro_world, again)
    assert same_pixels == pixels


def test_avatar_workflow_is_image_to_image_from_the_avatar(micro_world: MicroWorld) -> None:
    engine = micro_world.engine
    results = []
    for avatar in (gradient_png(48, 40), gradient_png(40, 48, alpha=True)):
        run = engine.run(render_tree(AVATAR, engine.registry, char_avatar=b64(avatar), seed=7))
        assert run.status == "success", run.error
        assert {"10", "13", "12", "3", "8", "9"} <= set(run.executed)
        size, pixels, _ = saved_image(micro_world, run)
        assert size == (64, 64)  # ImageScale crop=center to %width%×%height%
        results.append(pixels)
    assert results[0] != results[1]  # the avatar feeds the image (denoise 0.7 keeps some of it)


@pytest.mark.parametrize("name", [DEFAULT, AVATAR])
def test_sillytavern_text_substitution_runs_as_is(micro_world: MicroWorld, name: str) -> None:
    """What SillyTavern's own string substitution yields (cfg 7 as an int, steps "2" as a string,
    denoise as its default 0.7) validates and runs unchanged."""
    prompt = json.loads(render_exact(name))
    assert prompt["3"]["inputs"]["cfg"] == 7 and prompt["3"]["inputs"]["steps"] == "2"
    run = micro_world.engine.run(prompt)
    size, _, text = saved_image(micro_world, run)
    assert size == (64, 64)
    assert json.loads(text["prompt"])["3"]["inputs"]["seed"] == MAX_SAFE_INTEGER


def test_custom_placeholder_strings_reach_numeric_inputs(micro_world: MicroWorld) -> None:
    """A user edits the workflow to take ``"denoise": "%my_denoise%"``; SillyTavern's custom
    placeholders are always JSON strings. Both substitutions give a prompt that runs."""
    from graphengine.templates import render, render_sillytavern

    text = fixture_text(DEFAULT).replace('"denoise": 1,', '"denoise": "%my_denoise%",')
    assert '"%my_denoise%"' in text

    exact = json.loads(render_sillytavern(text, sillytavern_settings(custom_placeholders=[("my_denoise", "1.0")])))
    assert exact["3"]["inputs"]["denoise"] == "1.0"  # left to the server to coerce, as stock ComfyUI does
    saved_image(micro_world, micro_world.engine.run(exact))

    typed = render(json.loads(text), tree_values(my_denoise="1.0"), micro_world.engine.registry)
    assert typed["3"]["inputs"]["denoise"] == 1.0  # typed mode converts for the FLOAT input
    saved_image(micro_world, micro_world.engine.run(typed))


# --- SillyTavern's HTTP sequence against a real server --------------------------------------------------


def post_like_sillytavern(client: httpx.Client, workflow_text: str) -> httpx.Response:
    from graphengine.templates.sillytavern import sillytavern_prompt_body

    body = sillytavern_prompt_body(workflow_text).encode("utf-8")
    return client.post("/prompt", content=body, headers={"Content-Type": "text/plain;charset=UTF-8"})


def poll_full_history(client: httpx.Client, prompt_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """SillyTavern's loop: the full ``GET /history`` every 100 ms until the id appears."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/history")
        assert response.status_code == 200
        history = response.json()
        if prompt_id in history:
            return history[prompt_id]
        time.sleep(0.1)
    raise AssertionError(f"prompt {prompt_id} never appeared in /history")


def first_image_as_sillytavern_picks_it(item: dict[str, Any]) -> dict[str, Any]:
    """``Object.values(outputs).map(o => o.images).flat()[0]``: integer-like ids ascending first; an
    output without ``images`` contributes ``undefined``, an empty list nothing."""
    outputs = item["outputs"]
    numeric = sorted((k for k in outputs if k.isdigit()), key=int)
    ordered = [*numeric, *(k for k in outputs if not k.isdigit())]
    images = [image for key in ordered for image in outputs[key].get("images", [None])]
    assert images and images[0] is not None, f"no image on the lowest-id output: {outputs}"
    return images[0]


def test_sillytavern_http_sequence(micro_world: MicroWorld) -> None:
    with ServedApp(micro_world) as server, httpx.Client(base_url=server.base, timeout=30) as client:
        # connect: ping, then the lists SillyTavern reads from /object_info
        assert client.get("/system_stats").status_code == 200
        info = client.get("/object_info").json()
        models = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
        samplers = info["KSampler"]["input"]["required"]["sampler_name"][0]
        assert MICRO_NAME in models and "euler" in samplers
        assert isinstance(info["UNETLoader"]["input"]["required"]["unet_name"][0], list)

        for name in (DEFAULT, AVATAR):
            response = post_like_sillytavern(client, render_exact(name))
            assert response.status_code == 200, response.text
            reply = response.json()
            assert isinstance(reply["prompt_id"], str) and "number" in reply and reply["node_errors"] == {}

            item = poll_full_history(client, reply["prompt_id"])
            assert item["status"]["status_str"] == "success" and item["status"]["completed"] is True
            assert len(item["prompt"]) == 5 and item["prompt"][1] == reply["prompt_id"]
            image = first_image_as_sillytavern_picks_it(item)
            query = f"filename={image['filename']}&subfolder={image['subfolder']}&type={image['type']}"
            view = client.get("/view?" + query)  # built unencoded, as SillyTavern does
            assert view.status_code == 200 and view.headers["content-type"].startswith("image/png")
            size, _, text = read_png(view.content)
            assert size == (64, 64) and "prompt" in text


def test_sillytavern_garbled_and_failing_prompts_then_recovery(micro_world: MicroWorld) -> None:
    with ServedApp(micro_world) as server, httpx.Client(base_url=server.base, timeout=30) as client:
        # SillyTavern's replaceAll expands $' in the prompt: the body it forwards is not JSON
        garbled = render_exact(DEFAULT, prompt="it costs $' today")
        with pytest.raises(json.JSONDecodeError):
            json.loads(garbled)
        response = post_like_sillytavern(client, garbled)
        assert response.status_code == 400
        assert "error" in response.json()

        # a fresh SillyTavern profile: JSON.stringify(undefined) leaves the bare word in the text
        from graphengine.templates.sillytavern import UNDEFINED

        response = post_like_sillytavern(client, render_exact(DEFAULT, model=UNDEFINED))
        assert response.status_code == 400 and "error" in response.json()
        # an empty model setting: a validation error listing the checkpoints there are
        response = post_like_sillytavern(client, render_exact(DEFAULT, model=""))
        assert response.status_code == 400
        assert MICRO_NAME in json.dumps(response.json()["node_errors"]["4"])

        # an avatar that is not an image: queued (a STRING input), then fails where SillyTavern looks
        broken = render_exact(AVATAR, char_avatar=b64(b"this is not an image at all"))
        response = post_like_sillytavern(client, broken)
        assert response.status_code == 200, response.text
        item = poll_full_history(client, response.json()["prompt_id"])
        assert item["status"]["status_str"] == "error"
        errors = [data for kind, data in item["status"]["messages"] if kind == "execution_error"]
        assert errors and errors[0]["node_id"] == "10" and errors[0]["node_type"] == "ETN_LoadImageBase64"
        assert "not an image" in errors[0]["exception_message"] and errors[0]["exception_type"]

        # the server stays healthy: the next prompt succeeds
        response = post_like_sillytavern(client, render_exact(DEFAULT, seed=99))
        assert response.status_code == 200
        item = poll_full_history(client, response.json()["prompt_id"])
        assert item["status"]["status_str"] == "success"


def test_sillytavern_abort_interrupts_the_running_sampler(micro_world: MicroWorld) -> None:
    """The browser aborts: SillyTavern posts /interrupt (no body, ``Basic dW5kZWZpbmVk``); the
    sampler stops within a step, history says so, and the next prompt runs."""
    with ServedApp(micro_world) as server, httpx.Client(base_url=server.base, timeout=30) as client:
        response = post_like_sillytavern(client, render_exact(DEFAULT, steps=2000, seed=31))
        assert response.status_code == 200
        prompt_id = response.json()["prompt_id"]
        deadline = time.monotonic() + 30
        while not any(entry[1] == prompt_id for entry in client.get("/queue").json()["queue_running"]):
            assert time.monotonic() < deadline, "the prompt never started"
            time.sleep(0.02)
        started = time.monotonic()
        interrupt = client.post("/interrupt", headers={"Authorization": "Basic dW5kZWZpbmVk"})
        assert interrupt.status_code == 200
        item = poll_full_history(client, prompt_id)
        assert time.monotonic() - started < 15  # 2000 steps would take minutes
        assert item["status"]["status_str"] == "error"
        kinds = [kind for kind, _ in item["status"]["messages"]]
        assert "execution_interrupted" in kinds and "execution_success" not in kinds

        response = post_like_sillytavern(client, render_exact(DEFAULT, seed=32))
        item = poll_full_history(client, response.json()["prompt_id"])
        assert item["status"]["status_str"] == "success"


@pytest.mark.slow
def test_sillytavern_against_graphengine_serve_process(micro_world: MicroWorld, tmp_path: Path) -> None:
    """The server as users start it (``graphengine serve --data-dir --models-dir``): it answers fast,
    lists the micro checkpoint, and runs SillyTavern's avatar workflow end to end."""
    port = free_port()
    script = Path(sys.executable).with_name("graphengine")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "graphengine.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
             "--models-dir", str(micro_world.models_dir)],
            cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log.read_text(errors="replace")[-2000:]
                try:
                    if client.get("/system_stats").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "graphengine serve did not come up"
                time.sleep(0.05)
            info = client.get("/object_info/CheckpointLoaderSimple").json()
            assert MICRO_NAME in info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]

            response = post_like_sillytavern(client, render_exact(AVATAR, seed=5))
            assert response.status_code == 200, response.text
            item = poll_full_history(client, response.json()["prompt_id"])
            assert item["status"]["status_str"] == "success"
            image = first_image_as_sillytavern_picks_it(item)
            view = client.get(f"/view?filename={image['filename']}&subfolder={image['subfolder']}&type={image['type']}")
            assert view.status_code == 200 and read_png(view.content)[0] == (64, 64)
            assert (tmp_path / "data" / "output" / image["subfolder"] / image["filename"]).is_file()
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
