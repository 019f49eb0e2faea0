"""VAE nodes: VAEDecode, VAEEncode, VAEEncodeForInpaint.

LATENT values are in the VAE's raw latent space (ComfyUI's convention): VAEEncode returns the
autoencoder's latents unscaled and VAEDecode takes them as they are; the sampler applies the model's
``LatentFormat``. Importing this module does not import torch; ``nodes._vae_ops`` does the work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from graphengine.errors import NodeInputError
from graphengine.node import Input, Node, NodeContext, NodeOutputs, Output
from graphengine.registry import NodePack
from nodes.sockets import Image, Latent, Mask, Vae


class VAEDecode(Node):
    """Turns latents into images with a VAE (tiled automatically when GPU memory runs short)."""

    display_name: ClassVar[str] = "VAE Decode"
    category: ClassVar[str] = "latent"

    samples: Latent = Input(tooltip="The latents to decode.")
    vae: Vae = Input(tooltip="The VAE that matches the model the latents came from.")

    class Outputs(NodeOutputs):
        image: Image = Output(tooltip="The decoded images.")

    def run(self, ctx: NodeContext) -> VAEDecode.Outputs:
        from nodes import _vae_ops

        with _named_errors(self), self.vae.activate() as autoencoder:
            pixels = _vae_ops.decode(autoencoder, self.samples.samples, step=ctx.check_interrupted)
        return self.Outputs(image=Image(pixels=pixels))


class VAEEncode(Node):
    """Turns images into latents with a VAE (images are centre-cropped to multiples of 8 pixels)."""

    display_name: ClassVar[str] = "VAE Encode"
    category: ClassVar[str] = "latent"

    pixels: Image = Input(tooltip="The images to encode (RGB; an alpha channel is ignored).")
    vae: Vae = Input(tooltip="The VAE of the model that will sample the latents.")

    class Outputs(NodeOutputs):
        latent: Latent = Output(tooltip="The encoded latents, in the VAE's raw latent space.")

    def run(self, ctx: NodeContext) -> VAEEncode.Outputs:
        from nodes import _vae_ops

        with _named_errors(self), self.vae.activate() as autoencoder:
            samples = _vae_ops.encode(autoencoder, self.pixels.pixels, step=ctx.check_interrupted)
        return self.Outputs(latent=Latent(samples=samples))


class VAEEncodeForInpaint(Node):
    """Encodes images for an inpainting model: masked pixels are set to grey before encoding, and the
    mask (grown by a few pixels to hide seams) becomes the latent's noise mask."""

    display_name: ClassVar[str] = "VAE Encode (for Inpainting)"
    category: ClassVar[str] = "latent/inpaint"

    pixels: Image = Input(tooltip="The images to inpaint.")
    vae: Vae = Input(tooltip="The VAE of the model that will sample the latents.")
    mask: Mask = Input(tooltip="Where to regenerate (1) and where to keep the image (0).")
    grow_mask_by: int = Input(6, min=0, max=64, step=1, tooltip="Pixels to grow the noise mask by.")

    class Outputs(NodeOutputs):
        latent: Latent = Output(tooltip="The encoded latents with the grown mask as noise mask.")

    def run(self, ctx: NodeContext) -> VAEEncodeForInpaint.Outputs:
        from nodes import _vae_ops

        with _named_errors(self), self.vae.activate() as autoencoder:
            ratio = _vae_ops.downscale(autoencoder)
            pixels, noise_mask = _vae_ops.inpaint_inputs(self.pixels.pixels, self.mask.values, self.grow_mask_by, ratio)
            samples = _vae_ops.encode(autoencoder, pixels, step=ctx.check_interrupted)
        return self.Outputs(latent=Latent(samples=samples, noise_mask=noise_mask))


@contextmanager
def _named_errors(node: Node) -> Iterator[None]:
    """Prefix input errors with the node's display name, so the user sees which node refused what."""
    try:
        yield
    except NodeInputError as exc:
        raise NodeInputError(f"{node.title()}: {exc}") from exc


def pack() -> NodePack:
    return NodePack(name="vae", nodes=(VAEDecode, VAEEncode, VAEEncodeForInpaint))
