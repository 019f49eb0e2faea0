"""A1111 options persisted under the data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from graphengine.a1111.options import OPTIONS_FILE, OptionsStore


def test_update_persists_and_a_new_store_reads_it(tmp_path: Path) -> None:
    store = OptionsStore(tmp_path)
    assert store.current.sd_vae == "Automatic" and store.current.CLIP_stop_at_last_layers == 1
    store.update({"sd_model_checkpoint": "a.safetensors", "CLIP_stop_at_last_layers": "2", "unknown_key": 5})
    on_disk = json.loads((tmp_path / OPTIONS_FILE).read_text())
    assert on_disk["sd_model_checkpoint"] == "a.safetensors" and on_disk["CLIP_stop_at_last_layers"] == 2
    assert "unknown_key" not in on_disk
    assert OptionsStore(tmp_path).current.sd_model_checkpoint == "a.safetensors"


def test_effective_overrides_are_not_stored_and_empty_model_keeps_current(tmp_path: Path) -> None:
    store = OptionsStore(tmp_path)
    store.update({"sd_model_checkpoint": "a.safetensors"})
    effective = store.effective({"sd_model_checkpoint": "", "CLIP_stop_at_last_layers": 3, "sd_vae": None})
    assert effective.sd_model_checkpoint == "a.safetensors" and effective.CLIP_stop_at_last_layers == 3
    assert store.current.CLIP_stop_at_last_layers == 1


def test_invalid_values_are_refused_and_nothing_changes(tmp_path: Path) -> None:
    store = OptionsStore(tmp_path)
    with pytest.raises(ValidationError):
        store.update({"CLIP_stop_at_last_layers": 99})
    assert store.current.CLIP_stop_at_last_layers == 1
    assert not (tmp_path / OPTIONS_FILE).exists()


def test_a_corrupt_file_falls_back_to_defaults(tmp_path: Path) -> None:
    (tmp_path / OPTIONS_FILE).write_text("{not json")
    assert OptionsStore(tmp_path).current.sd_vae == "Automatic"
