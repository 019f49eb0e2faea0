"""The ``graphengine`` command: ``run``, ``serve``, ``make-checkpoint`` and ``templates``.

Each subcommand lives in its own module under ``graphengine.commands`` and registers itself through
``add_parser(subparsers)``, setting ``handler`` to a function of the parsed arguments that returns the
exit code. Command modules must import cheaply (no torch at module level).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from graphengine.commands import make_checkpoint, run, serve, templates

COMMAND_MODULES = (run, serve, make_checkpoint, templates)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphengine", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="WARNING", help="logging level (DEBUG, INFO, WARNING, …)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
