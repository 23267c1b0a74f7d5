"""Networks of the overfitted ``c3`` image codec (C3 / Cool-chic class): fitted to one image each.

- :data:`GRIDS` latent grids of one channel at 1/1 ... 1/64 of the padded image, integers once
  quantized (:func:`soft_round` and Gaussian or :func:`kumaraswamy_noise` noise in training).
- :class:`Upsampler`: coarse -> fine, each 2x step a learned separable symmetric 8-tap filter
  (initialized bicubic), the finer grid concatenated after each step: 7 channels at full size.
- :class:`Synthesis`: 1x1 conv to ``width``, ReLU, 1x1 to 3, then a residual 3x3 conv.
- :class:`ContextModel` (the ARM): a Laplace (mean, log-scale) per latent from the latents
  before it in raster order (a causal window of the same grid) and a window of the coarser
  grid, which is decoded first (grids go coarse to fine). Training evaluates every position at
  once; coding evaluates the MLP latent by latent in exact integer arithmetic in the native
  coder (``entropy/native/arm.hpp``, :meth:`IntegerARM.native`), so table indexes are
  identical on every device and thread count.

Fixed point of the integer ARM: weights are ``W * 2^-kw``, biases ``B * 2^-kb`` (one step per
module for each), activations are integers in units of ``2^-ACT_BITS``; every layer computes
the exact integer ``acc = W x + B 2^(ACT_BITS + kw - kb)`` (units ``2^-(ACT_BITS + kw)``) and
outputs ``floor(acc 2^-kw)`` (hidden layers clamped to ``[0, ACT_MAX]``), in int64 in the native
coder. :func:`check_integer_bounds` keeps every partial sum below 2^53, so any exact evaluation
(int64, or float64 holding integers) gives the same integers. The outputs select the coding
table: the mean to the nearest ``2^-MEAN_BITS`` (its integer part clamped to ``LATENT_MAX``), the
log-scale to the nearest of :data:`SCALES` table scales (:func:`laplace_tables`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocodec.entropy import _rans, coder, tables
from neurocodec.entropy.models.base import lower_bound
from neurocodec.models.tiled_mlp import tiled_mlp

GRIDS = 7

ACT_BITS = 8  # fixed-point fraction bits of the integer ARM's activations and outputs
ACT_MAX = 2.0**24  # activations are clamped to [0, ACT_MAX] (units 2^-ACT_BITS)
LATENT_MAX = 2**15 - 1  # |latent| bound: a coded latent outside it is clamped by the encoder
WEIGHT_MAX = 2**15 - 1  # |integer weight| bound of the ARM
BIAS_MAX = 2**40  # |bias * 2^(ACT_BITS + kw - kb)| bound of the ARM (accumulator units)
EXACT = 2.0**53


def soft_round(x: Tensor, temperature: float) -> Tensor:
    """Agustsson & Theis's differentiable rounding: ``round(x)`` as ``temperature`` -> 0."""
    m = torch.floor(x) + 0.5
    return m + torch.tanh((x - m) / temperature) / (2 * math.tanh(0.5 / temperature))


def kumaraswamy_noise(like: Tensor, a: float) -> Tensor:
    """Noise in ``(-1/2, 1/2)`` from a Kumaraswamy(a, b) with its mode at 1/2 (uniform at a = 1)."""
    b = (2**a * (a - 1) + 1) / a
    u = torch.rand_like(like).clamp(1e-6, 1 - 1e-6)
    return (1 - (1 - u) ** (1 / b)) ** (1 / a) - 0.5


def grid_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """The size of each latent grid of a padded image (a multiple of 2^(GRIDS - 1))."""
    return [(height >> level, width >> level) for level in range(GRIDS)]


# --------------------------------------------------------------------------------------------
# Upsampling and synthesis


def bicubic_taps() -> list[float]:
    """Bicubic (a = -0.75) weights of the inputs at distances 1/4, 3/4, 5/4, 7/4 from an output."""
    a = -0.75

    def w(d: float) -> float:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1 if d <= 1 else a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a

    return [w(d) for d in (0.25, 0.75, 1.25, 1.75)]


