"""Scheduler numerics against closed-form and hand-computed sigma tables (ComfyUI's definitions)."""

from __future__ import annotations

import math
import sys
import subprocess

import numpy as np
import pytest
import torch

from nodes.sampling.names import DISCARD_PENULTIMATE_SIGMA_SAMPLERS, SCHEDULER_NAMES
from nodes.sampling.schedulers import (
    SCHEDULERS,
    DiscreteSchedule,
    StepWindow,
    calculate_sigmas,
    denoise_schedule,
    sampler_schedule,
    scaled_linear_sigmas,
    window_schedule,
)


@pytest.fixture(scope="module")
def schedule() -> DiscreteSchedule:
    return DiscreteSchedule(scaled_linear_sigmas())


def test_names_table_imports_without_torch():
    code = "import sys, nodes.sampling.names as n, nodes.sampling; assert 'torch' not in sys.modules; print(len(n.SAMPLER_NAMES))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "42"


def test_scheduler_table_is_comfyuis_list_in_order():
    assert tuple(SCHEDULERS) == SCHEDULER_NAMES


def test_discrete_sigmas_match_diffusers_scaled_linear_schedule():
    from diffusers import DDPMScheduler

    ddpm = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    ac = ddpm.alphas_cumprod.double()
    expected = ((1 - ac) / ac).sqrt()
    ours = scaled_linear_sigmas().double()
    assert ours.shape == (1000,)
    assert torch.allclose(ours, expected, rtol=2e-5)
    assert ours[0] == pytest.approx(0.029168, abs=1e-5) and ours[-1] == pytest.approx(14.614642, abs=1e-4)


def test_timestep_is_nearest_index_in_log_sigma(schedule: DiscreteSchedule):
    table = schedule.sigmas
    assert schedule.timestep(table[[0, 10, 500, 999]]).tolist() == [0, 10, 500, 999]
    between = (table[499].double().log() * 0.6 + table[500].double().log() * 0.4).exp().float()
    assert int(schedule.timestep(between.reshape(1))) == 499
    assert float(schedule.sigma(torch.tensor(321.0))) == pytest.approx(float(table[321]), rel=1e-6)
    half = math.exp((math.log(table[10]) + math.log(table[11])) / 2)
    assert float(schedule.sigma(torch.tensor(10.5))) == pytest.approx(half, rel=1e-6)


