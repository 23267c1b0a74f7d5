"""S2LIC (Wang et al., "S2LIC: Learned Image Compression with the SwinV2 Block, Adaptive
Channel-wise and Global-inter Attention Context", arXiv 2403.14471), written from the paper: its
released code imports an unpublished CompressAI fork and does not run; none of it is used here.

**Transforms (float).** ``g_a`` = the dense-block enhancement module (:class:`EnhanceBlock`, a
residual ``x + 0.2 f(x)`` of two dense blocks around 1x1/3x3/1x1 convolutions), then four
stride-2 convolutions (5x5, then 3x3) with a residual SwinV2 transformer block (:class:`RSTB`) after
each of the first three (depths 1, 2, 3; heads 4, 8, 16 in the paper). ``g_s`` mirrors it with
stride-2 transposed 3x3 convolutions, a sub-pixel 3x3 to RGB and a second enhancement block.
A :class:`SwinV2Block` is Liu et al.'s SwinV2 layer: shifted-window attention with **scaled cosine
attention** (``cos(q, k) * exp(min(logit_scale, log 100))``, a learnable scale per head), a
**log-spaced continuous position bias** (a small MLP of ``sign(d) log2(1 + |d|) / log2(8)`` of
the relative offsets, ``16 sigmoid`` of it added to the logits) and **post-norm** residuals
(``x + LN(attn(x))``, ``x + LN(mlp(x))``). Feature maps whose sides are not multiples of the
window are padded; padded tokens, and the wrapped-around regions of a shifted window, are masked
out of the attention.

**Entropy model: ACGC on an integer prior path.** The latent is coded by the project's sliced
checkerboard schedule (:meth:`~neurocodec.entropy.models.schedules.ContextSchedule.sliced_checkerboard`,
the format's anchor parity) inside :class:`~neurocodec.entropy.latent_codecs.ContextLatentCodec`,
with the integer hyper-synthesis of :mod:`neurocodec.models.hyperprior`. :class:`ACGCPrior` is the
schedule's parameter function; every network in it is an integer network
(:mod:`neurocodec.models.integer`), so a file decodes bit-exactly on any device. For slice ``k``
the contexts read ``context input``: the decoded earlier slices ``y_hat[<k]`` and, with
``anchor_context`` (the paper's figure, the default), the slice's own anchors at its non-anchor
step (non-anchors masked to zero; zero at the anchor step):

- **adaptive channel-wise context** (:class:`AdaptiveChannelContext`, ACCTX): two integer 3x3
  convolutions with QReLUs, gated by a **channel map** (integer squeeze-and-excitation,
  :class:`~neurocodec.models.mlic.IntegerChannelReweight`) and a **spatial map**
  (:class:`IntegerSpatialGate`: a per-position gate from two integer 3x3 convolutions), plus a
  one-convolution 3x3 branch (the paper's depthwise branch; it changes the channel count, so it is
  a plain convolution here);
- **global-inter attention context** (:class:`GlobalInterContext`, AGCTX): attention of every
  position over all positions of the context input, then an integer 5x5 convolution and the same
  two gates. The paper's attention is deformable (bilinear sampling at learned offsets), which has
  no exact integer form; ours is the integer linear attention with 2-D RoPE of
  :class:`~neurocodec.models.mlic.IntegerLinearAttention` (exact, linear in the tokens);
- the hyper-prior features; an integer 1x1 head (:class:`~neurocodec.models.mlic.IntegerEntropyHead`)
  per slice and step gives the table indexes and means.

With ``anchor_context=False`` (the released code's reading) a slice's two steps share the contexts
of ``y_hat[<k]`` (computed once, reused at the non-anchor step) and only their heads differ: the
anchors then reach nothing but the latent residual prediction. Measured at one training budget
(``eval/s2lic_budget.json``: 600 steps from scratch, lambda 0.0067, 128x128 crops, batch 8; all
24 Kodak images), the paper's form pays: with ``anchor_context`` a slice's non-anchors cost 0.440
bits per element against its anchors' 0.556 (21 % less), without it 0.715 against 0.698 (no
gain); the files are 0.250 bpp at 21.47 dB against 0.329 bpp at 21.64 dB (the R-D cost
``lambda 255^2 MSE + bpp`` 3.591 against 3.569: equal within 0.6 % at so short a run), and decode
took 1.44x and 1.26x mlic tiny's time (``eval/s2lic_speed.json``). ``anchor_context`` is the default.

**Latent residual prediction** is MLIC++'s (:class:`~neurocodec.models.mlic.LatentResidualPrediction`):
float, after decoding, for the synthesis only (an integer prior path cannot take float refinements
of earlier slices, and its contexts see the slices themselves).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocodec.entropy import tables
from neurocodec.entropy.latent_codecs import ContextLatentCodec
from neurocodec.entropy.models.schedules import ANCHOR, ContextSchedule, Step, checkerboard_mask
from neurocodec.models.base import CompressionModel
from neurocodec.models.context import MEAN_BITS, hyper_features, latent_integers
from neurocodec.models.hyperprior import HyperSynthesis
from neurocodec.models.integer import IntegerConv2d
from neurocodec.models.layers import conv, deconv
from neurocodec.models.mlic import (
    FEATURE_MAX,
    INPUT_BOUND,
    ChannelContext,
    IntegerChannelReweight,
    IntegerEntropyHead,
    IntegerLinearAttention,
    LatentResidualPrediction,
    floor_divide,
    integer_layer,
    mlic_hyper_analysis,
    subpel_conv3x3,
)

__all__ = [
    "PRESETS",
    "RSTB",
    "S2LIC",
    "ACGCPrior",
    "AdaptiveChannelContext",
    "DenseBlock",
    "EnhanceBlock",
    "GlobalInterContext",
    "IntegerSpatialGate",
    "S2LICConfig",
    "SwinV2Block",
    "WindowAttentionV2",
]

MASKED = -100.0  # the logit of a masked key: exp(-100) is 0 next to any unmasked one


# -- the dense-block enhancement module ------------------------------------------------------------


class DenseBlock(nn.Module):
    """Five 3x3 convolutions, each fed the input and every earlier output (LeakyReLU 0.2 between);
    the last maps to ``out_channels``. Initialized at a tenth of the default scale, so an
    enhancement block starts near the identity."""

    def __init__(self, in_channels: int, out_channels: int, growth: int):
        super().__init__()
        self.convs = nn.ModuleList(conv(in_channels + i * growth, growth, 3, 1) for i in range(4))
        self.last = conv(in_channels + 4 * growth, out_channels, 3, 1)
        with torch.no_grad():
            for layer in [*self.convs, self.last]:
                layer.weight.mul_(0.1)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.convs:
            features.append(F.leaky_relu(layer(torch.cat(features, dim=1)), 0.2))
        return self.last(torch.cat(features, dim=1))


class EnhanceBlock(nn.Module):
    """S2LIC's enhancement module (one direction): ``x + 0.2 f(x)`` with ``f`` = dense block
    (3 -> width), 1x1, 3x3, 1x1, dense block (width -> 3). ``g_a`` opens with one, ``g_s`` ends
    with another."""

    def __init__(self, width: int, growth: int, channels: int = 3):
        super().__init__()
        self.body = nn.Sequential(
            DenseBlock(channels, width, growth),
            conv(width, width, 1, 1),
            conv(width, width, 3, 1),
            conv(width, width, 1, 1),
            DenseBlock(width, channels, growth),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.2 * self.body(x)


# -- SwinV2 transformer blocks ------------------------------------------------------------------


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: in training, zero a residual branch for a random ``rate`` of the batch
    items (the others scaled by ``1 / (1 - rate)``); the identity otherwise."""
    if not training or rate == 0.0:
        return x
    keep = torch.rand(x.shape[0], *(1,) * (x.dim() - 1), device=x.device) >= rate
    return x * keep.to(x.dtype) / (1.0 - rate)


