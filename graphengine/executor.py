"""The executor: runs a validated prompt, the only place that calls ``Node.run``.

For each prompt: emit ``execution_start``; compute signatures (incrementally) and look every node up
in the cache; emit ``execution_cached``; then walk the plan. Only nodes that an output needs and
that are not cached run (upstream of a cached node nothing runs). Per node: check for interruption,
emit ``executing``, build the node (``model_construct``: values were coerced by validation), call
``check_lazy_status`` if it has lazy inputs, ``run(ctx)`` — once per element when inputs are lists
(map-over-list), or once with whole lists for ``input_is_list`` classes — merge the results, store
them in the cache, and emit ``executed`` when it has a UI dict. The first failure stops the run;
the prompt ends with exactly one of ``execution_success`` / ``execution_error`` /
``execution_interrupted``. No exception escapes ``execute``.

The terminal ``executing`` with ``node=None`` is not sent here: the server sends it after it has
written history.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from graphengine.cache import OutputCache, Signatures
from graphengine.environment import Environment
from graphengine.errors import Interrupted
from graphengine.events import (
    Event,
    EventSink,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    PreviewImage,
    Progress,
)
from graphengine.gc_pause import gc_paused
from graphengine.interrupt import InterruptFlag
from graphengine.node import Node, NodeOutputs, ProgressPreview
from graphengine.plan import Plan, Planner
from graphengine.validation import CheckedNode, ValidatedPrompt, full_type_name

log = logging.getLogger(__name__)

MAX_FORMATTED_VALUES = 32  # per input in execution_error.current_inputs


@dataclass
class Run:
    """The result of executing one prompt (what ComfyUI's history records, plus timings)."""

    prompt_id: str
    status: str = "success"  # success | error | interrupted
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: ExecutionError | None = None
    messages: list[list[Any]] = field(default_factory=list)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def status_json(self) -> dict[str, Any]:
        """History ``status``: ``{"status_str", "completed", "messages"}``."""
        return {
            "status_str": "success" if self.ok else "error",
            "completed": self.ok,
            "messages": self.messages,
        }

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json`` output)."""
        result: dict[str, Any] = {
            "prompt_id": self.prompt_id,
            "status": self.status,
            "executed": list(self.executed),
            "cached": list(self.cached),
            "outputs": self.outputs,
            "timings": {node_id: round(seconds, 6) for node_id, seconds in self.timings.items()},
            "seconds": round(self.seconds, 6),
        }
        if self.error is not None:
            data = self.error.data()
            result["error"] = {
                key: data[key] for key in ("node_id", "node_type", "exception_type", "exception_message", "traceback")
            }
        return result


class _Background:
    """Work that nodes hand off (``ctx.background``); joined before the prompt succeeds."""

    def __init__(self, pool_factory: Callable[[], ThreadPoolExecutor]):
        self._pool_factory = pool_factory
        self.pending: list[tuple[str, str, Future[None]]] = []

    def submit(self, node_id: str, node_type: str, work: Callable[[], None]) -> None:
        self.pending.append((node_id, node_type, self._pool_factory().submit(work)))

    def join(self) -> tuple[str, str, BaseException] | None:
        """Wait for everything; the first failure (node id, type, exception), if any."""
        failure = None
        for node_id, node_type, future in self.pending:
            exc = future.exception()
            if exc is not None and failure is None:
                failure = (node_id, node_type, exc)
            elif exc is not None:
                log.error("background work of node %s failed too: %r", node_id, exc)
        self.pending.clear()
        return failure


class _Context:
    """The ``NodeContext`` a running node gets."""

    __slots__ = ("node_id", "prompt_id", "env", "_state", "_node_type")

    def __init__(self, state: _RunState, node_id: str, node_type: str):
        self.node_id = node_id
        self.prompt_id = state.prompt_id
        self.env = state.env
        self._state = state
        self._node_type = node_type

    @property
    def prompt(self) -> Mapping[str, Any]:
        return self._state.validated.prompt

    @property
    def extra_pnginfo(self) -> Mapping[str, Any] | None:
        value = self._state.extra_data.get("extra_pnginfo")
        return value if isinstance(value, Mapping) else None

    @property
    def extra_data(self) -> Mapping[str, Any]:
        return self._state.extra_data

    def check_interrupted(self) -> None:
        if self._state.interrupt.is_requested(self.prompt_id):
            raise Interrupted(f"prompt {self.prompt_id} was interrupted")

    def progress(self, value: int, total: int, preview: ProgressPreview | None = None) -> None:
        self.check_interrupted()
        total = max(int(total), 1)
        value = min(max(int(value), 0), total)
        state = self._state
        state.emit(Progress(self.prompt_id, node=self.node_id, value=value, max=total))
        if preview is not None:
            state.emit(
                PreviewImage(
                    self.prompt_id,
                    node=self.node_id,
                    image=preview.image,
                    image_format=preview.format,
                    max_size=preview.max_size,
                )
            )

    def background(self, work: Callable[[], None]) -> None:
        self._state.background.submit(self.node_id, self._node_type, work)

    def send_binary_image(self, image: Any, image_format: str = "PNG") -> None:
        self._state.emit(
            PreviewImage(
                self.prompt_id, node=self.node_id, image=image, image_format=image_format, max_size=None, is_result=True
            )
        )


class _NodeFailure(Exception):
    def __init__(self, node: CheckedNode, exc: BaseException, inputs: Mapping[str, list[Any]]):
        self.node = node
        self.exc = exc
        self.inputs = inputs


@dataclass(slots=True)
class _ClassInfo:
    """Per-class facts the executor needs, computed once."""

    output_fields: tuple[str, ...]
    output_is_list: tuple[bool, ...]
    any_list_output: bool
    lazy: frozenset[str]
    input_is_list: bool
    construct: Callable[..., Node]


_IMMUTABLE_DEFAULTS = (str, int, float, bool, bytes, type(None))


def constructor(node_class: type[Node]) -> Callable[..., Node]:
    """A function building a node from already-validated inputs: exactly what
    ``node_class.model_construct(**inputs)`` builds (same ``__dict__`` in field order, same fields
    set), without its per-field bookkeeping. Classes that use anything the shortcut does not
    reproduce (aliases, default factories, mutable defaults, post-init hooks, private attributes,
    extra fields) get ``model_construct`` itself."""
    fields = node_class.model_fields
    plain = (
        not node_class.__pydantic_post_init__
        and not node_class.__private_attributes__
        and node_class.model_config.get("extra") != "allow"
        and not getattr(node_class, "__pydantic_root_model__", False)
        and all(
            f.alias is None
            and f.validation_alias is None
            and f.default_factory is None
            and (f.is_required() or type(f.default) in _IMMUTABLE_DEFAULTS)
            for f in fields.values()
        )
    )
    if not plain:
        return node_class.model_construct
    template = {name: (None if f.is_required() else f.default) for name, f in fields.items()}
    required = frozenset(name for name, f in fields.items() if f.is_required())
    new = node_class.__new__
    setattr_ = object.__setattr__

    def construct(**inputs: Any) -> Node:
        if not required.issubset(inputs) or not fields.keys() >= inputs.keys():
            return node_class.model_construct(**inputs)
        values = template.copy()
        values.update(inputs)
        node = new(node_class)
        setattr_(node, "__dict__", values)
        setattr_(node, "__pydantic_fields_set__", set(inputs))
        setattr_(node, "__pydantic_extra__", None)
        setattr_(node, "__pydantic_private__", None)
        return node

    return construct


class _RunState:
    def __init__(
        self,
        executor: Executor,
        validated: ValidatedPrompt,
        prompt_id: str,
        extra_data: Mapping[str, Any],
        sink: EventSink | None,
        interrupt: InterruptFlag,
    ):
        self.executor = executor
        self.env = executor.env
        self.validated = validated
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self.sink = sink
        self.interrupt = interrupt
        self.background = _Background(executor.background_pool)
        self.run = Run(prompt_id=prompt_id)
        self.last_ui: dict[str, Any] | None = None  # the UI dict of the node that just ran
        self.current: CheckedNode | None = None  # the node running (or about to run)

    def emit(self, event: Event) -> None:
        sink = self.sink
        if sink is None:
            return
        try:
            sink.emit(event)
        except Exception:  # a broken sink must not break execution
            log.exception("event sink failed on %s", event.type)

    def record(self, event: Event) -> None:
        """Emit a status event and record it in history ``messages``."""
        self.run.messages.append([event.type, event.data()])
        self.emit(event)


class Executor:
    """Runs validated prompts against one environment, cache and planner."""

    def __init__(
        self,
        env: Environment,
        cache: OutputCache,
        *,
        signatures: Signatures | None = None,
        planner: Planner | None = None,
        background_pool: Callable[[], ThreadPoolExecutor] | None = None,
    ):
        self.env = env
        self.cache = cache
        self.signatures = signatures or Signatures()
        self.planner = planner or Planner()
        self._class_info: dict[type[Node], _ClassInfo] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._pool_factory = background_pool  # None: a small pool of our own, made on first use

    def background_pool(self) -> ThreadPoolExecutor:
        if self._pool_factory is not None:
            return self._pool_factory()
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="graphengine-background")
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def class_info(self, node_class: type[Node]) -> _ClassInfo:
        info = self._class_info.get(node_class)
        if info is None:
            outputs = node_class.outputs_info
            info = self._class_info[node_class] = _ClassInfo(
                output_fields=tuple(o.field_name for o in outputs),
                output_is_list=tuple(o.is_list for o in outputs),
                any_list_output=any(o.is_list for o in outputs),
                lazy=frozenset(i.name for i in node_class.inputs_info if i.spec.lazy),
                input_is_list=bool(node_class.input_is_list),
                construct=constructor(node_class),
            )
        return info

    def execute(
        self,
        validated: ValidatedPrompt,
        *,
        prompt_id: str,
        extra_data: Mapping[str, Any] | None = None,
        sink: EventSink | None = None,
        interrupt: InterruptFlag | None = None,
    ) -> Run:
        """Run the prompt; never raises (failures are reported in the returned ``Run``)."""
        started = time.perf_counter()
        interrupt = interrupt or InterruptFlag()
        state = _RunState(self, validated, prompt_id, extra_data or {}, sink, interrupt)
        run = state.run
        state.record(ExecutionStart(prompt_id))
        try:
            self._execute(state)
        except Interrupted:
            state.background.join()
            current = state.current
            self._interrupted(state, current.id if current else "", current.class_type if current else "")
        except _NodeFailure as failure:
            state.background.join()
            self._failed(state, failure.node.id, failure.node.class_type, failure.exc, failure.inputs)
        except BaseException as exc:  # an engine bug, or a node raising SystemExit & co: report, never raise
            log.exception("internal error while executing prompt %s", prompt_id)
            state.background.join()
            current = state.current
            self._failed(state, current.id if current else "", current.class_type if current else "", exc, {})
        run.seconds = time.perf_counter() - started
        return run

    def _execute(self, state: _RunState) -> None:
        validated = state.validated
        run = state.run
        nodes = validated.nodes
        with gc_paused():  # bookkeeping only: node code runs with the collector as it was
            signatures, plan = self.signatures.compute(nodes, self.env), self.planner.plan(validated)
        cache = self.cache
        cache.begin({s for s in signatures.values() if s is not None})
        values: dict[str, tuple[list[Any], ...]] = {}
        cached_ui: dict[str, dict[str, Any] | None] = {}
        cached = run.cached
        get = cache.get
        for node_id, signature in signatures.items():
            if signature is not None:
                entry = get(signature)
                if entry is not None:
                    cached.append(node_id)
                    values[node_id] = entry.outputs
                    cached_ui[node_id] = entry.ui
        for node_id, ui in cached_ui.items():
            if ui is not None:
                run.outputs[node_id] = ui
        state.record(ExecutionCached(state.prompt_id, nodes=tuple(cached)))

        heap = _needed(plan, validated.outputs, values)
        heapq.heapify(heap)
        order = plan.order
        interrupt = state.interrupt
        prompt_id = state.prompt_id
        emit = state.emit if state.sink is not None else None
        pop, push = heapq.heappop, heapq.heappush
        put = cache.put
        done: set[str] = set()
        while heap:
            node_id = order[pop(heap)]
            if node_id in done:
                continue
            if node_id in cached_ui:  # a cached output node: replay its UI
                done.add(node_id)
                ui = cached_ui[node_id]
                if ui is not None and emit is not None:
                    emit(Executed(prompt_id, node=node_id, output=ui))
                continue
            node = state.current = nodes[node_id]
            if interrupt.is_requested(prompt_id):
                raise Interrupted(prompt_id)
            if emit is not None:
                emit(Executing(prompt_id, node=node_id))
            started = time.perf_counter()
            outcome = self._run_node(state, node, values, plan)
            if outcome is not None:  # lazy inputs requested: run their sources first, then retry
                for index in outcome:
                    push(heap, index)
                push(heap, plan.index[node_id])
                continue
            run.timings[node_id] = time.perf_counter() - started
            run.executed.append(node_id)
            done.add(node_id)
            signature = signatures[node_id]
            ui = state.last_ui
            if signature is not None:
                put(signature, values[node_id], ui)
            if ui is not None:
                run.outputs[node_id] = ui
                if emit is not None:
                    emit(Executed(prompt_id, node=node_id, output=ui))

        failure = state.background.join()
        if failure is not None:
            node_id, node_type, exc = failure
            self._failed(state, node_id, node_type, exc, {})
            return
        for node_id in run.outputs:
            run.meta[node_id] = {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}
        state.record(ExecutionSuccess(prompt_id))

    def _run_node(
        self, state: _RunState, node: CheckedNode, values: dict[str, tuple[list[Any], ...]], plan: Plan
    ) -> list[int] | None:
        """Run one node and store its outputs in ``values``; or return the plan indices of lazily
        requested sources that must run first."""
        node_class = node.node_class
        info = self.class_info(node_class)
        # Fast path: every input is a single value (no lists, no lazy inputs): one call.
        kwargs = dict(node.literals)
        single = not info.input_is_list and not info.lazy
        if single:
            for name, link in node.links.items():
                produced = values.get(link[0])
                if produced is None:
                    single = False
                    break
                value = produced[link[1]]
                if len(value) != 1:
                    single = False
                    break
                kwargs[name] = value[0]
        ctx = _Context(state, node.id, node_class.class_type)
        if single:
            try:
                result = info.construct(**kwargs).run(ctx)
            except Interrupted:
                raise
            except Exception as exc:
                raise _NodeFailure(node, exc, {name: [value] for name, value in kwargs.items()}) from exc
            state.last_ui = _merge_one(node, info, result, values)
            return None

        inputs: dict[str, list[Any]] = {name: [value] for name, value in node.literals.items()}
        lazy_missing: dict[str, Any] = {}
        for name, link in node.links.items():
            produced = values.get(link.node_id)
            if produced is None:
                if name in info.lazy:
                    lazy_missing[name] = link
                    continue
                raise RuntimeError(f"input {name!r} of node {node.id} is not available")  # a planning bug
            inputs[name] = produced[link.output]
        try:
            if info.input_is_list:
                calls = [inputs]
            else:
                calls = _map_over_list(inputs)
            instances = [info.construct(**kw) for kw in calls]
            if info.lazy:
                wanted = set()
                for instance in instances:
                    wanted.update(instance.check_lazy_status() or ())
                needed = [lazy_missing[name] for name in wanted if name in lazy_missing]
                if needed:
                    return _needed_from(plan, [link.node_id for link in needed], values)
            results = [instance.run(ctx) for instance in instances]
        except Interrupted:
            raise
        except Exception as exc:
            raise _NodeFailure(node, exc, inputs) from exc
        state.last_ui = _merge(node, info, results, values)
        return None

    def _failed(
        self, state: _RunState, node_id: str, node_type: str, exc: BaseException, inputs: Mapping[str, list[Any]]
    ) -> None:
        run = state.run
        run.status = "error"
        message = str(exc)
        if not message and not node_id:
            message = repr(exc)
        event = ExecutionError(
            state.prompt_id,
            node_id=node_id,
            node_type=node_type,
            executed=tuple(run.executed),
            exception_message=message,
            exception_type=full_type_name(type(exc)),
            traceback=tuple(traceback.format_tb(exc.__traceback__)),
            current_inputs=format_inputs(inputs),
            current_outputs=tuple(run.cached) + tuple(run.executed),
        )
        run.error = event
        state.record(event)

    def _interrupted(self, state: _RunState, node_id: str, node_type: str) -> None:
        run = state.run
        run.status = "interrupted"
        state.record(
            ExecutionInterrupted(state.prompt_id, node_id=node_id, node_type=node_type, executed=tuple(run.executed))
        )


def _needed(plan: Plan, outputs: tuple[str, ...], available: Mapping[str, Any]) -> list[int]:
    """Plan indices of the nodes to visit: the outputs (cached ones replay their UI) and what they
    need upstream through non-lazy links, stopping at nodes whose outputs are cached (as ComfyUI's
    execution list does)."""
    index = plan.index
    strong = plan.strong_sources
    seen = set(outputs)
    stack = [o for o in outputs if o not in available]
    result = [index[o] for o in outputs]
    while stack:
        for source in strong[stack.pop()]:
            if source not in seen:
                seen.add(source)
                if source not in available:
                    result.append(index[source])
                    stack.append(source)
    return result


def _needed_from(plan: Plan, sources: list[str], available: Mapping[str, Any]) -> list[int]:
    index = plan.index
    strong = plan.strong_sources
    seen: set[str] = set()
    stack = [s for s in sources if s not in available]
    result = []
    while stack:
        node_id = stack.pop()
        if node_id in seen or node_id in available:
            continue
        seen.add(node_id)
        result.append(index[node_id])
        stack.extend(strong[node_id])
    return result


def _map_over_list(inputs: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """ComfyUI's map-over-list: call ``i`` takes element ``i`` of each input (the last element when
    a list is shorter). Any empty input list means no calls at all."""
    length = 1
    for values in inputs.values():
        size = len(values)
        if size != 1:
            if size == 0:
                return []
            if size > length:
                length = size
    if length == 1:
        return [{name: values[0] for name, values in inputs.items()}]
    return [
        {name: values[i] if i < len(values) else values[-1] for name, values in inputs.items()} for i in range(length)
    ]


def _merge_one(
    node: CheckedNode, info: _ClassInfo, result: Any, values: dict[str, tuple[list[Any], ...]]
) -> dict[str, Any] | None:
    """``_merge`` for the common single call."""
    if not isinstance(result, NodeOutputs):
        return _merge(node, info, [result], values)
    if info.any_list_output:
        values[node.id] = tuple(
            list(getattr(result, name)) if is_list else [getattr(result, name)]
            for name, is_list in zip(info.output_fields, info.output_is_list)
        )
    else:
        values[node.id] = tuple([[getattr(result, name)] for name in info.output_fields])
    ui = result.ui
    return {key: list(items) for key, items in ui.items()} if ui is not None else None


def _merge(
    node: CheckedNode, info: _ClassInfo, results: list[Any], values: dict[str, tuple[list[Any], ...]]
) -> dict[str, Any] | None:
    """Merge per-call results into one list per output (list outputs concatenated) and one UI dict."""
    fields = info.output_fields
    outputs: tuple[list[Any], ...] = tuple([] for _ in fields)
    ui: dict[str, Any] | None = None
    for result in results:
        if not isinstance(result, NodeOutputs):
            raise _NodeFailure(
                node,
                TypeError(f"{node.class_type}.run() returned {type(result).__name__}, expected {node.class_type}.Outputs"),
                {},
            )
        for k, name in enumerate(fields):
            value = getattr(result, name)
            if info.output_is_list[k]:
                outputs[k].extend(value)
            else:
                outputs[k].append(value)
        if result.ui is not None:
            if ui is None:
                ui = {key: list(items) for key, items in result.ui.items()}
            else:
                for key, items in result.ui.items():
                    if key in ui:
                        ui[key].extend(items)
    values[node.id] = outputs
    return ui


def format_value(value: Any) -> Any:
    """ComfyUI's ``format_value`` for ``current_inputs``: primitives as-is, anything else as text.

    Edge values (models, latents, images: anything with a ``socket_type``) are summarised as
    ``<MODEL>`` rather than dumped: their repr is a module tree or a tensor, useless in an error."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    socket_type = getattr(type(value), "socket_type", None)
    if isinstance(socket_type, str):
        return f"<{socket_type}>"
    text = value if isinstance(value, str) else _safe_str(value)
    return text if len(text) <= 2000 else text[:2000] + "…"


def format_inputs(inputs: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    return {name: [format_value(v) for v in values[:MAX_FORMATTED_VALUES]] for name, values in inputs.items()}


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"
