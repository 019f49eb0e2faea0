"""Typed execution events and the one sink interface the executor reports through.

Event names and data fields are ComfyUI's websocket protocol (reference §3.2); ``data()`` gives the
wire ``data`` object, which is also what history ``status.messages`` records.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = ""
    prompt_id: str

    def data(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_message(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data()}


@dataclass(frozen=True)
class ExecutionStart(Event):
    type: ClassVar[str] = "execution_start"
    timestamp: int = field(default_factory=now_ms)

    def data(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "timestamp": self.timestamp}


@dataclass(frozen=True)
class ExecutionCached(Event):
    type: ClassVar[str] = "execution_cached"
    nodes: tuple[str, ...] = ()
    timestamp: int = field(default_factory=now_ms)

    def data(self) -> dict[str, Any]:
        return {"nodes": list(self.nodes), "prompt_id": self.prompt_id, "timestamp": self.timestamp}


@dataclass(frozen=True)
class Executing(Event):
    """A node starts computing; ``node=None`` is the terminal "prompt finished" signal."""

    type: ClassVar[str] = "executing"
    node: str | None = None
    display_node: str | None = None

    def data(self) -> dict[str, Any]:
        if self.node is None:
            return {"node": None, "prompt_id": self.prompt_id}
        return {"node": self.node, "display_node": self.display_node or self.node, "prompt_id": self.prompt_id}


@dataclass(frozen=True)
class Progress(Event):
    type: ClassVar[str] = "progress"
    node: str = ""
    value: int = 0
    max: int = 1

    def data(self) -> dict[str, Any]:
        return {"value": self.value, "max": self.max, "prompt_id": self.prompt_id, "node": self.node}


@dataclass(frozen=True)
class Executed(Event):
    type: ClassVar[str] = "executed"
    node: str = ""
    display_node: str | None = None
    output: dict[str, Any] | None = None

    def data(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "display_node": self.display_node or self.node,
            "output": self.output,
            "prompt_id": self.prompt_id,
        }


@dataclass(frozen=True)
class ExecutionSuccess(Event):
    type: ClassVar[str] = "execution_success"
    timestamp: int = field(default_factory=now_ms)

    def data(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "timestamp": self.timestamp}


@dataclass(frozen=True)
class ExecutionError(Event):
    type: ClassVar[str] = "execution_error"
    node_id: str = ""
    node_type: str = ""
    executed: tuple[str, ...] = ()
    exception_message: str = ""
    exception_type: str = ""
    traceback: tuple[str, ...] = ()
    current_inputs: dict[str, Any] = field(default_factory=dict)
    current_outputs: tuple[str, ...] = ()
    timestamp: int = field(default_factory=now_ms)

    def data(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "executed": list(self.executed),
            "exception_message": self.exception_message,
            "exception_type": self.exception_type,
            "traceback": list(self.traceback),
            "current_inputs": self.current_inputs,
            "current_outputs": list(self.current_outputs),
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True)
class ExecutionInterrupted(Event):
    type: ClassVar[str] = "execution_interrupted"
    node_id: str = ""
    node_type: str = ""
    executed: tuple[str, ...] = ()
    timestamp: int = field(default_factory=now_ms)

    def data(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "executed": list(self.executed),
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True)
class PreviewImage(Event):
    """An image for binary websocket frames: a sampler preview or a SaveImageWebsocket result.

    ``image`` is a PIL image; transports encode it (JPEG/PNG) and fit it into ``max_size`` if set.
    ``is_result`` marks images that are results (SaveImageWebsocket), which clients get even if they
    did not opt into latent previews.
    """

    type: ClassVar[str] = "preview_image"
    node: str = ""
    image: Any = None
    image_format: str = "JPEG"
    max_size: int | None = None
    is_result: bool = False

    def data(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "node": self.node, "image_format": self.image_format}


class EventSink(Protocol):
    """Receives events from the executor's thread. Must return quickly and never raise."""

    def emit(self, event: Event) -> None: ...


class NullSink:
    def emit(self, event: Event) -> None:
        return None


class ListSink:
    """Collects events in order (tests, headless runs)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of_type(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class FanoutSink:
    def __init__(self, sinks: Iterable[EventSink]):
        self.sinks = tuple(sinks)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(event)
