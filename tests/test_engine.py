"""The headless Python API."""

from __future__ import annotations

import pytest

import graphengine
from graphengine.engine import Engine, build_environment
from graphengine.errors import WorkflowInvalid
from graphengine.packs import BUILTIN_PACK_MODULES, builtin_packs, load_pack
from tests.fakes import chain


def test_default_engine_has_the_builtin_packs(tmp_path):
    engine = Engine(data_dir=tmp_path / "data", models_dir=tmp_path / "models")
    assert "PreviewAny" in engine.registry and "StringConcatenate" in engine.registry
    assert (tmp_path / "data" / "output").is_dir()
    info = engine.object_info()
    assert info["PreviewAny"]["output_node"] is True
    assert "nodes.utility" in BUILTIN_PACK_MODULES
    engine.close()


def test_public_api_runs_a_utility_workflow(tmp_path):
    engine = graphengine.Engine(packs=["nodes.utility"], data_dir=tmp_path)
    run = engine.run(
        {
            "1": {"class_type": "PrimitiveString", "inputs": {"value": "a"}},
            "2": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": "b", "delimiter": "-"}},
            "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
        }
    )
    assert run.ok and run.outputs == {"3": {"text": ["a-b"]}}
    assert run.executed == ["1", "2", "3"] and run.cached == []
    assert set(run.timings) == {"1", "2", "3"} and all(t >= 0 for t in run.timings.values())
    engine.close()


def test_invalid_workflow_raises_with_the_400_body(engine):
    with pytest.raises(graphengine.WorkflowInvalid) as info:
        engine.run({"1": {"class_type": "Nope"}})
    assert info.value.body["error"]["type"] == "invalid_prompt"
    assert isinstance(info.value, WorkflowInvalid)


def test_execute_never_raises_and_validate_returns_outputs(engine):
    validated = engine.validate(chain(3))
    assert validated.outputs == ("out",)
    run = engine.execute(validated, prompt_id="x")
    assert run.prompt_id == "x" and run.ok


def test_stale_interrupt_is_discarded_at_prompt_start(engine):
    engine.interrupt.request()
    assert engine.run(chain(3)).ok


def test_build_environment_without_models(tmp_path):
    env = build_environment(tmp_path / "d", tmp_path / "m", models=None)
    assert env.paths.input_dir == (tmp_path / "d" / "input").resolve()
    assert env.models is None


def test_load_pack_rejects_modules_without_pack(tmp_path):
    with pytest.raises(TypeError):
        load_pack("graphengine.errors")


def test_builtin_packs_import_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; from graphengine.packs import builtin_packs; builtin_packs(); "
        "from graphengine import engine, executor, plan, cache, validation, workflow; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert builtin_packs()


@pytest.mark.slow
def test_a_long_chain_runs_without_recursion(engine):
    # 30 times Python's recursion limit; 100,000-node validation is in test_validation.py
    prompt = chain(30_000)
    run = engine.run(prompt)
    assert run.ok and run.outputs == {"out": {"values": [29_999]}}
    assert len(run.executed) == 30_000


def test_engine_work_leaves_no_reference_cycles(make_engine):
    import gc

    engine = make_engine()
    prompt = chain(50)
    engine.run(prompt)  # warm: classes, rules, pools
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for value in (2, 3):
            prompt["n0"]["inputs"]["value"] = value
            validated = engine.validate(prompt)
            assert engine.execute(validated, prompt_id=f"p{value}").ok
        del validated
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()
