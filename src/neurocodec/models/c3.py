"""Networks of the overfitted ``c3`` image codec (C3 / Cool-chic class): fitted to one image each.

- :data:`GRIDS` latent grids of one channel at 1/1 ... 1/64 of the padded image, integers once
  quantized (:func:`soft_round`, :func:`kumaraswamy_noise` in training).
- :class:`Upsampler`: coarse -> fine, each 2x step a learned separable symmetric 8-tap filter
  (initialized bicubic), the finer grid concatenated after each step: 7 channels at full size.
- :class:`Synthesis`: 1x1 conv to ``width``, ReLU, 1x1 to 3, then two residual 3x3 convs.
- :class:`ContextModel` (the ARM): a Laplace (mean, log-scale) per latent from the latents of
  the same grid decoded in earlier passes and a 3x3 window of the coarser grid. A grid is
  decoded in four passes, the phases of a 2x2 lattice (:data:`PHASES`); each pass sees the
  earlier phases inside a ``kernel`` x ``kernel`` window (phase-dependent masks) and has its own
  first layer; the hidden and output layers are shared. Training evaluates all positions at once
  (four stride-2 masked convolutions); coding evaluates the same MLP in exact integer
  arithmetic (:func:`integer_phase`), so table indexes are identical on every device.

Fixed point of the integer ARM: weights are ``W * 2^-kw``, biases ``B * 2^-kb`` (one step per
module for each), activations are integers in units of ``2^-ACT_BITS``; every layer computes
the exact integer ``acc = W x + B 2^(ACT_BITS + kw - kb)`` (units ``2^-(ACT_BITS + kw)``) and
outputs ``floor(acc 2^-kw)``. All values are integers held in float64 whose magnitudes
(:func:`check_integer_bounds`) keep every partial sum below 2^53, so the products and sums are
exact in any order, on any device and thread count.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocodec.entropy import coder, tables
from neurocodec.entropy.models.base import lower_bound

GRIDS = 7
PHASES = ((0, 0), (1, 1), (0, 1), (1, 0))  # decoding order of the 2x2 lattice (row, column parity)
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


def _upsample_axis(x: Tensor, taps: Tensor) -> Tensor:
    """``x`` (N, C, h, w) upsampled 2x along its last axis by the symmetric 8-tap filter ``taps``:
    output ``2i`` sits at ``i - 1/4``, ``2i + 1`` at ``i + 1/4`` (replicated edges). Weighted sums of
    shifted views, whose backward pass is far cheaper here than a (1, 5) convolution's."""
    w = x.shape[-1]
    h0, h1, h2, h3 = taps
    xp = F.pad(x, (2, 2, 0, 0), mode="replicate")
    at = [xp[..., 2 + d : 2 + d + w] for d in (-2, -1, 0, 1, 2)]  # x[i + d]
    even = h3 * at[0] + h1 * at[1] + h0 * at[2] + h2 * at[3]
    odd = h2 * at[1] + h0 * at[2] + h1 * at[3] + h3 * at[4]
    return torch.stack([even, odd], -1).flatten(-2)


class Upsampler(nn.Module):
    """The latent grids, coarse to fine, as ``GRIDS`` channels at the finest grid's size."""

    def __init__(self) -> None:
        super().__init__()
        self.taps = nn.Parameter(torch.tensor([bicubic_taps()] * (GRIDS - 1)))

    def forward(self, grids: list[Tensor]) -> Tensor:
        x = grids[-1]
        for level in range(GRIDS - 2, -1, -1):
            taps = self.taps[level]
            x = _upsample_axis(x, taps)
            x = _upsample_axis(x.transpose(2, 3), taps).transpose(2, 3)
            x = torch.cat([grids[level], x], dim=1)
        return x


