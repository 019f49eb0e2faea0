"""Sampler algorithms (k-diffusion family) as ComfyUI runs them, and the name → sampler table.

Each sampler integrates from ``sigmas[0]`` to ``sigmas[-1]`` with a denoiser ``model(x, sigma[B]) ->
x0`` in the variance-exploding convention (``x = x0 + sigma * eps``), calling ``run.report(i, x,
denoised)`` once per step right after the step's first model evaluation. Step noise is seeded from
``run.seed`` the way ComfyUI seeds it (see ``noise.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from scipy import integrate

from nodes.sampling.denoiser import noise_scaling
from nodes.sampling.noise import BrownianTreeNoise, NoiseSampler, step_noise_sampler

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class StepCallback(Protocol):
    def __call__(self, step: int, x: torch.Tensor, denoised: torch.Tensor) -> None: ...


@dataclass
class SamplerRun:
    """What a sampler needs besides the model and sigmas: the seed and the per-step report."""

    seed: int | None = None
    callback: StepCallback | None = None
    guidance: Any = None  # the CFGDenoiser, for samplers that need the unconditional prediction (CFG++)
    schedule: Any = None  # the model's DiscreteSchedule, for samplers that depend on it (SA-Solver)

    def report(self, step: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        if self.callback is not None:
            self.callback(step, x, denoised)


SamplerFunction = Callable[[Denoiser, torch.Tensor, torch.Tensor, SamplerRun], torch.Tensor]


# --- helpers --------------------------------------------------------------------------------------


def _to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE derivative ``dx/dsigma = (x - x0) / sigma``."""
    return (x - denoised) / sigma.reshape(sigma.shape + (1,) * (x.ndim - sigma.ndim))


def _ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0):
    """Split a step into a deterministic step down to ``sigma_down`` plus fresh noise ``sigma_up``."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def _half_log_snr(sigma: torch.Tensor) -> torch.Tensor:
    """``lambda = log(alpha / sigma) = -log(sigma)`` in the VE parameterisation."""
    return sigma.log().neg()


def _sigma_from_half_log_snr(lam: torch.Tensor) -> torch.Tensor:
    return lam.neg().exp()


def _brownian_noise(x: torch.Tensor, sigmas: torch.Tensor, seed: int | None, on_cpu: bool) -> NoiseSampler:
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    return BrownianTreeNoise(x, sigma_min, sigma_max, seed=seed, on_cpu=on_cpu)


DerivativeStep = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor], int], torch.Tensor]


def _derivative_multistep(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, max_order: int, step: DerivativeStep
) -> torch.Tensor:
    """The loop of the multistep samplers on the derivative history (iPNDM, DEIS).

    Per step: one model evaluation, the derivative ``d = (x - x0) / sigma``, then
    ``step(i, x, denoised, d, history, order)`` gives the next ``x`` from the last ``max_order - 1``
    derivatives (newest last) at ``order = min(max_order, i + 1)``.
    """
    s_in = x.new_ones([x.shape[0]])
    history: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        d_cur = (x - denoised) / sigmas[i]
        x_next = step(i, x, denoised, d_cur, history, min(max_order, i + 1))
        if len(history) == max_order - 1:
            for k in range(max_order - 2):
                history[k] = history[k + 1]
            history[-1] = d_cur
        else:
            history.append(d_cur)
        x = x_next
    return x


# --- first-order and ancestral --------------------------------------------------------------------


def sample_euler(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """Euler steps on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn)."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = _to_d(x, sigmas[i], denoised)
        run.report(i, x, denoised)
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


