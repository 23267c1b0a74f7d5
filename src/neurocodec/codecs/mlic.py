"""``mlic``: the MLICv2 image codec (:mod:`neurocodec.models.mlic`), multi-reference entropy model.

File sections: ``z`` (the hyper-latent, factorized prior, one table per channel) and ``y`` (the
latent, coded by the sliced checkerboard schedule: per slice its anchors then its non-anchors,
one ``push`` per step into one rANS stream; element order in docs/bitstream.md §7). The decoder
needs only the file: it decodes ``z``, runs the integer hyper-synthesis, then pulls the
schedule's steps one by one, each step's table indexes and means computed by the integer
:class:`~neurocodec.models.mlic.MultiReferencePrior` from the steps decoded so far. The whole
prior path is exact integer arithmetic — ``h_s`` on the int8 path of the integer layers, the context
networks on their float64 reference path (integers held in float64) — so a file decodes
bit-exactly on any device; only the float LRP and synthesis of the pixels may differ in their
last bits.

Inputs are padded (replicate) to a multiple of 64; the header records the true size. The float
transforms (``g_a``, the LRP and ``g_s``) run in the channels-last memory format: encode and decode
are 1.24-1.37x faster on the CPU than in the default one (``eval/bench_mlic_layout.py``).
"""

from __future__ import annotations

import torch

from neurocodec import container
from neurocodec.codecs.adapt import refine
from neurocodec.codecs.base import Codec, blocks, pad_to_multiple
from neurocodec.container import Header, ImageGeometry
from neurocodec.errors import BitstreamError
from neurocodec.models.mlic import MLICv2
from neurocodec.registry import register_codec

__all__ = ["MLICCodec"]

CHANNELS_LAST = torch.channels_last


# priority: the default image codec, its shipped weights beat the hyperprior's on Kodak (eval/results/kodak-mlic)
@register_codec(model=MLICv2, arch={"preset": "small"}, priority=30)
class MLICCodec(Codec):
    """MLICv2 as a codec: ``MLICCodec(preset="small")`` or ``MLICCodec(N=..., M=..., num_slices=...)``."""

    name = "mlic"
    media = "image"
    channels = (3,)
    adaptive = True

    def __init__(
        self,
        preset: str | None = "small",
        *,
        quality: int = 0,
        weights_hash: bytes = bytes(container.WEIGHTS_HASH_BYTES),
        **arch,
    ):
        super().__init__(quality=quality, weights_hash=weights_hash)
        self.model = MLICv2(preset, **arch)
        for transform in (self.model.g_a, self.model.lrp, self.model.g_s):
            transform.to(memory_format=CHANNELS_LAST)  # loading weights keeps the layout

    def _encode(self, x: torch.Tensor, effort: int = 0) -> tuple[ImageGeometry, dict[str, bytes]]:
        _, c, h, w = x.shape
        padded = pad_to_multiple(x, self.model.downsampling)
        m = self.model
        y = m.g_a(padded.contiguous(memory_format=CHANNELS_LAST)).contiguous()
        z = m.h_a(y)
        if effort:  # SGA (MLICv2+): latents adapted to x, then coded as the encoder's are
            y, z = refine(m, x, y, z, self.lmbda, effort)
        z_stream = m.entropy_bottleneck.compress(z)
        hyper, _ = m.coding_hyper(torch.round(z))
        (y_stream,) = m.schedule.compress(y, m.prior, hyper, m.gaussian)
        return ImageGeometry(height=h, width=w, channels=c, bit_depth=8), {"z": z_stream, "y": y_stream}

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        missing = {"z", "y"} - sections.keys()
        if missing:
            raise BitstreamError(f"this mlic file lacks its {' and '.join(sorted(missing))} section")
        g = header.geometry
        zh, zw = blocks((g.height, g.width), self.model.downsampling)  # z: 1/64 of the padded image
        m = self.model
        z_hat = m.entropy_bottleneck.decompress(sections["z"], (1, m.N, zh, zw)).to(self.device)
        hyper, means = m.coding_hyper(z_hat)
        y_hat = m.schedule.decompress(
            [sections["y"]], m.prior, hyper, m.gaussian, (4 * zh, 4 * zw), self.device
        )
        return m.synthesize(
            y_hat.contiguous(memory_format=CHANNELS_LAST), means.contiguous(memory_format=CHANNELS_LAST)
        ).contiguous()
