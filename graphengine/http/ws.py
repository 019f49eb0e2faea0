"""The websocket hub: ComfyUI's ``/ws`` protocol with per-client routing and bounded buffers.

Events arrive from the dispatcher thread (``QueueObserver``) and are handed to the event loop with
``call_soon_threadsafe``, so execution never waits for a socket. Each connection has its own bounded
outgoing buffer drained by its own task: a stalled client only fills its own buffer. When a buffer is
full, queued preview frames are dropped first, then superseded progress messages; a client that is
still too far behind is disconnected (it can reconnect and read the outcome from ``/history``).

Binary previews: images are encoded once per event on a helper thread and the frame keeps its place
in each client's order. Clients that negotiated ``supports_preview_metadata`` get type-4 frames;
others get type-1 frames for result images (SaveImageWebsocket) and for latent previews only when they
opted in (feature flag ``latent_previews``) or the server enables them for everyone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from graphengine.events import Event, ExecutionInterrupted, PreviewImage, Progress
from graphengine.files import (
    BINARY_PREVIEW_IMAGE,
    binary_frame,
    binary_frame_with_metadata,
    encode_preview,
)
from graphengine.http.responses import error_body
from graphengine.queue.progress import ProgressState

log = logging.getLogger(__name__)

CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
BROADCAST_IF_NO_CLIENT = (Progress, ProgressState, ExecutionInterrupted)

PREVIEW, PROGRESS, EVENT = 0, 1, 2  # buffer entry kinds, in drop order
COALESCE_AFTER = 32  # waiting messages after which stale status/progress snapshots are replaced


def valid_client_id(value: Any) -> bool:
    return isinstance(value, str) and bool(CLIENT_ID_PATTERN.match(value))


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=str)


class ClientConnection:
    """One websocket and its bounded outgoing buffer."""

    def __init__(self, client_id: str, websocket: WebSocket, *, max_messages: int, max_bytes: int):
        self.client_id = client_id
        self.websocket = websocket
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.supports_preview_metadata = False
        self.wants_latent_previews = False
        self.buffer: deque[tuple[int, Any, int, str | None]] = deque()
        self.buffered_bytes = 0
        self.dropped = 0
        self.coalesced = 0
        self.closed = False
        self._ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def offer(self, kind: int, payload: Any, size: int, supersedes: str | None = None) -> bool:
        """Queue a message; False when the client is hopelessly behind and has been closed.

        ``supersedes`` names a snapshot message (``status``, ``progress``, ``progress_state``): if one
        of the same name is still waiting at the tail of the buffer (behind no other kind of message),
        it is replaced instead of queueing both — a client that has fallen behind (more than
        ``COALESCE_AFTER`` messages waiting) skips stale snapshots; others get every message.
        """
        if self.closed:
            return False
        if supersedes is not None and len(self.buffer) >= COALESCE_AFTER:
            for index in range(len(self.buffer) - 1, -1, -1):
                entry = self.buffer[index]
                if entry[0] != PROGRESS:
                    break
                if entry[3] == supersedes:
                    self.buffered_bytes += size - entry[2]
                    self.buffer[index] = (PROGRESS, payload, size, supersedes)
                    self.coalesced += 1
                    return True
        if supersedes is not None:
            kind = PROGRESS
        self.buffer.append((kind, payload, size, supersedes))
        self.buffered_bytes += size
        if len(self.buffer) > self.max_messages or self.buffered_bytes > self.max_bytes:
            if not (self._drop(PREVIEW) or self._drop(PROGRESS)):
                log.warning("websocket client %s is too slow; disconnecting it", self.client_id)
                self.close_soon(1013)
                return False
        self._ready.set()
        return True

    def _drop(self, kind: int) -> bool:
        dropped = False
        while len(self.buffer) > self.max_messages or self.buffered_bytes > self.max_bytes:
            for index, entry in enumerate(self.buffer):
                if entry[0] == kind:
                    del self.buffer[index]
                    self.buffered_bytes -= entry[2]
                    self.dropped += 1
                    dropped = True
                    break
            else:
                return False
        return dropped

    def close_soon(self, code: int = 1000) -> None:
        self.closed = True
        self.buffer.clear()
        self._ready.set()
        asyncio.get_running_loop().create_task(self._close(code))

    async def _close(self, code: int) -> None:
        try:
            if self.websocket.application_state == WebSocketState.CONNECTED:
                await self.websocket.close(code)
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass

    async def pump(self) -> None:
        """Send buffered messages in order until closed."""
        websocket = self.websocket
        try:
            while not self.closed:
                if not self.buffer:
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                kind, payload, size, _ = self.buffer.popleft()
                self.buffered_bytes -= size
                if isinstance(payload, asyncio.Future):
                    try:
                        payload = await payload
                    except Exception:  # noqa: BLE001 - an unencodable preview is skipped
                        log.exception("encoding a preview image failed")
                        continue
                if isinstance(payload, bytes):
                    await websocket.send_bytes(payload)
                else:
                    await websocket.send_text(payload)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        except Exception:  # noqa: BLE001
            log.exception("websocket sender for %s failed", self.client_id)
        finally:
            self.closed = True


class WebSocketHub:
    """Registry of connected clients; implements ``QueueObserver`` for the prompt queue."""

    def __init__(
        self,
        *,
        server_flags: dict[str, Any],
        max_messages: int = 2048,
        max_bytes: int = 64 * 1024 * 1024,
        legacy_preview_frames: bool = False,
    ):
        self.server_flags = server_flags
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.legacy_preview_frames = legacy_preview_frames
        self._loop: asyncio.AbstractEventLoop | None = None
        self._by_id: dict[str, ClientConnection] = {}
        self._all: set[ClientConnection] = set()
        self._encoder: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ lifecycle

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphengine-preview")

    async def close(self) -> None:
        """Stop accepting events and close every socket ("going away")."""
        self._loop = None
        for conn in list(self._all):
            conn.close_soon(1001)
        await asyncio.sleep(0)
        if self._encoder is not None:
            self._encoder.shutdown(wait=False, cancel_futures=True)

    @property
    def client_count(self) -> int:
        return len(self._all)

    def connection(self, client_id: str) -> ClientConnection | None:
        return self._by_id.get(client_id)

    # ------------------------------------------------------------------ QueueObserver (any thread)

    def queue_changed(self, queue_remaining: int) -> None:
        self._call(self._broadcast_status, queue_remaining)

    def prompt_event(self, event: Event, client_id: str | None) -> None:
        self._call(self._route_event, event, client_id)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed between the check and the call
            pass

    # ------------------------------------------------------------------ loop thread

    def _broadcast_status(self, queue_remaining: int) -> None:
        text = _dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": queue_remaining}}}})
        for conn in list(self._all):
            conn.offer(EVENT, text, len(text), supersedes="status")

    def _targets(self, event: Event, client_id: str | None) -> list[ClientConnection]:
        if client_id is not None:
            conn = self._by_id.get(client_id)
            return [conn] if conn is not None else []
        if isinstance(event, (*BROADCAST_IF_NO_CLIENT, PreviewImage)):
            return list(self._all)
        return []

    def _route_event(self, event: Event, client_id: str | None) -> None:
        targets = self._targets(event, client_id)
        if not targets:
            return
        if isinstance(event, PreviewImage):
            self._route_preview(event, targets)
            return
        text = _dumps(event.to_message())
        supersedes = event.type if isinstance(event, (Progress, ProgressState)) else None
        for conn in targets:
            conn.offer(EVENT, text, len(text), supersedes)

    def _route_preview(self, event: PreviewImage, targets: list[ClientConnection]) -> None:
        loop = self._loop
        if loop is None or self._encoder is None or event.image is None:
            return
        kind = EVENT if event.is_result else PREVIEW
        encoded: asyncio.Future[bytes] | None = None
        frames: dict[int, asyncio.Future[bytes]] = {}
        fmt = (event.image_format or "JPEG").upper()
        fmt = fmt if fmt in ("JPEG", "PNG") else "PNG"
        for conn in targets:
            if conn.supports_preview_metadata:
                frame_type = 4
            elif event.is_result or conn.wants_latent_previews or self.legacy_preview_frames:
                frame_type = BINARY_PREVIEW_IMAGE
            else:
                continue
            if encoded is None:
                encoded = loop.run_in_executor(self._encoder, encode_preview, event.image, fmt, event.max_size)
            if frame_type not in frames:
                frames[frame_type] = asyncio.ensure_future(self._frame(encoded, frame_type, event, fmt))
            size = getattr(event.image, "width", 512) * getattr(event.image, "height", 512)
            conn.offer(kind, frames[frame_type], size)

    @staticmethod
    async def _frame(encoded: asyncio.Future[bytes], frame_type: int, event: PreviewImage, fmt: str) -> bytes:
        data = await encoded
        if frame_type == BINARY_PREVIEW_IMAGE:
            return binary_frame(BINARY_PREVIEW_IMAGE, fmt, data)
        metadata = {
            "node_id": event.node,
            "prompt_id": event.prompt_id,
            "display_node_id": event.node,
            "parent_node_id": None,
            "real_node_id": event.node,
            "image_type": "image/jpeg" if fmt == "JPEG" else "image/png",
        }
        return binary_frame_with_metadata(metadata, data)

    # ------------------------------------------------------------------ connections

    def register(self, client_id: str, websocket: WebSocket) -> ClientConnection:
        conn = ClientConnection(client_id, websocket, max_messages=self.max_messages, max_bytes=self.max_bytes)
        previous = self._by_id.get(client_id)
        if previous is not None:
            log.info("websocket client %s reconnected; the new socket replaces the old one", client_id)
        self._by_id[client_id] = conn  # the old socket keeps only broadcasts, as in ComfyUI
        self._all.add(conn)
        conn.task = asyncio.get_running_loop().create_task(conn.pump())
        return conn

    def unregister(self, conn: ClientConnection) -> None:
        self._all.discard(conn)
        if self._by_id.get(conn.client_id) is conn:  # never drop a newer socket with the same id
            del self._by_id[conn.client_id]
        conn.closed = True
        conn._ready.set()

    def send_to(self, conn: ClientConnection, message: dict[str, Any]) -> None:
        text = _dumps(message)
        conn.offer(EVENT, text, len(text))


async def websocket_endpoint(websocket: WebSocket) -> None:
    """``/ws?clientId=…``: ComfyUI's event stream (status, execution events, binary previews)."""
    services = websocket.app.state.services
    hub: WebSocketHub = services.hub
    client_id = websocket.query_params.get("clientId")
    if client_id in (None, ""):
        client_id = uuid.uuid4().hex
    elif not valid_client_id(client_id):
        body = error_body("invalid_client_id", "clientId must be 1-128 letters, digits, '.', '_', ':' or '-'")
        try:
            await websocket.send_denial_response(JSONResponse(body, status_code=400))
        except RuntimeError:
            await websocket.close(1008)
        return
    if hub.client_count >= services.config.ws_max_clients:
        body = error_body("too_many_clients", "too many websocket clients are connected; try again later")
        try:
            await websocket.send_denial_response(JSONResponse(body, status_code=503))
        except RuntimeError:
            await websocket.close(1013)
        return
    await websocket.accept()
    conn = hub.register(client_id, websocket)
    try:
        queue = services.queue
        hub.send_to(conn, {"type": "status",
                           "data": {"status": {"exec_info": {"queue_remaining": queue.queue_remaining}}, "sid": client_id}})
        running = queue.running_item()
        if running is not None and running.client_id == client_id:
            prompt_id, node = queue.running_node()
            if node is not None and prompt_id == running.prompt_id:
                hub.send_to(conn, {"type": "executing", "data": {"node": node, "prompt_id": prompt_id}})
        first = True
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if first and message.get("text") is not None:
                first = False
                _handle_first_message(hub, conn, message["text"])
            first = False
    except WebSocketDisconnect:
        pass
    finally:
        hub.unregister(conn)
        if conn.task is not None:
            conn.task.cancel()


def _handle_first_message(hub: WebSocketHub, conn: ClientConnection, text: str) -> None:
    try:
        message = json.loads(text)
    except ValueError:
        return
    if not isinstance(message, dict) or message.get("type") != "feature_flags":
        return
    flags = message.get("data")
    if isinstance(flags, dict):
        conn.supports_preview_metadata = flags.get("supports_preview_metadata") is True
        conn.wants_latent_previews = flags.get("latent_previews") is True
    hub.send_to(conn, {"type": "feature_flags", "data": hub.server_flags})
