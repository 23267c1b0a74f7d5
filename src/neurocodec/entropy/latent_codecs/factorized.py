"""The factorized latent codec: ``y`` coded alone with a learned density per channel (section ``y``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from neurocodec.entropy.latent_codecs.base import LatentCodec
from neurocodec.entropy.models import FactorizedPrior
from neurocodec.entropy.models.base import Mode

__all__ = ["FactorizedLatentCodec"]


class FactorizedLatentCodec(LatentCodec):
    """``y`` (N, C, ...) -> ``{"y": rANS stream of round(y)}`` under a :class:`FactorizedPrior` of ``C``
    channels; the decoder needs nothing but the prior's tables."""

    section_names = ("y",)

    def __init__(self, channels: int):
        super().__init__()
        self.entropy_bottleneck = FactorizedPrior(channels)

    def forward(
        self, y: Tensor, side: Mapping[str, Tensor] | None = None, mode: Mode | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``y_hat``: ``round(y)`` (straight-through), or the relaxed rounding ``mode``."""
        y_hat, likelihoods = self.entropy_bottleneck(y, mode=mode)
        if not callable(mode):
            y_hat = self.entropy_bottleneck.quantize(y, "ste")
        return y_hat, {"y": likelihoods}

    def compress(self, y: Tensor, side: Mapping[str, Tensor] | None = None) -> dict[str, bytes]:
        return {"y": self.entropy_bottleneck.compress(y)}

    def decompress(self, sections: Mapping[str, bytes], shape: Sequence[int]) -> Tensor:
        """``round(y)`` as float32 on the device of the weights."""
        return self.entropy_bottleneck.decompress(sections["y"], shape)

    def coded_latent(self, y: Tensor) -> Tensor:
        return torch.round(y)
