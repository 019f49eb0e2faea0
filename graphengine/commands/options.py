"""Options shared by every subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

from graphengine.environment import default_data_dir, default_models_dir


def add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="directory for the queue database, history, input/, output/, temp/ and user templates "
        "(default: $GRAPHENGINE_DATA_DIR or ./data)",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="models directory in ComfyUI's layout (default: $GRAPHENGINE_MODELS_DIR or models/ beside the data)",
    )


def data_dir(args: argparse.Namespace) -> Path:
    return (args.data_dir or default_data_dir()).resolve()


def models_dir(args: argparse.Namespace) -> Path:
    return (args.models_dir.resolve() if args.models_dir else default_models_dir(data_dir(args)))
