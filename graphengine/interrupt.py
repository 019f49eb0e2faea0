"""Interruption: a flag the queue sets and the executor (and long nodes, via ``ctx``) checks."""

from __future__ import annotations

import threading


class InterruptFlag:
    """Interrupt requests, global or for one prompt id.

    ``request()`` interrupts whatever is running; ``request(prompt_id)`` only that prompt.
    ``is_requested`` is called between nodes and on every progress step, so it takes no lock
    (reading a bool and testing set membership are atomic in CPython).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._everything = False
        self._prompt_ids: frozenset[str] = frozenset()

    def request(self, prompt_id: str | None = None) -> None:
        with self._lock:
            if prompt_id is None:
                self._everything = True
            else:
                self._prompt_ids = self._prompt_ids | {str(prompt_id)}

    def is_requested(self, prompt_id: str | None = None) -> bool:
        return self._everything or (prompt_id is not None and prompt_id in self._prompt_ids)

    def clear(self, prompt_id: str | None = None) -> None:
        """Forget every request (or only the one for ``prompt_id``)."""
        with self._lock:
            if prompt_id is None:
                self._everything = False
                self._prompt_ids = frozenset()
            else:
                self._prompt_ids = self._prompt_ids - {str(prompt_id)}
