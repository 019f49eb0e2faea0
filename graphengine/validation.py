"""Validation: registry × workflow → ComfyUI-shaped errors, every error reported at once.

Follows ComfyUI's ``validate_prompt`` (reference §4.1): unknown classes fail the whole prompt; the
outputs are the nodes whose class is an output node (filtered by ``partial_execution_targets``); each
output and everything upstream of it is validated once; orphan nodes are never looked at. A node with
its own errors appears in ``node_errors`` with the outputs that depend on it; a node that is invalid only
because something upstream is invalid gets no entry. If no output survives, ``WorkflowInvalid`` carries
ComfyUI's exact 400 body.

Literal coercion follows ComfyUI with strict exceptions where it would be silently wrong; the
rules are in ``graphengine.coercion``.

The traversal is iterative (no recursion), so 100,000-node graphs and long chains validate in
linear time; dependency cycles are reported as ``dependency_cycle`` naming the cycle.

Validation is incremental: each node's JSON object is snapshotted (``marshal``), and a node whose
snapshot is unchanged since the last validation reuses its previous check (its links are re-checked
against the current sources); an unchanged prompt reuses the whole result. Only classes whose checks
depend on nothing but the prompt are reused (no model-file combos, no ``validate_inputs``).

Speed: each class's rules are computed once per validator (one per registry), and the per-node
check is one closure whose common cases (a literal of the declared type within bounds, a fixed
combo's option, a well-formed link of a matching type) are decided inline; every conversion and
every error goes through the general methods. ``benchmarks/engine_overhead.py`` measures it.
"""

from __future__ import annotations

import marshal
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from graphengine.coercion import (
    coerce_bool,
    coerce_float,
    coerce_int,
    coerce_string,
    coerce_union,
    kind_name,
)
from graphengine.environment import Environment
from graphengine.errors import NodeError, WorkflowInvalid
from graphengine.gc_pause import gc_paused
from graphengine.node import ANY_TYPE, InputInfo, Node, combo_values, input_config
from graphengine.registry import NodeRegistry
from graphengine.workflow import InvalidValue, Link, Workflow, invalid_prompt, parse_value, parse_workflow

K_INT, K_FLOAT, K_STRING, K_BOOL, K_COMBO, K_ANY, K_SOCKET, K_UNION = range(8)
_PRIMITIVE_KINDS = {"INT": K_INT, "FLOAT": K_FLOAT, "STRING": K_STRING, "BOOLEAN": K_BOOL}


@dataclass(frozen=True, slots=True)
class InputRule:
    """How one declared input is checked (precomputed once per node class)."""

    info: InputInfo
    name: str
    kind: int
    socket: str  # "COMBO" for combo inputs
    required: bool
    check_values: bool  # False when the class's validate_inputs takes over min/max/combo checks
    minimum: Any
    maximum: Any


@dataclass(frozen=True, slots=True)
class ClassRules:
    """Everything validation needs to know about one node class, computed once per validator.

    ``fast`` is the per-input table the hot loop reads: ``(name, kind, required, rule, socket,
    minimum, maximum, allowed)`` where ``minimum``/``maximum`` are the bounds to enforce (None when
    absent or when ``validate_inputs`` takes the check over) and ``allowed`` the set of a fixed combo's
    options (None for combos read from the environment, or whose check ``validate_inputs`` takes over).
    """

    node_class: type[Node]
    rules: tuple[InputRule, ...]
    output_sockets: tuple[str, ...]
    custom_validate: bool
    fast: tuple[tuple[Any, ...], ...] = ()
    socket_of: dict[str, str] = field(default_factory=dict)  # input name → socket type ("COMBO" for combos)
    static: bool = True  # checks depend on nothing but the prompt (see ``Validator.is_static``)
    output_node: bool = False


