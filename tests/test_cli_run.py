"""`graphengine run` as a user runs it (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def graphengine(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graphengine.cli", "run", *args, "--data-dir", str(tmp_path / "data"),
         "--models-dir", str(tmp_path / "models")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def write(tmp_path: Path, prompt) -> Path:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(prompt) if not isinstance(prompt, str) else prompt)
    return path


PROMPT = {
    "1": {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
    "2": {"class_type": "CaseConverter", "inputs": {"string": ["1", 0], "mode": "UPPERCASE"}},
    "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
}


def test_run_prints_a_summary(tmp_path):
    result = graphengine(str(write(tmp_path, PROMPT)), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "status: success" in result.stdout
    assert "executed: 3 node(s)" in result.stdout
    assert "3 (PreviewAny) text: HELLO" in result.stdout


def test_run_json_summary(tmp_path):
    result = graphengine(str(write(tmp_path, PROMPT)), "--json", "--cache", "none", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "success"
    assert summary["outputs"] == {"3": {"text": ["HELLO"]}}
    assert summary["executed"] == ["1", "2", "3"] and summary["cached"] == []
    assert set(summary["timings"]) == {"1", "2", "3"}


@pytest.mark.slow
def test_run_default_job(tmp_path):
    """The README's main job: makes the embedded default model on first run, renders the bundled
    text-to-image template and saves an image; the second run reuses the model file."""
    result = graphengine("--default", "--json", "--set", "steps=2", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "success"
    [image] = [img for ui in summary["outputs"].values() for img in ui.get("images", [])]
    saved = tmp_path / "data" / "output" / image["subfolder"] / image["filename"]
    assert saved.is_file() and saved.read_bytes().startswith(b"\x89PNG")
    checkpoints = list((tmp_path / "models" / "checkpoints").iterdir())
    assert [c.name for c in checkpoints] == ["graphengine-default.safetensors"]
    made = checkpoints[0].stat().st_mtime_ns
    again = graphengine("--default", "--json", "--set", "steps=1", "--set", "seed=3", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert checkpoints[0].stat().st_mtime_ns == made


def test_invalid_workflow_exits_1_with_comfyui_body(tmp_path):
    bad = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": "lots"}},
           "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    result = graphengine(str(write(tmp_path, bad)), "--json", tmp_path=tmp_path)
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"]["1"]["errors"][0]["type"] == "invalid_input_type"
    text = graphengine(str(write(tmp_path, bad)), tmp_path=tmp_path)
    assert text.returncode == 1 and "node 1 (PrimitiveInt): Failed to convert an input value to a INT value" in text.stderr


def test_malformed_json_and_missing_files_are_clear(tmp_path):
    result = graphengine(str(write(tmp_path, '{"1": ')), tmp_path=tmp_path)
    assert result.returncode == 1 and "Invalid JSON" in result.stderr
    result = graphengine(str(tmp_path / "absent.json"), tmp_path=tmp_path)
    assert result.returncode == 2 and "no such workflow file" in result.stderr
    result = graphengine(str(write(tmp_path, "[1, 2]")), tmp_path=tmp_path)
    assert result.returncode == 1 and "must be a JSON object" in result.stderr
    result = graphengine("--cache", "lru", str(write(tmp_path, PROMPT)), tmp_path=tmp_path)
    assert result.returncode == 2 and "lru cache needs a size" in result.stderr


def test_failed_run_exits_1(tmp_path):
    bad = {"1": {"class_type": "RegexReplace", "inputs": {"string": "a", "regex_pattern": "(a)", "replace": "\\2"}},
           "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    result = graphengine(str(write(tmp_path, bad)), tmp_path=tmp_path)
    assert result.returncode == 1
    assert "error in node 1 (RegexReplace)" in result.stdout


def test_unknown_template_name_is_a_clear_error(tmp_path):
    result = graphengine("no-such-template", "--set", "prompt=a cat", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "no-such-template" in result.stderr
    assert "Traceback" not in result.stderr
