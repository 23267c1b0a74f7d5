"""``hyperprior``: the mean-scale hyperprior image codec, the baseline every image codec is compared to.

File sections: ``z`` (the hyper-latent, factorized prior, one table per channel) and ``y``
(the latent, Gaussian conditional, table index and mean per element from the integer ``h_s``):
:class:`~neurocodec.entropy.latent_codecs.HyperpriorLatentCodec`. The decoder derives the ``y``
tables and means from ``z`` alone, with integer arithmetic (:mod:`neurocodec.models.integer`),
so a file decodes bit-exactly on any device; only the float synthesis of the pixels may differ
in its last bits between devices.
"""

from __future__ import annotations

from neurocodec.codecs.image_transform import ImageTransformCodec
from neurocodec.models.hyperprior import MeanScaleHyperprior
from neurocodec.registry import register_codec

__all__ = ["HyperpriorCodec"]


@register_codec(model=MeanScaleHyperprior, arch={"N": 128, "M": 192}, priority=20)
class HyperpriorCodec(ImageTransformCodec):
    name = "hyperprior"
    media = "image"
    channels = (3,)
    adaptive = True

    def __init__(self, N: int = 128, M: int = 192, **base):
        super().__init__(**base)
        self.model = MeanScaleHyperprior(N=N, M=M)
