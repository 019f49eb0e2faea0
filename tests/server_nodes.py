"""A small node pack for the server tests: fast, torch-free nodes that exercise every event kind.

``graphengine serve --node-packs tests.server_nodes,nodes.image`` runs a server with them (the hidden
test flag / ``GRAPHENGINE_NODE_PACKS``).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from graphengine.node import NEVER_CACHE, Input, Node, NodeContext, NodeOutputs, Output
from graphengine.registry import NodePack
from nodes.sockets import Image


class _StepPreview:
    """A ``ProgressPreview``: a small JPEG-able image whose red channel counts the step."""

    format = "JPEG"
    max_size = 32

    def __init__(self, step: int):
        from PIL import Image as PILImage

        self.image = PILImage.new("RGB", (64, 48), (min(step * 10, 255), 0, 0))


class ServerText(Node):
    """Reports ``steps`` progress steps (sleeping ``delay`` seconds each) and shows ``text``."""

    category: ClassVar[str] = "testing"
    output_node: ClassVar[bool] = True

    text: str = Input("hello")
    steps: int = Input(0, min=0, max=10_000)
    delay: float = Input(0.0, min=0.0, max=10.0)
    previews: bool = Input(False, optional=True, tooltip="attach a latent-preview-like image to every step")

    class Outputs(NodeOutputs):
        text: str = Output(name="STRING")

    def run(self, ctx: NodeContext) -> ServerText.Outputs:
        for step in range(self.steps):
            if self.delay:
                time.sleep(self.delay)
            ctx.progress(step + 1, self.steps, _StepPreview(step) if self.previews else None)
        ctx.check_interrupted()
        return self.Outputs(text=self.text, ui={"text": [self.text]})


class ServerUpper(Node):
    """Upper-cases a string (an intermediate node, to see caching of non-output nodes)."""

    category: ClassVar[str] = "testing"

    text: str = Input("hello")

    class Outputs(NodeOutputs):
        text: str = Output(name="STRING")

    def run(self, ctx: NodeContext) -> ServerUpper.Outputs:
        return self.Outputs(text=self.text.upper())


class ServerFail(Node):
    """Always fails with the given message."""

    category: ClassVar[str] = "testing"
    output_node: ClassVar[bool] = True

    message: str = Input("boom")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: NodeContext) -> ServerFail.Outputs:
        raise RuntimeError(self.message)


class ServerWsImage(Node):
    """Sends a solid-colour PNG straight to the prompt's websocket client (like SaveImageWebsocket)."""

    category: ClassVar[str] = "testing"
    output_node: ClassVar[bool] = True

    size: int = Input(8, min=1, max=512)
    value: int = Input(0, min=0, max=255)

    class Outputs(NodeOutputs):
        pass

    @classmethod
    def fingerprint(cls, literals: Any, env: Any) -> Any:
        return NEVER_CACHE

    def run(self, ctx: NodeContext) -> ServerWsImage.Outputs:
        from PIL import Image as PILImage

        ctx.send_binary_image(PILImage.new("RGB", (self.size, self.size), (self.value, 0, 0)), "PNG")
        return self.Outputs()


class ServerSaveText(Node):
    """Writes ``text`` to ``output/<prefix>_NNNNN_.txt`` off the execution thread, like SaveImage."""

    category: ClassVar[str] = "testing"
    output_node: ClassVar[bool] = True

    text: str = Input("saved")
    filename_prefix: str = Input("text")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: NodeContext) -> ServerSaveText.Outputs:
        from graphengine.files import next_output_name, write_atomically

        name = next_output_name(ctx.env.paths.output_dir, self.filename_prefix)
        filename = name.file_name(name.counter, "txt")
        data = self.text.encode("utf-8")
        ctx.background(lambda: write_atomically(name.full_dir / filename, data))
        return self.Outputs(ui={"images": [{"filename": filename, "subfolder": name.subfolder, "type": "output"}]})


class ServerImageSize(Node):
    """Shows an IMAGE's batch, height and width as text (an output node for loader tests)."""

    category: ClassVar[str] = "testing"
    output_node: ClassVar[bool] = True

    image: Image = Input()

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: NodeContext) -> ServerImageSize.Outputs:
        batch, height, width = (int(v) for v in self.image.pixels.shape[:3])
        return self.Outputs(ui={"text": [f"{batch}x{height}x{width}"]})


def pack() -> NodePack:
    return NodePack(name="server_tests", nodes=(ServerText, ServerUpper, ServerFail, ServerWsImage, ServerSaveText, ServerImageSize))
