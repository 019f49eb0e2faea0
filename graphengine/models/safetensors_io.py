"""Reading and writing ``.safetensors`` files safely, and the opt-in gate for pickle checkpoints.

- ``read_header(path)`` checks a file before anything is loaded: header length sane, header valid
  JSON, every tensor's byte range inside the file, ranges contiguous, file not truncated. Problems
  raise ``CheckpointError`` naming the file and the reason.
- ``StreamingWriter`` writes tensors one at a time in a fixed order (so a multi-GB random checkpoint
  never sits in memory twice and the same inputs give the same bytes).
- ``load_state_dict(path)`` loads safetensors (after the checks) or, only when pickle is explicitly
  allowed (``GRAPHENGINE_ALLOW_PICKLE=1`` or ``allow_pickle=True``), a ``.ckpt``/``.pt`` with
  ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import torch

MAX_HEADER_BYTES = 100 * 1024 * 1024
ALLOW_PICKLE_ENV = "GRAPHENGINE_ALLOW_PICKLE"
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pt2"})

DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}


class CheckpointError(ValueError):
    """A model file cannot be used; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")


class PickleRefused(CheckpointError):
    """A pickle checkpoint was offered while pickle loading is not allowed."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: info.shape for name, info in self.tensors.items()}


def pickle_allowed(explicit: bool | None = None) -> bool:
    """Whether pickle checkpoints may be loaded: ``explicit`` if given, else ``GRAPHENGINE_ALLOW_PICKLE``."""
    if explicit is not None:
        return explicit
    return os.environ.get(ALLOW_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def read_header(path: Path | str) -> SafetensorsHeader:
    """Parse and check a safetensors header without loading any tensor data."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise CheckpointError(path, f"file is only {size} bytes: not a safetensors file (truncated or empty)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len == 0 or header_len > MAX_HEADER_BYTES:
                raise CheckpointError(path, "not a safetensors file (invalid header length; corrupt or a different format)")
            if 8 + header_len > size:
                raise CheckpointError(path, f"truncated: header needs {header_len} bytes, file has {size - 8}")
            raw = handle.read(header_len)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"corrupt safetensors header (not valid JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(path, "corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(path, "corrupt safetensors header (__metadata__ is not an object)")
    tensors: dict[str, TensorInfo] = {}
    data_size = size - 8 - header_len
    for name, entry in header.items():
        try:
            dtype = entry["dtype"]
            shape = tuple(int(d) for d in entry["shape"])
            start, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(path, f"corrupt safetensors header entry for tensor {name!r}") from exc
        if dtype not in DTYPE_SIZES:
            raise CheckpointError(path, f"tensor {name!r} has unsupported dtype {dtype!r}")
        count = 1
        for dim in shape:
            if dim < 0:
                raise CheckpointError(path, f"tensor {name!r} has a negative dimension")
            count *= dim
        if end - start != count * DTYPE_SIZES[dtype] or start < 0:
            raise CheckpointError(path, f"corrupt safetensors header: byte range of {name!r} does not match its shape")
        if end > data_size:
            raise CheckpointError(
                path, f"truncated: tensor {name!r} ends at byte {end} but the file holds only {data_size} data bytes"
            )
        tensors[name] = TensorInfo(dtype, shape, start, end)
    covered = 0
    for info in sorted(tensors.values(), key=lambda i: i.start):
        if info.start != covered:
            raise CheckpointError(path, "corrupt safetensors file: tensor data ranges overlap or leave gaps")
        covered = info.end
    if covered != data_size:
        raise CheckpointError(path, f"corrupt safetensors file: {data_size - covered} bytes of unexplained data after the tensors")
    return SafetensorsHeader(path=path, tensors=tensors, metadata={str(k): str(v) for k, v in metadata.items()})


def load_state_dict(path: Path | str, *, allow_pickle: bool | None = None, device: str = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file (checked first). Pickle only with explicit opt-in, weights only."""
    import torch

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".safetensors", ".sft"):
        read_header(path)
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=device)
        except Exception as exc:  # safetensors raises its own error types for malformed files
            raise CheckpointError(path, f"cannot load safetensors data: {exc}") from exc
    if suffix in PICKLE_SUFFIXES:
        if not pickle_allowed(allow_pickle):
            raise PickleRefused(
                path,
                f"pickle checkpoints ({suffix}) can run code when loaded and are refused; convert it to "
                f".safetensors, or set {ALLOW_PICKLE_ENV}=1 to load it with torch.load(weights_only=True)",
            )
        try:
            loaded = torch.load(str(path), map_location=device, weights_only=True)
        except Exception as exc:
            raise CheckpointError(path, f"cannot load pickle checkpoint with weights_only=True: {exc}") from exc
        if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, Mapping):
            raise CheckpointError(path, "pickle checkpoint does not hold a state dict")
        return {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    raise CheckpointError(path, f"unsupported model file type {suffix or '(no extension)'}")


def checkpoint_shapes(path: Path | str, *, allow_pickle: bool | None = None) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Tensor shapes and metadata of a checkpoint without loading safetensors data."""
    path = Path(path)
    if path.suffix.lower() in (".safetensors", ".sft"):
        header = read_header(path)
        return header.shapes(), header.metadata
    state = load_state_dict(path, allow_pickle=allow_pickle)
    return {k: tuple(v.shape) for k, v in state.items()}, {}


class StreamingWriter:
    """Write a safetensors file tensor by tensor: declare every tensor first, then ``write`` them in order.

    Tensors are laid out in ``sorted`` name order and the header is compact, key-sorted JSON, so the
    same tensors give the same bytes.
    """

    def __init__(self, path: Path, entries: Mapping[str, tuple[str, tuple[int, ...]]], metadata: Mapping[str, str]):
        self.path = Path(path)
        self._order = sorted(entries)
        header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
        offset = 0
        self._expected: dict[str, int] = {}
        for name in self._order:
            dtype, shape = entries[name]
            count = 1
            for dim in shape:
                count *= dim
            nbytes = count * DTYPE_SIZES[dtype]
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            self._expected[name] = nbytes
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)
        self._header = raw
        self._next = 0
        self._handle: BinaryIO | None = None

    @property
    def order(self) -> list[str]:
        return list(self._order)

    def __enter__(self) -> StreamingWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("wb")
        self._handle.write(struct.pack("<Q", len(self._header)))
        self._handle.write(self._header)
        return self

    def write(self, name: str, data: bytes | memoryview) -> None:
        assert self._handle is not None, "use StreamingWriter as a context manager"
        expected_name = self._order[self._next]
        if name != expected_name:
            raise ValueError(f"tensor {name!r} written out of order (expected {expected_name!r})")
        if len(data) != self._expected[name]:
            raise ValueError(f"tensor {name!r} has {len(data)} bytes, expected {self._expected[name]}")
        self._handle.write(data)
        self._next += 1

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._handle is not None
        self._handle.close()
        if exc_type is None and self._next != len(self._order):
            self.path.unlink(missing_ok=True)
            raise ValueError(f"only {self._next} of {len(self._order)} tensors were written to {self.path}")
        if exc_type is not None:
            self.path.unlink(missing_ok=True)
