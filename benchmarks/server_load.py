"""Server load: start-up time, enqueue throughput, POST /prompt latency at depth, GET /queue and
GET /history at depth, and websocket event lag with many clients.

Runs real ``graphengine serve`` processes on loopback ports (the hidden ``--node-packs`` option loads
the small test pack, whose ``ServerText`` node gives a cheap valid prompt and a controllable blocker).

    OMP_NUM_THREADS=1 python benchmarks/server_load.py [--depth 10000] [--clients 200]

Prints a table and writes JSON to benchmarks/results/server_load.json.
Targets: enqueue ≥ 300 prompts/s; POST /prompt p99 ≤ 50 ms with 10,000 queued; event lag p99 ≤
250 ms for 200 websocket clients; process start to accepting requests ≤ 2 s (no torch at start).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import websockets  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data: Path, port: int, packs: str | None) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "graphengine.cli", "serve", "--port", str(port), "--data-dir", str(data),
               "--models-dir", str(data.parent / "models"), "--max-history", "100000"]
    if packs:
        command += ["--node-packs", packs]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        while True:
            try:
                if client.get("/prompt").status_code == 200:
                    return process, time.perf_counter() - started
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise RuntimeError("server exited during start-up")
            time.sleep(0.005)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def small_prompt(n: int) -> dict[str, Any]:
    return {"1": {"class_type": "ServerText", "inputs": {"text": f"item {n}", "steps": 0, "delay": 0.0}}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (load-independent, unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_startup(root: Path, repeat: int) -> dict[str, Any]:
    times, cpu = [], []
    for i in range(repeat):
        process, seconds = start_server(root / f"start{i}", free_port(), None)  # the built-in packs
        try:
            cpu.append(cpu_seconds(process.pid))
        except OSError:
            pass
        stop(process)
        times.append(seconds)
    check = subprocess.run(
        [sys.executable, "-c",
         "import sys; from graphengine.http.app import create_app; from graphengine.http.config import ServerConfig;"
         f"create_app(ServerConfig(data_dir={str(root / 'torchcheck')!r})); print('torch' in sys.modules)"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return {"start_to_accepting_s_median": statistics.median(times), "start_runs_s": times,
            "start_cpu_s_median": statistics.median(cpu) if cpu else None,
            "load_average_1min": os.getloadavg()[0],
            "torch_imported_at_start": check.stdout.strip() == "True"}


def enqueue(port: int, count: int, threads: int) -> tuple[float, list[float]]:
    """POST ``count`` small prompts from ``threads`` keep-alive connections (a light stdlib client, so
    the client's own CPU use on this shared machine stays small)."""
    import http.client
    import threading

    latencies: list[float] = []
    per_thread = count // threads

    def work(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for n in range(offset, offset + per_thread):
            body = json.dumps({"prompt": small_prompt(n)})
            t = time.perf_counter()
            connection.request("POST", "/prompt", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - t)
            assert response.status == 200
        connection.close()

    workers = [threading.Thread(target=work, args=(k * per_thread,)) for k in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started, latencies


def timed_gets(client: httpx.Client, path: str, repeat: int) -> dict[str, float]:
    times, size = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - t)
        size = len(response.content)
    return {"p50_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000, "bytes": size}


def measure_depth(root: Path, depth: int) -> dict[str, Any]:
    port = free_port()
    process, _ = start_server(root / "depth", port, "tests.server_nodes")
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"depth": depth}
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            blocker = {"1": {"class_type": "ServerText", "inputs": {"text": "block", "steps": 10000, "delay": 0.05}}}
            client.post("/prompt", json={"prompt": blocker})
            elapsed, _ = enqueue(port, depth, threads=8)
            result["enqueue_per_s"] = depth / elapsed
            _, latencies = enqueue(port, 300, threads=1)  # sequential posts with `depth` already queued
            result["post_prompt_at_depth_p50_ms"] = statistics.median(latencies) * 1000
            result["post_prompt_at_depth_p99_ms"] = percentile(latencies, 99) * 1000
            result["get_queue_at_depth"] = timed_gets(client, "/queue", 10)
            result["get_prompt_at_depth"] = timed_gets(client, "/prompt", 50)
            client.post("/interrupt")
            started = time.perf_counter()
            total = depth + 300
            while client.get("/prompt").json()["exec_info"]["queue_remaining"] > 0:
                time.sleep(0.25)
            result["drain_prompts_per_s"] = total / (time.perf_counter() - started)
            result["history_entries"] = total + 1
            result["get_history_full"] = timed_gets(client, "/history", 10)
            result["get_history_max_items_100"] = timed_gets(client, "/history?max_items=100", 20)
            some_id = next(iter(client.get("/history?max_items=1").json()))
            result["get_history_one"] = timed_gets(client, f"/history/{some_id}", 50)
    finally:
        stop(process)
    return result


async def event_lag(base: str, ws_base: str, clients: int, prompts_per_client: int) -> dict[str, Any]:
    lags: list[float] = []
    fanout: dict[int, list[float]] = {}
    sockets = []
    for i in range(clients):
        sockets.append(await websockets.connect(f"{ws_base}/ws?clientId=c{i}", max_size=None, open_timeout=30))
    for ws in sockets:
        await ws.recv()
    done = asyncio.Event()
    remaining = {"n": clients * prompts_per_client}

    async def reader(ws: Any) -> None:
        while True:
            try:
                frame = await ws.recv()
            except websockets.ConnectionClosed:
                return
            now_ms = time.time() * 1000
            message = json.loads(frame)
            kind, data = message["type"], message["data"]
            if kind in ("execution_start", "execution_success"):
                lags.append(now_ms - data["timestamp"])
            elif kind == "progress" and data.get("node") == "b":
                fanout.setdefault(data["value"], []).append(now_ms)
            elif kind == "executing" and data.get("node") is None and data.get("prompt_id", "").startswith("lag-"):
                remaining["n"] -= 1
                if remaining["n"] == 0:
                    done.set()

    tasks = [asyncio.create_task(reader(ws)) for ws in sockets]
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        broadcast = {"b": {"class_type": "ServerText", "inputs": {"text": "fan-out", "steps": 200, "delay": 0.005}}}
        await client.post("/prompt", json={"prompt": broadcast})  # no client_id: progress goes to everyone
        for round_ in range(prompts_per_client):
            for i in range(clients):
                prompt = {"1": {"class_type": "ServerText",
                                "inputs": {"text": f"lag {round_} {i}", "steps": 5, "delay": 0.0}}}
                await client.post("/prompt", json={"prompt": prompt, "client_id": f"c{i}",
                                                   "prompt_id": f"lag-{round_}-{i}"})
        await asyncio.wait_for(done.wait(), 300)
    for ws in sockets:
        await ws.close()
    for task in tasks:
        task.cancel()
    skews = [t - min(times) for times in fanout.values() for t in times]
    return {
        "clients": clients,
        "event_lag_p50_ms": statistics.median(lags),
        "event_lag_p99_ms": percentile(lags, 99),
        "event_lag_max_ms": max(lags),
        "lag_samples": len(lags),
        "broadcast_fanout_skew_p99_ms": percentile(skews, 99) if skews else None,
        "broadcast_messages_received": sum(len(v) for v in fanout.values()),
    }


def measure_lag(root: Path, clients: int) -> dict[str, Any]:
    port = free_port()
    process, _ = start_server(root / "lag", port, "tests.server_nodes")
    try:
        return asyncio.run(event_lag(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", clients, 2))
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--start-repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results: dict[str, Any] = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
            "command": " ".join(["python", "benchmarks/server_load.py", *sys.argv[1:]]),
        }
        results["startup"] = measure_startup(root, args.start_repeat)
        results["depth"] = measure_depth(root, args.depth)
        results["websocket"] = measure_lag(root, args.clients)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "server_load.json").write_text(json.dumps(results, indent=2))
    s, d, w = results["startup"], results["depth"], results["websocket"]
    rows = [
        ("process start → accepting (median)", f"{s['start_to_accepting_s_median']:.2f} s", "≤ 2 s"),
        ("  … CPU time used until accepting (median)", f"{s['start_cpu_s_median']:.2f} s", ""),
        ("  … machine load average (1 min)", f"{s['load_average_1min']:.1f}", ""),
        ("torch imported at start", str(s["torch_imported_at_start"]), "False"),
        ("enqueue throughput (8 connections)", f"{d['enqueue_per_s']:.0f} prompts/s", "≥ 300/s"),
        (f"POST /prompt p50 / p99 at depth {d['depth']}",
         f"{d['post_prompt_at_depth_p50_ms']:.1f} / {d['post_prompt_at_depth_p99_ms']:.1f} ms", "p99 ≤ 50 ms"),
        (f"GET /queue at depth {d['depth']} (p50, size)",
         f"{d['get_queue_at_depth']['p50_ms']:.0f} ms, {d['get_queue_at_depth']['bytes'] / 1e6:.1f} MB", ""),
        ("GET /prompt at depth (p50)", f"{d['get_prompt_at_depth']['p50_ms']:.1f} ms", ""),
        ("drain (execute trivial prompts)", f"{d['drain_prompts_per_s']:.0f} prompts/s", ""),
        (f"GET /history, {d['history_entries']} entries (p50, size)",
         f"{d['get_history_full']['p50_ms']:.0f} ms, {d['get_history_full']['bytes'] / 1e6:.1f} MB", ""),
        ("GET /history?max_items=100 (p50)", f"{d['get_history_max_items_100']['p50_ms']:.1f} ms", ""),
        ("GET /history/{id} (p50)", f"{d['get_history_one']['p50_ms']:.1f} ms", ""),
        (f"event lag p50 / p99, {w['clients']} ws clients",
         f"{w['event_lag_p50_ms']:.0f} / {w['event_lag_p99_ms']:.0f} ms", "p99 ≤ 250 ms"),
        ("broadcast fan-out skew p99", f"{w['broadcast_fanout_skew_p99_ms']:.0f} ms", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"server_load — {results['machine']} — {results['date']}")
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value:>22}  {target}")


if __name__ == "__main__":
    main()
