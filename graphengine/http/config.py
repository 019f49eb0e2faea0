"""ServerConfig: every knob of the HTTP server, filled from CLI flags / environment by ``serve``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from graphengine.environment import default_data_dir

AUTH_MODES = ("none", "basic", "bearer")
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost"})


def is_loopback_host(host: str) -> bool:
    """Whether a bind address or Host-header hostname names this machine only."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AuthSettings:
    """``none`` | ``basic`` (user + password) | ``bearer`` (token). ``admin_token`` guards admin routes."""

    mode: str = "none"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    admin_token: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in AUTH_MODES:
            raise ValueError(f"auth mode must be one of {', '.join(AUTH_MODES)}, not {self.mode!r}")
        if self.mode == "basic" and not (self.user and self.password):
            raise ValueError("basic auth needs both a user and a password")
        if self.mode == "bearer" and not self.token:
            raise ValueError("bearer auth needs a token")

    def __repr__(self) -> str:  # never show credentials, even in tracebacks or debug logs
        return f"AuthSettings(mode={self.mode!r}, user={'set' if self.user else None}, secrets=<hidden>)"


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8188
    data_dir: Path = field(default_factory=default_data_dir)
    models_dir: Path | None = None
    auth: AuthSettings = field(default_factory=AuthSettings)
    allow_insecure_public: bool = False  # allow a non-loopback bind without auth
    allowed_hosts: tuple[str, ...] = ()  # extra Host header names accepted (reverse proxies)
    cors_origin: str | None = None  # ComfyUI --enable-cors-header: "*" or one origin
    max_upload_bytes: int = 100 * 1024 * 1024
    max_image_pixels: int = 64 * 1024 * 1024
    node_packs: tuple[str, ...] | None = None  # module names; None → the built-in packs
    cache: str = "classic"
    preview_method: str = "none"
    preview_size: int = 512
    legacy_preview_frames: bool = False  # send latent previews as type-1 frames to non-negotiating clients
    max_history: int = 10_000
    ws_max_messages: int = 2048  # per websocket client, before previews/progress are dropped
    ws_max_bytes: int = 64 * 1024 * 1024
    ws_max_clients: int = 1024  # more simultaneous websockets are refused with 503
    clear_temp_on_start: bool = True
    downstream_allow_link_local: bool = False  # registering link-local / cloud-metadata addresses (SSRF risk)
    downstream_health_interval: float = 30.0  # seconds between health checks of registered servers

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())
        if self.models_dir is not None:
            object.__setattr__(self, "models_dir", Path(self.models_dir).resolve())

    @property
    def database_path(self) -> Path:
        return Path(self.data_dir) / "queue.sqlite3"

    @property
    def user_dir(self) -> Path:
        return Path(self.data_dir) / "user"

    @property
    def is_public(self) -> bool:
        return not is_loopback_host(self.host)

    def check_startable(self) -> None:
        """Refuse a public bind without auth unless explicitly allowed (ValueError names the fix)."""
        if self.is_public and self.auth.mode == "none" and not self.allow_insecure_public:
            raise ValueError(
                f"refusing to listen on {self.host} without authentication: anyone who can reach this "
                "machine could run workflows and read your files. Use --auth basic|bearer, bind to "
                "127.0.0.1, or pass --allow-insecure-public if a proxy in front handles security."
            )
