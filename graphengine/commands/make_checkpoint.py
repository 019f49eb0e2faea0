"""`graphengine make-checkpoint OUT.safetensors --arch ARCH [--seed N] [--dtype fp16|bf16|fp32]`.

Writes a seeded random-weight checkpoint in the single-file (LDM) layout users download. ``micro``
(a few MB, for tests), ``micro_sdxl`` (the same for SDXL-shaped graphs), ``small`` (SD1.5-compatible,
loads in stock ComfyUI, about 570 MB in fp16), ``sd15``, ``sd21`` and ``sdxl`` (the full architectures).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from graphengine.models.ldm_layout import ARCHS_FILE

ARCH_CHOICES = tuple(name for name in json.loads(ARCHS_FILE.read_text(encoding="utf-8")) if not name.startswith("_"))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-checkpoint",
        help="write a seeded random-weight Stable Diffusion checkpoint (single-file .safetensors)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("output", type=Path, help="the .safetensors file to write")
    parser.add_argument("--arch", choices=ARCH_CHOICES, default="micro", help="architecture (default: micro)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same bytes (default 0)")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16", help="tensor dtype (default fp16)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from graphengine.models.checkpoint_maker import make_checkpoint

    output: Path = args.output
    if output.suffix.lower() != ".safetensors":
        raise SystemExit(f"output must be a .safetensors file, got {output}")
    if output.exists() and not args.force:
        raise SystemExit(f"{output} already exists (use --force to overwrite)")
    started = time.perf_counter()
    make_checkpoint(output, args.arch, seed=args.seed, dtype=args.dtype)
    size = output.stat().st_size
    print(f"wrote {output} ({args.arch}, seed {args.seed}, {args.dtype}, {size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
    return 0
