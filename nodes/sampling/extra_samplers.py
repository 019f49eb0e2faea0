"""Samplers ComfyUI added beyond k-diffusion: Heun++, iPNDM, RES multistep, gradient estimation,
ER-SDE, SEEDS-2/3, and the CFG++ variants.

Same conventions as ``samplers.py``. The CFG++ variants (arXiv 2406.08070) step along the
*unconditional* prediction and add the guidance difference back; they read the unconditional
prediction from ``run.guidance`` (a ``CFGDenoiser``), which then always evaluates the negative, even
at cfg 1, as ComfyUI's do.
"""

from __future__ import annotations

import torch

from nodes.sampling.noise import step_noise_sampler
from nodes.sampling.samplers import (
    Denoiser,
    SamplerRun,
    _ancestral_step,
    _derivative_multistep,
    _half_log_snr,
    _sigma_from_half_log_snr,
    _to_d,
)


def _uncond_reader(run: SamplerRun):
    guidance = run.guidance
    if guidance is None:
        raise ValueError("CFG++ samplers need classifier-free guidance (a negative conditioning)")
    guidance.keep_uncond = True
    return lambda: guidance.last_uncond


def _ei_h_phi_1(h: torch.Tensor) -> torch.Tensor:
    return torch.expm1(h)


def _ei_h_phi_2(h: torch.Tensor) -> torch.Tensor:
    return (torch.expm1(h) - h) / h


# --- Heun++ and iPNDM -----------------------------------------------------------------------------


def sample_heunpp2(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """Heun++: a three-evaluation step weighted by sigma, Heun near the end, Euler at the end."""
    s_in = x.new_ones([x.shape[0]])
    s_end = sigmas[-1]
    for i in range(len(sigmas) - 1):
        sigma_hat = sigmas[i]
        denoised = model(x, sigma_hat * s_in)
        d = _to_d(x, sigma_hat, denoised)
        run.report(i, x, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == s_end:
            x = x + d * dt
        elif sigmas[i + 2] == s_end:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in)
            d_2 = _to_d(x_2, sigmas[i + 1], denoised_2)
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d_2 * w2) * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, sigmas[i + 1] * s_in)
            d_2 = _to_d(x_2, sigmas[i + 1], denoised_2)
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
            denoised_3 = model(x_3, sigmas[i + 2] * s_in)
            d_3 = _to_d(x_3, sigmas[i + 2], denoised_3)
            w = 3 * sigmas[0]
            w2 = sigmas[i + 1] / w
            w3 = sigmas[i + 2] / w
            w1 = 1 - w2 - w3
            x = x + (w1 * d + w2 * d_2 + w3 * d_3) * dt
    return x


def sample_ipndm(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, max_order: int = 4) -> torch.Tensor:
    """Improved PNDM: Adams–Bashforth with fixed coefficients on the derivative history."""

    def step(i: int, x: torch.Tensor, denoised: torch.Tensor, d_cur: torch.Tensor, buffer: list[torch.Tensor], order: int) -> torch.Tensor:
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        if t_next == 0:
            return denoised
        if order == 1:
            return x + (t_next - t_cur) * d_cur
        if order == 2:
            return x + (t_next - t_cur) * (3 * d_cur - buffer[-1]) / 2
        if order == 3:
            return x + (t_next - t_cur) * (23 * d_cur - 16 * buffer[-1] + 5 * buffer[-2]) / 12
        return x + (t_next - t_cur) * (55 * d_cur - 59 * buffer[-1] + 37 * buffer[-2] - 9 * buffer[-3]) / 24

    return _derivative_multistep(model, x, sigmas, run, max_order, step)