def rules_for(node_class: type[Node]) -> ClassRules:
    taken_over = node_class.validates()
    rules = []
    for info in node_class.inputs_info:
        if info.spec.is_combo:
            kind, socket = K_COMBO, "COMBO"
        else:
            socket = info.socket or ANY_TYPE
            if socket == ANY_TYPE:
                kind = K_ANY
            elif socket in _PRIMITIVE_KINDS:
                kind = _PRIMITIVE_KINDS[socket]
            elif "," in socket:
                kind = K_UNION
            else:
                kind = K_SOCKET
        options = info.spec.options
        rules.append(
            InputRule(
                info=info,
                name=info.name,
                kind=kind,
                socket=socket,
                required=info.required,
                check_values=info.name not in taken_over,
                minimum=options.get("min"),
                maximum=options.get("max"),
            )
        )
    custom = getattr(node_class.validate_inputs, "__func__", None) is not Node.validate_inputs.__func__
    dynamic_combo = any(callable(r.info.spec.combo) for r in rules)
    return ClassRules(
        node_class=node_class,
        rules=tuple(rules),
        output_sockets=tuple(o.socket for o in node_class.outputs_info),
        custom_validate=custom,
        fast=tuple(_fast_entry(r) for r in rules),
        socket_of={r.name: r.socket for r in rules},
        static=not custom and not dynamic_combo,
        output_node=bool(node_class.output_node),
    )


def _fast_entry(rule: InputRule) -> tuple[Any, ...]:
    bounded = rule.check_values and rule.kind in (K_INT, K_FLOAT)
    allowed = None
    combo = rule.info.spec.combo
    if rule.kind == K_COMBO and rule.check_values and combo is not None and not callable(combo):
        allowed = frozenset(o for o in combo if _hashable(o))
    return (
        rule.name,
        rule.kind,
        rule.required,
        rule,
        rule.socket,
        rule.minimum if bounded else None,
        rule.maximum if bounded else None,
        allowed,
    )


@dataclass(slots=True, eq=False)
class CheckedNode:
    """A node that passed validation: coerced literals and links, both in declaration order."""

    id: str
    node_class: type[Node]
    literals: dict[str, Any]
    links: dict[str, Link]
    title: str | None
    # the marshal snapshot of the node's JSON object, for validation's memo (None: never reused)
    snapshot: bytes | None = field(default=None, repr=False)

    @property
    def class_type(self) -> str:
        return self.node_class.class_type


@dataclass(eq=False)
class ValidatedPrompt:
    """A prompt that passed validation for at least one output.

    ``nodes`` holds every node needed by the passing outputs, sources before consumers;
    ``outputs`` the output node ids to run; ``node_errors`` the ComfyUI ``node_errors`` of outputs that
    failed while others passed (only the passing ones run).
    """

    workflow: Workflow
    nodes: dict[str, CheckedNode]
    outputs: tuple[str, ...]
    node_errors: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def prompt(self) -> dict[str, Any]:
        """The post-validation API prompt (literals coerced, ``__value__`` unwrapped), as history shows it."""
        result: dict[str, Any] = {}
        for node_id, wnode in self.workflow.nodes.items():
            checked = self.nodes.get(node_id)
            raw = wnode.raw
            if checked is None:
                result[node_id] = dict(raw)
                continue
            inputs = dict(raw.get("inputs") or {})
            inputs.update(checked.literals)
            for name, link in checked.links.items():
                inputs[name] = [link.node_id, link.output]
            entry = {"inputs": inputs, "class_type": wnode.class_type}
            if "_meta" in raw:
                entry["_meta"] = raw["_meta"]
            result[node_id] = entry
        return result


def types_match(received: str, expected: str) -> bool:
    """ComfyUI's rule: equal, ``*`` on either side, or intersecting comma-separated unions."""
    if received == expected or received == ANY_TYPE or expected == ANY_TYPE:
        return True
    if "," in received or "," in expected:
        return bool(set(received.split(",")) & set(expected.split(",")))
    return False


