"""``walloc-image`` and ``walloc-audio``: WaLLoC (:mod:`neurocodec.models.walloc`) as codecs.

File section: ``y``, the latent, rounded and coded with the factorized prior (one CDF table per
latent channel, so every table index is the channel number: the decoder needs nothing but the
integer tables shipped with the weights, and entropy decoding is bit-exact on any device).
Weights with a hyperprior (``hyper_channels=N``) write sections ``z`` (the hyper-latent,
factorized prior) and ``y`` (Gaussian conditional, table index and mean per element from the
integer ``h_s``, as in the ``hyperprior`` codec): also bit-exact on any device.
The input is padded to a multiple of ``2**levels`` (4 times that with a hyperprior) on each
side (images: edge replication; audio: zeros after the end) and the decoder crops to the
geometry in the header.

Encoding costs the wavelet packet transform, one 1x1 projection, a rounding and the rANS
coder: no deep network runs on the encoder side. ``walloc-image`` also takes ``effort``
(encoder-side adaptation, :mod:`neurocodec.codecs.adapt`): N descents through the decoder,
for a better file from the same decoder, at N synthesis passes' cost. Qualities are operating points (latent
channels x lambda, and optionally the compander's bits), each its own weights.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from neurocodec import container
from neurocodec.codecs.adapt import refine
from neurocodec.codecs.base import Codec, blocks, pad_to_multiple
from neurocodec.container import AudioGeometry, Geometry, Header, ImageGeometry
from neurocodec.models.walloc import WaLLoC, WaLLoCAudio, WaLLoCImage
from neurocodec.registry import register_codec

__all__ = ["WaLLoCAudioCodec", "WaLLoCImageCodec"]


class _WaLLoCCodec(Codec):
    """What both WaLLoC codecs share: one latent section, padding to the packet grid."""

    model_class: ClassVar[type[WaLLoC]]

    def __init__(self, quality: int = 0, weights_hash: bytes = bytes(container.WEIGHTS_HASH_BYTES), **arch):
        super().__init__(quality, weights_hash)
        self.model = self.model_class(**arch)

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded after its end to a multiple of the model's ``pad_step`` along each side."""
        return pad_to_multiple(x, self.model.pad_step, "replicate" if self.media == "image" else "constant")

    def _latent_shape(self, sizes: tuple[int, ...]) -> tuple[int, ...]:
        m = self.model
        return (1, m.latent_dim, *(b * m.pad_step // m.step for b in blocks(sizes, m.pad_step)))

    def _latent(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.encode_latent(m.analysis(self._padded(x)))

    def _sections(self, x: torch.Tensor, effort: int = 0) -> dict[str, bytes]:
        m = self.model
        y, side = self._latent(x), None  # side: the latent codec's own (h_a(y)) unless adapted
        if effort:  # SGA: latents adapted to x, then coded as the encoder's are
            y, side = refine(m, x, y, m.latent_codec.side_latents(y), self.lmbda, effort)
        return m.latent_codec.compress(y, side)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The latent of a batch ``x`` (sides any size) as the decoder gets it, as float32: the
        integers the file codes (with a hyperprior: plus the means it predicts).

        For compressed learning: downstream models can train on these directly.
        """
        return self.model.latent_codec.coded_latent(self._latent(x)).float()

    def _decode_latent(self, sections: dict[str, bytes], sizes: tuple[int, ...]) -> torch.Tensor:
        m = self.model
        m.latent_codec.check_sections(sections, f"this {self.name} file")
        y_hat = m.latent_codec.decompress(sections, self._latent_shape(sizes))
        return m.synthesis(m.decode_latent(y_hat.to(self.device, torch.float32)))


@register_codec(model=WaLLoCImage, priority=10)
class WaLLoCImageCodec(_WaLLoCCodec):
    name = "walloc-image"
    media = "image"
    channels = (3,)
    model_class = WaLLoCImage
    adaptive = True

    def _encode(self, x: torch.Tensor, effort: int = 0) -> tuple[Geometry, dict[str, bytes]]:
        _, c, h, w = x.shape
        return ImageGeometry(height=h, width=w, channels=c, bit_depth=8), self._sections(x, effort)

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        g = header.geometry
        return self._decode_latent(sections, (g.height, g.width))


@register_codec(model=WaLLoCAudio, priority=10)
class WaLLoCAudioCodec(_WaLLoCCodec):
    name = "walloc-audio"
    media = "audio"
    channels = (2,)
    sample_rate = 44100
    model_class = WaLLoCAudio

    def _encode(self, x: torch.Tensor) -> tuple[Geometry, dict[str, bytes]]:
        _, c, t = x.shape
        return AudioGeometry(sample_rate=self.sample_rate, channels=c, samples=t), self._sections(x)

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        return self._decode_latent(sections, (header.geometry.samples,))
