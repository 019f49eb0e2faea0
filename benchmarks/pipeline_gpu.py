"""GPU pipeline benchmark: graphengine's Engine beside plain diffusers on the same checkpoint files.

    .venv/bin/python benchmarks/pipeline_gpu.py [--models sd15,sdxl] [--batches 1,8] [--steps 20]

Text to image, 20 steps (euler, CFG 8), fp16 on CUDA: ``sd15`` at 512×512 and ``sdxl`` at 1024×1024,
batch 1 and 8. Per model, batch and implementation:

* **it/s** — sampler steps per second over the denoising loop (per-step timestamps taken after a
  CUDA synchronise, in graphengine's progress events and diffusers' step callback alike);
* **s/image** — wall time of a seed-only re-run divided by the batch (graphengine re-uses the cached
  text encodings, as it does for users; diffusers runs its whole pipeline);
* **peak VRAM** — ``torch.cuda.max_memory_allocated`` during that run, weights included.

Each implementation runs in its own process (so peak VRAM is its own). The ``sd15``/``sdxl``
checkpoints are seeded random weights written once by graphengine's checkpoint maker if missing.
Targets (H100): ≥ 150 it/s for SD1.5 512² batch 1, ≥ 30 it/s for SDXL 1024² batch 1.
Without CUDA the script says so and exits with status 2: nothing is measured on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline_common as common  # noqa: E402


@dataclass(frozen=True)
class ModelCase:
    checkpoint: str
    arch: str
    size: int
    xl: bool
    target_its: float | None  # batch-1 target in it/s


CASES = {
    "sd15": ModelCase("sd15.safetensors", "sd15", 512, False, 150.0),
    "sdxl": ModelCase("sdxl.safetensors", "sdxl", 1024, True, 30.0),
}
NO_CUDA = (
    "pipeline_gpu: no CUDA device is available (torch.cuda.is_available() is False). This benchmark "
    "measures GPU throughput and needs an NVIDIA GPU with a CUDA build of PyTorch; nothing was measured."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=common.DEFAULT_MODELS_DIR)
    parser.add_argument("--models", default="sd15,sdxl", help="comma-separated: sd15, sdxl")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=common.RESULTS / "pipeline_gpu.json")
    parser.add_argument("--worker", choices=("graphengine", "diffusers"), help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=tuple(CASES), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


class StepClock:
    """Per-step timestamps (after a CUDA synchronise); an EventSink for graphengine's progress events."""

    def __init__(self, node: str | None = None):
        self.node = node
        self.times: list[float] = []

    def tick(self) -> None:
        import torch

        torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def emit(self, event: Any) -> None:  # graphengine EventSink
        if getattr(event, "type", None) == "progress" and (self.node is None or event.node == self.node):
            self.tick()

    def diffusers_callback(self, _pipe: Any, _step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.tick()
        return kwargs

    def its(self) -> float:
        if len(self.times) < 2:
            return float("nan")
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


def worker(args: argparse.Namespace) -> None:
    """Child process: one implementation, one model, every batch size; prints JSON."""
    common.quiet_libraries()
    import torch

    case = CASES[args.model]
    checkpoint = args.models_dir / "checkpoints" / case.checkpoint
    batches = [int(b) for b in args.batches.split(",")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        if args.worker == "graphengine":
            engine = common.make_engine(Path(scratch) / "data", args.models_dir)

            def generate(seed: int, batch: int, clock: StepClock) -> None:
                prompt = common.workflow(case.checkpoint, seed=seed, steps=args.steps, size=case.size, batch=batch)
                common.run_engine(engine, prompt, sink=clock)
        else:
            config = common.diffusers_config_dir(checkpoint, xl=case.xl)
            pipe = common.load_diffusers_pipeline(checkpoint, config, xl=case.xl, dtype=torch.float16, device="cuda")

            def generate(seed: int, batch: int, clock: StepClock) -> None:
                common.run_diffusers(pipe, seed=seed, steps=args.steps, size=case.size, batch=batch,
                                     out_dir=Path(scratch) / "diffusers", callback=clock.diffusers_callback)

        for batch in batches:
            generate(0, batch, StepClock(common.SAMPLER_NODE))  # warm-up (loads, allocates, tunes kernels)
            its, per_image, peaks = common.Samples(), common.Samples(), common.Samples()
            for repeat in range(args.repeats):
                clock = StepClock(common.SAMPLER_NODE)
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                generate(repeat + 1, batch, clock)
                torch.cuda.synchronize()
                per_image.add((time.perf_counter() - start) / batch)
                its.add(clock.its())
                peaks.add(torch.cuda.max_memory_allocated() / 2**30)
            results[str(batch)] = {"its": its.values, "s_per_image": per_image.values, "peak_vram_gib": peaks.values}
    print(json.dumps(results))


def run_worker(args: argparse.Namespace, which: str, model: str) -> dict[str, Any]:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", which, "--model", model,
        "--models-dir", str(args.models_dir), "--batches", args.batches, "--steps", str(args.steps),
        "--repeats", str(args.repeats),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{which} on {model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    if args.worker:
        worker(args)
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in CASES]
    if unknown:
        print(f"pipeline_gpu: unknown model(s) {', '.join(unknown)}; choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    common.quiet_libraries()
    measured: dict[str, dict[str, Any]] = {}
    rows = []
    for model in models:
        case = CASES[model]
        checkpoint = common.ensure_checkpoint(args.models_dir, case.checkpoint, case.arch, dtype="fp16")
        common.diffusers_config_dir(checkpoint, xl=case.xl)  # one-time setup, untimed
        measured[model] = {which: run_worker(args, which, model) for which in ("graphengine", "diffusers")}
        for batch in args.batches.split(","):
            ge, df = measured[model]["graphengine"][batch], measured[model]["diffusers"][batch]

            def med(values: list[float]) -> float:
                return common.Samples(values).median

            target = case.target_its if batch == "1" else None
            rows.append([
                f"{model} {case.size}²", batch,
                med(ge["its"]), med(df["its"]), med(ge["s_per_image"]), med(df["s_per_image"]),
                med(ge["peak_vram_gib"]), med(df["peak_vram_gib"]), target if target else "",
            ])
    common.print_table(
        f"{args.steps} steps, fp16, medians of {args.repeats} (ge = graphengine, df = plain diffusers)",
        ["model", "batch", "ge it/s", "df it/s", "ge s/img", "df s/img", "ge VRAM GiB", "df VRAM GiB", "target it/s"],
        rows,
    )
    common.write_json(args.out, {
        "benchmark": "pipeline_gpu",
        "command": " ".join([os.path.relpath(sys.executable, common.REPO), *sys.argv]),
        "machine": common.machine_info(),
        "settings": {"steps": args.steps, "batches": args.batches, "repeats": args.repeats, "dtype": "float16",
                     "sampler": common.SAMPLER, "scheduler": common.SCHEDULER, "cfg": common.CFG},
        "results": measured,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
