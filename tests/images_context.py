"""A small real NodeContext for the image/latent/output node tests (no engine needed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphengine.environment import DataPaths, Environment, Limits
from graphengine.errors import Interrupted


def make_env(root: Path, **overrides: Any) -> Environment:
    paths = DataPaths.under(root)
    paths.create()
    return Environment(paths=paths, **overrides)


@dataclass
class ImagesContext:
    """Implements graphengine.node.NodeContext: background work runs on a real worker thread and
    ``finish()`` waits for it (re-raising its error), as the executor does at prompt end."""

    env: Environment
    node_id: str = "1"
    prompt_id: str = "prompt-1"
    prompt: Mapping[str, Any] = field(default_factory=dict)
    extra_pnginfo: Mapping[str, Any] | None = None
    interrupted: bool = False
    progress_calls: list[tuple[int, int]] = field(default_factory=list)
    sent_images: list[tuple[Any, str]] = field(default_factory=list)
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))
    _pending: list[Future[None]] = field(default_factory=list)

    def progress(self, value: int, total: int, preview: Any = None) -> None:
        self.progress_calls.append((value, total))
        self.check_interrupted()

    def check_interrupted(self) -> None:
        if self.interrupted:
            raise Interrupted("interrupted")

    def background(self, work: Callable[[], None]) -> None:
        self._pending.append(self._pool.submit(work))

    def send_binary_image(self, image: Any, image_format: str = "PNG") -> None:
        self.sent_images.append((image, image_format))

    def finish(self) -> None:
        pending, self._pending = self._pending, []
        try:
            for future in pending:
                future.result(timeout=30)
        finally:
            self._pool.shutdown(wait=True)


__all__ = ["ImagesContext", "Limits", "make_env"]
