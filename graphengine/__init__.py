"""graphengine: a node-graph workflow engine for diffusion image generation.

The public API is imported lazily so that ``import graphengine`` stays cheap (no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Engine": "graphengine.engine",
    "Run": "graphengine.engine",
    "ValidatedPrompt": "graphengine.engine",
    "build_environment": "graphengine.engine",
    "InterruptFlag": "graphengine.interrupt",
    "CacheConfig": "graphengine.cache",
    "WorkflowInvalid": "graphengine.errors",
    "NodeError": "graphengine.errors",
    "NodeFailed": "graphengine.errors",
    "Interrupted": "graphengine.errors",
    "Node": "graphengine.node",
    "NodeOutputs": "graphengine.node",
    "NodeContext": "graphengine.node",
    "Input": "graphengine.node",
    "Combo": "graphengine.node",
    "Output": "graphengine.node",
    "Hidden": "graphengine.node",
    "NEVER_CACHE": "graphengine.node",
    "NodePack": "graphengine.registry",
    "NodeRegistry": "graphengine.registry",
    "Environment": "graphengine.environment",
    "DataPaths": "graphengine.environment",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'graphengine' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from graphengine.cache import CacheConfig
    from graphengine.engine import Engine, Run, ValidatedPrompt, build_environment
    from graphengine.interrupt import InterruptFlag
    from graphengine.environment import DataPaths, Environment
    from graphengine.errors import Interrupted, NodeError, NodeFailed, WorkflowInvalid
    from graphengine.node import NEVER_CACHE, Combo, Hidden, Input, Node, NodeContext, NodeOutputs, Output
    from graphengine.registry import NodePack, NodeRegistry
