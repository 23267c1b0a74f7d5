"""The mean-scale hyperprior latent codec (Minnen, Ballé, Toderici 2018, without context).

Sections ``z`` (the hyper-latent ``z = h_a(y)``, factorized prior, one table per channel) and
``y`` (Gaussian conditional: per element a table index and a mean from ``h_s(round(z))``).
The networks are the model's, handed in:

- ``h_a``: any module, ``y`` -> ``z`` at ``1 / hyper_stride`` of ``y``'s resolution;
- ``h_s``: an integer hyper-synthesis (:class:`~neurocodec.models.hyperprior.HyperSynthesis`):
  ``h_s(z_hat) -> (index, means)`` straight-through in training, ``h_s.forward_integer(z_hat)
  -> (int32 index, float64 means)`` exactly at coding time, ``h_s.float_forward`` its float twin.

Integer indexes and fixed-point means are computed exactly on every device, so the decoder
selects the encoder's CDFs and means wherever it runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from neurocodec.entropy.latent_codecs.base import LatentCodec
from neurocodec.entropy.models import FactorizedPrior, GaussianConditional
from neurocodec.entropy.models.base import Mode

__all__ = ["HyperpriorLatentCodec", "LogUniformScales"]


class LogUniformScales(nn.Module):
    """``scale(index) = exp(log_s0 + index * log_step)``: the Gaussian's scale table, differentiable
    in the (straight-through integer) table index that ``h_s`` outputs."""

    def __init__(self, gaussian: GaussianConditional):
        super().__init__()
        scales = torch.from_numpy(gaussian.scale_table)
        # not persistent: derived from the scale table, which the weights files carry
        self.register_buffer("log_scale0", torch.tensor(math.log(scales[0])), persistent=False)
        self.register_buffer(
            "log_scale_step",
            torch.tensor(math.log(scales[-1] / scales[0]) / (len(scales) - 1)),
            persistent=False,
        )
        if not torch.allclose(self(torch.arange(len(scales))), scales.float(), rtol=1e-5):
            raise ValueError("the hyperprior needs a log-uniform scale table")

    def forward(self, index: Tensor) -> Tensor:
        return torch.exp(self.log_scale0 + index * self.log_scale_step)


class HyperpriorLatentCodec(LatentCodec):
    """Mean-scale hyperprior for an ``M``-channel latent with an ``N``-channel hyper-latent.

    Args:
        h_a: the hyper-analysis (float), ``y`` -> ``z``.
        h_s: the integer hyper-synthesis (see the module docstring).
        hyper_channels: ``N``, the channels of ``z``.
        scale_table: the Gaussian's table scales (log-uniform; default the library's).
        hyper_stride: ``z``'s downsampling of ``y`` along each side (``y``'s sides must be
            multiples of it).
        float_prior: train ``h_s`` as its float twin (measurement only: no exact coding path).
    """

    section_names = ("z", "y")

    def __init__(
        self,
        h_a: nn.Module,
        h_s: nn.Module,
        hyper_channels: int,
        scale_table=None,
        hyper_stride: int = 4,
        float_prior: bool = False,
    ):
        super().__init__()
        self.hyper_channels, self.hyper_stride = int(hyper_channels), int(hyper_stride)
        self.float_prior = bool(float_prior)
        self.h_a = h_a
        self.entropy_bottleneck = FactorizedPrior(hyper_channels)
        self.gaussian_conditional = GaussianConditional(scale_table)
        self.h_s = h_s
        self.scales_of = LogUniformScales(self.gaussian_conditional)

    @property
    def num_scales(self) -> int:
        return len(self.gaussian_conditional.scale_table)

    def side_latents(self, y: Tensor) -> dict[str, Tensor]:
        return {"z": self.h_a(y)}

    def _z(self, y: Tensor, side: Mapping[str, Tensor] | None) -> Tensor:
        return self.h_a(y) if side is None else side["z"]

    def forward(
        self, y: Tensor, side: Mapping[str, Tensor] | None = None, mode: Mode | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(y_hat, {"y", "z"} likelihoods)``; ``side["z"]`` replaces ``h_a(y)`` when given.

        ``y_hat`` is ``round(y - means) + means`` (straight-through), or under a relaxed rounding
        ``mode`` that rounding of ``y - means`` (and of ``z``). ``h_s`` always sees ``round(z)``
        (straight-through), as when coding. All of it runs in float32, even under bf16 autocast:
        the straight-through integers of the integer ``h_s`` and of the roundings must be the
        coding-time ones, and bf16 holds 8 significant bits.
        """
        z = self._z(y, side)
        with torch.autocast(y.device.type, enabled=False):
            y, z = y.float(), z.float()
            _, z_likelihoods = self.entropy_bottleneck(z, mode)
            h_s = self.h_s.float_forward if self.float_prior else self.h_s
            index, means = h_s(self.entropy_bottleneck.quantize(z, "ste"))  # round(z), straight-through
            gaussian = self.gaussian_conditional
            y_hat, y_likelihoods = gaussian(y, self.scales_of(index), means, mode)
            if not callable(mode):
                y_hat = gaussian.quantize(y, "ste", means)
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    @torch.no_grad()
    def coding_parameters(self, z_hat: Tensor, reference: bool = False) -> tuple[Tensor, Tensor]:
        """The exact coding-time ``(int32 table indexes, float64 means)`` of integer ``z_hat``.

        ``reference=True`` computes them with ``h_s``'s float64 reference path instead of its int8
        products: the same numbers, bit for bit, several times slower.
        """
        if not reference:
            return self.h_s.forward_integer(z_hat)
        index, means = self.h_s(z_hat.to(torch.float64))
        return index.to(torch.int32), means

    def compress(self, y: Tensor, side: Mapping[str, Tensor] | None = None) -> dict[str, bytes]:
        """``{"z", "y"}``: ``z = side["z"]`` or ``h_a(y)``, coded where ``y`` is (GPU or C++ core)."""
        z_symbols = torch.round(self._z(y, side))
        index, means = self.coding_parameters(z_symbols)
        return {
            "z": self.entropy_bottleneck.compress(z_symbols),
            "y": self.gaussian_conditional.compress(y, index, means),
        }

    def coded_latent(self, y: Tensor) -> Tensor:
        """The ``y_hat`` (float64) a decoder gets from :meth:`compress`'s sections, without coding."""
        _, means = self.coding_parameters(torch.round(self.h_a(y)))
        return torch.round(y.to(means) - means) + means

    def hyper_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of ``z`` for a latent ``y`` of ``shape`` (N, M, *sides)."""
        n, _, *sides = shape
        return (n, self.hyper_channels, *(s // self.hyper_stride for s in sides))

    def decompress(self, sections: Mapping[str, bytes], shape: Sequence[int]) -> Tensor:
        """``y_hat`` (float64, on the device of the weights) for ``y`` of ``shape``."""
        z_hat = self.entropy_bottleneck.decompress(sections["z"], self.hyper_shape(shape))
        index, means = self.coding_parameters(z_hat.to(self.entropy_bottleneck.table_sizes.device))
        return self.gaussian_conditional.decompress(sections["y"], index, means)
