"""`graphengine run`: run a workflow (or a template) headlessly and print what happened.

    graphengine run WORKFLOW.json [--json] [--cache MODE]
    graphengine run TEMPLATE_NAME_OR_FILE --set key=value ...
    graphengine run --default [--set k=v]     # the main job (see ``default_job``)

Exit status: 0 success, 1 invalid workflow or failed run, 2 bad arguments or unreadable file,
130 interrupted.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from pathlib import Path
from typing import Any

from graphengine.commands import options

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "text-to-image"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad arguments or an unreadable input: printed, exit status 2."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a workflow or template headlessly and print its result",
        description="Run a ComfyUI API-format workflow (or a template rendered with --set values) "
        "and print the summary: status, executed and cached nodes, outputs, timings.",
    )
    parser.add_argument(
        "workflow", nargs="?", help="an API-format workflow .json file, or a template name or file"
    )
    parser.add_argument("--default", action="store_true", help="run the main job (the bundled default workflow)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--set",
        dest="values",
        action="append",
        metavar="NAME=VALUE",
        help="a template placeholder value (repeatable); renders WORKFLOW as a template",
    )
    parser.add_argument(
        "--cache", default="classic", help="cache mode: classic, 'lru N', ram, 'ram GB' or none (default: classic)"
    )
    options.add_location_options(parser)
    parser.set_defaults(handler=handle)


def default_job(args: argparse.Namespace, registry: Any, data_dir: Path, models_dir: Path) -> dict[str, Any]:
    """The main job's prompt (``./dev run``): the bundled text-to-image template with its defaults
    (overridable with ``--set``) on the embedded default model, which is made on first run: a seeded
    random-weight ``small`` checkpoint in the standard single-file layout, so the image is noise."""
    from graphengine.models.defaults import ensure_default_checkpoint

    ensure_default_checkpoint(models_dir, force=True)
    return _render_template(DEFAULT_TEMPLATE, args.values or [], data_dir, registry)


def read_workflow(path: Path) -> dict[str, Any]:
    from graphengine.workflow import load_prompt_text

    try:
        text = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    data = load_prompt_text(text)
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data:
        data = data["prompt"]  # a saved POST /prompt body
    return data


def handle(args: argparse.Namespace) -> int:
    from graphengine.errors import WorkflowInvalid

    try:
        return _handle(args)
    except UsageError as exc:
        print(f"graphengine run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WorkflowInvalid as exc:
        if args.json:
            print(json.dumps(exc.body, indent=2))
        else:
            print(format_invalid(exc.body), file=sys.stderr)
        return EXIT_FAILED


def _handle(args: argparse.Namespace) -> int:
    from graphengine.cache import CacheConfig
    from graphengine.engine import Engine

    try:
        cache = CacheConfig.parse(args.cache)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.default and args.workflow:
        raise UsageError("give either WORKFLOW or --default, not both")
    if not args.default and not args.workflow:
        raise UsageError("give a WORKFLOW file or template name, or --default")
    data_dir, models_dir = options.data_dir(args), options.models_dir(args)
    engine = Engine(cache=cache, data_dir=data_dir, models_dir=models_dir)
    # Everything imported so far lives as long as the process: keep it out of the garbage
    # collector's full scans, which otherwise grow with every module the node packs load.
    gc.freeze()
    try:
        if args.default:
            prompt = default_job(args, engine.registry, data_dir, models_dir)
        else:
            prompt = _prompt_from_argument(args, engine, data_dir)
        run = engine.run(prompt)
    finally:
        engine.close()
    if args.json:
        print(json.dumps(run.summary(), indent=2, default=str))
    else:
        print(format_summary(run, prompt))
    if run.status == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_OK if run.ok else EXIT_FAILED


def _prompt_from_argument(args: argparse.Namespace, engine: Any, data_dir: Path) -> dict[str, Any]:
    path = Path(args.workflow)
    if not args.values and path.suffix.lower() == ".json" and path.is_file():
        return read_workflow(path)
    if not args.values and path.suffix.lower() == ".json":
        raise UsageError(f"no such workflow file: {path}")
    return _render_template(args.workflow, args.values or [], data_dir, engine.registry)


def _render_template(name_or_path: str, items: list[str], data_dir: Path, registry: Any) -> dict[str, Any]:
    try:
        from graphengine.templates import render_for_cli
    except ImportError:
        raise UsageError(
            f"{name_or_path!r} is not a workflow .json file, and templates are not available in this installation"
        ) from None
    from graphengine.errors import GraphEngineError, WorkflowInvalid

    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set expects NAME=VALUE, got {item!r}")
        values[name.strip()] = value
    try:
        return render_for_cli(name_or_path, values, data_dir, registry)
    except WorkflowInvalid:
        raise
    except (GraphEngineError, ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None


def format_summary(run: Any, prompt: dict[str, Any]) -> str:
    """The human-readable summary of a run."""

    def label(node_id: str) -> str:
        node = prompt.get(node_id)
        class_type = node.get("class_type") if isinstance(node, dict) else None
        return f"{node_id} ({class_type})" if class_type else node_id

    lines = [f"status: {run.status} in {run.seconds:.3f} s"]
    lines.append(f"executed: {len(run.executed)} node(s)" + (f" — {', '.join(run.executed[:20])}" if run.executed else ""))
    if len(run.executed) > 20:
        lines[-1] += ", …"
    lines.append(f"cached: {len(run.cached)} node(s)" + (f" — {', '.join(run.cached[:20])}" if run.cached else ""))
    if len(run.cached) > 20:
        lines[-1] += ", …"
    if run.outputs:
        lines.append("outputs:")
        for node_id, ui in run.outputs.items():
            for key, items in ui.items():
                for item in items:
                    shown = _show(item).replace("\n", "\n      ")
                    lines.append(f"  {label(node_id)} {key}: {shown}")
    if run.timings:
        slowest = sorted(run.timings.items(), key=lambda kv: kv[1], reverse=True)[:5]
        lines.append("timings (slowest): " + ", ".join(f"{label(n)} {s * 1000:.2f} ms" for n, s in slowest))
    if run.error is not None:
        error = run.error
        lines.append(f"error in node {error.node_id} ({error.node_type}): {error.exception_type}: {error.exception_message}")
    return "\n".join(lines)


def format_invalid(body: dict[str, Any]) -> str:
    """A ComfyUI 400 body as readable text."""
    error = body.get("error", {})
    lines = [f"invalid workflow: {error.get('message', '')}"]
    if error.get("details") and not body.get("node_errors"):
        lines.append(f"  {error['details']}")
    for node_id, entry in (body.get("node_errors") or {}).items():
        for item in entry.get("errors", []):
            lines.append(f"  node {node_id} ({entry.get('class_type')}): {item.get('message')}: {item.get('details')}")
    return "\n".join(lines)


def _show(item: Any) -> str:
    if isinstance(item, dict) and "filename" in item:
        sub = item.get("subfolder") or ""
        return f"{item.get('type', 'output')}/{sub + '/' if sub else ''}{item['filename']}"
    text = item if isinstance(item, str) else json.dumps(item, default=str)
    return text if len(text) <= 500 else text[:500] + "…"
