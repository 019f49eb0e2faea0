"""Sampler and scheduler names as AUTOMATIC1111 / SD.Next clients spell them, resolved to ours.

A1111 clients send a sampler by name ("DPM++ 2M"), by alias ("k_dpmpp_2m"), or with a scheduler
suffix from older releases ("DPM++ 2M Karras"); schedulers come as names ("karras"), labels
("Karras", "SGM Uniform"), other servers' names ("discrete") or junk. The rules, as A1111 applies
them:

* a scheduler suffix on the sampler name wins over the ``scheduler`` field;
* an unknown or missing scheduler means "Automatic": the sampler's own default schedule;
* a missing sampler means the default sampler (the first of the table).

One deliberate difference: an unknown sampler name is an error naming the field (A1111 silently
swaps in its default sampler, which hides typos behind a different picture).

The tables are data; only entries whose sampler our sampling pack implements are offered
(``ComfyNames.installed``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

# ComfyUI's baseline lists (KSampler.SAMPLERS / KSampler.SCHEDULERS), used when the sampling pack is absent.
COMFY_SAMPLER_NAMES: tuple[str, ...] = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)  # fmt: skip
COMFY_SCHEDULER_NAMES: tuple[str, ...] = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal", "linear_quadratic",
    "kl_optimal",
)  # fmt: skip


@dataclass(frozen=True)
class A1111Sampler:
    """One sampler as A1111 lists it (``/sdapi/v1/samplers``) and the sampler it runs here."""

    name: str
    comfy: str
    aliases: tuple[str, ...] = ()
    default_scheduler: str = "normal"  # our scheduler for "Automatic"

    def to_json(self) -> dict[str, Any]:
        options = {"scheduler": self.default_scheduler} if self.default_scheduler != "normal" else {}
        return {"name": self.name, "aliases": list(self.aliases), "options": options}


@dataclass(frozen=True)
class A1111Scheduler:
    """One scheduler as A1111 lists it (``/sdapi/v1/schedulers``); ``comfy=None`` is "Automatic"."""

    name: str
    label: str
    comfy: str | None
    aliases: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "aliases": list(self.aliases) or None,
            "default_rho": -1,
            "need_inner_model": False,
        }


SAMPLERS: tuple[A1111Sampler, ...] = (
    A1111Sampler("DPM++ 2M", "dpmpp_2m", ("k_dpmpp_2m",), "karras"),
    A1111Sampler("DPM++ SDE", "dpmpp_sde", ("k_dpmpp_sde",), "karras"),
    A1111Sampler("DPM++ 2M SDE", "dpmpp_2m_sde", ("k_dpmpp_2m_sde",), "exponential"),
    A1111Sampler("DPM++ 2M SDE Heun", "dpmpp_2m_sde_heun", ("k_dpmpp_2m_sde_heun",), "exponential"),
    A1111Sampler("DPM++ 2S a", "dpmpp_2s_ancestral", ("k_dpmpp_2s_a",), "karras"),
    A1111Sampler("DPM++ 3M SDE", "dpmpp_3m_sde", ("k_dpmpp_3m_sde",), "exponential"),
    A1111Sampler("Euler a", "euler_ancestral", ("k_euler_a", "k_euler_ancestral")),
    A1111Sampler("Euler", "euler", ("k_euler",)),
    A1111Sampler("LMS", "lms", ("k_lms",)),
    A1111Sampler("Heun", "heun", ("k_heun",)),
    A1111Sampler("DPM2", "dpm_2", ("k_dpm_2",), "karras"),
    A1111Sampler("DPM2 a", "dpm_2_ancestral", ("k_dpm_2_a",), "karras"),
    A1111Sampler("DPM fast", "dpm_fast", ("k_dpm_fast",)),
    A1111Sampler("DPM adaptive", "dpm_adaptive", ("k_dpm_ad",)),
    A1111Sampler("DDIM", "ddim", ("ddim",), "ddim_uniform"),
    A1111Sampler("UniPC", "uni_pc", ("unipc",)),
    A1111Sampler("LCM", "lcm", ("k_lcm",), "sgm_uniform"),
    A1111Sampler("DDPM", "ddpm", ("k_ddpm",)),
    A1111Sampler("DEIS", "deis", ()),
    A1111Sampler("iPNDM", "ipndm", ()),
)

AUTOMATIC = A1111Scheduler("automatic", "Automatic", None)

SCHEDULERS: tuple[A1111Scheduler, ...] = (
    AUTOMATIC,
    A1111Scheduler("uniform", "Uniform", "normal", ("discrete",)),
    A1111Scheduler("karras", "Karras", "karras"),
    A1111Scheduler("exponential", "Exponential", "exponential"),
    A1111Scheduler("sgm_uniform", "SGM Uniform", "sgm_uniform", ("SGMUniform",)),
    A1111Scheduler("kl_optimal", "KL Optimal", "kl_optimal"),
    A1111Scheduler("simple", "Simple", "simple"),
    A1111Scheduler("normal", "Normal", "normal"),
    A1111Scheduler("ddim", "DDIM", "ddim_uniform", ("ddim_uniform",)),
    A1111Scheduler("beta", "Beta", "beta"),
    A1111Scheduler("linear_quadratic", "Linear Quadratic", "linear_quadratic"),
)

# Old A1111 releases listed sampler+schedule combinations as samplers of their own.
LEGACY_SUFFIXED_SAMPLERS: tuple[tuple[str, str], ...] = (
    ("DPM++ 2M", "Karras"), ("DPM++ SDE", "Karras"), ("DPM++ 2M SDE", "Karras"), ("DPM++ 2M SDE", "Exponential"),
    ("DPM++ 2S a", "Karras"), ("DPM++ 3M SDE", "Karras"), ("DPM++ 3M SDE", "Exponential"), ("DPM2", "Karras"),
    ("DPM2 a", "Karras"), ("LMS", "Karras"), ("Euler", "Karras"), ("Euler a", "Karras"),
)  # fmt: skip

DEFAULT_SAMPLER_ALIASES = frozenset({"", "default", "automatic", "auto"})


class UnknownSampler(ValueError):
    """A sampler name that matches no A1111 name, alias or sampler of ours."""


def _key(text: str) -> str:
    """Case-, space-, dash- and underscore-insensitive spelling key."""
    return "".join(ch for ch in text.casefold() if ch not in " _-")


@dataclass(frozen=True)
class ComfyNames:
    """The sampler and scheduler names our engine's ``KSampler`` accepts."""

    samplers: tuple[str, ...] = COMFY_SAMPLER_NAMES
    schedulers: tuple[str, ...] = COMFY_SCHEDULER_NAMES

    @classmethod
    def installed(cls) -> ComfyNames:
        """The names the sampling pack implements (``nodes.sampling.names``, a torch-free data module);
        ComfyUI's baseline lists when the pack is not installed."""
        try:
            from nodes.sampling import names as sampling_names
        except ImportError:
            return cls()
        implemented = getattr(sampling_names, "IMPLEMENTED_SAMPLERS", None)
        implemented_schedulers = getattr(sampling_names, "IMPLEMENTED_SCHEDULERS", None)
        samplers = tuple(n for n in sampling_names.SAMPLER_NAMES if implemented is None or n in implemented)
        schedulers = tuple(
            n for n in sampling_names.SCHEDULER_NAMES if implemented_schedulers is None or n in implemented_schedulers
        )
        return cls(samplers=samplers or COMFY_SAMPLER_NAMES, schedulers=schedulers or COMFY_SCHEDULER_NAMES)


