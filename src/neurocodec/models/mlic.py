"""MLICv2 (Jiang et al., "MLICv2: Enhanced Multi-Reference Entropy Modeling for Learned Image
Compression", 2025), written from the paper's description and MLIC++'s design; no MLICv2 code
exists, and none of MLIC++'s code is used here.

**Transforms (float).** ``g_a`` / ``g_s`` follow MLIC++'s layer list (four stride-2 stages,
residual blocks with GDN / IGDN, sub-pixel upsampling) with MLICv2's *simple token mixing*
(:class:`STMBlock`, MetaFormer-style) in place of the plain residual blocks. ``h_a`` is float;
only the pixels the synthesis produces may differ between devices, never the bits.

**Prior path (integer).** Everything that selects a CDF — the hyper-synthesis, every context
network and the entropy-parameter heads — is an integer network (:mod:`neurocodec.models.integer`):
exact integer arithmetic in float64 at coding time, the same function in float32 with
straight-through rounding in training. The latent is coded by the schedule helper's
:meth:`~neurocodec.entropy.models.schedules.ContextSchedule.sliced_checkerboard` (channel slices x
two-pass checkerboard, anchors at ``(i + j) % 2 == ANCHOR_PARITY``, the format's pinned parity;
MLIC's own code puts anchors on odd positions, ours is the project-wide constant).
:class:`MultiReferencePrior` is its parameter function. For slice ``k``:

- anchors: hyper-prior features, the **channel context** (integer 3x3 convs over ``y_hat[<k]``)
  and the **global inter-slice context** (integer linear attention over ``y_hat[<k]``);
- non-anchors: the same, plus the **local context** (a 5x5 checkerboard convolution over the
  slice's decoded anchors; MLIC++ uses a 5x5 window attention there — a convolution is the
  integer-exact form of a fixed-window attention with learned relative-position weights) and
  the **global intra-slice context**: linear attention whose queries and keys come from the
  previous slice ``y_hat[k-1]`` and whose values are slice ``k``'s anchors. For slice 0 there is
  no previous slice: MLICv2's **hyperprior-guided global correlation prediction** (HGCP) takes
  the queries and keys from the hyper-prior features instead.
- every context passes through **channel reweighting** (:class:`IntegerChannelReweight`, an
  integer squeeze-and-excitation gate) before the head.

The attention is **integer linear attention** (:class:`IntegerLinearAttention`): ReLU-like
feature maps (integer QReLU outputs in [0, 255]), ``out = phi(Q) (phi(K)^T V) / (phi(Q) sum phi(K))``
with an exact integer floor division. Softmax cannot be computed exactly, linear attention can
(MLIC++'s global contexts are linear attention already).

**Positional embedding: integer 2-D RoPE.** MLICv2 replaces relative-position bias by a 2-D
rotary embedding. Ours (:class:`IntegerRoPE2d`) rotates pairs of query/key channels by angles
``2 pi * row / period`` (first half of a head) and ``2 pi * col / period`` (second half), with
power-of-two periods 4, 16, 64, ... (the geometric frequency ladder of RoPE, made periodic so
that a small table covers every position). ``cos`` and ``sin`` are stored as integers
``round(2^7 cos)`` in a persistent buffer — built once, shipped with the weights, identical on
every device — and the rotated features are ``floor(.. / 2^7)``. As in RoFormer's linear-attention
form, the numerator uses the rotated features and the normalizer the unrotated ones. The paper's
``theta`` is learnable; ours is a fixed table (a learned angle would need its own integer form).

**Latent residual prediction** (MLIC++'s LRP, ``0.5 tanh`` of a small conv net over the hyper
means and the decoded slices up to ``k``) refines the latent for the synthesis only, after the
latent is decoded: it is float and never feeds a context (MLIC++ feeds it to later slices' contexts;
with an integer prior path it would have to be integer, and the contexts already see the slices).

Encoder-side stochastic Gumbel annealing (MLICv2+) is :mod:`neurocodec.codecs.adapt`, through
:meth:`MLICv2.latent_forward`. Not built (yet): "selective compression with guided optimization"
(skipping elements near their mean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from neurocodec.entropy import tables
from neurocodec.entropy.latent_codecs import ContextLatentCodec
from neurocodec.entropy.models.base import Mode
from neurocodec.entropy.models.schedules import ANCHOR, ContextSchedule, Step, checkerboard_mask
from neurocodec.models.base import CompressionModel
from neurocodec.models.context import (
    LATENT_BOUND,
    MEAN_BITS,
    CheckerboardConv2d,
    EntropyParameters,
    hyper_features,
    latent_integers,
)
from neurocodec.models.hyperprior import HyperSynthesis
from neurocodec.models.integer import EXACT_LIMIT, IntegerConv2d, floor_ste
from neurocodec.models.layers import GDN, conv

__all__ = [
    "PRESETS",
    "IntegerChannelReweight",
    "IntegerLinearAttention",
    "IntegerRoPE2d",
    "MLICConfig",
    "MLICv2",
    "MultiReferencePrior",
    "STMBlock",
    "floor_divide",
]

FEATURE_MAX = 255  # hidden integer activations (QReLU) lie in [0, FEATURE_MAX]
INPUT_BOUND = LATENT_BOUND * 2**MEAN_BITS  # latents and hyper means in grid units, as context.py


# -- exact integer helpers ----------------------------------------------------------------------


def floor_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``floor(numerator / denominator)``: exact at coding time, straight-through in training.

    float64 (coding): both hold integers below 2^53, converted exactly to int64 and divided
    with integer floor division — exact on every device. float32 (training): the float quotient,
    floored straight-through.
    """
    if numerator.dtype == torch.float64:
        q = torch.div(numerator.to(torch.int64), denominator.to(torch.int64), rounding_mode="floor")
        return q.to(torch.float64)
    return floor_ste(numerator / denominator)


