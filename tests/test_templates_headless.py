"""Templates from Python without a server: run_template on a real Engine, render_for_cli lookups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphengine.engine import Engine
from graphengine.errors import WorkflowInvalid
from graphengine.templates import Template, TemplateError, TemplateNotFound, TemplateStore, render_for_cli, run_template
from templates_server import SOLID_TEMPLATE, pack


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    root = tmp_path_factory.mktemp("headless")
    return Engine(packs=[pack(), "nodes.image", "nodes.output"], data_dir=root, models_dir=root / "models")


def test_run_template_renders_types_and_runs(engine: Engine) -> None:
    template = Template(name="solid", workflow=SOLID_TEMPLATE["workflow"], defaults=SOLID_TEMPLATE["defaults"])
    run = run_template(engine, template, {"red": "0.5", "width": "12", "prefix": "headless"})
    assert run.status == "success", run.error
    (image,) = run.outputs["3"]["images"]
    assert image["filename"].startswith("headless_") and (engine.env.paths.output_dir / image["filename"]).is_file()


def test_run_template_by_name_from_the_store(engine: Engine) -> None:
    TemplateStore.for_data_dir(engine.env.paths.root).create(Template(
        name="stored-solid", workflow=SOLID_TEMPLATE["workflow"], defaults=SOLID_TEMPLATE["defaults"]))
    run = run_template(engine, "stored-solid", {"steps": 0})
    assert run.status == "success"


def test_errors_come_before_execution(engine: Engine) -> None:
    template = Template(name="solid", workflow=SOLID_TEMPLATE["workflow"], defaults=SOLID_TEMPLATE["defaults"])
    with pytest.raises(TemplateError):
        run_template(engine, template, {"red": "very"})
    with pytest.raises(WorkflowInvalid):
        run_template(engine, template, {"red": 3})  # above the declared max
    with pytest.raises(TemplateNotFound):
        run_template(engine, "../escape", {})


def test_render_for_cli_reads_files_and_names(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(SOLID_TEMPLATE["workflow"]))
    prompt = render_for_cli(path, {"width": "8", "height": "8", "red": "1", "steps": "1", "prefix": "p"}, tmp_path,
                            engine.registry)
    assert prompt["1"]["inputs"]["width"] == 8 and prompt["1"]["inputs"]["red"] == 1.0
    assert render_for_cli("text-to-image", {}, tmp_path, None)["5"]["inputs"]["width"] == 64
    with pytest.raises(TemplateNotFound):
        render_for_cli("missing-template", {}, tmp_path, None)