class Validator:
    """Validates prompts against one registry and environment.

    The per-class rules are computed once, when the validator is made (one per registry).
    """

    def __init__(self, registry: NodeRegistry, env: Environment):
        self.registry = registry
        self.env = env
        self._rules: dict[type[Node], ClassRules] = {}
        self.class_map: dict[str, type[Node]] = dict(registry.items())
        self._rules_by_type: dict[str, ClassRules] = {
            class_type: self.class_rules(node_class) for class_type, node_class in self.class_map.items()
        }
        self._last: tuple[Any, ValidatedPrompt] | None = None
        # node id → the CheckedNode of its last successful check. Nodes of static classes carry the
        # marshal snapshot of their JSON object: such a node is reused while its snapshot is
        # unchanged and its links still reach sources of matching types (re-checked on reuse).
        self.node_memo: dict[str, CheckedNode] = {}

    def class_rules(self, node_class: type[Node]) -> ClassRules:
        rules = self._rules.get(node_class)
        if rules is None:
            rules = self._rules[node_class] = rules_for(node_class)
        return rules

    def validate(
        self, prompt: Mapping[str, Any] | Workflow, partial_execution_targets: Iterable[Any] | None = None
    ) -> ValidatedPrompt:
        targets = _targets(partial_execution_targets)
        with gc_paused():
            workflow = prompt if isinstance(prompt, Workflow) else parse_workflow(prompt)
            run = _Run(self, workflow)
            outputs = run.classify()
            snapshots = run.snapshots
            # node ids and snapshots as two flat tuples: comparing them costs no per-node allocation
            key = (tuple(snapshots), tuple(snapshots.values()), targets) if snapshots is not None else None
            last = self._last
            if key is not None and last is not None and last[0] == key:
                return last[1]
            result = run.validate(outputs, targets)
            if key is not None and run.all_static:
                self._last = (key, result)
        return result

    def is_static(self, node_class: type[Node]) -> bool:
        """Whether validating this class depends on nothing but the prompt: no combo lists read from
        the environment (model files) and no ``validate_inputs`` (which may look at files)."""
        return self.class_rules(node_class).static

    def forget(self) -> None:
        """Drop the memos of the last validated prompt."""
        self._last = None
        self.node_memo = {}


def _targets(partial_execution_targets: Iterable[Any] | None) -> tuple[str, ...] | None:
    if partial_execution_targets is None:
        return None
    if isinstance(partial_execution_targets, (str, int)):
        partial_execution_targets = [partial_execution_targets]
    return tuple(str(t) for t in partial_execution_targets)


def _add(errors: list[NodeError] | None, error: NodeError) -> list[NodeError]:
    if errors is None:
        return [error]
    errors.append(error)
    return errors


