"""The per-client outgoing buffer policy: events keep their order, stale snapshots are coalesced when a
client falls behind, previews are dropped first, and a hopeless client is disconnected."""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocketState

from graphengine.http.ws import COALESCE_AFTER, EVENT, PREVIEW, ClientConnection


class NeverReads:
    """A websocket whose peer never reads: nothing is sent, closing is recorded."""

    application_state = WebSocketState.CONNECTED
    closed_with: int | None = None

    async def close(self, code: int = 1000) -> None:
        self.closed_with = code


def _texts(conn: ClientConnection) -> list[str]:
    return [entry[1] for entry in conn.buffer]


def test_order_coalescing_and_drop_policy() -> None:
    async def scenario() -> None:
        conn = ClientConnection("c", NeverReads(), max_messages=COALESCE_AFTER + 8, max_bytes=1 << 20)
        for n in range(COALESCE_AFTER):
            conn.offer(EVENT, f"event-{n}", 10)
        for n in range(5):  # behind: successive snapshots replace each other at the tail
            conn.offer(EVENT, f"progress-{n}", 10, supersedes="progress")
            conn.offer(EVENT, f"state-{n}", 10, supersedes="progress_state")
        assert _texts(conn)[-2:] == ["progress-4", "state-4"] and conn.coalesced == 8
        conn.offer(EVENT, "executing-next", 10)
        conn.offer(EVENT, "progress-5", 10, supersedes="progress")  # never jumps over a real event
        assert _texts(conn)[-3:] == ["state-4", "executing-next", "progress-5"]
        for n in range(3):
            conn.offer(PREVIEW, f"preview-{n}", 10)
        for n in range(6):  # over the limit: previews go first, then snapshots; events stay
            conn.offer(EVENT, f"late-{n}", 10)
        texts = _texts(conn)
        assert not any(t.startswith("preview") for t in texts)
        events = [t for t in texts if t.startswith(("event", "executing", "late"))]
        assert events == [f"event-{n}" for n in range(COALESCE_AFTER)] + ["executing-next"] + [f"late-{n}" for n in range(6)]
        assert len(conn.buffer) <= conn.max_messages and not conn.closed
        for n in range(10):  # only events left to drop: the client is cut off
            conn.offer(EVENT, f"flood-{n}", 10)
        assert conn.closed
        await asyncio.sleep(0)
        assert conn.websocket.closed_with == 1013

    asyncio.run(scenario())
