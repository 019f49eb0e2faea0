"""The narrow interface between the queue's dispatcher and whatever runs a prompt.

The dispatcher owns ordering, persistence and history; an executor only runs one job and reports
events through the sink it is given. ``InProcessExecutor`` runs jobs on the dispatcher's thread
through ``Engine.execute``. A per-GPU subprocess or Ray actor back-end implements the same protocol:
it receives the job's plain-JSON fields (``prompt``, ``outputs``, ``extra_data``), forwards events
back into ``sink`` and returns an ``ExecutionResult``; ``Job.validated`` is an in-process shortcut it
may ignore.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from graphengine.errors import WorkflowInvalid
from graphengine.events import EventSink, ExecutionError, ExecutionStart, now_ms

if TYPE_CHECKING:
    from graphengine.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One prompt to run: everything a remote executor needs is plain JSON."""

    prompt_id: str
    prompt: dict[str, Any]
    outputs: tuple[str, ...]
    extra_data: dict[str, Any]
    validated: Any = field(default=None, compare=False, repr=False)


class InterruptSignal(Protocol):
    """``graphengine.interrupt.InterruptFlag``'s surface as the queue uses it."""

    def request(self, prompt_id: str | None = None) -> None: ...

    def is_requested(self, prompt_id: str) -> bool: ...

    def clear(self) -> None: ...


@runtime_checkable
class ExecutionResult(Protocol):
    """What the dispatcher needs from a finished run (``graphengine.engine.Run`` satisfies it)."""

    status: str  # "success" | "error" | "interrupted"
    outputs: dict[str, Any]
    messages: list[list[Any]]
    meta: dict[str, Any]


@dataclass
class FailedRun:
    """The result of a job that could not even start (e.g. its prompt no longer validates)."""

    prompt_id: str
    status: str = "error"
    outputs: dict[str, Any] = field(default_factory=dict)
    messages: list[list[Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


class PromptExecutor(Protocol):
    """Runs one job at a time; must report through ``sink`` and never raise."""

    def execute(self, job: Job, sink: EventSink, interrupt: InterruptSignal) -> ExecutionResult: ...

    def free(self, *, unload_models: bool, free_memory: bool) -> None: ...


class InProcessExecutor:
    """Runs jobs on the calling (dispatcher) thread with ``Engine.execute``."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def execute(self, job: Job, sink: EventSink, interrupt: InterruptSignal) -> ExecutionResult:
        validated = job.validated
        if validated is None:  # restored after a restart, or handed over without the in-process handle
            try:
                validated = self.engine.validate(job.prompt, partial_execution_targets=list(job.outputs) or None)
            except WorkflowInvalid as exc:
                return failed_before_start(job, sink, "WorkflowInvalid", str(exc))
            except Exception as exc:  # noqa: BLE001 - reported to the client, the server keeps going
                log.exception("re-validating prompt %s failed", job.prompt_id)
                return failed_before_start(job, sink, type(exc).__name__, str(exc))
        try:
            return self.engine.execute(
                validated, prompt_id=job.prompt_id, extra_data=job.extra_data, sink=sink, interrupt=interrupt
            )
        except Exception as exc:  # noqa: BLE001 - Engine.execute promises not to raise; guard anyway
            log.exception("executing prompt %s raised", job.prompt_id)
            return failed_before_start(job, sink, type(exc).__name__, str(exc), trace=traceback.format_exc())

    def free(self, *, unload_models: bool, free_memory: bool) -> None:
        self.engine.free(unload_models=unload_models, free_memory=free_memory)


def failed_before_start(
    job: Job, sink: EventSink, exception_type: str, message: str, *, trace: str = ""
) -> FailedRun:
    """Report a job that failed outside any node: ``execution_start`` then ``execution_error``."""
    start = ExecutionStart(prompt_id=job.prompt_id)
    error = ExecutionError(
        prompt_id=job.prompt_id,
        exception_type=exception_type,
        exception_message=message,
        traceback=tuple(trace.splitlines()) if trace else (),
        timestamp=now_ms(),
    )
    for event in (start, error):
        try:
            sink.emit(event)
        except Exception:  # noqa: BLE001
            log.exception("event sink failed")
    return FailedRun(
        prompt_id=job.prompt_id,
        messages=[[start.type, start.data()], [error.type, error.data()]],
    )
