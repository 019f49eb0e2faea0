"""`graphengine make-checkpoint` (placeholder until its owner lands it)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("make-checkpoint", help="(not yet available)")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    raise SystemExit("graphengine make-checkpoint is not available yet")
