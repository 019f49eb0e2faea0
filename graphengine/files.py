"""Files: the one path-confinement rule, ComfyUI output naming, and image bytes in and out.

Everything that turns a user-supplied name into a path goes through :func:`confine` (or
:func:`confine_subfolder` / :func:`safe_filename`), so `/view`, uploads, ``LoadImage``, ``SaveImage``
prefixes and model names share one tested rule set.

Status codes carried by :class:`PathRejected` (the HTTP layer answers with them as they are):

* **400** — the name itself is malformed: empty, absolute (``/x``, ``C:\\x``, ``\\\\server``), contains
  ``..`` / a backslash / a NUL or other control or bidi character, a URL-encoded (even double-encoded)
  separator or dot-dot, a Unicode look-alike of ``..``, or a hidden component (``.name``) where those
  are not allowed. (ComfyUI answers 400 for a bad ``filename``.)
* **403** — the name is well formed but lands outside its root: a subfolder that escapes (ComfyUI's
  ``commonpath`` 403), or a symlink inside the root that resolves outside it (ComfyUI misses this one).
* **404** — ``must_exist=True`` and nothing is there.

No torch here; Pillow is imported lazily by the image helpers.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import struct
import unicodedata
import urllib.parse
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphengine.errors import NodeInputError

if TYPE_CHECKING:
    from PIL import Image as PILImage

MAX_COMPONENT_BYTES = 255
MAX_PATH_CHARS = 4096
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


class PathRejected(NodeInputError):
    """A user-supplied path was refused. ``status`` is the HTTP status to answer with (400/403/404)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


# --------------------------------------------------------------------------------------------------
# Path confinement
# --------------------------------------------------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_DOT_LOOKALIKES = frozenset("\u2024\u2025\u2026\ufe52\uff0e\u3002\uff61\u0701\u0702\ua60e")


def _bad_character(text: str) -> str | None:
    """Describe the first character that may not appear in a path, or None."""
    for char in text:
        category = unicodedata.category(char)
        if char == "\x00":
            return "a NUL byte"
        if category in ("Cc", "Cf", "Zl", "Zp", "Cs"):
            return f"the control character U+{ord(char):04X}"
    return None


def _encodes_path_syntax(component: str) -> bool:
    """Whether percent-decoding one path component (up to three times: double encoding) reveals a
    separator, a dot-only name (``..``) or a control character."""
    decoded = component
    for _ in range(3):
        if not _PERCENT_ESCAPE.search(decoded):
            return False
        decoded = urllib.parse.unquote(decoded)
        if "/" in decoded or "\\" in decoded or _bad_character(decoded):
            return True
        if unicodedata.normalize("NFKC", decoded).strip(".") == "":
            return True
    return False


def _check_text(text: Any, what: str) -> str:
    """The lexical checks shared by every user-supplied name; returns the text unchanged."""
    if not isinstance(text, str):
        raise PathRejected(f"{what} must be a string, got {type(text).__name__}", 400)
    if len(text) > MAX_PATH_CHARS:
        raise PathRejected(f"{what} is too long ({len(text)} characters)", 400)
    bad = _bad_character(text)
    if bad:
        raise PathRejected(f"{what} {text!r} contains {bad}", 400)
    if "\\" in text:
        raise PathRejected(f"{what} {text!r} contains a backslash; use '/' between folders", 400)
    if _DRIVE.match(text):
        raise PathRejected(f"{what} {text!r} is an absolute path (drive letter); give a relative name", 400)
    if text.startswith(("/", "~")):
        raise PathRejected(f"{what} {text!r} is an absolute path; give a name relative to its folder", 400)
    # URL-encoded separators, dots and control characters (also double-encoded: %252e%252e).
    if any(_encodes_path_syntax(part) for part in text.split("/")):
        raise PathRejected(f"{what} {text!r} contains URL-encoded path characters", 400)
    return text


