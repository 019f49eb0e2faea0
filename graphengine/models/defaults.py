"""The default model: a random-weight ``small`` checkpoint made on first run when no checkpoint exists.

``ensure_default_checkpoint(models_dir)`` writes ``checkpoints/graphengine-default.safetensors``
(SD1.5-compatible, about 570 MB, seed 0) unless the checkpoints folder already holds a model, and
returns the name clients should use. Importing this module does not import torch.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = "graphengine-default.safetensors"
DEFAULT_ARCH = "small"


def ensure_default_checkpoint(models_dir: Path | str, *, arch: str = DEFAULT_ARCH, name: str = DEFAULT_CHECKPOINT,
                              force: bool = False) -> str | None:
    """Make the default checkpoint if ``checkpoints/`` has no model yet (or ``force``); its name, or None
    when other checkpoints exist and none was made."""
    from graphengine.models.library import ModelLibrary

    library = ModelLibrary(models_dir)
    existing = library.list("checkpoints")
    if name in existing:
        return name
    if existing and not force:
        return None
    target = library.roots("checkpoints")[0] / name
    logger.warning("no checkpoint found: writing a random-weight %s model to %s (it makes noise, not pictures)", arch, target)
    from graphengine.models.checkpoint_maker import make_checkpoint

    make_checkpoint(target, arch, seed=0)
    return name