def log_spaced_offsets(window: int) -> Tensor:
    """((2w-1)^2, 2) relative offsets ``(dy, dx)`` of a window, scaled to ``[-8, 8]`` and log-spaced:
    ``sign(d) log2(1 + |d|) / log2(8)`` (SwinV2's continuous position bias input)."""
    span = torch.arange(-(window - 1), window, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(span, span, indexing="ij"), dim=-1).reshape(-1, 2)
    scaled = grid / (window - 1) * 8
    return torch.sign(scaled) * torch.log2(scaled.abs() + 1.0) / math.log2(8)


def relative_position_index(window: int) -> Tensor:
    """(w^2, w^2) index into :func:`log_spaced_offsets` of each (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    relative = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, T, T), in [0, 2w - 2]
    return relative[0] * (2 * window - 1) + relative[1]


class WindowAttentionV2(nn.Module):
    """Multi-head attention inside a window, SwinV2 style: scaled cosine attention with a learnable
    logit scale per head, and a continuous position bias from a 2-layer MLP of the log-spaced
    relative offsets (``16 sigmoid(MLP(offsets))``)."""

    def __init__(self, dim: int, heads: int, window: int, cpb_hidden: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"{dim} channels do not split into {heads} heads")
        if window < 2:
            raise ValueError(f"a window of {window} has no relative offsets")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))  # no key bias: SwinV2's
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), math.log(10.0)))
        self.cpb = nn.Sequential(
            nn.Linear(2, cpb_hidden), nn.ReLU(), nn.Linear(cpb_hidden, heads, bias=False)
        )
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("offsets", log_spaced_offsets(window), persistent=False)
        self.register_buffer("position_index", relative_position_index(window), persistent=False)

    def position_bias(self) -> Tensor:
        """(heads, T, T) bias of each (query, key) pair."""
        table = self.cpb(self.offsets)  # ((2w-1)^2, heads)
        t = self.position_index.shape[0]
        bias = table[self.position_index.reshape(-1)].reshape(t, t, self.heads).permute(2, 0, 1)
        return 16 * torch.sigmoid(bias)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x`` (windows, T, C) -> (windows, T, C); ``mask`` (windows per image, T, T) additive or None."""
        n, t, c = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(n, t, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        scale = torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        logits = F.normalize(q, dim=-1) @ (F.normalize(k, dim=-1) * scale).transpose(-2, -1)
        logits = logits + self.position_bias()
        if mask is not None:
            per_image = mask.shape[0]
            logits = (logits.view(n // per_image, per_image, self.heads, t, t) + mask[None, :, None]).view(
                n, self.heads, t, t
            )
        out = logits.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, t, c))


