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

Two coding-time implementations compute the same integers:

**The reference path** (``forward`` on a float64 tensor). Every tensor of the path holds
integers stored in float64, and every partial sum of every convolution is an integer of
magnitude below 2^53 (:meth:`_IntegerConv.accumulator_bound` checks this when the network is
built). Every float64 addition and multiplication of such integers is exact — no rounding can
occur, whatever the summation order, blocking, FMA use or convolution algorithm — and
``floor(A * 2^-shift)`` is exact too. (float32 would not do: accumulators exceed 2^24, and
cuDNN may pick Winograd or FFT algorithms for float32, which do not multiply the exact values.
TF32 does not apply to float64.)

**The int8 path** (:meth:`_IntegerConv.forward_integer`, what the codecs use; about 7x faster
than the reference for the N=128 ``h_s`` on an AVX-512 VNNI CPU, measured).
The convolution becomes matrix products of int8 matrices with int32 results
(``torch._int_mm``: oneDNN's VNNI kernels on CPUs, cuBLAS int8 GEMM on CUDA):

1. *Inputs as int8 digits.* An input ``x`` in ``[0, 255]`` (a QReLU activation) is shifted to
   ``x - 128`` in ``[-128, 127]``; any other integer input is split into balanced base-256
   digits ``x = sum_j 256^j d_j``, ``d_j`` in ``[-128, 127]`` (as many digits as its largest
   magnitude needs; ``|x| <= 2^15`` needs at most three). The input is zero-padded *before*
   it is shifted or split, so a padded tap of a shifted input holds ``-128`` like every real
   tap, and the correction ``128 * sum_k W_k`` is the same for every output.
2. *Weights as int8 digits*, the same balanced base-256 split: ``|W| <= 127`` is one digit,
   ``|W| <= 511`` two (the high digit in ``[-2, 2]``). They are split once and cached.
3. *im2col and GEMM.* The taps are gathered channels-last into rows of ``K = taps * C_in``
   int8 values and multiplied by each weight digit matrix. Every product of two int8 values
   and every partial sum of a product of depth ``K`` is an integer of magnitude at most
   ``K * 255 * 128`` (this also covers the ``+128`` compensation that u8 x s8 kernels such as
   oneDNN's apply internally), and ``K <= MAX_GEMM_DEPTH`` keeps that below 2^31: the int32
   accumulators of every GEMM, in any order, blocking or thread split, are exact. Longer
   products (``C_in * k^2 > MAX_GEMM_DEPTH``, far beyond these networks) use the reference
   path. Integer GEMMs have no Winograd/FFT shortcut and no TF32, and the CPU kernel that
   could saturate, AVX2's ``vpmaddubsw`` with 16-bit pairs, is not used: torch's
   ``_int_mm_out_cpu`` (``aten/src/ATen/native/LinearAlgebra.cpp``) calls oneDNN only on CPUs
   with AVX-512 VNNI, whose ``vpdpbusd`` sums four products into 32 bits, and otherwise a
   plain int32 loop, which is exact but slow, so there the reference path runs instead
   (:func:`fast_int8_matmul`).
4. *Recombination in int64*: ``A = sum_{i,j} 256^(i+j) G_ij + 128 * sum_k W_k + B`` (no
   ``128`` term for a split input) with
   ``|A| <= accumulator_bound() < 2^53``, exact in int64; ``floor(A / 2^shift)`` is the
   arithmetic shift ``A >> shift``.

A transposed convolution (stride ``s``, odd kernel, ``padding = k // 2``, ``output_padding =
s - 1``) is computed as ``s^2`` ordinary convolutions, one per output phase, each with only
the taps that reach that phase (for 5x5, stride 2: 3x3, 3x2, 2x3 and 2x2 taps), so the GEMMs
do no multiplications by zero. Both paths compute the exact integers of the same formula, so
they agree bit for bit (``tests/test_integer_networks.py`` checks them against each other and
against an int64 oracle at the extremes of the bounds).

**Training** uses the same layers in float32 with straight-through rounding: weights are
``round(w * 2^weight_frac)`` and activations ``floor(A / 2^shift)`` in the forward pass with
identity gradients, so the trained float model and the coded integer model compute the same
function (up to float32 rounding of the accumulator during training).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IntegerConv1d",
    "IntegerConv2d",
    "IntegerConvTranspose1d",
    "IntegerConvTranspose2d",
    "fast_int8_matmul",
    "floor_ste",
    "int8_digits",
    "int8_matmul",
    "round_ste",
]

EXACT_LIMIT = 2**53  # float64 represents every integer of smaller magnitude exactly
# The deepest int8 product whose int32 partial sums stay exact, K * 255 * 128 < 2^31, rounded
# down to a multiple of 8 (the granularity of cuBLAS int8 GEMMs).
MAX_GEMM_DEPTH = (2**31 - 1) // (255 * 128) // 8 * 8


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) in the forward pass, identity gradient."""
    return x + (torch.round(x) - x).detach()


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """floor(x) in the forward pass, identity gradient."""
    return x + (torch.floor(x) - x).detach()


def int8_digits(x: torch.Tensor) -> list[torch.Tensor]:
    """Balanced base-256 digits of an integer tensor: ``x = sum_j 256^j d_j``, ``d_j`` int8.

    Each ``d_j`` is in ``[-128, 127]``; there is at least one digit and as many as the largest
    ``|x|`` needs.
    """
    digits = []
    rest = x.to(torch.int64)
    while True:
        # the low byte of the two's complement, read as int8: the one value of [-128, 127] that is
        # congruent to rest modulo 256 (bit operations, no integer division)
        digit = rest.bitwise_and(255).to(torch.uint8).view(torch.int8)
        digits.append(digit)
        rest = (rest - digit).bitwise_right_shift_(8)  # exact: rest - digit is a multiple of 256
        if not bool(rest.any()):
            return digits


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for int8 matrices ``(m, k)`` and ``(k, n)``, ``k <= MAX_GEMM_DEPTH``, exact, int32.

    On CUDA the operands are zero-padded to the shapes cuBLAS int8 GEMMs accept (``m > 16``,
    ``k`` and ``n`` multiples of 8), which changes no sum.
    """
    m, k = a.shape
    n = b.shape[1]
    if k > MAX_GEMM_DEPTH:
        raise ValueError(f"an int8 product of depth {k} > {MAX_GEMM_DEPTH} may overflow its int32 sums")
    if a.device.type == "cuda":
        pad_m, pad_k, pad_n = max(17 - m, 0), -k % 8, -n % 8
        if pad_m or pad_k or pad_n:
            a = F.pad(a, (0, pad_k, 0, pad_m))
            b = F.pad(b, (0, pad_n, 0, pad_k))
    return torch._int_mm(a, b)[:m, :n]


