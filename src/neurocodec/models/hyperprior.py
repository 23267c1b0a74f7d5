"""Mean-scale hyperprior (Minnen, Ballé, Toderici 2018, without the autoregressive context).

Float analysis/synthesis transforms (``g_a``, ``g_s``, ``h_a``) and an **integer**
hyper-synthesis ``h_s`` (:mod:`neurocodec.models.integer`): ``h_s`` maps the decoded hyper-latent
``z_hat`` (integers) to, per latent element, an integer **table index** (the Gaussian scale is
``scale_table[index]``) and a **mean** on a fixed-point grid of ``2^-mean_bits``. At coding time
``h_s`` runs with int8 matrix products and int64 recombination (or, as the reference, in
float64 on integers); both are exact on every device (see the exactness argument in
:mod:`neurocodec.models.integer`) and give the same integers, so the encoder and the decoder
select identical CDFs and identical means wherever they run.

Training uses the same arithmetic with straight-through rounding: ``h_s`` sees ``round(z)``,
the scales are the table scales of the (integer) indexes and the means are on the same grid,
so the trained model is the coded model. Rates: additive noise on ``y`` and ``z``;
the synthesis sees ``round(y - means) + means`` (straight-through).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from neurocodec.entropy.models import FactorizedPrior, GaussianConditional
from neurocodec.entropy.models.base import Mode
from neurocodec.models.integer import (
    IntegerConv1d,
    IntegerConv2d,
    IntegerConvTranspose1d,
    IntegerConvTranspose2d,
    round_ste,
)
from neurocodec.models.layers import GDN, conv, deconv

__all__ = [
    "HyperSynthesis",
    "LatentHyperprior",
    "MeanScaleHyperprior",
    "hyper_analysis",
    "mean_scale_latents",
]

Z_BOUND = 2**15  # hyper-latents are clamped to [-Z_BOUND, Z_BOUND] before h_s (bounds the accumulators)


class HyperSynthesis(nn.Module):
    """Integer ``h_s``: ``z_hat`` -> (table index per element, mean per element).

    Two upsampling integer layers with QReLU activations in [0, 255], then a 3x3 integer layer
    with ``2M`` outputs: the first ``M`` are table indexes (clamped to ``[0, num_scales - 1]``),
    the last ``M`` are means in units of ``2^-mean_bits``. ``dims``: 2 for images, 1 for signals.
    """

    def __init__(self, N: int, M: int, num_scales: int, mean_bits: int = 4, dims: int = 2):
        super().__init__()
        self.num_scales, self.mean_bits = num_scales, mean_bits
        mid = M * 3 // 2
        up, same = (
            (IntegerConvTranspose1d, IntegerConv1d) if dims == 1 else (IntegerConvTranspose2d, IntegerConv2d)
        )
        # gains: z has an rms of a few units; hidden activations should span tens in [0, 255]
        self.up1 = up(N, M, 5, 2, input_bound=Z_BOUND, init_gain=10.0)
        self.up2 = up(M, mid, 5, 2, init_gain=2.0)
        self.out = same(mid, 2 * M, 3, 1, act_bits=None, init_gain=0.5)
        with torch.no_grad():
            self.up1.bias.fill_(8.0)  # hidden QReLUs start inside [0, 255] even for z = 0
            self.up2.bias.fill_(8.0)
            self.out.bias[:M].fill_(num_scales / 2)  # start near the middle of the scale table

    def forward(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """float32 (training, straight-through) or float64 (coding, exact) integer-valued ``z_hat``."""
        x = torch.clamp(z_hat, -Z_BOUND, Z_BOUND)
        raw = self.out(self.up2(self.up1(x)))
        index_raw, mean_raw = raw.chunk(2, dim=1)
        index = torch.clamp(index_raw, 0, self.num_scales - 1)
        return index, mean_raw * 2.0**-self.mean_bits

    def float_forward(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """The same parameters as a plain float network: continuous ``(index, mean)``.

        Each layer computes ``conv(x, w) + b`` without rounding its weights or flooring its
        output (the integer layer before rounding), hidden outputs clamped to ``[0, 255]``.
        This is the float twin that ``eval/bench_integer_prior.py`` measures the integer
        arithmetic against; it is not exact across devices, so no codec codes with it.
        """
        x = torch.clamp(z_hat, -Z_BOUND, Z_BOUND)
        for layer in (self.up1, self.up2, self.out):
            x = layer._conv(x, layer.weight, layer.bias)
            if layer.act_bits is not None:
                x = torch.clamp(x, 0, 2**layer.act_bits - 1)
        index, mean = x.chunk(2, dim=1)
        return torch.clamp(index, 0, self.num_scales - 1), mean * 2.0**-self.mean_bits

    def forward_integer(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """The coding-time ``(int32 table indexes, float64 means)`` of integer-valued ``z_hat`` (any
        dtype) with the int8 path of the integer layers: the same numbers as :meth:`forward` on
        ``z_hat`` in float64, bit for bit."""
        x = torch.clamp(z_hat, -Z_BOUND, Z_BOUND).to(torch.int64)  # exact for integer-valued floats
        raw = self.out.forward_integer(self.up2.forward_integer(self.up1.forward_integer(x)))
        index_raw, mean_raw = raw.chunk(2, dim=1)  # channels-last views: one copy each, to NCHW
        index = index_raw.to(torch.int32, memory_format=torch.contiguous_format).clamp_(
            0, self.num_scales - 1
        )
        means = mean_raw.to(torch.float64, memory_format=torch.contiguous_format).mul_(2.0**-self.mean_bits)
        return index, means


def hyper_analysis(M: int, N: int, dims: int = 2) -> nn.Sequential:
    """``h_a`` of ``mbt2018-mean``: ``M`` latent channels -> ``N`` at 1/4 of the resolution
    (``dims``: 2 for images, 1 for signals)."""
    return nn.Sequential(
        conv(M, N, 3, 1, dims),
        nn.LeakyReLU(inplace=True),
        conv(N, N, dims=dims),
        nn.LeakyReLU(inplace=True),
        conv(N, N, dims=dims),
    )


class _LogUniformScales(nn.Module):
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


def mean_scale_latents(
    prior: LatentHyperprior | MeanScaleHyperprior,
    y: Tensor,
    z: Tensor,
    mode: Mode | None,
    float_prior: bool = False,
) -> tuple[Tensor, dict]:
    """The mean-scale step of a hyperprior's training pass: ``(y_hat, {"y", "z"} likelihoods)``.

    ``mode`` quantizes for the rates: "noise" (training) or "ste" (eval), ``y_hat`` being
    ``round(y - means) + means`` (straight-through) either way; or a relaxed rounding
    (:mod:`neurocodec.codecs.adapt`) of ``y - means`` and ``z``, whose values ``y_hat`` holds
    then. ``h_s`` always sees ``round(z)`` (straight-through), as when coding; ``float_prior``
    runs it as its float twin (:meth:`HyperSynthesis.float_forward`).

    All of it runs in float32, even under bf16 autocast: the straight-through integers of the
    integer ``h_s`` and of the roundings must be the coding-time ones, and bf16 holds 8
    significant bits (its means would be off by up to 1/2 at 128, its noise lost beyond 256).
    """
    with torch.autocast(y.device.type, enabled=False):
        y, z = y.float(), z.float()
        _, z_likelihoods = prior.entropy_bottleneck(z, mode)
        h_s = prior.h_s.float_forward if float_prior else prior.h_s
        index, means = h_s(round_ste(z))
        y_hat, y_likelihoods = prior.gaussian(y, prior.scales_of(index), means, mode)
        if not callable(mode):
            y_hat = prior.gaussian.quantize(y, "ste", means)
    return y_hat, {"y": y_likelihoods, "z": z_likelihoods}


class LatentHyperprior(nn.Module):
    """A mean-scale hyperprior for a given ``M``-channel latent ``y`` (e.g. WaLLoC's): ``h_a``
    (float), a factorized prior on ``z`` (``N`` channels at 1/4 of ``y``'s resolution), the integer
    ``h_s`` and the Gaussian conditional, as in :class:`MeanScaleHyperprior`. ``y``'s sides must be
    multiples of 4. ``dims``: 2 for an image's latent ``(n, M, h, w)``, 1 for a signal's ``(n, M, t)``."""

    def __init__(self, M: int, N: int, scale_table=None, dims: int = 2):
        super().__init__()
        self.M, self.N = M, N
        self.h_a = hyper_analysis(M, N, dims)
        self.entropy_bottleneck = FactorizedPrior(N)
        self.gaussian = GaussianConditional(scale_table)
        self.h_s = HyperSynthesis(N, M, num_scales=len(self.gaussian.scale_table), dims=dims)
        self.scales_of = _LogUniformScales(self.gaussian)

    def forward(self, y: Tensor, mode: Mode | None = None, z: Tensor | None = None) -> tuple[Tensor, dict]:
        """``(y_hat, {"y": likelihoods, "z": likelihoods})`` with ``z = h_a(y)``, or the given
        ``z`` (encoder-side adaptation refines ``y`` and ``z`` apart): see :func:`mean_scale_latents`."""
        return mean_scale_latents(self, y, self.h_a(y) if z is None else z, mode)

    def _coding_prior(self, y: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(z symbols, int32 table indexes, float64 means)`` of ``y`` (and ``z``, default
        ``h_a(y)``), exactly as coded."""
        z_symbols = torch.round(self.h_a(y) if z is None else z)
        return (z_symbols, *self.h_s.forward_integer(z_symbols))

    def compress(self, y: Tensor, z: Tensor | None = None) -> dict[str, bytes]:
        """The sections ``{"z", "y"}`` of ``y``, with the hyper-latent ``z`` (default ``h_a(y)``)."""
        z_symbols, index, means = self._coding_prior(y, z)
        return {
            "z": self.entropy_bottleneck.compress(z_symbols),
            "y": self.gaussian.compress(y, index, means),
        }

    def coded_latent(self, y: Tensor) -> Tensor:
        """The ``y_hat`` (float64) a decoder gets from :meth:`compress`'s sections, without coding them."""
        _, _, means = self._coding_prior(y)
        return torch.round(y.to(means) - means) + means

    def decompress(self, sections: dict[str, bytes], y_shape: tuple[int, ...]) -> Tensor:
        """``y_hat`` (float64, on the device of the weights) from the sections, for ``y`` of ``y_shape``."""
        n, _, *sides = y_shape
        z_hat = self.entropy_bottleneck.decompress(sections["z"], (n, self.N, *(s // 4 for s in sides)))
        index, means = self.h_s.forward_integer(z_hat.to(self.entropy_bottleneck.table_sizes.device))
        return self.gaussian.decompress(sections["y"], index, means)

    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.aux_loss()

    def update_tables(self) -> None:
        self.entropy_bottleneck.update_tables()
        self.gaussian.update_tables()


class MeanScaleHyperprior(nn.Module):
    """The mean-scale hyperprior network, ``N`` hidden and ``M`` latent channels (CompressAI's
    ``mbt2018-mean`` shape: N=128, M=192 for low rates; N=192, M=320 for high rates)."""

    downsampling = 64  # inputs are padded to a multiple of this

    def __init__(self, N: int = 128, M: int = 192, scale_table=None, float_prior: bool = False):
        """``float_prior``: train ``h_s`` as its float twin (:meth:`HyperSynthesis.float_forward`)
        instead of with integer arithmetic, to measure what the integer prior costs; such a model
        has no exact coding path, so it is not exported as a codec."""
        super().__init__()
        self.N, self.M = N, M
        self.float_prior = bool(float_prior)
        self.g_a = nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))
        self.g_s = nn.Sequential(
            deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
            deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
        )  # fmt: skip
        self.h_a = hyper_analysis(M, N)
        self.entropy_bottleneck = FactorizedPrior(N)
        self.gaussian = GaussianConditional(scale_table)
        self.h_s = HyperSynthesis(N, M, num_scales=len(self.gaussian.scale_table))
        self.scales_of = _LogUniformScales(self.gaussian)

    def forward(self, x: Tensor) -> dict:
        """Training pass: reconstruction and the likelihoods of ``y`` and ``z``."""
        y = self.g_a(x)
        return self.latent_forward(y, self.h_a(y))

    def latent_forward(self, y: Tensor, z: Tensor, mode: Mode | None = None) -> dict:
        """:meth:`forward` from the latents ``y`` and ``z`` on: ``{"x_hat", "likelihoods"}``, the
        synthesis seeing the ``y_hat`` of :func:`mean_scale_latents` (``mode`` as there)."""
        y_hat, likelihoods = mean_scale_latents(self, y, z, mode, float_prior=self.float_prior)
        return {"x_hat": self.g_s(y_hat), "likelihoods": likelihoods}

    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.aux_loss()

    def update_tables(self) -> None:
        """Build the integer CDF tables once, after training (they travel with the state_dict)."""
        self.entropy_bottleneck.update_tables()
        self.gaussian.update_tables()

    @torch.no_grad()
    def prior(self, z_hat: Tensor, reference: bool = False) -> tuple[Tensor, Tensor]:
        """The exact coding-time prior: int32 table indexes and float64 means, from integer ``z_hat``.

        ``reference=True`` computes them with the float64 reference path instead of int8
        products: the same numbers, bit for bit, several times slower.
        """
        if not reference:
            return self.h_s.forward_integer(z_hat)
        index, means = self.h_s(z_hat.to(torch.float64))
        return index.to(torch.int32), means
