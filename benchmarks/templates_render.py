"""Template rendering cost: tree substitution (plain and typed) vs. SillyTavern's text replacement.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/templates_render.py

Prints a table and writes benchmarks/results/templates_render.json.
"""

from __future__ import annotations

import base64
import io
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, PngImagePlugin

from graphengine.packs import builtin_packs
from graphengine.registry import NodeRegistry
from graphengine.templates import SillyTavernSettings, TemplateStore, render, render_sillytavern

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def timed(fn, repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return {"median_ms": statistics.median(samples) * 1000, "p95_ms": sorted(samples)[int(0.95 * (repeat - 1))] * 1000}


def avatar_png(text_bytes: int) -> str:
    info = PngImagePlugin.PngInfo()
    info.add_text("chara", "x" * text_bytes)
    buffer = io.BytesIO()
    Image.new("RGB", (512, 512), (30, 60, 90)).save(buffer, "PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def main() -> None:
    registry = NodeRegistry(builtin_packs())
    store = TemplateStore.for_data_dir(Path("/tmp/graphengine-bench-templates"))
    t2i = store.get("text-to-image").template
    avatar = store.get("image-to-image-base64").template
    big_avatar = avatar_png(1_000_000)
    st_text = json.dumps(avatar.workflow, indent=2)
    st_settings = SillyTavernSettings(prompt="a cat", model="m.safetensors", sampler="euler", scheduler="normal",
                                      char_avatar=big_avatar)
    rows = {
        "text-to-image, plain": timed(lambda: render(t2i, {"prompt": "a cat"}), 2000),
        "text-to-image, typed (registry)": timed(lambda: render(t2i, {"prompt": "a cat"}, registry), 2000),
        "avatar img2img, 1 MB avatar (decoded to check)": timed(
            lambda: render(avatar, {"char_avatar": big_avatar}, registry), 50),
        "SillyTavern-exact emulation, same avatar": timed(lambda: render_sillytavern(st_text, st_settings), 50),
    }
    print(f"{'case':<50} {'median ms':>10} {'p95 ms':>10}")
    for name, row in rows.items():
        print(f"{name:<50} {row['median_ms']:>10.3f} {row['p95_ms']:>10.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "templates_render.json").write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "rows": rows,
    }, indent=2))


if __name__ == "__main__":
    main()