def _components(text: str, what: str, *, allow_hidden: bool, dotdot_status: int) -> list[str]:
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        normalized = unicodedata.normalize("NFKC", part)
        if part == ".." or normalized.strip(".") == "" or set(part) <= _DOT_LOOKALIKES | {"."}:
            raise PathRejected(f"{what} {text!r} leaves its folder ('..' is not allowed)", dotdot_status)
        if not allow_hidden and (part.startswith(".") or normalized.startswith(".")):
            raise PathRejected(f"{what} {text!r} names a hidden file or folder", 400)
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            raise PathRejected(f"{what} has a name longer than {MAX_COMPONENT_BYTES} bytes", 400)
        parts.append(part)
    return parts


def _inside(root: Path, parts: list[str], original: str, what: str, must_exist: bool) -> Path:
    base = root.resolve()
    candidate = base.joinpath(*parts)
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError) as error:  # symlink loops
        raise PathRejected(f"{what} {original!r} cannot be resolved: {error}", 403) from None
    if not resolved.is_relative_to(base):
        raise PathRejected(f"{what} {original!r} resolves outside its folder", 403)
    if must_exist and not resolved.exists():
        raise PathRejected(f"{what} {original!r} does not exist", 404)
    return resolved


def confine(root: Path | str, relative: str, *, must_exist: bool = False, allow_hidden: bool = False) -> Path:
    """The absolute, symlink-resolved path of ``relative`` inside ``root``, or :class:`PathRejected`.

    ``relative`` may contain ``/`` between folders (``"sub/name.png"``); ``.`` and empty components are
    ignored. Malformed names (``..``, absolute, backslash, encoded, control characters, hidden
    components unless ``allow_hidden``) → 400; a resolved path outside ``root`` → 403; ``must_exist``
    and missing → 404.
    """
    what = "path"
    _check_text(relative, what)
    parts = _components(relative, what, allow_hidden=allow_hidden, dotdot_status=400)
    if not parts:
        raise PathRejected("path is empty", 400)
    return _inside(Path(root), parts, relative, what, must_exist)


def confine_subfolder(
    root: Path | str, subfolder: str | None, *, must_exist: bool = False, allow_hidden: bool = False
) -> Path:
    """Like :func:`confine` for a folder; ``""``/``None`` is the root itself.

    As ComfyUI's ``commonpath`` check, a subfolder that climbs out (``..``, absolute) answers 403; other
    malformed names answer 400.
    """
    what = "subfolder"
    if subfolder is None or subfolder == "":
        base = Path(root).resolve()
        if must_exist and not base.is_dir():
            raise PathRejected("folder does not exist", 404)
        return base
    if isinstance(subfolder, str) and (subfolder.startswith("/") or _DRIVE.match(subfolder)):
        if _bad_character(subfolder) is None:
            raise PathRejected(f"subfolder {subfolder!r} is outside its folder", 403)
    _check_text(subfolder, what)
    parts = _components(subfolder, what, allow_hidden=allow_hidden, dotdot_status=403)
    return _inside(Path(root), parts, subfolder, what, must_exist)


