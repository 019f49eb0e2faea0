"""CPU pipeline benchmark: graphengine's Engine beside plain diffusers, same `small` checkpoint file.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pipeline_cpu.py [--threads 1] [--steps 20] [--size 64]

Text to image at 64×64, 20 steps (euler, CFG 8), fp32, threads pinned. Scenarios:

* **cold** — a fresh process (torch and the diffusers/transformers model classes already imported,
  their import time reported separately): load the checkpoint and make the first image;
* **seed-only re-run** — the same workflow with a new seed: graphengine re-uses the loaded model and
  the cached text encodings and re-runs sampling, decode and save; diffusers runs its whole pipeline;
* **identical re-run** — the same workflow again: graphengine answers from its output cache;
* **full re-run, cache off** — graphengine with ``cache="none"`` (models stay loaded): every node runs,
  i.e. the engine's own overhead on top of the same diffusers/transformers modules.

Each warm scenario is repeated (``--repeats``) with graphengine and diffusers interleaved; the table
shows medians. In the warm process each diffusers load and call runs on a fresh thread, as
``Engine.run`` runs each prompt, so that neither side leaves an OpenMP team behind that slows the
other (``pipeline_common.on_fresh_thread``). Results go to ``benchmarks/results/pipeline_cpu.json``. The checkpoint is made once
with ``graphengine make-checkpoint --arch small`` semantics (seeded random weights) if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline_common as common  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=common.DEFAULT_MODELS_DIR)
    parser.add_argument("--checkpoint", default="small.safetensors", help="name in MODELS_DIR/checkpoints")
    parser.add_argument("--arch", default="small", help="arch to make the checkpoint with when it is missing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold-repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=common.RESULTS / "pipeline_cpu.json")
    parser.add_argument("--worker", choices=("graphengine", "diffusers"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- cold: one fresh process per measurement ----------------------------------------------------------


def cold_worker(args: argparse.Namespace) -> None:
    """Runs in a child process: import the libraries, then time load + first image; print JSON."""
    start = time.perf_counter()
    common.quiet_libraries()
    common.pin_threads(args.threads)
    # The same library modules for both sides (diffusers' model modules import slowly and lazily);
    # their import time is reported apart from the cold time.
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel  # noqa: F401
    from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401

    imported = time.perf_counter()
    checkpoint = args.models_dir / "checkpoints" / args.checkpoint
    with tempfile.TemporaryDirectory() as scratch:
        if args.worker == "graphengine":
            engine = common.make_engine(Path(scratch) / "data", args.models_dir)
            common.run_engine(engine, common.workflow(args.checkpoint, seed=1, steps=args.steps, size=args.size))
        else:
            import torch

            config = common.diffusers_config_dir(checkpoint, xl=False)
            pipe = common.load_diffusers_pipeline(checkpoint, config, xl=False, dtype=torch.float32, device="cpu")
            common.run_diffusers(pipe, seed=1, steps=args.steps, size=args.size, out_dir=Path(scratch))
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - start, "cold_s": done - imported}))


def measure_cold(args: argparse.Namespace, which: str) -> dict[str, float]:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", which, "--threads", str(args.threads),
        "--models-dir", str(args.models_dir), "--checkpoint", args.checkpoint,
        "--steps", str(args.steps), "--size", str(args.size),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cold {which} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- warm: both in this process, interleaved ------------------------------------------------------------


def measure_warm(args: argparse.Namespace, checkpoint: Path, scratch: Path) -> dict[str, dict[str, common.Samples]]:
    import torch

    engine = common.make_engine(scratch / "data", args.models_dir)
    uncached = common.make_engine(scratch / "data", args.models_dir, cache="none", env=engine.env)
    config = common.diffusers_config_dir(checkpoint, xl=False)
    # diffusers loads and runs on fresh threads, as graphengine's Engine.run does (see on_fresh_thread).
    pipe = common.on_fresh_thread(
        lambda: common.load_diffusers_pipeline(checkpoint, config, xl=False, dtype=torch.float32, device="cpu")
    )

    def prompt(seed: int) -> dict[str, Any]:
        return common.workflow(args.checkpoint, seed=seed, steps=args.steps, size=args.size)

    def diffusers_run(seed: int) -> None:
        common.on_fresh_thread(
            lambda: common.run_diffusers(pipe, seed=seed, steps=args.steps, size=args.size, out_dir=scratch / "diffusers")
        )

    # warm-up: load everything once in this process (not recorded)
    common.run_engine(engine, prompt(999))
    common.run_engine(uncached, prompt(999))
    diffusers_run(999)

    results: dict[str, dict[str, common.Samples]] = {
        name: {"graphengine": common.Samples(), "diffusers": common.Samples()}
        for name in ("seed-only re-run", "identical re-run", "full re-run, cache off")
    }
    for repeat in range(args.repeats):
        seed = 1000 + repeat
        elapsed, run = common.timed(lambda: common.run_engine(engine, prompt(seed)))
        assert common.SAMPLER_NODE in run.executed and "4" in run.cached, "seed change must re-use the cached loader"
        results["seed-only re-run"]["graphengine"].add(elapsed)
        results["seed-only re-run"]["diffusers"].add(common.timed(lambda: diffusers_run(seed))[0])

        elapsed, run = common.timed(lambda: common.run_engine(engine, prompt(seed)))
        assert not run.executed, "an identical prompt must be answered from the cache"
        results["identical re-run"]["graphengine"].add(elapsed)
        results["identical re-run"]["diffusers"].add(common.timed(lambda: diffusers_run(seed))[0])

        elapsed, _ = common.timed(lambda: common.run_engine(uncached, prompt(seed)))
        results["full re-run, cache off"]["graphengine"].add(elapsed)
        results["full re-run, cache off"]["diffusers"].add(common.timed(lambda: diffusers_run(seed))[0])
        print(f"  repeat {repeat + 1}/{args.repeats} done", flush=True)
    engine.close()
    uncached.close()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        cold_worker(args)
        return 0
    common.quiet_libraries()
    common.pin_threads(args.threads)
    checkpoint = common.ensure_checkpoint(args.models_dir, args.checkpoint, args.arch)
    common.on_fresh_thread(lambda: common.diffusers_config_dir(checkpoint, xl=False))  # one-time setup, untimed
    checkpoint.read_bytes()  # the file in the page cache for both sides

    print(f"pipeline_cpu: {checkpoint.name}, {args.size}×{args.size}, {args.steps} steps, {args.threads} thread(s)")
    cold: dict[str, list[dict[str, float]]] = {"graphengine": [], "diffusers": []}
    for _ in range(args.cold_repeats):
        for which in ("graphengine", "diffusers"):
            cold[which].append(measure_cold(args, which))
            print(f"  cold {which}: {cold[which][-1]['cold_s']:.2f} s", flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        warm = measure_warm(args, checkpoint, Path(scratch))

    def cold_median(which: str, key: str) -> float:
        return common.Samples([c[key] for c in cold[which]]).median

    rows = [["cold (load + first image)", cold_median("graphengine", "cold_s"), cold_median("diffusers", "cold_s")]]
    rows += [[name, s["graphengine"].median, s["diffusers"].median] for name, s in warm.items()]
    table = [[name, ge, df, df / ge if ge > 0 else float("inf")] for name, ge, df in rows]
    common.print_table(
        "seconds (median); speed-up = diffusers / graphengine",
        ["scenario", "graphengine s", "diffusers s", "speed-up"],
        table,
    )
    print(f"(library import, not included above: graphengine {cold_median('graphengine', 'import_s'):.2f} s, "
          f"diffusers {cold_median('diffusers', 'import_s'):.2f} s)")

    common.write_json(args.out, {
        "benchmark": "pipeline_cpu",
        "command": " ".join([os.path.relpath(sys.executable, common.REPO), *sys.argv]),
        "machine": common.machine_info(),
        "settings": {"checkpoint": checkpoint.name, "size": args.size, "steps": args.steps, "threads": args.threads,
                     "sampler": common.SAMPLER, "scheduler": common.SCHEDULER, "cfg": common.CFG,
                     "repeats": args.repeats, "dtype": "float32"},
        "cold": cold,
        "warm": {name: {k: v.values for k, v in s.items()} for name, s in warm.items()},
        "table": [{"scenario": r[0], "graphengine_s": r[1], "diffusers_s": r[2], "speedup": r[3]} for r in table],
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
