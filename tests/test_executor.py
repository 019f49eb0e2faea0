"""The executor, observed through events: order, errors, interruption, lists, lazy inputs."""

from __future__ import annotations

import threading

from graphengine.events import (
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    ListSink,
    PreviewImage,
    Progress,
)
from tests.fakes import chain


def types(sink):
    return [e.type for e in sink.events]


def test_event_order_of_a_fresh_run(engine):
    sink = ListSink()
    run = engine.run(chain(3), sink=sink, prompt_id="p1")
    assert run.status == "success"
    assert types(sink) == [
        "execution_start",
        "execution_cached",
        "executing",
        "executing",
        "executing",
        "executed",
        "execution_success",
    ]
    assert [e.node for e in sink.of_type(Executing)] == ["n0", "n1", "out"]
    assert sink.of_type(Executed)[0].data() == {
        "node": "out",
        "display_node": "out",
        "output": {"values": [2]},
        "prompt_id": "p1",
    }
    assert all(e.prompt_id == "p1" for e in sink.events)
    assert not any(isinstance(e, Executing) and e.node is None for e in sink.events)  # the server sends that


def test_fully_cached_rerun_replays_output_ui(engine, recorder):
    engine.run(chain(4))
    sink = ListSink()
    run = engine.run(chain(4), sink=sink)
    assert types(sink) == ["execution_start", "execution_cached", "executed", "execution_success"]
    assert sink.of_type(ExecutionCached)[0].nodes == ("n0", "n1", "n2", "out")
    assert run.executed == [] and run.outputs == {"out": {"values": [3]}}
    assert recorder.total() == 4


def test_history_messages_and_meta(engine):
    run = engine.run(chain(3), prompt_id="pid")
    assert [m[0] for m in run.messages] == ["execution_start", "execution_cached", "execution_success"]
    assert run.messages[1][1]["nodes"] == [] and run.messages[1][1]["prompt_id"] == "pid"
    assert isinstance(run.messages[0][1]["timestamp"], int)
    assert run.meta == {"out": {"node_id": "out", "display_node": "out", "parent_node": None, "real_node_id": "out"}}
    assert run.status_json()["status_str"] == "success" and run.status_json()["completed"] is True
    assert set(run.timings) == {"n0", "n1", "out"}


def test_failure_reports_execution_error_and_stops(engine, recorder):
    prompt = {
        "1": {"class_type": "FakeInt", "inputs": {"value": 4}},
        "2": {"class_type": "FakeFail", "inputs": {"value": ["1", 0], "fail": True, "message": "it broke"}},
        "3": {"class_type": "FakeOutput", "inputs": {"value": ["2", 0]}},
    }
    sink = ListSink()
    run = engine.run(prompt, sink=sink, prompt_id="e1")
    assert run.status == "error"
    assert types(sink)[-1] == "execution_error"
    error = sink.of_type(ExecutionError)[0].data()
    assert error["node_id"] == "2" and error["node_type"] == "FakeFail"
    assert error["exception_type"] == "ValueError" and error["exception_message"] == "it broke"
    assert error["executed"] == ["1"]
    assert error["current_inputs"] == {"value": [4], "fail": [True], "message": ["it broke"]}
    assert any("raise ValueError" in line for line in error["traceback"])
    assert recorder.runs["3"] == 0
    assert run.error is not None and run.messages[-1][0] == "execution_error"
    assert run.status_json() == {"status_str": "error", "completed": False, "messages": run.messages}
    # the engine keeps working, and the successful node stays cached
    prompt["2"]["inputs"]["fail"] = False
    run = engine.run(prompt)
    assert run.ok and run.cached == ["1"] and run.outputs == {"3": {"values": [4]}}


def test_interrupt_mid_node_through_progress(engine, recorder):
    prompt = {
        "1": {"class_type": "FakeSlow", "inputs": {"value": 1, "steps": 500, "delay": 0.01}},
        "2": {"class_type": "FakeOutput", "inputs": {"value": ["1", 0]}},
    }
    sink = ListSink()
    validated = engine.validate(prompt)
    result = []
    worker = threading.Thread(target=lambda: result.append(engine.execute(validated, prompt_id="slow", sink=sink)))
    worker.start()
    assert recorder.started.wait(5)
    engine.interrupt.request("slow")
    worker.join(5)
    assert not worker.is_alive()
    run = result[0]
    assert run.status == "interrupted"
    assert types(sink)[-1] == "execution_interrupted"
    interrupted = sink.of_type(ExecutionInterrupted)[0].data()
    assert interrupted["executed"] == [] and interrupted["node_id"] == "1" and interrupted["node_type"] == "FakeSlow"
    assert len(sink.of_type(Progress)) < 500
    assert recorder.runs["2"] == 0
    assert run.status_json()["status_str"] == "error"


def test_interrupt_for_another_prompt_is_ignored(engine):
    engine.interrupt.request("other")
    run = engine.run(chain(3))
    assert run.ok


