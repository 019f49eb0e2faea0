"""Images embedded in the prompt as base64 (Acly's comfyui-tooling-nodes: ``ETN_LoadImageBase64``,
``ETN_LoadMaskBase64``). SillyTavern's avatar workflow sends the character avatar this way.

The string may be raw base64 or a ``data:image/...;base64,`` URL; whitespace and missing padding
are tolerated. Decoded sizes are capped (``Limits.max_upload_bytes``, ``Limits.max_image_pixels``).
Importing this module does not import torch.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any, ClassVar

from graphengine.errors import NodeInputError
from graphengine.files import ImageTooLarge, decode_image_bytes
from graphengine.node import Input, Node, NodeContext, NodeOutputs, Output
from graphengine.registry import NodePack
from nodes.sockets import Image, Mask

if TYPE_CHECKING:
    from graphengine.environment import Limits

_DATA_URL = re.compile(r"^data:([\w/+.-]*)(;[\w=.-]+)*?;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
_BASE64_ALPHABET = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")


def decode_base64_payload(text: Any, limits: Limits, what: str = "image") -> bytes:
    """The bytes of a base64 string or data URL, or :class:`NodeInputError` naming the problem."""
    if not isinstance(text, str):
        raise NodeInputError(f"{what} must be a base64 string, got {type(text).__name__}")
    payload = text.strip()
    if not payload:
        raise NodeInputError(f"{what} is empty: expected base64-encoded image data")
    if payload.lower().startswith("data:"):
        match = _DATA_URL.match(payload)
        if not match:
            raise NodeInputError(f"{what} is a data: URL without ';base64,' encoded data")
        payload = payload[match.end() :]
    payload = _WHITESPACE.sub("", payload)
    if len(payload) * 3 // 4 > limits.max_upload_bytes:
        raise NodeInputError(
            f"{what} is {len(payload) * 3 // 4} bytes after decoding; the limit is {limits.max_upload_bytes} bytes"
        )
    if not _BASE64_ALPHABET.match(payload):
        bad = next((c for c in payload if not (c.isascii() and (c.isalnum() or c in "+/=_-"))), "=")
        raise NodeInputError(f"{what} is not valid base64: unexpected character {bad!r}")
    payload = payload.rstrip("=")
    if len(payload) % 4 == 1:
        raise NodeInputError(f"{what} is not valid base64: its length does not fit base64 (truncated?)")
    payload += "=" * (-len(payload) % 4)
    try:
        if "-" in payload or "_" in payload:
            return base64.urlsafe_b64decode(payload)
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise NodeInputError(f"{what} is not valid base64: {error}") from None


def _decode_image(text: Any, ctx: NodeContext, what: str) -> Any:
    limits = ctx.env.limits
    data = decode_base64_payload(text, limits, what)
    try:
        return decode_image_bytes(data, limits.max_image_pixels)
    except ImageTooLarge:
        raise
    except NodeInputError as error:
        raise NodeInputError(f"{what}: {error}") from None


class LoadImageBase64(Node):
    """Load an image from a base64 string (raw or a data: URL): outputs the RGB image and its alpha
    as a mask (1 − alpha; 64×64 zeros without alpha)."""

    class_type: ClassVar[str] = "ETN_LoadImageBase64"
    display_name: ClassVar[str] = "Load Image (Base64)"
    category: ClassVar[str] = "external_tooling"
    python_module: ClassVar[str] = "custom_nodes.comfyui-tooling-nodes"

    image: str = Input(multiline=False, tooltip="Base64-encoded PNG/JPEG/WebP data, or a data: URL.")

    class Outputs(NodeOutputs):
        image: Image = Output(name="IMAGE")
        mask: Mask = Output(name="MASK")

    def run(self, ctx: NodeContext) -> LoadImageBase64.Outputs:
        from nodes._imaging import image_and_mask_from_pil

        pixels, mask = image_and_mask_from_pil(_decode_image(self.image, ctx, "image"), all_frames=False)
        return self.Outputs(image=Image(pixels), mask=Mask(mask))


class LoadMaskBase64(Node):
    """Load a mask from a base64 string: the image's first channel (red, or grey) as the mask."""

    class_type: ClassVar[str] = "ETN_LoadMaskBase64"
    display_name: ClassVar[str] = "Load Mask (Base64)"
    category: ClassVar[str] = "external_tooling"
    python_module: ClassVar[str] = "custom_nodes.comfyui-tooling-nodes"

    mask: str = Input(multiline=False, tooltip="Base64-encoded image data, or a data: URL.")

    class Outputs(NodeOutputs):
        mask: Mask = Output(name="MASK")

    def run(self, ctx: NodeContext) -> LoadMaskBase64.Outputs:
        from nodes._imaging import mask_from_pil_first_channel

        return self.Outputs(mask=Mask(mask_from_pil_first_channel(_decode_image(self.mask, ctx, "mask"))))


def pack() -> NodePack:
    return NodePack(name="image_base64", nodes=(LoadImageBase64, LoadMaskBase64))
