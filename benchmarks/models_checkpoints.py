"""Checkpoint I/O benchmark: make-checkpoint time and size, load time, first activation, one UNet step.

    OMP_NUM_THREADS=2 python benchmarks/models_checkpoints.py --arch small
    python benchmarks/models_checkpoints.py --arch sd15 sdxl        # on a CUDA machine

For each arch: write a seeded fp16 checkpoint (timed), load it with the ModelManager (timed, cold and
cached), activate the UNet on the execution device (timed: the host→device copy), then time UNet
forward passes at the arch's native latent size, batch 1 (a sanity figure for the GPU path: SDPA
attention, channels_last, fp16; the full pipeline benchmark is ``pipeline_gpu.py``). Prints a table
and writes ``benchmarks/results/models_checkpoints.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

NATIVE = {"micro": 64, "micro_sdxl": 64, "small": 512, "sd15": 512, "sd21": 768, "sdxl": 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["small"])
    parser.add_argument("--steps", type=int, default=20, help="timed UNet forwards per arch")
    parser.add_argument("--resolution", type=int, default=None, help="image side for the UNet step (default: the arch's native)")
    parser.add_argument("--keep", type=Path, default=None, help="directory to keep the checkpoints in")
    args = parser.parse_args()

    import torch

    from graphengine.models.checkpoint_maker import make_checkpoint
    from graphengine.models.manager import ModelManager

    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    rows = []
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="ge-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for arch in args.arch:
        path = workdir / f"{arch}.safetensors"
        started = time.perf_counter()
        make_checkpoint(path, arch, seed=0, dtype="fp16")
        make_s = time.perf_counter() - started
        manager = ModelManager()
        started = time.perf_counter()
        model, clip, vae = manager.load_checkpoint(path)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        manager.load_checkpoint(path)
        cached_s = time.perf_counter() - started
        side = (args.resolution or NATIVE.get(arch, 512)) // 8
        width = model.unet.config.cross_attention_dim
        device, dtype = manager.device, manager.dtype
        x = torch.randn(1, 4, side, side, device=device, dtype=dtype)
        context = torch.randn(1, 77, width, device=device, dtype=dtype)
        extra = {}
        if model.unet.config.addition_embed_type == "text_time":
            pooled = model.unet.config.projection_class_embeddings_input_dim - 6 * 256
            extra["added_cond_kwargs"] = {
                "text_embeds": torch.randn(1, pooled, device=device, dtype=dtype),
                "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]], device=device, dtype=dtype),
            }
        started = time.perf_counter()
        with model.activate() as unet, torch.inference_mode():
            if device.type == "cuda":
                torch.cuda.synchronize()
            activate_s = time.perf_counter() - started
            for _ in range(3):
                unet(x, 500, encoder_hidden_states=context, **extra)
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(args.steps):
                unet(x, 500, encoder_hidden_states=context, **extra)
            if device.type == "cuda":
                torch.cuda.synchronize()
            step_s = (time.perf_counter() - started) / args.steps
        rows.append({
            "arch": arch, "size_mb": round(path.stat().st_size / 1e6, 1), "make_s": round(make_s, 2),
            "load_s": round(load_s, 2), "cached_load_s": round(cached_s, 4), "activate_s": round(activate_s, 2),
            "unet_step_ms": round(step_s * 1000, 2), "unet_it_per_s": round(1 / step_s, 1),
            "resolution": side * 8, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        })
        manager.unload_all()
        del model, clip, vae
        if args.keep is None:
            path.unlink()
    header = ["arch", "size_mb", "make_s", "load_s", "cached_load_s", "activate_s", "unet_step_ms", "unet_it_per_s", "resolution", "device", "dtype"]
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[h]) for h in header))
    import torch as _torch

    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(), "cpu_threads": _torch.get_num_threads(),
        "gpu": _torch.cuda.get_device_name(0) if _torch.cuda.is_available() else None,
        "torch": _torch.__version__,
    }
    out = Path(__file__).resolve().parent / "results" / "models_checkpoints.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
