"""graphengine.files: path confinement, output naming, image bytes in and out."""

from __future__ import annotations

import io
import json
import os
import struct
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image

from graphengine.errors import NodeInputError
from graphengine.files import (
    ImageTooLarge,
    PathRejected,
    binary_frame,
    binary_frame_with_metadata,
    confine,
    confine_subfolder,
    decode_image_bytes,
    encode_png,
    encode_preview,
    expand_prefix_tokens,
    list_files,
    next_output_name,
    png_text_chunks,
    read_png_text,
    reserve_file,
    safe_filename,
)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    (base / "sub").mkdir(parents=True)
    (base / "sub" / "a.png").write_bytes(b"x")
    (base / "top.png").write_bytes(b"y")
    (tmp_path / "secret.txt").write_text("secret")
    return base


# --- confine: the traversal corpus ----------------------------------------------------------------

MALFORMED = [
    "..",
    "../secret.txt",
    "../../etc/passwd",
    "sub/../../secret.txt",
    "sub/../top.png",  # even a '..' that would stay inside is refused: no '..' at all
    "%2e%2e/secret.txt",
    "%2e%2e%2fsecret.txt",
    "..%2fsecret.txt",
    "..%5csecret.txt",
    "%2E%2E%5Csecret.txt",
    "%252e%252e%252fsecret.txt",  # double-encoded
    "sub%2f..%2f..%2fsecret.txt",
    "..\\secret.txt",
    "sub\\..\\..\\secret.txt",
    "/etc/passwd",
    "//etc/passwd",
    "~/secret.txt",
    "C:\\Windows\\win.ini",
    "C:/Windows/win.ini",
    "c:secret.txt",
    "\\\\server\\share\\x",
    "a\x00.png",
    "a.png\x00.txt",
    "a\nb.png",
    "a\rb.png",
    "\x7f.png",
    "a\u202egnp.exe",  # right-to-left override
    "\uff0e\uff0e/secret.txt",  # fullwidth dots
    "\u2024\u2024/secret.txt",  # one-dot leaders
    "\u2025/secret.txt",  # two-dot leader
    ".hidden",
    "sub/.hidden.png",
    "",
    "/",
    "a" * 300 + ".png",
]


@pytest.mark.parametrize("name", MALFORMED)
def test_confine_rejects_malformed_names_with_400(root: Path, name: str) -> None:
    with pytest.raises(PathRejected) as caught:
        confine(root, name)
    assert caught.value.status == 400
    assert str(caught.value)  # a message a user can read


def test_confine_rejects_non_strings(root: Path) -> None:
    with pytest.raises(PathRejected):
        confine(root, None)  # type: ignore[arg-type]
    with pytest.raises(PathRejected):
        confine(root, b"a.png")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["top.png", "sub/a.png", "sub//a.png", "./sub/./a.png", "a b.png", "50%.png",
                                  "a..b.png", "photo%20one.png", "über.png",
                                  "sub/%batch_num%.png", "sub/100%25.png"])
def test_confine_accepts_ordinary_names(root: Path, name: str) -> None:
    path = confine(root, name)
    assert path.is_relative_to(root.resolve())


def test_confine_resolves_into_the_root(root: Path) -> None:
    assert confine(root, "sub/a.png", must_exist=True) == (root / "sub" / "a.png").resolve()


def test_confine_must_exist_is_404(root: Path) -> None:
    with pytest.raises(PathRejected) as caught:
        confine(root, "missing.png", must_exist=True)
    assert caught.value.status == 404