def sample_ipndm_v(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, max_order: int = 4) -> torch.Tensor:
    """iPNDM with variable-step Adams–Bashforth coefficients."""
    t_steps = sigmas

    def step(i: int, x: torch.Tensor, denoised: torch.Tensor, d_cur: torch.Tensor, buffer: list[torch.Tensor], order: int) -> torch.Tensor:
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        if t_next == 0:
            return denoised
        if order == 1:
            return x + (t_next - t_cur) * d_cur
        if order == 2:
            h_n = t_next - t_cur
            h_n_1 = t_cur - t_steps[i - 1]
            coeff1 = (2 + (h_n / h_n_1)) / 2
            coeff2 = -(h_n / h_n_1) / 2
            return x + (t_next - t_cur) * (coeff1 * d_cur + coeff2 * buffer[-1])
        if order == 3:
            h_n = t_next - t_cur
            h_n_1 = t_cur - t_steps[i - 1]
            h_n_2 = t_steps[i - 1] - t_steps[i - 2]
            temp = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
            coeff1 = (2 + (h_n / h_n_1)) / 2 + temp
            coeff2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp
            coeff3 = temp * h_n_1 / h_n_2
            return x + (t_next - t_cur) * (coeff1 * d_cur + coeff2 * buffer[-1] + coeff3 * buffer[-2])
        h_n = t_next - t_cur
        h_n_1 = t_cur - t_steps[i - 1]
        h_n_2 = t_steps[i - 1] - t_steps[i - 2]
        h_n_3 = t_steps[i - 2] - t_steps[i - 3]
        temp1 = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2
        temp2 = (
            (1 - h_n / (3 * (h_n + h_n_1))) / 2 + (1 - h_n / (2 * (h_n + h_n_1))) * h_n / (6 * (h_n + h_n_1 + h_n_2))
        ) * (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2)) / (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3))
        ratio = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3))
        coeff1 = (2 + (h_n / h_n_1)) / 2 + temp1 + temp2
        coeff2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp1 - (1 + (h_n_1 / h_n_2) + ratio) * temp2
        coeff3 = temp1 * h_n_1 / h_n_2 + ((h_n_1 / h_n_2) + ratio * (1 + h_n_2 / h_n_3)) * temp2
        coeff4 = -temp2 * ratio * h_n_1 / h_n_2
        return x + (t_next - t_cur) * (coeff1 * d_cur + coeff2 * buffer[-1] + coeff3 * buffer[-2] + coeff4 * buffer[-3])

    return _derivative_multistep(model, x, sigmas, run, max_order, step)


# --- RES multistep and gradient estimation --------------------------------------------------------


def _res_multistep(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, eta: float, cfg_pp: bool) -> torch.Tensor:
    """Second-order exponential multistep (arXiv 2308.02157), optionally ancestral and/or CFG++."""
    noise = step_noise_sampler(x, run.seed)
    uncond = _uncond_reader(run) if cfg_pp else None
    s_in = x.new_ones([x.shape[0]])

    def phi1(t):
        return torch.expm1(t) / t

    def phi2(t):
        return (phi1(t) - 1.0) / t

    old_sigma_down = old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = _ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        run.report(i, x, denoised)
        uncond_denoised = uncond() if uncond else None
        if sigma_down == 0 or old_denoised is None:
            if cfg_pp:
                x = denoised + _to_d(x, sigmas[i], uncond_denoised) * sigma_down
            else:
                x = x + _to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            t, t_old = _half_log_snr(sigmas[i]), _half_log_snr(old_sigma_down)
            t_next, t_prev = _half_log_snr(sigma_down), _half_log_snr(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t_old) / h
            phi1_val, phi2_val = phi1(-h), phi2(-h)
            b1 = torch.nan_to_num(phi1_val - phi2_val / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2_val / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - uncond_denoised)
                x = _sigma_from_half_log_snr(h) * x + h * (b1 * uncond_denoised + b2 * old_denoised)
            else:
                x = _sigma_from_half_log_snr(h) * x + h * (b1 * denoised + b2 * old_denoised)
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigma_up
        old_denoised = uncond_denoised if cfg_pp else denoised
        old_sigma_down = sigma_down
    return x


def sample_res_multistep(model, x, sigmas, run):
    return _res_multistep(model, x, sigmas, run, eta=0.0, cfg_pp=False)


def sample_res_multistep_cfg_pp(model, x, sigmas, run):
    return _res_multistep(model, x, sigmas, run, eta=0.0, cfg_pp=True)


def sample_res_multistep_ancestral(model, x, sigmas, run):
    return _res_multistep(model, x, sigmas, run, eta=1.0, cfg_pp=False)


def sample_res_multistep_ancestral_cfg_pp(model, x, sigmas, run):
    return _res_multistep(model, x, sigmas, run, eta=1.0, cfg_pp=True)


