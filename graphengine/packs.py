"""The built-in node packs, loaded by module name (``nodes`` is never imported by the core itself).

Each module listed in ``BUILTIN_PACK_MODULES`` exposes ``pack() -> NodePack``; importing it must not
import torch. A pack owner adds its module name here when the pack lands.
"""

from __future__ import annotations

import importlib
import logging

from graphengine.registry import NodePack

log = logging.getLogger(__name__)

BUILTIN_PACK_MODULES: tuple[str, ...] = (
    "nodes.utility",
    "nodes.loaders",
    "nodes.image",
    "nodes.image_base64",
    "nodes.latent",
    "nodes.output",
    "nodes.conditioning",
    "nodes.vae",
    "nodes.sampling",
)


def load_pack(module_name: str) -> NodePack:
    """Import ``module_name`` and return its ``pack()``."""
    module = importlib.import_module(module_name)
    factory = getattr(module, "pack", None)
    if not callable(factory):
        raise TypeError(f"node pack module {module_name!r} has no pack() function")
    pack = factory()
    if not isinstance(pack, NodePack):
        raise TypeError(f"{module_name}.pack() returned {type(pack).__name__}, expected NodePack")
    return pack


def builtin_packs(*, strict: bool = False) -> list[NodePack]:
    """Load every built-in pack. A pack that fails to load is logged and left out (``strict``: raised),
    so one broken pack does not take the others down."""
    packs = []
    for module_name in BUILTIN_PACK_MODULES:
        try:
            packs.append(load_pack(module_name))
        except Exception:
            if strict:
                raise
            log.exception("node pack %s failed to load; its nodes are unavailable", module_name)
    return packs
