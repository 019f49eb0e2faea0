"""How a node is declared, and the `/object_info` entry derived from the declaration.

A node is a pydantic model whose fields are its inputs and whose nested ``Outputs`` model lists its
outputs in order. Metadata (ComfyUI class name, display name, category, output node, version) sits on
the class as ``ClassVar``s; the class docstring is the node's description and each field's tooltip is
its help text. Nothing here is registered at import time: node packs hand their classes to a
``NodeRegistry`` explicitly.

    class StringLength(Node):
        \"\"\"Returns the number of characters in a string.\"\"\"
        display_name: ClassVar[str] = "Length"
        category: ClassVar[str] = "utils/string"

        string: str = Input(multiline=True)

        class Outputs(NodeOutputs):
            length: int = Output(name="LENGTH")

        def run(self, ctx: NodeContext) -> "StringLength.Outputs":
            return self.Outputs(length=len(self.string))
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from graphengine.environment import Environment

ANY_TYPE = "*"
PRIMITIVE_SOCKETS: dict[type, str] = {int: "INT", float: "FLOAT", str: "STRING", bool: "BOOLEAN"}

ComboOptions = Sequence[str] | Callable[["Environment"], Sequence[str]]
"""A combo's allowed values: a fixed sequence, or a function of the environment (e.g. model files)."""


class Hidden(str, enum.Enum):
    """Hidden inputs ComfyUI fills from the prompt rather than from links or widgets."""

    PROMPT = "PROMPT"
    EXTRA_PNGINFO = "EXTRA_PNGINFO"
    UNIQUE_ID = "UNIQUE_ID"

    @property
    def input_name(self) -> str:
        return self.value.lower()


@dataclass(frozen=True)
class InputSpec:
    """What ``Input(...)`` / ``Combo(...)`` record about one input, beyond its type and default."""

    socket: str | None = None  # explicit socket type; otherwise derived from the annotation
    optional: bool = False
    lazy: bool = False
    combo: ComboOptions | None = None
    minimum: float | None = None
    maximum: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # other ComfyUI option keys, verbatim

    @property
    def is_combo(self) -> bool:
        return self.combo is not None


@dataclass(frozen=True)
class OutputSpec:
    name: str | None = None  # ComfyUI output_name; defaults to the socket type
    socket: str | None = None
    is_list: bool = False
    tooltip: str | None = None


def Input(  # noqa: N802 - reads as a declaration, like pydantic's Field
    default: Any = ...,
    *,
    tooltip: str | None = None,
    optional: bool = False,
    lazy: bool = False,
    socket: str | None = None,
    min: float | None = None,  # noqa: A002 - ComfyUI's option names
    max: float | None = None,  # noqa: A002
    step: float | None = None,
    round: float | None = None,  # noqa: A002
    multiline: bool | None = None,
    dynamic_prompts: bool | None = None,
    control_after_generate: bool | None = None,
    force_input: bool | None = None,
    **extra_options: Any,
) -> Any:
    """Declare an input. Options map one-to-one onto ComfyUI's input option dict.

    ``default=...`` on a required input means "no default" (ComfyUI then shows none); optional inputs
    default to ``None`` unless a default is given.
    """
    options: dict[str, Any] = {}
    if default is not ... and default is not None:
        options["default"] = default
    for key, value in (
        ("min", min),
        ("max", max),
        ("step", step),
        ("round", round),
        ("multiline", multiline),
        ("dynamicPrompts", dynamic_prompts),
        ("control_after_generate", control_after_generate),
        ("forceInput", force_input),
    ):
        if value is not None:
            options[key] = value
    if lazy:
        options["lazy"] = True
    options.update(extra_options)
    if tooltip is not None:
        options["tooltip"] = tooltip
    spec = InputSpec(socket=socket, optional=optional, lazy=lazy, minimum=min, maximum=max, options=options)
    return _field(default if default is not ... else (None if optional else ...), tooltip, spec)


def Combo(  # noqa: N802
    options: ComboOptions,
    default: str | None = None,
    *,
    tooltip: str | None = None,
    optional: bool = False,
    lazy: bool = False,
    **extra_options: Any,
) -> Any:
    """Declare a combo (choice) input; ``options`` is a fixed list or a function of the environment."""
    opts: dict[str, Any] = {}
    if default is not None:
        opts["default"] = default
    if lazy:
        opts["lazy"] = True
    opts.update(extra_options)
    if tooltip is not None:
        opts["tooltip"] = tooltip
    spec = InputSpec(optional=optional, lazy=lazy, combo=options, options=opts)
    if default is None:
        default = None if optional else ...
    return _field(default, tooltip, spec)