def test_interrupt_between_nodes(engine, recorder):
    class InterruptOnFirstExecuted:
        def __init__(self):
            self.events = []

        def emit(self, event):
            self.events.append(event)
            if isinstance(event, Executing) and event.node == "n1":
                engine.interrupt.request()

    sink = InterruptOnFirstExecuted()
    run = engine.run(chain(5), sink=sink)
    assert run.status == "interrupted"
    assert run.executed == ["n0", "n1"]  # n1 had started and finished; the check before n2 stopped the run
    assert recorder.runs["n2"] == 0 and recorder.runs["out"] == 0
    interrupted = sink.events[-1].data()
    assert interrupted["node_id"] == "n2" and interrupted["node_type"] == "FakeAdd"  # the node about to run
    assert interrupted["executed"] == ["n0", "n1"]
    assert run.messages[-1] == ["execution_interrupted", interrupted]


def test_interrupt_mid_node_names_the_running_node_after_others_ran(engine, recorder):
    prompt = {
        "1": {"class_type": "FakeInt", "inputs": {"value": 3}},
        "slow": {"class_type": "FakeSlow", "inputs": {"value": ["1", 0], "steps": 500, "delay": 0.01}},
        "2": {"class_type": "FakeOutput", "inputs": {"value": ["slow", 0]}},
    }
    sink = ListSink()
    validated = engine.validate(prompt)
    result = []
    worker = threading.Thread(target=lambda: result.append(engine.execute(validated, prompt_id="p", sink=sink)))
    worker.start()
    assert recorder.started.wait(5)
    engine.interrupt.request()
    worker.join(5)
    assert not worker.is_alive()
    run = result[0]
    assert run.status == "interrupted" and run.executed == ["1"]
    interrupted = sink.of_type(ExecutionInterrupted)
    assert len(interrupted) == 1
    data = interrupted[0].data()
    assert (data["node_id"], data["node_type"], data["executed"]) == ("slow", "FakeSlow", ["1"])
    assert run.messages[-1] == ["execution_interrupted", data]
    assert not sink.of_type(ExecutionError) and not sink.of_type(ExecutionSuccess)


def test_progress_and_preview_events(engine):
    prompt = {
        "1": {"class_type": "FakeSlow", "inputs": {"steps": 3, "delay": 0.0, "preview": True}},
        "2": {"class_type": "FakeOutput", "inputs": {"value": ["1", 0]}},
    }
    sink = ListSink()
    engine.run(prompt, sink=sink)
    progress = [e.data() for e in sink.of_type(Progress)]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [(1, 3, "1"), (2, 3, "1"), (3, 3, "1")]
    previews = sink.of_type(PreviewImage)
    assert [p.image for p in previews] == ["step 1", "step 2", "step 3"]
    assert all(not p.is_result and p.max_size == 256 for p in previews)
    kinds = types(sink)
    assert kinds.index("progress") > kinds.index("executing")


def test_background_work_is_joined_and_binary_images_are_results(engine, recorder):
    prompt = {"1": {"class_type": "FakeBackground", "inputs": {"label": "one", "delay": 0.1}}}
    sink = ListSink()
    run = engine.run(prompt, sink=sink)
    assert run.ok and recorder.background_done == ["one"]
    (image,) = sink.of_type(PreviewImage)
    assert image.is_result and image.image == "image:one" and image.image_format == "PNG"


def test_background_failure_fails_the_prompt(engine):
    prompt = {"1": {"class_type": "FakeBackground", "inputs": {"label": "two", "fail": True, "delay": 0.0}}}
    sink = ListSink()
    run = engine.run(prompt, sink=sink)
    assert run.status == "error"
    error = run.error.data()
    assert error["node_id"] == "1" and error["exception_type"] == "OSError"
    assert "disk full" in error["exception_message"]
    assert types(sink)[-1] == "execution_error" and "execution_success" not in types(sink)


def test_output_list_maps_over_downstream_and_input_is_list_gets_whole_lists(engine, recorder):
    prompt = {
        "r": {"class_type": "FakeRange", "inputs": {"start": 1, "count": 3}},
        "a": {"class_type": "FakeAdd", "inputs": {"a": ["r", 0], "b": 10}},
        "s": {"class_type": "FakeSum", "inputs": {"values": ["a", 0]}},
        "o1": {"class_type": "FakeOutput", "inputs": {"value": ["a", 0]}},
        "o2": {"class_type": "FakeOutput", "inputs": {"value": ["s", 0]}},
    }
    run = engine.run(prompt)
    assert run.outputs == {"o1": {"values": [11, 12, 13]}, "o2": {"values": [36]}}
    assert recorder.classes["FakeAdd"] == 3  # once per element
    assert recorder.classes["FakeSum"] == 1
    assert ("sum", [11, 12, 13]) in recorder.seen


