"""CLIPTextEncode, ConditioningCombine and ConditioningSetArea on tiny random-weight CLIP models with the
real CLIP tokenizer: layout, emphasis arithmetic, clip skip, SDXL's two encoders, embeddings, bad input."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from graphengine.environment import DataPaths, Environment
from graphengine.errors import NodeInputError
from graphengine.models.tokenizers import clip_tokenizer
from graphengine.node import object_info
from nodes.conditioning import CLIPTextEncode, ConditioningCombine, ConditioningSetArea, pack
from nodes.sockets import Clip, Conditioning, ConditioningEntry

REPO = Path(__file__).resolve().parents[1]
START, END = 49406, 49407


class EncoderRuntime:
    """The smallest ModelRuntime: the CLIP's encoders are already on their device."""

    def __init__(self) -> None:
        self.activations = 0

    @contextlib.contextmanager
    def activate(self, value: Any) -> Iterator[Any]:
        self.activations += 1
        yield value.encoders


class Context:
    """A NodeContext for calling ``run`` directly."""

    def __init__(self, root: Path):
        self.node_id = "1"
        self.prompt_id = "test"
        self.env = Environment(paths=DataPaths.under(root))
        self.prompt: dict[str, Any] = {}
        self.extra_pnginfo = None

    def progress(self, value: int, total: int, preview: Any = None) -> None:
        pass

    def check_interrupted(self) -> None:
        pass


def text_model(width: int, seed: int, projection: int | None = None) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=3,
        num_attention_heads=4,
        vocab_size=49408,
        max_position_embeddings=77,
        projection_dim=projection or width,
    )
    model = CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizers() -> tuple[Any, Any]:
    return clip_tokenizer("clip_l"), clip_tokenizer("clip_g")


@pytest.fixture(scope="module")
def clip_l() -> torch.nn.Module:
    return text_model(32, seed=1)


@pytest.fixture(scope="module")
def clip_g() -> torch.nn.Module:
    return text_model(48, seed=2, projection=24)


@pytest.fixture
def sd1_clip(clip_l, tokenizers) -> Clip:
    return Clip(encoders=(clip_l,), tokenizers=(tokenizers[0],), arch="sd15", runtime=EncoderRuntime())


@pytest.fixture
def sdxl_clip(clip_l, clip_g, tokenizers) -> Clip:
    return Clip(encoders=(clip_l, clip_g), tokenizers=tokenizers, arch="sdxl", runtime=EncoderRuntime())


def encode(clip: Clip, text: str, root: Path) -> ConditioningEntry:
    out = CLIPTextEncode(text=text, clip=clip).run(Context(root))
    (entry,) = out.conditioning.entries
    return entry


def window_ids(tokenizer: Any, words: list[int], pad: int) -> torch.Tensor:
    ids = [START, *words, END]
    return torch.tensor([ids + [pad] * (77 - len(ids))])


def hidden(model: torch.nn.Module, ids: torch.Tensor) -> Any:
    with torch.no_grad():
        inner = getattr(model, "text_model", model)
        return inner(input_ids=ids, output_hidden_states=True)


def word_ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --- SD1 ---------------------------------------------------------------------------------------------


def test_plain_prompt_is_the_last_layer_of_the_padded_window(sd1_clip, clip_l, tokenizers, tmp_path) -> None:
    entry = encode(sd1_clip, "a photo of a cat", tmp_path)
    ids = window_ids(tokenizers[0], word_ids(tokenizers[0], "a photo of a cat"), pad=END)
    expected = hidden(clip_l, ids)
    assert entry.embeds.shape == (1, 77, 32) and entry.embeds.dtype == torch.float32
    torch.testing.assert_close(entry.embeds, expected.last_hidden_state)
    end_at = len(word_ids(tokenizers[0], "a photo of a cat")) + 1
    torch.testing.assert_close(entry.pooled, expected.last_hidden_state[:, end_at])
    assert entry.area is None and entry.strength == 1.0 and dict(entry.extras) == {}
    assert sd1_clip.runtime.activations == 1
    assert not entry.embeds.is_inference()  # samplers may work on it in place