class Synthesis(nn.Module):
    """Pixels from the upsampled latents: 1x1 to ``width``, ReLU, 1x1 to 3, two residual 3x3."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.mix = nn.Conv2d(GRIDS, width, 1)
        self.out = nn.Conv2d(width, 3, 1)
        self.res1 = nn.Conv2d(3, 3, 3)
        self.res2 = nn.Conv2d(3, 3, 3)
        for conv in (self.res1, self.res2):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        with torch.no_grad():
            self.out.bias.fill_(0.5)

    def forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)  # 4x faster 3x3 backward passes here
        x = self.out(torch.relu(self.mix(x)))
        x = x + torch.relu(self.res1(F.pad(x, (1, 1, 1, 1), mode="replicate")))
        return x + self.res2(F.pad(x, (1, 1, 1, 1), mode="replicate"))


# --------------------------------------------------------------------------------------------
# The context model


def phase_masks(kernel: int) -> Tensor:
    """(4, kernel, kernel) bool: which window offsets phase ``p`` may use (decoded in an earlier pass)."""
    r = kernel // 2
    masks = torch.zeros(len(PHASES), kernel, kernel, dtype=torch.bool)
    for p, (py, px) in enumerate(PHASES):
        for i in range(kernel):
            for j in range(kernel):
                q = PHASES.index(((py + i - r) % 2, (px + j - r) % 2))
                masks[p, i, j] = q < p
    return masks


def raster_mask(kernel: int) -> Tensor:
    """(kernel, kernel) bool: the raster-causal window (rows above, and left in the same row)."""
    r = kernel // 2
    i, j = torch.meshgrid(torch.arange(kernel) - r, torch.arange(kernel) - r, indexing="ij")
    return (i < 0) | ((i == 0) & (j < 0))


class ContextModel(nn.Module):
    """The ARM: Laplace (mean, log-scale) of every latent of a grid from its decoded neighbours.

    ``scheme="phases"`` is what the codec codes with; ``scheme="raster"`` (training rate only,
    never coded) replaces the phase masks by one raster-causal mask, to measure what the
    four-pass schedule costs.
    """

    def __init__(self, hidden: int = 16, kernel: int = 5, coarse_kernel: int = 3, scheme: str = "phases"):
        super().__init__()
        if scheme not in ("phases", "raster"):
            raise ValueError(f"scheme must be 'phases' or 'raster', not {scheme!r}")
        self.hidden_size, self.kernel, self.coarse_kernel, self.scheme = hidden, kernel, coarse_kernel, scheme
        fan_in = kernel * kernel // 2 + coarse_kernel**2
        std = 1 / math.sqrt(fan_in)
        self.same = nn.Parameter(torch.randn(len(PHASES), hidden, kernel, kernel) * std)
        self.coarse = nn.Parameter(torch.randn(len(PHASES), hidden, coarse_kernel, coarse_kernel) * std)
        self.bias = nn.Parameter(torch.zeros(len(PHASES), hidden))
        self.hidden = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, 2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        masks = phase_masks(kernel) if scheme == "phases" else raster_mask(kernel).expand(len(PHASES), -1, -1)
        self.register_buffer("masks", masks.clone(), persistent=False)
        self.register_buffer("placement", _placement(masks, coarse_kernel), persistent=False)

    def forward(self, grid: Tensor, coarse: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log-scale), each (1, 1, h, w), of ``grid`` (1, 1, h, w; h and w even) given the
        coarser grid ``coarse`` (1, 1, h/2, w/2; zeros for the coarsest).

        One convolution computes every phase's first layer: the grid's 2x2 sub-grids
        (``pixel_unshuffle``) and the coarser grid are its 5 input channels at half size, and
        each phase's masked window is laid out on them by the fixed ``placement``."""
        _, _, h, w = grid.shape
        hid, phases = self.hidden_size, len(PHASES)
        same = self.same if self.scheme == "phases" else self.same[:1].expand(phases, -1, -1, -1)
        taps = torch.cat([same.flatten(2), self.coarse.flatten(2)], 2)  # (4, H, k^2 + ck^2)
        size = self.placement.shape[-1]
        weight = torch.bmm(taps, self.placement.flatten(2)).reshape(phases * hid, 5, size, size)
        x = torch.cat([F.pixel_unshuffle(grid, 2), coarse], 1)
        x = F.pad(x, (size // 2,) * 4).contiguous(memory_format=torch.channels_last)
        h1 = F.conv2d(x, weight).permute(0, 2, 3, 1).reshape(-1, phases, hid)  # channels-last: a view
        h1 = torch.relu(h1 + self.bias)
        h2 = torch.relu(F.linear(h1, self.hidden.weight, self.hidden.bias))
        out = F.linear(h2, self.head.weight, self.head.bias)  # (h/2 * w/2, 4, 2)
        order = [PHASES.index((i // 2, i % 2)) for i in range(4)]  # phases in sub-pixel order
        out = out[:, order].reshape(h // 2, w // 2, 2, 2, 2).permute(4, 0, 2, 1, 3).reshape(1, 2, h, w)
        return out[:, :1], out[:, 1:]


def _placement(masks: Tensor, coarse_kernel: int) -> Tensor:
    """(4, k^2 + ck^2, 5, K, K): where each window tap of each phase lands in a half-size KxK
    kernel over the 4 sub-grids (channel ``2 * row parity + column parity``) and the coarser grid
    (channel 4); masked-out taps land nowhere."""
    phases, k, _ = masks.shape
    r, cr = k // 2, coarse_kernel // 2
    half = max(-(-r // 2), cr)
    size = 2 * half + 1
    out = torch.zeros(phases, k * k + coarse_kernel**2, 5, size, size)
    for p, (py, px) in enumerate(PHASES):
        for i in range(k):
            for j in range(k):
                if masks[p, i, j]:
                    y, x = py + i - r, px + j - r
                    out[p, i * k + j, (y % 2) * 2 + x % 2, y // 2 + half, x // 2 + half] = 1
        for i in range(coarse_kernel):
            for j in range(coarse_kernel):
                out[p, k * k + i * coarse_kernel + j, 4, i - cr + half, j - cr + half] = 1
    return out


# --------------------------------------------------------------------------------------------
# The integer ARM


@dataclass
class IntegerARM:
    """The ARM's parameters as integers (float64 holding integers) and their steps 2^-kw, 2^-kb."""

    same: Tensor  # (4, H, k, k), zero outside each phase's mask
    coarse: Tensor  # (4, H, ck, ck)
    bias: Tensor  # (4, H)
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


def check_integer_bounds(arm: IntegerARM) -> str | None:
    """Why ``arm``'s integer evaluation could round (a reason), or None when every partial sum of
    every layer provably stays below 2^53 in magnitude."""
    if any(float(w.abs().max()) > WEIGHT_MAX for w in arm.weights() if w.numel()):
        return f"an ARM weight exceeds {WEIGHT_MAX}"
    if any(float(b.abs().max()) * arm.bias_scale > BIAS_MAX for b in arm.biases() if b.numel()):
        return "an ARM bias is out of range"
    latent_in = LATENT_MAX * 2.0**ACT_BITS
    first = (arm.same.abs().sum((2, 3)) + arm.coarse.abs().sum((2, 3))).max() * latent_in
    rest = max(float(arm.hidden_w.abs().sum(1).max()), float(arm.head_w.abs().sum(1).max())) * ACT_MAX
    if max(float(first), rest) + BIAS_MAX >= EXACT:
        return "the ARM's accumulators could exceed 2^53"
    return None


def _layer(acc: Tensor, kw: int, hidden: bool) -> Tensor:
    out = torch.floor(acc * 2.0**-kw)
    return out.clamp(0, ACT_MAX) if hidden else out


def integer_phase(arm: IntegerARM, grid: Tensor, coarse: Tensor, phase: int) -> tuple[Tensor, Tensor]:
    """The integer ARM at the positions of ``phase``: (mean, log-scale), int64 (h/2 * w/2,) in
    units of 2^-ACT_BITS, row-major over the phase's sub-grid.

    ``grid`` (h, w; even) and ``coarse`` (h/2, w/2) hold integers in float64; only positions of
    earlier phases of ``grid`` are read (the others may hold anything). Exact: see the module doc.
    """
    h, w = grid.shape
    h2, w2 = h // 2, w // 2
    k, ck = arm.same.shape[-1], arm.coarse.shape[-1]
    r, cr = k // 2, ck // 2
    py, px = PHASES[phase]
    xp = F.pad(grid[None, None], (r, r, r, r))[0, 0]
    cp = F.pad(coarse[None, None], (cr, cr, cr, cr))[0, 0]
    taps = (arm.same[phase] != 0).any(0).nonzero().tolist()  # the window offsets this phase uses
    columns = [xp[py + i :: 2, px + j :: 2][:h2, :w2].reshape(-1) for i, j in taps]
    columns += [cp[i : i + h2, j : j + w2].reshape(-1) for i in range(ck) for j in range(ck)]
    x = torch.stack(columns) * 2.0**ACT_BITS  # (taps, N): latents in units 2^-ACT_BITS
    w1 = torch.cat(
        [
            arm.same[phase][:, [i for i, _ in taps], [j for _, j in taps]],
            arm.coarse[phase].reshape(-1, ck * ck),
        ],
        1,
    )
    a = _layer(w1 @ x + arm.bias[phase, :, None] * arm.bias_scale, arm.kw, True)
    a = _layer(arm.hidden_w @ a + arm.hidden_b[:, None] * arm.bias_scale, arm.kw, True)
    out = _layer(arm.head_w @ a + arm.head_b[:, None] * arm.bias_scale, arm.kw, False)
    return out[0].to(torch.int64), out[1].to(torch.int64)


# --------------------------------------------------------------------------------------------
# From (mean, log-scale) to a coding table, by integer operations


MEAN_BITS = 3  # the mean's fraction is coded to 1/8: 8 tables per scale
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


def log_scale_bounds() -> tuple[float, float]:
    """The range of ln(scale) the tables cover (the float model clamps its log-scales to it)."""
    lo = LOG_SCALE_0 / 2**ACT_BITS
    return lo, (LOG_SCALE_0 + (SCALES - 1) * LOG_SCALE_STEP) / 2**ACT_BITS


def table_of(mean: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
    """(integer part of the mean, table index), int64, from the integer ARM's outputs (int64,
    units 2^-ACT_BITS): the mean to the nearest 1/2^MEAN_BITS, the log-scale to the nearest table."""
    shift = ACT_BITS - MEAN_BITS
    t = (mean + (1 << (shift - 1))) >> shift  # the mean in units 2^-MEAN_BITS
    whole, fraction = t >> MEAN_BITS, t & ((1 << MEAN_BITS) - 1)
    s = torch.div(log_scale - LOG_SCALE_0 + LOG_SCALE_STEP // 2, LOG_SCALE_STEP, rounding_mode="floor")
    return whole, s.clamp(0, SCALES - 1) * (1 << MEAN_BITS) + fraction


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
        scheme: str = "phases",
    ) -> None:
        super().__init__()
        self.latents = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, 1, h, w)) for h, w in grid_sizes(height, width)]
        )
        self.upsampler = Upsampler()
        self.synthesis = Synthesis(synthesis_width)
        self.arm = ContextModel(arm_hidden, arm_kernel, scheme=scheme)

    def reconstruct(self, grids: list[Tensor]) -> Tensor:
        return self.synthesis(self.upsampler(grids))

    def grid_rate(self, grids: list[Tensor], level: int) -> tuple[Tensor, Tensor]:
        """(mean, scale) of every latent of ``grids[level]`` from the float ARM (scale clamped to
        the range of the coding tables)."""
        g = grids[level]
        _, _, h, w = g.shape
        if level + 1 < len(grids):
            coarse = grids[level + 1]
        else:
            coarse = g.new_zeros(1, 1, -(-h // 2), -(-w // 2))
        mean, log_scale = self.arm(F.pad(g, (0, w % 2, 0, h % 2)), coarse)
        lo, hi = log_scale_bounds()
        # bounded like the coding tables, with gradients that can still bring a log-scale back
        log_scale = -lower_bound(-lower_bound(log_scale[..., :h, :w], lo), -hi)
        return mean[..., :h, :w], torch.exp(log_scale)
