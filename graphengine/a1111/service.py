"""The A1111 façade's long-lived objects for one server, built on first use and kept on ``app.state``.

``A1111Service.of(app)`` returns the server's instance (created lazily on the event-loop thread, so
creation never races); nothing is module-global.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphengine.a1111.catalog import HASH_CACHE_FILE, HashCache, ModelCatalog
from graphengine.a1111.jobs import JobTracker
from graphengine.a1111.names import NameResolver
from graphengine.a1111.options import OptionsStore
from graphengine.a1111.plan import PlanContext
from graphengine.environment import Limits


@dataclass
class A1111Service:
    services: Any  # graphengine.http.services.ServerServices
    options: OptionsStore
    catalog: ModelCatalog
    resolver: NameResolver
    jobs: JobTracker
    downstream: Any = None  # graphengine.downstream.registry.DownstreamRegistry, built by the routes

    @classmethod
    def of(cls, app: Any) -> A1111Service:
        existing = getattr(app.state, "a1111", None)
        if existing is None:
            services = app.state.services
            data_dir = services.paths.root
            env = services.engine.env
            existing = cls(
                services=services,
                options=OptionsStore(data_dir),
                catalog=ModelCatalog(env.models if env is not None else None, HashCache(data_dir / HASH_CACHE_FILE)),
                resolver=NameResolver(),
                jobs=JobTracker(),
            )
            app.state.a1111 = existing
        return existing

    @property
    def limits(self) -> Limits:
        env = self.services.engine.env
        return env.limits if env is not None else Limits()

    @property
    def previews_enabled(self) -> bool:
        env = self.services.engine.env
        return env is not None and env.preview.method != "none" and self.options.current.live_previews_enable

    def plan_context(self) -> PlanContext:
        return PlanContext(resolver=self.resolver, catalog=self.catalog, options=self.options, limits=self.limits)

    def current_checkpoint(self) -> str:
        """The checkpoint a request naming none would use ("" when none is installed)."""
        names = self.catalog.names("checkpoints")
        wanted = self.options.current.sd_model_checkpoint
        if wanted:
            try:
                return self.catalog.resolve("checkpoints", wanted)
            except LookupError:
                pass
        return names[0] if names else ""
