"""`graphengine serve` as a real process: start-up, kill -9 and restart with the queue and history
intact, environment-configured auth, refusal of an unauthenticated public bind, no torch at start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.http_harness import REPO, free_port, text_prompt

PACKS = "tests.server_nodes,nodes.image,nodes.output"  # importing packs must not import torch
TOKEN = "proc-token-8c1d2e"


def _start(data: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    environment.pop("GRAPHENGINE_AUTH", None) if env is None else None
    return subprocess.Popen(
        [sys.executable, "-m", "graphengine.cli", "--log-level", "INFO", "serve", "--port", str(port),
         "--data-dir", str(data), "--models-dir", str(data.parent / "models"), "--node-packs", PACKS, *extra],
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def _wait_ready(client: httpx.Client, process: subprocess.Popen, timeout: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(process.stdout.read().decode(errors="replace"))
        try:
            if client.get("/prompt").status_code in (200, 401):
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise TimeoutError("server did not start")


def _wait_history(client: httpx.Client, prompt_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/history/{prompt_id}").json()
        if body:
            return body[prompt_id]
        time.sleep(0.05)
    raise TimeoutError(prompt_id)


@pytest.mark.slow
def test_kill_9_restart_keeps_queue_order_history_and_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    first = _start(data, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_ready(client, first)
            saved = client.post("/prompt", json={"prompt": {
                "2": {"class_type": "ServerSaveText", "inputs": {"text": "kept", "filename_prefix": "kill/t"}},
            }}).json()["prompt_id"]
            saved_entry = _wait_history(client, saved)
            image = saved_entry["outputs"]["2"]["images"][0]
            assert (data / "output" / image["subfolder"] / image["filename"]).read_text() == "kept"

            slow = client.post("/prompt", json={"prompt": text_prompt("slow", steps=100, delay=0.01)}).json()
            pending = [client.post("/prompt", json={"prompt": text_prompt(f"p{n}"), **extra}).json()
                       for n, extra in enumerate([{}, {"front": True}, {"number": 1.5}, {}])]
            deadline = time.monotonic() + 10
            while not client.get("/queue").json()["queue_running"]:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            before = client.get("/queue").json()
            assert before["queue_running"][0][1] == slow["prompt_id"]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)

    (data / "temp" / "left-over.png").write_bytes(b"x")
    second = _start(data, port, env={"GRAPHENGINE_AUTH": "bearer", "GRAPHENGINE_AUTH_TOKEN": TOKEN})
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as client:
            _wait_ready(client, second)
            assert httpx.get(f"http://127.0.0.1:{port}/queue").status_code == 401  # env-configured auth is on
            assert not (data / "temp" / "left-over.png").exists()  # temp is cleared on start
            after = client.get("/queue").json()
            history = client.get("/history").json()
            queued = [item[1] for item in after["queue_running"] + after["queue_pending"]]
            expected = sorted([slow, *pending], key=lambda answer: answer["number"])
            for answer in expected:  # nothing lost: each prompt is queued or already finished again
                assert answer["prompt_id"] in queued or answer["prompt_id"] in history
            assert saved in client.get("/history").json()  # history survived the kill
            view = client.get("/view", params={"filename": image["filename"], "subfolder": image["subfolder"]})
            assert view.status_code == 200 and view.content == b"kept"
            for answer in expected:
                entry = _wait_history(client, answer["prompt_id"])
                assert entry["status"]["status_str"] == "success", entry["status"]
            assert client.get("/queue").json() == {"queue_running": [], "queue_pending": []}
            finished_order = [pid for pid in client.get("/history").json() if pid != saved]
            assert finished_order == [answer["prompt_id"] for answer in expected]  # same priority order
    finally:
        second.send_signal(signal.SIGTERM)
        output = second.communicate(timeout=15)[0].decode(errors="replace")
    assert TOKEN not in output  # credentials never reach a log line


def test_public_bind_without_auth_refuses_to_start(tmp_path: Path) -> None:
    process = _start(tmp_path / "data", free_port(), "--host", "0.0.0.0")
    output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 2 and "--auth" in output
    secret = "cli-secret-123"
    bad = _start(tmp_path / "data", free_port(), "--host", "0.0.0.0", "--auth", "basic", "--auth-password", secret)
    output = bad.communicate(timeout=20)[0].decode()
    assert bad.returncode == 2 and "user" in output and secret not in output


def test_serving_with_builtin_packs_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from graphengine.http.app import create_app\n"
        "from graphengine.http.config import ServerConfig\n"
        f"app = create_app(ServerConfig(data_dir={str(tmp_path / 'data')!r}))\n"
        "print(len(app.state.services.engine.registry), 'torch' in sys.modules, time.perf_counter() - t)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    nodes, torch_loaded, seconds = result.stdout.split()
    assert int(nodes) > 10
    assert torch_loaded == "False", "building the server imported torch"
    assert float(seconds) < 5
