"""Workflow templates: API-format workflows with ``"%placeholder%"`` values, SillyTavern-compatible.

    from graphengine.templates import TemplateStore, render, check
    store = TemplateStore.for_data_dir(Path("data"))
    prompt = render(store.get("text-to-image").template, {"prompt": "a cat", "seed": 5}, engine.registry)

``render`` substitutes on the parsed JSON tree (safe for any value), ``run_template`` renders and
runs on an ``Engine``, ``check`` reports the
placeholders a template uses, ``render_sillytavern`` reproduces SillyTavern's own text substitution
for comparison, and ``TemplateStore`` keeps bundled (read-only) and user templates.
"""

from graphengine.templates.checker import check
from graphengine.templates.document import Template, parse_template_bytes, template_from_json
from graphengine.templates.errors import (
    InvalidTemplate,
    InvalidTemplateName,
    Problem,
    StoreError,
    TemplateConflict,
    TemplateError,
    TemplateExists,
    TemplateNotFound,
    TemplateReadOnly,
    TemplateTooLarge,
)
from graphengine.templates.headless import load_template, parse_set_options, render_for_cli, run_template
from graphengine.templates.placeholders import PREDEFINED, PREDEFINED_BY_NAME, find_occurrences
from graphengine.templates.render import Rendered, render, render_template
from graphengine.templates.sillytavern import SillyTavernSettings, render_sillytavern
from graphengine.templates.store import BUNDLED_DIR, StoredTemplate, TemplateStore

__all__ = [
    "BUNDLED_DIR",
    "PREDEFINED",
    "PREDEFINED_BY_NAME",
    "InvalidTemplate",
    "InvalidTemplateName",
    "Problem",
    "Rendered",
    "SillyTavernSettings",
    "StoreError",
    "StoredTemplate",
    "Template",
    "TemplateConflict",
    "TemplateError",
    "TemplateExists",
    "TemplateNotFound",
    "TemplateReadOnly",
    "TemplateStore",
    "TemplateTooLarge",
    "check",
    "find_occurrences",
    "load_template",
    "parse_set_options",
    "parse_template_bytes",
    "render",
    "render_for_cli",
    "render_sillytavern",
    "render_template",
    "run_template",
    "template_from_json",
]
