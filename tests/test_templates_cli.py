"""`graphengine templates list|show|check|render` in-process, as a script would call it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphengine.cli import main

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "sillytavern"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_and_show(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "templates", "list", "--json", "--data-dir", str(tmp_path))
    assert code == 0
    names = {row["name"]: row for row in json.loads(out)}
    assert names["text-to-image"]["bundled"] is True
    code, out, _ = run(capsys, "templates", "show", "text-to-image", "--json", "--data-dir", str(tmp_path))
    assert code == 0 and json.loads(out)["defaults"]["width"] == 64


def test_render_with_set_values_prints_the_prompt(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "prompt.json"
    code, _, err = run(
        capsys, "templates", "render", "text-to-image", "--set", 'prompt=a "cat" $\' here', "--set", "seed=5",
        "--set", "steps=3", "--wrap", "-o", str(out_file), "--data-dir", str(tmp_path),
    )
    assert code == 0, err
    prompt = json.loads(out_file.read_text())["prompt"]
    assert prompt["6"]["inputs"]["text"] == 'a "cat" $\' here'
    assert prompt["3"]["inputs"]["seed"] == 5 and prompt["3"]["inputs"]["steps"] == 3
    assert prompt["4"]["inputs"]["ckpt_name"] == "graphengine-default.safetensors"


def test_render_errors_name_the_placeholder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "templates", "render", "text-to-image", "--set", "steps=many", "--data-dir", str(tmp_path))
    assert code == 2 and out == ""
    assert "%steps%" in err and "node 3" in err
    code, _, err = run(capsys, "templates", "render", "no-such-template", "--data-dir", str(tmp_path))
    assert code == 2 and "no template named" in err
    code, _, err = run(capsys, "templates", "render", "text-to-image", "--set", "novalue", "--data-dir", str(tmp_path))
    assert code == 2 and "NAME=VALUE" in err


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared fixtures absent")
def test_check_a_file_flags_and_exit_code(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "templates", "check", str(FIXTURES / "Default_Comfy_Workflow.json"), "--no-registry",
                       "--data-dir", str(tmp_path))
    assert code == 0 and "✅ %prompt%" in out and "❌ %char_avatar%" in out
    workflow = json.loads((FIXTURES / "Default_Comfy_Workflow.json").read_text())
    workflow["6"]["inputs"]["text"] = "photo of %prompt%"
    embedded = tmp_path / "embedded.json"
    embedded.write_text(json.dumps(workflow))
    code, out, _ = run(capsys, "templates", "check", str(embedded), "--json", "--no-registry", "--data-dir", str(tmp_path))
    assert code == 1 and json.loads(out)["flagged"][0]["placement"] == "embedded"