def test_symlink_escaping_the_root_is_403(root: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    os.symlink(tmp_path, root / "linkdir")
    for name in ("link.txt", "linkdir/secret.txt", "linkdir"):
        with pytest.raises(PathRejected) as caught:
            confine(root, name)
        assert caught.value.status == 403


def test_symlink_inside_the_root_is_fine(root: Path) -> None:
    os.symlink(root / "sub" / "a.png", root / "alias.png")
    assert confine(root, "alias.png", must_exist=True) == (root / "sub" / "a.png").resolve()


def test_symlink_loop_is_refused(root: Path) -> None:
    os.symlink(root / "loop2", root / "loop1")
    os.symlink(root / "loop1", root / "loop2")
    with pytest.raises(PathRejected):
        confine(root, "loop1/x", must_exist=True)


def test_hidden_allowed_on_request(root: Path) -> None:
    assert confine(root, ".cache/x", allow_hidden=True).name == "x"


@pytest.mark.parametrize("subfolder", ["..", "../x", "sub/../..", "/etc", "/tmp", "C:/x"])
def test_subfolder_escape_is_403(root: Path, subfolder: str) -> None:
    with pytest.raises(PathRejected) as caught:
        confine_subfolder(root, subfolder)
    assert caught.value.status == 403


@pytest.mark.parametrize("subfolder", ["a\\b", "%2e%2e", "a\x00", ".git"])
def test_malformed_subfolder_is_400(root: Path, subfolder: str) -> None:
    with pytest.raises(PathRejected) as caught:
        confine_subfolder(root, subfolder)
    assert caught.value.status == 400


def test_subfolder_empty_is_root(root: Path) -> None:
    assert confine_subfolder(root, "") == root.resolve()
    assert confine_subfolder(root, None) == root.resolve()
    assert confine_subfolder(root, "sub", must_exist=True) == (root / "sub").resolve()


# --- safe_filename ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.png", "a.png"), ("dir/a.png", "a.png"), ("C:\\fakepath\\photo.png", "photo.png"),
     ("../../etc/passwd", "passwd"), ("my image (1).png", "my image (1).png")],
)
def test_safe_filename_strips_directories(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize("name", ["", "..", ".", "dir/", ".bashrc", "a\x00.png", "a\nb.png", "%2e%2e%2fx",
                                  "\uff0e\uff0e", None, "x" * 300])
def test_safe_filename_rejects(name: object) -> None:
    with pytest.raises(PathRejected) as caught:
        safe_filename(name)
    assert caught.value.status == 400


# --- list_files ---------------------------------------------------------------------------------------


def test_list_files_recurses_and_skips_hidden_and_escaping_links(root: Path, tmp_path: Path) -> None:
    (root / ".hidden.png").write_bytes(b"z")
    (root / "notes.txt").write_text("n")
    os.symlink(tmp_path, root / "escape")
    assert list_files(root, (".png",)) == ["sub/a.png", "top.png"]
    assert "notes.txt" in list_files(root)
    assert list_files(root / "nope") == []


# --- output naming ----------------------------------------------------------------------------------


def test_next_output_name_counts_up(tmp_path: Path) -> None:
    first = next_output_name(tmp_path, "ComfyUI", 64, 64)
    assert (first.counter, first.subfolder, first.filename) == (1, "", "ComfyUI")
    assert first.file_name(first.counter) == "ComfyUI_00001_.png"
    (tmp_path / "ComfyUI_00001_.png").write_bytes(b"")
    (tmp_path / "ComfyUI_00007_.png").write_bytes(b"")
    (tmp_path / "ComfyUIX_00099_.png").write_bytes(b"")  # different prefix: ignored
    (tmp_path / "Other_00050_.png").write_bytes(b"")
    assert next_output_name(tmp_path, "ComfyUI").counter == 8
    full_dir, filename, counter, subfolder = next_output_name(tmp_path, "comfyui")  # case-insensitive scan
    assert (filename, counter, subfolder, full_dir) == ("comfyui", 8, "", tmp_path.resolve())


def test_next_output_name_subfolders_and_tokens(tmp_path: Path) -> None:
    now = datetime(2026, 3, 4, 5, 6, 7)
    name = next_output_name(tmp_path, "run/%date:yyyy-MM-dd%/img_%width%x%height%_%year%%month%%day%"
                            "_%hour%%minute%%second%", 640, 480, now=now)
    assert name.subfolder == "run/2026-03-04"
    assert name.filename == "img_640x480_20260304_050607"
    assert name.full_dir.is_dir()
    assert expand_prefix_tokens("%date:yy.M.d hh-mm-ss%", now=now) == "26.3.4 05-06-07"


def test_next_output_name_batch_num_token(tmp_path: Path) -> None:
    name = next_output_name(tmp_path, "b_%batch_num%")
    assert name.file_name(3, batch_number=2) == "b_2_00003_.png"


@pytest.mark.parametrize("prefix", ["../x", "a/../../x", "/tmp/x", "..\\x", "%2e%2e/x"])
def test_next_output_name_refuses_escapes(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(PathRejected):
        next_output_name(tmp_path / "out", prefix)


def test_reserve_file_is_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    assert reserve_file(path) is True
    assert reserve_file(path) is False


# --- image bytes --------------------------------------------------------------------------------------


def _png(width: int = 8, height: int = 6, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (10, 20, 30, 40)[: len(mode)]).save(buffer, format="PNG")
    return buffer.getvalue()


def test_decode_image_bytes_reads_an_image() -> None:
    image = decode_image_bytes(_png(8, 6), max_pixels=1000)
    assert image.size == (8, 6)


def test_decode_image_bytes_refuses_oversize_from_the_header() -> None:
    with pytest.raises(ImageTooLarge) as caught:
        decode_image_bytes(_png(40, 30), max_pixels=1000)
    assert "40×30" in str(caught.value) and "1000" in str(caught.value)


def test_decode_image_bytes_refuses_decompression_bombs_without_decoding() -> None:
    # A valid PNG header announcing 100000×100000 pixels followed by nothing useful.
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    with pytest.raises(NodeInputError) as caught:
        decode_image_bytes(bomb, max_pixels=64 * 1024 * 1024)
    assert "limit" in str(caught.value)


@pytest.mark.parametrize("payload", [b"", b"hello world", b'{"a": 1}', b"<html></html>", b"\x89PNG\r\n\x1a\n"])
def test_decode_image_bytes_non_image_is_a_clear_error(payload: bytes) -> None:
    with pytest.raises(NodeInputError) as caught:
        decode_image_bytes(payload, max_pixels=1000)
    assert "image" in str(caught.value)


def test_decode_image_bytes_truncated_image() -> None:
    noisy = Image.effect_noise((64, 64), 50).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, format="PNG")
    data = buffer.getvalue()
    with pytest.raises(NodeInputError):
        decode_image_bytes(data[: len(data) // 2], max_pixels=1 << 20)


def test_png_text_chunks_read_back() -> None:
    prompt = {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}
    chunks = png_text_chunks(prompt, {"workflow": {"nodes": []}, "extra": "é"})
    data = encode_png(Image.new("RGB", (4, 4)), chunks)
    text = read_png_text(data)
    assert json.loads(text["prompt"]) == prompt
    assert json.loads(text["workflow"]) == {"nodes": []}
    assert json.loads(text["extra"]) == "é"
    assert read_png_text(encode_png(Image.new("RGB", (4, 4)))) == {}


def test_encode_preview_fits_box_and_formats() -> None:
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    jpeg = encode_preview(image, "JPEG", 50)
    assert jpeg[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(jpeg)).size == (50, 25)
    png = encode_preview(image, "PNG", None)
    assert Image.open(io.BytesIO(png)).size == (200, 100)
    assert Image.open(io.BytesIO(encode_preview(Image.new("RGBA", (10, 20)), "JPEG", 40))).size == (20, 40)
    with pytest.raises(ValueError):
        encode_preview(image, "GIF")


def test_binary_frames() -> None:
    frame = binary_frame(1, "PNG", b"DATA")
    assert struct.unpack(">II", frame[:8]) == (1, 2) and frame[8:] == b"DATA"
    assert struct.unpack(">II", binary_frame(1, "jpeg", b"")[:8]) == (1, 1)
    framed = binary_frame_with_metadata({"node_id": "3", "image_type": "image/png"}, b"IMG")
    event, length = struct.unpack(">II", framed[:8])
    assert event == 4 and json.loads(framed[8 : 8 + length]) == {"node_id": "3", "image_type": "image/png"}
    assert framed[8 + length :] == b"IMG"


def test_write_atomically_replaces_and_leaves_no_partials(tmp_path: Path) -> None:
    from graphengine.files import write_atomically

    target = tmp_path / "x.bin"
    write_atomically(target, b"one")
    write_atomically(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]
