"""The template store: bundled read-only templates, user CRUD with ETags, confinement, atomic writes."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from graphengine.templates import (
    BUNDLED_DIR,
    InvalidTemplate,
    InvalidTemplateName,
    Template,
    TemplateConflict,
    TemplateExists,
    TemplateNotFound,
    TemplateReadOnly,
    TemplateStore,
    TemplateTooLarge,
    check,
    find_occurrences,
)
from graphengine.templates.store import etag_matches

WORKFLOW = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "%prompt%"}}}
BUNDLED_NAMES = {
    "text-to-image", "image-to-image-base64", "sdxl-text-to-image", "lora", "hires-fix", "inpaint", "image-to-image-upload",
}


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    return TemplateStore.for_data_dir(tmp_path)


def test_bundled_templates_are_listed_and_read_only(store: TemplateStore) -> None:
    assert BUNDLED_NAMES <= set(store.names())
    stored = store.get("text-to-image")
    assert stored.bundled and stored.etag.startswith('"')
    assert stored.template.defaults["model"] == "graphengine-default.safetensors"
    with pytest.raises(TemplateReadOnly) as info:
        store.save("text-to-image", stored.template)
    assert info.value.status == 403
    with pytest.raises(TemplateReadOnly):
        store.delete("text-to-image")
    with pytest.raises(TemplateReadOnly):
        store.rename("text-to-image", "mine")
    with pytest.raises(TemplateExists):
        store.create(stored.template)  # a user template may not shadow a bundled one
    assert (BUNDLED_DIR / "text-to-image.json").read_bytes() == (BUNDLED_DIR / "text-to-image.json").read_bytes()


def test_crud_round_trip(store: TemplateStore) -> None:
    created = store.create(Template(name="My Cat", workflow=WORKFLOW, description="cats", defaults={"prompt": "cat"}))
    assert not created.bundled
    assert "My Cat" in store.names()
    got = store.get("My Cat")
    assert got.etag == created.etag and got.template.defaults == {"prompt": "cat"}
    assert json.loads((store.user_dir / "My Cat.json").read_text())["description"] == "cats"

    updated = store.save("My Cat", Template(name="My Cat", workflow=WORKFLOW, description="dogs"), if_match=got.etag)
    assert updated.etag != got.etag and store.get("My Cat").template.description == "dogs"

    renamed = store.rename("My Cat", "my-dog", if_match=updated.etag)
    assert renamed.name == "my-dog" and "My Cat" not in store.names()
    with pytest.raises(TemplateNotFound):
        store.get("My Cat")

    store.delete("my-dog", if_match=renamed.etag)
    with pytest.raises(TemplateNotFound) as info:
        store.get("my-dog")
    assert info.value.status == 404


def test_concurrent_edit_conflict_is_412_and_loses_nothing(store: TemplateStore) -> None:
    base = store.create(Template(name="shared", workflow=WORKFLOW, description="v0"))
    # two editors read the same version
    alice_etag = bob_etag = base.etag
    store.save("shared", Template(name="shared", workflow=WORKFLOW, description="alice"), if_match=alice_etag)
    with pytest.raises(TemplateConflict) as info:
        store.save("shared", Template(name="shared", workflow=WORKFLOW, description="bob"), if_match=bob_etag)
    assert info.value.status == 412
    assert info.value.details["current_etag"] == store.get("shared").etag
    assert store.get("shared").template.description == "alice"
    with pytest.raises(TemplateConflict):
        store.delete("shared", if_match=bob_etag)
    assert store.exists("shared")


def test_racing_writers_with_the_same_etag_one_wins(store: TemplateStore) -> None:
    base = store.create(Template(name="race", workflow=WORKFLOW))
    outcomes: list[str] = []

    def write(tag: str) -> None:
        try:
            store.save("race", Template(name="race", workflow=WORKFLOW, description=tag), if_match=base.etag)
            outcomes.append("ok")
        except TemplateConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]


def test_if_match_forms() -> None:
    assert etag_matches("*", '"abc"')
    assert etag_matches('W/"abc"', '"abc"')
    assert etag_matches('"x", "abc"', '"abc"')
    assert not etag_matches('"abd"', '"abc"')


@pytest.mark.parametrize(
    "name",
    ["../evil", "..", "a/b", "a\\b", ".hidden", "/etc/passwd", "%2e%2e", "name\x00", "", "x" * 81, "trailing.", "a..b", "C:evil"],
)
def test_traversal_and_hidden_names_are_rejected(store: TemplateStore, name: str) -> None:
    with pytest.raises(InvalidTemplateName) as info:
        store.create(Template(name=name, workflow=WORKFLOW))
    assert info.value.status == 400
    with pytest.raises((InvalidTemplateName, TemplateNotFound)):
        store.get(name)
    written = [p for p in store.user_dir.parent.rglob("*") if p.is_file()]
    assert all(p.parent == store.user_dir and p.name == ".lock" for p in written)


def test_hidden_and_temporary_files_are_not_listed(store: TemplateStore) -> None:
    store.user_dir.mkdir(parents=True)
    (store.user_dir / ".secret.json").write_text(json.dumps(WORKFLOW))
    (store.user_dir / ".tmp-123.json").write_text("{")
    assert ".secret" not in store.names() and not any(n.startswith(".") for n in store.names())


def test_size_cap(tmp_path: Path) -> None:
    store = TemplateStore.for_data_dir(tmp_path, max_bytes=1000)
    huge = Template(name="huge", workflow={"1": {"class_type": "X", "inputs": {"text": "a" * 2000}}})
    with pytest.raises(TemplateTooLarge) as info:
        store.create(huge)
    assert info.value.status == 413
    with pytest.raises(TemplateTooLarge):
        store.import_bytes(b" " * 1001, name="big")
    assert not store.user_dir.exists() or not list(store.user_dir.glob("*.json"))


def test_failed_write_leaves_the_old_template_intact(store: TemplateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create(Template(name="keep", workflow=WORKFLOW, description="original"))

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.save("keep", Template(name="keep", workflow=WORKFLOW, description="new"))
    monkeypatch.undo()
    assert store.get("keep").template.description == "original"
    assert sorted(p.name for p in store.user_dir.iterdir()) == [".lock", "keep.json"]


def test_import_api_format_workflow_and_prompt_body(store: TemplateStore) -> None:
    imported = store.import_bytes(json.dumps(WORKFLOW).encode(), name="imported", description="from ComfyUI")
    assert imported.template.workflow == WORKFLOW and imported.template.description == "from ComfyUI"
    wrapped = store.import_bytes(json.dumps({"prompt": WORKFLOW}).encode(), name="wrapped")
    assert wrapped.template.workflow == WORKFLOW
    with pytest.raises(InvalidTemplate, match="UI\\) format"):
        store.import_bytes(json.dumps({"nodes": [], "links": []}).encode(), name="ui")
    with pytest.raises(InvalidTemplate, match="not valid JSON"):
        store.import_bytes(b'{"1": ', name="broken")
    with pytest.raises(InvalidTemplate, match="class_type"):
        store.import_bytes(b'{"1": {"inputs": {}}}', name="noclass")
    assert {name for name in store.names() if not store.is_bundled(name)} == {"imported", "wrapped"}


def test_unreadable_user_template_is_reported_not_fatal(store: TemplateStore) -> None:
    store.user_dir.mkdir(parents=True)
    (store.user_dir / "broken.json").write_text("{ not json")
    items = store.list()
    errors = [item for item in items if isinstance(item, tuple)]
    assert [name for name, _ in errors] == ["broken"]
    assert len(items) == len(store.names())


@pytest.mark.parametrize("name", sorted(BUNDLED_NAMES))
def test_every_bundled_template_has_description_defaults_and_renders(store: TemplateStore, name: str) -> None:
    from graphengine.templates import render

    stored = store.get(name)
    assert stored.template.description and stored.template.defaults
    report = check(stored.template)
    assert report["flagged"] == [] and report["missing_values"] == []
    prompt = render(stored.template, {"prompt": "a fox"})
    assert find_occurrences(prompt) == []  # no placeholder left anywhere
    assert any(node["class_type"] == "SaveImage" for node in prompt.values())
