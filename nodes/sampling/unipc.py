"""UniPC (Zhao et al. 2023, arXiv 2302.04867) multistep predictor-corrector, as ComfyUI runs it.

ComfyUI runs UniPC in the variance-preserving space with sigma as the time variable:
``alpha(sigma) = 1 / sqrt(1 + sigma²)``, ``lambda = log(alpha / std)``; the data-prediction model is the
denoiser seen through ``eps = (x_ve - D(x_ve, sigma)) / sigma``. The last sigma 0 is replaced by 0.001,
the order is ``min(3, steps - 1)``, with lower orders at the end, the corrector on every step but the
last, and ``B(h) = h`` (``bh1``) or ``expm1(h)`` (``bh2``).
"""

from __future__ import annotations

import torch

from nodes.sampling.samplers import Denoiser, SamplerRun


def _log_alpha(sigma: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.log(1 / ((sigma * sigma) + 1))


def _alpha(sigma: torch.Tensor) -> torch.Tensor:
    return torch.exp(_log_alpha(sigma))


def _std(sigma: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(1.0 - torch.exp(2.0 * _log_alpha(sigma)))


def _lambda(sigma: torch.Tensor) -> torch.Tensor:
    log_alpha = _log_alpha(sigma)
    return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))


def _expand(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v[(...,) + (None,) * (ndim - 1)]


class _UniPC:
    def __init__(self, model: Denoiser, variant: str):
        if variant not in ("bh1", "bh2"):
            raise ValueError(f"unknown UniPC variant {variant!r}")
        self.model = model
        self.variant = variant

    def data_prediction(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x0 from the VP-space state ``x`` at ``sigma`` (via the VE denoiser)."""
        sigma_b = sigma.view(sigma.shape[:1] + (1,) * (x.ndim - 1))
        x_ve = x * ((sigma_b**2 + 1.0) ** 0.5)
        eps = (x_ve - self.model(x_ve, sigma)) / sigma_b
        ndim = x.dim()
        return (x - _expand(_std(sigma), ndim) * eps) / _expand(_alpha(sigma), ndim)

    def update(
        self,
        x: torch.Tensor,
        model_prev: list[torch.Tensor],
        t_prev: list[torch.Tensor],
        t: torch.Tensor,
        order: int,
        use_corrector: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if t.ndim == 0:
            t = t.view(-1)
        ndim = x.dim()
        t_prev_0 = t_prev[-1]
        lambda_prev_0 = _lambda(t_prev_0)
        lambda_t = _lambda(t)
        model_prev_0 = model_prev[-1]
        sigma_prev_0, sigma_t = _std(t_prev_0), _std(t)
        alpha_t = torch.exp(_log_alpha(t))
        h = lambda_t - lambda_prev_0

        rks: list = []
        d1s: list[torch.Tensor] = []
        for i in range(1, order):
            t_prev_i = t_prev[-(i + 1)]
            rk = ((_lambda(t_prev_i) - lambda_prev_0) / h)[0]
            rks.append(rk)
            d1s.append((model_prev[-(i + 1)] - model_prev_0) / rk)
        rks.append(1.0)
        rks_t = torch.tensor(rks, device=x.device)

        hh = -h[0]  # data prediction
        h_phi_1 = torch.expm1(hh)
        b_h = hh if self.variant == "bh1" else torch.expm1(hh)
        # The b recurrence cancels badly in float32 for small h: compute it in float64 on the CPU.
        hh64 = hh.detach().cpu().double()
        h_phi_k64 = torch.expm1(hh64) / hh64 - 1
        b_h64 = hh64 if self.variant == "bh1" else torch.expm1(hh64)
        factorial = 1
        rows = []
        b = []
        for i in range(1, order + 1):
            rows.append(torch.pow(rks_t, i - 1))
            b.append(h_phi_k64 * factorial / b_h64)
            factorial *= i + 1
            h_phi_k64 = h_phi_k64 / hh64 - 1 / factorial
        r_matrix = torch.stack(rows)
        b_t = torch.tensor(b, device=x.device, dtype=hh.dtype)

        d1s_t = torch.stack(d1s, dim=1) if d1s else None
        rhos_p = None
        if d1s_t is not None:
            rhos_p = torch.tensor([0.5], device=b_t.device) if order == 2 else torch.linalg.solve(r_matrix[:-1, :-1], b_t[:-1])
        rhos_c = None
        if use_corrector:
            rhos_c = torch.tensor([0.5], device=b_t.device) if order == 1 else torch.linalg.solve(r_matrix, b_t)

        x_t_ = _expand(sigma_t / sigma_prev_0, ndim) * x - _expand(alpha_t * h_phi_1, ndim) * model_prev_0
        pred_res = torch.tensordot(d1s_t, rhos_p, dims=([1], [0])) if d1s_t is not None else 0
        x_t = x_t_ - _expand(alpha_t * b_h, ndim) * pred_res
        model_t = None
        if use_corrector:
            model_t = self.data_prediction(x_t, t)
            corr_res = torch.tensordot(d1s_t, rhos_c[:-1], dims=([1], [0])) if d1s_t is not None else 0
            d1_t = model_t - model_prev_0
            x_t = x_t_ - _expand(alpha_t * b_h, ndim) * (corr_res + rhos_c[-1] * d1_t)
        return x_t, model_t

    def sample(self, x: torch.Tensor, timesteps: torch.Tensor, order: int, run: SamplerRun) -> torch.Tensor:
        steps = len(timesteps) - 1
        model_prev: list[torch.Tensor] = []
        t_prev: list[torch.Tensor] = []
        for step_index in range(steps):
            if step_index == 0:
                vec_t = timesteps[0].expand(x.shape[0])
                model_prev = [self.data_prediction(x, vec_t)]
                t_prev = [vec_t]
            elif step_index < order:
                vec_t = timesteps[step_index].expand(x.shape[0])
                x, model_x = self.update(x, model_prev, t_prev, vec_t, step_index, use_corrector=True)
                if model_x is None:
                    model_x = self.data_prediction(x, vec_t)
                model_prev.append(model_x)
                t_prev.append(vec_t)
            else:
                last = step_index + (2 if step_index == steps - 1 else 1)
                for step in range(step_index, last):
                    vec_t = timesteps[step].expand(x.shape[0])
                    step_order = min(order, steps + 1 - step)
                    x, model_x = self.update(x, model_prev, t_prev, vec_t, step_order, use_corrector=step != steps)
                    for i in range(order - 1):
                        t_prev[i] = t_prev[i + 1]
                        model_prev[i] = model_prev[i + 1]
                    t_prev[-1] = vec_t
                    if step < steps:
                        if model_x is None:
                            model_x = self.data_prediction(x, vec_t)
                        model_prev[-1] = model_x
            run.report(step_index, x, model_prev[-1])
        return x


def sample_unipc(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, variant: str = "bh1") -> torch.Tensor:
    """UniPC from ``sigmas[0]`` down to ``sigmas[-1]`` (a final 0 is treated as 0.001)."""
    timesteps = sigmas.clone()
    if sigmas[-1] == 0:
        timesteps[-1] = 0.001
    x_vp = x / torch.sqrt(1.0 + timesteps[0] ** 2.0)
    order = min(3, len(timesteps) - 2)
    if len(timesteps) - 1 < order:
        raise ValueError("UniPC needs at least as many steps as its order")
    x_vp = _UniPC(model, variant).sample(x_vp, timesteps, order, run)
    return x_vp / _alpha(timesteps[-1])
