"""PromptQueue: submission, priority order, delete/clear, interrupt, history and the dispatcher thread.

State lives in memory for speed (a heap of pending items, the history as JSON text) and in SQLite for
durability; both change under one lock so readers never see a prompt missing from both the queue and
the history. Events from the executor are expanded (``progress_state``) and handed to an observer
(the websocket hub); the observer must return quickly and must not call back into the queue's lock.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from graphengine.errors import WorkflowInvalid
from graphengine.events import Event, Executing, ExecutionStart, now_ms
from graphengine.queue.executor import ExecutionResult, InterruptSignal, Job, PromptExecutor
from graphengine.queue.history import failed_entry, history_entry, interrupted_by_crash_entry
from graphengine.queue.items import SENSITIVE_EXTRA_DATA_KEYS, QueueItem, Submitted
from graphengine.queue.progress import ProgressSnapshot, ProgressTracker
from graphengine.queue.store import QueueStore, dumps_entry

log = logging.getLogger(__name__)

PROMPT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
DEFAULT_MAX_HISTORY = 10_000


class Validator(Protocol):
    """``Engine.validate``'s surface."""

    def validate(self, prompt: Any, partial_execution_targets: Sequence[str] | None = None) -> Any: ...


class QueueObserver(Protocol):
    """Receives queue changes and prompt events (from any thread); must not block."""

    def queue_changed(self, queue_remaining: int) -> None: ...

    def prompt_event(self, event: Event, client_id: str | None) -> None: ...


class _NoObserver:
    def queue_changed(self, queue_remaining: int) -> None:
        return None

    def prompt_event(self, event: Event, client_id: str | None) -> None:
        return None


def invalid_request(kind: str, message: str, details: str = "") -> WorkflowInvalid:
    return WorkflowInvalid(
        {"error": {"type": kind, "message": message, "details": details or message, "extra_info": {}}, "node_errors": {}}
    )


