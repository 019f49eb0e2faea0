"""ComfyUI's prompt syntax: emphasis weights, escaped parentheses and ``embedding:name`` words.

Pure Python, no torch. The rules, as ComfyUI applies them:

1. ``\\(`` and ``\\)`` are literal parentheses (protected before anything else is parsed).
2. A prompt is split into top-level parenthesised groups and the text between them. A group's
   weight is 1.1 × the weight around it; nested plain groups multiply, ``((cat))`` → 1.21.
3. A group ending in ``:<number>`` (the *last* colon, not at the start of the group) sets the
   weight to that number outright, replacing the accumulated one: ``((cat:1.5))`` → 1.5.
   A suffix that is not a number leaves the colon as text: ``(a:b)`` → "a:b" at 1.1.
4. Unbalanced parentheses stay literal text (a stray ``)`` makes the rest of its level literal).
5. Inside each weighted piece, ``embedding:name`` at the start or after a space or newline names a
   textual-inversion embedding; text after the name (up to the next ``embedding:``) is ordinary text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from graphengine.errors import NodeInputError

EMPHASIS = 1.1
EMBEDDING_PREFIX = "embedding:"
MAX_NESTING = 64  # deeper emphasis (weight 1.1**64 ≈ 450) is certainly a mistake
_ESCAPED_OPEN = "\x00\x02"
_ESCAPED_CLOSE = "\x00\x01"
_EMBEDDING_SPLIT = re.compile(r"[ \n]" + re.escape(EMBEDDING_PREFIX))


class PromptError(NodeInputError):
    """A prompt that cannot be encoded (nesting too deep, a weight that is not a finite number, …)."""


@dataclass(frozen=True)
class WeightedText:
    """A run of prompt text and the emphasis weight its tokens get."""

    text: str
    weight: float


def parse_emphasis(prompt: str) -> list[WeightedText]:
    """Split a prompt into weighted runs of text, in order (escapes already turned into parentheses).

    >>> parse_emphasis("a (b:1.5) c")
    [WeightedText(text='a ', weight=1.0), WeightedText(text='b', weight=1.5), WeightedText(text=' c', weight=1.0)]
    """
    escaped = prompt.replace("\\)", _ESCAPED_CLOSE).replace("\\(", _ESCAPED_OPEN)
    runs: list[WeightedText] = []
    # Depth-first over groups with an explicit stack (no recursion limit); items pushed in reverse.
    stack: list[tuple[str, float, int, bool]] = [(escaped, 1.0, 0, True)]  # (text, weight, depth, expand)
    while stack:
        text, weight, depth, expand = stack.pop()
        if not expand:
            runs.append(WeightedText(_unescape(text), weight))
            continue
        if depth > MAX_NESTING:
            raise PromptError(f"prompt emphasis is nested more than {MAX_NESTING} parentheses deep")
        pending: list[tuple[str, float, int, bool]] = []
        for item in split_top_level_groups(text):
            if len(item) >= 2 and item[0] == "(" and item[-1] == ")":
                inner, group_weight = _group_weight(item[1:-1], weight * EMPHASIS)
                pending.append((inner, group_weight, depth + 1, True))
            else:
                pending.append((item, weight, depth, False))
        stack.extend(reversed(pending))
    return runs


def split_top_level_groups(text: str) -> list[str]:
    """ComfyUI's parenthesis scan: top-level ``(...)`` groups (with their parentheses) and the text
    between them, in order. A ``)`` without its ``(`` drives the level negative, and the rest of
    the scan stays literal until the level comes back to zero."""
    items: list[str] = []
    current: list[str] = []
    level = 0
    for char in text:
        if char == "(":
            if level == 0:
                if current:
                    items.append("".join(current))
                current = ["("]
            else:
                current.append("(")
            level += 1
        elif char == ")":
            level -= 1
            if level == 0:
                current.append(")")
                items.append("".join(current))
                current = []
            else:
                current.append(")")
        else:
            current.append(char)
    if current:
        items.append("".join(current))
    return items


def _group_weight(inner: str, default: float) -> tuple[str, float]:
    """Split ``text:1.5`` into ("text", 1.5); without a numeric suffix keep the text and ``default``."""
    colon = inner.rfind(":")
    if colon <= 0:
        return inner, default
    try:
        weight = float(inner[colon + 1 :])
    except ValueError:
        return inner, default
    if not math.isfinite(weight):
        raise PromptError(f"prompt weight {inner[colon + 1:].strip()!r} is not a finite number")
    return inner[:colon], weight


def _unescape(text: str) -> str:
    return text.replace(_ESCAPED_CLOSE, ")").replace(_ESCAPED_OPEN, "(")


def split_embedding_words(text: str) -> list[str]:
    """Split a run of text before each ``embedding:`` that starts the text or follows a space or a
    newline (the space or newline is dropped); empty pieces are removed.

    >>> split_embedding_words("a cat embedding:style, blue")
    ['a cat', 'embedding:style, blue']
    """
    pieces = _EMBEDDING_SPLIT.split(text)
    words = [pieces[0]] + [EMBEDDING_PREFIX + piece for piece in pieces[1:]]
    return [word for word in words if word != ""]


def embedding_name_candidates(word: str) -> list[tuple[str, str]]:
    """For a piece ``embedding:<name> <more text>``: the names to try, in order, each with the text
    left over for ordinary tokenization if that name is found. The first candidate is the first
    whitespace-separated word; if it has commas around it, the name without them is tried next and
    the trailing commas stay in the text (``embedding:style,`` → "style" then ",").
    Returns [] when no name follows the prefix.
    """
    words = word[len(EMBEDDING_PREFIX) :].split()
    if not words:
        return []
    name, rest = words[0], " ".join(words[1:])
    candidates = [(name, rest)]
    stripped = name.strip(",")
    if stripped and stripped != name:
        trailing = name[len(name.rstrip(",")) :]
        candidates.append((stripped, f"{trailing} {rest}"))
    return candidates
