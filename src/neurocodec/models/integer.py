"""Integer networks for the prior path: the same integers on every device.

A learned codec's decoder must derive every CDF-selecting value (table index, rounded mean)
exactly as the encoder did. Float networks cannot promise that across devices, thread counts,
cuDNN algorithms or TF32 settings. Following Ballé, Johnston and Minnen, "Integer Networks for
Data Compression with Latent-Variable Models" (ICLR 2019), the prior path (hyper-synthesis,
context networks) is built from layers whose coding-time arithmetic is integer:

- weights ``W`` are integers with ``|W| <= 2^(weight_bits-1) - 1``, biases ``B`` integers;
- the accumulator ``A = conv(x, W) + B`` is an exact integer;
- the output is ``floor(A / 2^shift)``, clipped to ``[0, 2^act_bits - 1]`` for hidden layers
  (QReLU) or left unclipped for an output layer.

**Exactness argument.** At coding time every tensor of the path holds integers stored in
float64, and every partial sum of every convolution is an integer of magnitude below 2^53
(:meth:`IntegerConv2d.accumulator_bound` checks this when the network is built). Every float64
addition and multiplication of such integers is exact — no rounding can occur, whatever the
summation order, blocking, FMA use or device — and ``floor(A * 2^-shift)`` is exact too. So
CPU and GPU, 1 or 64 threads, any batch composition give bit-identical integers. (float32
would not do: accumulators exceed 2^24. TF32 does not apply to float64.)

**Training** uses the same layers in float32 with straight-through rounding: weights are
``round(w * 2^weight_frac)`` and activations ``floor(A / 2^shift)`` in the forward pass with
identity gradients, so the trained float model and the coded integer model compute the same
function (up to float32 rounding of the accumulator during training).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IntegerConv2d", "IntegerConvTranspose2d", "floor_ste", "round_ste"]

EXACT_LIMIT = 2**53  # float64 represents every integer of smaller magnitude exactly


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) in the forward pass, identity gradient."""
    return x + (torch.round(x) - x).detach()


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """floor(x) in the forward pass, identity gradient."""
    return x + (torch.floor(x) - x).detach()


class _IntegerConv(nn.Module):
    """Shared parameters and arithmetic of :class:`IntegerConv2d` / :class:`IntegerConvTranspose2d`.

    ``weight_frac`` fixed-point bits scale the float weights to integers (``|W| <= 2^(weight_bits-1) - 1``);
    ``shift`` is the power-of-two rescaling of the accumulator (with ``shift == weight_frac`` the
    layer computes ``floor(conv(x, w) + bias)``); ``act_bits`` bounds hidden activations
    (None: an output layer, no clipping, no upper bound on the output).
    """

    transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        *,
        weight_bits: int = 10,
        weight_frac: int = 8,
        shift: int = 8,
        act_bits: int | None = 8,
        input_bound: int = 255,
        init_gain: float = 1.0,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.weight_bits, self.weight_frac, self.shift = weight_bits, weight_frac, shift
        self.act_bits = act_bits
        self.input_bound = input_bound
        shape = (in_channels, out_channels) if self.transposed else (out_channels, in_channels)
        # inputs reaching one output: a transposed convolution spreads each input over stride^2 outputs
        fan_in = in_channels * kernel_size * kernel_size / (stride * stride if self.transposed else 1)
        # init_gain ~ the output's std per unit of input rms: integer activations need values of
        # tens to resolve anything, so hidden layers are initialized to use the [0, 255] range
        self.weight = nn.Parameter(
            torch.randn(*shape, kernel_size, kernel_size) * init_gain / math.sqrt(fan_in)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        bound = self.accumulator_bound()
        if bound >= EXACT_LIMIT:
            raise ValueError(
                f"integer layer accumulators may reach {bound:.3g} >= 2^53: not exact in float64"
            )

    @property
    def weight_max(self) -> int:
        return 2 ** (self.weight_bits - 1) - 1

    def accumulator_bound(self) -> int:
        """An upper bound on |A| at coding time (worst-case inputs, weights and bias)."""
        terms = self.in_channels * self.kernel_size * self.kernel_size
        bias_max = 2**31  # biases are stored as int32
        return terms * self.weight_max * self.input_bound + bias_max

    def integer_weight(self) -> torch.Tensor:
        """The integer weights (as float, straight-through in training)."""
        w = round_ste(self.weight * 2**self.weight_frac)
        return torch.clamp(w, -self.weight_max, self.weight_max)

    def integer_bias(self) -> torch.Tensor:
        """Bias in accumulator units: with ``shift == weight_frac`` the layer computes
        ``floor(conv(x, w) + bias)`` up to the rounding of ``w`` to ``weight_frac`` bits."""
        b = round_ste(self.bias * 2**self.shift)
        return torch.clamp(b, -(2**31), 2**31 - 1)

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training and coding alike: float32 input -> STE integers; float64 input -> exact integers."""
        if x.dtype == torch.float64:
            with torch.no_grad():
                w = self.integer_weight().detach().to(torch.float64)
                b = self.integer_bias().detach().to(torch.float64)
        else:
            w, b = self.integer_weight().to(x.dtype), self.integer_bias().to(x.dtype)
        acc = self._conv(x, w, b)
        out = floor_ste(acc * 2.0**-self.shift)
        if self.act_bits is not None:
            out = torch.clamp(out, 0, 2**self.act_bits - 1)
        return out


class IntegerConv2d(_IntegerConv):
    """A 2-D convolution with integer arithmetic at coding time (``padding = kernel_size // 2``)."""

    def _conv(self, x, w, b):
        return F.conv2d(x, w, b, stride=self.stride, padding=self.kernel_size // 2)


class IntegerConvTranspose2d(_IntegerConv):
    """A transposed 2-D convolution that upsamples by ``stride`` exactly (as CompressAI's ``deconv``)."""

    transposed = True

    def _conv(self, x, w, b):
        pad = self.kernel_size // 2
        return F.conv_transpose2d(x, w, b, stride=self.stride, padding=pad, output_padding=self.stride - 1)
