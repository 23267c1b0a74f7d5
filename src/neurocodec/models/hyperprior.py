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

import torch
from torch import Tensor, nn

from neurocodec.entropy import tables
from neurocodec.entropy.latent_codecs import HyperpriorLatentCodec
from neurocodec.entropy.models.base import Mode
from neurocodec.models.base import CompressionModel
from neurocodec.models.integer import (
    IntegerConv1d,
    IntegerConv2d,
    IntegerConvTranspose1d,
    IntegerConvTranspose2d,
)
from neurocodec.models.layers import GDN, conv, deconv

__all__ = ["HyperSynthesis", "MeanScaleHyperprior", "hyper_analysis", "mean_scale_hyperprior"]

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


def mean_scale_hyperprior(
    M: int, N: int, scale_table=None, dims: int = 2, float_prior: bool = False
) -> HyperpriorLatentCodec:
    """The mean-scale hyperprior latent codec for an ``M``-channel latent with an ``N``-channel
    ``z`` at 1/4 of its resolution: :func:`hyper_analysis` and the integer :class:`HyperSynthesis`
    (``dims``: 2 for an image's latent ``(n, M, h, w)``, 1 for a signal's ``(n, M, t)``).
    ``float_prior``: train ``h_s`` as its float twin (measurement only)."""
    num_scales = len(tables.gaussian_scale_table() if scale_table is None else scale_table)
    return HyperpriorLatentCodec(
        hyper_analysis(M, N, dims),
        HyperSynthesis(N, M, num_scales=num_scales, dims=dims),
        hyper_channels=N,
        scale_table=scale_table,
        float_prior=float_prior,
    )


class MeanScaleHyperprior(CompressionModel):
    """The mean-scale hyperprior network, ``N`` hidden and ``M`` latent channels (CompressAI's
    ``mbt2018-mean`` shape: N=128, M=192 for low rates; N=192, M=320 for high rates): the
    transforms ``g_a``, ``g_s`` and :func:`mean_scale_hyperprior`'s latent codec."""

    downsampling = 64  # inputs are padded to a multiple of this
    latent_stride = 16  # y is at 1/16 of the (padded) image, z at 1/64
    # 0.1.0's layout held the hyperprior's modules at the top level
    renamed_prefixes = (
        ("h_a.", "latent_codec.h_a."),
        ("h_s.", "latent_codec.h_s."),
        ("entropy_bottleneck.", "latent_codec.entropy_bottleneck."),
        ("gaussian.", "latent_codec.gaussian_conditional."),
    )

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
        self.latent_codec = mean_scale_hyperprior(M, N, scale_table, float_prior=self.float_prior)

    def forward(self, x: Tensor) -> dict:
        """Training pass: reconstruction and the likelihoods of ``y`` and ``z``."""
        return self.latent_forward(self.g_a(x))

    def latent_forward(
        self, y: Tensor, side: dict[str, Tensor] | None = None, mode: Mode | None = None
    ) -> dict:
        """:meth:`forward` from the latent ``y`` (and its side latents, default derived from ``y``)
        on: ``{"x_hat", "likelihoods"}``, the synthesis seeing the latent codec's ``y_hat``
        (``mode`` as in :meth:`HyperpriorLatentCodec.forward`)."""
        y_hat, likelihoods = self.latent_codec(y, side, mode)
        return {"x_hat": self.g_s(y_hat), "likelihoods": likelihoods}
