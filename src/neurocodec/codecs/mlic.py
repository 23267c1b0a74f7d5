"""``mlic``: the MLICv2 image codec (:mod:`neurocodec.models.mlic`), multi-reference entropy model.

File sections: ``z`` (the hyper-latent, factorized prior, one table per channel) and ``y`` (the
latent, coded by the sliced checkerboard schedule: per slice its anchors then its non-anchors,
one ``push`` per step into one rANS stream; element order in docs/bitstream.md §7):
:class:`~neurocodec.entropy.latent_codecs.ContextLatentCodec`. The decoder needs only the file:
it decodes ``z``, runs the integer hyper-synthesis, then pulls the schedule's steps one by one,
each step's table indexes and means computed by the integer
:class:`~neurocodec.models.mlic.MultiReferencePrior` from the steps decoded so far. The whole
prior path is exact integer arithmetic — ``h_s`` on the int8 path of the integer layers, the context
networks on their float64 reference path (integers held in float64) — so a file decodes
bit-exactly on any device; only the float LRP and synthesis of the pixels may differ in their
last bits.

Inputs are padded (replicate) to a multiple of 64; the header records the true size. The float
transforms (``g_a``, the LRP and ``g_s``) run in the channels-last memory format: encode and decode
are 1.24-1.37x faster on the CPU than in the default one (``eval/archive/bench_mlic_layout.py``); the
latent goes to ``h_a`` and the coder contiguous.
"""

from __future__ import annotations

import torch

from neurocodec import container
from neurocodec.codecs.image_transform import CHANNELS_LAST, ImageTransformCodec
from neurocodec.models.mlic import MLICv2
from neurocodec.registry import register_codec

__all__ = ["MLICCodec"]


# priority: the default image codec, its shipped weights beat the hyperprior's on Kodak (eval/results/kodak-mlic)
@register_codec(model=MLICv2, arch={"preset": "small"}, priority=30)
class MLICCodec(ImageTransformCodec):
    """MLICv2 as a codec: ``MLICCodec(preset="small")`` or ``MLICCodec(N=..., M=..., num_slices=...)``."""

    name = "mlic"
    media = "image"
    channels = (3,)
    adaptive = True
    latent_layout = torch.contiguous_format

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
        m = self.model
        for transform in (m.g_a, m.latent_codec.residual_prediction, m.g_s):
            transform.to(memory_format=CHANNELS_LAST)  # loading weights keeps the layout
