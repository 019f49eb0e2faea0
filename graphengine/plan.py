"""Planning: the validated graph as a networkx DAG, and the order the executor runs it in.

The plan holds the graph (``networkx.DiGraph``, edges source → consumer) and one deterministic
topological order of every node the outputs need. The order follows ComfyUI's UX heuristic
(reference §4.2): among the nodes that are ready, run an output node first, then a node that feeds an
output directly, then one two hops away, then the rest in discovery order — so ``VAEDecode`` and
``SaveImage`` run right after their sampler rather than after unrelated branches.

Lazy inputs (``check_lazy_status``) are ordered like any other edge, so a lazily requested source
always sits before its consumer; whether it runs is decided by the executor at run time.

The structure of the last plan is kept: a re-run whose graph differs only in literal values reuses
the previous plan without touching networkx (``Planner``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

from graphengine.validation import CheckedNode, ValidatedPrompt
from graphengine.workflow import Link

PRIORITY_OUTPUT, PRIORITY_FEEDS_OUTPUT, PRIORITY_TWO_HOPS, PRIORITY_OTHER = range(4)


class CycleError(ValueError):
    """The graph has a dependency cycle; ``cycle`` lists it in data-flow order."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("Dependency cycle detected: " + " -> ".join([*cycle, cycle[0]]))


@dataclass(frozen=True, eq=False)
class Plan:
    """What the executor needs to know about the graph's shape."""

    graph: nx.DiGraph
    order: tuple[str, ...]  # every node, sources before consumers
    index: dict[str, int]  # node id → position in ``order``
    strong_sources: dict[str, tuple[str, ...]]  # sources reached through non-lazy links
    lazy_links: dict[str, dict[str, Link]]  # node id → {input name: link} for its lazy inputs
    outputs: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.order)


def structure_key(validated: ValidatedPrompt) -> tuple[Any, ...]:
    """Everything a plan depends on: node ids, classes, links and outputs (not literal values)."""
    return (
        validated.outputs,
        tuple((node_id, node.node_class, tuple(node.links.items())) for node_id, node in validated.nodes.items()),
    )


class Planner:
    """Builds plans, reusing the previous one when only literal values changed."""

    def __init__(self) -> None:
        self._last_key: tuple[Any, ...] | None = None
        self._last_plan: Plan | None = None

    def plan(self, validated: ValidatedPrompt) -> Plan:
        key = structure_key(validated)
        if self._last_plan is not None and key == self._last_key:
            return self._last_plan
        plan = build_plan(validated.nodes, validated.outputs)
        self._last_key, self._last_plan = key, plan
        return plan

    def clear(self) -> None:
        self._last_key = self._last_plan = None


def build_plan(nodes: dict[str, CheckedNode], outputs: Sequence[str]) -> Plan:
    """Plan the given nodes (in discovery order, sources first) for the given outputs."""
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    edges = []
    strong_sources: dict[str, tuple[str, ...]] = {}
    lazy_links: dict[str, dict[str, Link]] = {}
    for node_id, node in nodes.items():
        lazy_names = _lazy_names(node)
        strong: list[str] = []
        lazy: dict[str, Link] = {}
        for name, link in node.links.items():
            edges.append((link.node_id, node_id))
            if name in lazy_names:
                lazy[name] = link
            elif link.node_id not in strong:
                strong.append(link.node_id)
        strong_sources[node_id] = tuple(strong)
        if lazy:
            lazy_links[node_id] = lazy
    graph.add_edges_from(edges)
    order = ordered(graph, nodes, outputs)
    return Plan(
        graph=graph,
        order=tuple(order),
        index={node_id: i for i, node_id in enumerate(order)},
        strong_sources=strong_sources,
        lazy_links=lazy_links,
        outputs=tuple(outputs),
    )


def ordered(graph: nx.DiGraph, discovery: Iterable[str], outputs: Sequence[str]) -> list[str]:
    """Kahn's algorithm over the networkx graph, picking among ready nodes by ComfyUI's heuristic."""
    succ = graph.succ
    pred = graph.pred
    priority = dict.fromkeys(graph, PRIORITY_OTHER)
    for output in outputs:
        priority[output] = PRIORITY_OUTPUT
    for output in outputs:
        for source in pred[output]:
            if priority[source] > PRIORITY_FEEDS_OUTPUT:
                priority[source] = PRIORITY_FEEDS_OUTPUT
    for node_id, level in list(priority.items()):
        if level == PRIORITY_FEEDS_OUTPUT:
            for source in pred[node_id]:
                if priority[source] > PRIORITY_TWO_HOPS:
                    priority[source] = PRIORITY_TWO_HOPS
    rank = {node_id: i for i, node_id in enumerate(discovery)}
    blocked = {node_id: len(pred[node_id]) for node_id in graph}
    ready = [(priority[n], rank[n], n) for n, count in blocked.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    push, pop = heapq.heappush, heapq.heappop
    while ready:
        node_id = pop(ready)[2]
        order.append(node_id)
        for consumer in succ[node_id]:
            remaining = blocked[consumer] - 1
            blocked[consumer] = remaining
            if remaining == 0:
                push(ready, (priority[consumer], rank[consumer], consumer))
    if len(order) != len(blocked):
        raise CycleError(describe_cycle(graph.edges, order=list(rank)))
    return order


def describe_cycle(edges: Iterable[tuple[str, str]], order: Sequence[str]) -> list[str]:
    """One cycle among ``edges`` (source → consumer), in data-flow order, starting at the node that
    comes first in ``order`` (the prompt's order), so the report is deterministic."""
    graph = nx.DiGraph()
    graph.add_edges_from(edges)
    rank = {node_id: i for i, node_id in enumerate(order)}
    cyclic = {n for component in nx.strongly_connected_components(graph) if len(component) > 1 for n in component}
    cyclic |= {u for u, v in graph.edges if u == v}
    if not cyclic:
        raise ValueError("no cycle among the given edges")
    start = min(cyclic, key=lambda n: (rank.get(n, len(rank)), n))
    cycle_edges = nx.find_cycle(graph, source=start)
    cycle = [u for u, _v in cycle_edges]
    pivot = min(range(len(cycle)), key=lambda i: (rank.get(cycle[i], len(rank)), cycle[i]))
    return cycle[pivot:] + cycle[:pivot]


def _lazy_names(node: CheckedNode) -> frozenset[str]:
    return frozenset(info.name for info in node.node_class.inputs_info if info.spec.lazy)
