"""Engine overhead: validation and execution cost per node, on utility-node graphs.

Shapes (100 … 10,000 nodes): a chain, layered graphs with fan-in 2, and a forest of small trees.
For each: validate, cold run (fresh engine), unchanged re-run and a re-run with one literal changed
(a node in the middle of the graph). Re-runs include validation; runs go through ``Engine.execute``
with an event sink that receives every event (the work a server does per node is not included).

    OMP_NUM_THREADS=1 python benchmarks/engine_overhead.py [--sizes 100 1000 10000] [--repeat 5]

Prints a table and writes JSON to benchmarks/results/engine_overhead.json.
Targets: cold ≤ 20 µs/node on a 1,000-node chain; unchanged 1,000-node re-run ≤ 5 ms; linear
growth to 10,000 nodes; validation ≤ 3 µs/node.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graphengine.engine import Engine, build_environment  # noqa: E402
from nodes.utility import pack  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class CountingSink:
    def __init__(self) -> None:
        self.count = 0

    def emit(self, event: Any) -> None:
        self.count += 1


def chain(n: int) -> tuple[dict[str, Any], str]:
    prompt: dict[str, Any] = {"0": {"class_type": "PrimitiveString", "inputs": {"value": "graph engine"}}}
    for i in range(1, n - 1):
        prompt[str(i)] = {"class_type": "StringReplace", "inputs": {"string": [str(i - 1), 0], "find": "q", "replace": "r"}}
    prompt[str(n - 1)] = {"class_type": "PreviewAny", "inputs": {"source": [str(n - 2), 0]}}
    return prompt, str(n // 2)


def layered(n: int, width: int = 10) -> tuple[dict[str, Any], str]:
    prompt: dict[str, Any] = {}
    previous = []
    for i in range(width):
        node_id = f"0.{i}"
        prompt[node_id] = {"class_type": "PrimitiveString", "inputs": {"value": f"s{i}"}}
        previous.append(node_id)
    layer = 1
    while len(prompt) + width + 1 <= n:
        current = []
        for i in range(width):
            node_id = f"{layer}.{i}"
            prompt[node_id] = {
                "class_type": "StringReplace",
                "inputs": {"string": [previous[i], 0], "find": [previous[(i + 1) % width], 0], "replace": "r"},
            }
            current.append(node_id)
        previous = current
        layer += 1
    for i, node_id in enumerate(previous):
        if len(prompt) >= n:
            break
        prompt[f"out{i}"] = {"class_type": "PreviewAny", "inputs": {"source": [node_id, 0]}}
    return prompt, f"{layer // 2}.0"


def forest(n: int) -> tuple[dict[str, Any], str]:
    prompt: dict[str, Any] = {}
    trees = n // 3
    for t in range(trees):
        prompt[f"{t}.s"] = {"class_type": "PrimitiveString", "inputs": {"value": f"tree {t}"}}
        prompt[f"{t}.r"] = {"class_type": "StringReplace", "inputs": {"string": [f"{t}.s", 0], "find": "t", "replace": "T"}}
        prompt[f"{t}.o"] = {"class_type": "PreviewAny", "inputs": {"source": [f"{t}.r", 0]}}
    return prompt, f"{trees // 2}.r"


SHAPES = {"chain": chain, "layered": layered, "forest": forest}


def change_literal(prompt: dict[str, Any], node_id: str, round_: int) -> None:
    inputs = prompt[node_id]["inputs"]
    key = "replace" if "replace" in inputs else "value"
    inputs[key] = f"changed {round_}"


class Clock:
    """Wall time and this process's CPU time (the CPU column is steadier on a shared machine)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        result = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return result


def measure(shape: str, n: int, repeat: int, data_dir: Path) -> dict[str, Any]:
    env = build_environment(data_dir, data_dir / "models", models=None)
    packs = [pack()]
    samples: dict[str, list[tuple[float, float]]] = {"validate": [], "cold": [], "unchanged": [], "changed": []}
    changed_nodes = 0
    nodes = 0
    for r in range(repeat):
        prompt, middle = SHAPES[shape](n)
        nodes = len(prompt)
        engine = Engine(packs=packs, env=env)
        sink = CountingSink()
        gc.collect()
        clock = Clock()
        validated = engine.validate(prompt)
        validate = clock.lap()
        run = engine.execute(validated, prompt_id=f"cold{r}", sink=sink)
        execute = clock.lap()
        assert run.ok and len(run.executed) == nodes, (run.status, len(run.executed), nodes)
        samples["validate"].append(validate)
        samples["cold"].append((validate[0] + execute[0], validate[1] + execute[1]))

        clock = Clock()
        run = engine.execute(engine.validate(prompt), prompt_id=f"same{r}", sink=sink)
        samples["unchanged"].append(clock.lap())
        assert run.ok and not run.executed

        change_literal(prompt, middle, r)
        clock = Clock()
        run = engine.execute(engine.validate(prompt), prompt_id=f"changed{r}", sink=sink)
        samples["changed"].append(clock.lap())
        assert run.ok and run.executed
        changed_nodes = len(run.executed)
        engine.close()
    row: dict[str, Any] = {"shape": shape, "nodes": nodes, "changed_nodes_rerun": changed_nodes, "repeat": repeat}
    for phase, values in samples.items():
        wall = min(v[0] for v in values)
        cpu = min(v[1] for v in values)
        row[f"{phase}_ms"] = wall * 1e3
        row[f"{phase}_cpu_ms"] = cpu * 1e3
        row[f"{phase}_us_per_node"] = wall * 1e6 / nodes
        row[f"{phase}_cpu_us_per_node"] = cpu * 1e6 / nodes
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    print("wall / CPU time (best of the repeats); cold and re-runs include validation")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            for n in args.sizes:
                rows.append(measure(shape, n, args.repeat if n <= 1000 else max(2, args.repeat // 2), Path(tmp)))
                row = rows[-1]
                print(
                    f"{row['shape']:8} {row['nodes']:>6} | "
                    f"validate {row['validate_us_per_node']:5.2f} / {row['validate_cpu_us_per_node']:5.2f} µs/node | "
                    f"cold {row['cold_us_per_node']:6.2f} / {row['cold_cpu_us_per_node']:6.2f} µs/node | "
                    f"unchanged {row['unchanged_ms']:7.2f} / {row['unchanged_cpu_ms']:7.2f} ms | "
                    f"one literal changed {row['changed_ms']:7.2f} / {row['changed_cpu_ms']:7.2f} ms "
                    f"({row['changed_nodes_rerun']} re-run)",
                    flush=True,
                )
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "engine_overhead",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "command": " ".join(["python", *sys.argv]),
        "rows": rows,
    }
    out = RESULTS / "engine_overhead.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
