"""Progress derived from execution events: ``progress_state`` messages and the pollable snapshot.

The executor reports ``executing``/``progress``/``executed``/terminal events; ComfyUI clients also
expect ``progress_state`` (a snapshot of every started node of the prompt) around them. The tracker
turns one executor event into the ordered list of events the clients receive.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

from graphengine.events import (
    Event,
    Executed,
    Executing,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    PreviewImage,
    Progress,
)


@dataclass(frozen=True)
class ProgressState(Event):
    """ComfyUI's ``progress_state``: ``{prompt_id, nodes: {id: {value, max, state, …}}}``."""

    type: ClassVar[str] = "progress_state"
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "nodes": self.nodes}


@dataclass(frozen=True)
class ProgressSnapshot:
    """What ``/sdapi/v1/progress``-style pollers need, without a websocket."""

    running_prompt_id: str | None
    node: str | None
    value: int
    max: int
    queue_remaining: int
    preview_png: bytes | None


class ProgressTracker:
    """Per-prompt node states; thread-safe reads for snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prompt_id: str | None = None
        self._nodes: dict[str, dict[str, Any]] = {}
        self._running: str | None = None
        self._value = 0
        self._max = 1
        self._preview: PreviewImage | None = None

    def begin(self, prompt_id: str) -> None:
        with self._lock:
            self._prompt_id = prompt_id
            self._nodes = {}
            self._running = None
            self._value, self._max = 0, 1
            self._preview = None

    def end(self) -> None:
        with self._lock:
            self._prompt_id = None
            self._nodes = {}
            self._running = None
            self._preview = None

    def expand(self, event: Event) -> list[Event]:
        """The events clients receive for one executor event, in order."""
        with self._lock:
            if isinstance(event, ExecutionStart):
                return [event]
            if isinstance(event, Executing) and event.node is not None:
                out = self._finish_running(event.prompt_id)
                self._running = event.node
                self._value, self._max = 0, 1
                self._nodes[event.node] = self._node_state(event.prompt_id, event.node, 0, 1, "running")
                self._nodes[event.node]["display_node_id"] = event.display_node or event.node
                out.append(self._state_event(event.prompt_id))
                out.append(event)
                return out
            if isinstance(event, Progress):
                value = min(event.value, event.max)
                self._value, self._max = value, event.max
                state = self._nodes.get(event.node)
                if state is None:
                    state = self._nodes[event.node] = self._node_state(event.prompt_id, event.node, 0, 1, "running")
                state.update(value=float(value), max=float(event.max))
                return [event, self._state_event(event.prompt_id)]
            if isinstance(event, PreviewImage) and not event.is_result:
                self._preview = event
                return [event]
            if isinstance(event, ExecutionSuccess):
                out = self._finish_running(event.prompt_id)
                out.append(event)
                return out
            if isinstance(event, (ExecutionError, ExecutionInterrupted)):
                out = []
                node = event.node_id or self._running
                if node and node in self._nodes:
                    self._nodes[node]["state"] = "error"
                    out.append(self._state_event(event.prompt_id))
                self._running = None
                out.append(event)
                return out
            if isinstance(event, Executed):
                return [event]
            return [event]

    def _finish_running(self, prompt_id: str) -> list[Event]:
        node = self._running
        if node is None or node not in self._nodes:
            return []
        state = self._nodes[node]
        state.update(state="finished", value=state["max"])
        self._running = None
        return [self._state_event(prompt_id)]

    @staticmethod
    def _node_state(prompt_id: str, node: str, value: float, maximum: float, state: str) -> dict[str, Any]:
        return {
            "value": float(value),
            "max": float(maximum),
            "state": state,
            "node_id": node,
            "prompt_id": prompt_id,
            "display_node_id": node,
            "parent_node_id": None,
            "real_node_id": node,
        }

    def _state_event(self, prompt_id: str) -> ProgressState:
        return ProgressState(prompt_id=prompt_id, nodes={k: dict(v) for k, v in self._nodes.items()})

    def snapshot(self, queue_remaining: int, *, encode_preview: Any = None) -> ProgressSnapshot:
        with self._lock:
            preview = self._preview
            result = ProgressSnapshot(
                running_prompt_id=self._prompt_id,
                node=self._running,
                value=self._value,
                max=self._max,
                queue_remaining=queue_remaining,
                preview_png=None,
            )
        if preview is not None and encode_preview is not None:
            try:
                png = encode_preview(preview.image)
            except Exception:  # noqa: BLE001 - a broken preview must not break polling
                png = None
            result = ProgressSnapshot(**{**result.__dict__, "preview_png": png})
        return result

    def running_node(self) -> tuple[str | None, str | None]:
        with self._lock:
            return self._prompt_id, self._running
