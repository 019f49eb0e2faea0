"""Parsing A1111 bodies as real clients send them: unknown keys, nulls, loose types, bad values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from graphengine.a1111.requests import Img2ImgRequest, Txt2ImgRequest, validation_detail
from tests import a1111_bodies as bodies


@pytest.mark.parametrize(
    "body",
    [
        bodies.sillytavern_auto(),
        bodies.sillytavern_vlad(seed=5),
        bodies.talemate_a1111(scheduler="polyPolyexponentialexponential"),
        bodies.talemate_sdnext_txt2img(model="m.safetensors"),
        bodies.webuiapi_txt2img(),
        bodies.sd_proxy_forwarded(),
    ],
    ids=["st-auto", "st-vlad", "talemate-a1111", "talemate-sdnext", "webuiapi", "sd-proxy"],
)
def test_client_bodies_parse_and_never_echo_credentials(body: dict) -> None:
    req = Txt2ImgRequest.model_validate(body)
    echoed = req.echo()
    assert "url" not in echoed and "auth" not in echoed
    assert "st-secret-password" not in repr(echoed)
    assert echoed["prompt"] == body["prompt"]


def test_nulls_mean_defaults_and_numbers_may_be_strings() -> None:
    req = Txt2ImgRequest.model_validate(
        {"prompt": None, "steps": "12", "cfg_scale": 6, "hr_sampler_name": None, "s_min_uncond": None, "width": "128"}
    )
    assert (req.prompt, req.steps, req.cfg_scale, req.width, req.height) == ("", 12, 6.0, 128, 512)
    assert req.seed == -1 and req.batch_size == 1 and req.steps == 12


def test_img2img_echo_hides_images_unless_asked() -> None:
    body = bodies.webuiapi_img2img(image_b64=bodies.png_b64(), mask_b64=bodies.png_b64())
    assert Img2ImgRequest.model_validate(body).echo()["init_images"] is None
    assert Img2ImgRequest.model_validate(body | {"include_init_images": True}).echo()["init_images"] == body["init_images"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"width": 500}, "width"),
        ({"height": 100000}, "height"),
        ({"steps": -3}, "steps"),
        ({"steps": "many"}, "steps"),
        ({"cfg_scale": "high"}, "cfg_scale"),
        ({"batch_size": 0}, "batch_size"),
        ({"n_iter": 1000}, "n_iter"),
        ({"seed": 2**70}, "seed"),
        ({"prompt": ["a", "list"]}, "prompt"),
        ({"override_settings": "x"}, "override_settings"),
        ({"hr_resize_x": 100}, "hr_resize_x"),
        ({"subseed_strength": 0.5}, "subseed_strength"),
    ],
)
def test_bad_values_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Txt2ImgRequest.model_validate(bodies.talemate_a1111() | change)
    detail, errors = validation_detail(info.value)
    assert detail.startswith(f"{field}:")
    assert errors[0]["loc"] == ["body", field]


def test_img2img_needs_an_init_image() -> None:
    with pytest.raises(ValidationError) as info:
        Img2ImgRequest.model_validate(bodies.talemate_a1111())
    assert validation_detail(info.value)[0].startswith("init_images:")