def Output(  # noqa: N802
    *, name: str | None = None, socket: str | None = None, is_list: bool = False, tooltip: str | None = None
) -> Any:
    """Declare an output field of a node's ``Outputs`` model."""
    spec = OutputSpec(name=name, socket=socket, is_list=is_list, tooltip=tooltip)
    return _field(..., tooltip, spec)


def _field(default: Any, tooltip: str | None, spec: InputSpec | OutputSpec) -> Any:
    info = Field(default, description=tooltip)
    info.metadata.append(spec)
    return info


class NodeOutputs(BaseModel):
    """Base of every node's ``Outputs``: the socket values in field order, plus an optional UI dict.

    ``ui`` is what an output node shows (ComfyUI's ``{"images": [...]}``, ``{"text": [...]}``); it is
    recorded in history ``outputs`` and sent in the ``executed`` event.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    ui: dict[str, list[Any]] | None = None

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in type(self).model_fields if name != "ui")


class ProgressPreview(Protocol):
    """A preview image a long node hands to ``ctx.progress`` (PIL image, format "JPEG" or "PNG")."""

    image: Any
    format: str
    max_size: int | None


class NodeContext(Protocol):
    """What a running node may ask of the engine. One context per node execution."""

    node_id: str
    prompt_id: str
    env: Environment
    prompt: Mapping[str, Any]  # the whole API prompt (hidden PROMPT)
    extra_pnginfo: Mapping[str, Any] | None  # hidden EXTRA_PNGINFO

    def progress(self, value: int, total: int, preview: ProgressPreview | None = None) -> None:
        """Report progress (one call per sampler step); raises ``Interrupted`` if the prompt was
        interrupted, so an interrupt takes effect within one step."""

    def check_interrupted(self) -> None:
        """Raise ``Interrupted`` if this prompt has been interrupted."""

    def background(self, work: Callable[[], None]) -> None:
        """Run ``work`` (e.g. PNG encoding and writing) off the execution thread; the prompt does not
        finish until it is done, and an exception in it fails the prompt."""

    def send_binary_image(self, image: Any, image_format: str = "PNG") -> None:
        """Hand an image straight to the prompt's websocket client (SaveImageWebsocket)."""


@dataclass(frozen=True)
class InputInfo:
    """One declared input, resolved from the pydantic field."""

    name: str
    socket: str | None  # None for combos
    spec: InputSpec
    default: Any
    required: bool


@dataclass(frozen=True)
class OutputInfo:
    field_name: str
    socket: str
    name: str
    is_list: bool
    tooltip: str | None


class Node(BaseModel):
    """Base class of every node. Subclasses declare inputs as fields and outputs as ``Outputs``."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="ignore")

    # ComfyUI metadata, overridden per node class.
    class_type: ClassVar[str] = ""  # defaults to the Python class name
    display_name: ClassVar[str | None] = None
    category: ClassVar[str] = "sd"
    python_module: ClassVar[str] = "nodes"
    output_node: ClassVar[bool] = False
    version: ClassVar[str] = "1"  # bump when outputs change for the same inputs: it enters cache keys
    input_is_list: ClassVar[bool] = False  # ComfyUI INPUT_IS_LIST: run once with whole lists
    hidden: ClassVar[tuple[Hidden, ...]] = ()
    deprecated: ClassVar[bool] = False
    experimental: ClassVar[bool] = False

    # Filled by __pydantic_init_subclass__.
    inputs_info: ClassVar[tuple[InputInfo, ...]] = ()
    outputs_info: ClassVar[tuple[OutputInfo, ...]] = ()

    class Outputs(NodeOutputs):
        pass

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "class_type" not in cls.__dict__:
            cls.class_type = cls.__name__
        cls.inputs_info = tuple(_input_info(name, info) for name, info in cls.model_fields.items())
        cls.outputs_info = tuple(
            _output_info(name, info) for name, info in cls.Outputs.model_fields.items() if name != "ui"
        )

    def run(self, ctx: NodeContext) -> NodeOutputs:
        raise NotImplementedError(f"{self.class_type} does not implement run()")

    # --- optional hooks, mirroring ComfyUI's ---

    def check_lazy_status(self) -> list[str]:
        """Names of lazy inputs still needed, given the inputs evaluated so far (others are None)."""
        return []

    @classmethod
    def fingerprint(cls, literals: Mapping[str, Any], env: Environment) -> Any:
        """ComfyUI's IS_CHANGED: a value that joins the cache key (e.g. a file's hash).

        Called with the node's literal inputs only. Return ``NEVER_CACHE`` to re-run every time.
        """
        return None

    @classmethod
    def validate_inputs(cls, literals: Mapping[str, Any], env: Environment) -> str | None:
        """ComfyUI's VALIDATE_INPUTS: return an error text to reject the literal inputs, else None."""
        return None

    @classmethod
    def validates(cls) -> frozenset[str]:
        """Inputs whose min/max/combo checks this class's ``validate_inputs`` takes over."""
        return frozenset()

    @classmethod
    def title(cls) -> str:
        return cls.display_name or cls.class_type

    @classmethod
    def description(cls) -> str:
        doc = cls.__doc__
        if not doc or doc is Node.__doc__:
            return ""
        return inspect.cleandoc(doc)