def _neighbours(x: Tensor, dim: int) -> list[Tensor]:
    """``x[i + d]`` along ``dim`` (-1 or -2) for d = -2 .. 2, edges replicated: views of one copy."""
    n = x.shape[dim]
    xp = F.pad(x, (2, 2, 0, 0) if dim == -1 else (0, 0, 2, 2), mode="replicate")
    return [xp.narrow(dim, 2 + d, n) for d in (-2, -1, 0, 1, 2)]


def _upsample_axis_values(x: Tensor, taps: Tensor, dim: int) -> Tensor:
    """``x`` (N, C, h, w) upsampled 2x along ``dim`` (-1 or -2) by the symmetric 8-tap filter
    ``taps``: output ``2i`` sits at ``i - 1/4``, ``2i + 1`` at ``i + 1/4`` (replicated edges), as
    weighted sums of shifted views. Along -2 the views are blocks of whole rows, so the vertical
    pass needs no transposed copies (every output is the same float expression either way).
    Decoding runs exactly this; training runs it through :class:`_UpsampleAxis`."""
    h0, h1, h2, h3 = taps
    at = _neighbours(x, dim)
    even = h3 * at[0] + h1 * at[1] + h0 * at[2] + h2 * at[3]
    odd = h2 * at[1] + h0 * at[2] + h1 * at[3] + h3 * at[4]
    return torch.stack([even, odd], dim).flatten(dim - 1, dim)


class _UpsampleAxis(torch.autograd.Function):
    """:func:`_upsample_axis_values` with a hand-written backward pass: the gradient of the
    shifted views summed into one padded buffer, instead of autograd's zero-filled copy of the
    padded input per view and product (``eval/c3_backward_ab.json``)."""

    @staticmethod
    def forward(ctx, x: Tensor, taps: Tensor, dim: int) -> Tensor:
        ctx.save_for_backward(x, taps)
        ctx.dim = dim
        return _upsample_axis_values(x, taps, dim)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, taps = ctx.saved_tensors
        dim, n = ctx.dim, x.shape[ctx.dim]
        h0, h1, h2, h3 = taps.tolist()
        g = grad.unflatten(dim, (n, 2))
        even, odd = g.select(dim, 0), g.select(dim, 1)  # the gradients of outputs 2i and 2i + 1
        grad_x = grad_taps = None
        if ctx.needs_input_grad[0]:
            shape = list(x.shape)
            shape[dim] = n + 4
            gp = x.new_zeros(shape)  # gradient of the padded input
            gp.narrow(dim, 0, n).add_(even, alpha=h3)
            gp.narrow(dim, 1, n).add_(even, alpha=h1).add_(odd, alpha=h2)
            gp.narrow(dim, 2, n).add_(even, alpha=h0).add_(odd, alpha=h0)
            gp.narrow(dim, 3, n).add_(even, alpha=h2).add_(odd, alpha=h1)
            gp.narrow(dim, 4, n).add_(odd, alpha=h3)
            grad_x = gp.narrow(dim, 2, n).clone()
            grad_x.narrow(dim, 0, 1).add_(gp.narrow(dim, 0, 1) + gp.narrow(dim, 1, 1))  # the replicated edges
            grad_x.narrow(dim, n - 1, 1).add_(gp.narrow(dim, n + 2, 1) + gp.narrow(dim, n + 3, 1))
        if ctx.needs_input_grad[1]:
            at = _neighbours(x, dim)

            def dot(a: Tensor, b: Tensor) -> Tensor:
                return (a * b).sum()

            grad_taps = torch.stack(
                [
                    dot(even + odd, at[2]),
                    dot(even, at[1]) + dot(odd, at[3]),
                    dot(even, at[3]) + dot(odd, at[1]),
                    dot(even, at[0]) + dot(odd, at[4]),
                ]
            ).to(taps.dtype)
        return grad_x, grad_taps, None


def _upsample_axis(x: Tensor, taps: Tensor, dim: int) -> Tensor:
    """:func:`_upsample_axis_values`, differentiable by :class:`_UpsampleAxis` when gradients are on."""
    if torch.is_grad_enabled() and (x.requires_grad or taps.requires_grad):
        return _UpsampleAxis.apply(x, taps, dim)
    return _upsample_axis_values(x, taps, dim)


