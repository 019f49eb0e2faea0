"""Response bodies of ``/sdapi/v1`` (for the OpenAPI document; handlers build plain dicts of this shape)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class GenerationResponse(BaseModel):
    """txt2img / img2img answer, exactly as webuiapi and SillyTavern parse it."""

    images: list[str] = Field(description="Raw base64 PNGs (no data: prefix); empty when send_images is false.")
    parameters: dict[str, Any] = Field(description="The request with defaults filled in (no credentials, no images).")
    info: str = Field(description="JSON string: prompt, all_seeds (one per image), sampler_name, infotexts, …")


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float = Field(description="0..1 over the whole job (all iterations and passes).")
    eta_relative: float = Field(description="Estimated seconds left.")
    state: ProgressState
    current_image: str | None = Field(None, description="Base64 PNG preview when previews are on.")
    textinfo: str | None = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None
    default_rho: float
    need_inner_model: bool


class SdModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: str | None = None


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None
    model_path: str | None
    model_url: str | None
    scale: float | None


class NameItem(BaseModel):
    name: str


class ModelFileItem(BaseModel):
    model_name: str
    filename: str


class LoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, Any]
    skipped: dict[str, Any]


class ScriptsList(BaseModel):
    txt2img: list[str]
    img2img: list[str]


class PngInfoResponse(BaseModel):
    info: str = Field(description="The A1111 parameters text, or '' when the image has none.")
    items: dict[str, Any] = Field(description="Other PNG text chunks (ComfyUI's prompt/workflow JSON).")
    parameters: dict[str, Any] = Field(description="The parameters text parsed into fields.")


class ErrorResponse(BaseModel):
    detail: str = Field(description="What is wrong, naming the field.")
    errors: list[dict[str, Any]] | None = None
