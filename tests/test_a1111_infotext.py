"""A1111 infotext: what we write parses back, and A1111's own text parses."""

from __future__ import annotations

from graphengine.a1111.infotext import format_infotext, parse_infotext


def test_round_trip_with_quoted_values() -> None:
    text = format_infotext(
        "a cat, on a mat\nsecond line",
        "blurry",
        {"Steps": 20, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "Lora": "a:1, b:0.5", "Model hash": None},
    )
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "a cat, on a mat\nsecond line"
    assert parsed["Negative prompt"] == "blurry"
    assert parsed["Steps"] == "20" and parsed["Sampler"] == "DPM++ 2M" and parsed["Lora"] == "a:1, b:0.5"
    assert "Model hash" not in parsed


def test_a1111_text_without_negative_prompt() -> None:
    parsed = parse_infotext("1girl, smile\nSteps: 10, Sampler: Euler a, CFG scale: 2, Seed: 2384331768, Size: 540x960")
    assert parsed["Prompt"] == "1girl, smile" and parsed["Negative prompt"] == ""
    assert parsed["Seed"] == "2384331768" and parsed["Size"] == "540x960"
