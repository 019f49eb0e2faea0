"""ModelLibrary: ComfyUI's folder layout, confined names, extra_model_paths.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphengine.models.extra_paths import ExtraPathsError, read_extra_paths
from graphengine.models.library import ModelLibrary, ModelNameRejected, ModelNotFound


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    touch(root / "checkpoints" / "b.safetensors")
    touch(root / "checkpoints" / "a.ckpt")
    touch(root / "checkpoints" / "sub" / "c.safetensors")
    touch(root / "checkpoints" / "notes.txt")
    touch(root / "checkpoints" / ".hidden.safetensors")
    touch(root / "clip" / "legacy_clip.safetensors")
    touch(root / "text_encoders" / "t5.safetensors")
    touch(root / "unet" / "old_unet.safetensors")
    touch(root / "diffusion_models" / "new_unet.sft")
    touch(root / "embeddings" / "easy.pt")
    touch(root / "configs" / "v1.yaml")
    touch(root / "diffusers" / "pipe" / "model_index.json", b"{}")
    return root


def test_lists_files_recursively_sorted_with_model_extensions_only(models: Path) -> None:
    lib = ModelLibrary(models)
    assert lib.list("checkpoints") == ["a.ckpt", "b.safetensors", "sub/c.safetensors"]
    assert lib.list("configs") == ["v1.yaml"]
    assert lib.list("embeddings") == ["easy.pt"]
    assert lib.list("diffusers") == ["pipe"]
    assert lib.list("loras") == []  # folder absent: empty, not an error


def test_two_folders_per_kind_and_legacy_aliases(models: Path) -> None:
    lib = ModelLibrary(models)
    assert lib.list("text_encoders") == ["legacy_clip.safetensors", "t5.safetensors"]
    assert lib.list("clip") == lib.list("text_encoders")
    assert lib.list("unet") == ["new_unet.sft", "old_unet.safetensors"]
    assert lib.resolve("unet", "old_unet.safetensors") == (models / "unet" / "old_unet.safetensors").resolve()
    assert {"checkpoints", "loras", "vae", "embeddings", "upscale_models", "controlnet", "vae_approx"} <= set(
        lib.folder_kinds()
    )


def test_resolve_returns_real_path_and_missing_lists_available(models: Path) -> None:
    lib = ModelLibrary(models)
    assert lib.resolve("checkpoints", "sub/c.safetensors") == (models / "checkpoints/sub/c.safetensors").resolve()
    with pytest.raises(ModelNotFound) as info:
        lib.resolve("checkpoints", "nope.safetensors")
    assert info.value.available == ["a.ckpt", "b.safetensors", "sub/c.safetensors"]
    assert "b.safetensors" in str(info.value)


@pytest.mark.parametrize(
    "name",
    ["../secret.safetensors", "sub/../../secret.safetensors", "/etc/passwd", "..\\secret", "a\x00b", "%2e%2e/x",
     ".hidden.safetensors", ""],
)
def test_resolve_refuses_names_that_escape(models: Path, name: str) -> None:
    touch(models / "secret.safetensors")
    lib = ModelLibrary(models)
    with pytest.raises(ModelNameRejected):
        lib.resolve("checkpoints", name)


def test_symlink_pointing_outside_is_neither_listed_nor_resolved(models: Path, tmp_path: Path) -> None:
    outside = touch(tmp_path / "elsewhere" / "stolen.safetensors")
    os.symlink(outside, models / "checkpoints" / "link.safetensors")
    inside = models / "checkpoints" / "b.safetensors"
    os.symlink(inside, models / "checkpoints" / "alias.safetensors")
    lib = ModelLibrary(models)
    assert "link.safetensors" not in lib.list("checkpoints")
    assert "alias.safetensors" in lib.list("checkpoints")
    with pytest.raises(ModelNameRejected):
        lib.resolve("checkpoints", "link.safetensors")
    assert lib.resolve("checkpoints", "alias.safetensors") == inside.resolve()


def test_extra_model_paths_yaml_follows_comfyui_semantics(models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    touch(shared / "models" / "Stable-diffusion" / "from_a1111.safetensors")
    touch(shared / "models" / "Lora" / "style.safetensors")
    touch(shared / "models" / "Lora2" / "second.safetensors")
    touch(tmp_path / "yamldir" / "relative_ckpts" / "rel.safetensors")
    touch(tmp_path / "first" / "b.safetensors", b"first")
    monkeypatch.setenv("GE_TEST_SHARED", str(shared))
    config = tmp_path / "yamldir" / "extra_model_paths.yaml"
    config.write_text(
        "a111:\n"
        "  base_path: $GE_TEST_SHARED\n"
        "  checkpoints: models/Stable-diffusion\n"
        "  loras: |\n"
        "    models/Lora\n"
        "    models/Lora2\n"
        "plain:\n"
        "  checkpoints: relative_ckpts\n"
        "priority:\n"
        f"  base_path: {tmp_path / 'first'}\n"
        "  is_default: true\n"
        "  checkpoints: .\n"
        "  unet: .\n"
    )
    lib = ModelLibrary(models, [config])
    names = lib.list("checkpoints")
    assert {"from_a1111.safetensors", "rel.safetensors", "b.safetensors"} <= set(names)
    assert lib.list("loras") == ["second.safetensors", "style.safetensors"]
    # is_default: its folder is searched first, so b.safetensors comes from there
    assert lib.resolve("checkpoints", "b.safetensors").read_bytes() == b"first"
    assert lib.roots("diffusion_models")[0] == (tmp_path / "first")
    assert lib.resolve("checkpoints", "rel.safetensors").parent == (tmp_path / "yamldir" / "relative_ckpts").resolve()


def test_extra_model_paths_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed\n")
    with pytest.raises(ExtraPathsError, match="bad.yaml"):
        read_extra_paths(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("- just\n- a list\n")
    with pytest.raises(ExtraPathsError, match="wrong.yaml"):
        read_extra_paths(wrong)
    with pytest.raises(ExtraPathsError, match="missing.yaml"):
        read_extra_paths(tmp_path / "missing.yaml")
    assert read_extra_paths(_write(tmp_path / "empty.yaml", "")) == []


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_unknown_kind_raises_key_error(models: Path) -> None:
    with pytest.raises(KeyError, match="unknown model folder kind"):
        ModelLibrary(models).list("nonsense")


def test_create_folders_makes_comfyui_layout(tmp_path: Path) -> None:
    lib = ModelLibrary(tmp_path / "m")
    lib.create_folders()
    for sub in ("checkpoints", "loras", "vae", "embeddings", "clip", "text_encoders", "unet", "diffusion_models"):
        assert (tmp_path / "m" / sub).is_dir()


def test_library_and_loader_pack_import_without_torch() -> None:
    code = (
        "import sys, graphengine.models.library, graphengine.models.folders, nodes.loaders, "
        "graphengine.commands.make_checkpoint; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_embedding_names_drop_extensions(models: Path) -> None:
    touch(models / "embeddings" / "sub" / "bad-hands.safetensors")
    assert ModelLibrary(models).embedding_names() == ["easy", "sub/bad-hands"]


def test_default_checkpoint_is_made_only_when_none_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphengine.models import defaults

    made: list[tuple[Path, str]] = []

    def fake_make(target: Path, arch: str, seed: int = 0) -> Path:
        made.append((target, arch))
        touch(target)
        return target

    monkeypatch.setattr("graphengine.models.checkpoint_maker.make_checkpoint", fake_make)
    root = tmp_path / "models"
    assert defaults.ensure_default_checkpoint(root, arch="micro") == defaults.DEFAULT_CHECKPOINT
    assert made == [(root / "checkpoints" / defaults.DEFAULT_CHECKPOINT, "micro")]
    assert defaults.ensure_default_checkpoint(root, arch="micro") == defaults.DEFAULT_CHECKPOINT
    assert len(made) == 1
    other = tmp_path / "other"
    touch(other / "checkpoints" / "mine.safetensors")
    assert defaults.ensure_default_checkpoint(other) is None and len(made) == 1