def test_karras_matches_closed_form(schedule: DiscreteSchedule):
    smin, smax, rho, n = float(schedule.sigma_min), float(schedule.sigma_max), 7.0, 10
    expected = [(smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho for i in range(n)]
    sigmas = calculate_sigmas(schedule, "karras", n)
    assert sigmas.dtype == torch.float32 and len(sigmas) == n + 1 and sigmas[-1] == 0
    assert np.allclose(sigmas[:-1].double().numpy(), expected, rtol=1e-5)


def test_exponential_matches_closed_form(schedule: DiscreteSchedule):
    smin, smax, n = float(schedule.sigma_min), float(schedule.sigma_max), 7
    expected = [math.exp(math.log(smax) + i / (n - 1) * (math.log(smin) - math.log(smax))) for i in range(n)]
    sigmas = calculate_sigmas(schedule, "exponential", n)
    assert np.allclose(sigmas[:-1].double().numpy(), expected, rtol=1e-5) and sigmas[-1] == 0


def test_kl_optimal_matches_closed_form(schedule: DiscreteSchedule):
    smin, smax, n = float(schedule.sigma_min), float(schedule.sigma_max), 5
    expected = [math.tan((1 - i / (n - 1)) * math.atan(smax) + i / (n - 1) * math.atan(smin)) for i in range(n)]
    sigmas = calculate_sigmas(schedule, "kl_optimal", n)
    assert np.allclose(sigmas[:-1].double().numpy(), expected, rtol=1e-5) and sigmas[-1] == 0


def test_simple_takes_evenly_strided_table_entries(schedule: DiscreteSchedule):
    table = schedule.sigmas
    assert calculate_sigmas(schedule, "simple", 4).tolist() == [float(table[i]) for i in (999, 749, 499, 249)] + [0.0]
    # 1000 / 3 = 333.33…: indices 999, 999 - 333, 999 - 666
    assert calculate_sigmas(schedule, "simple", 3).tolist() == [float(table[i]) for i in (999, 666, 333)] + [0.0]


def test_ddim_uniform_strides_from_index_one(schedule: DiscreteSchedule):
    table = schedule.sigmas
    assert calculate_sigmas(schedule, "ddim_uniform", 4).tolist() == [float(table[i]) for i in (751, 501, 251, 1)] + [0.0]


def test_normal_interpolates_timesteps_in_log_sigma(schedule: DiscreteSchedule):
    log = schedule.sigmas.double().log()
    mid = math.exp(0.5 * (log[499] + log[500]))
    sigmas = calculate_sigmas(schedule, "normal", 3)  # timesteps 999, 499.5, 0
    assert np.allclose(sigmas.double().numpy(), [float(schedule.sigmas[999]), mid, float(schedule.sigmas[0]), 0.0], rtol=1e-6)


def test_sgm_uniform_drops_the_last_of_steps_plus_one_timesteps(schedule: DiscreteSchedule):
    log = schedule.sigmas.double().log()

    def at(t: float) -> float:
        lo = math.floor(t)
        w = t - lo
        return math.exp((1 - w) * log[lo] + w * log[min(lo + 1, 999)])

    sigmas = calculate_sigmas(schedule, "sgm_uniform", 4)  # linspace(999, 0, 5)[:-1]
    assert np.allclose(sigmas.double().numpy(), [at(999), at(749.25), at(499.5), at(249.75), 0.0], rtol=1e-6)


def test_beta_uses_beta_distribution_quantiles(schedule: DiscreteSchedule):
    # Beta(0.6, 0.6) is symmetric: quantile 0.5 is 0.5 → timestep rint(499.5) = 500.
    assert calculate_sigmas(schedule, "beta", 2).tolist() == [float(schedule.sigmas[999]), float(schedule.sigmas[500]), 0.0]
    sigmas = calculate_sigmas(schedule, "beta", 20)
    assert sigmas[0] == schedule.sigmas[999] and sigmas[-1] == 0 and bool((sigmas[:-1] > sigmas[1:]).all())


def test_linear_quadratic_hand_computed(schedule: DiscreteSchedule):
    smax = float(schedule.sigma_max)
    assert np.allclose(calculate_sigmas(schedule, "linear_quadratic", 1).numpy(), [smax, 0.0])
    expected = [1.0, 0.9875, 0.975, 0.725, 0.0]
    assert np.allclose(calculate_sigmas(schedule, "linear_quadratic", 4).double().numpy(), [smax * f for f in expected], rtol=1e-6)


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_every_scheduler_gives_steps_plus_one_descending_sigmas_ending_at_zero(schedule: DiscreteSchedule, name: str):
    for steps in (1, 2, 7, 20):
        sigmas = calculate_sigmas(schedule, name, steps)
        assert sigmas.dtype == torch.float32 and sigmas[-1] == 0
        if name == "beta":  # repeated timesteps are dropped
            assert len(sigmas) <= steps + 1
        elif name == "ddim_uniform":  # every (1000 // steps)-th entry from index 1: may be a few more
            assert len(sigmas) == len(range(1, 1000, 1000 // steps)) + 1
        else:
            assert len(sigmas) == steps + 1, (name, steps)
        assert bool((sigmas[:-1] >= sigmas[1:]).all())


def test_unknown_scheduler_is_a_clear_error(schedule: DiscreteSchedule):
    with pytest.raises(ValueError, match="unknown scheduler 'nope'"):
        calculate_sigmas(schedule, "nope", 4)


def test_penultimate_sigma_dropped_for_dpm2_and_unipc(schedule: DiscreteSchedule):
    full = calculate_sigmas(schedule, "karras", 6)
    for sampler in DISCARD_PENULTIMATE_SIGMA_SAMPLERS:
        sigmas = sampler_schedule(schedule, "karras", sampler, 5)
        assert sigmas.tolist() == full[:5].tolist() + [0.0]
    assert sampler_schedule(schedule, "karras", "euler", 5).tolist() == calculate_sigmas(schedule, "karras", 5).tolist()


def test_denoise_keeps_the_tail_of_a_longer_schedule(schedule: DiscreteSchedule):
    full = calculate_sigmas(schedule, "normal", 20)
    assert denoise_schedule(schedule, "normal", "euler", 10, 0.5).tolist() == full[-11:].tolist()
    longer = calculate_sigmas(schedule, "karras", int(7 / 0.3))  # int(23.33) = 23 steps
    assert denoise_schedule(schedule, "karras", "euler", 7, 0.3).tolist() == longer[-8:].tolist()
    assert denoise_schedule(schedule, "normal", "euler", 10, 1.0).tolist() == calculate_sigmas(schedule, "normal", 10).tolist()
    assert denoise_schedule(schedule, "normal", "euler", 10, 0.0).numel() == 0


def test_step_window_semantics(schedule: DiscreteSchedule):
    full = calculate_sigmas(schedule, "karras", 10)
    # end inside the schedule, fully denoised: truncated and last sigma forced to 0
    sigmas = window_schedule(full, StepWindow(0, 6, force_full_denoise=True))
    assert sigmas.tolist() == full[:6].tolist() + [0.0]
    # leftover noise: the 7th sigma stays
    assert window_schedule(full, StepWindow(0, 6, force_full_denoise=False)).tolist() == full[:7].tolist()
    # start inside: the tail
    assert window_schedule(full, StepWindow(4, 10000)).tolist() == full[4:].tolist()
    assert window_schedule(full, StepWindow(6, 10000, force_full_denoise=False)).tolist() == full[6:].tolist()
    # start at or past the last step: nothing to sample
    assert window_schedule(full, StepWindow(10, 10000)) is None
    assert window_schedule(full, StepWindow(5, 5)) is None
    assert full[-1] == 0  # the window never mutates its input
    assert window_schedule(full, StepWindow(0, 3, True)) is not None and full[3] != 0
