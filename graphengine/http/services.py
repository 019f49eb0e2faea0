"""ServerServices: the long-lived objects of one server, built by ``create_app`` and reached by
handlers through ``request.app.state.services`` (no globals)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphengine.environment import DataPaths
from graphengine.http.auth import AuthGate
from graphengine.http.config import ServerConfig
from graphengine.http.ws import WebSocketHub
from graphengine.queue import PromptQueue

if TYPE_CHECKING:
    from graphengine.engine import Engine


@dataclass
class ServerServices:
    config: ServerConfig
    engine: Engine
    queue: PromptQueue
    hub: WebSocketHub
    gate: AuthGate
    paths: DataPaths
    settings_lock: threading.Lock = field(default_factory=threading.Lock)  # user settings file writes

    @property
    def user_dir(self) -> Path:
        """Per-user storage root of the (single) default user: settings, saved workflows."""
        return self.config.user_dir / "default"

    @property
    def feature_flags(self) -> dict[str, Any]:
        return dict(self.hub.server_flags)

    @property
    def env(self) -> Any:
        return self.engine.env
