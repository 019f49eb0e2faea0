"""Prompt syntax (emphasis, escapes, embedding words) and the 77-token window layout. Pure Python."""

from __future__ import annotations

import logging

import pytest

from nodes.text_encoding.chunking import (
    MAX_WINDOWS,
    SpecialTokens,
    empty_window,
    weighted_token_groups,
    windows,
)
from nodes.text_encoding.parser import (
    MAX_NESTING,
    PromptError,
    embedding_name_candidates,
    parse_emphasis,
    split_embedding_words,
    split_top_level_groups,
)

EMPHASIS_CASES = [
    ("a cat", [("a cat", 1.0)]),
    ("", []),
    ("(cat)", [("cat", 1.1)]),
    ("((cat))", [("cat", 1.1 * 1.1)]),
    ("(((cat)))", [("cat", 1.1 * 1.1 * 1.1)]),
    ("(cat:1.5)", [("cat", 1.5)]),
    # an explicit weight replaces the accumulated one (ComfyUI; A1111 would multiply)
    ("((cat:1.5))", [("cat", 1.5)]),
    ("(a (b:0.5) c)", [("a ", 1.1), ("b", 0.5), (" c", 1.1)]),
    ("((a) b:1.3)", [("a", 1.3 * 1.1), (" b", 1.3)]),
    ("(a: 1.2 )", [("a", 1.2)]),
    ("(a:b:0.8)", [("a:b", 0.8)]),  # the last colon splits
    ("(a:b)", [("a:b", 1.1)]),  # not a number: the colon is text
    ("(:1.5)", [(":1.5", 1.1)]),  # a colon at the start is text
    ("(a:1.2 b)", [("a:1.2 b", 1.1)]),
    ("(x:0)", [("x", 0.0)]),
    ("(x:-1)", [("x", -1.0)]),
    ("()", []),
    ("\\(cat\\)", [("(cat)", 1.0)]),
    ("(smile:1.2), \\(tag\\)", [("smile", 1.2), (", (tag)", 1.0)]),
    ("(a \\(b\\):1.4)", [("a (b)", 1.4)]),
    ("(cat", [("(cat", 1.0)]),  # unbalanced: literal
    ("cat)", [("cat)", 1.0)]),
    ("a) (b)", [("a) (b)", 1.0)]),  # a stray ')' keeps the rest of its level literal
    ("a\n(b)", [("a\n", 1.0), ("b", 1.1)]),
    ("(日本語:1.3) café ☕", [("日本語", 1.3), (" café ☕", 1.0)]),
    ("(embedding:foo:1.2) x", [("embedding:foo", 1.2), (" x", 1.0)]),
]


@pytest.mark.parametrize(("prompt", "expected"), EMPHASIS_CASES)
def test_parse_emphasis(prompt: str, expected: list[tuple[str, float]]) -> None:
    runs = [(run.text, run.weight) for run in parse_emphasis(prompt)]
    assert [text for text, _ in runs] == [text for text, _ in expected]
    assert [weight for _, weight in runs] == pytest.approx([weight for _, weight in expected])


def test_split_top_level_groups_keeps_text_between_groups() -> None:
    assert split_top_level_groups("a (b (c)) d (e)") == ["a ", "(b (c))", " d ", "(e)"]


def test_deep_nesting_is_allowed_up_to_the_limit_and_refused_beyond() -> None:
    runs = parse_emphasis("(" * MAX_NESTING + "x" + ")" * MAX_NESTING)
    assert runs[0].text == "x" and runs[0].weight == pytest.approx(1.1**MAX_NESTING)
    too_deep = "(" * (MAX_NESTING + 1) + "x" + ")" * (MAX_NESTING + 1)
    with pytest.raises(PromptError, match="nested"):
        parse_emphasis(too_deep)


@pytest.mark.parametrize("weight", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_weight_is_refused(weight: str) -> None:
    with pytest.raises(PromptError, match="finite"):
        parse_emphasis(f"(cat:{weight})")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("embedding:foo", ["embedding:foo"]),
        ("a embedding:foo b", ["a", "embedding:foo b"]),
        ("a,embedding:foo", ["a,embedding:foo"]),  # only at the start or after a space/newline
        ("x\nembedding:bar", ["x", "embedding:bar"]),
        ("embedding:a embedding:b", ["embedding:a", "embedding:b"]),
        ("no embeddings here", ["no embeddings here"]),
    ],
)
def test_split_embedding_words(text: str, expected: list[str]) -> None:
    assert split_embedding_words(text) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("embedding:foo bar baz", [("foo", "bar baz")]),
        ("embedding:foo, bar", [("foo,", "bar"), ("foo", ", bar")]),
        ("embedding:sub/ti.safetensors", [("sub/ti.safetensors", "")]),
        ("embedding:", []),
        ("embedding:   ", []),
    ],
)
def test_embedding_name_candidates(word: str, expected: list[tuple[str, str]]) -> None:
    assert embedding_name_candidates(word) == expected