def safe_filename(name: Any) -> str:
    """An uploaded file's name, reduced to its last component and checked.

    Directories are stripped (``"C:\\\\fakepath\\\\x.png"`` → ``"x.png"``, ``"a/b.png"`` → ``"b.png"``);
    empty, ``.``/``..``, hidden (leading ``.``), control characters and over-long names → 400.
    """
    if not isinstance(name, str):
        raise PathRejected("file name must be a string", 400)
    bad = _bad_character(name)
    if bad:
        raise PathRejected(f"file name {name!r} contains {bad}", 400)
    base = re.split(r"[/\\]", name)[-1].strip()
    if _DRIVE.match(base):
        base = base[2:]
    normalized = unicodedata.normalize("NFKC", base)
    if not base or set(base) <= _DOT_LOOKALIKES | {"."}:
        raise PathRejected(f"file name {name!r} is empty", 400)
    if base.startswith(".") or normalized.startswith("."):
        raise PathRejected(f"file name {name!r} names a hidden file", 400)
    if len(base.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
        raise PathRejected(f"file name is longer than {MAX_COMPONENT_BYTES} bytes", 400)
    if _encodes_path_syntax(base):
        raise PathRejected(f"file name {name!r} contains URL-encoded path characters", 400)
    return base


def list_files(root: Path | str, extensions: tuple[str, ...] | None = None) -> list[str]:
    """Relative ``/``-separated names of regular files under ``root`` (recursive, sorted).

    Hidden files and folders are skipped, and so is anything (file or folder symlink) that resolves
    outside ``root``.
    """
    base = Path(root).resolve()
    if not base.is_dir():
        return []
    found: list[str] = []
    stack = [base]
    seen: set[Path] = set()
    while stack:
        folder = stack.pop()
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                real = entry.resolve()
            except (OSError, RuntimeError):
                continue
            if not real.is_relative_to(base):
                continue
            if real.is_dir():
                if real not in seen:
                    seen.add(real)
                    stack.append(entry)
            elif real.is_file() and (extensions is None or entry.suffix.lower() in extensions):
                found.append(entry.relative_to(base).as_posix())
    return sorted(found)


# --------------------------------------------------------------------------------------------------
# ComfyUI output naming
# --------------------------------------------------------------------------------------------------

_DATE_TOKEN = re.compile(r"%date:([^%]*)%")
_DATE_PARTS = re.compile(r"yyyy|yy|MM|M|dd|d|hh|h|mm|m|ss|s")


def _format_date(pattern: str, now: datetime) -> str:
    values = {
        "yyyy": f"{now.year:04d}",
        "yy": f"{now.year % 100:02d}",
        "MM": f"{now.month:02d}",
        "M": str(now.month),
        "dd": f"{now.day:02d}",
        "d": str(now.day),
        "hh": f"{now.hour:02d}",
        "h": str(now.hour),
        "mm": f"{now.minute:02d}",
        "m": str(now.minute),
        "ss": f"{now.second:02d}",
        "s": str(now.second),
    }
    return _DATE_PARTS.sub(lambda match: values[match.group(0)], pattern)


def expand_prefix_tokens(prefix: str, width: int = 0, height: int = 0, now: datetime | None = None) -> str:
    """Substitute ComfyUI's file-name tokens in a ``filename_prefix``.

    Server-side tokens as ComfyUI: ``%width%``, ``%height%``, ``%year%``, ``%month%``, ``%day%``,
    ``%hour%``, ``%minute%``, ``%second%`` (two digits except the year). Also the frontend's
    ``%date:FORMAT%`` (``yyyy yy MM M dd d hh h mm m ss s``), which API clients send unexpanded.
    ``%batch_num%`` is left for the caller (it differs per image).
    """
    now = now or datetime.now()
    prefix = _DATE_TOKEN.sub(lambda match: _format_date(match.group(1), now), prefix)
    tokens = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.year),
        "%month%": f"{now.month:02d}",
        "%day%": f"{now.day:02d}",
        "%hour%": f"{now.hour:02d}",
        "%minute%": f"{now.minute:02d}",
        "%second%": f"{now.second:02d}",
    }
    for token, value in tokens.items():
        prefix = prefix.replace(token, value)
    return prefix


@dataclass(frozen=True)
class OutputName:
    """Where the next outputs of a prefix go (ComfyUI's ``get_save_image_path`` result).

    ``full_dir``: the absolute folder; ``filename``: the base name part of the prefix (may still hold
    ``%batch_num%``); ``counter``: the first free number; ``subfolder``: ``full_dir`` relative to the
    root, ``/``-separated (``""`` for the root) — what goes into the UI entry.
    """

    full_dir: Path
    filename: str
    counter: int
    subfolder: str

    def __iter__(self):  # unpack as (full_dir, filename, counter, subfolder)
        return iter((self.full_dir, self.filename, self.counter, self.subfolder))

    def file_name(self, counter: int, extension: str = "png", batch_number: int = 0) -> str:
        stem = self.filename.replace("%batch_num%", str(batch_number))
        return f"{stem}_{counter:05d}_.{extension}"


