"""Error values: ComfyUI-shaped validation errors (build time) and execution failures (run time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NodeError:
    """One ComfyUI error object: ``{"type", "message", "details", "extra_info"}``."""

    type: str
    message: str
    details: str = ""
    extra_info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "details": self.details, "extra_info": self.extra_info}


class GraphEngineError(Exception):
    """Base of the errors graphengine raises on purpose."""


class WorkflowInvalid(GraphEngineError):
    """A workflow failed parsing or validation. ``body`` is ComfyUI's exact 400 response body."""

    def __init__(self, body: dict[str, Any]):
        self.body = body
        error = body.get("error", {})
        super().__init__(f"{error.get('message', 'invalid workflow')}: {error.get('details', '')}".rstrip(": "))


class Interrupted(GraphEngineError):
    """The running prompt was interrupted (raised from ``ctx.progress`` / ``ctx.check_interrupted``)."""


class NodeFailed(GraphEngineError):
    """A node raised while executing; carries what ComfyUI's ``execution_error`` event reports."""

    def __init__(self, node_id: str, node_type: str, exception: BaseException):
        self.node_id = node_id
        self.node_type = node_type
        self.exception = exception
        super().__init__(f"node {node_id} ({node_type}) failed: {type(exception).__name__}: {exception}")


class NodeInputError(GraphEngineError, ValueError):
    """A node rejects its input values with a message meant for the user (bad image, bad size, …)."""
