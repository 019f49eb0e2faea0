"""A1111's settings (``/sdapi/v1/options``), persisted as JSON under the data directory.

Only the settings that change what this server does are stored (current checkpoint, VAE, CLIP
skip, img2img step rule, live previews); the other keys clients read are answered with fixed values.
Unknown keys in an update are ignored, as A1111 does for options it does not know.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

OPTIONS_FILE = "a1111_options.json"


class A1111Options(BaseModel):
    """The persisted settings. ``sd_model_checkpoint`` "" means "the first checkpoint found"."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    sd_model_checkpoint: str = Field("", description="Checkpoint used when a request names none.")
    sd_vae: str = Field("Automatic", description='"Automatic" / "None" = the checkpoint\'s VAE, else a file in vae/.')
    CLIP_stop_at_last_layers: int = Field(1, ge=1, le=24, description="Clip skip (1 = use the last layer).")
    img2img_fix_steps: bool = Field(
        False, description="img2img runs exactly `steps` steps (False: steps × denoising_strength, as A1111)."
    )
    live_previews_enable: bool = Field(True, description="Report current_image in /progress when previews are on.")


# Fixed answers for keys clients read but this server does not act on.
FIXED_OPTIONS: dict[str, Any] = {
    "samples_format": "png",
    "samples_save": True,
    "save_images_add_number": True,
    "outdir_samples": "",
    "sd_checkpoint_cache": 0,
    "sd_vae_checkpoint_cache": 0,
    "show_progress_every_n_steps": 1,
    "show_progressbar": True,
    "live_preview_content": "Prompt",
    "enable_emphasis": False,
    "use_old_emphasis_implementation": False,
    "eta_ddim": 0.0,
    "eta_ancestral": 1.0,
    "upscaler_for_img2img": None,
    "sd_lora": "None",
    "sd_hypernetwork": "None",
    "sd_unet": "Automatic",
}


class OptionsStore:
    """Reads and writes the options file atomically; safe to share between threads."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / OPTIONS_FILE
        self._lock = threading.Lock()
        self._options = self._load()

    def _load(self) -> A1111Options:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return A1111Options()
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable %s: %s", self.path, exc)
            return A1111Options()
        try:
            return A1111Options.model_validate(raw if isinstance(raw, dict) else {})
        except ValueError as exc:
            logger.warning("ignoring invalid %s: %s", self.path, exc)
            return A1111Options()

    @property
    def current(self) -> A1111Options:
        with self._lock:
            return self._options.model_copy()

    def effective(self, overrides: Mapping[str, Any]) -> A1111Options:
        """The options with per-request overrides applied (nothing is stored). Raises ValidationError.

        ``None`` and an empty ``sd_model_checkpoint`` mean "keep the current value" (sd-proxy always
        sends ``{"sd_model_checkpoint": ""}``)."""
        known = {
            k: v
            for k, v in overrides.items()
            if k in A1111Options.model_fields and v is not None and not (k == "sd_model_checkpoint" and v == "")
        }
        with self._lock:
            return A1111Options.model_validate({**self._options.model_dump(), **known})

    def update(self, changes: Mapping[str, Any]) -> A1111Options:
        """Validate and persist ``changes``; unknown keys are ignored. Raises ValidationError."""
        updated = self.effective(changes)
        with self._lock:
            self._options = updated
            self._write(updated)
        return updated.model_copy()

    def _write(self, options: A1111Options) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".a1111_options.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(options.model_dump(), handle, indent=2)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def as_json(self, checkpoint_title: str, checkpoint_hash: str | None) -> dict[str, Any]:
        """The ``GET /sdapi/v1/options`` body."""
        options = self.current
        body = dict(FIXED_OPTIONS)
        body.update(options.model_dump())
        body["sd_model_checkpoint"] = checkpoint_title
        body["sd_checkpoint_hash"] = checkpoint_hash
        return body
