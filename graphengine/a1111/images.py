"""Base64 images in A1111 bodies: decoding with checks, mask preparation, PNG encoding.

Clients send raw base64 (Talemate, SillyTavern) or data URLs (webuiapi); both are accepted. Every
image is decoded here, before anything is queued, so a bad one is a 4xx naming the field and the
queue stays untouched. Pillow is imported lazily.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graphengine.errors import NodeInputError
from graphengine.files import decode_image_bytes

if TYPE_CHECKING:
    from PIL import Image as PILImage

_DATA_URL = re.compile(r"^data:[^;,]*(;[^,]*)?,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


class BadImage(ValueError):
    """An image field that is not valid base64 of a readable image within the limits."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def strip_data_url(text: str) -> str:
    """The base64 payload of a data URL, or the text itself; whitespace removed."""
    return _WHITESPACE.sub("", _DATA_URL.sub("", text.strip(), count=1))


def decode_base64(text: str, field: str) -> bytes:
    payload = strip_data_url(text)
    if not payload:
        raise BadImage(field, "is empty")
    payload += "=" * (-len(payload) % 4)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(payload)
        except (binascii.Error, ValueError):
            raise BadImage(field, "is not valid base64") from None


@dataclass(frozen=True)
class DecodedImage:
    """A checked image: its raw base64 payload (for ``ETN_LoadImageBase64``) and its size."""

    base64: str
    width: int
    height: int
    image: PILImage.Image


def decode_image(text: str, field: str, max_pixels: int) -> DecodedImage:
    """Decode and check a base64 image; raises ``BadImage`` naming ``field``."""
    data = decode_base64(text, field)
    try:
        image = decode_image_bytes(data, max_pixels)
    except NodeInputError as exc:
        raise BadImage(field, str(exc)) from None
    return DecodedImage(base64=base64.b64encode(data).decode("ascii"), width=image.width, height=image.height, image=image)


def png_base64(image: PILImage.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def fit_geometry(src_w: int, src_h: int, dst_w: int, dst_h: int, mode: int) -> tuple[int, int, int, int]:
    """Where a ``src`` image lands on a ``dst`` canvas: ``(x, y, w, h)`` of the scaled source.

    mode 0 stretches, 1 scales to cover and centre-crops (box may exceed the canvas), 2 scales to fit
    inside (the rest is filled).
    """
    if mode == 0:
        return 0, 0, dst_w, dst_h
    ratio_src, ratio_dst = src_w / src_h, dst_w / dst_h
    cover = mode == 1
    if (ratio_src > ratio_dst) == cover:
        h = dst_h
        w = max(1, round(dst_h * ratio_src))
    else:
        w = dst_w
        h = max(1, round(dst_w / ratio_src))
    return (dst_w - w) // 2, (dst_h - h) // 2, w, h


def resize_and_fill(image: PILImage.Image, width: int, height: int) -> PILImage.Image:
    """A1111's "resize and fill": fit inside, then fill the borders by stretching the edge pixels."""
    from PIL import Image

    image = image.convert("RGB")
    x, y, w, h = fit_geometry(image.width, image.height, width, height, 2)
    scaled = image.resize((w, h), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height))
    # Stretch the outermost rows/columns over the empty borders, then paste the image.
    if y > 0:
        canvas.paste(scaled.crop((0, 0, w, 1)).resize((w, y)), (x, 0))
        canvas.paste(scaled.crop((0, h - 1, w, h)).resize((w, height - y - h)), (x, y + h))
    if x > 0:
        canvas.paste(scaled.crop((0, 0, 1, h)).resize((x, h)), (0, y))
        canvas.paste(scaled.crop((w - 1, 0, w, h)).resize((width - x - w, h)), (x + w, y))
    canvas.paste(scaled, (x, y))
    return canvas


def prepare_mask(mask: PILImage.Image, width: int, height: int, *, mode: int, blur: int, invert: bool) -> str:
    """A1111 mask → grayscale PNG base64 at ``width``×``height`` (white = repaint).

    A mask with transparency uses its alpha channel (opaque = repaint), as A1111 does; otherwise its
    luminance. The mask is placed with the same geometry as the image, inverted on
    request and blurred by ``blur`` pixels.
    """
    from PIL import Image, ImageFilter, ImageOps

    if mask.mode in ("RGBA", "LA") and mask.getchannel("A").getextrema() != (255, 255):
        gray = mask.getchannel("A")
    else:
        gray = mask.convert("L")
    if invert:
        gray = ImageOps.invert(gray)
    x, y, w, h = fit_geometry(gray.width, gray.height, width, height, mode if mode in (0, 1, 2) else 0)
    canvas = Image.new("L", (width, height), 0)
    canvas.paste(gray.resize((w, h), Image.Resampling.BILINEAR), (x, y))
    if blur > 0:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    return png_base64(canvas)


def place(image: PILImage.Image, width: int, height: int, mode: int) -> PILImage.Image:
    """``image`` on a ``width``×``height`` canvas with the resize mode's geometry (0 stretch, 1 crop)."""
    from PIL import Image

    x, y, w, h = fit_geometry(image.width, image.height, width, height, mode if mode in (0, 1) else 0)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image.convert("RGB").resize((w, h), Image.Resampling.LANCZOS), (x, y))
    return canvas


def overlay_unmasked(generated_png: bytes, original: PILImage.Image, mask_b64: str) -> bytes:
    """A1111's inpainting overlay: the original where the mask is black, blended along its blur.

    The generated PNG's text chunks (our workflow) are kept.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    with Image.open(io.BytesIO(generated_png)) as opened:
        generated = opened.convert("RGB")
        chunks = {k: v for k, v in getattr(opened, "text", {}).items() if isinstance(v, str)}
    mask = Image.open(io.BytesIO(base64.b64decode(mask_b64))).convert("L")
    if original.size != generated.size or mask.size != generated.size:
        return generated_png
    result = Image.composite(generated, original.convert("RGB"), mask)
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    result.save(buffer, format="PNG", pnginfo=info, compress_level=1)
    return buffer.getvalue()
