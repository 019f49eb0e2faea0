"""Templates from the command line and the Python API without a server."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graphengine.templates.document import Template, parse_template_bytes
from graphengine.templates.errors import InvalidTemplateName, TemplateNotFound
from graphengine.templates.render import render
from graphengine.templates.store import TemplateStore, check_name


def load_template(name_or_path: str | Path, data_dir: Path, *, max_bytes: int | None = None) -> Template:
    """A template by file path (``.json`` file that exists) or by name in the store of ``data_dir``."""
    store = TemplateStore.for_data_dir(data_dir) if max_bytes is None else TemplateStore.for_data_dir(data_dir, max_bytes=max_bytes)
    candidate = Path(name_or_path)
    if candidate.suffix == ".json" and candidate.is_file():
        data = candidate.read_bytes()
        if len(data) > store.max_bytes:
            from graphengine.templates.errors import TemplateTooLarge

            raise TemplateTooLarge(len(data), store.max_bytes)
        template = parse_template_bytes(data)
        return template if template.name else template.renamed(candidate.stem)
    try:
        check_name(str(name_or_path))
    except InvalidTemplateName:
        raise TemplateNotFound(str(name_or_path)) from None
    return store.get(str(name_or_path)).template


def render_for_cli(
    name_or_path: str | Path,
    values: Mapping[str, Any],
    data_dir: Path,
    registry: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Render a template (name or file) with ``--set`` values (strings are converted in typed mode).

    Raises ``TemplateNotFound`` / ``StoreError`` for a bad name or file and ``TemplateError`` for
    bad values; both carry a message meant for the user.
    """
    return render(load_template(name_or_path, Path(data_dir)), dict(values), registry)


def run_template(
    engine: Any,
    template: Template | str | Path,
    values: Mapping[str, Any] | None = None,
    *,
    data_dir: Path | None = None,
    extra_data: Mapping[str, Any] | None = None,
) -> Any:
    """Render a template (a ``Template``, or a name/file looked up under ``data_dir``, default the
    engine's data root) with ``values`` in typed mode and run it on ``engine``; returns the ``Run``.

    Raises ``TemplateError`` (bad values) or ``WorkflowInvalid`` (the rendered prompt fails
    validation) before anything executes.
    """
    if not isinstance(template, Template):
        root = Path(data_dir) if data_dir is not None else engine.env.paths.root
        template = load_template(template, root)
    prompt = render(template, dict(values or {}), engine.registry)
    return engine.run(prompt, extra_data=dict(extra_data) if extra_data else None)


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """``["prompt=a cat", "seed=5"]`` → ``{"prompt": "a cat", "seed": "5"}``; ValueError on ``k`` alone."""
    values: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        values[name.strip()] = value
    return values
