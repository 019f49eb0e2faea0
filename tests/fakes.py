"""A fake node pack for engine tests: counts executions, fails on demand, sleeps with progress,
returns lists, has lazy inputs. No torch.

Nodes find the test's ``Recorder`` in ``ctx.env.extras`` (no module-level state).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from graphengine.environment import Environment
from graphengine.node import NEVER_CACHE, Combo, Hidden, Input, Node, NodeContext, NodeOutputs, Output
from graphengine.registry import NodePack


@dataclass
class Recorder:
    """What the fake nodes did: executions per node id and per class, background work, values."""

    runs: Counter[str] = field(default_factory=Counter)  # by node id
    classes: Counter[str] = field(default_factory=Counter)  # by class_type
    background_done: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    seen: list[Any] = field(default_factory=list)

    def total(self) -> int:
        return sum(self.runs.values())


def recorder(ctx: NodeContext) -> Recorder:
    for extra in ctx.env.extras:
        if isinstance(extra, Recorder):
            return extra
    raise RuntimeError("the fake nodes need a Recorder in env.extras")


def _count(node: Node, ctx: NodeContext) -> Recorder:
    rec = recorder(ctx)
    rec.runs[ctx.node_id] += 1
    rec.classes[node.class_type] += 1
    return rec


class _Fake(Node):
    category: ClassVar[str] = "testing"
    python_module: ClassVar[str] = "tests.fakes"


class FakeInt(_Fake):
    """Outputs its value."""

    value: int = Input(0, min=-1000, max=1000)

    class Outputs(NodeOutputs):
        value: int = Output(name="INT")

    def run(self, ctx: NodeContext) -> FakeInt.Outputs:
        _count(self, ctx)
        return self.Outputs(value=self.value)


class FakeAdd(_Fake):
    """a + b."""

    a: int = Input(0)
    b: int = Input(0, optional=True)

    class Outputs(NodeOutputs):
        total: int = Output(name="INT")

    def run(self, ctx: NodeContext) -> FakeAdd.Outputs:
        rec = _count(self, ctx)
        rec.seen.append((ctx.node_id, self.a, self.b))
        return self.Outputs(total=self.a + (self.b or 0))


class FakeFail(_Fake):
    """Raises ``ValueError`` when ``fail`` is true, else passes ``value`` on."""

    value: int = Input(0)
    fail: bool = Input(True)
    message: str = Input("fake failure")

    class Outputs(NodeOutputs):
        value: int = Output(name="INT")

    def run(self, ctx: NodeContext) -> FakeFail.Outputs:
        _count(self, ctx)
        if self.fail:
            raise ValueError(self.message)
        return self.Outputs(value=self.value)


class FakeSlow(_Fake):
    """Sleeps ``steps`` × ``delay`` seconds, reporting progress each step (interruptible)."""

    value: int = Input(0, optional=True)
    steps: int = Input(5, min=1, max=10000)
    delay: float = Input(0.01, min=0.0, max=10.0)
    preview: bool = Input(False, optional=True)

    class Outputs(NodeOutputs):
        value: int = Output(name="INT")

    def run(self, ctx: NodeContext) -> FakeSlow.Outputs:
        rec = _count(self, ctx)
        rec.started.set()
        for step in range(self.steps):
            time.sleep(self.delay)
            ctx.progress(step + 1, self.steps, _Preview(f"step {step + 1}") if self.preview else None)
        return self.Outputs(value=self.value)


@dataclass
class _Preview:
    image: Any
    format: str = "JPEG"
    max_size: int | None = 256


class FakeRange(_Fake):
    """A list output: ``[start, start+1, …]`` of ``count`` elements (OUTPUT_IS_LIST)."""

    start: int = Input(0)
    count: int = Input(3, min=0, max=1000)

    class Outputs(NodeOutputs):
        items: list[int] = Output(name="INT", is_list=True)

    def run(self, ctx: NodeContext) -> FakeRange.Outputs:
        _count(self, ctx)
        return self.Outputs(items=list(range(self.start, self.start + self.count)))


class FakeSum(_Fake):
    """INPUT_IS_LIST: receives whole lists and sums them."""

    input_is_list: ClassVar[bool] = True

    values: int = Input(0)

    class Outputs(NodeOutputs):
        total: int = Output(name="INT")

    def run(self, ctx: NodeContext) -> FakeSum.Outputs:
        rec = _count(self, ctx)
        rec.seen.append(("sum", list(self.values)))
        return self.Outputs(total=sum(self.values))


class FakeSwitch(_Fake):
    """Lazy inputs: evaluates only the branch ``select`` picks."""

    select: bool = Input(True)
    on_true: int = Input(optional=True, lazy=True)
    on_false: int = Input(optional=True, lazy=True)

    class Outputs(NodeOutputs):
        value: int = Output(name="INT")

    def check_lazy_status(self) -> list[str]:
        wanted = "on_true" if self.select else "on_false"
        return [wanted] if getattr(self, wanted) is None else []

    def run(self, ctx: NodeContext) -> FakeSwitch.Outputs:
        _count(self, ctx)
        return self.Outputs(value=self.on_true if self.select else self.on_false)


class FakeOutput(_Fake):
    """An output node showing its input as ``{"values": [...]}``."""

    output_node: ClassVar[bool] = True

    value: Any = Input()

    def run(self, ctx: NodeContext) -> NodeOutputs:
        _count(self, ctx)
        return self.Outputs(ui={"values": [self.value]})


class FakeRandom(_Fake):
    """Never cached (fingerprint NEVER_CACHE): outputs how often it has run."""

    value: int = Input(0)

    class Outputs(NodeOutputs):
        value: int = Output(name="INT")

    @classmethod
    def fingerprint(cls, literals: Mapping[str, Any], env: Environment) -> Any:
        return NEVER_CACHE

    def run(self, ctx: NodeContext) -> FakeRandom.Outputs:
        rec = _count(self, ctx)
        return self.Outputs(value=rec.classes["FakeRandom"])


class FakeFingerprint(_Fake):
    """Cached by the fingerprint the test controls (``Recorder.seen`` holds no part of it)."""

    key: str = Input("a")

    class Outputs(NodeOutputs):
        value: str = Output(name="STRING")

    @classmethod
    def fingerprint(cls, literals: Mapping[str, Any], env: Environment) -> Any:
        for extra in env.extras:
            if isinstance(extra, dict) and "fingerprint" in extra:
                return extra["fingerprint"]
        return None

    def run(self, ctx: NodeContext) -> FakeFingerprint.Outputs:
        _count(self, ctx)
        return self.Outputs(value=self.key)


class FakeChecked(_Fake):
    """Inputs with every validation rule: a combo, min/max, a custom check and a typed socket."""

    choice: str = Combo(("alpha", "beta", "gamma"))
    count: int = Input(1, min=1, max=10)
    ratio: float = Input(0.5, min=0.0, max=1.0)
    word: str = Input("ok")
    flag: bool = Input(False)

    class Outputs(NodeOutputs):
        text: str = Output(name="STRING")

    @classmethod
    def validate_inputs(cls, literals: Mapping[str, Any], env: Environment) -> str | None:
        if literals.get("word") == "bad":
            return "the word must not be 'bad'"
        if literals.get("word") == "raise":
            raise RuntimeError("checker crashed")
        return None

    @classmethod
    def validates(cls) -> frozenset[str]:
        return frozenset({"word"})

    def run(self, ctx: NodeContext) -> FakeChecked.Outputs:
        _count(self, ctx)
        return self.Outputs(text=f"{self.choice}:{self.count}:{self.ratio}:{self.word}:{self.flag}")


class FakeLatentSource(_Fake):
    """Outputs a typed FAKE_LATENT value (for type-mismatch tests)."""

    class Outputs(NodeOutputs):
        latent: Any = Output(name="FAKE_LATENT", socket="FAKE_LATENT")

    def run(self, ctx: NodeContext) -> FakeLatentSource.Outputs:
        _count(self, ctx)
        return self.Outputs(latent={"samples": "fake"})


class FakeImageSink(_Fake):
    """An output node taking a FAKE_IMAGE link only."""

    output_node: ClassVar[bool] = True

    image: Any = Input(socket="FAKE_IMAGE")

    def run(self, ctx: NodeContext) -> NodeOutputs:
        _count(self, ctx)
        return self.Outputs(ui={"images": [str(self.image)]})


class FakeBackground(_Fake):
    """Hands work to ``ctx.background`` (which fails on demand) and sends a binary image."""

    output_node: ClassVar[bool] = True

    label: str = Input("bg")
    fail: bool = Input(False, optional=True)
    delay: float = Input(0.05, optional=True)

    def run(self, ctx: NodeContext) -> NodeOutputs:
        rec = _count(self, ctx)
        label, fail, delay = self.label, self.fail, self.delay

        def work() -> None:
            time.sleep(delay)
            if fail:
                raise OSError(f"disk full while writing {label}")
            rec.background_done.append(label)

        ctx.background(work)
        ctx.send_binary_image(f"image:{label}", "PNG")
        return self.Outputs(ui={"labels": [label]})


class FakeUniqueId(_Fake):
    """Has a UNIQUE_ID hidden input, so its node id enters its cache key (as in ComfyUI)."""

    hidden: ClassVar[tuple[Hidden, ...]] = (Hidden.UNIQUE_ID,)

    value: int = Input(0)

    class Outputs(NodeOutputs):
        value: str = Output(name="STRING")

    def run(self, ctx: NodeContext) -> FakeUniqueId.Outputs:
        _count(self, ctx)
        return self.Outputs(value=f"{ctx.node_id}:{self.value}")


class FakeContext(_Fake):
    """An output node reporting what its context offers (prompt, extra_pnginfo, node id)."""

    output_node: ClassVar[bool] = True
    hidden: ClassVar[tuple[Hidden, ...]] = (Hidden.PROMPT, Hidden.EXTRA_PNGINFO)

    value: Any = Input(optional=True)

    def run(self, ctx: NodeContext) -> NodeOutputs:
        _count(self, ctx)
        return self.Outputs(
            ui={"context": [{"node_id": ctx.node_id, "prompt_ids": sorted(ctx.prompt), "pnginfo": ctx.extra_pnginfo}]}
        )


FAKE_NODES = (
    FakeInt,
    FakeAdd,
    FakeFail,
    FakeSlow,
    FakeRange,
    FakeSum,
    FakeSwitch,
    FakeOutput,
    FakeRandom,
    FakeFingerprint,
    FakeChecked,
    FakeLatentSource,
    FakeImageSink,
    FakeBackground,
    FakeUniqueId,
    FakeContext,
)


def pack() -> NodePack:
    return NodePack(name="fakes", nodes=FAKE_NODES)


def chain(length: int, value: int = 1) -> dict[str, Any]:
    """FakeInt → FakeAdd × (length - 2) → FakeOutput."""
    prompt: dict[str, Any] = {"n0": {"class_type": "FakeInt", "inputs": {"value": value}}}
    for i in range(1, length - 1):
        prompt[f"n{i}"] = {"class_type": "FakeAdd", "inputs": {"a": [f"n{i - 1}", 0], "b": 1}}
    prompt["out"] = {"class_type": "FakeOutput", "inputs": {"value": [f"n{length - 2}", 0]}}
    return prompt
