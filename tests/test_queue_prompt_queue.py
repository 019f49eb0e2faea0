"""PromptQueue with the real Engine and a real SQLite file: order, persistence, crash recovery, waits."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from graphengine.engine import Engine, build_environment
from graphengine.errors import WorkflowInvalid
from graphengine.events import Event
from graphengine.interrupt import InterruptFlag
from graphengine.queue import InProcessExecutor, PromptQueue
from tests.http_harness import text_prompt


class Observer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[str, object]] = []

    def queue_changed(self, queue_remaining: int) -> None:
        with self.lock:
            self.log.append(("status", queue_remaining))

    def prompt_event(self, event: Event, client_id: str | None) -> None:
        with self.lock:
            self.log.append((event.type, event.data()))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    env = build_environment(tmp_path / "data", tmp_path / "models", models=None)
    return Engine(packs=["tests.server_nodes"], env=env)


def make_queue(tmp_path: Path, engine: Engine, **kwargs) -> tuple[PromptQueue, Observer]:
    observer = Observer()
    queue = PromptQueue(tmp_path / "queue.sqlite3", validator=engine, executor=InProcessExecutor(engine),
                        interrupt=InterruptFlag(), observer=observer, **kwargs)
    return queue, observer


def test_priority_order_persists_across_reopen(tmp_path: Path, engine: Engine) -> None:
    queue, _ = make_queue(tmp_path, engine)
    a = queue.submit(text_prompt("a"))
    b = queue.submit(text_prompt("b"), client_id="c1", extra_data={"api_key_comfy_org": "secret", "k": 1})
    c = queue.submit(text_prompt("c"), front=True)
    d = queue.submit(text_prompt("d"), number=0.5)
    assert (a.number, b.number, c.number, d.number) == (0, 1, -2, 0.5)
    order = [item.prompt_id for item in queue.pending_items()]
    assert order == [c.prompt_id, a.prompt_id, d.prompt_id, b.prompt_id]
    assert json.loads(queue.queue_json_text()) == queue.queue_json()
    assert [item[1] for item in queue.queue_json()["queue_pending"]] == order
    queue.close()
    assert b"secret" not in (tmp_path / "queue.sqlite3").read_bytes()  # sensitive keys never stored

    reopened, _ = make_queue(tmp_path, engine)
    assert [item.prompt_id for item in reopened.pending_items()] == order
    item_b = next(item for item in reopened.pending_items() if item.prompt_id == b.prompt_id)
    assert item_b.extra_data["client_id"] == "c1" and item_b.extra_data["k"] == 1
    assert "api_key_comfy_org" not in item_b.extra_data
    assert reopened.submit(text_prompt("e")).number == 3  # the counter survives restarts
    reopened.close()


def test_invalid_prompt_raises_comfy_body_and_queues_nothing(tmp_path: Path, engine: Engine) -> None:
    queue, observer = make_queue(tmp_path, engine)
    with pytest.raises(WorkflowInvalid) as info:
        queue.submit({"1": {"class_type": "Missing", "inputs": {}}})
    assert "error" in info.value.body and "node_errors" in info.value.body
    assert queue.pending_items() == [] and observer.log == []
    queue.close()


def test_crashed_running_prompt_is_requeued_once(tmp_path: Path, engine: Engine) -> None:
    queue, _ = make_queue(tmp_path, engine)
    first = queue.submit(text_prompt("first"))
    second = queue.submit(text_prompt("second"))
    queue._store.mark_running(first.prompt_id)  # what the dispatcher records before a crash
    queue._store.close()

    again, _ = make_queue(tmp_path, engine)
    pending = again.pending_items()
    assert [item.prompt_id for item in pending] == [first.prompt_id, second.prompt_id]
    assert pending[0].requeued == 1
    again._store.mark_running(first.prompt_id)  # it crashes the server a second time
    again._store.close()

    third, _ = make_queue(tmp_path, engine)
    assert [item.prompt_id for item in third.pending_items()] == [second.prompt_id]
    entry = third.history_entry(first.prompt_id)
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][0][1]["exception_type"] == "ServerRestarted"
    third.close()


def test_dispatcher_runs_in_order_history_before_terminal_event_and_wait(tmp_path: Path, engine: Engine) -> None:
    queue, observer = make_queue(tmp_path, engine, max_history=2)

    async def scenario() -> list[dict]:
        ids = [queue.submit(text_prompt(f"run-{n}", steps=2)).prompt_id for n in range(3)]
        queue.start()
        entries = [await queue.wait(pid, timeout=10) for pid in ids]
        return [ids, entries]

    ids, entries = asyncio.run(scenario())
    assert [e["outputs"]["1"]["text"][0] for e in entries] == ["run-0", "run-1", "run-2"]
    assert queue.history_entry(ids[0]) is None  # evicted: max_history=2
    assert [pid for pid, _ in queue.history_items()] == ids[1:]
    terminal = [i for i, (kind, data) in enumerate(observer.log) if kind == "executing" and data["node"] is None]
    assert len(terminal) == 3
    statuses = [value for kind, value in observer.log if kind == "status"]
    assert statuses[-1] == 0 and max(statuses) == 3
    for index in terminal:  # the status broadcast that empties the slot precedes the terminal event
        assert observer.log[index - 1][0] == "status"
    queue.close()
    reopened, _ = make_queue(tmp_path, engine, max_history=2)
    assert [pid for pid, _ in reopened.history_items()] == ids[1:]
    reopened.close()


def test_wait_for_deleted_or_unknown_prompt_raises(tmp_path: Path, engine: Engine) -> None:
    queue, _ = make_queue(tmp_path, engine)

    async def scenario() -> None:
        pid = queue.submit(text_prompt("never")).prompt_id
        waiter = asyncio.create_task(queue.wait(pid))
        await asyncio.sleep(0.01)
        queue.delete([pid])
        with pytest.raises(KeyError):
            await waiter
        with pytest.raises(KeyError):
            await queue.wait("unknown")

    asyncio.run(scenario())
    queue.close()


def test_progress_snapshot_and_targeted_interrupt(tmp_path: Path, engine: Engine) -> None:
    queue, _ = make_queue(tmp_path, engine)
    queue.start()
    slow = queue.submit(text_prompt("slow", steps=500, delay=0.01)).prompt_id
    other = queue.submit(text_prompt("other")).prompt_id
    deadline = time.monotonic() + 10
    while queue.progress().value < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    snapshot = queue.progress()
    assert snapshot.running_prompt_id == slow and snapshot.node == "1" and snapshot.max == 500
    assert snapshot.queue_remaining == 2
    assert queue.interrupt(other) is False  # not running: no-op
    assert queue.interrupt(slow) is True

    async def outcome() -> tuple[dict, dict]:
        return await queue.wait(slow, timeout=10), await queue.wait(other, timeout=10)

    slow_entry, other_entry = asyncio.run(outcome())
    assert slow_entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert other_entry["status"]["status_str"] == "success"
    assert queue.progress().running_prompt_id is None
    queue.close()


def test_graceful_stop_hands_the_running_prompt_back_to_the_queue(tmp_path: Path, engine: Engine) -> None:
    """Stopping the server (Ctrl-C, SIGTERM) interrupts the running prompt but does not lose it: after a
    restart it is pending again, in its place, not an error in history; a user's interrupt still ends it."""
    queue, _ = make_queue(tmp_path, engine)
    queue.start()
    slow = queue.submit(text_prompt("slow", steps=500, delay=0.01)).prompt_id
    later = queue.submit(text_prompt("later")).prompt_id
    deadline = time.monotonic() + 10
    while queue.progress().value < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queue.state_of(slow) == "running"
    queue.close()

    reopened, _ = make_queue(tmp_path, engine)
    pending = reopened.pending_items()
    assert [item.prompt_id for item in pending] == [slow, later]
    assert pending[0].requeued == 0  # a graceful stop is not a crash
    assert reopened.history_entry(slow) is None

    reopened.start()

    async def outcome() -> dict:
        return await reopened.wait(slow, timeout=20)

    deadline = time.monotonic() + 10
    while reopened.state_of(slow) != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reopened.interrupt(slow) is True  # the user's own interrupt is final
    entry = asyncio.run(outcome())
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    reopened.close()


