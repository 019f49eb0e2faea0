"""CLIP tokenizers built offline from the BPE merge list shipped in ``graphengine/models/data``.

Stable Diffusion's text encoders all use OpenAI CLIP's byte-level BPE vocabulary (49,408 tokens).
The vocabulary is not stored: it is rebuilt from the merge list exactly as CLIP defines it:

1. the 256 byte-to-unicode characters,
2. the same characters with the end-of-word marker ``</w>``,
3. the first 48,894 merges (49,152 - 256 - 2), each joined into one token,
4. ``<|startoftext|>`` (id 49406) and ``<|endoftext|>`` (id 49407).

``clip_l`` pads with ``<|endoftext|>`` (SD1.x, SDXL's first encoder); ``clip_g`` pads with token 0
(``!``), as SDXL's OpenCLIP bigG tokenizer does.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
BPE_FILE = DATA_DIR / "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
MAX_LENGTH = 77
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
_MERGE_COUNT = 49152 - 256 - 2

TOKENIZER_KINDS = ("clip_l", "clip_g")


def byte_to_unicode() -> dict[int, str]:
    """The reversible byte → printable-unicode map of byte-level BPE, in CLIP's vocabulary order
    (printable bytes map to themselves and come first; the rest map to U+0100 onwards)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    order = printable + [b for b in range(256) if b not in printable]
    chars = [chr(b) for b in printable] + [chr(256 + n) for n in range(256 - len(printable))]
    return dict(zip(order, chars))


@functools.cache
def _vocab_and_merges() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """CLIP's token list (index = id) and merge pairs. Cached: immutable data derived from a shipped file."""
    if not BPE_FILE.is_file():
        raise FileNotFoundError(f"CLIP tokenizer data is missing from the package: {BPE_FILE}")
    with gzip.open(BPE_FILE, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1 : 1 + _MERGE_COUNT])
    chars = list(byte_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(pair) for pair in merges] + [START_TOKEN, END_TOKEN]
    if len(tokens) != VOCAB_SIZE:
        raise ValueError(f"CLIP vocabulary built from {BPE_FILE.name} has {len(tokens)} tokens, expected {VOCAB_SIZE}")
    return tuple(tokens), merges  # type: ignore[return-value]


def clip_tokenizer(kind: str = "clip_l") -> Any:
    """A ``transformers.CLIPTokenizer`` for SD's text encoders, built without network access.

    ``kind``: "clip_l" (pad = ``<|endoftext|>``) or "clip_g" (pad = ``!``, id 0). ``model_max_length`` is 77.
    """
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"unknown CLIP tokenizer kind {kind!r}; expected one of {', '.join(TOKENIZER_KINDS)}")
    from transformers import CLIPTokenizer

    tokens, merges = _vocab_and_merges()
    vocab = {token: index for index, token in enumerate(tokens)}
    pad = END_TOKEN if kind == "clip_l" else "!"
    return CLIPTokenizer(
        vocab=vocab,
        merges=list(merges),
        unk_token=END_TOKEN,
        bos_token=START_TOKEN,
        eos_token=END_TOKEN,
        pad_token=pad,
        model_max_length=MAX_LENGTH,
    )
