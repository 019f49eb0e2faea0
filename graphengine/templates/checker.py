"""The placeholder report of a template: which predefined placeholders it uses (✅) or not (❌), its
custom placeholders, and occurrences that will not behave as the author may think (embedded in a
longer text, in a key or outside ``inputs``, a case variant of a predefined name)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphengine.templates.document import Template
from graphengine.templates.placeholders import (
    PREDEFINED,
    PREDEFINED_BY_NAME,
    Occurrence,
    Placement,
    find_occurrences,
)
from graphengine.templates.render import as_template


@dataclass(frozen=True)
class Flag:
    occurrence: Occurrence
    message: str

    def to_json(self) -> dict[str, Any]:
        return self.occurrence.to_json() | {"message": self.message}


def check(template_json: Template | Mapping[str, Any], registry: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The placeholder report as JSON (what ``GET /templates/{name}/placeholders`` answers).

    ``{"predefined": [{name, description, present, occurrences, default}], "custom": [{name,
    occurrences, default}], "flagged": [{name, node_id, input, placement, message}],
    "missing_values": [names that need a value at render time], "ok": bool}``
    """
    template = as_template(template_json)
    occurrences = find_occurrences(template.workflow)
    replaced = [o for o in occurrences if o.placement in (Placement.INPUT, Placement.NESTED, Placement.METADATA)]
    flags: list[Flag] = []
    seen: set[str] = set()
    for occ in occurrences:
        flag = _flag(occ, template.workflow, registry)
        if flag is not None and flag.message not in seen:  # e.g. one "unknown node type" per node
            seen.add(flag.message)
            flags.append(flag)

    predefined = []
    for spec in PREDEFINED:
        places = [o for o in replaced if o.name == spec.name]
        predefined.append(
            {
                "name": spec.name,
                "kind": spec.kind.value,
                "description": spec.description,
                "present": bool(places),
                "mark": "✅" if places else "❌",
                "occurrences": [o.to_json() for o in places],
                "default": template.defaults.get(spec.name),
                "fallback": spec.fallback,
            }
        )
    custom_names: list[str] = []
    for occ in replaced:
        if occ.name not in PREDEFINED_BY_NAME and occ.name not in custom_names:
            custom_names.append(occ.name)
    for name in template.defaults:
        if name not in PREDEFINED_BY_NAME and name not in custom_names:
            custom_names.append(name)
    custom = [
        {
            "name": name,
            "occurrences": [o.to_json() for o in replaced if o.name == name],
            "default": template.defaults.get(name),
        }
        for name in custom_names
    ]
    missing = []
    for name in dict.fromkeys(o.name for o in replaced):
        spec = PREDEFINED_BY_NAME.get(name)
        if template.defaults.get(name) is None and (spec is None or spec.fallback is None):
            missing.append(name)
    return {
        "predefined": predefined,
        "custom": custom,
        "flagged": [f.to_json() for f in flags],
        "missing_values": missing,
        "ok": not flags,
    }


def _flag(occ: Occurrence, workflow: Mapping[str, Any], registry: Mapping[str, Any] | None) -> Flag | None:
    if occ.placement is Placement.EMBEDDED:
        return Flag(
            occ,
            f"%{occ.name}% is embedded in the text {occ.text!r}: only a whole \"%{occ.name}%\" string is "
            "replaced, so this stays literal text (as in SillyTavern)",
        )
    if occ.placement is Placement.KEY:
        return Flag(occ, f"%{occ.name}% is in an object key at {occ.location}; keys are never replaced")
    if occ.placement is Placement.METADATA:
        return Flag(occ, f"%{occ.name}% sits outside the node's inputs ({occ.location}); it is replaced, but is that meant?")
    if occ.placement is Placement.NESTED:
        return Flag(occ, f"%{occ.name}% sits inside a list or object in an input ({occ.location}), e.g. a link")
    lower = occ.name.lower()
    if occ.name not in PREDEFINED_BY_NAME and lower in PREDEFINED_BY_NAME:
        return Flag(
            occ,
            f"%{occ.name}% differs from the predefined %{lower}% only in case; placeholders are case-sensitive, "
            "so this is a custom placeholder",
        )
    if registry is not None and occ.input_name is not None:
        node = workflow.get(occ.node_id)
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        node_class = registry.get(class_type) if isinstance(class_type, str) else None
        if node_class is None:
            return Flag(occ, f"node {occ.node_id} uses unknown node type {class_type!r}")
        declared = {info.name for info in getattr(node_class, "inputs_info", ())}
        if occ.input_name not in declared:
            return Flag(occ, f"node {occ.node_id} ({class_type}) has no input {occ.input_name!r}")
    return None