def integer_layer(layer: IntegerConv2d, x: Tensor) -> Tensor:
    """``layer(x)``; at coding time (float64 integers) on the layer's int8 path, which computes
    the same integers as the float64 reference path, bit for bit, faster
    (:meth:`~neurocodec.models.integer.IntegerConv2d.forward_integer`)."""
    if x.dtype == torch.float64 and not torch.is_grad_enabled() and layer.int8_supported(x.device):
        return layer.forward_integer(x.to(torch.int64)).to(torch.float64)
    return layer(x)


# -- float transforms ---------------------------------------------------------------------------


def subpel_conv3x3(in_channels: int, out_channels: int, factor: int = 2) -> nn.Sequential:
    """A 3x3 convolution then a pixel shuffle: upsampling by ``factor`` without checkerboard artifacts."""
    return nn.Sequential(conv(in_channels, out_channels * factor**2, 3, 1), nn.PixelShuffle(factor))


class LayerNorm2d(nn.GroupNorm):
    """Layer normalization of a feature map over its channels and positions (GroupNorm with one
    group: MetaFormer's normalization for convolutional token mixers)."""

    def __init__(self, channels: int):
        super().__init__(1, channels)


class ResidualBlockWithStride(nn.Module):
    """MLIC++'s downsampling block: conv3x3 s2, GELU, conv3x3, GDN, plus a strided 1x1 skip."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv(in_channels, out_channels, 3, 2),
            nn.GELU(),
            conv(out_channels, out_channels, 3, 1),
            GDN(out_channels),
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class ResidualBlockUpsample(nn.Module):
    """MLIC++'s upsampling block: sub-pixel conv x2, GELU, conv3x3, IGDN, plus a sub-pixel skip."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            subpel_conv3x3(in_channels, out_channels),
            nn.GELU(),
            conv(out_channels, out_channels, 3, 1),
            GDN(out_channels, inverse=True),
        )
        self.skip = subpel_conv3x3(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class STMBlock(nn.Module):
    """MLICv2's simple token mixing block (MetaFormer-style), gated.

    ``x + mix(x) * gate(x)`` with ``mix = LN -> depthwise residual block -> DW 5x5 -> 1x1`` (the
    token mixer: depthwise convolutions mix positions, the 1x1 mixes channels) and
    ``gate = sigmoid(1x1 -> GELU -> DW 3x3 -> GELU -> 1x1)`` of the normalized input. The layer
    list is our reading of the paper's description (no code is published).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = LayerNorm2d(channels)
        self.depth_rb = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
        )
        self.mix = nn.Sequential(
            nn.Conv2d(channels, channels, 5, padding=2, groups=channels), nn.Conv2d(channels, channels, 1)
        )
        self.gate = nn.Sequential(
            nn.Conv2d(channels, channels, 1),
            nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
            nn.GELU(),
            nn.Conv2d(channels, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        t = self.norm(x)
        return x + self.mix(t + self.depth_rb(t)) * self.gate(t)


def analysis_transform(N: int, M: int) -> nn.Sequential:
    """``g_a``: image -> latent at 1/16 resolution, ``M`` channels."""
    return nn.Sequential(
        ResidualBlockWithStride(3, N), STMBlock(N),
        ResidualBlockWithStride(N, N), STMBlock(N),
        ResidualBlockWithStride(N, N), STMBlock(N),
        conv(N, M, 3, 2),
    )  # fmt: skip


def synthesis_transform(N: int, M: int) -> nn.Sequential:
    """``g_s``: latent -> image, the mirror of :func:`analysis_transform`."""
    return nn.Sequential(
        STMBlock(M),
        ResidualBlockUpsample(M, N), STMBlock(N),
        ResidualBlockUpsample(N, N), STMBlock(N),
        ResidualBlockUpsample(N, N), STMBlock(N),
        subpel_conv3x3(N, 3),
    )  # fmt: skip


def mlic_hyper_analysis(M: int, N: int) -> nn.Sequential:
    """``h_a`` (MLIC++'s): ``M`` latent channels -> ``N`` at 1/4 of the resolution (five 3x3 convs
    with GELU, two of stride 2: ``z`` is ``N`` x 1/64 of the image)."""
    return nn.Sequential(
        conv(M, N, 3, 1), nn.GELU(), conv(N, N, 3, 1), nn.GELU(), conv(N, N, 3, 2),
        nn.GELU(), conv(N, N, 3, 1), nn.GELU(), conv(N, N, 3, 2),
    )  # fmt: skip


# -- integer context pieces ---------------------------------------------------------------------


class IntegerChannelReweight(nn.Module):
    """Integer channel attention (squeeze-and-excitation): MLICv2's channel reweighting of a context.

    Input: integer features in ``[0, 255]``. ``pooled = floor(mean over positions)`` (exact integer
    division), ``gate = QReLU(1x1(QReLU(1x1(pooled))))`` in ``[0, 255]``, and
    ``out = floor(x * (gate + 1) / 256)``: a per-image, per-channel weight in ``(0, 1]`` applied with
    integers only (``x * (gate + 1) <= 2^16``). The gate starts near 1 (identity).
    """

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.squeeze = IntegerConv2d(channels, hidden, 1, input_bound=FEATURE_MAX)
        self.excite = IntegerConv2d(hidden, channels, 1, init_gain=0.5)
        with torch.no_grad():
            self.squeeze.bias.fill_(8.0)
            self.excite.bias.fill_(float(FEATURE_MAX))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        total = x.sum(dim=(2, 3), keepdim=True)
        pooled = floor_divide(total, torch.full_like(total, h * w))
        gate = self.excite(self.squeeze(pooled))
        return floor_divide(x * (gate + 1), torch.full_like(x, FEATURE_MAX + 1))


class IntegerRoPE2d(nn.Module):
    """2-D rotary position embedding with integer tables (see the module docstring).

    ``head_dim`` channels per head: the first half rotated by the row, the second by the column,
    in pairs of channels with periods ``4, 16, 64, ...`` positions. ``cos``/``sin`` are stored as
    ``round(2^7 cos)``, ``round(2^7 sin)`` in the persistent buffer ``table`` (pairs, period, 2),
    computed once with Python's scalar ``math`` and shipped with the weights.
    """

    table_bits = 7

    def __init__(self, head_dim: int):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs a head dimension divisible by 4, got {head_dim}")
        self.head_dim = head_dim
        pairs = head_dim // 4  # per axis
        self.periods = tuple(4 ** (p + 1) for p in range(pairs))
        longest = self.periods[-1]
        table = torch.zeros(pairs, longest, 2, dtype=torch.int32)
        for p, period in enumerate(self.periods):
            for t in range(longest):
                angle = 2 * math.pi * (t % period) / period
                table[p, t, 0] = round(2**self.table_bits * math.cos(angle))
                table[p, t, 1] = round(2**self.table_bits * math.sin(angle))
        self.register_buffer("table", table)

    def _cos_sin(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(pairs, len(positions)) integer cos and sin of each pair's angle at each position."""
        rows = [self.table[p, positions % period] for p, period in enumerate(self.periods)]
        cs = torch.stack(rows).to(dtype)
        return cs[..., 0], cs[..., 1]

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (B, heads, head_dim, H, W) integer features -> rotated integer features."""
        b, nh, d, h, w = x.shape
        pairs = d // 4
        out = []
        for axis, (length, view) in enumerate(((h, (1, 1, pairs, h, 1)), (w, (1, 1, pairs, 1, w)))):
            cos, sin = self._cos_sin(torch.arange(length, device=x.device), x.dtype)
            cos, sin = cos.reshape(view), sin.reshape(view)
            part = x[:, :, axis * (d // 2) : (axis + 1) * (d // 2)]
            a, c = part[:, :, 0::2], part[:, :, 1::2]
            scale = 2.0**-self.table_bits
            ra = floor_ste((a * cos - c * sin) * scale)
            rc = floor_ste((a * sin + c * cos) * scale)
            out.append(torch.stack((ra, rc), dim=3).reshape(b, nh, d // 2, h, w))
        return torch.cat(out, dim=2)


class IntegerLinearAttention(nn.Module):
    """Integer linear attention with 2-D RoPE: a global context computed exactly.

    Queries and keys come from ``guide`` (integer features), values from ``source``; each is a
    1x1 integer projection with a QReLU (the feature map ``phi``, values in ``[0, 255]``). With
    ``Qr``, ``Kr`` the RoPE-rotated queries and keys, per head::

        out = clamp(floor((Qr . sum_t Kr_t V_t^T) / max(Q . sum_t K_t, 1)), -255, 255)

    then a 1x1 integer projection with QReLU. ``token_mask`` (bool H x W) restricts the sum to some
    positions (the anchors, for the intra-slice context). Cost O(H W d^2), linear in the tokens.

    **Exactness.** ``|Kr|, |Qr| <= 510``, ``V <= 255``: the numerator is below
    ``T * head_dim * 510^2 * 255`` and the normalizer below ``T * head_dim * 255^2`` for ``T``
    tokens; :meth:`check_tokens` refuses a latent for which they could reach 2^53 (with
    ``head_dim = 16``, beyond 8.5 M tokens: the container's largest image has fewer than 2^22).
    Every matmul therefore sums integers exactly in float64, and the division is an int64 floor.
    """

    def __init__(
        self, guide_channels: int, source_channels: int, out_channels: int, heads: int, head_dim: int
    ):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.query = IntegerConv2d(guide_channels, inner, 1, input_bound=INPUT_BOUND, init_gain=4.0)
        self.key = IntegerConv2d(guide_channels, inner, 1, input_bound=INPUT_BOUND, init_gain=4.0)
        self.value = IntegerConv2d(source_channels, inner, 1, input_bound=INPUT_BOUND, init_gain=4.0)
        self.out = IntegerConv2d(inner, out_channels, 1, input_bound=FEATURE_MAX, init_gain=2.0)
        for layer in (self.query, self.key, self.value, self.out):
            with torch.no_grad():
                layer.bias.fill_(8.0)
        self.rope = IntegerRoPE2d(head_dim)

    def token_limit(self) -> int:
        """The most tokens for which every accumulator stays below 2^53 (see the class docstring)."""
        rotated = 2 * FEATURE_MAX  # |a cos - c sin| <= (a + c) 2^7 / 2^7 for a, c in [0, 255]
        return EXACT_LIMIT // (self.head_dim * rotated * rotated * FEATURE_MAX)

    def check_tokens(self, tokens: int) -> None:
        if tokens > self.token_limit():
            raise ValueError(
                f"{tokens} tokens exceed the exact integer attention's limit of {self.token_limit()}"
            )

    def forward(self, guide: Tensor, source: Tensor, token_mask: Tensor | None = None) -> Tensor:
        b, _, h, w = guide.shape
        self.check_tokens(h * w)
        shape = (b, self.heads, self.head_dim, h, w)
        q = integer_layer(self.query, guide).reshape(shape)
        k = integer_layer(self.key, guide).reshape(shape)
        v = integer_layer(self.value, source).reshape(shape)
        if token_mask is not None:
            keep = token_mask.to(k.dtype)
            k, v = k * keep, v * keep
        qr, kr = self.rope(q), self.rope(k)
        flat = (b, self.heads, self.head_dim, h * w)
        q, k, v, qr, kr = (t.reshape(flat) for t in (q, k, v, qr, kr))
        kv = kr @ v.transpose(2, 3)  # (B, heads, d, d): sum_t Kr_t V_t^T
        numerator = kv.transpose(2, 3) @ qr  # (B, heads, d, T)
        normalizer = (k.sum(dim=3, keepdim=True) * q).sum(dim=2, keepdim=True)  # (B, heads, 1, T)
        attended = floor_divide(numerator, torch.clamp(normalizer, min=1).expand_as(numerator))
        attended = torch.clamp(attended, -FEATURE_MAX, FEATURE_MAX)
        return integer_layer(self.out, attended.reshape(b, self.heads * self.head_dim, h, w))


class IntegerEntropyHead(nn.Module):
    """Integer 1x1 head: features -> (table index, mean) of a slice's channels.

    ``hidden`` widths of 1x1 QReLU layers (MLIC++'s ``EntropyParameters`` has three: 320, 256,
    128), the last of them inside the schedule helper's :class:`EntropyParameters` output stage.
    """

    def __init__(self, in_channels: int, out_channels: int, num_scales: int, hidden: Sequence[int]):
        super().__init__()
        if not hidden:
            raise ValueError("an entropy head needs at least one hidden layer")
        layers = []
        width, bound = in_channels, INPUT_BOUND
        for h in hidden[:-1]:
            layer = IntegerConv2d(width, h, 1, input_bound=bound)
            with torch.no_grad():
                layer.bias.fill_(8.0)
            layers.append(layer)
            width, bound = h, FEATURE_MAX
        self.trunk = nn.Sequential(*layers)
        self.params = EntropyParameters(width, out_channels, num_scales, hidden[-1])

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        for layer in self.trunk:
            features = integer_layer(layer, features)
        return self.params(features)


class ChannelContext(nn.Module):
    """Integer channel context over the decoded slices: 3x3 conv, QReLU, 3x3 conv, QReLU."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int):
        super().__init__()
        self.first = IntegerConv2d(in_channels, hidden, 3, input_bound=INPUT_BOUND)
        self.second = IntegerConv2d(hidden, out_channels, 3, init_gain=2.0)
        with torch.no_grad():
            self.first.bias.fill_(8.0)
            self.second.bias.fill_(8.0)

    def forward(self, y_int: Tensor) -> Tensor:
        return integer_layer(self.second, integer_layer(self.first, y_int))


# -- the multi-reference prior --------------------------------------------------------------------


@dataclass(frozen=True)
class MLICConfig:
    """The architecture: transform widths ``N`` and latent ``M``, slices, context widths.

    ``channel_context``: (hidden, out) widths of the channel context; ``attention``: output width
    of the local and the two global contexts; ``heads`` x ``head_dim``: the attention's query/key
    width; ``head_hidden``: the entropy heads' hidden widths; ``lrp``: the LRP's hidden widths.
    """

    N: int = 96
    M: int = 192
    num_slices: int = 4
    channel_context: tuple[int, int] = (96, 64)
    attention: int = 32
    heads: int = 2
    head_dim: int = 16
    head_hidden: tuple[int, ...] = (192, 128, 64)
    lrp: tuple[int, int] = (128, 64)
    reweight_reduction: int = 4

    def __post_init__(self) -> None:
        if self.num_slices < 1 or self.M % self.num_slices:
            raise ValueError(f"M={self.M} must split into {self.num_slices} equal slices")

    @property
    def slice_sizes(self) -> tuple[int, ...]:
        return (self.M // self.num_slices,) * self.num_slices

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


PRESETS = {
    # MLIC++'s sizes: N=192, M=320, ten slices of 32; contexts and heads at MLIC++'s widths
    "paper": MLICConfig(
        N=192, M=320, num_slices=10, channel_context=(192, 128), attention=64, heads=4, head_dim=16,
        head_hidden=(320, 256, 128), lrp=(224, 128),
    ),
    # every feature of "paper", narrower (N 192 -> 96, M 320 -> 192, contexts and heads about
    # half as wide), four slices of 48: its CPU decode is what the speed target is about
    "small": MLICConfig(),
    # every feature again, at the hyperprior CPU preview's transform widths (N=64, M=96) and
    # about half the small preset's context widths: the size that trains on 2 CPU cores
    "tiny": MLICConfig(
        N=64, M=96, num_slices=4, channel_context=(48, 32), attention=16, heads=2, head_dim=8,
        head_hidden=(96, 64, 32), lrp=(64, 32),
    ),
}  # fmt: skip


class MultiReferencePrior(nn.Module):
    """The integer parameter function of the sliced checkerboard: ``(step, y_hat, hyper) -> (index, mean)``.

    See the module docstring for the contexts each step uses. It reads only what the step may
    depend on — ``y_hat`` of the earlier slices, and at a non-anchor step the slice's anchors
    (masked explicitly) — so it is causal whatever the other elements of ``y_hat`` hold.
    ``hyper`` is :func:`~neurocodec.models.context.hyper_features` of the integer hyper-synthesis.
    """

    def __init__(self, config: MLICConfig, num_scales: int):
        super().__init__()
        c = config
        self.schedule = ContextSchedule.sliced_checkerboard(c.slice_sizes)
        self.slices = self.schedule.slices
        hyper_channels = 2 * c.M
        ctx_out = c.channel_context[1]

        def reweight(channels: int) -> IntegerChannelReweight:
            return IntegerChannelReweight(channels, c.reweight_reduction)

        self.channel_context = nn.ModuleDict()
        self.inter_context = nn.ModuleDict()
        self.local_context = nn.ModuleList()
        self.intra_context = nn.ModuleList()
        self.reweights = nn.ModuleDict()
        self.anchor_heads = nn.ModuleList()
        self.non_anchor_heads = nn.ModuleList()
        for k, (start, stop) in enumerate(self.slices):
            size = stop - start
            anchor_features = hyper_channels
            if k > 0:
                self.channel_context[str(k)] = ChannelContext(start, c.channel_context[0], ctx_out)
                self.inter_context[str(k)] = IntegerLinearAttention(
                    start, start, c.attention, c.heads, c.head_dim
                )
                self.reweights[f"channel{k}"] = reweight(ctx_out)
                self.reweights[f"inter{k}"] = reweight(c.attention)
                anchor_features += ctx_out + c.attention
            local = CheckerboardConv2d(size, c.attention, input_bound=INPUT_BOUND)
            with torch.no_grad():
                local.bias.fill_(8.0)  # QReLUs start inside [0, 255], as every hidden integer layer here
            self.local_context.append(local)
            # slice 0: HGCP, queries and keys from the hyper-prior; later slices: from slice k - 1
            guide = hyper_channels if k == 0 else self.slices[k - 1][1] - self.slices[k - 1][0]
            self.intra_context.append(IntegerLinearAttention(guide, size, c.attention, c.heads, c.head_dim))
            self.reweights[f"local{k}"] = reweight(c.attention)
            self.reweights[f"intra{k}"] = reweight(c.attention)
            self.anchor_heads.append(IntegerEntropyHead(anchor_features, size, num_scales, c.head_hidden))
            self.non_anchor_heads.append(
                IntegerEntropyHead(anchor_features + 2 * c.attention, size, num_scales, c.head_hidden)
            )
        self._memo: tuple[int, Tensor, list[Tensor]] | None = None  # see _earlier_slices_context

    def _earlier_slices_context(self, k: int, decoded: Tensor) -> list[Tensor]:
        """Slice ``k``'s channel and inter-slice contexts of the decoded slices ``< k``.

        The anchor and the non-anchor step of a slice see the same decoded slices, so without
        gradients the result is kept for the next call and reused when its input is equal
        (a pure memo: compared element by element, never assumed).
        """
        memo = self._memo
        if (
            memo is not None
            and memo[0] == k
            and memo[1].shape == decoded.shape
            and memo[1].dtype == decoded.dtype
            and memo[1].device == decoded.device
            and torch.equal(memo[1], decoded)
        ):
            return memo[2]
        contexts = [
            self.reweights[f"channel{k}"](self.channel_context[str(k)](decoded)),
            self.reweights[f"inter{k}"](self.inter_context[str(k)](decoded, decoded)),
        ]
        self._memo = None if torch.is_grad_enabled() else (k, decoded.clone(), contexts)
        return contexts

    @staticmethod
    def hyper_input(index: Tensor, means: Tensor) -> Tensor:
        """The ``hyper`` this prior takes from ``h_s``'s output: :func:`~neurocodec.models.context.hyper_features`."""
        return hyper_features(index, means)

    def forward(self, step: Step, y_hat: Tensor, hyper: Tensor) -> tuple[Tensor, Tensor]:
        k = step.slice
        if not 0 <= k < len(self.slices) or (step.start, step.stop) != self.slices[k]:
            raise ValueError(f"step {step} does not match this prior's slices {list(self.slices)}")
        hyper = hyper.to(y_hat.dtype)
        features = [hyper]
        if k > 0:
            features += self._earlier_slices_context(k, latent_integers(y_hat[:, : step.start]))
        if step.part == ANCHOR:
            return self.anchor_heads[k](torch.cat(features, dim=1))
        h, w = y_hat.shape[-2:]
        anchors = checkerboard_mask(h, w, step.anchor_parity, y_hat.device)
        own = latent_integers(y_hat[:, step.start : step.stop]) * anchors.to(y_hat.dtype)
        features.append(self.reweights[f"local{k}"](integer_layer(self.local_context[k], own)))
        if k == 0:
            guide = hyper  # HGCP: the hyper-prior predicts slice 0's global correlation
        else:
            previous_start, previous_stop = self.slices[k - 1]
            guide = latent_integers(y_hat[:, previous_start:previous_stop])
        features.append(self.reweights[f"intra{k}"](self.intra_context[k](guide, own, anchors)))
        return self.non_anchor_heads[k](torch.cat(features, dim=1))


class LatentResidualPrediction(nn.Module):
    """MLIC++'s LRP, float, for the synthesis only: slice ``k`` += ``0.5 tanh(net_k([means, y_hat[<=k]]))``."""

    def __init__(self, config: MLICConfig, slices: tuple[tuple[int, int], ...]):
        super().__init__()
        h1, h2 = config.lrp
        self.slices = slices
        self.nets = nn.ModuleList(
            nn.Sequential(
                conv(config.M + stop, h1, 3, 1),
                nn.GELU(),
                conv(h1, h2, 3, 1),
                nn.GELU(),
                conv(h2, stop - start, 3, 1),
            )
            for start, stop in slices
        )

    def forward(self, y_hat: Tensor, means: Tensor) -> Tensor:
        out = []
        for net, (start, stop) in zip(self.nets, self.slices, strict=True):
            residual = 0.5 * torch.tanh(net(torch.cat([means, y_hat[:, :stop]], dim=1)))
            out.append(y_hat[:, start:stop] + residual)
        return torch.cat(out, dim=1)


class MLICv2(CompressionModel):
    """MLICv2 (see the module docstring): ``forward(x) -> {"x_hat", "likelihoods": {"y", "z"}}``.

    The transforms ``g_a``, ``g_s`` and a :class:`~neurocodec.entropy.latent_codecs.ContextLatentCodec`
    (MLIC++'s ``h_a``, the integer :class:`HyperSynthesis`, the :class:`MultiReferencePrior` as its
    context model and the LRP as its residual prediction).

    Build with a preset name (``"paper"``, ``"small"``) and/or explicit :class:`MLICConfig`
    fields, e.g. ``MLICv2("small")``, ``MLICv2(N=16, M=24, num_slices=3)`` (unspecified fields take
    the preset's, or the small preset's, values).
    """

    downsampling = 64  # inputs are padded to a multiple of this
    latent_stride = 16  # y is at 1/16 of the (padded) image, z at 1/64
    # 0.1.0's layout held the latent codec's modules at the top level
    renamed_prefixes = (
        ("h_a.", "latent_codec.h_a."),
        ("h_s.", "latent_codec.h_s."),
        ("entropy_bottleneck.", "latent_codec.entropy_bottleneck."),
        ("gaussian.", "latent_codec.gaussian_conditional."),
        ("prior.", "latent_codec.context_model."),
        ("lrp.", "latent_codec.residual_prediction."),
    )

    def __init__(self, preset: str | None = None, scale_table=None, **arch):
        super().__init__()
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown MLICv2 preset {preset!r} (known: {', '.join(PRESETS)})")
        base = asdict(PRESETS[preset or "small"])
        unknown = set(arch) - set(base)
        if unknown:
            raise TypeError(f"unknown MLICv2 architecture keys: {', '.join(sorted(unknown))}")
        base.update({k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()})
        self.config = c = MLICConfig(**base)
        self.N, self.M = c.N, c.M
        self.g_a = analysis_transform(c.N, c.M)
        self.g_s = synthesis_transform(c.N, c.M)
        num_scales = len(tables.gaussian_scale_table() if scale_table is None else scale_table)
        context_model = MultiReferencePrior(c, num_scales)
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
        return self.latent_forward(self.g_a(x))

    def latent_forward(
        self, y: Tensor, side: dict[str, Tensor] | None = None, mode: Mode | None = None
    ) -> dict:
        """:meth:`forward` from the latent ``y`` (and its side latents, default derived from ``y``)
        on: ``{"x_hat", "likelihoods"}``; ``mode`` as in :meth:`ContextLatentCodec.forward`."""
        y_hat, likelihoods = self.latent_codec(y, side, mode)
        return {"x_hat": self.g_s(y_hat), "likelihoods": likelihoods}
