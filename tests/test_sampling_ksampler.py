"""KSampler's pipeline on a tiny random-weight diffusers UNet: noise, schedules, CFG, masks, progress."""

from __future__ import annotations

import math

import pytest
import torch

from graphengine.errors import Interrupted
from nodes.sampling.denoiser import UNetDenoiser
from nodes.sampling.guidance import CFGDenoiser, _area_and_mult, calc_cond_batch, prepare_conds
from nodes.sampling.ksampler import PreviewOptions, SamplingSettings, fix_empty_latent_channels, sample_latent
from nodes.sampling.schedulers import DiscreteSchedule, StepWindow, calculate_sigmas, scaled_linear_sigmas
from nodes.sockets import Conditioning, ConditioningEntry, Latent
from tests.sampling_model import CallRecorder, RecordingContext, combine, text, tiny_model, tiny_unet

SIGMAS = scaled_linear_sigmas()
SIGMA_MAX = float(SIGMAS[-1])


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture
def recorder(model):
    rec = CallRecorder()
    handle = model.unet.register_forward_pre_hook(rec, with_kwargs=True)
    yield rec
    handle.remove()


def settings(**overrides) -> SamplingSettings:
    values = {"seed": 42, "steps": 4, "cfg": 7.0, "sampler_name": "euler", "scheduler": "karras"}
    values.update(overrides)
    return SamplingSettings(**values)


def empty(batch: int = 1, size: int = 8, **kwargs) -> Latent:
    return Latent(samples=torch.zeros(batch, 4, size, size), **kwargs)


POS, NEG = text(1), text(2)


def test_same_seed_same_latent_and_different_seed_different(model):
    first = sample_latent(model, POS, NEG, empty(), settings())
    again = sample_latent(model, POS, NEG, empty(), settings())
    other = sample_latent(model, POS, NEG, empty(), settings(seed=43))
    assert torch.equal(first.samples, again.samples)
    assert (first.samples - other.samples).abs().max() > 1e-2
    assert first.samples.dtype == torch.float32 and first.samples.device.type == "cpu"


def test_unet_first_sees_the_seeded_cpu_noise_at_the_top_timestep(model, recorder):
    sample_latent(model, POS, NEG, empty(batch=2), settings(seed=123))
    first = recorder.calls[0]
    noise = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(123))
    # txt2img: x_T = noise * sqrt(1 + σmax²); the UNet input is x_T / sqrt(1 + σ²) = noise
    assert first["sample"].shape == (4, 4, 8, 8)  # cond and uncond batched together
    assert torch.allclose(first["sample"][:2], noise, atol=1e-5)
    assert first["timestep"].tolist() == [999.0] * 4


def test_batch_index_picks_per_sample_draws(model, recorder):
    latent = empty(batch=2, batch_index=(2, 0))
    out = sample_latent(model, POS, NEG, latent, settings(seed=5, cfg=1.0))
    generator = torch.Generator().manual_seed(5)
    draws = [torch.randn((1, 4, 8, 8), generator=generator) for _ in range(3)]
    assert torch.allclose(recorder.calls[0]["sample"], torch.cat([draws[2], draws[0]]), atol=1e-5)
    assert out.batch_index == (2, 0)


def test_img2img_scales_the_latent_in_and_noises_it_at_the_first_sigma(model, recorder):
    latent = Latent(samples=torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9)))
    sample_latent(model, POS, NEG, latent, settings(seed=1, steps=5, denoise=0.5, scheduler="normal", cfg=1.0))
    sigma0 = float(calculate_sigmas(DiscreteSchedule(SIGMAS), "normal", 10)[-6])
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(1))
    expected = (latent.samples * 0.18215 + noise * sigma0) / math.sqrt(sigma0**2 + 1)
    assert torch.allclose(recorder.calls[0]["sample"], expected, atol=1e-5)
    expected_t = int((SIGMAS.log() - math.log(sigma0)).abs().argmin())
    assert recorder.calls[0]["timestep"].tolist() == [float(expected_t)]
    assert len(recorder.calls) == 5


