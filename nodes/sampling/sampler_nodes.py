"""KSampler and KSamplerAdvanced: ComfyUI's sampling nodes (importing this module does not import torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from graphengine.node import Combo, Input, Node, NodeContext, NodeOutputs, Output
from nodes.sampling.names import SAMPLER_NAMES, SCHEDULER_NAMES, unsupported_sampler_message, unsupported_scheduler_message
from nodes.sockets import Conditioning, Latent, Model

if TYPE_CHECKING:
    from graphengine.environment import Environment

MAX_SEED = 0xFFFF_FFFF_FFFF_FFFF


def _check_names(literals: Mapping[str, Any]) -> str | None:
    sampler = literals.get("sampler_name")
    if isinstance(sampler, str):
        message = unsupported_sampler_message(sampler)
        if message:
            return message
    scheduler = literals.get("scheduler")
    if isinstance(scheduler, str):
        return unsupported_scheduler_message(scheduler)
    return None


def _run_sampler(ctx: NodeContext, model: Model, positive: Conditioning, negative: Conditioning, latent: Latent, settings: Any) -> Latent:
    from nodes.sampling.ksampler import PreviewOptions, sample_latent

    preview = PreviewOptions(method=ctx.env.preview.method, max_size=ctx.env.preview.max_size)
    return sample_latent(model, positive, negative, latent, settings, progress=ctx.progress, preview=preview)


class KSampler(Node):
    """Uses the provided model, positive and negative conditioning to denoise the latent image."""

    display_name: ClassVar[str] = "KSampler"
    category: ClassVar[str] = "sampling"

    model: Model = Input(tooltip="The model that denoises the latent.")
    seed: int = Input(
        0, min=0, max=MAX_SEED, control_after_generate=True, tooltip="Seed of the random noise; the same seed gives the same image."
    )
    steps: int = Input(20, min=1, max=10000, tooltip="Number of denoising steps.")
    cfg: float = Input(
        8.0, min=0.0, max=100.0, step=0.1, round=0.01,
        tooltip="Classifier-free guidance scale: how strongly the result follows the prompt.",
    )
    sampler_name: str = Combo(SAMPLER_NAMES, tooltip="The sampling algorithm.")
    scheduler: str = Combo(SCHEDULER_NAMES, tooltip="How the noise levels are spaced over the steps.")
    positive: Conditioning = Input(tooltip="What the image should contain.")
    negative: Conditioning = Input(tooltip="What the image should not contain.")
    latent_image: Latent = Input(tooltip="The latent to denoise (empty for text-to-image).")
    denoise: float = Input(
        1.0, min=0.0, max=1.0, step=0.01,
        tooltip="How much of the latent to replace: 1.0 starts from pure noise, lower values keep more of the input.",
    )

    class Outputs(NodeOutputs):
        latent: Latent = Output(name="LATENT", tooltip="The denoised latent.")

    @classmethod
    def validate_inputs(cls, literals: Mapping[str, Any], env: Environment) -> str | None:
        return _check_names(literals)

    def run(self, ctx: NodeContext) -> KSampler.Outputs:
        from nodes.sampling.ksampler import SamplingSettings

        settings = SamplingSettings(
            seed=self.seed, steps=self.steps, cfg=self.cfg, sampler_name=self.sampler_name,
            scheduler=self.scheduler, denoise=self.denoise,
        )
        latent = _run_sampler(ctx, self.model, self.positive, self.negative, self.latent_image, settings)
        return self.Outputs(latent=latent)


class KSamplerAdvanced(Node):
    display_name: ClassVar[str] = "KSampler (Advanced)"
    category: ClassVar[str] = "sampling"

    model: Model = Input()
    add_noise: str = Combo(["enable", "disable"])
    noise_seed: int = Input(0, min=0, max=MAX_SEED, control_after_generate=True)
    steps: int = Input(20, min=1, max=10000)
    cfg: float = Input(8.0, min=0.0, max=100.0, step=0.1, round=0.01)
    sampler_name: str = Combo(SAMPLER_NAMES)
    scheduler: str = Combo(SCHEDULER_NAMES)
    positive: Conditioning = Input()
    negative: Conditioning = Input()
    latent_image: Latent = Input()
    start_at_step: int = Input(0, min=0, max=10000)
    end_at_step: int = Input(10000, min=0, max=10000)
    return_with_leftover_noise: str = Combo(["disable", "enable"])

    class Outputs(NodeOutputs):
        latent: Latent = Output(name="LATENT")

    @classmethod
    def validate_inputs(cls, literals: Mapping[str, Any], env: Environment) -> str | None:
        return _check_names(literals)

    def run(self, ctx: NodeContext) -> KSamplerAdvanced.Outputs:
        from nodes.sampling.ksampler import SamplingSettings
        from nodes.sampling.schedulers import StepWindow

        settings = SamplingSettings(
            seed=self.noise_seed, steps=self.steps, cfg=self.cfg, sampler_name=self.sampler_name,
            scheduler=self.scheduler, denoise=1.0, add_noise=self.add_noise != "disable",
            window=StepWindow(
                start_at_step=self.start_at_step, end_at_step=self.end_at_step,
                force_full_denoise=self.return_with_leftover_noise != "enable",
            ),
        )
        latent = _run_sampler(ctx, self.model, self.positive, self.negative, self.latent_image, settings)
        return self.Outputs(latent=latent)
