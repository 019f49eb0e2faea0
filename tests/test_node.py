"""Node declaration → ComfyUI /object_info entry."""

from __future__ import annotations

from typing import Any, ClassVar

from graphengine.environment import DataPaths, Environment
from graphengine.node import Combo, Hidden, Input, Node, NodeContext, NodeOutputs, Output, object_info


class Sample(Node):
    """Does a sample thing."""

    display_name: ClassVar[str] = "Sample Node"
    category: ClassVar[str] = "testing"
    hidden: ClassVar[tuple[Hidden, ...]] = (Hidden.PROMPT, Hidden.UNIQUE_ID)

    seed: int = Input(0, min=0, max=2**64 - 1, control_after_generate=True, tooltip="The seed.")
    mode: str = Combo(lambda env: ["a", "b"], tooltip="Pick.")
    image: Any = Input(socket="IMAGE")
    strength: float = Input(1.0, min=0.0, max=2.0, step=0.01, optional=True)

    class Outputs(NodeOutputs):
        latent: Any = Output(socket="LATENT", tooltip="The latent.")
        names: list[str] = Output(name="names", is_list=True)

    def run(self, ctx: NodeContext) -> NodeOutputs:
        raise NotImplementedError


def test_object_info_shape_and_order(tmp_path):
    env = Environment(paths=DataPaths.under(tmp_path))
    entry = object_info(Sample, env)
    assert list(entry) == [
        "input", "input_order", "output", "output_is_list", "output_name", "name", "display_name",
        "description", "python_module", "category", "output_node", "output_tooltips",
    ]
    assert entry["input"] == {
        "required": {
            "seed": ["INT", {"default": 0, "min": 0, "max": 2**64 - 1, "control_after_generate": True, "tooltip": "The seed."}],
            "mode": [["a", "b"], {"tooltip": "Pick."}],
            "image": ["IMAGE"],
        },
        "optional": {"strength": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01}]},
        "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"},
    }
    assert entry["input_order"] == {"required": ["seed", "mode", "image"], "optional": ["strength"], "hidden": ["prompt", "unique_id"]}
    assert entry["output"] == ["LATENT", "STRING"]
    assert entry["output_is_list"] == [False, True]
    assert entry["output_name"] == ["LATENT", "names"]
    assert entry["display_name"] == "Sample Node" and entry["description"] == "Does a sample thing."
    assert entry["output_tooltips"] == ["The latent.", None]
    assert entry["output_node"] is False and entry["name"] == "Sample"