def test_denoise_zero_and_late_start_return_the_input_unchanged(model, recorder):
    latent = Latent(samples=torch.randn(1, 4, 8, 8), noise_mask=torch.ones(1, 1, 8, 8))
    out = sample_latent(model, POS, NEG, latent, settings(denoise=0.0))
    assert torch.equal(out.samples, latent.samples) and out.noise_mask is latent.noise_mask
    out = sample_latent(model, POS, NEG, latent, settings(window=StepWindow(start_at_step=4, end_at_step=10000)))
    assert torch.equal(out.samples, latent.samples)
    assert recorder.calls == []


def test_advanced_split_run_equals_the_full_run(model):
    full = sample_latent(model, POS, NEG, empty(), settings(steps=8, window=StepWindow(0, 10000)))
    first_half = sample_latent(model, POS, NEG, empty(), settings(steps=8, window=StepWindow(0, 4, force_full_denoise=False)))
    second_half = sample_latent(
        model, POS, NEG, first_half, settings(steps=8, add_noise=False, window=StepWindow(4, 10000))
    )
    assert (second_half.samples - full.samples).abs().max() < 1e-4
    # A fully denoised first half differs: its last sigma was forced to 0.
    forced = sample_latent(model, POS, NEG, empty(), settings(steps=8, window=StepWindow(0, 4, force_full_denoise=True)))
    assert (forced.samples - first_half.samples).abs().max() > 1e-2


def test_plain_ksampler_matches_advanced_over_all_steps(model):
    plain = sample_latent(model, POS, NEG, empty(), settings(steps=5, sampler_name="dpmpp_2m"))
    advanced = sample_latent(model, POS, NEG, empty(), settings(steps=5, sampler_name="dpmpp_2m", window=StepWindow(0, 10000)))
    assert torch.equal(plain.samples, advanced.samples)


def test_cfg_one_skips_the_negative(model, recorder):
    sample_latent(model, POS, NEG, empty(batch=2), settings(cfg=1.0, steps=3))
    assert [c["sample"].shape[0] for c in recorder.calls] == [2, 2, 2]
    recorder.calls.clear()
    sample_latent(model, POS, NEG, empty(batch=2), settings(cfg=1.5, steps=3))
    assert [c["sample"].shape[0] for c in recorder.calls] == [4, 4, 4]


def test_cfg_pp_evaluates_the_negative_even_at_cfg_one(model, recorder):
    sample_latent(model, POS, NEG, empty(), settings(cfg=1.0, steps=2, sampler_name="euler_cfg_pp"))
    assert [c["sample"].shape[0] for c in recorder.calls] == [2, 2]


def _denoiser(model) -> UNetDenoiser:
    return UNetDenoiser(model.unet, DiscreteSchedule(SIGMAS), "eps")


def test_cfg_combines_separate_cond_and_uncond_predictions(model):
    denoiser = _denoiser(model)
    shape = (1, 4, 8, 8)
    pos, neg = prepare_conds(POS, NEG, denoiser, shape)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3)) * 3
    sigma = torch.tensor([3.0])
    with torch.no_grad():
        cond = CFGDenoiser(denoiser, pos, [], 1.0)(x, sigma)
        uncond = CFGDenoiser(denoiser, neg, [], 1.0)(x, sigma)
        guided = CFGDenoiser(denoiser, pos, neg, 6.5)(x, sigma)
    assert torch.allclose(guided, uncond + (cond - uncond) * 6.5, atol=1e-4)


def test_prompts_of_different_lengths_batch_by_repeating_tokens(model, recorder):
    long_negative = text(2, tokens=154)
    sample_latent(model, POS, long_negative, empty(), settings(steps=1))
    assert recorder.calls[0]["encoder_hidden_states"].shape == (2, 154, 32)