def test_shorter_lists_repeat_their_last_element(engine, recorder):
    prompt = {
        "r": {"class_type": "FakeRange", "inputs": {"start": 0, "count": 3}},
        "q": {"class_type": "FakeRange", "inputs": {"start": 100, "count": 2}},
        "a": {"class_type": "FakeAdd", "inputs": {"a": ["r", 0], "b": ["q", 0]}},
        "o": {"class_type": "FakeOutput", "inputs": {"value": ["a", 0]}},
    }
    assert engine.run(prompt).outputs == {"o": {"values": [100, 102, 103]}}


def test_empty_list_runs_downstream_zero_times(engine, recorder):
    prompt = {
        "r": {"class_type": "FakeRange", "inputs": {"start": 0, "count": 0}},
        "a": {"class_type": "FakeAdd", "inputs": {"a": ["r", 0], "b": 1}},
        "o": {"class_type": "FakeOutput", "inputs": {"value": ["a", 0]}},
    }
    run = engine.run(prompt)
    assert run.ok and run.outputs == {} and recorder.classes["FakeAdd"] == 0


def test_lazy_inputs_evaluate_only_the_needed_branch(engine, recorder):
    prompt = {
        "t": {"class_type": "FakeInt", "inputs": {"value": 1}},
        "f": {"class_type": "FakeInt", "inputs": {"value": 2}},
        "s": {"class_type": "FakeSwitch", "inputs": {"select": False, "on_true": ["t", 0], "on_false": ["f", 0]}},
        "o": {"class_type": "FakeOutput", "inputs": {"value": ["s", 0]}},
    }
    sink = ListSink()
    run = engine.run(prompt, sink=sink)
    assert run.outputs == {"o": {"values": [2]}}
    assert recorder.runs["t"] == 0 and recorder.runs["f"] == 1
    assert [e.node for e in sink.of_type(Executing)] == ["s", "f", "s", "o"]
    assert run.executed == ["f", "s", "o"]
    prompt["s"]["inputs"]["select"] = True
    run = engine.run(prompt)
    assert run.outputs == {"o": {"values": [1]}} and recorder.runs["t"] == 1 and recorder.runs["f"] == 1


def test_context_offers_prompt_and_extra_pnginfo(engine):
    prompt = {"c": {"class_type": "FakeContext", "inputs": {}}, "x": {"class_type": "FakeInt", "inputs": {"value": 1}}}
    run = engine.run(prompt, extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}})
    assert run.outputs["c"]["context"] == [{"node_id": "c", "prompt_ids": ["c", "x"], "pnginfo": {"workflow": {"nodes": []}}}]


def test_broken_sink_does_not_break_the_run(engine):
    class Broken:
        def emit(self, event):
            raise RuntimeError("sink down")

    assert engine.run(chain(3), sink=Broken()).ok


def test_execution_start_and_success_timestamps(engine):
    sink = ListSink()
    engine.run(chain(2), sink=sink)
    assert sink.of_type(ExecutionStart)[0].timestamp <= sink.of_type(ExecutionSuccess)[0].timestamp


def test_fast_constructor_builds_what_model_construct_builds():
    from graphengine.executor import constructor
    from nodes.utility import RegexReplace, StringReplace
    from tests.fakes import FakeSlow, FakeSwitch

    cases = [
        (StringReplace, {"string": "a", "find": "q", "replace": "r"}),
        (RegexReplace, {"string": "a", "regex_pattern": "x", "replace": "y"}),
        (FakeSlow, {"steps": 3, "delay": 0.0}),
        (FakeSwitch, {"select": True, "on_true": 4}),
    ]
    for node_class, inputs in cases:
        fast, reference = constructor(node_class)(**inputs), node_class.model_construct(**inputs)
        assert list(fast.__dict__.items()) == list(reference.__dict__.items())
        assert fast.model_fields_set == reference.model_fields_set
        assert fast == reference


def test_a_node_raising_system_exit_fails_the_prompt_not_the_process(engine):
    from nodes.utility import PreviewAny

    class Exiting(PreviewAny):
        class_type = "Exiting"

        def run(self, ctx):
            raise SystemExit(3)

    from graphengine.registry import NodePack, NodeRegistry
    from graphengine.validation import Validator

    engine.registry = NodeRegistry([*engine.registry.packs, NodePack("exit", (Exiting,))])
    engine.validator = Validator(engine.registry, engine.env)
    run = engine.run({"1": {"class_type": "Exiting", "inputs": {"source": 1}}})
    assert run.status == "error"
    assert run.error.data()["node_id"] == "1" and run.error.data()["exception_type"] == "SystemExit"


def test_error_inputs_summarise_edge_values_instead_of_dumping_them() -> None:
    from graphengine.executor import format_inputs

    class Model:  # stands in for a socket value whose repr is a whole module tree
        socket_type = "MODEL"

        def __repr__(self) -> str:
            return "UNet2DConditionModel(" + "layer, " * 10_000 + ")"

    formatted = format_inputs({"model": [Model()], "seed": [5], "text": ["a cat"], "scale": [7.5]})
    assert formatted == {"model": ["<MODEL>"], "seed": [5], "text": ["a cat"], "scale": [7.5]}