class PromptQueue:
    """The durable queue of one server. Call ``start()`` to restore state and run the dispatcher."""

    def __init__(
        self,
        database: Path,
        *,
        validator: Validator,
        executor: PromptExecutor,
        interrupt: InterruptSignal,
        observer: QueueObserver | None = None,
        max_history: int = DEFAULT_MAX_HISTORY,
    ):
        self._store = QueueStore(database)
        self._validator = validator
        self._executor = executor
        self._interrupt = interrupt
        self.observer: QueueObserver = observer or _NoObserver()
        self._max_history = max_history
        self._lock = threading.RLock()
        self._wakeup = threading.Condition(self._lock)
        self._pending: dict[str, QueueItem] = {}
        self._heap: list[tuple[tuple[float, str], int, str]] = []
        self._running: QueueItem | None = None
        self._history: dict[str, str] = {}  # prompt_id -> entry JSON text, oldest first
        self._whole_history: str | None = None  # cached GET /history body; None after any change
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]]] = {}
        self._counter = 0
        self._seq = 0
        self._free_request: tuple[bool, bool] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._progress = ProgressTracker()
        self._interrupt_requested: set[str] = set()  # survives the executor's reset of the flag at start
        self._restore()

    # ------------------------------------------------------------------ lifecycle

    def _restore(self) -> None:
        state = self._store.restore()
        self._counter = state.counter
        self._seq = state.seq
        for pid, text in state.history:
            self._history[pid] = text
        for item in state.pending:
            self._push(item)
        for item in state.interrupted:
            text = dumps_entry(interrupted_by_crash_entry(item, now_ms()))
            self._store.finish(item.prompt_id, text)
            self._history[item.prompt_id] = text
            self._whole_history = None
        if state.pending:
            log.info("restored %d pending prompt(s) from %s", len(state.pending), self._store.path)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._dispatch_loop, name="graphengine-dispatcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop: the running prompt is interrupted and handed back to the pending queue (it runs again
        after a restart, in its place); pending items stay in the database."""
        with self._lock:
            self._stopping = True
            running = self._running
            self._wakeup.notify_all()
        if running is not None:
            self._interrupt.request(running.prompt_id)
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    def close(self) -> None:
        self.stop()
        self._store.close()

    # ------------------------------------------------------------------ submission

    def submit(
        self,
        prompt: Any,
        *,
        client_id: str | None = None,
        extra_data: Mapping[str, Any] | None = None,
        number: float | int | None = None,
        front: bool = False,
        prompt_id: str | None = None,
        partial_execution_targets: Sequence[str] | None = None,
    ) -> Submitted:
        """Validate and enqueue; raises ``WorkflowInvalid`` (ComfyUI's 400 body) when rejected."""
        with self._lock:
            if number is None:
                number = -self._counter if front else self._counter
                self._counter += 1
        if prompt_id is not None and (not isinstance(prompt_id, str) or not PROMPT_ID_PATTERN.match(prompt_id)):
            raise invalid_request(
                "invalid_prompt_id",
                "Invalid prompt_id",
                "prompt_id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'",
            )
        validated = self._validator.validate(prompt, partial_execution_targets=partial_execution_targets)
        extra = {k: v for k, v in dict(extra_data or {}).items() if k not in SENSITIVE_EXTRA_DATA_KEYS}
        if client_id is not None:
            extra["client_id"] = client_id
        extra.setdefault("create_time", now_ms())
        pid = prompt_id or str(uuid.uuid4())
        item = QueueItem(
            number=number,
            prompt_id=pid,
            prompt=validated.prompt,
            extra_data=extra,
            outputs=list(validated.outputs),
            validated=validated,
        )
        with self._lock:
            if pid in self._pending or pid in self._history or (self._running and self._running.prompt_id == pid):
                raise invalid_request("invalid_prompt_id", "Duplicate prompt_id", f"prompt_id {pid!r} is already in use")
            self._seq += 1
            item.seq = self._seq
            self._store.add(item, counter=self._counter)
            self._push(item)
            self._wakeup.notify_all()
            remaining = self._remaining_locked()
        self.observer.queue_changed(remaining)
        return Submitted(prompt_id=pid, number=number, node_errors=dict(validated.node_errors or {}))

    def _push(self, item: QueueItem) -> None:
        self._pending[item.prompt_id] = item
        heapq.heappush(self._heap, (item.sort_key, item.seq, item.prompt_id))

    def _pop_locked(self) -> QueueItem | None:
        while self._heap:
            _, seq, pid = heapq.heappop(self._heap)
            item = self._pending.get(pid)
            if item is not None and item.seq == seq:
                del self._pending[pid]
                return item
        return None

    # ------------------------------------------------------------------ reading the queue

    def _remaining_locked(self) -> int:
        return len(self._pending) + (1 if self._running is not None else 0)

    @property
    def queue_remaining(self) -> int:
        with self._lock:
            return self._remaining_locked()

    def pending_items(self) -> list[QueueItem]:
        """Pending items in run order (a sorted array is also a valid heap order, as ComfyUI returns)."""
        with self._lock:
            items = list(self._pending.values())
        items.sort(key=lambda item: item.sort_key)
        return items

    def running_item(self) -> QueueItem | None:
        with self._lock:
            return self._running

    def queue_json_text(self) -> str:
        """The ``GET /queue`` body as JSON text, from each item's cached serialization."""
        running = self.running_item()
        pending = ",".join(item.json_text() for item in self.pending_items())
        return f'{{"queue_running":[{running.json_text() if running else ""}],"queue_pending":[{pending}]}}'

    def queue_json(self) -> dict[str, list[Any]]:
        running = self.running_item()
        return {
            "queue_running": [running.to_json()] if running else [],
            "queue_pending": [item.to_json() for item in self.pending_items()],
        }

    def state_of(self, prompt_id: str) -> str | None:
        """"pending", "running", "finished" or None when unknown."""
        with self._lock:
            if prompt_id in self._pending:
                return "pending"
            if self._running is not None and self._running.prompt_id == prompt_id:
                return "running"
            if prompt_id in self._history:
                return "finished"
        return None

    # ------------------------------------------------------------------ changing the queue

    def delete(self, prompt_ids: Sequence[str]) -> list[str]:
        """Remove pending items (the running one is unaffected: use ``interrupt``)."""
        with self._lock:
            removed = [pid for pid in prompt_ids if pid in self._pending]
            if not removed:
                return []
            self._store.remove(removed)
            for pid in removed:
                del self._pending[pid]
            self._heap = [entry for entry in self._heap if entry[2] in self._pending]
            heapq.heapify(self._heap)
            waiters = [w for pid in removed for w in self._waiters.pop(pid, [])]
            remaining = self._remaining_locked()
        _reject_waiters(waiters, "the prompt was deleted from the queue")
        self.observer.queue_changed(remaining)
        return removed

    def clear(self) -> None:
        with self._lock:
            removed = list(self._pending)
        self.delete(removed)
        if not removed:
            self.observer.queue_changed(self.queue_remaining)

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt; with ``prompt_id``, only if that prompt is the one running.

        Returns whether an interrupt was requested. Never affects a prompt that starts later.
        """
        with self._lock:
            running = self._running
            if running is None or (prompt_id is not None and running.prompt_id != prompt_id):
                return False
            self._interrupt_requested.add(running.prompt_id)
            self._interrupt.request(running.prompt_id)
        return True

    def _reassert_interrupt(self, prompt_id: str) -> None:
        """An interrupt that arrived between dequeue and the executor's flag reset still counts."""
        with self._lock:
            if prompt_id in self._interrupt_requested:
                self._interrupt.request(prompt_id)

    def request_free(self, *, unload_models: bool, free_memory: bool) -> None:
        """Unload models / reset caches after the running prompt (or right away when idle)."""
        if not (unload_models or free_memory):
            return
        with self._lock:
            previous = self._free_request or (False, False)
            self._free_request = (previous[0] or unload_models, previous[1] or free_memory)
            self._wakeup.notify_all()

    # ------------------------------------------------------------------ history

    def history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        with self._lock:
            text = self._history.get(prompt_id)
        return json.loads(text) if text is not None else None

    def history_json(self, max_items: int | None = None, offset: int = -1, prompt_id: str | None = None) -> str:
        """The ``GET /history`` body as JSON text (ComfyUI's max_items/offset semantics)."""
        with self._lock:
            whole = prompt_id is None and max_items is None and offset < 0
            if whole and self._whole_history is not None:
                return self._whole_history  # SillyTavern polls the full history every 100 ms
            if prompt_id is not None:
                text = self._history.get(prompt_id)
                pairs = [(prompt_id, text)] if text is not None else []
            else:
                ids = list(self._history)
                if offset < 0 and max_items is not None:
                    offset = len(ids) - max_items
                start = max(offset, 0)
                end = len(ids) if max_items is None else start + max(max_items, 0)
                pairs = [(pid, self._history[pid]) for pid in ids[start:end]]
            body = "{" + ",".join(f"{json.dumps(pid)}:{text}" for pid, text in pairs) + "}"
            if whole:
                self._whole_history = body
            return body

    def history_items(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._history.items())

    def delete_history(self, prompt_ids: Sequence[str]) -> None:
        with self._lock:
            present = [pid for pid in prompt_ids if pid in self._history]
            self._store.delete_history(present)
            for pid in present:
                del self._history[pid]
            self._whole_history = None

    def clear_history(self) -> None:
        with self._lock:
            self._store.clear_history()
            self._history.clear()
            self._whole_history = None

    async def wait(self, prompt_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The history entry once the prompt has finished. KeyError if unknown or deleted."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            text = self._history.get(prompt_id)
            if text is None:
                if self.state_of(prompt_id) is None:
                    raise KeyError(prompt_id)
                self._waiters.setdefault(prompt_id, []).append((loop, future))
        if text is not None:
            return json.loads(text)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            with self._lock:
                waiters = self._waiters.get(prompt_id)
                if waiters:
                    waiters[:] = [w for w in waiters if w[1] is not future]
                    if not waiters:
                        del self._waiters[prompt_id]

    def progress(self) -> ProgressSnapshot:
        return self._progress.snapshot(self.queue_remaining, encode_preview=_png_bytes)

    def running_node(self) -> tuple[str | None, str | None]:
        """(running prompt id, node currently executing) for reconnecting websocket clients."""
        return self._progress.running_node()

    # ------------------------------------------------------------------ dispatcher

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._pending and self._free_request is None:
                    self._wakeup.wait()
                if self._stopping:
                    return
                free = self._free_request
                self._free_request = None
                item = None if free is not None else self._pop_locked()
                if item is not None:
                    self._running = item
                    self._store.mark_running(item.prompt_id)
                    remaining = self._remaining_locked()
            if free is not None:
                self._free(free)
                continue
            if item is None:
                continue
            self.observer.queue_changed(remaining)
            try:
                self._run_one(item)
            except Exception:  # noqa: BLE001 - the dispatcher must survive anything one prompt does
                log.exception("dispatching prompt %s failed", item.prompt_id)
                self._finish_broken(item)

    def _free(self, request: tuple[bool, bool]) -> None:
        unload_models, free_memory = request
        try:
            self._executor.free(unload_models=unload_models or free_memory, free_memory=free_memory)
        except Exception:  # noqa: BLE001
            log.exception("freeing memory failed")

    def _run_one(self, item: QueueItem) -> None:
        started = time.perf_counter()
        self._progress.begin(item.prompt_id)
        self._interrupt.clear()
        job = Job(
            prompt_id=item.prompt_id,
            prompt=item.prompt,
            outputs=tuple(item.outputs),
            extra_data=item.extra_data,
            validated=item.validated,
        )
        sink = _QueueSink(self._progress, self, item)
        result: ExecutionResult = self._executor.execute(job, sink, self._interrupt)
        item.validated = None
        if result.status == "interrupted" and self._interrupted_by_stop(item):
            self._hand_back(item)
            return
        try:
            entry_text = dumps_entry(history_entry(item, result))
        except (TypeError, ValueError) as exc:  # a node put something unserializable into its UI
            log.error("history of prompt %s is not JSON-serializable: %s", item.prompt_id, exc)
            entry_text = dumps_entry(failed_entry(item, f"the prompt's outputs could not be recorded: {exc}"))
        self._record(item, entry_text, result.status, started)

    def _interrupted_by_stop(self, item: QueueItem) -> bool:
        with self._lock:
            return self._stopping and item.prompt_id not in self._interrupt_requested

    def _hand_back(self, item: QueueItem) -> None:
        """A graceful stop interrupted this prompt: back to the pending queue in its place, to run again
        after the restart, rather than into history as a failure the user never asked for."""
        with self._lock:
            self._store.mark_pending(item.prompt_id)
            self._push(item)
            self._running = None
            self._progress.end()
            waiters = self._waiters.pop(item.prompt_id, [])
        _reject_waiters(waiters, f"the server stopped; prompt {item.prompt_id} runs again after a restart")
        log.info("prompt %s handed back to the queue: the server is stopping", item.prompt_id)

    def _finish_broken(self, item: QueueItem) -> None:
        """Record a prompt whose dispatch raised, so it never stays 'running' forever."""
        with self._lock:
            if self._running is None or self._running.prompt_id != item.prompt_id:
                return
        try:
            entry = failed_entry(item, "internal error while running the prompt (see the server log)")
            self._record(item, dumps_entry(entry), "error", time.perf_counter())
        except Exception:  # noqa: BLE001 - e.g. the database is unwritable: at least free the slot
            log.exception("could not record the failure of prompt %s", item.prompt_id)
            with self._lock:
                self._running = None
                self._progress.end()

    def _record(self, item: QueueItem, entry_text: str, status: str, started: float) -> None:
        with self._lock:
            evict: list[str] = []
            overflow = len(self._history) + 1 - self._max_history
            if overflow > 0:
                evict = list(self._history)[:overflow]
            self._store.finish(item.prompt_id, entry_text, evict=evict)
            for pid in evict:
                del self._history[pid]
            self._history[item.prompt_id] = entry_text
            self._whole_history = None
            self._running = None
            self._interrupt_requested.discard(item.prompt_id)
            self._progress.end()
            waiters = self._waiters.pop(item.prompt_id, [])
            remaining = self._remaining_locked()
        self.observer.queue_changed(remaining)
        self.observer.prompt_event(Executing(prompt_id=item.prompt_id, node=None), item.client_id)
        if waiters:
            entry = json.loads(entry_text)
            for loop, future in waiters:
                loop.call_soon_threadsafe(_resolve, future, entry)
        log.info("prompt %s %s in %.2f s", item.prompt_id, status, time.perf_counter() - started)


class _QueueSink:
    """The sink a job reports into: adds progress_state, routes to the observer with the client id."""

    def __init__(self, tracker: ProgressTracker, queue: PromptQueue, item: QueueItem):
        self._tracker = tracker
        self._queue = queue
        self._client_id = item.client_id

    def emit(self, event: Event) -> None:
        try:
            if isinstance(event, ExecutionStart):
                self._queue._reassert_interrupt(event.prompt_id)
            for expanded in self._tracker.expand(event):
                self._queue.observer.prompt_event(expanded, self._client_id)
        except Exception:  # noqa: BLE001 - a sink must never raise into the executor
            log.exception("dispatching event %s failed", getattr(event, "type", event))


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _reject(future: asyncio.Future[Any], message: str) -> None:
    if not future.done():
        future.set_exception(KeyError(message))


def _reject_waiters(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]], message: str) -> None:
    for loop, future in waiters:
        loop.call_soon_threadsafe(_reject, future, message)


def _png_bytes(image: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
