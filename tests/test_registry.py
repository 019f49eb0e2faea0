"""The registry is built explicitly from packs."""

from __future__ import annotations

import pytest

from graphengine.registry import NodePack, NodeRegistry
from nodes.utility import PreviewAny, pack
from tests.fakes import pack as fake_pack


def test_registry_from_packs():
    registry = NodeRegistry([pack(), fake_pack()])
    assert registry["PreviewAny"] is PreviewAny
    assert "FakeInt" in registry and len(registry) == len(pack().nodes) + len(fake_pack().nodes)
    assert NodeRegistry([]).get("PreviewAny") is None  # nothing registers itself on import


def test_same_pack_twice_is_fine_but_shadowing_is_refused():
    NodeRegistry([pack(), pack()])

    class PreviewAnyClone(PreviewAny):
        class_type = "PreviewAny"

    with pytest.raises(ValueError, match="already registered"):
        NodeRegistry([pack(), NodePack("other", (PreviewAnyClone,))])
