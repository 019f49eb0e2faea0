"""Shared engine fixtures: an Engine over the utility and fake node packs with a Recorder."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# ``tests.*`` helpers import as a package also when pytest is started as ``pytest`` (not ``python -m``).
_REPOSITORY = str(Path(__file__).resolve().parents[1])
if _REPOSITORY not in sys.path:
    sys.path.insert(0, _REPOSITORY)

from graphengine.engine import Engine, build_environment  # noqa: E402
from tests.fakes import Recorder  # noqa: E402
from tests.fakes import pack as fake_pack  # noqa: E402


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_engine(tmp_path: Path, recorder: Recorder) -> Callable[..., Engine]:
    """``make_engine(cache="lru 3", extras=(...))``: an Engine over the utility and fake packs."""
    engines: list[Engine] = []

    def make(cache: Any = "classic", extras: tuple[Any, ...] = ()) -> Engine:
        from nodes.utility import pack as utility_pack

        env = build_environment(tmp_path / "data", tmp_path / "models", models=None, extras=(recorder, *extras))
        engine = Engine(packs=[utility_pack(), fake_pack()], cache=cache, env=env)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()
