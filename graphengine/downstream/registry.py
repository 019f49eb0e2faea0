"""The registered downstream servers of one graphengine server, and calls routed to them.

Choice: the healthy server with the fewest requests in flight from us (then the shortest queue it
reported at its last health check, then registration order) — sd-proxy-server's least-connections
rule. A call that fails (connection error, timeout, 5xx) marks that server unhealthy and is retried
once on another healthy server; a 4xx answer is the client's problem and is passed back unchanged.
Requests carry only ``Content-Type: application/json``: our clients' credentials are never forwarded.
Health checks (``GET <url>sdapi/v1/progress``) run every ``health_interval`` seconds in a task started
with the first registration, on the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from graphengine.downstream.addresses import AddressRefused, check_url, normalize_url

logger = logging.getLogger(__name__)

HEALTH_PATH = "sdapi/v1/progress?skip_current_image=true"


@dataclass
class DownstreamServer:
    url: str
    registered: float = field(default_factory=time.time)
    healthy: bool = False
    in_flight: int = 0
    queue_remaining: int = 0
    last_checked: float | None = None
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "healthy": self.healthy,
            "in_flight": self.in_flight,
            "queue_remaining": self.queue_remaining,
            "last_checked": self.last_checked,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class DownstreamAnswer:
    """A downstream server's answer: status, parsed JSON (or None) and which server gave it."""

    status: int
    body: Any
    text: str
    server: str


class DownstreamUnavailable(RuntimeError):
    """No registered server could answer; ``failures`` lists each attempt's error."""

    def __init__(self, failures: list[str]):
        self.failures = failures
        detail = "; ".join(failures) if failures else "no healthy downstream server is registered"
        super().__init__(detail)


class DownstreamRegistry:
    """Registered servers, health checks and routed calls. Use from the event loop only."""

    def __init__(
        self,
        *,
        allow_link_local: bool = False,
        health_interval: float = 30.0,
        check_timeout: float = 5.0,
        request_timeout: float = 600.0,
    ):
        self.allow_link_local = allow_link_local
        self.health_interval = health_interval
        self.check_timeout = check_timeout
        self.request_timeout = request_timeout
        self._servers: dict[str, DownstreamServer] = {}
        self._health_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ registration

    async def register(self, text: str) -> DownstreamServer:
        """Add a server (normalised URL); raises ``AddressRefused``. Re-registering is harmless."""
        url = normalize_url(text)
        await run_in_threadpool(check_url, url, allow_link_local=self.allow_link_local)
        server = self._servers.get(url)
        if server is None:
            server = self._servers[url] = DownstreamServer(url)
        await self.check(server)
        self._ensure_health_task()
        return server

    def unregister(self, text: str) -> str | None:
        """Remove a server; returns its URL, or None if it was not registered."""
        try:
            url = normalize_url(text)
        except AddressRefused:
            return None
        return url if self._servers.pop(url, None) is not None else None

    def servers(self) -> list[DownstreamServer]:
        return list(self._servers.values())

    @property
    def has_servers(self) -> bool:
        return bool(self._servers)

    def choose(self, exclude: set[str] | frozenset[str] = frozenset()) -> DownstreamServer | None:
        candidates = [s for s in self._servers.values() if s.healthy and s.url not in exclude]
        if not candidates:
            return None
        return min(candidates, key=lambda s: (s.in_flight, s.queue_remaining, s.registered))

    # ------------------------------------------------------------------ health

    async def check(self, server: DownstreamServer) -> bool:
        """Probe one server now; updates and returns its health."""
        import httpx  # imported on first use: keeps server start-up fast

        try:
            await run_in_threadpool(check_url, server.url, allow_link_local=self.allow_link_local)
            async with httpx.AsyncClient(timeout=self.check_timeout, trust_env=False, follow_redirects=False) as client:
                response = await client.get(server.url + HEALTH_PATH)
            if response.status_code != 200:
                raise RuntimeError(f"health check answered HTTP {response.status_code}")
            state = response.json().get("state", {})
            server.queue_remaining = int(state.get("job_count", 0) or 0)
            server.healthy, server.last_error = True, None
        except (httpx.HTTPError, AddressRefused, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            server.healthy, server.last_error = False, f"{type(exc).__name__}: {exc}"
        server.last_checked = time.time()
        return server.healthy

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(s) for s in self.servers()))

    def _ensure_health_task(self) -> None:
        if self._health_task is None or self._health_task.done():
            self._health_task = asyncio.get_running_loop().create_task(self._health_loop(), name="downstream-health")

    async def _health_loop(self) -> None:
        while self._servers:
            await asyncio.sleep(self.health_interval)
            try:
                await self.check_all()
            except Exception:  # noqa: BLE001 - keep checking whatever one probe did
                logger.exception("downstream health check failed")

    async def close(self) -> None:
        task, self._health_task = self._health_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    # ------------------------------------------------------------------ calls

    async def post(self, path: str, body: dict[str, Any], *, attempts: int = 2) -> DownstreamAnswer:
        """POST ``body`` as JSON to ``<server>/<path>`` on the least-loaded healthy server, retrying a
        failure once on another one. Raises ``DownstreamUnavailable`` when no attempt got an answer."""
        import httpx

        tried: set[str] = set()
        failures: list[str] = []
        for _ in range(attempts):
            server = self.choose(tried)
            if server is None:
                break
            tried.add(server.url)
            server.in_flight += 1
            try:
                await run_in_threadpool(check_url, server.url, allow_link_local=self.allow_link_local)
                async with httpx.AsyncClient(timeout=self.request_timeout, trust_env=False, follow_redirects=False) as client:
                    response = await client.post(
                        server.url + path, json=body, headers={"Content-Type": "application/json"}
                    )
            except (httpx.HTTPError, AddressRefused) as exc:
                server.healthy, server.last_error = False, f"{type(exc).__name__}: {exc}"
                failures.append(f"{server.url}: {type(exc).__name__}: {exc}")
                logger.warning("downstream %s failed: %s", server.url, exc)
                continue
            finally:
                server.in_flight -= 1
            try:
                parsed = response.json()
            except ValueError:
                parsed = None
            if response.status_code >= 500:
                server.healthy, server.last_error = False, f"HTTP {response.status_code}"
                failures.append(f"{server.url}: HTTP {response.status_code}: {response.text[:200]}")
                continue
            return DownstreamAnswer(response.status_code, parsed, response.text, server.url)
        raise DownstreamUnavailable(failures)
