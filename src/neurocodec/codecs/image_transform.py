"""What the learned-transform image codecs share: ``g_a`` -> a latent codec -> ``g_s``.

:class:`ImageTransformCodec` is the encoder and the decoder of a model that is an analysis
transform ``g_a``, a synthesis ``g_s`` and a :class:`~neurocodec.entropy.latent_codecs.LatentCodec`
(``model.latent_codec``; ``y`` has ``model.M`` channels at ``1 / model.latent_stride`` of the
image), with inputs padded (replicate) to a multiple of ``model.downsampling``
and, for ``adaptive`` families, encoder-side adaptation (:mod:`neurocodec.codecs.adapt`) through
``model.latent_forward``. The file's sections are the latent codec's; the header records the
true size, and the decoder crops to it.

A family sets :attr:`~ImageTransformCodec.latent_layout`, the memory format ``y`` is handed to
the latent codec in (it decides the float rounding of ``h_a``, hence the bytes a given encoder
writes), and builds ``self.model``.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from neurocodec.codecs.adapt import refine
from neurocodec.codecs.base import Codec, blocks, pad_to_multiple
from neurocodec.container import Header, ImageGeometry

__all__ = ["ImageTransformCodec"]

CHANNELS_LAST = torch.channels_last


class ImageTransformCodec(Codec):
    """An image codec of ``g_a``, a latent codec and ``g_s`` (see the module docstring)."""

    media = "image"
    channels = (3,)
    # the memory format of y for h_a and the coder: None keeps g_a's (channels-last)
    latent_layout: ClassVar[torch.memory_format | None] = None

    def _encode(self, x: torch.Tensor, effort: int = 0) -> tuple[ImageGeometry, dict[str, bytes]]:
        _, c, h, w = x.shape
        m = self.model
        # channels-last: the fast layout of the convolutions (and of the blocked GDN). Its float
        # rounding differs from NCHW's, so an encoder may pick a different symbol in rare places;
        # that never matters to decoding, whose every CDF-selecting value is integer.
        padded = pad_to_multiple(x, m.downsampling).contiguous(memory_format=CHANNELS_LAST)
        y = m.g_a(padded)
        if self.latent_layout is not None:
            y = y.contiguous(memory_format=self.latent_layout)
        side = None
        if effort:  # SGA: latents adapted to x, then coded as the encoder's are
            y, side = refine(m, x, y, m.latent_codec.side_latents(y), self.lmbda, effort)
        sections = m.latent_codec.compress(y, side)  # coded where y is: GPU or C++ core
        return ImageGeometry(height=h, width=w, channels=c, bit_depth=8), sections

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        """The shape of the latent ``y`` (``model.M`` channels at ``1 / model.latent_stride`` of the
        padded image) of an image of ``height`` x ``width``."""
        m = self.model
        per_block = m.downsampling // m.latent_stride
        rows, cols = blocks((height, width), m.downsampling)
        return (1, m.M, rows * per_block, cols * per_block)

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        m = self.model
        m.latent_codec.check_sections(sections, f"this {self.name} file")
        g = header.geometry
        y_hat = m.latent_codec.decompress(sections, self.latent_shape(g.height, g.width))
        # channels-last: the fast layout of the synthesis (whose last bits may differ anyway)
        return m.g_s(y_hat.to(self.device, torch.float32).contiguous(memory_format=CHANNELS_LAST))
