"""Adams-type exponential multistep samplers: DEIS (tAB, arXiv 2204.13902) and SA-Solver
(stochastic Adams, arXiv 2309.05019), with ComfyUI's coefficients and defaults.

DEIS maps sigmas onto the time of an EDM-range VP schedule (sigma 0.002…80) and integrates the
Lagrange polynomials through the last three derivatives numerically (10,000 points). SA-Solver
works in half-logSNR with a predictor of order 3 and a corrector of order 4, stochastic
(``tau = 1``) for sigmas between the model's 20 % and 80 % noise levels.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nodes.sampling.noise import step_noise_sampler
from nodes.sampling.samplers import Denoiser, SamplerRun, _derivative_multistep, _half_log_snr

# --- DEIS -----------------------------------------------------------------------------------------


def _edm_to_vp_time(sigmas: torch.Tensor, epsilon_s: float = 1e-3, sigma_min: float = 0.002, sigma_max: float = 80.0):
    beta_d = 2 * (np.log(torch.tensor(sigma_min) ** 2 + 1) / epsilon_s - np.log(torch.tensor(sigma_max) ** 2 + 1)) / (epsilon_s - 1)
    beta_min = np.log(torch.tensor(sigma_max) ** 2 + 1) - 0.5 * beta_d
    sigmas = sigmas.detach().cpu()
    t_steps = ((beta_min**2 + 2 * beta_d * (sigmas**2 + 1).log()).sqrt() - beta_min) / beta_d
    return t_steps, beta_min, beta_d + beta_min


def _lagrange(prev_t: torch.Tensor, j: int, taus: torch.Tensor):
    poly = 1
    for k in range(prev_t.shape[0]):
        if k != j:
            poly = poly * (taus - prev_t[k]) / (prev_t[j] - prev_t[k])
    return poly


def _deis_integrand(beta_0: torch.Tensor, beta_1: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(mode=False), torch.enable_grad():
        taus = taus.clone().requires_grad_(True)
        alpha = torch.exp(-0.5 * taus**2 * (beta_1.clone() - beta_0.clone()) - taus * beta_0.clone())
        alpha.log().sum().backward()
        d_log_alpha = taus.grad
        alpha = alpha.detach()
    return -0.5 * d_log_alpha / torch.sqrt(alpha * (1 - alpha))


def deis_coefficients(sigmas: torch.Tensor, max_order: int = 3, points: int = 10000) -> list[list[torch.Tensor]]:
    """Per step, the weights of the current and previous derivatives (empty for first-order steps)."""
    t_steps, beta_0, beta_1 = _edm_to_vp_time(sigmas)
    coefficients: list[list[torch.Tensor]] = []
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        order = min(i + 1, max_order)
        if order == 1 or t_next <= 0:  # the last step to sigma 0 is an Euler step
            coefficients.append([])
            continue
        taus = torch.linspace(t_cur, t_next, points)
        dtau = (t_next - t_cur) / points
        prev_t = t_steps[[i - k for k in range(order)]]
        integrand = _deis_integrand(beta_0, beta_1, taus)
        coefficients.append([torch.sum(integrand * _lagrange(prev_t, j, taus)) * dtau for j in range(order)])
    return coefficients


def sample_deis(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, max_order: int = 3) -> torch.Tensor:
    """DEIS-tAB3 on the derivative history."""
    coefficients = deis_coefficients(sigmas, max_order)

    def step(i: int, x: torch.Tensor, denoised: torch.Tensor, d_cur: torch.Tensor, buffer: list[torch.Tensor], order: int) -> torch.Tensor:
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        if t_next <= 0:
            order = 1
        if order == 1:
            return x + (t_next - t_cur) * d_cur
        weights = [w.to(x.device) for w in coefficients[i]]
        x_next = x + weights[0] * d_cur
        for k in range(1, order):
            x_next = x_next + weights[k] * buffer[-k]
        return x_next

    return _derivative_multistep(model, x, sigmas, run, max_order, step)


# --- SA-Solver ------------------------------------------------------------------------------------


def _exponential_coefficients(s: torch.Tensor, t: torch.Tensor, order: int, tau: float) -> torch.Tensor:
    """(1 + tau²)·∫ₛᵗ exp((1 + tau²)x)·xᵖ dx for p < order, with exp((1 + tau²)t) factored out."""
    tau_mul = 1 + tau**2
    h = t - s
    p = torch.arange(order, dtype=s.dtype, device=s.device)
    product_terms = t**p - s**p * (-tau_mul * h).exp()
    depth = p.unsqueeze(1) - p.unsqueeze(0)
    log_factorial = (p + 1).lgamma()
    coeffs = log_factorial.unsqueeze(1) - log_factorial.unsqueeze(0)
    if tau > 0:
        coeffs = coeffs - depth * math.log(tau_mul)
    signs = torch.where(depth % 2 == 0, 1.0, -1.0)
    return (coeffs.exp() * signs).tril() @ product_terms


def _adams_b_coefficients(
    sigma_next: torch.Tensor, lambdas: torch.Tensor, lambda_s: torch.Tensor, lambda_t: torch.Tensor, tau: float
) -> torch.Tensor:
    order = lambdas.shape[0]
    integrals = _exponential_coefficients(lambda_s, lambda_t, order, tau)
    lagrange = torch.linalg.solve(torch.vander(lambdas, order, increasing=True).T, integrals)
    return sigma_next * lambda_t.exp() * lagrange


def _sample_sa_solver(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, use_pece: bool,
    predictor_order: int = 3, corrector_order: int = 4,
) -> torch.Tensor:
    if len(sigmas) <= 1:
        return x
    if run.schedule is None:
        raise ValueError("SA-Solver needs the model's noise schedule")
    noise_sampler = step_noise_sampler(x, run.seed)
    s_in = x.new_ones([x.shape[0]])
    lambdas = _half_log_snr(sigmas)
    start_sigma = run.schedule.percent_to_sigma(0.2)
    end_sigma = run.schedule.percent_to_sigma(0.8)

    def tau_of(sigma: torch.Tensor) -> float:
        return 1.0 if start_sigma >= float(sigma) >= end_sigma else 0.0

    max_order = max(predictor_order, corrector_order)
    x_pred = x
    h = 0.0
    tau_t = 0.0
    noise = 0.0
    history: list[torch.Tensor] = []
    lower_order_to_end = sigmas[-1].item() == 0
    for i in range(len(sigmas) - 1):
        denoised = model(x_pred, sigmas[i] * s_in)
        run.report(i, x_pred, denoised)
        history.append(denoised)
        history = history[-max_order:]
        predictor_used = min(predictor_order, len(history))
        corrector_used = 0 if i == 0 or (sigmas[i + 1] == 0 and not use_pece) else min(corrector_order, len(history))
        if lower_order_to_end:
            predictor_used = min(predictor_used, len(sigmas) - 2 - i)
            corrector_used = min(corrector_used, len(sigmas) - 1 - i)
        # Corrector
        if corrector_used == 0:
            x = x_pred
        else:
            b = _adams_b_coefficients(sigmas[i], lambdas[i - corrector_used + 1 : i + 1], lambdas[i - 1], lambdas[i], tau_t)
            stacked = torch.stack(history[-corrector_used:], dim=1)
            x = sigmas[i] / sigmas[i - 1] * (-(tau_t**2) * h).exp() * x + torch.tensordot(stacked, b, dims=([1], [0]))
            if tau_t > 0:
                x = x + noise
            if use_pece:
                denoised = model(x, sigmas[i] * s_in)
                history[-1] = denoised
        # Predictor
        if sigmas[i + 1] == 0:
            x_pred = denoised
        else:
            tau_t = tau_of(sigmas[i + 1])
            b = _adams_b_coefficients(sigmas[i + 1], lambdas[i - predictor_used + 1 : i + 1], lambdas[i], lambdas[i + 1], tau_t)
            stacked = torch.stack(history[-predictor_used:], dim=1)
            h = lambdas[i + 1] - lambdas[i]
            x_pred = sigmas[i + 1] / sigmas[i] * (-(tau_t**2) * h).exp() * x + torch.tensordot(stacked, b, dims=([1], [0]))
            if tau_t > 0:
                noise = noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * tau_t**2 * h).expm1().neg().sqrt()
                x_pred = x_pred + noise
    return x_pred


def sample_sa_solver(model, x, sigmas, run):
    return _sample_sa_solver(model, x, sigmas, run, use_pece=False)


def sample_sa_solver_pece(model, x, sigmas, run):
    return _sample_sa_solver(model, x, sigmas, run, use_pece=True)
