"""Template errors: rendering problems (reported in ComfyUI's error shape) and store failures (each
with the HTTP status the API answers)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphengine.errors import GraphEngineError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a template or its values, e.g. an unfilled placeholder.

    ``type`` is a short machine name (``unfilled_placeholder``, ``unknown_placeholder``,
    ``invalid_placeholder_value``, ``invalid_template``); ``node_id``/``input_name`` say where it
    sits when that is known.
    """

    type: str
    message: str
    details: str = ""
    placeholder: str | None = None
    node_id: str | None = None
    input_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.placeholder is not None:
            extra["placeholder"] = self.placeholder
        if self.input_name is not None:
            extra["input_name"] = self.input_name
        return {"type": self.type, "message": self.message, "details": self.details, "extra_info": extra}


class TemplateError(GraphEngineError):
    """A template could not be rendered. ``problems`` lists every reason at once."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = tuple(problems)
        text = "; ".join(f"{p.message}: {p.details}" if p.details else p.message for p in self.problems)
        super().__init__(text or "template error")

    def to_body(self, workflow: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """ComfyUI's 400 body: ``{"error": {...}, "node_errors": {node_id: {...}}}``."""
        node_errors: dict[str, Any] = {}
        general: list[Problem] = []
        for problem in self.problems:
            if problem.node_id is None:
                general.append(problem)
                continue
            node = (workflow or {}).get(problem.node_id)
            class_type = node.get("class_type") if isinstance(node, Mapping) else None
            entry = node_errors.setdefault(
                problem.node_id, {"errors": [], "dependent_outputs": [], "class_type": class_type}
            )
            entry["errors"].append(problem.to_json())
        first = self.problems[0] if self.problems else Problem("template_error", "template error")
        message = "Template could not be rendered" if node_errors else first.message
        details = "; ".join(
            f"{p.message}: {p.details}" if p.details else p.message for p in (general or self.problems)
        )
        return {
            "error": {
                "type": "template_error" if len(self.problems) != 1 else first.type,
                "message": message,
                "details": details,
                "extra_info": {"problems": [p.to_json() | {"node_id": p.node_id} for p in self.problems]},
            },
            "node_errors": node_errors,
        }


@dataclass(eq=False)
class StoreError(GraphEngineError):
    """A template store operation failed; ``status`` is the HTTP status the API answers with."""

    message: str
    status: int = 400
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class TemplateNotFound(StoreError):
    def __init__(self, name: str):
        super().__init__(f"no template named {name!r}", 404)


class TemplateReadOnly(StoreError):
    def __init__(self, name: str):
        super().__init__(f"template {name!r} is bundled with graphengine and read-only; save a copy under a new name", 403)


class TemplateExists(StoreError):
    def __init__(self, name: str):
        super().__init__(f"a template named {name!r} already exists", 409)


class TemplateConflict(StoreError):
    """The template changed since the client read it (``If-Match`` does not match the current ETag)."""

    def __init__(self, name: str, current_etag: str | None):
        super().__init__(
            f"template {name!r} was changed by someone else; reload it and apply your edit again",
            412,
            {"current_etag": current_etag},
        )


class TemplateTooLarge(StoreError):
    def __init__(self, size: int, limit: int):
        super().__init__(f"template is {size} bytes; the limit is {limit} bytes", 413)


class InvalidTemplateName(StoreError):
    def __init__(self, name: str, reason: str):
        super().__init__(f"invalid template name {name!r}: {reason}", 400)


class InvalidTemplate(StoreError):
    """The template document itself is malformed (bad JSON, not an API-format workflow, …)."""

    def __init__(self, message: str):
        super().__init__(message, 400)
