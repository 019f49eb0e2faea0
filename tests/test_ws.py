"""The websocket protocol end to end: event sequences, routing, previews, reconnects, slow clients."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid

import pytest

from tests.http_harness import (
    LiveServer,
    connect,
    finished,
    receive_json_until,
    server_config,
    text_prompt,
    wait_history,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    with LiveServer(server_config(tmp_path_factory.mktemp("ws"))) as live:
        yield live


def _types(messages: list[dict]) -> list[str]:
    return [m["type"] for m in messages]


def _post(server: LiveServer, body: dict) -> dict:
    with server.client() as client:
        response = client.post("/prompt", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_success_sequence_status_progress_state_and_terminal_executing(server: LiveServer) -> None:
    client_id = uuid.uuid4().hex

    async def scenario() -> list[dict]:
        async with connect(server.ws_url(client_id)) as ws:
            hello = json.loads(await ws.recv())
            assert hello == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}}
            text = f"success-{client_id}"
            answer = await asyncio.to_thread(_post, server, {"prompt": text_prompt(text, steps=3), "client_id": client_id})
            messages = await receive_json_until(ws, finished(answer["prompt_id"]))
            return [answer, *messages]

    answer, *messages = asyncio.run(scenario())
    pid = answer["prompt_id"]
    types = _types(messages)
    assert types[0] == "status" and messages[0]["data"]["status"]["exec_info"]["queue_remaining"] == 1
    assert types[-3:] == ["execution_success", "status", "executing"]
    assert messages[-2]["data"]["status"]["exec_info"]["queue_remaining"] == 0
    run = types[types.index("execution_start"):]
    assert run.index("execution_start") < run.index("executing") < run.index("executed") < run.index("execution_success")
    assert types.count("progress") == 3
    progress = [m["data"] for m in messages if m["type"] == "progress"]
    assert [p["value"] for p in progress] == [1, 2, 3] and all(p["max"] == 3 and p["node"] == "1" for p in progress)
    states = [m["data"]["nodes"]["1"]["state"] for m in messages if m["type"] == "progress_state"]
    assert states[0] == "running" and states[-1] == "finished"
    first_state = types.index("progress_state")
    assert types[first_state + 1] == "executing"  # progress_state precedes the node's executing
    for message in messages:  # every run message names its prompt (comfy-cli drops the others)
        if message["type"] not in ("status",):
            assert message["data"]["prompt_id"] == pid
    executed = next(m for m in messages if m["type"] == "executed")
    assert executed["data"]["node"] == "1" and executed["data"]["display_node"] == "1"
    assert executed["data"]["output"]["text"][0].startswith("success-")


def test_history_written_before_terminal_message_and_cache_hit_replays_ui(server: LiveServer) -> None:
    client_id = uuid.uuid4().hex
    prompt = text_prompt(f"cached-{client_id}")

    async def run_once() -> tuple[str, list[dict], dict]:
        async with connect(server.ws_url(client_id)) as ws:
            await ws.recv()
            answer = await asyncio.to_thread(_post, server, {"prompt": prompt, "client_id": client_id})
            messages = await receive_json_until(ws, finished(answer["prompt_id"]))
            with server.client() as client:  # read right after the terminal message: must be there
                history = client.get(f"/history/{answer['prompt_id']}").json()
            return answer["prompt_id"], messages, history

    first_id, first, first_history = asyncio.run(run_once())
    second_id, second, second_history = asyncio.run(run_once())
    assert first_history[first_id]["status"]["status_str"] == "success"
    assert "executing" in _types(first)[:-1]  # the node really ran the first time
    types = _types(second)
    cached = next(m for m in second if m["type"] == "execution_cached")
    assert cached["data"]["nodes"] == ["1"]
    assert not [m for m in second[:-1] if m["type"] == "executing"]  # nothing ran again
    replay = next(m for m in second if m["type"] == "executed")
    assert replay["data"]["output"] == {"text": [f"cached-{client_id}"]}
    assert types.index("execution_cached") < types.index("executed") < types.index("execution_success")
    entry = second_history[second_id]
    assert entry["outputs"] == {"1": {"text": [f"cached-{client_id}"]}}  # cached UI is in history too
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    assert entry["prompt"][1] == second_id and len(entry["prompt"]) == 5
    assert entry["meta"]["1"]["node_id"] == "1"


def test_error_sequence_and_history(server: LiveServer) -> None:
    client_id = uuid.uuid4().hex
    prompt = {"5": {"class_type": "ServerFail", "inputs": {"message": f"kaboom {client_id}"}}}

    async def scenario() -> tuple[str, list[dict]]:
        async with connect(server.ws_url(client_id)) as ws:
            await ws.recv()
            answer = await asyncio.to_thread(_post, server, {"prompt": prompt, "client_id": client_id})
            return answer["prompt_id"], await receive_json_until(ws, finished(answer["prompt_id"]))

    pid, messages = asyncio.run(scenario())
    types = _types(messages)
    assert "execution_success" not in types
    error = next(m["data"] for m in messages if m["type"] == "execution_error")
    assert error["node_id"] == "5" and error["node_type"] == "ServerFail"
    assert f"kaboom {client_id}" in error["exception_message"]
    assert types.index("execution_error") < types.index("executing", types.index("execution_error"))
    with server.client() as client:
        entry = client.get(f"/history/{pid}").json()[pid]
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_error"


def test_interrupt_hits_only_the_running_prompt(server: LiveServer) -> None:
    client_id = uuid.uuid4().hex

    async def scenario() -> tuple[list[dict], str, str]:
        async with connect(server.ws_url(client_id)) as ws:
            await ws.recv()
            slow = await asyncio.to_thread(
                _post, server, {"prompt": text_prompt(f"slow-{client_id}", steps=400, delay=0.01), "client_id": client_id})
            after = await asyncio.to_thread(
                _post, server, {"prompt": text_prompt(f"after-{client_id}"), "client_id": client_id})
            await receive_json_until(ws, lambda m: m["type"] == "progress")
            with server.client() as client:
                assert client.post("/interrupt", json={"prompt_id": after["prompt_id"]}).status_code == 200  # not running
                response = client.post("/interrupt", json={"prompt_id": slow["prompt_id"]})
                assert response.status_code == 200 and response.content == b""
            messages = await receive_json_until(ws, finished(after["prompt_id"]))
            return messages, slow["prompt_id"], after["prompt_id"]

    messages, slow_id, after_id = asyncio.run(scenario())
    interrupted = [m["data"] for m in messages if m["type"] == "execution_interrupted"]
    assert [d["prompt_id"] for d in interrupted] == [slow_id]
    with server.client() as client:
        slow_entry = wait_history(client, slow_id)
        after_entry = wait_history(client, after_id)
    assert slow_entry["status"]["status_str"] == "error"
    assert slow_entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert after_entry["status"]["status_str"] == "success"  # the next prompt was not hit


def test_events_go_only_to_the_submitting_client(server: LiveServer) -> None:
    owner, other = uuid.uuid4().hex, uuid.uuid4().hex

    async def scenario() -> tuple[list[dict], list[dict]]:
        async with connect(server.ws_url(owner)) as ws_owner, connect(server.ws_url(other)) as ws_other:
            await ws_owner.recv()
            await ws_other.recv()
            answer = await asyncio.to_thread(
                _post, server, {"prompt": text_prompt(f"routing-{owner}", steps=2), "client_id": owner})
            mine = await receive_json_until(ws_owner, finished(answer["prompt_id"]))
            theirs = await receive_json_until(
                ws_other, lambda m: m["type"] == "status" and m["data"]["status"]["exec_info"]["queue_remaining"] == 0)
            return mine, theirs

    mine, theirs = asyncio.run(scenario())
    assert "execution_start" in _types(mine)
    assert set(_types(theirs)) == {"status"}  # the other client sees only broadcasts


def test_feature_flags_handshake_and_binary_result_frames(server: LiveServer) -> None:
    legacy, modern = uuid.uuid4().hex, uuid.uuid4().hex
    prompt = {"3": {"class_type": "ServerWsImage", "inputs": {"size": 16, "value": 200}}}

    async def scenario(client_id: str, negotiate: bool) -> tuple[list[dict], list[bytes]]:
        async with connect(server.ws_url(client_id)) as ws:
            await ws.recv()
            messages: list[dict] = []
            if negotiate:
                await ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
                reply = json.loads(await ws.recv())
                assert reply["type"] == "feature_flags" and reply["data"]["supports_preview_metadata"] is True
                assert reply["data"]["max_upload_size"] == server.config.max_upload_bytes
            frames: list[bytes] = []
            answer = await asyncio.to_thread(_post, server, {"prompt": prompt, "client_id": client_id})
            messages = await receive_json_until(ws, finished(answer["prompt_id"]), binary=frames)
            return messages, frames

    _, legacy_frames = asyncio.run(scenario(legacy, False))
    _, modern_frames = asyncio.run(scenario(modern, True))
    assert len(legacy_frames) == 1
    event, fmt = struct.unpack(">II", legacy_frames[0][:8])
    assert (event, fmt) == (1, 2)
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(legacy_frames[0][8:]))
    assert image.size == (16, 16) and image.getpixel((0, 0))[:3] == (200, 0, 0)
    assert len(modern_frames) == 1
    event, meta_len = struct.unpack(">II", modern_frames[0][:8])
    assert event == 4
    meta = json.loads(modern_frames[0][8:8 + meta_len])
    assert meta["node_id"] == "3" and meta["image_type"] == "image/png"
    assert Image.open(BytesIO(modern_frames[0][8 + meta_len:])).size == (16, 16)


def test_reconnect_with_same_id_replaces_socket_and_old_close_keeps_new(server: LiveServer) -> None:
    client_id = uuid.uuid4().hex

    async def scenario() -> list[dict]:
        old = await connect(server.ws_url(client_id))
        await old.recv()
        async with connect(server.ws_url(client_id)) as new:
            await new.recv()
            await old.close()  # the old socket's cleanup must not unregister the new one
            await asyncio.sleep(0.05)
            answer = await asyncio.to_thread(_post, server, {"prompt": text_prompt(f"re-{client_id}"), "client_id": client_id})
            return await receive_json_until(new, finished(answer["prompt_id"]))

    assert "execution_success" in _types(asyncio.run(scenario()))


def test_late_connecting_client_learns_outcome_from_status_and_history(server: LiveServer) -> None:
    with server.client() as client:
        pid = client.post("/prompt", json={"prompt": text_prompt(f"late-{uuid.uuid4()}"), "client_id": "late-client"}).json()["prompt_id"]
        wait_history(client, pid)

    async def scenario() -> dict:
        async with connect(server.ws_url("late-client")) as ws:
            return json.loads(await ws.recv())

    hello = asyncio.run(scenario())
    assert hello["data"]["status"]["exec_info"]["queue_remaining"] == 0


def test_bad_client_id_is_refused_with_400(server: LiveServer) -> None:
    import websockets

    async def scenario() -> int:
        try:
            async with connect(server.ws_url("bad%20id%3Cscript%3E")):
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(scenario()) == 400


def test_stalled_client_does_not_delay_execution_or_others(tmp_path) -> None:
    config = server_config(tmp_path, ws_max_messages=64, ws_max_bytes=1 << 20)
    with LiveServer(config) as live:
        fast_id, stalled_id = uuid.uuid4().hex, uuid.uuid4().hex

        async def scenario() -> tuple[list[dict], float, object]:
            # The stalled client never reads; its tiny receive buffer fills up quickly.
            stalled = await connect(live.ws_url(stalled_id), max_queue=1)
            stalled.transport.pause_reading()
            async with connect(live.ws_url(fast_id)) as fast:
                await fast.recv()
                loop = asyncio.get_running_loop()
                started = loop.time()
                answers = []
                for n in range(3):
                    answers.append(await asyncio.to_thread(
                        _post, live, {"prompt": text_prompt(f"flood-{n}", steps=1500), "client_id": stalled_id}))
                mine = await asyncio.to_thread(_post, live, {"prompt": text_prompt("fast"), "client_id": fast_id})
                messages = await receive_json_until(fast, finished(mine["prompt_id"]), timeout=30)
                elapsed = loop.time() - started
            dropped = live.services.hub.connection(stalled_id)
            stalled.transport.abort()
            return messages, elapsed, dropped

        messages, elapsed, stalled_conn = asyncio.run(scenario())
        assert "execution_success" in _types(messages)
        assert elapsed < 10
        # The stalled client's buffer stayed bounded: stale progress was coalesced or dropped, or the
        # client was cut off.
        assert stalled_conn is None or stalled_conn.closed or stalled_conn.dropped + stalled_conn.coalesced > 0
        assert stalled_conn is None or len(stalled_conn.buffer) <= config.ws_max_messages


def test_latent_previews_only_reach_clients_that_want_them(server: LiveServer) -> None:
    ids = {name: uuid.uuid4().hex for name in ("legacy", "metadata", "opted_in")}
    flags = {"legacy": None, "metadata": {"supports_preview_metadata": True}, "opted_in": {"latent_previews": True}}

    async def scenario() -> dict[str, list[bytes]]:
        frames: dict[str, list[bytes]] = {}
        sockets = {}
        for name, client_id in ids.items():
            sockets[name] = await connect(server.ws_url(client_id))
            await sockets[name].recv()
            if flags[name] is not None:
                await sockets[name].send(json.dumps({"type": "feature_flags", "data": flags[name]}))
                assert json.loads(await sockets[name].recv())["type"] == "feature_flags"
        for name, client_id in ids.items():
            prompt = {"1": {"class_type": "ServerText",
                            "inputs": {"text": f"pv-{client_id}", "steps": 3, "delay": 0.0, "previews": True}}}
            answer = await asyncio.to_thread(_post, server, {"prompt": prompt, "client_id": client_id})
            frames[name] = []
            await receive_json_until(sockets[name], finished(answer["prompt_id"]), binary=frames[name])
        for ws in sockets.values():
            await ws.close()
        return frames

    frames = asyncio.run(scenario())
    assert frames["legacy"] == []  # API clients treat every binary frame as a result: send none
    assert len(frames["metadata"]) == 3
    for frame in frames["metadata"]:
        event, meta_len = struct.unpack(">II", frame[:8])
        meta = json.loads(frame[8:8 + meta_len])
        assert event == 4 and meta["image_type"] == "image/jpeg" and meta["node_id"] == "1"
        assert frame[8 + meta_len:8 + meta_len + 2] == b"\xff\xd8"
    assert len(frames["opted_in"]) == 3
    from io import BytesIO

    from PIL import Image

    assert all(struct.unpack(">II", f[:8]) == (1, 1) for f in frames["opted_in"])
    assert Image.open(BytesIO(frames["opted_in"][0][8:])).size == (32, 24)  # fitted into max_size


def test_websocket_client_cap(tmp_path) -> None:
    import websockets

    with LiveServer(server_config(tmp_path, ws_max_clients=2)) as live:

        async def scenario() -> int:
            async with connect(live.ws_url("a")) as first, connect(live.ws_url("b")) as second:
                await first.recv()
                await second.recv()
                try:
                    async with connect(live.ws_url("c")):
                        return 101
                except websockets.InvalidStatus as exc:
                    return exc.response.status_code

        assert asyncio.run(scenario()) == 503
