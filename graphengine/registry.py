"""The node registry, built explicitly from node packs (no import-time globals)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphengine.environment import Environment
from graphengine.node import Node, object_info


@dataclass(frozen=True)
class NodePack:
    """A named set of node classes, e.g. ``nodes.utility.pack()``."""

    name: str
    nodes: tuple[type[Node], ...]


class NodeRegistry(Mapping[str, type[Node]]):
    """class_type → node class. Later packs may not silently shadow earlier ones."""

    def __init__(self, packs: Iterable[NodePack]):
        self._classes: dict[str, type[Node]] = {}
        self.packs = tuple(packs)
        for pack in self.packs:
            for node_class in pack.nodes:
                existing = self._classes.get(node_class.class_type)
                if existing is not None and existing is not node_class:
                    raise ValueError(
                        f"node class {node_class.class_type!r} of pack {pack.name!r} is already registered"
                    )
                self._classes[node_class.class_type] = node_class

    def __getitem__(self, class_type: str) -> type[Node]:
        return self._classes[class_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def object_info(self, env: Environment) -> dict[str, Any]:
        """The full `/object_info` body (re-reads dynamic combo lists on every call)."""
        return {class_type: object_info(node_class, env) for class_type, node_class in self._classes.items()}
