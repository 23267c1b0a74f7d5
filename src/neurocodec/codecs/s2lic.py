"""``s2lic``: the S2LIC image codec (:mod:`neurocodec.models.s2lic`): SwinV2 transforms, ACGC entropy model.

**Byte format.** The container (docs/bitstream.md) with the codec name ``s2lic`` and two sections,
written by :class:`~neurocodec.entropy.latent_codecs.ContextLatentCodec` exactly as ``mlic``'s:

- ``z``: the hyper-latent (``N`` channels at 1/64 of the padded image), factorized prior, one
  table per channel;
- ``y``: the latent (``M`` channels at 1/16 of the padded image) as one rANS stream, coded by the
  sliced checkerboard schedule: for each of the ``num_slices`` equal channel slices, its anchors
  (``(i + j) % 2 == ANCHOR_PARITY``) then its non-anchors, one ``push`` per step, each element's
  Gaussian table index and mean given by the integer :class:`~neurocodec.models.s2lic.ACGCPrior`
  from the hyper-prior and the steps decoded before it (element order: docs/bitstream.md §7).

The header records the true image size; the image is padded (replicate) to a multiple of 64 and
the decoder crops. The architecture (preset or fields, including ``anchor_context``) is not in the
file: it comes with the weights (model card), which the file names by their hash. The whole prior
path is exact integer arithmetic, so a file decodes bit-exactly on any device and thread count;
only the float LRP and synthesis of the pixels may differ in their last bits.

The float transforms (``g_a``, the LRP and ``g_s``) run in the channels-last memory format (the
SwinV2 blocks read (B, H, W, C) features, which that layout gives without a copy); the latent goes
to ``h_a`` and the coder contiguous.
"""

from __future__ import annotations

import torch

from neurocodec import container
from neurocodec.codecs.image_transform import CHANNELS_LAST, ImageTransformCodec
from neurocodec.models.s2lic import S2LIC
from neurocodec.registry import register_codec

__all__ = ["S2LICCodec"]


@register_codec(model=S2LIC, arch={"preset": "small"})
class S2LICCodec(ImageTransformCodec):
    """S2LIC as a codec: ``S2LICCodec(preset="small")`` or ``S2LICCodec(N=..., M=..., num_slices=...)``."""

    name = "s2lic"
    media = "image"
    channels = (3,)
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
        self.model = S2LIC(preset, **arch)
        m = self.model
        for transform in (m.g_a, m.latent_codec.residual_prediction, m.g_s):
            transform.to(memory_format=CHANNELS_LAST)  # loading weights keeps the layout