def test_area_conditioning_gets_a_same_area_negative_and_feathered_weights(model):
    denoiser = _denoiser(model)
    shape = (1, 4, 32, 32)
    area = text(3, area=(16, 16, 8, 8), strength=0.5)
    pos, neg = prepare_conds(combine(POS, area), NEG, denoiser, shape)
    assert len(pos) == 2 and len(neg) == 2
    assert neg[1].area == (16, 16, 8, 8) and neg[1].strength == 0.5 and neg[1].inputs is neg[0].inputs
    job = _area_and_mult(pos[1], torch.zeros(shape), 0)
    assert job.input_x.shape == (1, 4, 16, 16)
    column = job.mult[0, 0, :, 8]  # feather of min(8, 16 // 4) = 4 rows at each inner edge
    assert column[:4].tolist() == pytest.approx([0.125, 0.25, 0.375, 0.5])
    assert column[4:12].tolist() == pytest.approx([0.5] * 8)
    assert column[12:].tolist() == pytest.approx([0.5, 0.375, 0.25, 0.125])

    x = torch.randn(shape, generator=torch.Generator().manual_seed(4)) * 2
    sigma = torch.tensor([2.0])
    with torch.no_grad():
        with_area, = calc_cond_batch(denoiser, [pos], x, sigma)
        full_only, = calc_cond_batch(denoiser, [pos[:1]], x, sigma)
    outside = torch.ones(shape, dtype=torch.bool)
    outside[:, :, 8:24, 8:24] = False
    assert torch.allclose(with_area[outside], full_only[outside], atol=1e-5)
    assert (with_area[~outside] - full_only[~outside]).abs().max() > 1e-3


def test_conditioning_mask_limits_an_entry_to_its_region(model):
    denoiser = _denoiser(model)
    shape = (1, 4, 8, 8)
    mask = torch.zeros(1, 16, 16)
    mask[:, :, :8] = 1.0  # left half, at a different resolution than the latent
    masked = text(5, mask=mask)
    pos, _ = prepare_conds(combine(POS, masked), NEG, denoiser, shape)
    assert pos[1].mask.shape == (1, 8, 8)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(6))
    sigma = torch.tensor([1.5])
    with torch.no_grad():
        both, = calc_cond_batch(denoiser, [pos], x, sigma)
        first, = calc_cond_batch(denoiser, [pos[:1]], x, sigma)
    assert torch.allclose(both[..., 6:], first[..., 6:], atol=1e-5)  # right of the resized mask edge
    assert (both[..., :3] - first[..., :3]).abs().max() > 1e-3


def test_noise_mask_keeps_the_unmasked_region(model):
    original = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(8))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, 4:] = 1.0  # regenerate the right half
    latent = Latent(samples=original, noise_mask=mask)
    out = sample_latent(model, POS, NEG, latent, settings(steps=4))
    assert torch.allclose(out.samples[..., :3], original[..., :3], atol=1e-4)
    assert (out.samples[..., 5:] - original[..., 5:]).abs().max() > 1e-2
    assert out.noise_mask is mask
    # ddim is euler with the kept region noised from seed + 1: same result without a mask, different with.
    unmasked = Latent(samples=original)
    assert torch.equal(
        sample_latent(model, POS, NEG, unmasked, settings(sampler_name="ddim")).samples,
        sample_latent(model, POS, NEG, unmasked, settings(sampler_name="euler")).samples,
    )
    ddim = sample_latent(model, POS, NEG, latent, settings(sampler_name="ddim"))
    assert (ddim.samples[..., 5:] - out.samples[..., 5:]).abs().max() > 1e-4


def test_empty_latent_with_wrong_channels_is_widened():
    widened = fix_empty_latent_channels(torch.zeros(1, 3, 8, 8), 4)
    assert widened.shape == (1, 4, 8, 8)
    kept = torch.ones(1, 3, 8, 8)
    assert fix_empty_latent_channels(kept, 4) is kept


