"""Pausing Python's cyclic garbage collector around the engine's own bookkeeping.

Validation, signatures and planning allocate many small objects and create no reference cycles.
Automatic collections triggered by those allocations scan everything alive — the previous run's
validated graph, memos and cached outputs included — so on large graphs they cost more than the
work itself. Inside ``gc_paused()`` no automatic collection starts. A node's ``run`` never executes
inside it (its small validation and fingerprint hooks may).
Pauses nest (an inner pause leaves the collector as the outer one found it); overlapping pauses on
two threads at worst end one pause early.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
