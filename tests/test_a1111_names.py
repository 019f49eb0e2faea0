"""A1111 sampler/scheduler spellings → our sampler and scheduler names."""

from __future__ import annotations

import pytest

from graphengine.a1111.names import ComfyNames, NameResolver, UnknownSampler


@pytest.fixture(scope="module")
def resolver() -> NameResolver:
    return NameResolver()


@pytest.mark.parametrize(
    ("sampler", "scheduler", "expected"),
    [
        ("Euler a", None, ("euler_ancestral", "normal")),
        ("Euler", "karras", ("euler", "karras")),
        ("LMS", "Automatic", ("lms", "normal")),
        ("Heun", "automatic", ("heun", "normal")),
        ("DPM2", None, ("dpm_2", "karras")),
        ("DPM2 a", None, ("dpm_2_ancestral", "karras")),
        ("DPM++ 2S a", None, ("dpmpp_2s_ancestral", "karras")),
        ("DPM++ 2M", None, ("dpmpp_2m", "karras")),
        ("DPM++ SDE", None, ("dpmpp_sde", "karras")),
        ("DPM++ 2M SDE", None, ("dpmpp_2m_sde", "exponential")),
        ("DPM++ 3M SDE", None, ("dpmpp_3m_sde", "exponential")),
        ("DDIM", None, ("ddim", "ddim_uniform")),
        ("UniPC", None, ("uni_pc", "normal")),
        ("LCM", None, ("lcm", "sgm_uniform")),
        ("k_euler_a", None, ("euler_ancestral", "normal")),
        ("k_dpmpp_2m", "SGM Uniform", ("dpmpp_2m", "sgm_uniform")),
        ("dpmpp_2m", "normal", ("dpmpp_2m", "normal")),  # our own names work too
        ("euler a", "KARRAS", ("euler_ancestral", "karras")),  # case-insensitive
    ],
)
def test_a1111_names_and_aliases(resolver: NameResolver, sampler: str, scheduler: str | None, expected: tuple[str, str]) -> None:
    choice = resolver.resolve(sampler, scheduler)
    assert (choice.comfy_sampler, choice.comfy_scheduler) == expected


@pytest.mark.parametrize(
    ("sampler", "scheduler", "expected", "label"),
    [
        ("DPM++ 2M Karras", None, ("dpmpp_2m", "karras"), "Karras"),
        ("DPM++ 2M Karras", "normal", ("dpmpp_2m", "karras"), "Karras"),  # the suffix wins, as in A1111
        ("DPM++ 2M SDE Exponential", None, ("dpmpp_2m_sde", "exponential"), "Exponential"),
        ("Euler a SGM Uniform", None, ("euler_ancestral", "sgm_uniform"), "SGM Uniform"),
        ("LMS Karras", None, ("lms", "karras"), "Karras"),
    ],
)
def test_scheduler_suffix_on_the_sampler_name(
    resolver: NameResolver, sampler: str, scheduler: str | None, expected: tuple[str, str], label: str
) -> None:
    choice = resolver.resolve(sampler, scheduler)
    assert (choice.comfy_sampler, choice.comfy_scheduler) == expected
    assert choice.scheduler.label == label


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        ("Karras", "karras"),
        ("Exponential", "exponential"),
        ("SGM Uniform", "sgm_uniform"),
        ("KL Optimal", "kl_optimal"),
        ("Simple", "simple"),
        ("Normal", "normal"),
        ("DDIM", "ddim_uniform"),
        ("Beta", "beta"),
        ("Uniform", "normal"),
        ("discrete", "normal"),  # sd-proxy / stable-diffusion.cpp name
        ("polyPolyexponentialexponential", "karras"),  # Talemate's typo → Automatic → DPM++ 2M's karras
        ("ays", "karras"),  # not available → Automatic
        ("", "karras"),
        (None, "karras"),
    ],
)
def test_scheduler_labels_and_fallback_to_automatic(resolver: NameResolver, scheduler: str | None, expected: str) -> None:
    assert resolver.resolve("DPM++ 2M", scheduler).comfy_scheduler == expected


def test_missing_sampler_is_the_default_sampler(resolver: NameResolver) -> None:
    for spelling in (None, "", "Default", "Automatic"):
        assert resolver.resolve(spelling, None).sampler.name == "DPM++ 2M"


def test_unknown_sampler_is_an_error_naming_it(resolver: NameResolver) -> None:
    with pytest.raises(UnknownSampler, match="Bogus Sampler"):
        resolver.resolve("Bogus Sampler", "karras")


def test_listing_has_names_aliases_and_legacy_suffixed_names(resolver: NameResolver) -> None:
    listing = resolver.sampler_listing()
    names = [entry["name"] for entry in listing]
    assert names[:2] == ["DPM++ 2M", "DPM++ SDE"]
    assert {"Euler a", "Euler", "DDIM", "UniPC", "LCM", "DPM++ 2M Karras", "DPM++ 2M SDE Exponential"} <= set(names)
    euler_a = next(e for e in listing if e["name"] == "Euler a")
    assert euler_a["aliases"] == ["k_euler_a", "k_euler_ancestral"]
    # every listed name resolves
    for name in names:
        resolver.resolve(name, None)
    schedulers = resolver.scheduler_listing()
    assert schedulers[0] == {"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1, "need_inner_model": False}
    assert {"karras", "exponential", "sgm_uniform", "normal"} <= {s["name"] for s in schedulers}


def test_samplers_the_engine_lacks_are_not_offered() -> None:
    resolver = NameResolver(ComfyNames(samplers=("euler", "euler_ancestral"), schedulers=("normal", "karras")))
    assert [s["name"] for s in resolver.sampler_listing()] == ["Euler a", "Euler", "Euler Karras", "Euler a Karras"]
    with pytest.raises(UnknownSampler):
        resolver.resolve("DPM++ 2M", None)
    assert resolver.resolve(None, "Exponential").comfy_scheduler == "normal"  # unknown here → Automatic
    assert resolver.default_sampler.name == "Euler a"


def test_installed_names_come_from_the_sampling_pack() -> None:
    from nodes.sampling import names

    installed = ComfyNames.installed()
    assert set(installed.samplers) == {n for n in names.SAMPLER_NAMES if n in names.IMPLEMENTED_SAMPLERS}
    assert installed.schedulers == names.SCHEDULER_NAMES