def test_progress_once_per_step_with_latent2rgb_previews(model):
    calls: list = []
    sample_latent(
        model, POS, NEG, empty(size=16), settings(steps=3, sampler_name="heun"),
        progress=lambda v, t, p: calls.append((v, t, p)), preview=PreviewOptions("latent2rgb", 256),
    )
    assert [(v, t) for v, t, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    preview = calls[-1][2]
    assert preview.image.size == (16, 16) and preview.format == "JPEG" and preview.max_size == 256
    calls.clear()
    sample_latent(model, POS, NEG, empty(), settings(steps=2), progress=lambda v, t, p: calls.append(p))
    assert calls == [None, None]  # previews off by default


def test_interrupt_takes_effect_within_one_step(model, recorder):
    ctx = RecordingContext(interrupt_at=2)
    with pytest.raises(Interrupted):
        sample_latent(model, POS, NEG, empty(), settings(steps=10, sampler_name="heun"), progress=ctx.progress)
    assert [v for v, _, _ in ctx.progress_calls] == [1, 2]
    assert len(recorder.calls) <= 3  # heun: two evaluations in step 1, the first of step 2
    assert model.runtime.activations >= 1


def test_unknown_sampler_or_scheduler_is_refused(model):
    with pytest.raises(ValueError, match="unknown sampler 'exp_heun_2_x0'"):
        sample_latent(model, POS, NEG, empty(), settings(sampler_name="exp_heun_2_x0"))
    with pytest.raises(ValueError, match="unknown scheduler 'align_your_steps'"):
        sample_latent(model, POS, NEG, empty(), settings(scheduler="align_your_steps"))


# --- prediction types and SDXL conditioning -------------------------------------------------------


class _AnalyticUNet(torch.nn.Module):
    """Outputs the exact eps / v target for a known x0 and noise (checks the denoiser's algebra)."""

    def __init__(self, x0: torch.Tensor, eps: torch.Tensor, prediction: str):
        super().__init__()
        self.x0, self.eps, self.prediction = x0, eps, prediction
        self.register_buffer("anchor", torch.zeros(1))

    def forward(self, sample, timestep, encoder_hidden_states=None, return_dict=False, **kwargs):
        if self.prediction == "eps":
            return (self.eps,)
        sigma = self.sigma
        alpha, sigma_vp = 1 / math.sqrt(1 + sigma**2), sigma / math.sqrt(1 + sigma**2)
        return (alpha * self.eps - sigma_vp * self.x0,)

    @property
    def dtype(self):
        return torch.float32

    @property
    def device(self):
        return torch.device("cpu")


@pytest.mark.parametrize("prediction", ["eps", "v_prediction"])
def test_denoiser_recovers_x0_from_exact_eps_and_v_predictions(prediction: str):
    generator = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 4, 8, 8, generator=generator), torch.randn(1, 4, 8, 8, generator=generator)
    unet = _AnalyticUNet(x0, eps, prediction)
    unet.sigma = 2.5
    denoiser = UNetDenoiser(unet, DiscreteSchedule(SIGMAS), prediction)
    from nodes.sampling.denoiser import ModelInputs

    denoised = denoiser.apply(x0 + 2.5 * eps, torch.tensor([2.5]), ModelInputs(context=torch.zeros(1, 77, 32)))
    assert torch.allclose(denoised, x0, atol=1e-5)


def test_sdxl_size_conditioning_defaults_to_the_image_size():
    model = tiny_model(tiny_unet(sdxl=True))
    rec = CallRecorder()
    model.unet.register_forward_pre_hook(rec, with_kwargs=True)
    positive = text(1, pooled=True, extras={"crop_w": 16, "target_width": 1024})
    sample_latent(model, positive, text(2, pooled=True), empty(size=8), settings(steps=1))
    ids = rec.calls[0]["added_cond_kwargs"]["time_ids"]
    # batch order is [negative, positive]: the batcher pops from the end
    assert ids.tolist() == [[64.0, 64.0, 0.0, 0.0, 64.0, 64.0], [64.0, 64.0, 0.0, 16.0, 64.0, 1024.0]]
    assert rec.calls[0]["added_cond_kwargs"]["text_embeds"].shape == (2, 16)
    with pytest.raises(ValueError, match="pooled"):
        sample_latent(model, text(1), text(2), empty(), settings(steps=1))