class _NeverCache:
    """Fingerprint sentinel: unequal to everything, itself included (ComfyUI's NaN trick)."""

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return "NEVER_CACHE"


NEVER_CACHE: Any = _NeverCache()


def socket_of(annotation: Any) -> str:
    """The ComfyUI socket type for a field annotation (``int`` → INT, ``Latent`` → LATENT, …)."""
    annotation = _strip_optional_and_list(annotation)
    if annotation in PRIMITIVE_SOCKETS:
        return PRIMITIVE_SOCKETS[annotation]
    socket_type = getattr(annotation, "socket_type", None)
    if isinstance(socket_type, str):
        return socket_type
    if annotation is Any or annotation is object:
        return ANY_TYPE
    raise TypeError(f"cannot derive a socket type from {annotation!r}; pass socket=... to Input/Output")


def _strip_optional_and_list(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _strip_optional_and_list(args[0])
    if origin in (list, Sequence, tuple):
        args = typing.get_args(annotation)
        if args:
            return _strip_optional_and_list(args[0])
    return annotation


def _spec_of(info: Any, kind: type) -> Any:
    for item in info.metadata:
        if isinstance(item, kind):
            return item
    return kind()


def _input_info(name: str, info: Any) -> InputInfo:
    spec: InputSpec = _spec_of(info, InputSpec)
    socket = None if spec.is_combo else (spec.socket or socket_of(info.annotation))
    default = None if info.is_required() else info.default
    return InputInfo(name=name, socket=socket, spec=spec, default=default, required=not spec.optional)


def _output_info(name: str, info: Any) -> OutputInfo:
    spec: OutputSpec = _spec_of(info, OutputSpec)
    socket = spec.socket or socket_of(info.annotation)
    return OutputInfo(
        field_name=name, socket=socket, name=spec.name or socket, is_list=spec.is_list, tooltip=spec.tooltip
    )


def combo_values(spec: InputSpec, env: Environment) -> list[str]:
    """The allowed values of a combo input now (dynamic lists are re-read on every call)."""
    options = spec.combo
    if options is None:
        return []
    if callable(options):
        return list(options(env))
    return list(options)


def input_config(info: InputInfo, env: Environment) -> list[Any]:
    """The ComfyUI input spec array: ``["INT", {...}]``, ``[["a", "b"], {...}]`` or ``["MODEL"]``."""
    first: Any = combo_values(info.spec, env) if info.spec.is_combo else info.socket
    options = dict(info.spec.options)
    return [first, options] if options else [first]


def object_info(node_class: type[Node], env: Environment) -> dict[str, Any]:
    """The node's `/object_info` entry in ComfyUI's exact (V1) shape and key order."""
    inputs: dict[str, dict[str, Any]] = {"required": {}}
    order: dict[str, list[str]] = {"required": []}
    for info in node_class.inputs_info:
        group = "optional" if info.spec.optional else "required"
        inputs.setdefault(group, {})[info.name] = input_config(info, env)
        order.setdefault(group, []).append(info.name)
    if node_class.hidden:
        inputs["hidden"] = {h.input_name: h.value for h in node_class.hidden}
        order["hidden"] = [h.input_name for h in node_class.hidden]
    outputs = node_class.outputs_info
    entry: dict[str, Any] = {
        "input": inputs,
        "input_order": order,
        "output": [o.socket for o in outputs],
        "output_is_list": [o.is_list for o in outputs],
        "output_name": [o.name for o in outputs],
        "name": node_class.class_type,
        "display_name": node_class.title(),
        "description": node_class.description(),
        "python_module": node_class.python_module,
        "category": node_class.category,
        "output_node": node_class.output_node,
    }
    if any(o.tooltip for o in outputs):
        entry["output_tooltips"] = [o.tooltip for o in outputs]
    if node_class.deprecated:
        entry["deprecated"] = True
    if node_class.experimental:
        entry["experimental"] = True
    return entry