def _counter_of(entry: str, filename: str) -> int | None:
    """The counter of ``<filename>_<digits>_…`` (case-insensitive prefix), or None."""
    if len(entry) <= len(filename) or entry[len(filename)] != "_":
        return None
    if entry[: len(filename)].casefold() != filename.casefold():
        return None
    digits = entry[len(filename) + 1 :].split("_")[0]
    return int(digits) if digits.isdigit() else 0


def next_output_name(
    root: Path | str, filename_prefix: str, width: int = 0, height: int = 0, *, now: datetime | None = None
) -> OutputName:
    """Resolve a ``filename_prefix`` (``"name"``, ``"sub/dir/name"``, with tokens) to its next file.

    The counter is one more than the highest ``<name>_<NNNNN>_…`` already in the folder (1 if none);
    the folder is created. A prefix that leaves ``root`` raises :class:`PathRejected` (400/403).
    """
    expanded = expand_prefix_tokens(filename_prefix, width, height, now)
    _check_text(expanded, "filename_prefix")
    parts = _components(expanded, "filename_prefix", allow_hidden=False, dotdot_status=403)
    if not parts:
        parts.append("")
    filename = parts[-1]
    folder_parts = parts[:-1]
    base = Path(root).resolve()
    full_dir = _inside(base, folder_parts, filename_prefix, "filename_prefix", False) if folder_parts else base
    full_dir.mkdir(parents=True, exist_ok=True)
    highest = 0
    for entry in (path.name for path in full_dir.iterdir()):
        number = _counter_of(entry, filename)
        if number is not None:
            highest = max(highest, number)
    subfolder = full_dir.relative_to(base).as_posix()
    return OutputName(full_dir=full_dir, filename=filename, counter=highest + 1, subfolder="" if subfolder == "." else subfolder)


def reserve_file(path: Path) -> bool:
    """Create ``path`` empty and exclusively; False if it already exists (so the caller picks another)."""
    try:
        with open(path, "xb"):
            return True
    except FileExistsError:
        return False


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a sibling temporary file, then rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")  # hidden: never listed
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# Image bytes
# --------------------------------------------------------------------------------------------------


class ImageTooLarge(NodeInputError):
    """A decoded image would exceed the pixel cap (``Limits.max_image_pixels``)."""

    def __init__(self, width: int, height: int, max_pixels: int, frames: int = 1):
        self.width, self.height, self.max_pixels, self.frames = width, height, max_pixels, frames
        what = f"{width}×{height}" + (f" × {frames} frames" if frames > 1 else "")
        super().__init__(f"image of {what} pixels is over the limit of {max_pixels} pixels")


def _describe_payload(data: bytes) -> str:
    head = data[:16]
    if head.lstrip().startswith((b"{", b"[")):
        return "it looks like JSON"
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml", b"<svg")):
        return "it looks like HTML/XML"
    if not data:
        return "it is empty"
    return f"{len(data)} bytes starting with {head[:8].hex(' ')}"


