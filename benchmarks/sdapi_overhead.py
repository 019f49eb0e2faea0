"""What the A1111 façade costs: ``POST /sdapi/v1/txt2img`` against the equivalent ``POST /prompt`` graph.

Both run on one real server (uvicorn on a loopback port) with the random-weight ``micro`` model. The
``/prompt`` client does what a ComfyUI client must to get the same answer: submit the very graph
the façade builds, poll ``/history/{id}`` until it is done, fetch the PNG with ``/view`` and base64 it.
Each request uses a fresh seed (same seeds on both sides) so nothing is served from the cache.
Target: façade overhead (translation + response) ≤ 5 % of the generation time. Overhead is the
request's wall time minus the time its queued graph spent executing (execution_start →
execution_success in its history entry): parsing, planning, queueing, reading the PNG back, base64
and JSON. The ``/prompt`` client (polling every 20 ms) is printed for comparison.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sdapi_overhead.py [--runs 10] [--steps 20] [--size 64]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PACKS = (
    "nodes.utility", "nodes.loaders", "nodes.image", "nodes.image_base64", "nodes.latent", "nodes.output",
    "nodes.conditioning", "nodes.vae", "nodes.sampling",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(root: Path) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    from graphengine.http.app import create_app
    from graphengine.http.config import ServerConfig

    port = free_port()
    config = ServerConfig(data_dir=root / "data", models_dir=root / "models", node_packs=PACKS, port=port)
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}"


def body(seed: int, steps: int, size: int) -> dict[str, Any]:
    return {
        "prompt": "a lighthouse on a cliff, oil painting",
        "negative_prompt": "blurry",
        "seed": seed,
        "steps": steps,
        "cfg_scale": 7,
        "width": size,
        "height": size,
        "sampler_name": "Euler",
        "scheduler": "normal",
    }


def execution_seconds(entry: dict[str, Any]) -> float:
    """execution_start → execution_success of a history entry (the generation itself)."""
    stamps = {kind: data.get("timestamp") for kind, data in entry["status"]["messages"]}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000


def via_sdapi(client: Any, seed: int, steps: int, size: int) -> tuple[float, float]:
    """(wall seconds of the request, seconds the queued graph took to execute)."""
    started = time.perf_counter()
    response = client.post("/sdapi/v1/txt2img", json=body(seed, steps, size))
    response.raise_for_status()
    assert response.json()["images"]
    wall = time.perf_counter() - started
    history = client.get("/history", params={"max_items": 1}).json()
    return wall, execution_seconds(next(iter(history.values())))


def equivalent_graph(seed: int, steps: int, size: int) -> dict[str, Any]:
    """The graph the façade queues for this body, built outside the timed region."""
    from graphengine.a1111.catalog import HashCache, ModelCatalog
    from graphengine.a1111.graph import build_iteration
    from graphengine.a1111.names import NameResolver
    from graphengine.a1111.options import OptionsStore
    from graphengine.a1111.plan import PlanContext, plan_generation
    from graphengine.a1111.requests import Txt2ImgRequest
    from graphengine.environment import Limits

    class Listing:
        def list(self, kind: str) -> list[str]:
            return ["micro.safetensors"] if kind == "checkpoints" else []

        def resolve(self, kind: str, name: str) -> Path:
            return Path(os.devnull)

    with tempfile.TemporaryDirectory() as scratch:
        ctx = PlanContext(NameResolver(), ModelCatalog(Listing(), HashCache(Path(scratch) / "h.json")), OptionsStore(Path(scratch)), Limits())
        plan = plan_generation(Txt2ImgRequest.model_validate(body(seed, steps, size)), ctx)
    return build_iteration(plan, 0).prompt


def translation_cost(steps: int, size: int, repeats: int = 200) -> float:
    """Seconds per request spent in the façade's own code: parse, plan, build the graph, write info."""
    from graphengine.a1111.catalog import HashCache, ModelCatalog
    from graphengine.a1111.graph import build_iteration
    from graphengine.a1111.infotext import info_json
    from graphengine.a1111.names import NameResolver
    from graphengine.a1111.options import OptionsStore
    from graphengine.a1111.plan import PlanContext, plan_generation
    from graphengine.a1111.requests import Txt2ImgRequest
    from graphengine.environment import Limits
    from graphengine.models.library import ModelLibrary

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "models" / "checkpoints").mkdir(parents=True)
        (root / "models" / "checkpoints" / "micro.safetensors").write_bytes(b"0" * 1024)
        catalog = ModelCatalog(ModelLibrary(root / "models"), HashCache(root / "h.json"))
        ctx = PlanContext(NameResolver(), catalog, OptionsStore(root), Limits())
        started = time.perf_counter()
        for index in range(repeats):
            req = Txt2ImgRequest.model_validate(body(index, steps, size))
            plan = plan_generation(req, ctx)
            build_iteration(plan, 0)
            info_json(plan, plan.seeds, plan.subseeds)
            req.echo()
        return (time.perf_counter() - started) / repeats


