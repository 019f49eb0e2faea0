"""Shared parts of the pipeline benchmarks (``pipeline_cpu.py``, ``pipeline_gpu.py``).

Both compare graphengine's headless ``Engine`` with a plain diffusers ``StableDiffusion[XL]Pipeline``
loaded by diffusers itself (``from_single_file``) from the *same* checkpoint file, offline: the
component configs diffusers needs are written once, untimed, into a local folder next to the
checkpoint (``diffusers-config/<name>/``), derived from the modules our loader builds.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_MODELS_DIR = RESULTS / "models"

POSITIVE = "a watercolor painting of a lighthouse at dusk, soft light, detailed"
NEGATIVE = "blurry, low quality"
CFG = 8.0
SAMPLER = "euler"
SCHEDULER = "normal"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def pin_threads(threads: int) -> None:
    """Pin BLAS/OpenMP threads; call before torch is imported (children inherit the environment)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


def quiet_libraries() -> None:
    """Silence progress bars and advisory warnings of diffusers/transformers during timing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore")


def ensure_checkpoint(models_dir: Path, name: str, arch: str, dtype: str = "fp16") -> Path:
    """``models_dir/checkpoints/<name>``, written by graphengine's checkpoint maker when missing."""
    path = models_dir / "checkpoints" / name
    if not path.is_file():
        from graphengine.models.checkpoint_maker import make_checkpoint

        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {arch} checkpoint {path} (one-time setup) …", flush=True)
        make_checkpoint(path, arch, seed=0, dtype=dtype)
    return path


def diffusers_config_dir(checkpoint: Path, *, xl: bool) -> Path:
    """A local diffusers pipeline config folder for ``checkpoint`` (configs and tokenizers, no weights)."""
    folder = checkpoint.parent.parent / "diffusers-config" / checkpoint.stem
    if (folder / "model_index.json").is_file():
        return folder
    import torch
    from diffusers import EulerDiscreteScheduler

    from graphengine.models.loading import load_components

    components = load_components(checkpoint, dtype=torch.float32)
    components.unet.save_config(folder / "unet")
    components.vae.save_config(folder / "vae")
    index: dict[str, Any] = {
        "_class_name": "StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    }
    names = ("text_encoder", "text_encoder_2") if xl else ("text_encoder",)
    tokenizers = ("tokenizer", "tokenizer_2") if xl else ("tokenizer",)
    for name, tok_name, encoder, tokenizer in zip(names, tokenizers, components.text_encoders, components.tokenizers):
        encoder.config.save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / tok_name)
        index[name] = ["transformers", type(encoder).__name__]
        index[tok_name] = ["transformers", "CLIPTokenizer"]
    if xl:
        index["force_zeros_for_empty_prompt"] = True
    else:
        index.update({"safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False})
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        steps_offset=1, timestep_spacing="leading",
    )
    scheduler.save_config(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return folder


def load_diffusers_pipeline(checkpoint: Path, config_dir: Path, *, xl: bool, dtype: Any, device: str) -> Any:
    """Plain diffusers: ``from_single_file`` on the same file, offline, with the local config folder."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    extra: dict[str, Any] = {} if xl else {"safety_checker": None, "requires_safety_checker": False}
    pipe = cls.from_single_file(str(checkpoint), config=str(config_dir), local_files_only=True, torch_dtype=dtype, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def workflow(ckpt_name: str, *, seed: int, steps: int, size: int, batch: int = 1, prefix: str = "bench") -> dict[str, Any]:
    """The text-to-image API prompt ComfyUI's default workflow sends."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": POSITIVE, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": batch}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0], "seed": seed, "steps": steps, "cfg": CFG, "sampler_name": SAMPLER,
                "scheduler": SCHEDULER, "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }


SAMPLER_NODE = "3"


def engine_packs() -> list[str]:
    """Every built-in pack, plus the sampling pack if it is not registered yet."""
    from graphengine.packs import BUILTIN_PACK_MODULES

    packs = list(BUILTIN_PACK_MODULES)
    if not any(name.startswith("nodes.sampling") for name in packs):
        packs.append("nodes.sampling")
    return packs


def make_engine(data_dir: Path, models_dir: Path, cache: str = "classic", env: Any = None) -> Any:
    from graphengine.engine import Engine

    if env is not None:
        return Engine(packs=engine_packs(), cache=cache, env=env)
    return Engine(packs=engine_packs(), cache=cache, data_dir=data_dir, models_dir=models_dir)


def run_engine(engine: Any, prompt: dict[str, Any], sink: Any = None) -> Any:
    run = engine.run(prompt, sink=sink)
    if run.status != "success":
        raise RuntimeError(f"graphengine run failed: {run.error}")
    return run


def run_diffusers(pipe: Any, *, seed: int, steps: int, size: int, out_dir: Path, batch: int = 1,
                  callback: Callable[..., Any] | None = None) -> list[Any]:
    """One diffusers text-to-image call, images saved as PNG like SaveImage does (compress level 4)."""
    import torch

    kwargs: dict[str, Any] = {}
    if callback is not None:
        kwargs["callback_on_step_end"] = callback
    images = pipe(
        prompt=POSITIVE, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=CFG,
        height=size, width=size, num_images_per_prompt=batch,
        generator=torch.Generator("cpu").manual_seed(seed), output_type="pil", **kwargs,
    ).images
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        image.save(out_dir / f"diffusers_{seed}_{index}.png", compress_level=4)
    return images


@dataclass
class Samples:
    """Repeated timings of one scenario for one implementation."""

    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def on_fresh_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a new thread and wait, as ``Engine.run`` runs every prompt.

    PyTorch's CPU build uses GNU OpenMP, which keeps one worker team per calling thread and, once
    the teams' threads outnumber the CPUs, stops spin-waiting between parallel regions in *every*
    team (futex sleeps instead): on a 2-core machine a 2-thread UNet step becomes ~30 % slower.
    Torch work on the main thread leaves such a team alive for the rest of the process, so it
    would slow the other side's thread down but never its own; running both sides on fresh threads
    keeps only one team alive at a time and the comparison even.
    """
    import threading

    box: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # re-raised on the calling thread
            errors.append(exc)

    worker = threading.Thread(target=work, name="bench-diffusers")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return box[0]


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
    try:
        import diffusers
        import transformers

        info["diffusers"] = diffusers.__version__
        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.3f}" if value < 100 else f"{value:.1f}"
    return str(value)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(f"\nwrote {path}")