def decode_image_bytes(data: bytes, max_pixels: int, *, max_frames: int = 4096) -> PILImage.Image:
    """Open encoded image bytes (PNG, JPEG, WebP, GIF, …) as a loaded PIL image.

    The size is read from the header **before** decoding: more than ``max_pixels`` pixels (summed
    over all frames of an animation) raises :class:`ImageTooLarge`. Anything that is not a decodable
    image raises :class:`NodeInputError` naming the cause.
    """
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise NodeInputError(f"image data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as error:
            raise NodeInputError(f"image is over the pixel limit ({error})") from None
        except UnidentifiedImageError:
            raise NodeInputError(f"data is not an image Pillow can read: {_describe_payload(data)}") from None
        except (OSError, ValueError, SyntaxError) as error:
            raise NodeInputError(f"image data is invalid: {error}") from None
        width, height = image.size
        frames = max(1, int(getattr(image, "n_frames", 1) or 1))
        if width <= 0 or height <= 0:
            raise NodeInputError(f"image has an invalid size {width}×{height}")
        if width * height > max_pixels or (frames > 1 and width * height * frames > max_pixels):
            raise ImageTooLarge(width, height, max_pixels, frames)
        if frames > max_frames:
            raise NodeInputError(f"image has {frames} frames; at most {max_frames} are accepted")
        try:
            image.load()
        except Image.DecompressionBombError as error:
            raise NodeInputError(f"image is over the pixel limit ({error})") from None
        except (OSError, ValueError, SyntaxError, struct.error) as error:
            raise NodeInputError(f"image data is truncated or corrupt: {error}") from None
    return image


def png_text_chunks(prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None) -> dict[str, str]:
    """ComfyUI's PNG metadata: ``prompt`` = JSON of the API prompt, plus one chunk per extra_pnginfo key."""
    chunks: dict[str, str] = {}
    if prompt is not None:
        chunks["prompt"] = json.dumps(prompt)
    for key, value in (extra_pnginfo or {}).items():
        chunks[str(key)] = json.dumps(value)
    return chunks


def encode_png(image: PILImage.Image, text_chunks: Mapping[str, str] | None = None, compress_level: int = 4) -> bytes:
    """PNG bytes with ``tEXt`` chunks (ComfyUI: level 4 for SaveImage, 1 for previews)."""
    from PIL.PngImagePlugin import PngInfo

    info = None
    if text_chunks:
        info = PngInfo()
        for key, value in text_chunks.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def read_png_text(data: bytes) -> dict[str, str]:
    """The text chunks of PNG bytes (what ``encode_png`` wrote)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return {str(k): str(v) for k, v in getattr(image, "text", {}).items()}


PREVIEW_FORMATS = {"JPEG": 1, "PNG": 2}
BINARY_PREVIEW_IMAGE = 1
BINARY_PREVIEW_IMAGE_WITH_METADATA = 4


def fit_into(image: PILImage.Image, max_size: int | None) -> PILImage.Image:
    """Scale ``image`` (bilinear, aspect kept, may upscale) to fit a ``max_size`` square box."""
    from PIL import Image

    if not max_size:
        return image
    width, height = image.size
    scale = min(max_size / width, max_size / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)


def encode_preview(image: PILImage.Image, fmt: str = "JPEG", max_size: int | None = None) -> bytes:
    """Encode a preview/websocket image as ComfyUI does: fit into ``max_size`` (None = full size),
    then JPEG quality 95 (RGB) or PNG compress level 1."""
    fmt = fmt.upper()
    if fmt not in PREVIEW_FORMATS:
        raise ValueError(f"preview format must be JPEG or PNG, not {fmt!r}")
    image = fit_into(image, max_size)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def binary_frame(event_type: int, image_format: str | int, data: bytes) -> bytes:
    """A ComfyUI binary websocket frame: ``[u32 event][u32 format][bytes]`` (format 1 JPEG, 2 PNG)."""
    code = image_format if isinstance(image_format, int) else PREVIEW_FORMATS[image_format.upper()]
    return struct.pack(">II", event_type, code) + data


def binary_frame_with_metadata(metadata: Mapping[str, Any], data: bytes) -> bytes:
    """ComfyUI's type-4 frame: ``[u32 4][u32 len][metadata JSON][image bytes]``."""
    meta = json.dumps(dict(metadata)).encode("utf-8")
    return struct.pack(">II", BINARY_PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + data


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file (LoadImage's fingerprint, upload dedupe)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