def via_prompt(client: Any, seed: int, steps: int, size: int) -> float:
    graph = equivalent_graph(seed, steps, size)
    started = time.perf_counter()
    prompt_id = client.post("/prompt", json={"prompt": graph}).json()["prompt_id"]
    while True:
        history = client.get(f"/history/{prompt_id}").json()
        if history:
            break
        time.sleep(0.02)
    outputs = history[prompt_id]["outputs"]
    image = next(iter(outputs.values()))["images"][0]
    png = client.get("/view", params=image).content
    assert base64.b64encode(png)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    import httpx
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from graphengine.models.checkpoint_maker import make_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_checkpoint(root / "models" / "checkpoints" / "micro.safetensors", "micro", seed=1, dtype="fp32")
        server, thread, base = start_server(root)
        try:
            with httpx.Client(base_url=base, timeout=600) as client:
                via_sdapi(client, 1, args.steps, args.size)  # warm-up: imports, model load
                via_prompt(client, 2, args.steps, args.size)
                sdapi, executing, prompt = [], [], []
                for run in range(args.runs):  # interleaved, so drift hits both sides alike
                    seed = 1000 + run
                    wall, execution = via_sdapi(client, seed, args.steps, args.size)
                    sdapi.append(wall)
                    executing.append(execution)
                    prompt.append(via_prompt(client, seed + 500_000, args.steps, args.size))
        finally:
            server.should_exit = True
            thread.join(30)

    translation = translation_cost(args.steps, args.size)
    med_sdapi, med_prompt = statistics.median(sdapi), statistics.median(prompt)
    overheads = [wall - execution for wall, execution in zip(sdapi, executing)]
    med_exec, med_over = statistics.median(executing), statistics.median(overheads)
    overhead = med_over / med_exec
    result = {
        "benchmark": "sdapi_overhead",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu(s), {platform.system()}, threads={os.environ['OMP_NUM_THREADS']}",
        "model": "micro (random weights)",
        "steps": args.steps,
        "size": args.size,
        "runs": args.runs,
        "sdapi_median_s": round(med_sdapi, 4),
        "sdapi_execution_median_s": round(med_exec, 4),
        "prompt_median_s": round(med_prompt, 4),
        "overhead_s": round(med_over, 4),
        "overhead_pct": round(overhead * 100, 2),
        "sdapi_minus_prompt_s": round(med_sdapi - med_prompt, 4),
        "translation_ms": round(translation * 1000, 3),
        "translation_pct": round(translation / med_prompt * 100, 3),
        "target_pct": 5.0,
        "pass": overhead <= 0.05,
    }
    print(f"{'path':<34}{'median s':>10}{'min s':>10}{'max s':>10}")
    print(f"{'/sdapi/v1/txt2img (wall)':<34}{med_sdapi:>10.3f}{min(sdapi):>10.3f}{max(sdapi):>10.3f}")
    print(f"{'  of which the graph executing':<34}{med_exec:>10.3f}{min(executing):>10.3f}{max(executing):>10.3f}")
    print(f"{'/prompt + poll /history + /view':<34}{med_prompt:>10.3f}{min(prompt):>10.3f}{max(prompt):>10.3f}")
    print(f"façade overhead (wall − execution): {med_over * 1000:.1f} ms = {result['overhead_pct']:.2f}% of generation "
          f"(target ≤ 5%); /sdapi − /prompt client: {result['sdapi_minus_prompt_s'] * 1000:+.1f} ms")
    print(f"façade code per request (parse+plan+graph+info): {result['translation_ms']:.2f} ms = "
          f"{result['translation_pct']:.2f}% of a /prompt generation")
    out = REPO / "benchmarks" / "results" / "sdapi_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
