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
"""

from __future__ import annotations

import marshal
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from graphengine.coercion import coerce_bool, coerce_float, coerce_int, coerce_string, coerce_union
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
    node_class: type[Node]
    rules: tuple[InputRule, ...]
    output_sockets: tuple[str, ...]
    custom_validate: bool
    fast: tuple[tuple[str, int, bool, InputRule], ...] = ()  # (name, kind, required, rule) per input
    socket_of: dict[str, str] = field(default_factory=dict)  # input name → socket type ("COMBO" for combos)


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
    return ClassRules(
        node_class=node_class,
        rules=tuple(rules),
        output_sockets=tuple(o.socket for o in node_class.outputs_info),
        custom_validate=custom,
        fast=tuple((r.name, r.kind, r.required, r) for r in rules),
        socket_of={r.name: r.socket for r in rules},
    )


@dataclass(slots=True, eq=False)
class CheckedNode:
    """A node that passed validation: coerced literals and links, both in declaration order."""

    id: str
    node_class: type[Node]
    literals: dict[str, Any]
    links: dict[str, Link]
    title: str | None

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
    """Validates prompts against one registry and environment."""

    def __init__(self, registry: NodeRegistry, env: Environment):
        self.registry = registry
        self.env = env
        self._rules: dict[type[Node], ClassRules] = {}
        self.class_map: dict[str, type[Node]] = dict(registry.items())
        self._last: tuple[bytes, ValidatedPrompt] | None = None
        self._static: dict[type[Node], bool] = {}
        # node id → (class, marshal snapshot of its JSON object, CheckedNode) of its last successful
        # check: reused while the node is unchanged and its links still reach sources of matching
        # types (re-checked on reuse, cheaply).
        self.node_memo: dict[str, tuple[Any, ...]] = {}

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
            snapshots = _snapshots(workflow)
            key = (tuple(snapshots.items()), targets) if snapshots is not None else None
            last = self._last
            if key is not None and last is not None and last[0] == key:
                return last[1]
            result = _Run(self, workflow, snapshots or {}).validate(targets)
        if key is not None and all(self.is_static(c) for c in {n.node_class for n in result.nodes.values()}):
            self._last = (key, result)
        return result

    def is_static(self, node_class: type[Node]) -> bool:
        """Whether validating this class depends on nothing but the prompt: no combo lists read from
        the environment (model files) and no ``validate_inputs`` (which may look at files)."""
        static = self._static.get(node_class)
        if static is None:
            rules = self.class_rules(node_class)
            static = self._static[node_class] = not rules.custom_validate and not any(
                callable(r.info.spec.combo) for r in rules.rules
            )
        return static

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


def _snapshots(workflow: Workflow) -> dict[str, bytes] | None:
    """Immutable copies of each node's JSON object (``marshal`` format 2: C speed, and equal values
    always encode equally), to recognise unchanged nodes and unchanged re-submissions. None when
    some value cannot be encoded (then nothing is reused)."""
    dumps = marshal.dumps
    try:
        return {node_id: dumps(node.raw, 2) for node_id, node in workflow.nodes.items()}
    except (ValueError, TypeError):
        return None


class _Run:
    """The state of validating one prompt."""

    def __init__(self, validator: Validator, workflow: Workflow, snapshots: dict[str, bytes]):
        self.snapshots = snapshots
        self.previous_memo = validator.node_memo
        self.memo: dict[str, tuple[Any, ...]] = {}
        self.validator = validator
        self.env = validator.env
        self.workflow = workflow
        self.classes: dict[str, type[Node]] = {}
        self.errors: dict[str, list[NodeError]] = {}
        self.checked: dict[str, CheckedNode] = {}
        self.sources: dict[str, tuple[str, ...]] = {}
        self._combos: dict[tuple[type[Node], str], tuple[list[str], frozenset[str]]] = {}

    # --- the whole prompt ---

    def validate(self, partial_execution_targets: Iterable[Any] | None) -> ValidatedPrompt:
        nodes = self.workflow.nodes
        registry = self.validator.class_map
        classes = self.classes
        for node_id, wnode in nodes.items():
            node_class = registry.get(wnode.class_type)
            if node_class is None:
                raise invalid_prompt(
                    f"Cannot execute because node {wnode.class_type} does not exist.", f"Node ID '#{node_id}'"
                )
            classes[node_id] = node_class

        outputs = [node_id for node_id, cls in classes.items() if cls.output_node]
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

        valid, order = self._traverse(outputs)
        self.validator.node_memo = self.memo
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
        checked = self.checked
        if bad:
            needed = self._upstream(good)
            ordered = {node_id: checked[node_id] for node_id in order if node_id in needed}
        else:
            ordered = {node_id: checked[node_id] for node_id in order}
        return ValidatedPrompt(workflow=self.workflow, nodes=ordered, outputs=tuple(good), node_errors=node_errors)

    def _traverse(self, outputs: list[str]) -> tuple[dict[str, bool], list[str]]:
        """Iterative DFS upstream from the outputs: checks each node once, finds cycles, and
        returns each node's validity (own checks and all sources valid) and a post-order."""
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        position: dict[str, int] = {}
        valid: dict[str, bool] = {}
        order: list[str] = []
        in_cycle: set[str] = set()
        errors = self.errors
        sources = self.sources
        for output in outputs:
            if output in state:
                continue
            self._check(output)
            state[output] = 1
            position[output] = 0
            path = [output]
            iters = [iter(sources[output])]
            while iters:
                for source in iters[-1]:
                    seen = state.get(source)
                    if seen is None:
                        self._check(source)
                        state[source] = 1
                        position[source] = len(path)
                        path.append(source)
                        iters.append(iter(sources[source]))
                        break
                    if seen == 1:
                        self._report_cycle(path[position[source] :], in_cycle)
                else:
                    node_id = path.pop()
                    iters.pop()
                    state[node_id] = 2
                    order.append(node_id)
                    ok = node_id not in errors and node_id not in in_cycle
                    if ok:
                        for source in sources[node_id]:
                            if not valid.get(source, False):
                                ok = False
                                break
                    valid[node_id] = ok
        return valid, order

    def _report_cycle(self, stack_slice: list[str], in_cycle: set[str]) -> None:
        from graphengine.plan import describe_cycle

        members = set(stack_slice)
        in_cycle.update(members)
        edges = [(s, n) for n in members for s in self.sources.get(n, ()) if s in members]
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
        sources = self.sources
        while stack:
            for source in sources[stack.pop()]:
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
            for source in self.sources.get(stack.pop(), ()):
                if source not in seen:
                    seen.add(source)
                    ordered.append(source)
                    stack.append(source)
        return ordered

    # --- one node ---

    def _check(self, node_id: str) -> None:
        wnode = self.workflow.nodes[node_id]
        node_class = self.classes[node_id]
        validator = self.validator
        inputs = wnode.raw_inputs
        classes = self.classes
        snapshot = self.snapshots.get(node_id) if validator.is_static(node_class) else None
        if snapshot is not None:
            old = self.previous_memo.get(node_id)
            if old is not None and old[0] is node_class and old[1] == snapshot and self._links_still_match(old[2]):
                checked = old[2]
                self.memo[node_id] = old
                self.checked[node_id] = checked
                sources: list[str] = []
                for link in checked.links.values():
                    if link[0] not in sources:
                        sources.append(link[0])
                self.sources[node_id] = tuple(sources)
                return
        class_rules = validator._rules.get(node_class) or validator.class_rules(node_class)
        literals: dict[str, Any] = {}
        links: dict[str, Link] = {}
        sources: list[str] = []
        errors: list[NodeError] = []
        for name, rule_kind, required, rule in class_rules.fast:
            value = inputs.get(name)
            if value is None:
                if required:
                    errors.append(
                        NodeError("required_input_missing", "Required input is missing", name, {"input_name": name})
                    )
                continue
            kind = type(value)
            if kind is str:
                if rule_kind == K_STRING:  # the common case, inline
                    literals[name] = value
                    continue
            elif kind is list and len(value) == 2 and type(value[0]) is str and type(value[1]) is int and value[1] >= 0:
                value = Link(value)  # the link rule's common case, inline (parse_value is the rule)
                kind = Link
            elif kind is not int and kind is not float and kind is not bool:
                value = parse_value(value)
                kind = type(value)
            if kind is Link:
                source_id, slot = value
                source_class = classes.get(source_id)
                if source_class is None:
                    errors.append(self._bad_link(rule, value, f"node '{source_id}' does not exist"))
                    continue
                source_rules = validator._rules.get(source_class) or validator.class_rules(source_class)
                sockets = source_rules.output_sockets
                if slot >= len(sockets):
                    errors.append(
                        self._bad_link(
                            rule,
                            value,
                            f"node '{source_id}' ({self.workflow.nodes[source_id].class_type}) has "
                            f"{len(sockets)} output(s); output {slot} does not exist",
                        )
                    )
                    continue
                received = sockets[slot]
                expected = rule.socket
                if received != expected and not types_match(received, expected):
                    errors.append(
                        NodeError(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            f"{name}, received_type({received}) mismatch input_type({expected})",
                            {
                                "input_name": name,
                                "input_config": input_config(rule.info, self.env),
                                "received_type": received,
                                "linked_node": value.to_json(),
                            },
                        )
                    )
                    continue
                links[name] = value
                if source_id not in sources:
                    sources.append(source_id)
                continue
            if kind is InvalidValue:
                if value.kind == "bad_linked_input":
                    errors.append(self._bad_link(rule, value.raw, value.reason))
                else:
                    errors.append(self._invalid_type(rule, value.raw, value.reason))
                continue
            error = self._literal(node_class, rule, value, literals)
            if error is not None:
                errors.append(error)
        if class_rules.custom_validate and not errors:
            errors.extend(self._custom(node_class, literals))
        self.sources[node_id] = tuple(sources)
        checked = None
        if errors:
            self.errors[node_id] = errors
        else:
            checked = self.checked[node_id] = CheckedNode(node_id, node_class, literals, links, wnode.title)
        if snapshot is not None and checked is not None:
            self.memo[node_id] = (node_class, snapshot, checked)

    def _links_still_match(self, checked: CheckedNode) -> bool:
        """Whether every link of a previously checked node still reaches an existing output of a
        matching type (the sources may have been replaced since)."""
        if not checked.links:
            return True
        classes = self.classes
        rules = self.validator._rules
        expected = (rules.get(checked.node_class) or self.validator.class_rules(checked.node_class)).socket_of
        for name, (source_id, slot) in checked.links.items():
            source_class = classes.get(source_id)
            if source_class is None:
                return False
            sockets = (rules.get(source_class) or self.validator.class_rules(source_class)).output_sockets
            if slot >= len(sockets):
                return False
            received, wanted = sockets[slot], expected[name]
            if received != wanted and not types_match(received, wanted):
                return False
        return True

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


def _kind_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _short(value: Any, limit: int = 200) -> str:
    if isinstance(value, (list, tuple, dict)):
        text = f"<{_kind_name(value)} of {len(value)} items>"
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
