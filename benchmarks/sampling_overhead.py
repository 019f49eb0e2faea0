"""Sampler overhead: what KSampler costs per step beyond the UNet itself.

The UNet is replaced by a module that returns zeros instantly, so the time measured is everything
graphengine adds around it: schedule, noise, CFG batching and averaging, the sampler's own math,
progress callbacks (and latent2rgb previews with ``--previews``). 512×512 image (64×64 latent),
batch 1, CFG on (cond + uncond batched), 20 steps, karras schedule.

    OMP_NUM_THREADS=1 python benchmarks/sampling_overhead.py [--device cpu|cuda] [--repeat 5] [--previews]

Prints a table and writes JSON to benchmarks/results/sampling_overhead.json.
Target: ≤ 2 ms/step on one CPU thread for the ODE samplers (a SD1.5 UNet step is ~100× that on CPU
and ~5 ms on an H100 at 512²); the Brownian-tree SDE samplers are dominated by torchsde, as in ComfyUI.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from nodes.sampling.ksampler import PreviewOptions, SamplingSettings, sample_latent  # noqa: E402
from nodes.sampling.names import SAMPLER_NAMES  # noqa: E402
from nodes.sampling.schedulers import scaled_linear_sigmas  # noqa: E402
from nodes.sockets import Conditioning, ConditioningEntry, Latent, LatentFormat, Model, ModelSampling  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SD15_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))


class InstantUNet(torch.nn.Module):
    """Stands in for the UNet: zeros of the input's shape, no compute."""

    def __init__(self, device: torch.device):
        super().__init__()
        self._device = device

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def forward(self, sample, timestep, encoder_hidden_states=None, return_dict=False, **kwargs):
        return (torch.zeros_like(sample),)


class Runtime:
    @contextlib.contextmanager
    def activate(self, value):
        yield value.unet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--previews", action="store_true", help="also decode a latent2rgb preview every step")
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLER_NAMES))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    device = torch.device(args.device)

    model = Model(
        unet=InstantUNet(device),
        sampling=ModelSampling(sigmas=scaled_linear_sigmas()),
        latent_format=LatentFormat(latent_rgb_factors=SD15_RGB),
        arch="benchmark",
        runtime=Runtime(),
    )
    generator = torch.Generator().manual_seed(0)
    positive = Conditioning((ConditioningEntry(embeds=torch.randn(1, 77, 768, generator=generator)),))
    negative = Conditioning((ConditioningEntry(embeds=torch.randn(1, 77, 768, generator=generator)),))
    latent = Latent(samples=torch.zeros(1, 4, 64, 64))
    preview = PreviewOptions("latent2rgb" if args.previews else "none", 512)
    progress_calls = 0

    def progress(value: int, total: int, image) -> None:
        nonlocal progress_calls
        progress_calls += 1

    rows = []
    for name in args.samplers:
        settings = SamplingSettings(seed=1, steps=args.steps, cfg=7.0, sampler_name=name, scheduler="karras")
        sample_latent(model, positive, negative, latent, settings, progress, preview)  # warm-up
        times = []
        for _ in range(args.repeat):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            sample_latent(model, positive, negative, latent, settings, progress, preview)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        rows.append({"sampler": name, "run_ms": median * 1000, "ms_per_step": median * 1000 / args.steps})

    print(f"{'sampler':<32}{'run ms':>10}{'ms/step':>10}")
    for row in rows:
        print(f"{row['sampler']:<32}{row['run_ms']:>10.1f}{row['ms_per_step']:>10.2f}")
    RESULTS.mkdir(exist_ok=True)
    out = {
        "benchmark": "sampling_overhead",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "processor": platform.processor(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "steps": args.steps,
        "previews": args.previews,
        "rows": rows,
    }
    (RESULTS / "sampling_overhead.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