def fast_int8_matmul(device: torch.device) -> bool:
    """Whether torch has a fast int8 GEMM on ``device``: CUDA, or a CPU where ``torch._int_mm``
    runs oneDNN (AVX-512 VNNI and oneDNN enabled); elsewhere it is a scalar loop, slower than
    the float64 reference path (which gives the same integers)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu" or not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    return _cpu_has_avx512_vnni()


@functools.cache
def _cpu_has_avx512_vnni() -> bool:
    probe = getattr(torch.cpu, "_is_vnni_supported", None)  # private in torch 2.11: fail closed
    return bool(probe()) if probe is not None else False


@dataclass
class _Phase:
    """One output phase of the int8 path: the taps that reach it and their weight digits.

    ``offsets`` are the ``(dy, dx)`` of each tap in the padded input (rows ``in_stride * m + dy``);
    ``weights`` the weight digit matrices side by side, ``(taps * C_in, digits * C_out)`` int8;
    ``tap_sums`` the exact sum of the integer weights over the taps, per output (int64);
    ``narrow_terms[offset]`` the constant ``offset * tap_sums + bias`` as int32, for the input
    offsets (0, 128) where the single-digit accumulator fits int32 (see :func:`_narrow_terms`).
    """

    offsets: list[tuple[int, int]]
    out_y: int
    out_x: int
    weights: torch.Tensor
    tap_sums: torch.Tensor
    narrow_terms: dict[int, torch.Tensor]


INT32_MAX = 2**31 - 1


def _narrow_terms(
    weights: torch.Tensor, tap_sums: torch.Tensor, bias: torch.Tensor, digits: int
) -> dict[int, torch.Tensor]:
    """The int32 constants of the accumulator, per input offset, where int32 arithmetic is exact.

    With one weight digit and one input plane, ``A = G + offset * tap_sums + B`` where ``G`` is
    the int32 GEMM result, ``|G| <= depth * 128 * 128``. If that bound plus the largest constant
    stays within int32, the sum, the shift and the clamp can run in int32 in place, with no
    int64 copies: the same integers, since no int32 operation can overflow.
    """
    if digits != 1:
        return {}
    gemm_bound = weights.shape[0] * 128 * 128
    terms = {}
    for offset in (0, 128):
        constant = offset * tap_sums + bias
        if gemm_bound + int(constant.abs().max()) <= INT32_MAX:
            terms[offset] = constant.to(torch.int32)
    return terms


@dataclass
class _Plan:
    """The cached int8 form of a layer (see :meth:`_IntegerConv._plan`)."""

    key: tuple
    pad: tuple[tuple[int, int], tuple[int, int]]  # zero padding (before, after) of rows, of columns
    in_stride: tuple[int, int]  # rows, columns
    out_stride: tuple[int, int]
    digits: int
    bias: torch.Tensor  # int64
    phases: list[_Phase]


@dataclass
class _AxisLayout:
    """How one spatial axis of a layer maps to the int8 path: zero ``pad`` (before, after) of the
    input, the input stride of a phase's taps, the output stride (``s`` for a transposed layer:
    its ``s`` phases interleave) and the phases, each ``(r, [(tap, offset in the padded input), ...])``."""

    pad: tuple[int, int]
    in_stride: int
    out_stride: int
    phases: list[tuple[int, list[tuple[int, int]]]]


def _axis_layout(k: int, s: int, transposed: bool) -> _AxisLayout:
    """The :class:`_AxisLayout` of an axis with kernel ``k``, stride ``s`` and ``padding = k // 2``."""
    p = k // 2
    if not transposed:  # out[m] = sum_k x_padded[s * m + k] W[k]
        return _AxisLayout((p, p), s, 1, [(0, [(t, t) for t in range(k)])])
    # out[s * m + r] = sum over taps t = r + p (mod s) of x[m + (r + p - t) / s] W[t]
    phases = [(r, [(t, (r + p - t) // s) for t in range(k) if (t - r - p) % s == 0]) for r in range(s)]
    shifts = [d for _, taps in phases for _, d in taps] or [0]
    before, after = max(0, -min(shifts)), max(0, max(shifts))
    return _AxisLayout((before, after), 1, s, [(r, [(t, d + before) for t, d in taps]) for r, taps in phases])


class _IntegerConv(nn.Module):
    """Shared parameters and arithmetic of the integer layers, 1-D and 2-D, plain and transposed.

    ``weight_frac`` fixed-point bits scale the float weights to integers (``|W| <= 2^(weight_bits-1) - 1``);
    ``shift`` is the power-of-two rescaling of the accumulator (with ``shift == weight_frac`` the
    layer computes ``floor(conv(x, w) + bias)``); ``act_bits`` bounds hidden activations
    (None: an output layer, no clipping, no upper bound on the output).
    """

    transposed = False
    dims = 2  # spatial dimensions: 2 for images, 1 for signals (a 1-D layer is a 2-D one of height 1)

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
        fan_in = in_channels * kernel_size**self.dims / (stride**self.dims if self.transposed else 1)
        # init_gain ~ the output's std per unit of input rms: integer activations need values of
        # tens to resolve anything, so hidden layers are initialized to use the [0, 255] range
        self.weight = nn.Parameter(
            torch.randn(*shape, *(kernel_size,) * self.dims) * init_gain / math.sqrt(fan_in)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        bound = self.accumulator_bound()
        if bound >= EXACT_LIMIT:
            raise ValueError(
                f"integer layer accumulators may reach {bound:.3g} >= 2^53: not exact in float64"
            )
        self._plan_cache: _Plan | None = None  # the int8 path's weight digits (not in the state_dict)

    @property
    def weight_max(self) -> int:
        return 2 ** (self.weight_bits - 1) - 1

    def accumulator_bound(self) -> int:
        """An upper bound on |A| at coding time (worst-case inputs, weights and bias)."""
        terms = self.in_channels * self.kernel_size**self.dims
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
        """Training and coding alike: float32 input -> STE integers; float64 input -> exact integers
        (the reference path; :meth:`forward_integer` computes the same integers faster)."""
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

    # -- the int8 coding path -------------------------------------------------------------------

    def _tap_layout(self) -> tuple[_AxisLayout, _AxisLayout]:
        """The layouts of the rows and of the columns (a 1-D layer's rows: one row, one tap)."""
        columns = _axis_layout(self.kernel_size, self.stride, self.transposed)
        return (columns if self.dims == 2 else _axis_layout(1, 1, self.transposed)), columns

    def _plan_key(self) -> tuple:
        """What identifies the weights the cached plan was built from.

        In-place updates (optimizer steps, ``copy_``) bump the version counters; moves and casts
        change the storage. Parameters created under ``torch.inference_mode()`` have no version
        counter: for them :meth:`_load_from_state_dict` is what drops the plan.
        """
        w, b = self.weight, self.bias
        try:
            versions = (w._version, b._version)
        except RuntimeError:  # inference tensors
            versions = (None, None)
        return (*versions, w.data_ptr(), b.data_ptr(), w.device, w.dtype)

    def _load_from_state_dict(self, *args, **kwargs):
        self._plan_cache = None
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def _plan(self) -> _Plan:
        """The layer's weights as int8 digit matrices per output phase, built once per weights."""
        key = self._plan_key()
        if self._plan_cache is not None and self._plan_cache.key == key:
            return self._plan_cache
        w = self.integer_weight().detach().to(torch.int64)
        if not self.transposed:
            w = w.transpose(0, 1)  # (C_in, C_out, k, k) like a transposed layer's
        if self.dims == 1:
            w = w.unsqueeze(2)  # (C_in, C_out, 1, k): a 2-D layer of height 1
        rows, columns = self._tap_layout()
        digit_planes = int8_digits(w)
        bias = self.integer_bias().detach().to(torch.int64)
        phases = []
        for ry, taps_y in rows.phases:
            for rx, taps_x in columns.phases:
                taps = [(ty, tx, dy, dx) for ty, dy in taps_y for tx, dx in taps_x]
                # rows ordered tap-major, channel-minor: the channels-last im2col layout
                mats = [torch.stack([d[:, :, ty, tx] for ty, tx, _, _ in taps]) for d in digit_planes]
                exact = torch.stack([w[:, :, ty, tx] for ty, tx, _, _ in taps])
                weights = torch.cat([m.reshape(-1, self.out_channels) for m in mats], dim=1)
                tap_sums = exact.sum(dim=(0, 1))
                phases.append(
                    _Phase(
                        offsets=[(dy, dx) for _, _, dy, dx in taps],
                        out_y=ry,
                        out_x=rx,
                        weights=weights,
                        tap_sums=tap_sums,
                        narrow_terms=_narrow_terms(weights, tap_sums, bias, len(digit_planes)),
                    )
                )
        self._plan_cache = _Plan(
            key,
            (rows.pad, columns.pad),
            (rows.in_stride, columns.in_stride),
            (rows.out_stride, columns.out_stride),
            len(digit_planes),
            bias,
            phases,
        )
        return self._plan_cache

    def int8_supported(self, device: torch.device) -> bool:
        """Whether :meth:`forward_integer` runs int8 GEMMs on ``device`` (else the reference path)."""
        odd_upsampling = self.kernel_size % 2 == 1 and self.kernel_size >= self.stride
        shallow = self.in_channels * self.kernel_size**self.dims <= MAX_GEMM_DEPTH
        return fast_int8_matmul(device) and shallow and (odd_upsampling or not self.transposed)

    @property
    def integer_dtype(self) -> torch.dtype:
        """The dtype of :meth:`forward_integer`'s output: uint8 for QReLU activations of at most
        8 bits (a next layer reads them as one int8 plane without scanning them), else int64."""
        return torch.uint8 if self.act_bits is not None and self.act_bits <= 8 else torch.int64

    def forward_integer(self, x: torch.Tensor) -> torch.Tensor:
        """The coding-time output for integer ``x`` (an integer dtype, ``|x| <= input_bound``), in
        :attr:`integer_dtype`, or int32 for an output layer whose accumulators provably fit int32
        for this input (:func:`_narrow_terms`: one weight digit, one input plane).

        Computes exactly the integers of the float64 reference path (see the module docstring)
        with int8 matrix products, or with the reference path itself where
        :meth:`int8_supported` says no. The result is channels-last in memory, which is what the
        next layer reads, so chaining layers copies nothing.
        """
        if not self.int8_supported(x.device):
            return self.forward(x.to(torch.float64)).to(self.integer_dtype)
        plan = self._plan()
        if self.dims == 1:
            x = x.unsqueeze(2)  # (N, C, 1, T)
        n, _, h, w = x.shape
        nhwc = x.permute(0, 2, 3, 1)
        (top, bottom), (left, right) = plan.pad
        planes, offset = _input_digits(nhwc, (0, 0, left, right, top, bottom))
        (sy_in, sx_in), (sy_out, sx_out), cout = plan.in_stride, plan.out_stride, self.out_channels
        if self.transposed:
            oh, ow = h, w
        else:
            oh = (h + top + bottom - (self.kernel_size if self.dims == 2 else 1)) // sy_in + 1
            ow = (w + left + right - self.kernel_size) // sx_in + 1
        narrow_only = len(planes) == 1 and all(offset in phase.narrow_terms for phase in plan.phases)
        dtype = torch.int32 if narrow_only and self.act_bits is None else self.integer_dtype
        out = torch.empty(n, oh, sy_out, ow, sx_out, cout, dtype=dtype, device=x.device)
        for phase in plan.phases:
            narrow = phase.narrow_terms.get(offset) if len(planes) == 1 else None
            acc = None if narrow is not None else offset * phase.tap_sums + plan.bias
            for i, plane in enumerate(planes):
                cols = torch.cat(
                    [
                        plane[
                            :, dy : dy + sy_in * (oh - 1) + 1 : sy_in, dx : dx + sx_in * (ow - 1) + 1 : sx_in
                        ]
                        for dy, dx in phase.offsets
                    ],
                    dim=3,
                ).reshape(n * oh * ow, -1)
                prod = int8_matmul(cols, phase.weights)
                if narrow is not None:  # exact in int32 (_narrow_terms), in place
                    acc = prod.add_(narrow)
                    continue
                for j in range(plan.digits):
                    part = prod[:, j * cout : (j + 1) * cout]  # int32: scale it in int64
                    acc = acc + (part if i + j == 0 else part.to(torch.int64) * 256 ** (i + j))
            # arithmetic: floor(A / 2^shift); reshape, as a CUDA GEMM result may be a padded slice
            acc = acc.bitwise_right_shift_(self.shift).reshape(n, oh, ow, cout)
            target = out[:, :, phase.out_y, :, phase.out_x]
            if self.act_bits is not None:
                acc = acc.clamp_(0, 2**self.act_bits - 1)
            target.copy_(acc)
        out = out.view(n, oh * sy_out, ow * sx_out, cout).permute(0, 3, 1, 2)
        return out.squeeze(2) if self.dims == 1 else out


def _input_digits(x: torch.Tensor, pad: tuple[int, ...]) -> tuple[list[torch.Tensor], int]:
    """``(int8 digit planes, offset)`` of the zero-padded integer tensor ``x``: ``x_padded - offset
    = sum_j 256^j planes[j]``. Values in ``[-128, 127]`` are one plane as they are; values in
    ``[0, 255]`` (QReLU activations) one plane shifted by ``offset = 128``; others balanced digits.
    A uint8 ``x`` is in ``[0, 255]`` without a look: ``(x ^ 128)`` read as int8 is ``x - 128``.
    """
    if x.dtype == torch.uint8:
        return [F.pad(torch.bitwise_xor(x, 128).view(torch.int8), pad, value=-128)], 128
    lo, hi = (int(v) for v in torch.aminmax(x))
    if -128 <= lo and hi <= 127:
        return [F.pad(x.to(torch.int8), pad)], 0
    if 0 <= lo and hi <= 255:
        return [F.pad((x - 128).to(torch.int8), pad, value=-128)], 128
    return [F.pad(digit, pad) for digit in int8_digits(x)], 0  # a zero pads as zero digits


class IntegerConv1d(_IntegerConv):
    """A 1-D convolution with integer arithmetic at coding time (``padding = kernel_size // 2``)."""

    dims = 1

    def _conv(self, x, w, b):
        return F.conv1d(x, w, b, stride=self.stride, padding=self.kernel_size // 2)


class IntegerConvTranspose1d(_IntegerConv):
    """A transposed 1-D convolution that upsamples by ``stride`` exactly."""

    transposed = True
    dims = 1

    def _conv(self, x, w, b):
        pad = self.kernel_size // 2
        return F.conv_transpose1d(x, w, b, stride=self.stride, padding=pad, output_padding=self.stride - 1)


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
