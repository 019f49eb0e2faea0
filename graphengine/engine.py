"""The headless engine: registry + environment + cache + executor, the same path the server uses.

    engine = Engine()                      # all built-in node packs, classic cache
    run = engine.run(prompt)               # validate, execute on a worker thread, wait
    run.outputs, run.executed, run.cached, run.timings

``validate`` raises ``WorkflowInvalid`` whose ``body`` is ComfyUI's exact 400 body; ``execute`` never
raises. One Engine runs one prompt at a time (``execute`` is serialized).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from graphengine.cache import CacheConfig, OutputCache, Signatures, make_cache
from graphengine.environment import DataPaths, Environment, default_data_dir, default_models_dir
from graphengine.events import EventSink
from graphengine.executor import Executor, Run
from graphengine.interrupt import InterruptFlag
from graphengine.packs import builtin_packs, load_pack
from graphengine.plan import Planner
from graphengine.registry import NodePack, NodeRegistry
from graphengine.validation import ValidatedPrompt, Validator
from graphengine.workflow import Workflow

log = logging.getLogger(__name__)

__all__ = ["Engine", "Run", "ValidatedPrompt", "build_environment"]


def build_environment(
    data_dir: Path | str | None = None, models_dir: Path | str | None = None, **overrides: Any
) -> Environment:
    """The default Environment: data folders under ``data_dir`` (created), the model library over
    ``models_dir`` (``graphengine.models.library.ModelLibrary`` when available, else no models).
    ``overrides`` are passed to ``Environment`` (``limits``, ``preview``, ``write_metadata``, …)."""
    data_root = Path(data_dir).resolve() if data_dir is not None else default_data_dir()
    models_root = Path(models_dir).resolve() if models_dir is not None else default_models_dir(data_root)
    paths = overrides.pop("paths", None) or DataPaths.under(data_root)
    paths.create()
    if "models" not in overrides:
        overrides["models"] = _model_library(models_root)
    return Environment(paths=paths, **overrides)


def _model_library(models_dir: Path) -> Any:
    try:
        from graphengine.models.library import ModelLibrary
    except ImportError:
        log.info("graphengine.models is not available; running without a model library")
        return None
    return ModelLibrary(models_dir)


class Engine:
    """Validates and executes ComfyUI API-format prompts."""

    def __init__(
        self,
        packs: Iterable[NodePack | str] | None = None,
        cache: str | CacheConfig | OutputCache | None = "classic",
        env: Environment | None = None,
        data_dir: Path | str | None = None,
        models_dir: Path | str | None = None,
    ):
        if packs is None:
            loaded = builtin_packs()
        else:
            loaded = [load_pack(p) if isinstance(p, str) else p for p in packs]
        self.registry = NodeRegistry(loaded)
        self.env = env if env is not None else build_environment(data_dir, models_dir)
        self.cache = cache if isinstance(cache, OutputCache) else make_cache(cache)
        self.interrupt = InterruptFlag()
        self.validator = Validator(self.registry, self.env)
        self.executor = Executor(self.env, self.cache, signatures=Signatures(), planner=Planner())
        self._lock = threading.Lock()

    @property
    def cache_config(self) -> CacheConfig:
        return self.cache.config

    def validate(
        self, prompt: Mapping[str, Any] | Workflow, partial_execution_targets: Iterable[Any] | None = None
    ) -> ValidatedPrompt:
        """Validate a prompt; raises ``WorkflowInvalid`` (ComfyUI's 400 body in ``.body``)."""
        return self.validator.validate(prompt, partial_execution_targets)

    def execute(
        self,
        validated: ValidatedPrompt,
        *,
        prompt_id: str,
        extra_data: Mapping[str, Any] | None = None,
        sink: EventSink | None = None,
        interrupt: InterruptFlag | None = None,
    ) -> Run:
        """Execute on the calling thread; never raises. The interrupt flag is reset first (as in
        ComfyUI, an interrupt requested while idle is discarded)."""
        flag = interrupt or self.interrupt
        with self._lock:
            flag.clear()
            return self.executor.execute(
                validated, prompt_id=prompt_id, extra_data=extra_data, sink=sink, interrupt=flag
            )

    def run(
        self,
        prompt: Mapping[str, Any] | Workflow,
        *,
        extra_data: Mapping[str, Any] | None = None,
        sink: EventSink | None = None,
        prompt_id: str | None = None,
        partial_execution_targets: Iterable[Any] | None = None,
    ) -> Run:
        """Validate, then execute on a worker thread and wait. Ctrl-C interrupts the prompt (the
        interrupted ``Run`` is returned). Raises ``WorkflowInvalid`` for invalid prompts."""
        validated = self.validate(prompt, partial_execution_targets)
        prompt_id = prompt_id or str(uuid.uuid4())
        result: list[Run] = []

        def work() -> None:
            result.append(self.execute(validated, prompt_id=prompt_id, extra_data=extra_data, sink=sink))

        worker = threading.Thread(target=work, name=f"graphengine-run-{prompt_id[:8]}", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.25)
        except KeyboardInterrupt:
            self.interrupt.request(prompt_id)
            worker.join()
        return result[0]

    def free(self, unload_models: bool = False, free_memory: bool = False) -> None:
        """ComfyUI's ``/free``: ``unload_models`` unloads loaded models; ``free_memory`` also drops
        every cached output."""
        if unload_models or free_memory:
            manager = getattr(self.env.models, "manager", None)
            if manager is not None and hasattr(manager, "free"):
                manager.free()
        if free_memory:
            with self._lock:
                self.cache.clear()
                self.validator.forget()
                self.executor.signatures.clear()
                self.executor.planner.clear()

    def object_info(self) -> dict[str, Any]:
        """The full ``/object_info`` body."""
        return self.registry.object_info(self.env)

    def close(self) -> None:
        self.executor.close()