class _Run:
    """The state of validating one prompt."""

    def __init__(self, validator: Validator, workflow: Workflow):
        self.previous_memo = validator.node_memo
        self.validator = validator
        self.env = validator.env
        self.workflow = workflow
        self.rules_by_type = validator._rules_by_type  # class_type → rules (every node's class is known)
        # node id → marshal snapshot (format 2: C speed, and equal values always encode equally) of
        # the node's JSON object, to recognise unchanged nodes and unchanged re-submissions; None when
        # some value cannot be encoded (then nothing is reused)
        self.snapshots: dict[str, bytes] | None = {}
        self.errors: dict[str, list[NodeError]] = {}
        # every node visited, in post-order (sources first), as checked: a node with errors gets a
        # CheckedNode too (its valid literals and well-formed links, no snapshot), never returned
        self.visited: dict[str, CheckedNode] = {}
        self.all_static = True  # every node checked has a static class (the result may be memoised)
        self._combos: dict[tuple[type[Node], str], tuple[list[str], frozenset[str]]] = {}

    # --- the whole prompt ---

    def classify(self) -> list[str]:
        """One pass over every node (orphans included): its class's rules (an unknown class fails the
        whole prompt) and its snapshot. Returns the output node ids."""
        by_type = self.rules_by_type
        snapshots = self.snapshots
        dumps = marshal.dumps
        outputs = []
        for node_id, wnode in self.workflow.nodes.items():
            rules = by_type.get(wnode.class_type)
            if rules is None:
                raise invalid_prompt(
                    f"Cannot execute because node {wnode.class_type} does not exist.", f"Node ID '#{node_id}'"
                )
            if rules.output_node:
                outputs.append(node_id)
            if snapshots is not None:
                try:
                    snapshots[node_id] = dumps(wnode.raw, 2)
                except (ValueError, TypeError):
                    snapshots = self.snapshots = None
        return outputs

    def validate(self, outputs: list[str], partial_execution_targets: Iterable[Any] | None) -> ValidatedPrompt:
        if partial_execution_targets is not None:
            targets = set(partial_execution_targets)
            outputs = [o for o in outputs if o in targets]
        if not outputs:
            raise WorkflowInvalid(
                {
                    "error": {
                        "type": "prompt_no_outputs",
                        "message": "Prompt has no outputs",
                        "details": "",
                        "extra_info": {},
                    },
                    "node_errors": {},
                }
            )

        valid = self._traverse(outputs)
        visited = self.visited
        self.validator.node_memo = visited
        if valid is None:  # nothing failed
            good, bad = outputs, []
        else:
            good = [o for o in outputs if valid.get(o)]
            bad = [o for o in outputs if not valid.get(o)]
        node_errors = self._node_errors(bad) if bad else {}
        if not good:
            details = "\n".join(
                f"{error['message']}: {error['details']}"
                for entry in node_errors.values()
                for error in entry["errors"]
            )
            raise WorkflowInvalid(
                {
                    "error": {
                        "type": "prompt_outputs_failed_validation",
                        "message": "Prompt outputs failed validation",
                        "details": details,
                        "extra_info": {},
                    },
                    "node_errors": node_errors,
                }
            )
        if bad:
            needed = self._upstream(good)
            nodes = {node_id: node for node_id, node in visited.items() if node_id in needed}
        else:
            nodes = visited
        return ValidatedPrompt(workflow=self.workflow, nodes=nodes, outputs=tuple(good), node_errors=node_errors)

    def _traverse(self, outputs: list[str]) -> dict[str, bool] | None:
        """Iterative DFS upstream from the outputs: checks each node once, records it in
        ``visited`` in post-order and finds cycles. Returns each node's validity (own checks and all
        sources valid), or None when every node is valid."""
        visited = self.visited
        on_path: dict[str, int] = {}  # node id → its position on the DFS path
        in_cycle: set[str] = set()
        check = self._checker()
        for output in outputs:
            if output in visited:
                continue
            on_path[output] = 0
            path = [check(output)]  # the nodes being visited, each a source of the one before
            pending = []  # the link iterators of the nodes on the path, but the last
            links = iter(path[0].links.values())  # the last one's
            while True:
                for link in links:
                    source = link[0]
                    if source in visited:
                        continue
                    position = on_path.get(source)
                    if position is None:
                        node = check(source)
                        if not node.links:  # a source of its own: done at once
                            visited[source] = node
                            continue
                        on_path[source] = len(path)
                        path.append(node)
                        pending.append(links)
                        links = iter(node.links.values())
                        break
                    self._report_cycle(path[position:], in_cycle)
                else:
                    node = path.pop()
                    del on_path[node.id]
                    visited[node.id] = node
                    if not pending:
                        break
                    links = pending.pop()
        errors = self.errors
        if not errors and not in_cycle:
            return None
        valid: dict[str, bool] = {}
        for node_id, node in visited.items():  # post-order: sources first (members of a cycle are invalid anyway)
            ok = node_id not in errors and node_id not in in_cycle
            if ok:
                for link in node.links.values():
                    if not valid.get(link[0], False):
                        ok = False
                        break
            valid[node_id] = ok
        return valid

    def _sources(self, node_id: str) -> list[str]:
        """The distinct source ids of a visited node's well-formed links, in input order."""
        sources: list[str] = []
        for link in self.visited[node_id].links.values():
            if link[0] not in sources:
                sources.append(link[0])
        return sources

    def _report_cycle(self, stack_slice: list[CheckedNode], in_cycle: set[str]) -> None:
        from graphengine.plan import describe_cycle

        members = {node.id for node in stack_slice}
        in_cycle.update(members)
        edges = [(link[0], node.id) for node in stack_slice for link in node.links.values() if link[0] in members]
        cycle = describe_cycle(edges, order=list(self.workflow.nodes))
        first = cycle[0]
        if any(e.type == "dependency_cycle" for e in self.errors.get(first, ())):
            return
        text = " -> ".join(f"{n} ({self.workflow.nodes[n].class_type})" for n in cycle) + f" -> {first}"
        self.errors.setdefault(first, []).append(
            NodeError("dependency_cycle", "Dependency cycle detected", text, {})
        )

    def _upstream(self, outputs: list[str]) -> set[str]:
        seen = set(outputs)
        stack = list(outputs)
        while stack:
            for source in self._sources(stack.pop()):
                if source not in seen:
                    seen.add(source)
                    stack.append(source)
        return seen

    def _node_errors(self, failed_outputs: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for output in failed_outputs:
            for node_id in self._upstream_ordered(output):
                errors = self.errors.get(node_id)
                if not errors:
                    continue
                entry = result.get(node_id)
                if entry is None:
                    entry = result[node_id] = {
                        "errors": [e.to_json() for e in errors],
                        "dependent_outputs": [],
                        "class_type": self.workflow.nodes[node_id].class_type,
                    }
                entry["dependent_outputs"].append(output)
        return result

    def _upstream_ordered(self, output: str) -> list[str]:
        seen = {output}
        ordered = [output]
        stack = [output]
        while stack:
            for source in self._sources(stack.pop()):
                if source not in seen:
                    seen.add(source)
                    ordered.append(source)
                    stack.append(source)
        return ordered

    # --- one node ---

    def _checker(self) -> Callable[[str], CheckedNode]:
        """``check(node_id)``: validate one node; its ``CheckedNode`` (for a node with errors, which
        are recorded in ``errors``, one with its valid literals and well-formed links).

        This is the per-node hot path, so it is one closure over local names, and the cases that
        need no conversion — a string for a STRING input, an in-range int/float for INT/FLOAT, a
        bool for BOOLEAN, a fixed combo's option, any plain value for a ``*`` input, a well-formed
        link of a matching type — are decided inline; everything else (coercion, every error) goes
        through the general methods, which define the behaviour."""
        nodes = self.workflow.nodes
        by_type = self.rules_by_type
        snapshots = self.snapshots
        previous = self.previous_memo
        errors_of = self.errors
        links_match = self._links_still_match
        literal = self._literal
        link_error = self._link_error
        invalid_value = self._invalid_value

        def check(node_id: str) -> CheckedNode:
            wnode = nodes[node_id]
            table = by_type[wnode.class_type]
            node_class = table.node_class
            snapshot = None
            if not table.static:
                self.all_static = False
            elif snapshots is not None:
                snapshot = snapshots[node_id]
                old = previous.get(node_id)
                if (
                    old is not None
                    and old.node_class is node_class
                    and old.snapshot == snapshot
                    and links_match(old.links, table)
                ):
                    return old
            inputs = wnode.raw_inputs
            literals: dict[str, Any] = {}
            links: dict[str, Link] = {}
            errors: list[NodeError] | None = None
            for name, kind, required, rule, socket, minimum, maximum, allowed in table.fast:
                value = inputs.get(name)
                if value is None:
                    if required:
                        errors = _add(
                            errors,
                            NodeError("required_input_missing", "Required input is missing", name, {"input_name": name}),
                        )
                    continue
                value_type = type(value)
                if value_type is str:
                    if kind == K_STRING or kind == K_ANY or (allowed is not None and value in allowed):
                        literals[name] = value
                        continue
                elif value_type is list:
                    if len(value) == 2:
                        source_id, slot = value
                        if type(source_id) is str and type(slot) is int and slot >= 0:
                            # the link rule's common case (parse_value is the rule), checked inline
                            source = nodes.get(source_id)
                            if source is not None:
                                sockets = by_type[source.class_type].output_sockets
                                if slot < len(sockets):
                                    received = sockets[slot]
                                    if received == socket or socket == ANY_TYPE or types_match(received, socket):
                                        links[name] = Link(value)
                                        continue
                    value = parse_value(value)
                    value_type = type(value)
                elif value_type is int:
                    if kind == K_INT:
                        if (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
                            literals[name] = value
                            continue
                    elif kind == K_ANY:
                        literals[name] = value
                        continue
                elif value_type is float:
                    if kind == K_FLOAT:
                        if (
                            value - value == 0.0  # finite
                            and (minimum is None or value >= minimum)
                            and (maximum is None or value <= maximum)
                        ):
                            literals[name] = value
                            continue
                    elif kind == K_ANY:
                        literals[name] = value
                        continue
                elif value_type is bool:
                    if kind == K_BOOL or kind == K_ANY:
                        literals[name] = value
                        continue
                else:
                    value = parse_value(value)
                    value_type = type(value)
                if value_type is Link:
                    source = nodes.get(value[0])
                    source_table = by_type[source.class_type] if source is not None else None
                    if source_table is not None:
                        sockets = source_table.output_sockets
                        slot = value[1]
                        if slot < len(sockets):
                            received = sockets[slot]
                            if received == socket or socket == ANY_TYPE or types_match(received, socket):
                                links[name] = value
                                continue
                    errors = _add(errors, link_error(rule, value, source_table))
                    continue
                if value_type is InvalidValue:
                    errors = _add(errors, invalid_value(rule, value))
                    continue
                error = literal(node_class, rule, value, literals)
                if error is not None:
                    errors = _add(errors, error)
            if errors is None and table.custom_validate:
                errors = self._custom(node_class, literals) or None
            if errors is not None:
                errors_of[node_id] = errors
                return CheckedNode(node_id, node_class, literals, links, wnode.title)  # never reused
            return CheckedNode(node_id, node_class, literals, links, wnode.title, snapshot)

        return check

    def _links_still_match(self, links: dict[str, Link], table: ClassRules) -> bool:
        """Whether every link of a previously checked node still reaches an existing output of a
        matching type (the sources may have been replaced since)."""
        if not links:
            return True
        nodes = self.workflow.nodes
        by_type = self.rules_by_type
        expected = table.socket_of
        for name, (source_id, slot) in links.items():
            source = nodes.get(source_id)
            if source is None:
                return False
            sockets = by_type[source.class_type].output_sockets
            if slot >= len(sockets):
                return False
            received, wanted = sockets[slot], expected[name]
            if received != wanted and not types_match(received, wanted):
                return False
        return True

    def _link_error(self, rule: InputRule, link: Link, source_table: ClassRules | None) -> NodeError:
        """The error of a well-formed link that does not fit: a missing source node, an output
        index out of range, or an output of the wrong type."""
        source_id, slot = link
        if source_table is None:
            return self._bad_link(rule, link, f"node '{source_id}' does not exist")
        sockets = source_table.output_sockets
        if slot >= len(sockets):
            return self._bad_link(
                rule,
                link,
                f"node '{source_id}' ({self.workflow.nodes[source_id].class_type}) has "
                f"{len(sockets)} output(s); output {slot} does not exist",
            )
        received = sockets[slot]
        return NodeError(
            "return_type_mismatch",
            "Return type mismatch between linked nodes",
            f"{rule.name}, received_type({received}) mismatch input_type({rule.socket})",
            {
                "input_name": rule.name,
                "input_config": input_config(rule.info, self.env),
                "received_type": received,
                "linked_node": link.to_json(),
            },
        )

    def _invalid_value(self, rule: InputRule, value: InvalidValue) -> NodeError:
        if value.kind == "bad_linked_input":
            return self._bad_link(rule, value.raw, value.reason)
        return self._invalid_type(rule, value.raw, value.reason)

    def _literal(self, node_class: type[Node], rule: InputRule, value: Any, literals: dict[str, Any]) -> NodeError | None:
        kind = rule.kind
        try:
            if kind == K_STRING:
                coerced = coerce_string(value)
            elif kind == K_INT:
                coerced = coerce_int(value)
            elif kind == K_FLOAT:
                coerced = coerce_float(value)
            elif kind == K_BOOL:
                coerced = coerce_bool(value)
            elif kind == K_COMBO:
                coerced = value
            elif kind == K_ANY:
                coerced = value
            elif kind == K_UNION:
                coerced = coerce_union(rule.socket, value)
            else:
                raise ValueError(f"{rule.socket} inputs take a link from another node's output, not a constant")
        except (TypeError, ValueError, OverflowError) as exc:
            return self._invalid_type(rule, value, str(exc))
        if rule.check_values:
            if kind == K_COMBO:
                options, allowed = self._combo(node_class, rule)
                if not _hashable(coerced) or coerced not in allowed:
                    if len(options) > 20:
                        shown, config = f"(list of length {len(options)})", None
                    else:
                        shown, config = str(options), input_config(rule.info, self.env)
                    return NodeError(
                        "value_not_in_list",
                        "Value not in list",
                        f"{rule.name}: '{coerced}' not in {shown}",
                        {"input_name": rule.name, "input_config": config, "received_value": coerced},
                    )
            elif kind == K_INT or kind == K_FLOAT:
                if rule.minimum is not None and coerced < rule.minimum:
                    return NodeError(
                        "value_smaller_than_min",
                        f"Value {coerced} smaller than min of {rule.minimum}",
                        rule.name,
                        self._extra(rule, coerced),
                    )
                if rule.maximum is not None and coerced > rule.maximum:
                    return NodeError(
                        "value_bigger_than_max",
                        f"Value {coerced} bigger than max of {rule.maximum}",
                        rule.name,
                        self._extra(rule, coerced),
                    )
        literals[rule.name] = coerced
        return None

    def _combo(self, node_class: type[Node], rule: InputRule) -> tuple[list[str], frozenset[str]]:
        key = (node_class, rule.name)
        cached = self._combos.get(key)
        if cached is None:
            options = combo_values(rule.info.spec, self.env)
            cached = self._combos[key] = (options, frozenset(o for o in options if _hashable(o)))
        return cached

    def _custom(self, node_class: type[Node], literals: dict[str, Any]) -> list[NodeError]:
        try:
            message = node_class.validate_inputs(literals, self.env)
        except Exception as exc:  # a node's own check failed: report it, never crash
            return [
                NodeError(
                    "exception_during_validation",
                    "Exception when validating node",
                    str(exc),
                    {"exception_type": full_type_name(type(exc)), "traceback": traceback.format_tb(exc.__traceback__)},
                )
            ]
        if message is None or message is True:
            return []
        names = [n for n in node_class.validates() if n in literals] or [None]
        return [
            NodeError(
                "custom_validation_failed",
                "Custom validation failed for node",
                f"{name} - {message}" if name else str(message),
                {"input_name": name} if name else {},
            )
            for name in sorted(names, key=lambda n: n or "")
        ]

    def _extra(self, rule: InputRule, value: Any) -> dict[str, Any]:
        return {"input_name": rule.name, "input_config": input_config(rule.info, self.env), "received_value": value}

    def _bad_link(self, rule: InputRule, value: Any, reason: str) -> NodeError:
        received = value.to_json() if isinstance(value, Link) else _jsonable(value)
        return NodeError(
            "bad_linked_input",
            "Bad linked input, must be a length-2 list of [string, int]",
            f"{rule.name}: {reason}",
            {"input_name": rule.name, "input_config": input_config(rule.info, self.env), "received_value": received},
        )

    def _invalid_type(self, rule: InputRule, value: Any, reason: str) -> NodeError:
        shown = _short(value)
        return NodeError(
            "invalid_input_type",
            f"Failed to convert an input value to a {rule.socket} value",
            f"{rule.name}, {shown}, {reason}",
            {
                "input_name": rule.name,
                "input_config": input_config(rule.info, self.env),
                "received_value": _jsonable(value),
                "exception_message": reason,
            },
        )


def full_type_name(kind: type) -> str:
    """ComfyUI's qualified exception type name (``torch.OutOfMemoryError``, ``ValueError``)."""
    module = kind.__module__
    if module == "builtins":
        return kind.__qualname__
    return f"{module}.{kind.__qualname__}"


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _short(value: Any, limit: int = 200) -> str:
    if isinstance(value, (list, tuple, dict)):
        text = f"<{kind_name(value)} of {len(value)} items>"
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _jsonable(value: Any) -> Any:
    """A JSON-safe, bounded stand-in for a received value in ``extra_info``."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= 1000 else value[:1000] + "…"
    if isinstance(value, (list, tuple)) and len(value) <= 2 and all(
        v is None or isinstance(v, (str, int, float, bool)) for v in value
    ):
        return list(value)
    return _short(value)


__all__ = [
    "CheckedNode",
    "ValidatedPrompt",
    "Validator",
    "full_type_name",
    "types_match",
]
