"""Planning: networkx graph, the output-first order, cycle reports."""

from __future__ import annotations

import networkx as nx

from graphengine.plan import Planner, build_plan, describe_cycle


def test_plan_graph_and_order_run_an_outputs_producers_first(engine):
    # a long side branch (s1..s3) and a short branch feeding an output; both start ready
    prompt = {
        "s1": {"class_type": "FakeInt", "inputs": {"value": 1}},
        "s2": {"class_type": "FakeAdd", "inputs": {"a": ["s1", 0], "b": 1}},
        "s3": {"class_type": "FakeAdd", "inputs": {"a": ["s2", 0], "b": 1}},
        "k": {"class_type": "FakeInt", "inputs": {"value": 2}},
        "decode": {"class_type": "FakeAdd", "inputs": {"a": ["k", 0], "b": 1}},
        "save": {"class_type": "FakeOutput", "inputs": {"value": ["decode", 0]}},
        "join": {"class_type": "FakeAdd", "inputs": {"a": ["s3", 0], "b": ["k", 0]}},
        "save2": {"class_type": "FakeOutput", "inputs": {"value": ["join", 0]}},
    }
    validated = engine.validate(prompt)
    plan = build_plan(validated.nodes, validated.outputs)
    assert isinstance(plan.graph, nx.DiGraph)
    assert set(plan.graph.edges) >= {("k", "decode"), ("decode", "save"), ("s3", "join")}
    order = list(plan.order)
    assert nx.is_directed_acyclic_graph(plan.graph)
    for u, v in plan.graph.edges:
        assert order.index(u) < order.index(v)
    # as soon as k ran, decode (feeds an output) and save (an output) run before the side branch finishes
    assert order.index("save") == order.index("k") + 2
    assert order == list(build_plan(validated.nodes, validated.outputs).order)  # deterministic


def test_planner_reuses_the_plan_when_only_literals_change(engine):
    from tests.fakes import chain

    planner = Planner()
    prompt = chain(10)
    first = planner.plan(engine.validate(prompt))
    prompt["n3"]["inputs"]["b"] = 99
    assert planner.plan(engine.validate(prompt)) is first
    prompt["n3"]["inputs"]["a"] = ["n1", 0]
    assert planner.plan(engine.validate(prompt)) is not first


def test_lazy_links_are_separated_from_strong_sources(engine):
    prompt = {
        "t": {"class_type": "FakeInt", "inputs": {"value": 1}},
        "s": {"class_type": "FakeSwitch", "inputs": {"select": True, "on_true": ["t", 0]}},
        "o": {"class_type": "FakeOutput", "inputs": {"value": ["s", 0]}},
    }
    validated = engine.validate(prompt)
    plan = build_plan(validated.nodes, validated.outputs)
    assert plan.strong_sources["s"] == ()
    assert set(plan.lazy_links["s"]) == {"on_true"}
    assert plan.order.index("t") < plan.order.index("s")


def test_describe_cycle_is_deterministic_and_in_data_flow_order():
    edges = [("b", "c"), ("c", "a"), ("a", "b"), ("x", "a")]
    assert describe_cycle(edges, order=["x", "a", "b", "c"]) == ["a", "b", "c"]
    assert describe_cycle(edges, order=["c", "b", "a"]) == ["c", "a", "b"]


def test_networkx_is_imported_only_to_name_a_cycle(tmp_path):
    """Starting the engine and running an acyclic prompt never imports networkx (server start-up
    stays fast); the first cycle report imports it and names the cycle in data-flow order."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = f"""
import json, sys
from graphengine.engine import Engine, build_environment
from graphengine.errors import WorkflowInvalid
from tests.fakes import Recorder, chain, pack
env = build_environment({str(tmp_path)!r}, models=None, extras=(Recorder(),))
engine = Engine(packs=[pack()], cache="classic", env=env)
assert engine.run(chain(5)).ok
before = "networkx" in sys.modules
cyclic = {{
    "o": {{"class_type": "FakeOutput", "inputs": {{"value": ["x", 0]}}}},
    "x": {{"class_type": "FakeAdd", "inputs": {{"a": ["y", 0], "b": 1}}}},
    "y": {{"class_type": "FakeAdd", "inputs": {{"a": ["x", 0], "b": 1}}}},
}}
try:
    engine.validate(cyclic)
    details = None
except WorkflowInvalid as exc:
    details = exc.body["error"]["details"]
print(json.dumps({{"before": before, "after": "networkx" in sys.modules, "details": details}}))
"""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "before": False,
        "after": True,
        "details": "Dependency cycle detected: x (FakeAdd) -> y (FakeAdd) -> x",
    }
