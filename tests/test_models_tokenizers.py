"""Offline CLIP tokenizers built from the shipped BPE merge list."""

from __future__ import annotations

import pytest

from graphengine.models.tokenizers import VOCAB_SIZE, byte_to_unicode, clip_tokenizer


def test_clip_l_matches_openai_clip_ids() -> None:
    tok = clip_tokenizer("clip_l")
    assert len(tok) == VOCAB_SIZE == 49408
    assert tok.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"]) == [49406, 49407]
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    # lower-casing, punctuation and whitespace folding as CLIP does
    assert tok("A  Photo of a CAT").input_ids == tok("a photo of a cat").input_ids
    assert tok.model_max_length == 77


def test_padding_differs_between_clip_l_and_clip_g() -> None:
    l_ids = clip_tokenizer("clip_l")("a cat", padding="max_length", max_length=8).input_ids
    g_ids = clip_tokenizer("clip_g")("a cat", padding="max_length", max_length=8).input_ids
    assert l_ids[:4] == g_ids[:4] == [49406, 320, 2368, 49407]
    assert l_ids[4:] == [49407] * 4  # SD1 / SDXL CLIP-L pad with the end token
    assert g_ids[4:] == [0] * 4  # SDXL's OpenCLIP bigG pads with "!" (id 0)


def test_any_bytes_tokenize_without_unknown_tokens() -> None:
    tok = clip_tokenizer("clip_l")
    ids = tok("émoji 🙂 日本語 \x7f").input_ids
    assert ids[0] == 49406 and ids[-1] == 49407 and len(ids) > 4
    assert len(byte_to_unicode()) == 256 and len(set(byte_to_unicode().values())) == 256


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="clip_l, clip_g"):
        clip_tokenizer("t5")