@dataclass(frozen=True)
class SamplerChoice:
    """A resolved sampler/scheduler pair: A1111 spellings (for ``info``) and ours (for the graph)."""

    sampler: A1111Sampler
    scheduler: A1111Scheduler
    comfy_sampler: str
    comfy_scheduler: str


class NameResolver:
    """Resolves A1111 sampler/scheduler spellings against the names the engine offers."""

    def __init__(self, names: ComfyNames | None = None):
        self.names = names or ComfyNames.installed()
        available = set(self.names.samplers)
        self.samplers: tuple[A1111Sampler, ...] = tuple(s for s in SAMPLERS if s.comfy in available)
        scheduler_set = set(self.names.schedulers)
        self.schedulers: tuple[A1111Scheduler, ...] = tuple(
            s for s in SCHEDULERS if s.comfy is None or s.comfy in scheduler_set
        )
        self._sampler_by_key: dict[str, A1111Sampler] = {}
        for sampler in self.samplers:
            for spelling in (sampler.name, *sampler.aliases):
                self._sampler_by_key.setdefault(_key(spelling), sampler)
        for comfy in self.names.samplers:  # our own names work too ("dpmpp_2m", "res_multistep")
            self._sampler_by_key.setdefault(_key(comfy), self._native_sampler(comfy))
        self._scheduler_by_key: dict[str, A1111Scheduler] = {}
        for scheduler in self.schedulers:
            for spelling in (scheduler.name, scheduler.label, *scheduler.aliases):
                self._scheduler_by_key.setdefault(_key(spelling), scheduler)
        for comfy in self.names.schedulers:
            self._scheduler_by_key.setdefault(_key(comfy), A1111Scheduler(comfy, comfy, comfy))

    def _native_sampler(self, comfy: str) -> A1111Sampler:
        for sampler in self.samplers:
            if sampler.comfy == comfy:
                return sampler
        return A1111Sampler(comfy, comfy)

    @property
    def default_sampler(self) -> A1111Sampler:
        return self.samplers[0] if self.samplers else self._native_sampler(self.names.samplers[0])

    def scheduler(self, name: str | None) -> A1111Scheduler:
        """The scheduler for a spelling; unknown or missing → Automatic (A1111's fallback)."""
        if not name:
            return AUTOMATIC
        found = self._scheduler_by_key.get(_key(name))
        if found is None:
            logger.info("unknown scheduler %r: using Automatic", name)
            return AUTOMATIC
        return found

    def resolve(self, sampler_name: str | None, scheduler_name: str | None = None) -> SamplerChoice:
        """Resolve a request's sampler and scheduler; raises ``UnknownSampler``."""
        scheduler = self.scheduler(scheduler_name)
        raw = (sampler_name or "").strip()
        if _key(raw) in DEFAULT_SAMPLER_ALIASES:
            sampler = self.default_sampler
        else:
            sampler = self._sampler_by_key.get(_key(raw))
            if sampler is None:
                for base, suffix in self._suffix_candidates(raw):
                    sampler = self._sampler_by_key.get(_key(base))
                    if sampler is not None:
                        scheduler = suffix
                        break
            if sampler is None:
                raise UnknownSampler(raw)
        comfy_scheduler = scheduler.comfy or self._automatic_for(sampler)
        return SamplerChoice(sampler, scheduler, sampler.comfy, comfy_scheduler)

    def _suffix_candidates(self, raw: str) -> list[tuple[str, A1111Scheduler]]:
        """Every (sampler part, scheduler) split of "<sampler> <schedule>", longest schedule first."""
        lowered = raw.casefold()
        found = []
        for scheduler in self.schedulers:
            if scheduler.comfy is None:
                continue
            for spelling in (scheduler.label, scheduler.name, *scheduler.aliases):
                suffix = " " + spelling.casefold()
                if lowered.endswith(suffix) and len(lowered) > len(suffix):
                    found.append((len(suffix), raw[: -len(suffix)], scheduler))
        found.sort(key=lambda item: -item[0])
        return [(base, scheduler) for _, base, scheduler in found]

    def _automatic_for(self, sampler: A1111Sampler) -> str:
        if sampler.default_scheduler in self.names.schedulers:
            return sampler.default_scheduler
        return "normal" if "normal" in self.names.schedulers else self.names.schedulers[0]

    # --- listings ---

    def sampler_listing(self) -> list[dict[str, Any]]:
        """``/sdapi/v1/samplers``: A1111 names with aliases, then the legacy "<sampler> <Schedule>" names."""
        listing = [s.to_json() for s in self.samplers]
        known = {s.name for s in self.samplers}
        scheduler_labels = {s.label for s in self.schedulers}
        for base, label in LEGACY_SUFFIXED_SAMPLERS:
            if base in known and label in scheduler_labels:
                listing.append({"name": f"{base} {label}", "aliases": [], "options": {"scheduler": label.casefold()}})
        return listing

    def scheduler_listing(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.schedulers]

