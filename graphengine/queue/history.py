"""ComfyUI history entries, built from a queue item and the executor's result."""

from __future__ import annotations

from typing import Any

from graphengine.events import now_ms
from graphengine.queue.executor import ExecutionResult
from graphengine.queue.items import QueueItem


def history_entry(item: QueueItem, result: ExecutionResult) -> dict[str, Any]:
    """``{"prompt": [5 items], "outputs", "status": {status_str, completed, messages}, "meta"}``."""
    success = result.status == "success"
    return {
        "prompt": item.to_json(),
        "outputs": dict(result.outputs or {}),
        "status": {
            "status_str": "success" if success else "error",
            "completed": success,
            "messages": [list(message) for message in (result.messages or [])],
        },
        "meta": dict(result.meta or {}),
    }


def interrupted_by_crash_entry(item: QueueItem, timestamp: int) -> dict[str, Any]:
    """The entry of a prompt that was running during two crashes in a row: it is not retried again."""
    return failed_entry(
        item,
        "the server stopped while this prompt was running (it had already been retried once)",
        exception_type="ServerRestarted",
        timestamp=timestamp,
    )


def failed_entry(item: QueueItem, message: str, *, exception_type: str = "ServerError",
                 timestamp: int | None = None) -> dict[str, Any]:
    """An error entry for a prompt that failed outside any node."""
    data = {
        "prompt_id": item.prompt_id,
        "node_id": "",
        "node_type": "",
        "executed": [],
        "exception_message": message,
        "exception_type": exception_type,
        "traceback": [],
        "current_inputs": {},
        "current_outputs": [],
        "timestamp": timestamp if timestamp is not None else now_ms(),
    }
    return {
        "prompt": item.to_json(),
        "outputs": {},
        "status": {"status_str": "error", "completed": False, "messages": [["execution_error", data]]},
        "meta": {},
    }
