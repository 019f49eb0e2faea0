"""Queue items and the answer to a submission, in ComfyUI's wire shapes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
"""Credentials for third-party services that must never reach the queue database or history."""


@dataclass
class QueueItem:
    """One accepted prompt. ``to_json()`` is ComfyUI's 5-element queue/history ``prompt`` array."""

    number: float | int
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    seq: int = 0  # acceptance order; breaks no ties (ComfyUI orders by number, then prompt_id)
    requeued: int = 0  # how many times a crash put this item back into the queue
    validated: Any = field(default=None, repr=False, compare=False)  # in-process handle, never persisted

    @property
    def client_id(self) -> str | None:
        value = self.extra_data.get("client_id")
        return value if isinstance(value, str) else None

    @property
    def sort_key(self) -> tuple[float, str]:
        return (float(self.number), self.prompt_id)

    def to_json(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]

    def json_text(self) -> str:
        """``to_json()`` serialized once and kept (``GET /queue`` joins thousands of these)."""
        text = self.__dict__.get("_json_text")
        if text is None:
            text = json.dumps(self.to_json(), separators=(",", ":"))
            self.__dict__["_json_text"] = text
        return text

    def to_record(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "prompt_id": self.prompt_id,
            "prompt": self.prompt,
            "extra_data": self.extra_data,
            "outputs": self.outputs,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], *, seq: int, requeued: int) -> QueueItem:
        return cls(
            number=record["number"],
            prompt_id=record["prompt_id"],
            prompt=record["prompt"],
            extra_data=record["extra_data"],
            outputs=list(record["outputs"]),
            seq=seq,
            requeued=requeued,
        )


@dataclass(frozen=True)
class Submitted:
    """``POST /prompt``'s 200 body: ``{"prompt_id", "number", "node_errors"}``."""

    prompt_id: str
    number: float | int
    node_errors: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "number": self.number, "node_errors": self.node_errors}