class Upsampler(nn.Module):
    """The latent grids but the finest, coarse to fine, as ``GRIDS - 1`` channels at the finest
    grid's size (finest first)."""

    def __init__(self) -> None:
        super().__init__()
        self.taps = nn.Parameter(torch.tensor([bicubic_taps()] * (GRIDS - 1)))

    def forward(self, grids: list[Tensor]) -> Tensor:
        x = grids[-1]
        for level in range(GRIDS - 2, -1, -1):
            taps = self.taps[level]
            x = _upsample_axis(_upsample_axis(x, taps, -1), taps, -2)  # along rows, then columns
            if level:
                x = torch.cat([grids[level], x], dim=1)
        return x


class Synthesis(nn.Module):
    """Pixels from the upsampled latents: 1x1 to ``width``, ReLU, 1x1 to 3, a residual 3x3.

    ``relu_residual``: first another residual 3x3 behind a ReLU, ``x + relu(conv(x))``, as files
    before 2026-12 have. It starts at zero, where the ReLU's gradient is zero, so it stayed zero in
    every fit, and the file coded its 84 zeros (54 B on kodim01's 256x256 crop: ``eval/c3_probe.jsonl``,
    tags ``norelu-cc-compare-2000`` and ``cc-compare-2000``)."""

    def __init__(self, width: int = 16, relu_residual: bool = False) -> None:
        super().__init__()
        self.mix = nn.Conv2d(GRIDS, width, 1)
        self.out = nn.Conv2d(width, 3, 1)
        self.res1 = nn.Conv2d(3, 3, 3) if relu_residual else None
        self.res2 = nn.Conv2d(3, 3, 3)
        for conv in self.convolutions()[2:]:  # the residual ones start at zero
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        with torch.no_grad():
            self.out.bias.fill_(0.5)

    def forward(self, finest: Tensor, coarser: Tensor) -> Tensor:
        """Pixels (1, 3, H, W) from the finest grid (1, 1, H, W) and the others upsampled (1,
        GRIDS - 1, H, W). The two 1x1 layers run as :func:`tiled_mlp` (no channel concatenation,
        no full-size hidden activations; ``eval/c3_speed.json``)."""
        _, _, h, w = finest.shape
        mix = self.mix.weight[:, :, 0, 0]
        layers = [([mix[:, :1], mix[:, 1:]], self.mix.bias), (self.out.weight[:, :, 0, 0], self.out.bias)]
        x = tiled_mlp([finest.reshape(1, h * w), coarser.reshape(-1, h * w)], layers).reshape(1, 3, h, w)
        return self._residual(x.contiguous(memory_format=torch.channels_last))  # 4x faster 3x3 backward

    def _residual(self, x: Tensor) -> Tensor:
        if self.res1 is not None:
            x = x + torch.relu(self.res1(F.pad(x, (1, 1, 1, 1), mode="replicate")))
        return x + self.res2(F.pad(x, (1, 1, 1, 1), mode="replicate"))

    def convolutions(self) -> list[nn.Conv2d]:
        """The layers, in file order."""
        return [self.mix, self.out, *([self.res1] if self.res1 is not None else []), self.res2]


# --------------------------------------------------------------------------------------------
# The context model


