"""Sampler numerics on an analytic Gaussian denoiser, against exact solutions and diffusers' schedulers.

Data ``x0 ~ N(mu, s²)`` per element has the exact denoiser ``D(x, σ) = mu + s²/(s²+σ²)·(x - mu)`` and the
exact probability-flow ODE solution ``x(σ) = mu + (x(σ₀) - mu)·sqrt(s²+σ²)/sqrt(s²+σ₀²)``.
"""

from __future__ import annotations

import math

import pytest
import torch

from nodes.sampling.names import IMPLEMENTED_SAMPLERS, SAMPLER_NAMES
from nodes.sampling.noise import BrownianTreeNoise, initial_noise, step_noise_sampler
from nodes.sampling.samplers import SAMPLERS, SamplerRun
from nodes.sampling.schedulers import DiscreteSchedule, calculate_sigmas, sampler_schedule, scaled_linear_sigmas

MU, S = 0.3, 0.7
SCHEDULE = DiscreteSchedule(scaled_linear_sigmas())


class GaussianDenoiser:
    """Exact denoiser for N(MU, S²) data; counts its evaluations."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def exact_ode(x_start: torch.Tensor, sigma_start: float, sigma_end: float) -> torch.Tensor:
    return MU + (x_start - MU) * math.sqrt(S**2 + sigma_end**2) / math.sqrt(S**2 + sigma_start**2)


def run_sampler(name: str, x: torch.Tensor, sigmas: torch.Tensor, seed: int = 7, callback=None) -> torch.Tensor:
    return SAMPLERS[name].function(GaussianDenoiser(), x, sigmas, SamplerRun(seed=seed, callback=callback, schedule=SCHEDULE))


def test_sampler_table_matches_the_implemented_names():
    assert set(SAMPLERS) == IMPLEMENTED_SAMPLERS == set(SAMPLER_NAMES)  # every baseline ComfyUI name runs


@pytest.mark.parametrize(
    ("name", "order"),
    [
        ("euler", 1), ("heun", 2), ("dpm_2", 2), ("dpmpp_2m", 2), ("lms", 3), ("uni_pc", 3), ("uni_pc_bh2", 3),
        ("ipndm", 2), ("ipndm_v", 2), ("res_multistep", 2), ("heunpp2", 1), ("gradient_estimation", 1), ("deis", 3),
    ],
)
def test_deterministic_samplers_converge_to_the_exact_ode_solution_at_their_order(name: str, order: int):
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    errors = []
    for steps in (15, 30):
        sigmas = sampler_schedule(SCHEDULE, "karras", name, steps)[:-1]  # stop at sigma_min: all steps integrate
        x = x0 * sigmas[0]
        result = run_sampler(name, x, sigmas)
        errors.append((result.double() - exact_ode(x.double(), float(sigmas[0]), float(sigmas[-1]))).abs().max().item())
    assert errors[1] < 0.2 / 4 ** (order - 1)
    assert errors[0] / errors[1] > 0.8 * 2**order  # doubling the steps cuts the error by ~2^order


def test_final_step_to_zero_returns_the_denoised_estimate():
    sigmas = calculate_sigmas(SCHEDULE, "karras", 10)
    x = initial_noise((1, 4, 8, 8), 2) * sigmas[0]
    seen: list[torch.Tensor] = []
    for name in ("euler", "lms", "dpmpp_2m", "dpmpp_2m_sde", "heun"):
        seen.clear()
        result = run_sampler(name, x, sigmas, callback=lambda i, x_, d: seen.append(d))
        assert (result - seen[-1]).abs().max() < 1e-5, name


@pytest.mark.parametrize(
    ("name", "steps"),
    [
        ("euler_ancestral", 100),  # first order: the variance deficit only fades with many steps
        ("ddpm", 100),
        ("dpm_2_ancestral", 25),
        ("dpmpp_2s_ancestral", 25),
        ("dpmpp_sde", 25),
        ("dpmpp_2m_sde", 25),
        ("dpmpp_2m_sde_heun", 25),
        ("dpmpp_3m_sde", 25),
        ("res_multistep_ancestral", 25),
        ("er_sde", 25),
        ("seeds_2", 25),
        ("seeds_3", 25),
        ("sa_solver", 25),
        ("sa_solver_pece", 25),
    ],
)
def test_stochastic_samplers_sample_the_data_distribution(name: str, steps: int):
    sigmas = sampler_schedule(SCHEDULE, "karras", name, steps)
    x = initial_noise((1, 4, 64, 64), seed=3) * sigmas[0]
    result = run_sampler(name, x, sigmas, seed=3)
    assert result.mean().item() == pytest.approx(MU, abs=0.03)
    assert result.std().item() == pytest.approx(S, rel=0.08)
    # …and the result is not just the deterministic ODE answer: fresh noise went in.
    assert (result - exact_ode(x, float(sigmas[0]), 0.0)).abs().mean() > 0.05


def test_lcm_jumps_to_the_denoised_estimate_and_renoises_with_seeded_noise():
    sigmas = calculate_sigmas(SCHEDULE, "simple", 4)
    x = initial_noise((1, 4, 8, 8), seed=3) * sigmas[0]
    inputs: list[torch.Tensor] = []
    denoised: list[torch.Tensor] = []
    result = run_sampler("lcm", x, sigmas, seed=9, callback=lambda i, x_, d: (inputs.append(x_), denoised.append(d)))
    assert torch.equal(result, denoised[-1])
    generator = torch.Generator().manual_seed(10)  # CPU step noise: seed + 1
    expected_second_input = denoised[0] + torch.randn(x.shape, generator=generator) * sigmas[1]
    assert torch.allclose(inputs[1], expected_second_input, atol=1e-6)


@pytest.mark.parametrize("name", sorted(IMPLEMENTED_SAMPLERS - {"dpm_fast", "dpm_adaptive"}))
def test_one_report_per_step_and_same_seed_same_result(name: str):
    sigmas = sampler_schedule(SCHEDULE, "normal", name, 6)
    x = initial_noise((1, 4, 8, 8), seed=11) * sigmas[0]
    steps: list[int] = []
    guidance = AnalyticCFG(MU, MU + 0.2, cfg=3.0)
    first = SAMPLERS[name].function(guidance, x, sigmas, SamplerRun(seed=5, callback=lambda i, x_, d: steps.append(i), guidance=guidance, schedule=SCHEDULE))
    assert steps == list(range(len(sigmas) - 1))
    second = SAMPLERS[name].function(guidance, x, sigmas, SamplerRun(seed=5, guidance=guidance, schedule=SCHEDULE))
    assert torch.equal(first, second)


class AnalyticCFG:
    """CFG over two exact Gaussian denoisers (data means ``mu_cond`` / ``mu_uncond``), exposing the
    unconditional prediction the way ``CFGDenoiser`` does for CFG++ samplers."""

    def __init__(self, mu_cond: float, mu_uncond: float, cfg: float):
        self.mu_cond, self.mu_uncond, self.cfg = mu_cond, mu_uncond, cfg
        self.keep_uncond = False
        self.last_uncond = None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        shrink = S**2 / (S**2 + sigma**2)
        cond = self.mu_cond + shrink * (x - self.mu_cond)
        uncond = self.mu_uncond + shrink * (x - self.mu_uncond)
        self.last_uncond = uncond
        return uncond + (cond - uncond) * self.cfg


@pytest.mark.parametrize(
    ("cfg_pp", "base"),
    [
        ("euler_cfg_pp", "euler"),
        ("euler_ancestral_cfg_pp", "euler_ancestral"),
        ("dpmpp_2m_cfg_pp", "dpmpp_2m"),
        ("dpmpp_2s_ancestral_cfg_pp", "dpmpp_2s_ancestral"),
        ("res_multistep_cfg_pp", "res_multistep"),
        ("res_multistep_ancestral_cfg_pp", "res_multistep_ancestral"),
        ("gradient_estimation_cfg_pp", "gradient_estimation"),
    ],
)
def test_cfg_pp_samplers_reduce_to_their_base_sampler_without_guidance(cfg_pp: str, base: str):
    sigmas = calculate_sigmas(SCHEDULE, "karras", 8)
    x = initial_noise((1, 4, 8, 8), seed=4) * sigmas[0]

    def run(name: str, guidance: AnalyticCFG) -> torch.Tensor:
        return SAMPLERS[name].function(guidance, x, sigmas, SamplerRun(seed=6, guidance=guidance))

    same = AnalyticCFG(MU, MU, cfg=1.0)
    assert (run(cfg_pp, same) - run(base, AnalyticCFG(MU, MU, cfg=1.0))).abs().max() < 1e-4
    assert same.keep_uncond  # CFG++ asks for the unconditional prediction even at cfg 1
    guided = AnalyticCFG(MU, MU + 0.5, cfg=4.0)
    assert (run(cfg_pp, guided) - run(base, AnalyticCFG(MU, MU + 0.5, cfg=4.0))).abs().max() > 1e-3


def test_cfg_pp_without_guidance_is_a_clear_error():
    sigmas = calculate_sigmas(SCHEDULE, "karras", 4)
    with pytest.raises(ValueError, match="CFG\\+\\+"):
        run_sampler("euler_cfg_pp", torch.zeros(1, 4, 8, 8), sigmas)


def test_dpm_fast_spends_one_evaluation_per_step_and_converges_to_sigma_min():
    x0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    for steps, tolerance in ((10, 1e-2), (30, 1e-3)):
        sigmas = calculate_sigmas(SCHEDULE, "karras", steps)
        denoiser, reports = GaussianDenoiser(), []
        x = x0 * sigmas[0]
        result = SAMPLERS["dpm_fast"].function(denoiser, x, sigmas, SamplerRun(seed=1, callback=lambda i, x_, d: reports.append(i)))
        assert denoiser.calls == steps
        assert reports == list(range(steps // 3 + 1))  # one report per solver step (orders 3, …, 3, rest)
        # it integrates to the last non-zero sigma, as ComfyUI's does
        assert (result - exact_ode(x, float(sigmas[0]), float(sigmas[-2]))).abs().max() < tolerance


def test_dpm_adaptive_reaches_sigma_min_within_its_tolerance():
    sigmas = calculate_sigmas(SCHEDULE, "karras", 10)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    denoiser = GaussianDenoiser()
    result = SAMPLERS["dpm_adaptive"].function(denoiser, x, sigmas, SamplerRun(seed=1))
    expected = exact_ode(x, float(sigmas[0]), float(sigmas[-2]))
    assert (result - expected).abs().max() < 0.05 * expected.abs().max()
    assert denoiser.calls % 3 == 0 and denoiser.calls >= 3  # third-order steps, three evaluations each


def test_different_seeds_give_different_stochastic_results():
    sigmas = calculate_sigmas(SCHEDULE, "karras", 8)
    x = initial_noise((1, 4, 8, 8), seed=1) * sigmas[0]
    for name in ("euler_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "lcm"):
        assert not torch.allclose(run_sampler(name, x, sigmas, seed=1), run_sampler(name, x, sigmas, seed=2))
    assert torch.equal(run_sampler("euler", x, sigmas, seed=1), run_sampler("euler", x, sigmas, seed=2))


def test_initial_noise_is_torch_randn_from_a_cpu_generator_and_batch_index_picks_draws():
    expected = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(1234))
    assert torch.equal(initial_noise((2, 4, 8, 8), 1234), expected)
    generator = torch.Generator().manual_seed(99)
    draws = [torch.randn((1, 4, 8, 8), generator=generator) for _ in range(4)]
    picked = initial_noise((3, 4, 8, 8), 99, batch_index=(3, 1, 3))
    assert torch.equal(picked, torch.cat([draws[3], draws[1], draws[3]]))
    assert torch.equal(initial_noise((1, 4, 8, 8), 2**64 - 1), torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(2**64 - 1)))


def test_ancestral_step_noise_on_cpu_is_seeded_with_seed_plus_one():
    x = torch.zeros(1, 4, 8, 8)
    noise = step_noise_sampler(x, seed=42)
    generator = torch.Generator().manual_seed(43)
    expected = [torch.randn(x.shape, generator=generator) for _ in range(2)]
    assert torch.equal(noise(torch.tensor(1.0), torch.tensor(0.5)), expected[0])
    assert torch.equal(noise(torch.tensor(0.5), torch.tensor(0.2)), expected[1])


def test_brownian_tree_noise_is_seeded_standard_normal_and_consistent():
    x = torch.zeros(1, 4, 32, 32)
    lo, hi = torch.tensor(0.03), torch.tensor(14.6)
    a = BrownianTreeNoise(x, lo, hi, seed=5, on_cpu=True)
    b = BrownianTreeNoise(x, lo, hi, seed=5, on_cpu=True)
    c = BrownianTreeNoise(x, lo, hi, seed=6, on_cpu=True)
    s0, s1 = torch.tensor(10.0), torch.tensor(5.0)
    first = a(s0, s1)
    assert torch.equal(first, b(s0, s1)) and not torch.allclose(first, c(s0, s1))
    assert first.std().item() == pytest.approx(1.0, rel=0.1) and abs(first.mean().item()) < 0.1
    # Brownian increments add up: W(10→5) + W(5→2) = W(10→2) (each divided by sqrt of its length).
    s2 = torch.tensor(2.0)
    whole = a(s0, s2) * (s0 - s2).sqrt()
    parts = a(s0, s1) * (s0 - s1).sqrt() + a(s1, s2) * (s1 - s2).sqrt()
    assert torch.allclose(whole, parts, atol=1e-4)


# --- against diffusers' schedulers, where the algorithm is the same --------------------------------


def _eps(denoiser: GaussianDenoiser, x_ve: torch.Tensor, sigma: float) -> torch.Tensor:
    return (x_ve - denoiser(x_ve, torch.tensor([sigma]))) / sigma


def _diffusers_ve_loop(scheduler, sigmas: torch.Tensor, x: torch.Tensor, generator=None) -> torch.Tensor:
    """Drive a diffusers scheduler that works on VE samples (Euler, Euler a, LMS) with our sigmas."""
    scheduler.set_timesteps(len(sigmas) - 1)
    scheduler.sigmas = sigmas.clone()
    denoiser = GaussianDenoiser()
    for i, t in enumerate(scheduler.timesteps):
        kwargs = {"generator": generator} if generator is not None else {}
        x = scheduler.step(_eps(denoiser, x, float(sigmas[i])), t, x, **kwargs).prev_sample
    return x


def _diffusers_kwargs():
    return {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def test_euler_matches_diffusers_euler_discrete():
    from diffusers import EulerDiscreteScheduler

    sigmas = calculate_sigmas(SCHEDULE, "karras", 12)
    x = initial_noise((1, 4, 8, 8), 1) * sigmas[0]
    ours = run_sampler("euler", x, sigmas)
    theirs = _diffusers_ve_loop(EulerDiscreteScheduler(**_diffusers_kwargs()), sigmas, x)
    assert (ours - theirs).abs().max() < 1e-5


def test_euler_ancestral_matches_diffusers_with_the_same_noise_stream():
    from diffusers import EulerAncestralDiscreteScheduler

    sigmas = calculate_sigmas(SCHEDULE, "normal", 10)
    x = initial_noise((1, 4, 8, 8), 1) * sigmas[0]
    ours = run_sampler("euler_ancestral", x, sigmas, seed=21)
    # our CPU step noise comes from a generator seeded with seed + 1, one draw per step
    theirs = _diffusers_ve_loop(EulerAncestralDiscreteScheduler(**_diffusers_kwargs()), sigmas, x, torch.Generator().manual_seed(22))
    assert (ours - theirs).abs().max() < 1e-4


def test_lms_matches_diffusers_lms_discrete():
    from diffusers import LMSDiscreteScheduler

    # ComfyUI returns x0 on a last step to sigma 0; diffusers integrates it. Compare a leftover-noise
    # window where both integrate every step.
    sigmas = calculate_sigmas(SCHEDULE, "karras", 12)[:10]
    x = initial_noise((1, 4, 8, 8), 1) * sigmas[0]
    ours = run_sampler("lms", x, sigmas)
    scheduler = LMSDiscreteScheduler(**_diffusers_kwargs())
    theirs = _diffusers_ve_loop(scheduler, sigmas, x)
    assert (ours - theirs).abs().max() < 1e-4


def _diffusers_vp_loop(scheduler, sigmas: torch.Tensor, x_ve: torch.Tensor) -> torch.Tensor:
    """Drive a diffusers VP-space multistep scheduler (DPM-Solver++, UniPC) with our sigmas."""
    scheduler.set_timesteps(len(sigmas) - 1)
    scheduler.sigmas = sigmas.clone()
    denoiser = GaussianDenoiser()
    x = x_ve / math.sqrt(1 + float(sigmas[0]) ** 2)
    for i, t in enumerate(scheduler.timesteps):
        sigma = float(sigmas[i])
        x_ve_i = x * math.sqrt(1 + sigma**2)
        x = scheduler.step(_eps(denoiser, x_ve_i, sigma), t, x).prev_sample
    return x * math.sqrt(1 + float(sigmas[-1]) ** 2)


def test_dpmpp_2m_matches_diffusers_dpm_solver_multistep():
    from diffusers import DPMSolverMultistepScheduler

    sigmas = calculate_sigmas(SCHEDULE, "karras", 10)
    x = initial_noise((1, 4, 8, 8), 1) * sigmas[0]
    ours = run_sampler("dpmpp_2m", x, sigmas)
    scheduler = DPMSolverMultistepScheduler(
        **_diffusers_kwargs(), algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"
    )
    theirs = _diffusers_vp_loop(scheduler, sigmas, x)
    assert (ours - theirs).abs().max() < 1e-4


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_uni_pc_matches_diffusers_unipc_multistep(variant: str):
    from diffusers import UniPCMultistepScheduler

    name = "uni_pc" if variant == "bh1" else "uni_pc_bh2"
    sigmas = sampler_schedule(SCHEDULE, "karras", name, 10)
    x = initial_noise((1, 4, 8, 8), 1) * sigmas[0]
    ours = run_sampler(name, x, sigmas)
    unipc_sigmas = sigmas.clone()
    unipc_sigmas[-1] = 0.001  # ComfyUI's UniPC stops at sigma 0.001 instead of 0
    scheduler = UniPCMultistepScheduler(**_diffusers_kwargs(), solver_order=3, solver_type=variant, predict_x0=True)
    theirs = _diffusers_vp_loop(scheduler, unipc_sigmas, x)
    assert (ours - theirs).abs().max() < 1e-4


def test_brownian_tree_noise_equals_diffusers_brownian_tree_sampler():
    from diffusers.schedulers.scheduling_dpmsolver_sde import BrownianTreeNoiseSampler

    x = torch.zeros(1, 4, 8, 8)
    sigmas = calculate_sigmas(SCHEDULE, "karras", 6)
    lo, hi = sigmas[sigmas > 0].min(), sigmas.max()
    ours = BrownianTreeNoise(x, lo, hi, seed=77, on_cpu=True)
    theirs = BrownianTreeNoiseSampler(x, lo, hi, seed=77)
    for i in range(len(sigmas) - 2):
        assert torch.equal(ours(sigmas[i], sigmas[i + 1]), theirs(sigmas[i], sigmas[i + 1]))