def _gradient_estimation(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, cfg_pp: bool, ge_gamma: float = 2.0) -> torch.Tensor:
    """Euler with a gradient-estimation correction from the previous derivative."""
    uncond = _uncond_reader(run) if cfg_pp else None
    s_in = x.new_ones([x.shape[0]])
    old_d = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = _to_d(x, sigmas[i], uncond() if uncond else denoised)
        run.report(i, x, denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if i >= 1:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


def sample_gradient_estimation(model, x, sigmas, run):
    return _gradient_estimation(model, x, sigmas, run, cfg_pp=False)


def sample_gradient_estimation_cfg_pp(model, x, sigmas, run):
    return _gradient_estimation(model, x, sigmas, run, cfg_pp=True)


# --- CFG++ ----------------------------------------------------------------------------------------


def _euler_ancestral_cfg_pp(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, eta: float) -> torch.Tensor:
    noise = step_noise_sampler(x, run.seed)
    uncond = _uncond_reader(run)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        alpha_s = sigmas[i] * _half_log_snr(sigmas[i]).exp()
        alpha_t = sigmas[i + 1] * _half_log_snr(sigmas[i + 1]).exp()
        d = _to_d(x, sigmas[i], alpha_s * uncond())
        sigma_down, sigma_up = _ancestral_step(sigmas[i] / alpha_s, sigmas[i + 1] / alpha_t, eta=eta)
        sigma_down = alpha_t * sigma_down
        x = alpha_t * denoised + sigma_down * d
        if eta > 0:
            x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * sigma_up
    return x


def sample_euler_cfg_pp(model, x, sigmas, run):
    return _euler_ancestral_cfg_pp(model, x, sigmas, run, eta=0.0)


def sample_euler_ancestral_cfg_pp(model, x, sigmas, run):
    return _euler_ancestral_cfg_pp(model, x, sigmas, run, eta=1.0)


def sample_dpmpp_2m_cfg_pp(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    uncond = _uncond_reader(run)
    s_in = x.new_ones([x.shape[0]])
    old_uncond = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        uncond_denoised = uncond()
        t, t_next = _half_log_snr(sigmas[i]), _half_log_snr(sigmas[i + 1])
        h = t_next - t
        if old_uncond is None or sigmas[i + 1] == 0:
            mix = -torch.exp(-h) * uncond_denoised
        else:
            r = (t - _half_log_snr(sigmas[i - 1])) / h
            mix = -torch.exp(-h) * uncond_denoised - torch.expm1(-h) * (1 / (2 * r)) * (denoised - old_uncond)
        x = denoised + mix + torch.exp(-h) * x
        old_uncond = uncond_denoised
    return x


def sample_dpmpp_2s_ancestral_cfg_pp(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    noise = step_noise_sampler(x, run.seed)
    uncond = _uncond_reader(run)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        uncond_denoised = uncond()
        guidance_vector = denoised - uncond_denoised
        sigma_down, sigma_up = _ancestral_step(sigmas[i], sigmas[i + 1])
        run.report(i, x, denoised)
        if sigma_down == 0:
            x = x + _to_d(x, sigmas[i], uncond_denoised) * (sigma_down - sigmas[i])
        else:
            t, t_next = _half_log_snr(sigmas[i]), _half_log_snr(sigma_down)
            h = t_next - t
            s = t + h / 2
            x_2 = (_sigma_from_half_log_snr(s) / _sigma_from_half_log_snr(t)) * x - (-h / 2).expm1() * uncond_denoised
            model(x_2, _sigma_from_half_log_snr(s) * s_in)
            uncond_denoised_2 = uncond()
            x = (_sigma_from_half_log_snr(t_next) / _sigma_from_half_log_snr(t)) * x - (-h).expm1() * uncond_denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigma_up
        x = x + guidance_vector
    return x


# --- ER-SDE and SEEDS -----------------------------------------------------------------------------


def sample_er_sde(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, max_stage: int = 3) -> torch.Tensor:
    """Extended reverse-time SDE solver, 3 stages (arXiv 2309.06169)."""
    noise = step_noise_sampler(x, run.seed)
    s_in = x.new_ones([x.shape[0]])

    def noise_scaler(v):
        return v * ((v**0.3).exp() + 10.0)

    points = 200.0
    point_index = torch.arange(0, points, dtype=torch.float32, device=x.device)
    er_lambdas = _half_log_snr(sigmas).neg().exp()
    old_denoised = old_denoised_d = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            er_lambda_s, er_lambda_t = er_lambdas[i], er_lambdas[i + 1]
            alpha_s = sigmas[i] / er_lambda_s
            alpha_t = sigmas[i + 1] / er_lambda_t
            r_alpha = alpha_t / alpha_s
            r = noise_scaler(er_lambda_t) / noise_scaler(er_lambda_s)
            x = r_alpha * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2:
                dt = er_lambda_t - er_lambda_s
                step = -dt / points
                lambda_pos = er_lambda_t + point_index * step
                scaled_pos = noise_scaler(lambda_pos)
                s = torch.sum(1 / scaled_pos) * step
                denoised_d = (denoised - old_denoised) / (er_lambda_s - er_lambdas[i - 1])
                x = x + alpha_t * (dt + s * noise_scaler(er_lambda_t)) * denoised_d
                if stage >= 3:
                    s_u = torch.sum((lambda_pos - er_lambda_s) / scaled_pos) * step
                    denoised_u = (denoised_d - old_denoised_d) / ((er_lambda_s - er_lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt**2) / 2 + s_u * noise_scaler(er_lambda_t)) * denoised_u
                old_denoised_d = denoised_d
            x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * (er_lambda_t**2 - er_lambda_s**2 * r**2).sqrt().nan_to_num(nan=0.0)
        old_denoised = denoised
    return x


def _carry_sde_noise(sde_noise: torch.Tensor, segment: torch.Tensor, noise, sigma_from: torch.Tensor, sigma_to: torch.Tensor) -> torch.Tensor:
    """SEEDS: the previous stage's noise decayed by ``exp(segment)`` plus fresh noise for the rest of
    its variance, from ``sigma_from`` to ``sigma_to``."""
    sde_noise = sde_noise * segment.exp()
    return sde_noise + segment.mul(2).expm1().neg().sqrt() * noise(sigma_from, sigma_to)


def sample_seeds_2(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, eta: float = 1.0, r: float = 0.5) -> torch.Tensor:
    """SEEDS-2 (arXiv 2305.14267): stochastic exponential two-stage data-prediction solver."""
    noise = step_noise_sampler(x, run.seed)
    s_in = x.new_ones([x.shape[0]])
    fac = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = _half_log_snr(sigmas[i]), _half_log_snr(sigmas[i + 1])
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        lambda_s_1 = torch.lerp(lambda_s, lambda_t, r)
        sigma_s_1 = _sigma_from_half_log_snr(lambda_s_1)
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        x_2 = sigma_s_1 / sigmas[i] * (-r * h * eta).exp() * x - alpha_s_1 * _ei_h_phi_1(-r * h_eta) * denoised
        sde_noise = (-2 * r * h * eta).expm1().neg().sqrt() * noise(sigmas[i], sigma_s_1)
        x_2 = x_2 + sde_noise * sigma_s_1
        denoised_2 = model(x_2, sigma_s_1 * s_in)
        denoised_d = torch.lerp(denoised, denoised_2, fac)
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * _ei_h_phi_1(-h_eta) * denoised_d
        sde_noise = _carry_sde_noise(sde_noise, (r - 1) * h * eta, noise, sigma_s_1, sigmas[i + 1])
        x = x + sde_noise * sigmas[i + 1]
    return x


def sample_seeds_3(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, eta: float = 1.0, r_1: float = 1.0 / 3, r_2: float = 2.0 / 3
) -> torch.Tensor:
    """SEEDS-3 (arXiv 2305.14267): stochastic exponential three-stage data-prediction solver."""
    noise = step_noise_sampler(x, run.seed)
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.report(i, x, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = _half_log_snr(sigmas[i]), _half_log_snr(sigmas[i + 1])
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        lambda_s_1 = torch.lerp(lambda_s, lambda_t, r_1)
        lambda_s_2 = torch.lerp(lambda_s, lambda_t, r_2)
        sigma_s_1, sigma_s_2 = _sigma_from_half_log_snr(lambda_s_1), _sigma_from_half_log_snr(lambda_s_2)
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_s_2 = sigma_s_2 * lambda_s_2.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        x_2 = sigma_s_1 / sigmas[i] * (-r_1 * h * eta).exp() * x - alpha_s_1 * _ei_h_phi_1(-r_1 * h_eta) * denoised
        sde_noise = (-2 * r_1 * h * eta).expm1().neg().sqrt() * noise(sigmas[i], sigma_s_1)
        x_2 = x_2 + sde_noise * sigma_s_1
        denoised_2 = model(x_2, sigma_s_1 * s_in)
        a3_2 = r_2 / r_1 * _ei_h_phi_2(-r_2 * h_eta)
        a3_1 = _ei_h_phi_1(-r_2 * h_eta) - a3_2
        x_3 = sigma_s_2 / sigmas[i] * (-r_2 * h * eta).exp() * x - alpha_s_2 * (a3_1 * denoised + a3_2 * denoised_2)
        sde_noise = _carry_sde_noise(sde_noise, (r_1 - r_2) * h * eta, noise, sigma_s_1, sigma_s_2)
        x_3 = x_3 + sde_noise * sigma_s_2
        denoised_3 = model(x_3, sigma_s_2 * s_in)
        b3 = _ei_h_phi_2(-h_eta) / r_2
        b1 = _ei_h_phi_1(-h_eta) - b3
        x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x - alpha_t * (b1 * denoised + b3 * denoised_3)
        sde_noise = _carry_sde_noise(sde_noise, (r_2 - 1) * h * eta, noise, sigma_s_2, sigmas[i + 1])
        x = x + sde_noise * sigmas[i + 1]
    return x