# --- windows ----------------------------------------------------------------------------------------

S, E, P = 1000, 1001, 0
SPECIAL = SpecialTokens(start=S, end=E, pad=P)


def char_tokens(text: str) -> list[int]:
    """A stand-in tokenizer: one token per non-space character (its code point)."""
    return [ord(c) for c in text if not c.isspace()]


def no_embeddings(name: str) -> None:
    return None


def layout(prompt: str, find=no_embeddings) -> list[list[tuple[object, float]]]:
    return windows(weighted_token_groups(prompt, char_tokens, find), SPECIAL)


def ids(window: list[tuple[object, float]]) -> list[object]:
    return [token for token, _ in window]


def test_empty_prompt_is_start_end_and_padding() -> None:
    (window,) = layout("")
    assert ids(window) == [S, E] + [P] * 75
    assert ids(window) == empty_window(SPECIAL)


def test_short_prompt_fills_one_window_with_its_weights() -> None:
    (window,) = layout("ab (c:1.5)")
    assert ids(window) == [S, ord("a"), ord("b"), ord("c"), E] + [P] * 72
    assert [w for _, w in window[:5]] == [1.0, 1.0, 1.0, 1.5, 1.0]


def test_exactly_75_tokens_fit_one_window_without_padding() -> None:
    (window,) = layout("x" * 75)
    assert ids(window) == [S] + [ord("x")] * 75 + [E]


def test_76_tokens_spill_into_a_second_window() -> None:
    first, second = layout("x" * 76)
    assert ids(first) == [S] + [ord("x")] * 75 + [E]
    assert ids(second) == [S, ord("x"), E] + [P] * 74


def test_a_short_group_moves_whole_to_the_next_window() -> None:
    first, second = layout("a" * 70 + "(bbbbbbb)")  # 7 tokens do not fit after 70
    assert ids(first) == [S] + [ord("a")] * 70 + [E] + [P] * 5
    assert ids(second) == [S] + [ord("b")] * 7 + [E] + [P] * 68
    assert [w for _, w in second[1:8]] == pytest.approx([1.1] * 7)


def test_a_long_group_is_split_at_the_window_boundary() -> None:
    first, second = layout("a" * 70 + "(bbbbbbbb)")  # 8 tokens: split 5 + 3
    assert ids(first) == [S] + [ord("a")] * 70 + [ord("b")] * 5 + [E]
    assert ids(second) == [S] + [ord("b")] * 3 + [E] + [P] * 72


def test_every_window_has_77_tokens() -> None:
    result = layout(" ".join(["word"] * 60) + " (emphasis:1.2) " + "z" * 100)
    assert len(result) == 5
    assert all(len(window) == 77 and window[0][0] == S and E in ids(window) for window in result)


def test_too_long_prompt_is_refused() -> None:
    with pytest.raises(PromptError, match="too long"):
        layout("x" * (75 * MAX_WINDOWS + 1))


def test_embedding_vectors_are_inserted_as_tokens_with_the_run_weight() -> None:
    found = {"style": ["v1", "v2"]}
    (window,) = layout("a (embedding:style b:1.2) c", found.get)
    assert window[:6] == [(S, 1.0), (ord("a"), 1.0), ("v1", 1.2), ("v2", 1.2), (ord("b"), 1.2), (ord("c"), 1.0)]


def test_embedding_name_with_trailing_comma_falls_back_to_the_bare_name() -> None:
    found = {"style": ["v"]}
    (window,) = layout("embedding:style, cat", found.get)
    assert ids(window)[:5] == [S, "v", ord(","), ord("c"), ord("a")]


def test_missing_embedding_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        (window,) = layout("a embedding:nothere b")
    assert ids(window)[:4] == [S, ord("a"), ord("b"), E]
    assert "nothere" in caplog.text


def test_embedding_prefix_without_a_name_is_plain_text() -> None:
    (window,) = layout("a embedding:")
    assert ids(window)[1:4] == [ord("a"), ord("e"), ord("m")]