def sample_euler_ancestral(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """Euler step down to ``sigma_down``, then add fresh noise of size ``sigma_up``."""
    noise = step_noise_sampler(x, run.seed)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = _ancestral_step(sigmas[i], sigmas[i + 1])
        run.report(i, x, denoised)
        if sigma_down == 0:
            x = denoised
        else:
            d = _to_d(x, sigmas[i], denoised)
            x = x + d * (sigma_down - sigmas[i]) + noise(sigmas[i], sigmas[i + 1]) * sigma_up
    return x


def sample_heun(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """Heun's second-order method (Euler on the last step to sigma 0)."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma_hat = sigmas[i] * 1  # same value, a new tensor, as in ComfyUI
        denoised = model(x, sigma_hat * s_in)
        d = _to_d(x, sigma_hat, denoised)
        run.report(i, x, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in)
            d_2 = _to_d(x_2, sigmas[i + 1], denoised_2)
            x = x + (d + d_2) / 2 * dt
    return x


def sample_dpm_2(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """DPM-Solver-2-like midpoint steps in log-sigma (Euler on the last step)."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma_hat = sigmas[i]
        denoised = model(x, sigma_hat * s_in)
        d = _to_d(x, sigma_hat, denoised)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            sigma_mid = sigma_hat.log().lerp(sigmas[i + 1].log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigma_hat)
            denoised_2 = model(x_2, sigma_mid * s_in)
            d_2 = _to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * (sigmas[i + 1] - sigma_hat)
    return x


def sample_dpm_2_ancestral(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """``dpm_2`` down to ``sigma_down`` plus fresh noise."""
    noise = step_noise_sampler(x, run.seed)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = _ancestral_step(sigmas[i], sigmas[i + 1])
        run.report(i, x, denoised)
        d = _to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
            x_2 = x + d * (sigma_mid - sigmas[i])
            denoised_2 = model(x_2, sigma_mid * s_in)
            d_2 = _to_d(x_2, sigma_mid, denoised_2)
            x = x + d_2 * (sigma_down - sigmas[i])
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigma_up
    return x


def _lms_coefficient(order: int, t, i: int, j: int) -> float:
    """∫ of the j-th Lagrange basis polynomial through the last ``order`` sigmas over one step."""

    def basis(tau):
        product = 1.0
        for k in range(order):
            if j == k:
                continue
            product *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return product

    return integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0]


def sample_lms(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, order: int = 4) -> torch.Tensor:
    """Linear multistep (Adams–Bashforth in sigma) of up to 4th order; the last step to 0 returns x0."""
    s_in = x.new_ones([x.shape[0]])
    sigmas_cpu = sigmas.detach().cpu().numpy()
    derivatives: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        derivatives.append(_to_d(x, sigmas[i], denoised))
        if len(derivatives) > order:
            derivatives.pop(0)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            current_order = min(i + 1, order)
            coefficients = [_lms_coefficient(current_order, sigmas_cpu, i, j) for j in range(current_order)]
            x = x + sum(c * d for c, d in zip(coefficients, reversed(derivatives)))
    return x


# --- DPM-Solver++ family --------------------------------------------------------------------------


def sample_dpmpp_2s_ancestral(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """DPM-Solver++(2S) single-step second order down to ``sigma_down``, plus fresh noise."""
    noise = step_noise_sampler(x, run.seed)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = _ancestral_step(sigmas[i], sigmas[i + 1])
        run.report(i, x, denoised)
        if sigma_down == 0:
            d = _to_d(x, sigmas[i], denoised)
            x = x + d * (sigma_down - sigmas[i])
        else:
            t, t_next = _half_log_snr(sigmas[i]), _half_log_snr(sigma_down)
            r = 1 / 2
            h = t_next - t
            s = t + r * h
            sigma_s = _sigma_from_half_log_snr(s)
            x_2 = (sigma_s / _sigma_from_half_log_snr(t)) * x - (-h * r).expm1() * denoised
            denoised_2 = model(x_2, sigma_s * s_in)
            x = (_sigma_from_half_log_snr(t_next) / _sigma_from_half_log_snr(t)) * x - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigma_up
    return x


def _sample_dpmpp_sde(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, on_cpu: bool, eta: float = 1.0, r: float = 0.5
) -> torch.Tensor:
    """DPM-Solver++ (stochastic): two evaluations per step with Brownian-tree noise."""
    if len(sigmas) <= 1:
        return x
    noise = _brownian_noise(x, sigmas, run.seed, on_cpu)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = _half_log_snr(sigmas[i]), _half_log_snr(sigmas[i + 1])
        h = lambda_t - lambda_s
        lambda_s_1 = lambda_s + r * h
        fac = 1 / (2 * r)
        sigma_s_1 = _sigma_from_half_log_snr(lambda_s_1)
        alpha_s = sigmas[i] * lambda_s.exp()
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        # Step 1: to the intermediate point
        sd, su = _ancestral_step(lambda_s.neg().exp(), lambda_s_1.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        x_2 = (alpha_s_1 / alpha_s) * (-h_).exp() * x - alpha_s_1 * (-h_).expm1() * denoised
        x_2 = x_2 + alpha_s_1 * noise(sigmas[i], sigma_s_1) * su
        denoised_2 = model(x_2, sigma_s_1 * s_in)
        # Step 2: the full step with the combined prediction
        sd, su = _ancestral_step(lambda_s.neg().exp(), lambda_t.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * denoised_d
        x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * su
    return x


def sample_dpmpp_sde(model, x, sigmas, run):
    return _sample_dpmpp_sde(model, x, sigmas, run, on_cpu=True)


def sample_dpmpp_sde_gpu(model, x, sigmas, run):
    return _sample_dpmpp_sde(model, x, sigmas, run, on_cpu=False)


def sample_dpmpp_2m(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep using the previous step's prediction."""
    s_in = x.new_ones([x.shape[0]])
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        t, t_next = _half_log_snr(sigmas[i]), _half_log_snr(sigmas[i + 1])
        h = t_next - t
        ratio = _sigma_from_half_log_snr(t_next) / _sigma_from_half_log_snr(t)
        if old_denoised is None or sigmas[i + 1] == 0:
            x = ratio * x - (-h).expm1() * denoised
        else:
            h_last = t - _half_log_snr(sigmas[i - 1])
            r = h_last / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = ratio * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


def _sample_dpmpp_multistep_sde(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    on_cpu: bool,
    correction: Callable[..., torch.Tensor],
    eta: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++ multistep SDE: a first-order exponential step, plus ``correction`` from the last
    predictions and step sizes, plus Brownian-tree noise.

    ``correction(x, alpha_t, h, h_eta, denoised, denoised_1, denoised_2, h_1, h_2)`` gets the
    current and previous two predictions and the previous two step sizes (``None`` until there are
    some) and returns the corrected ``x``.
    """
    if len(sigmas) <= 1:
        return x
    noise = _brownian_noise(x, sigmas, run.seed, on_cpu)
    s_in = x.new_ones([x.shape[0]])
    denoised_1 = denoised_2 = None
    h = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lambda_s, lambda_t = _half_log_snr(sigmas[i]), _half_log_snr(sigmas[i + 1])
            h = lambda_t - lambda_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lambda_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            x = correction(x, alpha_t, h, h_eta, denoised, denoised_1, denoised_2, h_1, h_2)
            if eta > 0:
                x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * eta).expm1().neg().sqrt()
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


def _midpoint_2m_correction(x, alpha_t, h, h_eta, denoised, denoised_1, denoised_2, h_1, h_2):
    """DPM-Solver++(2M) SDE, midpoint: half the first difference of the predictions."""
    if denoised_1 is None:
        return x
    r = h_1 / h
    return x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - denoised_1)


def _heun_2m_correction(x, alpha_t, h, h_eta, denoised, denoised_1, denoised_2, h_1, h_2):
    """DPM-Solver++(2M) SDE, Heun: the first difference of the predictions weighted by phi_2."""
    if denoised_1 is None:
        return x
    r = h_1 / h
    return x + alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r) * (denoised - denoised_1)


def _third_order_3m_correction(x, alpha_t, h, h_eta, denoised, denoised_1, denoised_2, h_1, h_2):
    """DPM-Solver++(3M) SDE: first and second differences of the predictions (first only on step 2)."""
    if h_2 is not None:
        r0 = h_1 / h
        r1 = h_2 / h
        d1_0 = (denoised - denoised_1) / r0
        d1_1 = (denoised_1 - denoised_2) / r1
        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi_2 = h_eta.neg().expm1() / h_eta + 1
        phi_3 = phi_2 / h_eta - 0.5
        return x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
    if h_1 is not None:
        r = h_1 / h
        d = (denoised - denoised_1) / r
        phi_2 = h_eta.neg().expm1() / h_eta + 1
        return x + (alpha_t * phi_2) * d
    return x


def sample_dpmpp_2m_sde(model, x, sigmas, run):
    return _sample_dpmpp_multistep_sde(model, x, sigmas, run, on_cpu=True, correction=_midpoint_2m_correction)


def sample_dpmpp_2m_sde_gpu(model, x, sigmas, run):
    return _sample_dpmpp_multistep_sde(model, x, sigmas, run, on_cpu=False, correction=_midpoint_2m_correction)


def sample_dpmpp_2m_sde_heun(model, x, sigmas, run):
    return _sample_dpmpp_multistep_sde(model, x, sigmas, run, on_cpu=True, correction=_heun_2m_correction)


def sample_dpmpp_2m_sde_heun_gpu(model, x, sigmas, run):
    return _sample_dpmpp_multistep_sde(model, x, sigmas, run, on_cpu=False, correction=_heun_2m_correction)


def sample_dpmpp_3m_sde(model, x, sigmas, run):
    return _sample_dpmpp_multistep_sde(model, x, sigmas, run, on_cpu=True, correction=_third_order_3m_correction)


def sample_dpmpp_3m_sde_gpu(model, x, sigmas, run):
    return _sample_dpmpp_multistep_sde(model, x, sigmas, run, on_cpu=False, correction=_third_order_3m_correction)


# --- DDPM / LCM -----------------------------------------------------------------------------------


def sample_ddpm(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """Ancestral DDPM posterior steps, computed in the variance-preserving space."""
    noise = step_noise_sampler(x, run.seed)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        sigma, sigma_prev = sigmas[i], sigmas[i + 1]
        x_vp = x / torch.sqrt(1.0 + sigma**2.0)
        eps = (x - denoised) / sigma
        alpha_cumprod = 1 / ((sigma * sigma) + 1)
        alpha_cumprod_prev = 1 / ((sigma_prev * sigma_prev) + 1)
        alpha = alpha_cumprod / alpha_cumprod_prev
        mu = (1.0 / alpha).sqrt() * (x_vp - (1 - alpha) * eps / (1 - alpha_cumprod).sqrt())
        if sigma_prev > 0:
            mu += ((1 - alpha) * (1.0 - alpha_cumprod_prev) / (1.0 - alpha_cumprod)).sqrt() * noise(sigma, sigma_prev)
        x = mu
        if sigmas[i + 1] != 0:
            x *= torch.sqrt(1.0 + sigmas[i + 1] ** 2.0)
    return x


def sample_lcm(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """Latent-consistency sampling: jump to x0, re-noise to the next sigma with fresh noise."""
    noise = step_noise_sampler(x, run.seed)
    s_in = x.new_ones([x.shape[0]])
    for i in range(max(1, len(sigmas) - 1)):
        denoised = model(x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = noise_scaling(sigmas[i + 1], noise(sigmas[i], sigmas[i + 1]), x)
    return x


# --- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplerSpec:
    """How to run one named sampler."""

    function: SamplerFunction
    random_inpaint_noise: bool = False  # ddim: kept region noised from seed + 1, not the initial noise


def _from_module(module: str, name: str) -> SamplerFunction:
    """``sample_<name>`` of ``nodes.sampling.<module>``, imported on first use."""

    def sample(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
        return getattr(importlib.import_module(f"nodes.sampling.{module}"), f"sample_{name}")(model, x, sigmas, run)

    sample.__name__ = f"sample_{name}"
    return sample


def _unipc(variant: str) -> SamplerFunction:
    def sample(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
        from nodes.sampling.unipc import sample_unipc

        return sample_unipc(model, x, sigmas, run, variant=variant)

    sample.__name__ = f"sample_unipc_{variant}"
    return sample


SAMPLERS: dict[str, SamplerSpec] = {
    "euler": SamplerSpec(sample_euler),
    "euler_ancestral": SamplerSpec(sample_euler_ancestral),
    "heun": SamplerSpec(sample_heun),
    "dpm_2": SamplerSpec(sample_dpm_2),
    "dpm_2_ancestral": SamplerSpec(sample_dpm_2_ancestral),
    "lms": SamplerSpec(sample_lms),
    "dpm_fast": SamplerSpec(_from_module("dpm_solver", "dpm_fast")),
    "dpm_adaptive": SamplerSpec(_from_module("dpm_solver", "dpm_adaptive")),
    "dpmpp_2s_ancestral": SamplerSpec(sample_dpmpp_2s_ancestral),
    "dpmpp_sde": SamplerSpec(sample_dpmpp_sde),
    "dpmpp_sde_gpu": SamplerSpec(sample_dpmpp_sde_gpu),
    "dpmpp_2m": SamplerSpec(sample_dpmpp_2m),
    "dpmpp_2m_sde": SamplerSpec(sample_dpmpp_2m_sde),
    "dpmpp_2m_sde_gpu": SamplerSpec(sample_dpmpp_2m_sde_gpu),
    "dpmpp_2m_sde_heun": SamplerSpec(sample_dpmpp_2m_sde_heun),
    "dpmpp_2m_sde_heun_gpu": SamplerSpec(sample_dpmpp_2m_sde_heun_gpu),
    "dpmpp_3m_sde": SamplerSpec(sample_dpmpp_3m_sde),
    "dpmpp_3m_sde_gpu": SamplerSpec(sample_dpmpp_3m_sde_gpu),
    "ddpm": SamplerSpec(sample_ddpm),
    "lcm": SamplerSpec(sample_lcm),
    **{
        name: SamplerSpec(_from_module("extra_samplers", name))
        for name in (
            "euler_cfg_pp", "euler_ancestral_cfg_pp", "heunpp2", "dpmpp_2s_ancestral_cfg_pp", "dpmpp_2m_cfg_pp",
            "ipndm", "ipndm_v", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
            "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde",
            "seeds_2", "seeds_3",
        )
    },
    "deis": SamplerSpec(_from_module("adams", "deis")),
    "sa_solver": SamplerSpec(_from_module("adams", "sa_solver")),
    "sa_solver_pece": SamplerSpec(_from_module("adams", "sa_solver_pece")),
    "ddim": SamplerSpec(sample_euler, random_inpaint_noise=True),
    "uni_pc": SamplerSpec(_unipc("bh1")),
    "uni_pc_bh2": SamplerSpec(_unipc("bh2")),
}
"""Implemented sampler names → how to run them (must match ``names.IMPLEMENTED_SAMPLERS``)."""
