"""OpenAI-style image request bodies (``/v1/images/generations`` and ``/edits``).

Besides OpenAI's fields (``prompt``, ``n``, ``size``, ``response_format``, ``model``, …) every A1111
txt2img field is accepted, as sd-proxy-server's extended body does (``negative_prompt``, ``seed``,
``steps``, ``cfg_scale``, ``sampler_name``, ``scheduler``, ``override_settings``, …).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from graphengine.a1111.requests import Img2ImgRequest, Txt2ImgRequest

_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(size: str) -> tuple[int, int] | None:
    """``"512x768"`` → (512, 768); ``"auto"``/"" → None. Raises ValueError for anything else."""
    if not size.strip() or size.strip().lower() == "auto":
        return None
    match = _SIZE.match(size)
    if not match:
        raise ValueError(f"size must look like 512x512 (got {size!r})")
    width, height = int(match.group(1)), int(match.group(2))
    if width % 8 or height % 8:
        raise ValueError(f"size {width}x{height}: width and height must be multiples of 8")
    if not (64 <= width <= 16384 and 64 <= height <= 16384):
        raise ValueError(f"size {width}x{height}: each side must be between 64 and 16384")
    return width, height


class OpenAIFields(BaseModel):
    n: int | None = Field(None, ge=1, le=16, description="Number of images (A1111 batch_size).")
    size: str | None = Field(None, description='"WIDTHxHEIGHT" (multiples of 8) or "auto".')
    response_format: Literal["b64_json", "url"] = Field("url", description="b64_json or url (a /view URL here).")
    model: str | None = Field(None, description="A checkpoint name; other values (dall-e-3, …) keep the current one.")
    quality: str | None = Field(None, description="Ignored.")
    style: str | None = Field(None, description="Ignored.")
    user: str | None = Field(None, description="Ignored.")

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value


class ImageGenerationRequest(OpenAIFields, Txt2ImgRequest):
    """``POST /v1/images/generations``: OpenAI's body plus A1111 txt2img fields."""

    steps: int = Field(20, ge=1, le=10000, description="Sampling steps.")

    def a1111_fields(self) -> dict[str, Any]:
        """The A1111 txt2img body this request stands for (sent downstream or run here)."""
        body = self.model_dump(mode="json", exclude=set(OpenAIFields.model_fields))
        size = parse_size(self.size) if self.size else None
        if size:
            body["width"], body["height"] = size
        if self.n is not None:
            body["batch_size"] = self.n
        return body


class ImageEditRequest(OpenAIFields, Img2ImgRequest):
    """``POST /v1/images/edits`` as JSON (``image``/``mask`` as base64 or data URLs) or multipart."""

    image: str | None = Field(None, description="The image to edit (base64 / data URL); or init_images.")
    init_images: list[str] = Field(default_factory=list, description="A1111 spelling of image.")
    steps: int = Field(20, ge=1, le=10000, description="Sampling steps.")