class ExplodingExecutor:
    """A back-end that breaks its promise never to raise (e.g. a crashed worker process)."""

    def __init__(self, inner: InProcessExecutor):
        self.inner = inner

    def execute(self, job, sink, interrupt):  # noqa: ANN001 - PromptExecutor protocol
        if job.prompt["1"]["inputs"]["text"] == "explode":
            raise RuntimeError("worker died")
        return self.inner.execute(job, sink, interrupt)

    def free(self, *, unload_models: bool, free_memory: bool) -> None:
        self.inner.free(unload_models=unload_models, free_memory=free_memory)


def test_dispatcher_survives_a_failing_executor(tmp_path: Path, engine: Engine) -> None:
    queue = PromptQueue(tmp_path / "q.sqlite3", validator=engine, executor=ExplodingExecutor(InProcessExecutor(engine)),
                        interrupt=InterruptFlag())
    queue.start()

    async def scenario() -> tuple[dict, dict]:
        broken = queue.submit(text_prompt("explode")).prompt_id
        fine = queue.submit(text_prompt("fine")).prompt_id
        return await queue.wait(broken, timeout=10), await queue.wait(fine, timeout=10)

    broken_entry, fine_entry = asyncio.run(scenario())
    assert broken_entry["status"]["status_str"] == "error"
    assert broken_entry["status"]["messages"][-1][1]["exception_type"] == "ServerError"
    assert fine_entry["status"]["status_str"] == "success"
    queue.close()