def test_emphasis_moves_tokens_away_from_the_empty_prompt(sd1_clip, clip_l, tokenizers, tmp_path) -> None:
    tok = tokenizers[0]
    weighted = encode(sd1_clip, "a (cat:1.5) sitting", tmp_path).embeds
    words = word_ids(tok, "a cat sitting")
    plain = hidden(clip_l, window_ids(tok, words, pad=END)).last_hidden_state
    empty = hidden(clip_l, window_ids(tok, [], pad=END)).last_hidden_state
    cat = 1 + len(word_ids(tok, "a"))  # position of "cat" in the window
    expected = plain.clone()
    expected[0, cat] = (plain[0, cat] - empty[0, cat]) * 1.5 + empty[0, cat]
    torch.testing.assert_close(weighted, expected)
    assert not torch.allclose(weighted, plain)


def test_long_prompt_is_encoded_in_windows_side_by_side(sd1_clip, clip_l, tokenizers, tmp_path) -> None:
    tok = tokenizers[0]
    prompt = " ".join(f"word{i}" for i in range(60))  # well over 75 tokens
    tokens = word_ids(tok, prompt)
    assert len(tokens) > 75
    entry = encode(sd1_clip, prompt, tmp_path)
    windows = -(-len(tokens) // 75)
    assert entry.embeds.shape == (1, 77 * windows, 32)
    first = hidden(clip_l, window_ids(tok, tokens[:75], pad=END)).last_hidden_state
    second = hidden(clip_l, window_ids(tok, tokens[75:150], pad=END)).last_hidden_state
    torch.testing.assert_close(entry.embeds[:, :77], first)
    torch.testing.assert_close(entry.embeds[:, 77:154], second)


def test_clip_skip_selects_an_earlier_layer_with_the_final_norm(clip_l, tokenizers, tmp_path) -> None:
    tok = tokenizers[0]
    ids = window_ids(tok, word_ids(tok, "a red fox"), pad=END)
    states = hidden(clip_l, ids)
    skip2 = Clip(encoders=(clip_l,), tokenizers=(tok,), arch="sd15", runtime=EncoderRuntime(), skip_layers=-2)
    with torch.no_grad():
        expected = clip_l.final_layer_norm(states.hidden_states[-2])
    torch.testing.assert_close(encode(skip2, "a red fox", tmp_path).embeds, expected)
    # -3 on a 3-layer encoder is the first layer's output, still normed
    skip3 = Clip(encoders=(clip_l,), tokenizers=(tok,), arch="sd15", runtime=EncoderRuntime(), skip_layers=-3)
    with torch.no_grad():
        expected = clip_l.final_layer_norm(states.hidden_states[1])
    torch.testing.assert_close(encode(skip3, "a red fox", tmp_path).embeds, expected)
    # beyond the encoder's depth (3 layers here) ComfyUI falls back to the normed last layer
    deep = Clip(encoders=(clip_l,), tokenizers=(tok,), arch="sd15", runtime=EncoderRuntime(), skip_layers=-24)
    torch.testing.assert_close(encode(deep, "a red fox", tmp_path).embeds, states.last_hidden_state)


# --- SDXL --------------------------------------------------------------------------------------------


def test_sdxl_concatenates_both_penultimate_layers_and_pools_from_bigg(sdxl_clip, clip_l, clip_g, tokenizers, tmp_path) -> None:
    tok_l, tok_g = tokenizers
    entry = encode(sdxl_clip, "a castle (at night:1.2)", tmp_path)
    assert entry.embeds.shape == (1, 77, 32 + 48)
    assert entry.pooled is not None and entry.pooled.shape == (1, 24)

    plain = encode(sdxl_clip, "a castle at night", tmp_path)
    words = word_ids(tok_l, "a castle at night")
    l_states = hidden(clip_l, window_ids(tok_l, words, pad=END))
    g_ids = window_ids(tok_g, words, pad=0)  # bigG pads with token 0
    g_states = hidden(clip_g, g_ids)
    torch.testing.assert_close(plain.embeds[..., :32], l_states.hidden_states[-2])  # no final norm
    torch.testing.assert_close(plain.embeds[..., 32:], g_states.hidden_states[-2])
    with torch.no_grad():
        pooled = clip_g.text_projection(g_states.last_hidden_state[:, len(words) + 1])
    torch.testing.assert_close(plain.pooled, pooled)
    torch.testing.assert_close(entry.pooled, pooled)  # emphasis does not touch the pooled output


def test_sdxl_long_prompt_keeps_both_encoders_aligned(sdxl_clip, tmp_path) -> None:
    entry = encode(sdxl_clip, "mountain " * 90, tmp_path)
    assert entry.embeds.shape == (1, 154, 80)


def test_clip_with_the_wrong_number_of_encoders_is_refused(clip_l, tokenizers, tmp_path) -> None:
    broken = Clip(encoders=(clip_l,), tokenizers=(tokenizers[0],), arch="sdxl", runtime=EncoderRuntime())
    with pytest.raises(NodeInputError, match="CLIP Text Encode.*text encoder"):
        encode(broken, "x", tmp_path)


# --- embeddings --------------------------------------------------------------------------------------


def clip_with_embeddings(clip: Clip, folder: Path) -> Clip:
    return Clip(
        encoders=clip.encoders,
        tokenizers=clip.tokenizers,
        arch=clip.arch,
        runtime=EncoderRuntime(),
        embedding_dirs=(str(folder),),
    )


def test_an_embedding_holding_a_words_vectors_encodes_like_that_word(sd1_clip, clip_l, tokenizers, tmp_path) -> None:
    folder = tmp_path / "embeddings"
    (folder / "styles").mkdir(parents=True)
    words = word_ids(tokenizers[0], "tabby cat")
    vectors = clip_l.embeddings.token_embedding.weight[words].detach().clone()
    save_file({"emb_params": vectors}, str(folder / "styles" / "tabby.safetensors"))
    clip = clip_with_embeddings(sd1_clip, folder)
    via_embedding = encode(clip, "a embedding:styles/tabby, (embedding:styles/tabby.safetensors:1.3) x", tmp_path)
    via_words = encode(clip, "a tabby cat, (tabby cat:1.3) x", tmp_path)
    torch.testing.assert_close(via_embedding.embeds, via_words.embeds)


def test_sdxl_embedding_uses_the_tensor_for_each_encoder(sdxl_clip, clip_l, clip_g, tokenizers, tmp_path) -> None:
    folder = tmp_path / "embeddings"
    folder.mkdir()
    words = word_ids(tokenizers[0], "dragon")
    save_file(
        {
            "clip_l": clip_l.embeddings.token_embedding.weight[words].detach().clone(),
            "clip_g": clip_g.text_model.embeddings.token_embedding.weight[words].detach().clone(),
        },
        str(folder / "wyrm.safetensors"),
    )
    clip = clip_with_embeddings(sdxl_clip, folder)
    torch.testing.assert_close(encode(clip, "embedding:wyrm", tmp_path).embeds, encode(clip, "dragon", tmp_path).embeds)


def test_a1111_pickle_embedding_loads_only_with_the_opt_in(sd1_clip, clip_l, tokenizers, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "embeddings"
    folder.mkdir()
    words = word_ids(tokenizers[0], "tabby cat")
    vectors = clip_l.embeddings.token_embedding.weight[words].detach().clone()
    torch.save({"string_to_param": {"*": vectors}, "name": "tabby"}, folder / "tabby.pt")
    clip = clip_with_embeddings(sd1_clip, folder)
    monkeypatch.delenv("GRAPHENGINE_ALLOW_PICKLE", raising=False)
    with pytest.raises(NodeInputError, match="tabby.pt is a pickle file"):
        encode(clip, "embedding:tabby", tmp_path)
    monkeypatch.setenv("GRAPHENGINE_ALLOW_PICKLE", "1")
    torch.testing.assert_close(encode(clip, "embedding:tabby", tmp_path).embeds, encode(clip, "tabby cat", tmp_path).embeds)


def test_missing_embedding_is_ignored_like_comfyui(sd1_clip, tmp_path) -> None:
    folder = tmp_path / "embeddings"
    folder.mkdir()
    clip = clip_with_embeddings(sd1_clip, folder)
    torch.testing.assert_close(
        encode(clip, "a embedding:nothere cat", tmp_path).embeds, encode(clip, "a cat", tmp_path).embeds
    )


@pytest.mark.parametrize(
    ("file_name", "content", "message"),
    [
        ("broken.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{not json", "broken.safetensors"),
        ("short.safetensors", b"\x01", "short.safetensors"),
        ("legacy.pt", b"not really a pickle", "pickle"),
    ],
)
def test_unusable_embedding_file_is_a_clear_error(
    sd1_clip, tmp_path, monkeypatch, file_name: str, content: bytes, message: str
) -> None:
    monkeypatch.delenv("GRAPHENGINE_ALLOW_PICKLE", raising=False)
    folder = tmp_path / "embeddings"
    folder.mkdir()
    (folder / file_name).write_bytes(content)
    clip = clip_with_embeddings(sd1_clip, folder)
    name = file_name.rsplit(".", 1)[0]
    with pytest.raises(NodeInputError, match=message):
        encode(clip, f"embedding:{name} cat", tmp_path)


def test_embedding_of_another_width_is_refused(sd1_clip, tmp_path) -> None:
    folder = tmp_path / "embeddings"
    folder.mkdir()
    save_file({"emb_params": torch.zeros(2, 768)}, str(folder / "sd15ti.safetensors"))
    clip = clip_with_embeddings(sd1_clip, folder)
    with pytest.raises(NodeInputError, match="width 32"):
        encode(clip, "embedding:sd15ti", tmp_path)


def test_embedding_name_cannot_leave_its_folder(sd1_clip, tmp_path) -> None:
    folder = tmp_path / "embeddings"
    folder.mkdir()
    save_file({"emb_params": torch.zeros(1, 32)}, str(tmp_path / "outside.safetensors"))
    clip = clip_with_embeddings(sd1_clip, folder)
    with pytest.raises(NodeInputError, match="not allowed"):
        encode(clip, "embedding:../outside", tmp_path)


def test_prompt_errors_name_the_node(sd1_clip, tmp_path) -> None:
    with pytest.raises(NodeInputError, match=r"CLIP Text Encode \(Prompt\): .*finite"):
        encode(sd1_clip, "(cat:nan)", tmp_path)


# --- combine and area ---------------------------------------------------------------------------------


def entry(value: float) -> ConditioningEntry:
    return ConditioningEntry(embeds=torch.full((1, 77, 4), value), pooled=torch.full((1, 4), value))


def test_combine_concatenates_entries_in_order(tmp_path) -> None:
    first, second, third = entry(1), entry(2), entry(3)
    out = ConditioningCombine(
        conditioning_1=Conditioning(entries=(first,)), conditioning_2=Conditioning(entries=(second, third))
    ).run(Context(tmp_path))
    assert out.conditioning.entries == (first, second, third)


def test_set_area_stores_latent_units_and_strength_on_every_entry(tmp_path) -> None:
    original = Conditioning(entries=(entry(1), entry(2)))
    node = ConditioningSetArea(conditioning=original, width=256, height=128, x=64, y=32, strength=0.7)
    out = node.run(Context(tmp_path)).conditioning
    assert [e.area for e in out.entries] == [(16, 32, 4, 8)] * 2  # (height, width, y, x) / 8
    assert [e.strength for e in out.entries] == [0.7, 0.7]
    assert out.entries[1].embeds is original.entries[1].embeds
    assert [e.area for e in original.entries] == [None, None]  # input untouched


def test_object_info_matches_comfyui_inputs(tmp_path) -> None:
    env = Environment(paths=DataPaths.under(tmp_path))
    text = object_info(CLIPTextEncode, env)
    assert text["input_order"] == {"required": ["text", "clip"]}
    assert text["input"]["required"]["text"][0] == "STRING"
    assert text["input"]["required"]["text"][1]["multiline"] is True
    assert text["input"]["required"]["text"][1]["dynamicPrompts"] is True
    assert text["input"]["required"]["clip"][0] == "CLIP"
    assert text["output"] == ["CONDITIONING"] and text["category"] == "conditioning"
    assert text["display_name"] == "CLIP Text Encode (Prompt)"
    area = object_info(ConditioningSetArea, env)["input"]["required"]
    assert area["width"] == ["INT", {"default": 64, "min": 64, "max": 16384, "step": 8, "tooltip": "Area width in pixels."}]
    assert area["x"][1]["min"] == 0 and area["strength"][1]["max"] == 10.0
    assert object_info(ConditioningCombine, env)["input_order"]["required"] == ["conditioning_1", "conditioning_2"]
    assert [n.class_type for n in pack().nodes] == ["CLIPTextEncode", "ConditioningCombine", "ConditioningSetArea"]


def test_pack_modules_import_without_torch() -> None:
    code = "import sys, nodes.conditioning, nodes.vae; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# --- checkpoints written by our own checkpoint maker, loaded by the model manager ---------------------


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from graphengine.models.checkpoint_maker import make_checkpoint
    from graphengine.models.library import ModelLibrary

    models = tmp_path_factory.mktemp("models")
    (models / "checkpoints").mkdir()
    for arch in ("micro", "micro_sdxl"):
        make_checkpoint(models / "checkpoints" / f"{arch}.safetensors", arch)
    (models / "embeddings").mkdir()
    return ModelLibrary(models)


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "width", "pooled"), [("micro", 64, 64), ("micro_sdxl", 64 + 96, 96)])
def test_real_checkpoint_clip_encodes_through_the_model_runtime(library, tmp_path, arch, width, pooled) -> None:
    _model, clip, _vae = library.manager.load_checkpoint(library.resolve("checkpoints", f"{arch}.safetensors"))
    dusk = word_ids(clip.tokenizers[0], "dusk")
    rows = [getattr(e, "text_model", e).embeddings.token_embedding.weight[dusk].detach().clone() for e in clip.encoders]
    tensors = {"emb_params": rows[0]} if len(rows) == 1 else {"clip_l": rows[0], "clip_g": rows[1]}
    save_file(tensors, str(Path(library.embedding_dirs()[0]) / f"dusk_{arch}.safetensors"))
    ctx = Context(tmp_path)
    ctx.env = Environment(paths=DataPaths.under(tmp_path), models=library)  # embeddings folder from the library

    def encode_text(text: str) -> ConditioningEntry:
        return CLIPTextEncode(text=text, clip=clip).run(ctx).conditioning.entries[0]

    plain = encode_text("a lighthouse at dusk")
    weighted = encode_text("a (lighthouse:1.4) at dusk")
    assert plain.embeds.shape == (1, 77, width) and plain.pooled.shape == (1, pooled)
    assert torch.isfinite(plain.embeds).all()
    assert not torch.allclose(plain.embeds, weighted.embeds)
    torch.testing.assert_close(plain.pooled, weighted.pooled)
    torch.testing.assert_close(encode_text(f"a lighthouse at embedding:dusk_{arch}").embeds, plain.embeds)
