"""Planning: the order the executor runs the validated graph in, and its networkx view.

The plan orders every node the outputs need (sources first) with Kahn's algorithm and ComfyUI's UX
heuristic (reference §4.2): among the nodes that are ready, run an output node first, then a node
that feeds an output directly, then one two hops away, then the rest in discovery order — so
``VAEDecode`` and ``SaveImage`` run right after their sampler rather than after unrelated branches.

networkx is the graph model for analysis: ``Plan.graph`` (a ``DiGraph``, edges source → consumer)
and the dependency-cycle reports (strongly connected components, ``find_cycle``) that validation
and planning return. The ordering loop itself runs over plain dicts, because building a networkx
graph costs more per node than the engine's whole per-node budget (see benchmarks/engine_overhead.py);
the graph is built on first use instead, and networkx itself is imported only then (or when a cycle
is reported), so that starting the server does not pay for importing it.

Lazy inputs (``check_lazy_status``) are ordered like any other edge, so a lazily requested source
always sits before its consumer; whether it runs is decided by the executor at run time.

The last plan is kept: a re-run whose graph differs only in literal values reuses it (``Planner``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from graphengine.validation import CheckedNode, ValidatedPrompt
from graphengine.workflow import Link

if TYPE_CHECKING:
    import networkx as nx

PRIORITY_OUTPUT, PRIORITY_FEEDS_OUTPUT, PRIORITY_TWO_HOPS, PRIORITY_OTHER = range(4)


class CycleError(ValueError):
    """The graph has a dependency cycle; ``cycle`` lists it in data-flow order."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("Dependency cycle detected: " + " -> ".join([*cycle, cycle[0]]))


class Plan:
    """What the executor needs to know about the graph's shape.

    ``graph`` is the networkx view of the same structure (edges source → consumer), built on first
    use: ordering runs a lean Kahn loop over plain dicts so that planning stays within the engine's
    per-node budget; networkx serves cycle reports and anything that wants to analyse the graph.
    """

    __slots__ = ("order", "index", "sources", "consumers", "strong_sources", "lazy_links", "outputs", "_graph")

    def __init__(
        self,
        order: tuple[str, ...],
        sources: dict[str, tuple[str, ...]],
        consumers: dict[str, list[str]],
        strong_sources: dict[str, tuple[str, ...]],
        lazy_links: dict[str, dict[str, Link]],
        outputs: tuple[str, ...],
    ):
        self.order = order  # every node, sources before consumers
        self.index = {node_id: i for i, node_id in enumerate(order)}
        self.sources = sources  # node id → distinct source ids
        self.consumers = consumers  # node id → distinct consumer ids
        self.strong_sources = strong_sources  # sources reached through non-lazy links
        self.lazy_links = lazy_links  # node id → {input name: link} for its lazy inputs
        self.outputs = outputs
        self._graph: nx.DiGraph | None = None

    @property
    def graph(self) -> nx.DiGraph:
        if self._graph is None:
            import networkx as nx

            graph = nx.DiGraph()
            graph.add_nodes_from(self.order)
            graph.add_edges_from((s, n) for n, sources in self.sources.items() for s in sources)
            self._graph = graph
        return self._graph

    def __len__(self) -> int:
        return len(self.order)


def structure_key(validated: ValidatedPrompt) -> tuple[Any, ...]:
    """Everything a plan depends on: node ids, classes, links and outputs (not literal values)."""
    nodes = validated.nodes.values()
    return (
        validated.outputs,
        tuple(validated.nodes),
        tuple([node.node_class for node in nodes]),
        tuple([node.links for node in nodes]),  # dicts validation made and never changes: compared by value
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
    sources: dict[str, tuple[str, ...]] = {}
    consumers: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    strong_sources: dict[str, tuple[str, ...]] = {}
    lazy_links: dict[str, dict[str, Link]] = {}
    lazy_by_class: dict[type, frozenset[str]] = {}
    for node_id, node in nodes.items():
        links = node.links
        if not links:
            sources[node_id] = strong_sources[node_id] = ()
            continue
        lazy_names = lazy_by_class.get(node.node_class)
        if lazy_names is None:
            lazy_names = lazy_by_class[node.node_class] = _lazy_names(node)
        distinct: list[str] = []
        strong: list[str] = []
        lazy: dict[str, Link] = {}
        for name, link in links.items():
            source = link[0]
            if source not in distinct:
                distinct.append(source)
                consumers[source].append(node_id)
            if name in lazy_names:
                lazy[name] = link
            elif source not in strong:
                strong.append(source)
        sources[node_id] = tuple(distinct)
        strong_sources[node_id] = tuple(strong)
        if lazy:
            lazy_links[node_id] = lazy
    order = ordered(nodes, sources, consumers, outputs)
    return Plan(tuple(order), sources, consumers, strong_sources, lazy_links, tuple(outputs))


def ordered(
    discovery: Iterable[str],
    sources: dict[str, tuple[str, ...]],
    consumers: dict[str, list[str]],
    outputs: Sequence[str],
) -> list[str]:
    """Kahn's algorithm, picking among ready nodes by ComfyUI's heuristic (outputs, then nodes one
    and two hops from an output, then discovery order)."""
    priority = dict.fromkeys(sources, PRIORITY_OTHER)
    for output in outputs:
        priority[output] = PRIORITY_OUTPUT
    for output in outputs:
        for source in sources[output]:
            if priority[source] > PRIORITY_FEEDS_OUTPUT:
                priority[source] = PRIORITY_FEEDS_OUTPUT
    for node_id, level in list(priority.items()):
        if level == PRIORITY_FEEDS_OUTPUT:
            for source in sources[node_id]:
                if priority[source] > PRIORITY_TWO_HOPS:
                    priority[source] = PRIORITY_TWO_HOPS
    rank = {node_id: i for i, node_id in enumerate(discovery)}
    blocked = {node_id: len(s) for node_id, s in sources.items()}
    ready = [(priority[n], rank[n], n) for n, count in blocked.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    push, pop = heapq.heappush, heapq.heappop
    while ready:
        node_id = pop(ready)[2]
        order.append(node_id)
        for consumer in consumers[node_id]:
            remaining = blocked[consumer] - 1
            blocked[consumer] = remaining
            if remaining == 0:
                push(ready, (priority[consumer], rank[consumer], consumer))
    if len(order) != len(blocked):
        edges = [(s, n) for n, srcs in sources.items() for s in srcs]
        raise CycleError(describe_cycle(edges, order=list(rank)))
    return order


def describe_cycle(edges: Iterable[tuple[str, str]], order: Sequence[str]) -> list[str]:
    """One cycle among ``edges`` (source → consumer), in data-flow order, starting at the node that
    comes first in ``order`` (the prompt's order), so the report is deterministic."""
    import networkx as nx

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