@functools.lru_cache(maxsize=32)
def window_mask(
    height: int, width: int, padded_h: int, padded_w: int, window: int, shift: int, device: torch.device
) -> Tensor | None:
    """The additive mask (windows, T, T) of a padded, rolled feature map, or None when nothing is
    masked: a token attends only to tokens of its own region, the regions being the real tokens
    that were neighbours before the roll (wrapped-around rows/columns are regions of their own)
    and the padding (one region)."""
    if shift == 0 and (padded_h, padded_w) == (height, width):
        return None
    rows = torch.arange(padded_h, device=device)
    cols = torch.arange(padded_w, device=device)
    wrapped_row = (rows >= padded_h - shift).long() if shift else torch.zeros_like(rows)
    wrapped_col = (cols >= padded_w - shift).long() if shift else torch.zeros_like(cols)
    region = 2 * wrapped_row[:, None] + wrapped_col[None, :]
    original_row, original_col = (rows + shift) % padded_h, (cols + shift) % padded_w
    padding = (original_row[:, None] >= height) | (original_col[None, :] >= width)
    region = torch.where(padding, torch.full_like(region, 4), region)
    windows = region.view(padded_h // window, window, padded_w // window, window).transpose(1, 2)
    windows = windows.reshape(-1, window * window)
    different = windows[:, :, None] != windows[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill_(different, MASKED)


class SwinV2Block(nn.Module):
    """One SwinV2 layer on (B, H, W, C) features: (shifted) window attention and an MLP, each a
    post-norm residual ``x + drop_path(LN(f(x)))``. ``shifted`` blocks roll the map by half a
    window first (only when it spans more than one window)."""

    def __init__(
        self, dim: int, heads: int, window: int, shifted: bool, mlp_ratio: float, cpb_hidden: int, drop: float
    ):
        super().__init__()
        self.window, self.shifted, self.drop = window, shifted, drop
        self.attention = WindowAttentionV2(dim, heads, window, cpb_hidden)
        self.norm1 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim)

    def _attend(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        ws = self.window
        padded = F.pad(x, (0, 0, 0, -w % ws, 0, -h % ws))
        ph, pw = padded.shape[1:3]
        shift = ws // 2 if self.shifted and (ph > ws or pw > ws) else 0
        if shift:
            padded = torch.roll(padded, (-shift, -shift), dims=(1, 2))
        windows = padded.view(b, ph // ws, ws, pw // ws, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
        mask = window_mask(h, w, ph, pw, ws, shift, x.device)
        out = self.attention(windows, mask).view(b, ph // ws, pw // ws, ws, ws, c)
        out = out.transpose(2, 3).reshape(b, ph, pw, c)
        if shift:
            out = torch.roll(out, (shift, shift), dims=(1, 2))
        return out[:, :h, :w]

    def forward(self, x: Tensor) -> Tensor:
        x = x + drop_path(self.norm1(self._attend(x)), self.drop, self.training)
        return x + drop_path(self.norm2(self.mlp(x)), self.drop, self.training)


class RSTB(nn.Module):
    """Residual Swin(V2) transformer block on (B, C, H, W) maps: ``x + conv3x3(blocks(x))``,
    ``depth`` :class:`SwinV2Block` s alternating plain and shifted windows."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        window: int,
        mlp_ratio: float,
        cpb_hidden: int,
        drop: float,
    ):
        super().__init__()
        self.blocks = nn.Sequential(
            *(SwinV2Block(dim, heads, window, i % 2 == 1, mlp_ratio, cpb_hidden, drop) for i in range(depth))
        )
        self.conv = conv(dim, dim, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        features = self.blocks(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.conv(features)


# -- the integer ACGC contexts --------------------------------------------------------------------


class IntegerSpatialGate(nn.Module):
    """Integer spatial map: a per-position gate ``QReLU(3x3(QReLU(3x3(x))))`` in ``[0, 255]`` (one
    channel), applied as ``floor(x * (gate + 1) / 256)``. Input: integer features in ``[0, 255]``.
    The gate starts near 255 (the identity)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.squeeze = IntegerConv2d(channels, hidden, 3, input_bound=FEATURE_MAX)
        self.excite = IntegerConv2d(hidden, 1, 3, init_gain=0.5)
        with torch.no_grad():
            self.squeeze.bias.fill_(8.0)
            self.excite.bias.fill_(float(FEATURE_MAX))

    def forward(self, x: Tensor) -> Tensor:
        gate = integer_layer(self.excite, integer_layer(self.squeeze, x))
        return floor_divide(x * (gate + 1), torch.full_like(x, FEATURE_MAX + 1))


class GatedFeatures(nn.Module):
    """The two gates of an ACGC context: channel map then spatial map (integers in, integers out)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.channel_map = IntegerChannelReweight(channels, reduction)
        self.spatial_map = IntegerSpatialGate(channels, max(channels // reduction, 4))

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial_map(self.channel_map(x))


class AdaptiveChannelContext(nn.Module):
    """ACCTX, integer: ``gates(QReLU(3x3(QReLU(3x3(y))))) + QReLU(3x3(y))`` over the integer
    context input ``y``; output in ``[0, 510]``, ``out_channels`` wide."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, reduction: int):
        super().__init__()
        self.body = ChannelContext(in_channels, hidden, out_channels)
        self.gates = GatedFeatures(out_channels, reduction)
        self.branch = IntegerConv2d(in_channels, out_channels, 3, input_bound=INPUT_BOUND)
        with torch.no_grad():
            self.branch.bias.fill_(8.0)

    def forward(self, y_int: Tensor) -> Tensor:
        return self.gates(self.body(y_int)) + integer_layer(self.branch, y_int)


class GlobalInterContext(nn.Module):
    """AGCTX, integer: ``gates(QReLU(5x5(attention(y, y))))``, the integer linear attention of every
    position over the whole context input ``y`` (see the module docstring); output in ``[0, 255]``."""

    def __init__(self, in_channels: int, out_channels: int, heads: int, head_dim: int, reduction: int):
        super().__init__()
        self.attention = IntegerLinearAttention(in_channels, in_channels, out_channels, heads, head_dim)
        self.mix = IntegerConv2d(out_channels, out_channels, 5, input_bound=FEATURE_MAX, init_gain=2.0)
        with torch.no_grad():
            self.mix.bias.fill_(8.0)
        self.gates = GatedFeatures(out_channels, reduction)

    def forward(self, y_int: Tensor) -> Tensor:
        return self.gates(integer_layer(self.mix, self.attention(y_int, y_int)))


# -- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class S2LICConfig:
    """The architecture.

    Transforms: widths ``N`` (features) and ``M`` (latent); ``depths`` and ``heads`` of the three
    RSTBs of ``g_a`` (``g_s`` uses them in reverse); ``window``, ``mlp_ratio``, ``cpb_hidden`` (the
    position-bias MLP's width) and ``drop_path`` of the SwinV2 blocks; ``enhance`` = (width, growth)
    of the enhancement blocks. Entropy model: ``num_slices`` equal slices; ``channel_context`` =
    (hidden, out) widths of ACCTX; ``attention`` the output width of AGCTX, ``heads_ctx`` x
    ``head_dim`` its query/key width; ``head_hidden`` the heads' hidden widths; ``lrp`` the LRP's
    hidden widths; ``reduction`` the gates' squeeze ratio; ``anchor_context``: whether a slice's
    non-anchor step sees its decoded anchors (module docstring).
    """

    N: int = 64
    M: int = 96
    depths: tuple[int, int, int] = (1, 1, 1)
    heads: tuple[int, int, int] = (1, 2, 4)
    window: int = 8
    mlp_ratio: float = 2.0
    cpb_hidden: int = 64
    drop_path: float = 0.0
    enhance: tuple[int, int] = (8, 4)
    num_slices: int = 4
    channel_context: tuple[int, int] = (48, 32)
    attention: int = 16
    heads_ctx: int = 2
    head_dim: int = 8
    head_hidden: tuple[int, ...] = (96, 64, 32)
    lrp: tuple[int, int] = (64, 32)
    reduction: int = 4
    anchor_context: bool = True

    def __post_init__(self) -> None:
        if self.num_slices < 1 or self.M % self.num_slices:
            raise ValueError(f"M={self.M} must split into {self.num_slices} equal slices")
        if len(self.depths) != 3 or len(self.heads) != 3:
            raise ValueError("depths and heads give the three RSTBs of g_a")

    @property
    def slice_sizes(self) -> tuple[int, ...]:
        return (self.M // self.num_slices,) * self.num_slices

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


PRESETS = {
    # the paper's size: N=192, M=320, ten slices of 32, RSTB depths 1/2/3 with 4/8/16 heads, window 8,
    # MLP ratio 4, drop-path 0.1, SwinV2's 512-wide position-bias MLP; ACCTX out 64, AGCTX out 32
    # (g_ep's input 2M + 3 x 32 = 736), g_ep 320 -> 256 -> 128, LRP 224 -> 128 (MLIC++'s)
    "reference": S2LICConfig(
        N=192, M=320, depths=(1, 2, 3), heads=(4, 8, 16), window=8, mlp_ratio=4.0, cpb_hidden=512,
        drop_path=0.1, enhance=(64, 32), num_slices=10, channel_context=(128, 64), attention=32,
        heads_ctx=2, head_dim=16, head_hidden=(320, 256, 128), lrp=(224, 128),
    ),
    # at mlic's "tiny" widths (N=64, M=96, 4 slices of 24; its context and head widths), one SwinV2
    # block per stage: decode time comparable at equal width
    "small": S2LICConfig(),
}  # fmt: skip


# -- the ACGC prior --------------------------------------------------------------------------------


class ACGCPrior(nn.Module):
    """The integer parameter function of the sliced checkerboard: ``(step, y_hat, hyper) -> (index, mean)``.

    Per slice ``k``: ACCTX and AGCTX over the context input (the module docstring; none for the
    first slice without ``anchor_context``), and one :class:`~neurocodec.models.mlic.IntegerEntropyHead`
    per step over ``[hyper, ACCTX, AGCTX]``. It reads only what a step may depend on (the
    non-anchors of the slice are masked explicitly), so it is causal whatever ``y_hat`` holds.
    """

    def __init__(self, config: S2LICConfig, num_scales: int):
        super().__init__()
        c = config
        self.anchor_context = c.anchor_context
        self.schedule = ContextSchedule.sliced_checkerboard(c.slice_sizes)
        self.slices = self.schedule.slices
        hidden, ctx_out = c.channel_context
        self.channel_contexts = nn.ModuleDict()
        self.global_contexts = nn.ModuleDict()
        self.anchor_heads = nn.ModuleList()
        self.non_anchor_heads = nn.ModuleList()
        for k, (start, stop) in enumerate(self.slices):
            context_channels = stop if c.anchor_context else start
            features = 2 * c.M
            if context_channels:
                self.channel_contexts[str(k)] = AdaptiveChannelContext(
                    context_channels, hidden, ctx_out, c.reduction
                )
                self.global_contexts[str(k)] = GlobalInterContext(
                    context_channels, c.attention, c.heads_ctx, c.head_dim, c.reduction
                )
                features += ctx_out + c.attention
            for heads in (self.anchor_heads, self.non_anchor_heads):
                heads.append(IntegerEntropyHead(features, stop - start, num_scales, c.head_hidden))
        self._memo: tuple[int, Tensor, list[Tensor]] | None = None  # see _contexts

    @staticmethod
    def hyper_input(index: Tensor, means: Tensor) -> Tensor:
        """The ``hyper`` this prior takes from ``h_s``'s output: :func:`~neurocodec.models.context.hyper_features`."""
        return hyper_features(index, means)

    def context_input(self, step: Step, y_hat: Tensor) -> Tensor:
        """The integer latent the step's contexts read: ``y_hat[<k]``, and with ``anchor_context``
        the slice's anchors (at the non-anchor step; zeros at the anchor step)."""
        earlier = latent_integers(y_hat[:, : step.start])
        if not self.anchor_context:
            return earlier
        own = latent_integers(y_hat[:, step.start : step.stop])
        if step.part == ANCHOR:
            own = torch.zeros_like(own)
        else:
            h, w = y_hat.shape[-2:]
            own = own * checkerboard_mask(h, w, step.anchor_parity, y_hat.device).to(own.dtype)
        return torch.cat([earlier, own], dim=1)

    def _contexts(self, k: int, inputs: Tensor) -> list[Tensor]:
        """ACCTX and AGCTX of slice ``k`` over ``inputs``. Without gradients the result is kept and
        reused when the next call has an equal input (the two steps of a slice without
        ``anchor_context``: a pure memo, compared element by element, never assumed)."""
        memo = self._memo
        if (
            memo is not None
            and memo[0] == k
            and memo[1].shape == inputs.shape
            and memo[1].dtype == inputs.dtype
            and memo[1].device == inputs.device
            and torch.equal(memo[1], inputs)
        ):
            return memo[2]
        contexts = [self.channel_contexts[str(k)](inputs), self.global_contexts[str(k)](inputs)]
        self._memo = None if torch.is_grad_enabled() else (k, inputs.clone(), contexts)
        return contexts

    def forward(self, step: Step, y_hat: Tensor, hyper: Tensor) -> tuple[Tensor, Tensor]:
        k = step.slice
        if not 0 <= k < len(self.slices) or (step.start, step.stop) != self.slices[k]:
            raise ValueError(f"step {step} does not match this prior's slices {list(self.slices)}")
        features = [hyper.to(y_hat.dtype)]
        if str(k) in self.channel_contexts:
            features += self._contexts(k, self.context_input(step, y_hat))
        heads = self.anchor_heads if step.part == ANCHOR else self.non_anchor_heads
        return heads[k](torch.cat(features, dim=1))


# -- the model --------------------------------------------------------------------------------------


def analysis_transform(c: S2LICConfig) -> nn.Sequential:
    """``g_a``: enhancement, then conv5x5 s2, RSTB, conv3x3 s2, RSTB, conv3x3 s2, RSTB, conv3x3 s2 to ``M``."""

    def rstb(i: int) -> RSTB:
        return RSTB(c.N, c.depths[i], c.heads[i], c.window, c.mlp_ratio, c.cpb_hidden, c.drop_path)

    return nn.Sequential(
        EnhanceBlock(*c.enhance),
        conv(3, c.N, 5, 2), rstb(0),
        conv(c.N, c.N, 3, 2), rstb(1),
        conv(c.N, c.N, 3, 2), rstb(2),
        conv(c.N, c.M, 3, 2),
    )  # fmt: skip


def synthesis_transform(c: S2LICConfig) -> nn.Sequential:
    """``g_s``: the mirror of :func:`analysis_transform` (transposed 3x3 s2 convolutions, the RSTBs
    in reverse order, a sub-pixel 3x3 to RGB, then the second enhancement block)."""

    def rstb(i: int) -> RSTB:
        return RSTB(c.N, c.depths[i], c.heads[i], c.window, c.mlp_ratio, c.cpb_hidden, c.drop_path)

    return nn.Sequential(
        deconv(c.M, c.N, 3, 2), rstb(2),
        deconv(c.N, c.N, 3, 2), rstb(1),
        deconv(c.N, c.N, 3, 2), rstb(0),
        subpel_conv3x3(c.N, 3),
        EnhanceBlock(*c.enhance),
    )  # fmt: skip


class S2LIC(CompressionModel):
    """S2LIC (see the module docstring): ``forward(x) -> {"x_hat", "likelihoods": {"y", "z"}}``.

    ``g_a``, ``g_s`` and a :class:`~neurocodec.entropy.latent_codecs.ContextLatentCodec` (MLIC++'s
    ``h_a``, the integer :class:`~neurocodec.models.hyperprior.HyperSynthesis`, the :class:`ACGCPrior`
    and the LRP). Build with a preset name (``"reference"``, ``"small"``) and/or explicit
    :class:`S2LICConfig` fields, e.g. ``S2LIC("small", anchor_context=False)`` (unspecified fields
    take the preset's, or the small preset's, values).
    """

    downsampling = 64  # inputs are padded to a multiple of this
    latent_stride = 16  # y is at 1/16 of the (padded) image, z at 1/64

    def __init__(self, preset: str | None = None, scale_table: Sequence[float] | None = None, **arch):
        super().__init__()
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown S2LIC preset {preset!r} (known: {', '.join(PRESETS)})")
        base = asdict(PRESETS[preset or "small"])
        unknown = set(arch) - set(base)
        if unknown:
            raise TypeError(f"unknown S2LIC architecture keys: {', '.join(sorted(unknown))}")
        base.update({k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()})
        if base["anchor_context"] not in (0, 1):  # --arch gives numbers: anchor_context=0
            raise ValueError(f"anchor_context is a flag (0 or 1), not {base['anchor_context']!r}")
        base["anchor_context"] = bool(base["anchor_context"])
        self.config = c = S2LICConfig(**base)
        self.N, self.M = c.N, c.M
        self.g_a = analysis_transform(c)
        self.g_s = synthesis_transform(c)
        num_scales = len(tables.gaussian_scale_table() if scale_table is None else scale_table)
        context_model = ACGCPrior(c, num_scales)
        self.latent_codec = ContextLatentCodec(
            mlic_hyper_analysis(c.M, c.N),
            HyperSynthesis(c.N, c.M, num_scales=num_scales, mean_bits=MEAN_BITS),
            context_model,
            hyper_channels=c.N,
            scale_table=scale_table,
            residual_prediction=LatentResidualPrediction(c, context_model.slices),
        )

    def forward(self, x: Tensor) -> dict:
        """Training pass: reconstruction and the likelihoods of ``y`` and ``z``."""
        y_hat, likelihoods = self.latent_codec(self.g_a(x))
        return {"x_hat": self.g_s(y_hat), "likelihoods": likelihoods}
