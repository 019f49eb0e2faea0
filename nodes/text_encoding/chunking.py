"""Prompt → weighted tokens → CLIP windows of 77 (start token, 75 tokens, end token, padding).

Pure Python: the tokenizer and the embedding lookup are passed in, so the layout rules are tested
without torch. A token is either an ``int`` id or one textual-inversion vector (opaque here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nodes.text_encoding.parser import (
    EMBEDDING_PREFIX,
    PromptError,
    embedding_name_candidates,
    parse_emphasis,
    split_embedding_words,
)

logger = logging.getLogger(__name__)

WINDOW = 77  # CLIP's context: start token + 75 prompt tokens + end token
KEEP_TOGETHER = 8  # a group shorter than this moves whole to the next window instead of splitting
MAX_WINDOWS = 128  # ~9,600 tokens; longer prompts are refused rather than encoded for minutes

WeightedToken = tuple[Any, float]  # (token id or embedding vector, weight)
Tokenize = Callable[[str], Sequence[int]]  # text → ids without start/end tokens
FindEmbedding = Callable[[str], Sequence[Any] | None]  # name → vectors, None if there is no such file


@dataclass(frozen=True)
class SpecialTokens:
    start: int
    end: int
    pad: int


def weighted_token_groups(prompt: str, tokenize: Tokenize, find_embedding: FindEmbedding) -> list[list[WeightedToken]]:
    """Tokenize a prompt into groups of weighted tokens: one group per run of text between
    ``embedding:`` words and one per embedding (its vectors). A missing embedding is skipped with a
    warning (ComfyUI's behaviour); ``find_embedding`` raises for a file that exists but is unusable."""
    groups: list[list[WeightedToken]] = []
    for run in parse_emphasis(prompt):
        for word in split_embedding_words(run.text):
            if word.startswith(EMBEDDING_PREFIX):
                candidates = embedding_name_candidates(word)
                if candidates:
                    word = _embedding_group(candidates, run.weight, find_embedding, groups)
                    if not word:
                        continue
            groups.append([(token, run.weight) for token in tokenize(word)])
    return groups


def _embedding_group(
    candidates: list[tuple[str, str]],
    weight: float,
    find_embedding: FindEmbedding,
    groups: list[list[WeightedToken]],
) -> str:
    """Append the first embedding found among ``candidates`` to ``groups``; return the leftover text."""
    for name, rest in candidates:
        vectors = find_embedding(name)
        if vectors is not None:
            groups.append([(vector, weight) for vector in vectors])
            return rest.strip()
    logger.warning("embedding %r was not found in the embeddings folders; it is ignored", candidates[0][0])
    return candidates[-1][1].strip()


def windows(groups: Sequence[Sequence[WeightedToken]], special: SpecialTokens) -> list[list[WeightedToken]]:
    """Lay groups out in windows of 77: each window is start, up to 75 tokens, end, then padding.

    A group that does not fit in the current window moves whole to the next one when it is shorter
    than 8 tokens (the current window is closed and padded); a longer group is split at the boundary.
    """
    room = WINDOW - 1  # the end token always takes the last place
    start = (special.start, 1.0)
    end = (special.end, 1.0)
    pad = (special.pad, 1.0)
    result: list[list[WeightedToken]] = [[start]]
    current = result[0]
    for group in groups:
        keep_together = len(group) < KEEP_TOGETHER
        remaining = list(group)
        while remaining:
            if len(current) + len(remaining) <= room:
                current.extend(remaining)
                break
            free = room - len(current)
            if keep_together:
                current.append(end)
                current.extend([pad] * free)
            else:
                current.extend(remaining[:free])
                current.append(end)
                remaining = remaining[free:]
            if len(result) >= MAX_WINDOWS:
                raise PromptError(
                    f"prompt is too long: more than {MAX_WINDOWS} windows of 75 tokens ({MAX_WINDOWS * 75} tokens)"
                )
            current = [start]
            result.append(current)
    current.append(end)
    current.extend([pad] * (WINDOW - len(current)))
    return result


def empty_window(special: SpecialTokens) -> list[int]:
    """The empty prompt's window (start, end, padding): the reference emphasis weights scale from."""
    return [special.start, special.end] + [special.pad] * (WINDOW - 2)
