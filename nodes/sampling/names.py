"""ComfyUI's sampler and scheduler names, importable without torch.

``SAMPLER_NAMES`` and ``SCHEDULER_NAMES`` are exactly ComfyUI's ``KSampler.SAMPLERS`` /
``KSampler.SCHEDULERS`` (baseline v0.3.64, in order), so ``/object_info`` shows clients the list they
expect. ``IMPLEMENTED_SAMPLERS`` is the subset graphengine runs (today: all of them); a listed name
outside it would be refused at validation with a clear message (``unsupported_sampler_message``).
"""

from __future__ import annotations

SAMPLER_NAMES: tuple[str, ...] = (
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
)

SCHEDULER_NAMES: tuple[str, ...] = (
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
)

NOT_IMPLEMENTED_SAMPLERS: frozenset[str] = frozenset()
"""ComfyUI sampler names graphengine would refuse at validation (listed in /object_info all the same).
Empty: every baseline name runs. Names only newer ComfyUI lists are not in the combo at all."""

IMPLEMENTED_SAMPLERS: frozenset[str] = frozenset(SAMPLER_NAMES) - NOT_IMPLEMENTED_SAMPLERS
"""Samplers graphengine implements (a subset of ``SAMPLER_NAMES``)."""

IMPLEMENTED_SCHEDULERS: frozenset[str] = frozenset(SCHEDULER_NAMES)

DISCARD_PENULTIMATE_SIGMA_SAMPLERS: frozenset[str] = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})
"""Samplers for which ComfyUI computes steps+1 sigmas and drops the second-to-last one."""


def unsupported_sampler_message(name: str) -> str | None:
    """The validation error for a sampler name, or None when graphengine can run it."""
    if name in IMPLEMENTED_SAMPLERS:
        return None
    if name in SAMPLER_NAMES:
        available = ", ".join(n for n in SAMPLER_NAMES if n in IMPLEMENTED_SAMPLERS)
        return f"sampler '{name}' is listed by ComfyUI but not implemented by graphengine; use one of: {available}"
    return f"unknown sampler '{name}'"


def unsupported_scheduler_message(name: str) -> str | None:
    """The validation error for a scheduler name, or None when graphengine can run it."""
    if name in IMPLEMENTED_SCHEDULERS:
        return None
    return f"unknown scheduler '{name}'; use one of: {', '.join(SCHEDULER_NAMES)}"