def test_sdxl_refiner_gets_aesthetic_scores():
    model = tiny_model(tiny_unet(sdxl=True, time_ids=5))
    rec = CallRecorder()
    model.unet.register_forward_pre_hook(rec, with_kwargs=True)
    sample_latent(model, text(1, pooled=True), text(2, pooled=True), empty(size=8), settings(steps=1))
    ids = rec.calls[0]["added_cond_kwargs"]["time_ids"]
    assert ids.tolist() == [[64.0, 64.0, 0.0, 0.0, 2.5], [64.0, 64.0, 0.0, 0.0, 6.0]]


@pytest.mark.parametrize(
    "name",
    ["euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde", "uni_pc", "lcm", "dpm_2", "dpm_fast", "dpm_adaptive",
     "euler_cfg_pp", "dpmpp_2m_cfg_pp", "res_multistep_ancestral", "er_sde", "seeds_3", "ipndm_v", "heunpp2",
     "deis", "sa_solver_pece"],
)
def test_model_backed_samplers_are_reproducible(model, name):
    a = sample_latent(model, POS, NEG, empty(), settings(sampler_name=name, steps=4))
    b = sample_latent(model, POS, NEG, empty(), settings(sampler_name=name, steps=4))
    assert torch.equal(a.samples, b.samples) and torch.isfinite(a.samples).all()


def test_conditioning_entries_are_not_mutated(model):
    entry = ConditioningEntry(embeds=torch.randn(1, 77, 32), area=(4, 4, 0, 0))
    positive = Conditioning((entry,))
    before = entry.embeds.clone()
    sample_latent(model, positive, NEG, empty(), settings(steps=2))
    assert torch.equal(entry.embeds, before) and positive.entries == (entry,)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_sampling_matches_cpu_for_a_deterministic_sampler():
    cpu_model = tiny_model(tiny_unet(seed=3))
    gpu_model = tiny_model(tiny_unet(seed=3).to("cuda", torch.float16))
    for name in ("euler", "dpmpp_2m", "uni_pc"):
        on_cpu = sample_latent(cpu_model, POS, NEG, empty(), settings(sampler_name=name, steps=6))
        on_gpu = sample_latent(gpu_model, POS, NEG, empty(), settings(sampler_name=name, steps=6))
        assert on_gpu.samples.device.type == "cpu" and on_gpu.samples.dtype == torch.float32
        assert (on_gpu.samples - on_cpu.samples).abs().max() < 0.05 * on_cpu.samples.abs().max()
    # ancestral step noise comes from a CUDA generator seeded with the seed itself
    a = sample_latent(gpu_model, POS, NEG, empty(), settings(sampler_name="euler_ancestral", steps=6))
    b = sample_latent(gpu_model, POS, NEG, empty(), settings(sampler_name="euler_ancestral", steps=6))
    assert torch.equal(a.samples, b.samples)


def test_area_outside_the_latent_is_a_clear_error(model):
    outside = text(3, area=(8, 8, 16, 0))
    with pytest.raises(ValueError, match="lies outside the 8x8 latent"):
        sample_latent(model, combine(POS, outside), NEG, empty(), settings(steps=1))


def test_text_embeddings_of_the_wrong_width_are_a_clear_error(model):
    wide = Conditioning((ConditioningEntry(embeds=torch.randn(1, 77, 768)),))
    with pytest.raises(ValueError, match="768-wide text embeddings but this model expects 32-wide"):
        sample_latent(model, wide, NEG, empty(), settings(steps=1))
