"""``hyperprior``: the mean-scale hyperprior image codec, the baseline every image codec is compared to.

File sections: ``z`` (the hyper-latent, factorized prior, one table per channel) and ``y``
(the latent, Gaussian conditional, table index and mean per element from the integer ``h_s``).
The decoder derives the ``y`` tables and means from ``z`` alone, with integer arithmetic
(:mod:`neurocodec.models.integer`), so a file decodes bit-exactly on any device; only the
float synthesis of the pixels may differ in its last bits between devices.
"""

from __future__ import annotations

import torch

from neurocodec.codecs.adapt import refine
from neurocodec.codecs.base import Codec, blocks, pad_to_multiple
from neurocodec.container import Header, ImageGeometry
from neurocodec.errors import BitstreamError
from neurocodec.models.hyperprior import MeanScaleHyperprior
from neurocodec.registry import register_codec

__all__ = ["HyperpriorCodec"]


@register_codec(model=MeanScaleHyperprior, arch={"N": 128, "M": 192}, priority=20)
class HyperpriorCodec(Codec):
    name = "hyperprior"
    media = "image"
    channels = (3,)
    adaptive = True

    def __init__(self, N: int = 128, M: int = 192, **base):
        super().__init__(**base)
        self.model = MeanScaleHyperprior(N=N, M=M)

    def _encode(self, x: torch.Tensor, effort: int = 0) -> tuple[ImageGeometry, dict[str, bytes]]:
        _, c, h, w = x.shape
        # channels-last: the fast layout of the convolutions (and of the blocked GDN). Its float
        # rounding differs from NCHW's, so an encoder may pick a different symbol in rare places;
        # that never matters to decoding, whose every CDF-selecting value is integer.
        padded = pad_to_multiple(x, self.model.downsampling).contiguous(memory_format=torch.channels_last)
        m = self.model
        y = m.g_a(padded)
        z = m.h_a(y)
        if effort:  # SGA: latents adapted to x, then coded as the encoder's are
            y, z = refine(m, x, y, z, self.lmbda, effort)
        z_stream = m.entropy_bottleneck.compress(z)
        index, means = m.prior(torch.round(z))
        y_stream = m.gaussian.compress(y, index, means)  # coded where y is: GPU or C++ core
        return ImageGeometry(height=h, width=w, channels=c, bit_depth=8), {"z": z_stream, "y": y_stream}

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        missing = {"z", "y"} - sections.keys()
        if missing:
            raise BitstreamError(f"this hyperprior file lacks its {' and '.join(sorted(missing))} section")
        g = header.geometry
        zh, zw = blocks((g.height, g.width), self.model.downsampling)  # z: 1/64 of the padded image
        m = self.model
        z_hat = m.entropy_bottleneck.decompress(sections["z"], (1, m.N, zh, zw)).to(self.device)
        index, means = m.prior(z_hat)
        y_hat = m.gaussian.decompress(sections["y"], index, means)  # decoded where index is
        # channels-last: the fast layout of the synthesis (whose last bits may differ anyway)
        return m.g_s(y_hat.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last))
