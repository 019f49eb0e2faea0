"""Content-addressed caching: signatures, incremental recomputation and each cache mode."""

from __future__ import annotations

import numpy as np
import pytest

from graphengine.cache import CacheConfig, RamCache, measure_nbytes
from tests.fakes import chain


def renamed(prompt, prefix):
    def rename(value):
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
            return [prefix + value[0], value[1]]
        return value

    return {
        prefix + node_id: {**node, "inputs": {k: rename(v) for k, v in node["inputs"].items()}}
        for node_id, node in prompt.items()
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("classic", CacheConfig("classic")),
        (None, CacheConfig("classic")),
        ("lru 10", CacheConfig("lru", lru_size=10)),
        ("lru:3", CacheConfig("lru", lru_size=3)),
        ("ram", CacheConfig("ram")),
        ("ram 2", CacheConfig("ram", ram_budget_bytes=2 * 1024**3)),
        ("none", CacheConfig("none")),
    ],
)
def test_cache_config_parse(text, expected):
    assert CacheConfig.parse(text) == expected


@pytest.mark.parametrize("text", ["lru", "lru x", "lru 0", "ram -1", "fast", "classic 3"])
def test_cache_config_rejects(text):
    with pytest.raises(ValueError):
        CacheConfig.parse(text)


def test_classic_reuses_unchanged_nodes_and_reruns_what_changed(engine, recorder):
    prompt = chain(5)
    engine.run(prompt)
    assert recorder.total() == 5
    prompt["n2"]["inputs"]["b"] = 7
    run = engine.run(prompt)
    assert run.cached == ["n0", "n1"]
    assert run.executed == ["n2", "n3", "out"]
    assert run.outputs == {"out": {"values": [10]}}  # 1, +1, +7, +1


def test_identical_subgraphs_under_renamed_ids_hit_the_cache(engine, recorder):
    engine.run(chain(4))
    run = engine.run(renamed(chain(4), "x"))
    assert run.executed == [] and sorted(run.cached) == ["xn0", "xn1", "xn2", "xout"]
    assert run.outputs == {"xout": {"values": [3]}}
    assert recorder.total() == 4


def test_classic_forgets_nodes_the_new_prompt_does_not_use(engine, recorder):
    a, b = chain(3, value=1), chain(3, value=50)
    engine.run(a)
    engine.run(b)
    run = engine.run(a)
    assert run.cached == [] and recorder.total() == 9


def test_lru_keeps_entries_across_prompts(make_engine, recorder):
    engine = make_engine(cache="lru 100")
    a, b = chain(3, value=1), chain(3, value=50)
    engine.run(a)
    engine.run(b)
    run = engine.run(a)
    assert run.executed == [] and recorder.total() == 6


def test_lru_evicts_least_recently_used(make_engine, recorder):
    engine = make_engine(cache="lru 3")
    engine.run(chain(3, value=1))
    engine.run(chain(3, value=50))
    run = engine.run(chain(3, value=1))
    assert run.executed == ["n0", "n1", "out"]


def test_none_mode_runs_everything_every_time(make_engine, recorder):
    engine = make_engine(cache="none")
    engine.run(chain(3))
    run = engine.run(chain(3))
    assert run.cached == [] and run.executed == ["n0", "n1", "out"] and recorder.total() == 6


def test_ram_mode_evicts_by_measured_size_under_budget():
    cache = RamCache(CacheConfig("ram", ram_budget_bytes=1000))
    cache.begin(set())
    cache.put(b"old", ([np.zeros(100, dtype=np.float32)],), None)  # 400 bytes
    cache.begin(set())
    cache.put(b"small", (["x" * 100],), None)
    cache.put(b"new", ([np.zeros(100, dtype=np.float32)],), None)
    assert cache.nbytes() == 900 and len(cache) == 3
    cache.put(b"big", ([np.zeros(50, dtype=np.float32)],), None)  # 1100 > 1000: the old array goes
    assert cache.get(b"old") is None
    assert cache.get(b"new") is not None and cache.get(b"small") is not None
    assert cache.nbytes() <= 1000


def test_ram_mode_engine_keeps_entries_across_prompts(make_engine, recorder):
    engine = make_engine(cache="ram 1")
    engine.run(chain(3, value=1))
    engine.run(chain(3, value=50))
    assert engine.run(chain(3, value=1)).executed == []


def test_measure_nbytes_duck_types_tensors_and_strings():
    class FakeTensor:
        def element_size(self):
            return 2

        def nelement(self):
            return 10

    shared = np.zeros(10, dtype=np.float64)
    assert measure_nbytes(([shared, shared], [FakeTensor()], ["abcd", b"xy"])) == 80 + 20 + 6


def test_never_cache_reruns_itself_and_downstream(engine, recorder):
    prompt = {
        "r": {"class_type": "FakeRandom", "inputs": {"value": 0}},
        "a": {"class_type": "FakeAdd", "inputs": {"a": ["r", 0], "b": 1}},
        "i": {"class_type": "FakeInt", "inputs": {"value": 3}},
        "o": {"class_type": "FakeOutput", "inputs": {"value": ["a", 0]}},
        "o2": {"class_type": "FakeOutput", "inputs": {"value": ["i", 0]}},
    }
    engine.run(prompt)
    run = engine.run(prompt)
    assert sorted(run.executed) == ["a", "o", "r"] and sorted(run.cached) == ["i", "o2"]
    assert run.outputs["o"] == {"values": [3]}


def test_fingerprint_change_invalidates(make_engine, recorder):
    token = {"fingerprint": "v1"}
    engine = make_engine(extras=(token,))
    prompt = {
        "f": {"class_type": "FakeFingerprint", "inputs": {"key": "k"}},
        "o": {"class_type": "FakeOutput", "inputs": {"value": ["f", 0]}},
    }
    engine.run(prompt)
    assert engine.run(prompt).executed == []
    token["fingerprint"] = "v2"
    assert engine.run(prompt).executed == ["f", "o"]


def test_unique_id_nodes_are_keyed_by_node_id(engine, recorder):
    prompt = {
        "u": {"class_type": "FakeUniqueId", "inputs": {"value": 1}},
        "o": {"class_type": "FakeOutput", "inputs": {"value": ["u", 0]}},
    }
    engine.run(prompt)
    run = engine.run(renamed(prompt, "z"))
    assert run.executed == ["zu", "zo"] and run.outputs == {"zo": {"values": ["zu:1"]}}


def test_literal_types_are_part_of_the_key_for_any_inputs(engine, recorder):
    prompt = {"o": {"class_type": "FakeOutput", "inputs": {"value": 1}}}
    engine.run(prompt)
    prompt["o"]["inputs"]["value"] = 1.0
    assert engine.run(prompt).outputs == {"o": {"values": [1.0]}}
    prompt["o"]["inputs"]["value"] = True
    assert engine.run(prompt).outputs == {"o": {"values": [True]}}


def test_signatures_are_recomputed_only_for_what_changed(engine):
    prompt = chain(200)
    engine.run(prompt)
    signatures = engine.executor.signatures
    assert signatures.hashed == 200
    engine.run(prompt)
    assert signatures.hashed == 0
    prompt["n190"]["inputs"]["b"] = 5  # changes n190 and the 10 nodes below it
    run = engine.run(prompt)
    assert signatures.hashed == 10
    assert len(run.executed) == 10 and len(run.cached) == 190


def test_free_memory_drops_the_cache(engine, recorder):
    engine.run(chain(3))
    engine.free(free_memory=True)
    assert engine.run(chain(3)).executed == ["n0", "n1", "out"]
