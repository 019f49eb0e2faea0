"""The template document: file format, parsing and serialisation.

A template file (``workflows/<name>.json`` bundled, ``<data_dir>/templates/<name>.json`` user) is::

    {
      "name": "text-to-image",
      "description": "SD1.5 text to image",
      "defaults": {"prompt": "a cat", "steps": 20, ...},    # placeholder name → default value
      "workflow": { "3": {"class_type": "KSampler", "inputs": {"seed": "%seed%", ...}}, ... }
    }

``workflow`` is a ComfyUI API-format prompt whose placeholders are whole strings ``"%name%"``.
A bare API-format workflow (what ComfyUI's "Save (API Format)" writes, or SillyTavern's workflow
files) and ComfyUI's ``{"prompt": {...}}`` body are accepted on import and wrapped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphengine.templates.errors import InvalidTemplate


@dataclass(frozen=True)
class Template:
    name: str
    workflow: dict[str, Any]
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "defaults": dict(self.defaults),
            "workflow": self.workflow,
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")

    def renamed(self, name: str) -> Template:
        return Template(name=name, workflow=self.workflow, description=self.description, defaults=self.defaults)


def parse_template_bytes(data: bytes, *, name: str | None = None) -> Template:
    """Parse a template file or an API-format workflow; raise ``InvalidTemplate`` with the reason."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidTemplate(f"template is not UTF-8 text: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidTemplate(f"template is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    return template_from_json(document, name=name)


def template_from_json(document: Any, *, name: str | None = None) -> Template:
    """Build a Template from a parsed document (template format, bare workflow, or ``{"prompt": …}``)."""
    if not isinstance(document, Mapping):
        raise InvalidTemplate("a template must be a JSON object")
    if "workflow" in document and isinstance(document.get("workflow"), Mapping):
        workflow = document["workflow"]
        description = document.get("description", "")
        defaults = document.get("defaults", {})
        doc_name = document.get("name")
        if not isinstance(description, str):
            raise InvalidTemplate("template 'description' must be a string")
        if not isinstance(defaults, Mapping):
            raise InvalidTemplate("template 'defaults' must be an object of placeholder name → value")
        for key, value in defaults.items():
            if not _is_scalar(value):
                raise InvalidTemplate(f"default for placeholder {key!r} must be a string, number or boolean")
        if doc_name is not None and not isinstance(doc_name, str):
            raise InvalidTemplate("template 'name' must be a string")
    elif "prompt" in document and isinstance(document.get("prompt"), Mapping) and _looks_like_workflow(document["prompt"]):
        workflow, description, defaults, doc_name = document["prompt"], "", {}, None
    else:
        workflow, description, defaults, doc_name = document, "", {}, None
    check_workflow_shape(workflow)
    final_name = name or doc_name or ""
    return Template(name=final_name, workflow=dict(workflow), description=description, defaults=dict(defaults))


def check_workflow_shape(workflow: Any) -> None:
    """An API-format workflow: an object of node id → {"class_type": str, "inputs": object}."""
    if not isinstance(workflow, Mapping):
        raise InvalidTemplate("the workflow must be a JSON object of node id → node")
    if "nodes" in workflow and "links" in workflow:
        raise InvalidTemplate(
            "this is ComfyUI's editor (UI) format; export the workflow with 'Save (API Format)' and import that"
        )
    if not workflow:
        raise InvalidTemplate("the workflow has no nodes")
    for node_id, node in workflow.items():
        if not isinstance(node, Mapping):
            raise InvalidTemplate(f"node {node_id!r} must be an object with 'class_type' and 'inputs'")
        if not isinstance(node.get("class_type"), str):
            raise InvalidTemplate(f"node {node_id!r} has no 'class_type' string")
        if not isinstance(node.get("inputs", {}), Mapping):
            raise InvalidTemplate(f"node {node_id!r}: 'inputs' must be an object")


def _looks_like_workflow(value: Mapping[str, Any]) -> bool:
    return all(isinstance(node, Mapping) and "class_type" in node for node in value.values())


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
