"""Rendering: placeholder values into a template's workflow, on the parsed JSON tree.

Because values are placed into the tree (never spliced into JSON text), a prompt holding quotes,
backslashes, newlines, ``$'`` / ``$&`` or any Unicode stays exactly that string, and numbers stay
numbers. Every problem (an unfilled or unknown placeholder, a value of the wrong kind) is collected
and raised together as a ``TemplateError`` naming the placeholder and where it sits; nothing with a
leftover placeholder reaches the engine.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphengine.environment import Limits
from graphengine.templates.document import Template, template_from_json
from graphengine.templates.errors import InvalidTemplate, Problem, TemplateError
from graphengine.templates.placeholders import (
    PREDEFINED_BY_NAME,
    Occurrence,
    Placement,
    find_occurrences,
)
from graphengine.templates.typed import convert_for_socket, declared_socket
from graphengine.templates.values import ValueRejected, prepare_value, random_seed

REPLACED = (Placement.INPUT, Placement.NESTED, Placement.METADATA)


@dataclass(frozen=True)
class Rendered:
    """A rendered template: the API prompt, the values actually inserted (seed resolved), warnings."""

    prompt: dict[str, Any]
    values: dict[str, Any]
    warnings: tuple[str, ...] = field(default_factory=tuple)


def as_template(template: Template | Mapping[str, Any]) -> Template:
    """Accept a Template, a template document, or a bare API-format workflow."""
    if isinstance(template, Template):
        return template
    try:
        return template_from_json(template)
    except InvalidTemplate as exc:
        raise TemplateError([Problem("invalid_template", "Invalid template", exc.message)]) from None


def render(
    template_json: Template | Mapping[str, Any],
    values: Mapping[str, Any] | None = None,
    registry: Mapping[str, Any] | None = None,
    *,
    typed: bool | None = None,
    max_image_pixels: int | None = None,
    seed_source: Callable[[], int] = random_seed,
) -> dict[str, Any]:
    """Render a template (document or bare workflow) with ``values`` into an API-format prompt.

    ``registry`` (a ``NodeRegistry``) enables the typed mode (on by default when given). Raises
    ``TemplateError`` listing every problem.
    """
    return render_template(
        template_json, values, registry, typed=typed, max_image_pixels=max_image_pixels, seed_source=seed_source
    ).prompt


def render_template(
    template_json: Template | Mapping[str, Any],
    values: Mapping[str, Any] | None = None,
    registry: Mapping[str, Any] | None = None,
    *,
    typed: bool | None = None,
    max_image_pixels: int | None = None,
    seed_source: Callable[[], int] = random_seed,
) -> Rendered:
    """Like ``render`` but also returns the inserted values (the resolved seed) and warnings."""
    template = as_template(template_json)
    workflow = template.workflow
    given = {k: v for k, v in (values or {}).items() if v is not None}
    typed = registry is not None if typed is None else typed
    pixels = max_image_pixels if max_image_pixels is not None else Limits().max_image_pixels

    occurrences = find_occurrences(workflow)
    problems: list[Problem] = []
    warnings: list[str] = []
    by_name: dict[str, list[Occurrence]] = {}
    for occ in occurrences:
        if occ.placement in REPLACED:
            by_name.setdefault(occ.name, []).append(occ)
        else:
            warnings.append(_flag_text(occ))

    inserted: dict[str, Any] = {}
    for name, places in by_name.items():
        first = places[0]
        if name in given:
            raw = given[name]
        elif template.defaults.get(name) is not None:
            raw = template.defaults[name]
        elif name in PREDEFINED_BY_NAME and PREDEFINED_BY_NAME[name].fallback is not None:
            raw = PREDEFINED_BY_NAME[name].fallback
        else:
            kind = "unfilled_placeholder" if name in PREDEFINED_BY_NAME else "unknown_placeholder"
            what = "has no value" if kind == "unfilled_placeholder" else "is not a known placeholder and has no value"
            for occ in places:
                problems.append(
                    Problem(kind, f"Placeholder %{name}% {what}", f"at {occ.location}", name, occ.node_id, occ.input_name)
                )
            continue
        try:
            inserted[name] = prepare_value(name, raw, max_image_pixels=pixels, seed_source=seed_source)
        except ValueRejected as exc:
            problems.append(
                Problem(
                    "invalid_placeholder_value",
                    f"Value for placeholder %{name}% {exc}",
                    f"at {first.location}",
                    name,
                    first.node_id,
                    first.input_name,
                )
            )

    prompt = copy.deepcopy(dict(workflow))
    for name, value in inserted.items():
        for occ in by_name[name]:
            final = value
            if typed and occ.placement is Placement.INPUT:
                node = workflow.get(occ.node_id)
                class_type = node.get("class_type") if isinstance(node, Mapping) else None
                socket = declared_socket(registry, class_type, occ.input_name or "")
                try:
                    final = convert_for_socket(value, socket)
                except ValueRejected as exc:
                    problems.append(
                        Problem(
                            "invalid_placeholder_value",
                            f"Value for placeholder %{name}% does not fit input {occ.input_name!r} "
                            f"of node {occ.node_id} ({class_type}, declared {socket}): {exc}",
                            f"at {occ.location}",
                            name,
                            occ.node_id,
                            occ.input_name,
                        )
                    )
                    continue
            _set_path(prompt, occ.node_id, occ.path, final)

    if problems:
        raise TemplateError(problems)
    return Rendered(prompt=prompt, values=inserted, warnings=tuple(warnings))


def _set_path(prompt: dict[str, Any], node_id: str, path: tuple[str | int, ...], value: Any) -> None:
    if not path:
        prompt[node_id] = value
        return
    target: Any = prompt[node_id]
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


def _flag_text(occ: Occurrence) -> str:
    if occ.placement is Placement.EMBEDDED:
        return (
            f"%{occ.name}% is embedded in the text {occ.text!r} at {occ.location}; only a whole "
            f'"%{occ.name}%" string is a placeholder, so it is left as text'
        )
    return f"%{occ.name}% in a key at {occ.location} is never replaced"