def _shifted_views_values(
    grid: Tensor, pad: tuple[int, ...], starts: list[tuple[int, int]], stride: int
) -> Tensor:
    h, w = grid.shape
    padded = F.pad(grid, pad)
    rows, cols = -(-h // stride), -(-w // stride)
    views = [padded[dy : dy + stride * rows : stride, dx : dx + stride * cols : stride] for dy, dx in starts]
    return torch.stack(views).reshape(len(starts), rows * cols)


class _ShiftedViews(torch.autograd.Function):
    """:func:`_shifted_views_values` with a hand-written backward pass: the views' gradients summed
    into one zero-padded buffer (autograd makes a zero-filled padded copy per view)."""

    @staticmethod
    def forward(
        ctx, grid: Tensor, pad: tuple[int, ...], starts: list[tuple[int, int]], stride: int
    ) -> Tensor:
        ctx.shape, ctx.pad, ctx.starts, ctx.stride = grid.shape, pad, starts, stride
        return _shifted_views_values(grid, pad, starts, stride)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (h, w), (left, right, top, bottom), s = ctx.shape, ctx.pad, ctx.stride
        rows, cols = -(-h // s), -(-w // s)
        gp = grad.new_zeros(h + top + bottom, w + left + right)
        for (dy, dx), g in zip(ctx.starts, grad.reshape(-1, rows, cols), strict=True):
            gp[dy : dy + s * rows : s, dx : dx + s * cols : s] += g
        return gp[top : top + h, left : left + w], None, None, None


def shifted_views(grid: Tensor, pad: tuple[int, ...], starts: list[tuple[int, int]], stride: int) -> Tensor:
    """(len(starts), positions): for each start (dy, dx), the view ``padded[dy::stride, dx::stride]``
    of ``grid`` (h, w) zero-padded by ``pad`` (left, right, top, bottom), ``ceil(h / stride)`` x
    ``ceil(w / stride)`` positions in raster order; differentiable by :class:`_ShiftedViews`."""
    if torch.is_grad_enabled() and grid.requires_grad:
        return _ShiftedViews.apply(grid, pad, starts, stride)
    return _shifted_views_values(grid, pad, starts, stride)


def raster_mask(kernel: int) -> Tensor:
    """(kernel, kernel) bool: the raster-causal window (rows above, and left in the same row)."""
    r = kernel // 2
    i, j = torch.meshgrid(torch.arange(kernel) - r, torch.arange(kernel) - r, indexing="ij")
    return (i < 0) | ((i == 0) & (j < 0))


class ContextModel(nn.Module):
    """The ARM: Laplace (mean, log-scale) of every latent of a grid from the latents before it in
    raster order (a causal ``kernel`` x ``kernel`` window) and a ``coarse_kernel`` window of the
    coarser grid centred on (y // 2, x // 2); outside a grid reads zero. An MLP: the window to
    ``hidden`` (ReLU), ``hidden`` to ``hidden`` (ReLU), to 2. Training evaluates every position at
    once (masked convolutions); coding evaluates it latent by latent in exact integer arithmetic
    (``entropy/native/arm.hpp``, :class:`IntegerARM`)."""

    def __init__(self, hidden: int = 8, kernel: int = 5, coarse_kernel: int = 3):
        super().__init__()
        self.hidden_size, self.kernel, self.coarse_kernel = hidden, kernel, coarse_kernel
        fan_in = kernel * kernel // 2 + coarse_kernel**2
        std = 1 / math.sqrt(fan_in)
        self.register_buffer("mask", raster_mask(kernel), persistent=False)
        self.same = nn.Parameter(torch.randn(hidden, kernel, kernel) * std * self.mask)
        self.coarse = nn.Parameter(torch.randn(hidden, coarse_kernel, coarse_kernel) * std)
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.hidden = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, 2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, grid: Tensor, coarse: Tensor | None) -> tuple[Tensor, Tensor]:
        """(mean, log-scale), each (1, 1, h, w), of ``grid`` (1, 1, h, w) given the coarser grid
        ``coarse`` (1, 1, h/2, w/2; None for the coarsest): the MLP over every position's windows
        by :func:`tiled_mlp`, one call per phase of the 2x2 lattice, which all share the coarse
        windows (:meth:`parents`) without repeating them."""
        h, w = grid.shape[-2:]
        rest = [(self.hidden.weight, self.hidden.bias), (self.head.weight, self.head.bias)]
        same = self.same[:, self.mask]
        if coarse is None:
            out = tiled_mlp([self.windows(grid)], [([same], self.bias), *rest])
        else:
            first = ([same, self.coarse.reshape(self.hidden_size, -1)], self.bias)
            parents = self.parents(coarse)
            phases = [
                tiled_mlp([self.windows(grid, (a, b)), parents], [first, *rest])
                for a in (0, 1)
                for b in (0, 1)
            ]
            hc, wc = coarse.shape[-2:]
            out = torch.stack(phases).reshape(2, 2, 2, hc, wc).permute(2, 3, 0, 4, 1).reshape(2, h, w)
        return out[0].reshape(1, 1, h, w), out[1].reshape(1, 1, h, w)

    def windows(self, grid: Tensor, phase: tuple[int, int] | None = None) -> Tensor:
        """The causal windows (taps in the mask's raster order, positions) of every position of
        ``grid`` (1, 1, h, w), zero outside it; with ``phase`` (a, b), of the positions (2i + a,
        2j + b) only, in raster order of (i, j)."""
        r = self.kernel // 2
        offsets = self.mask.nonzero().tolist()
        if phase is None:
            return shifted_views(grid[0, 0], (r, r, r, 0), offsets, 1)
        a, b = phase
        return shifted_views(grid[0, 0], (r, r, r, 0), [(dy + a, dx + b) for dy, dx in offsets], 2)

    def parents(self, coarse: Tensor) -> Tensor:
        """The ``coarse_kernel`` x ``coarse_kernel`` windows of every position of ``coarse`` (1, 1,
        hc, wc), row by row, zero outside it: (coarse_kernel^2, hc * wc)."""
        k = self.coarse_kernel
        return shifted_views(coarse[0, 0], (k // 2,) * 4, [(dy, dx) for dy in range(k) for dx in range(k)], 1)


# --------------------------------------------------------------------------------------------
# The integer ARM


@dataclass
class IntegerARM:
    """The ARM's parameters as integers (float64 holding integers) and their steps 2^-kw, 2^-kb."""

    same: Tensor  # (H, k, k), zero outside the raster mask
    coarse: Tensor  # (H, ck, ck)
    bias: Tensor  # (H,)
    hidden_w: Tensor  # (H, H)
    hidden_b: Tensor  # (H,)
    head_w: Tensor  # (2, H)
    head_b: Tensor  # (2,)
    kw: int
    kb: int

    @property
    def bias_scale(self) -> float:
        return 2.0 ** (ACT_BITS + self.kw - self.kb)

    def weights(self) -> list[Tensor]:
        return [self.same, self.coarse, self.hidden_w, self.head_w]

    def biases(self) -> list[Tensor]:
        return [self.bias, self.hidden_b, self.head_b]

    def native(self) -> _rans.Arm:
        """This ARM for the native coder (``entropy/native/arm.hpp``), with the table mapping."""
        hidden, k = self.same.shape[0], self.same.shape[-1]
        taps = raster_mask(k).nonzero()
        dy, dx = (np.ascontiguousarray(taps[:, i].numpy() - k // 2, dtype=np.int32) for i in (0, 1))

        def longs(t: Tensor, scale: float = 1.0) -> np.ndarray:
            return np.ascontiguousarray((t * scale).reshape(-1).numpy().astype(np.int64))

        w1 = torch.cat([self.same[:, taps[:, 0], taps[:, 1]], self.coarse.reshape(hidden, -1)], 1)
        return _rans.Arm(
            hidden=hidden,
            dy=dy,
            dx=dx,
            coarse_kernel=self.coarse.shape[-1],
            w1=longs(w1),
            b1=longs(self.bias, self.bias_scale),
            w2=longs(self.hidden_w),
            b2=longs(self.hidden_b, self.bias_scale),
            w3=longs(self.head_w),
            b3=longs(self.head_b, self.bias_scale),
            kw=self.kw,
            act_bits=ACT_BITS,
            mean_bits=MEAN_BITS,
            act_max=int(ACT_MAX),
            log_scale0=LOG_SCALE_0,
            log_scale_step=LOG_SCALE_STEP,
            scales=SCALES,
            latent_max=LATENT_MAX,
        )


def check_integer_bounds(arm: IntegerARM) -> str | None:
    """Why ``arm``'s integer evaluation could round or overflow (a reason), or None when every
    partial sum of every layer provably stays below 2^53 in magnitude."""
    if not 0 <= arm.kw <= 24 or ACT_BITS + arm.kw - arm.kb < 0:
        return "its fixed-point steps are out of range"
    if any(float(w.abs().max()) > WEIGHT_MAX for w in arm.weights() if w.numel()):
        return f"an ARM weight exceeds {WEIGHT_MAX}"
    if any(float(b.abs().max()) * arm.bias_scale > BIAS_MAX for b in arm.biases() if b.numel()):
        return "an ARM bias is out of range"
    latent_in = LATENT_MAX * 2.0**ACT_BITS
    first = (arm.same.abs().sum((1, 2)) + arm.coarse.abs().sum((1, 2))).max() * latent_in
    rest = max(float(arm.hidden_w.abs().sum(1).max()), float(arm.head_w.abs().sum(1).max())) * ACT_MAX
    if max(float(first), rest) + BIAS_MAX >= EXACT:
        return "the ARM's accumulators could exceed 2^53"
    return None


# --------------------------------------------------------------------------------------------
# From (mean, log-scale) to a coding table, by integer operations


MEAN_BITS = 4  # the mean's fraction is coded to 1/16: 16 tables per scale (1/8 cost +0.7 % rate)
SCALES = 48  # table scales exp(LOG_SCALE_0 + i * LOG_SCALE_STEP) / 2^ACT_BITS, i < SCALES
LOG_SCALE_0 = -896  # ln(b_min) = -3.5 (b_min ~ 0.030), units 2^-ACT_BITS
LOG_SCALE_STEP = 38  # 0.148 in ln(b), units 2^-ACT_BITS: b_max ~ 32.4
TAIL_MASS = 2.0**-16


def _laplace_pmf(mean: float, scale: float, low: int, high: int) -> list[float]:
    """Masses of the integers ``low..high`` under Laplace(mean, scale), then the escape mass (math.exp only)."""

    def below(t: float) -> float:  # P(Y < t)
        return 0.5 * math.exp((t - mean) / scale) if t <= mean else 1 - 0.5 * math.exp((mean - t) / scale)

    def above(t: float) -> float:  # P(Y > t), accurate in the upper tail
        return 0.5 * math.exp((mean - t) / scale) if t >= mean else 1 - 0.5 * math.exp((t - mean) / scale)

    masses = []
    for j in range(low, high + 1):
        if j + 0.5 <= mean:
            masses.append(below(j + 0.5) - below(j - 0.5))
        else:
            masses.append(above(j - 0.5) - above(j + 0.5))
    return [*masses, max(below(low - 0.5) + above(high + 0.5), tables.ESCAPE_FLOOR)]


@functools.cache
def laplace_tables() -> coder.TableSet:
    """The coding tables: table ``s * 2^MEAN_BITS + f`` is Laplace(f / 2^MEAN_BITS, b_s) of the
    integers ``-K..K+1`` (offset ``-K``, ``K = ceil(b_s ln(1/TAIL_MASS))``), ``b_s = exp((LOG_SCALE_0 +
    s LOG_SCALE_STEP) / 2^ACT_BITS)``; built once (float64 scalar math, ~0.1 s) and hashed into
    every stream, so a decoder with other tables refuses the file."""
    cdfs, offsets = [], []
    for s in range(SCALES):
        scale = math.exp((LOG_SCALE_0 + s * LOG_SCALE_STEP) / 2**ACT_BITS)
        k = max(1, math.ceil(scale * math.log(1 / TAIL_MASS)))
        for f in range(1 << MEAN_BITS):
            cdfs.append(tables.quantize_pmf(np.array(_laplace_pmf(f / (1 << MEAN_BITS), scale, -k, k + 1))))
            offsets.append(-k)
    return coder.TableSet(cdfs, np.array(offsets, dtype=np.int32))


def table_likelihood(y: Tensor, mean: Tensor, scale: Tensor, likelihood: Tensor) -> Tensor:
    """``likelihood`` (the Laplace masses of the integers ``y`` at the tables' ``mean`` and
    ``scale``) as the coding tables price it: a table entry has at least the least frequency,
    ``2^-PRECISION``, and a value outside its table's range (``-K..K+1`` around ``floor(mean)``) is
    an escape, priced as that least frequency and one LEB128 byte. Without these floors the far
    tails cost up to 30 bits each where the file spends 16 to 24, and the fit's rate overstated a
    low-rate file by up to 2 %."""
    least = 2.0**-tables.PRECISION
    k = torch.ceil(scale.detach() * math.log(1 / TAIL_MASS)).clamp_min(1)
    offset = (y - torch.floor(mean.detach())).detach()
    escape = (offset < -k) | (offset > k + 1)
    return lower_bound(likelihood, least) * torch.where(escape, 2.0**-8, 1.0)


def log_scale_bounds() -> tuple[float, float]:
    """The range of ln(scale) the tables cover (the float model clamps its log-scales to it)."""
    lo = LOG_SCALE_0 / 2**ACT_BITS
    return lo, (LOG_SCALE_0 + (SCALES - 1) * LOG_SCALE_STEP) / 2**ACT_BITS


# --------------------------------------------------------------------------------------------
# One image's model


class ImageModel(nn.Module):
    """Everything fitted to one (padded) image: the latent grids and the three networks."""

    def __init__(
        self,
        height: int,
        width: int,
        arm_hidden: int = 16,
        arm_kernel: int = 5,
        synthesis_width: int = 16,
        arm_coarse_kernel: int = 3,
        synthesis_relu_residual: bool = False,
    ) -> None:
        super().__init__()
        self.latents = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, 1, h, w)) for h, w in grid_sizes(height, width)]
        )
        self.upsampler = Upsampler()
        self.synthesis = Synthesis(synthesis_width, synthesis_relu_residual)
        self.arm = ContextModel(arm_hidden, arm_kernel, arm_coarse_kernel)

    def macs_per_pixel(self) -> float:
        """Multiply-accumulates per pixel of the padded image that decoding costs: the ARM per
        latent, the upsampling filters (4 taps per output and axis) and the synthesis."""
        sizes = [tuple(y.shape[-2:]) for y in self.latents]
        pixels = sizes[0][0] * sizes[0][1]
        arm, syn = self.arm, self.synthesis
        taps = int(arm.mask.sum()) + arm.coarse_kernel**2
        per_latent = arm.hidden_size * (taps + arm.hidden_size + 2)
        arm_macs = per_latent * sum(h * w for h, w in sizes)
        up_macs = 0
        for level in range(GRIDS - 2, -1, -1):  # GRIDS - 1 - level channels go up to level's size
            (h, w), (hc, _) = sizes[level], sizes[level + 1]
            up_macs += (GRIDS - 1 - level) * 4 * (hc * w + h * w)
        width = syn.mix.out_channels
        syn_macs = pixels * (GRIDS * width + width * 3 + 27 * (len(syn.convolutions()) - 2))
        return (arm_macs + up_macs + syn_macs) / pixels

    def reconstruct(self, grids: list[Tensor]) -> Tensor:
        """The image (1, 3, H, W) from the latent ``grids`` (finest first, each (1, 1, h, w))."""
        return self.synthesis(grids[0], self.upsampler(grids))

    def grid_rate(self, grids: list[Tensor], level: int, coded: bool = False) -> tuple[Tensor, Tensor]:
        """(mean, scale) of every latent of ``grids[level]`` from the float ARM (scale clamped to
        the range of the coding tables); ``coded``: at the coding tables' resolution too (mean to
        ``2^-MEAN_BITS``, log-scale to the nearest table scale), gradients passed straight through."""
        coarse = grids[level + 1] if level + 1 < len(grids) else None
        mean, log_scale = self.arm(grids[level], coarse)
        lo, hi = log_scale_bounds()
        # bounded like the coding tables, with gradients that can still bring a log-scale back
        log_scale = -lower_bound(-lower_bound(log_scale, lo), -hi)
        if coded:
            step = LOG_SCALE_STEP / 2**ACT_BITS
            mean = mean + (torch.round(mean * 2**MEAN_BITS) * 2.0**-MEAN_BITS - mean).detach()
            log_scale = log_scale + (lo + torch.round((log_scale - lo) / step) * step - log_scale).detach()
        return mean, torch.exp(log_scale)
