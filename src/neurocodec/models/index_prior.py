"""A masked integer transformer over a vector-quantizer index map: the distributions of the indices,
in a few parallel passes, identical on every device; and the restoration of lost indices.

**Passes.** The index map is coded in :data:`PASSES` passes over the 2x2 phases of its
positions, in the order :data:`PASS_PHASES` (``(row % 2, column % 2)``: the even-even positions,
then the odd-odd ones, then the two mixed phases). For pass ``p`` the transformer sees the indices
of the earlier passes and a *mask* token everywhere else, and gives every position of pass ``p``
a distribution over the ``K`` indices (MaskGIT's masked prediction, with a fixed order, as in
checkerboard context models). Positions outside the image (padding to whole windows) hold a
*pad* token that no query attends to. A lost index can be predicted the same way, with its
position masked (:meth:`IndexTransformer.restore`); with the shipped preview's prior (900 steps
of training) that restored images worse than the mean of the neighbours' codewords, so the
decoder uses the mean (:func:`neurocodec.entropy.latent_codecs.vector.restored`) for now.

**Network.** Token embedding, ``layers`` pre-norm blocks (RMS norm, multi-head self-attention
within non-overlapping ``window`` x ``window`` windows with a learned relative-position bias per
head, RMS norm, ReLU MLP), a final norm and a linear head to ``K`` logits.

**Integer arithmetic.** Every tensor of the network holds integers: activations, weights and
biases in units of ``2^-ACT_BITS`` (weights rounded from the float parameters, clamped to
``+-WEIGHT_MAX``), every layer output clamped to ``+-LIMIT``. The operations are matrix
products and sums of integers, ``floor`` of a quotient of integers, the square root's ``floor``
and lookups in :func:`exp2_table`, a table of integers stored with the weights:

- the softmax of the attention and of the output is base 2 on a grid of ``1/EXP_STEPS``: a
  score ``s`` (units ``2^-ACT_BITS`` of a bit) against the largest ``m`` gets the weight
  ``table[floor((m - s) / 2^(ACT_BITS - log2 EXP_STEPS))]``, ``table[t] = round(2^(EXP_TOP - t /
  EXP_STEPS))`` (0 past its end);
- attention outputs are ``floor(sum_j e_j v_j / sum_j e_j)``, norms ``floor(x g / r)`` with ``r``
  the integer square root of the mean square, plus one.

At coding time the network runs in float64 on integer values. :func:`check_bounds` keeps every
partial sum and every numerator below 2^53, where float64 addition and multiplication of
integers are exact in any order (so any matrix-product algorithm on any device gives the same
integers), and the float64 quotient ``a / b`` of integers with ``|a| < 2^53`` is correctly
rounded, so its ``floor`` is the exact integer ``floor`` (a non-integer quotient is at least
``1/b`` from an integer, more than its rounding error ``|a/b| 2^-53``); the same holds for the
correctly rounded square root of an integer below 2^52. The output distribution becomes the
16-bit frequencies of the coder in int64 (:meth:`IndexTransformer.cdfs`). Training runs the
same formulas in float32 with straight-through ``floor`` and ``round`` and ``2^x`` in place of the
table (differentiable), so the trained network is the coded one up to float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocodec.entropy import tables
from neurocodec.models.integer import floor_ste, round_ste

__all__ = ["PASSES", "PASS_PHASES", "IndexTransformer", "check_bounds", "exp2_table", "pass_masks"]

ACT_BITS = 8  # activations, weights and biases in units of 2^-ACT_BITS
LIMIT = 2**15  # |every layer output| (units): +-128
WEIGHT_MAX = 2**12  # |integer weight|: +-16 in real units
EXP_STEPS = 16  # the softmax grid: weights 2^(-t / EXP_STEPS)
EXP_TOP = 20  # the largest weight is 2^EXP_TOP
EXP_LENGTH = EXP_TOP * EXP_STEPS + 1  # table entries (the last is 1); 0 beyond
PASS_PHASES = ((0, 0), (1, 1), (0, 1), (1, 0))
PASSES = len(PASS_PHASES)
EXACT = 2.0**53


def exp2_table() -> Tensor:
    """``round(2^(EXP_TOP - t / EXP_STEPS))`` for ``t`` in ``[0, EXP_LENGTH)``, int64."""
    return torch.tensor(
        [round(2.0 ** (EXP_TOP - t / EXP_STEPS)) for t in range(EXP_LENGTH)], dtype=torch.int64
    )


def pass_masks(height: int, width: int, device=None) -> Tensor:
    """``(PASSES, height, width)`` booleans: the positions each pass codes."""
    rows = torch.arange(height, device=device)[:, None] % 2
    cols = torch.arange(width, device=device)[None, :] % 2
    return torch.stack([(rows == r) & (cols == c) for r, c in PASS_PHASES])


def _floor(x: Tensor) -> Tensor:
    return floor_ste(x) if x.requires_grad else torch.floor(x)


def _div_floor(a: Tensor, b: Tensor | int) -> Tensor:
    """``floor(a / b)`` of integers: exact on int64 tensors, and on float64 ones below 2^53."""
    if not a.dtype.is_floating_point:
        return torch.div(a, b, rounding_mode="floor")
    return _floor(a / b)


def _isqrt(x: Tensor) -> Tensor:
    """``floor(sqrt(x))`` of nonnegative integers (differentiable ``sqrt`` in training)."""
    if not x.dtype.is_floating_point:
        r = torch.sqrt(x.double()).long()
        r = r - (r * r > x).long()
        return r + ((r + 1) * (r + 1) <= x).long()
    return _floor(torch.sqrt(x + 1e-6)) if x.requires_grad else torch.floor(torch.sqrt(x))


def _integer(parameter: Tensor, scale: int, bound: int, like: Tensor) -> Tensor:
    """A parameter as integers in units of ``1/scale``, clamped to ``+-bound``, in ``like``'s dtype."""
    value = round_ste(parameter * scale).clamp(-bound, bound)
    return value if like.dtype.is_floating_point and like.requires_grad else value.detach().to(like.dtype)


def _exp2_weights(gap: Tensor, table: Tensor) -> Tensor:
    """The softmax weights of score gaps ``m - s >= 0`` (units ``2^-ACT_BITS``): the table's at
    coding time, ``2^(EXP_TOP - t / EXP_STEPS)`` (differentiable) in training."""
    t = _div_floor(gap, 2**ACT_BITS // EXP_STEPS)
    inside = t < EXP_LENGTH
    if gap.requires_grad:
        return torch.exp2(EXP_TOP - t / EXP_STEPS) * inside
    return table.to(gap.device)[t.clamp(0, EXP_LENGTH - 1).long()].to(gap.dtype) * inside


class IntegerLinear(nn.Linear):
    """``floor((x W + B) / 2^ACT_BITS)`` on integers, clamped to ``+-LIMIT``."""

    def forward(self, x: Tensor) -> Tensor:
        w = _integer(self.weight, 2**ACT_BITS, WEIGHT_MAX, x)
        b = _integer(self.bias, 2 ** (2 * ACT_BITS), WEIGHT_MAX * 2**ACT_BITS, x)
        return _div_floor(x @ w.t() + b, 2**ACT_BITS).clamp(-LIMIT, LIMIT)


class IntegerRMSNorm(nn.Module):
    """``floor(x g / r)``, ``r = floor(sqrt(mean(x^2))) + 1`` (all in units of ``2^-ACT_BITS``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        r = _isqrt(_div_floor(x.pow(2).sum(-1, keepdim=True), x.shape[-1])) + 1
        g = _integer(self.gain, 2**ACT_BITS, WEIGHT_MAX, x)
        return _div_floor(x * g, r).clamp(-LIMIT, LIMIT)


class WindowAttention(nn.Module):
    """Multi-head self-attention within windows of ``window^2`` tokens, base-2 integer softmax,
    a learned relative-position bias per head; padded keys get no weight."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        head_dim = dim // heads
        if dim % heads or math.log(head_dim, 4) % 1:
            raise ValueError(
                f"dim / heads must be a power of 4 (the score scale 1/sqrt is exact), not {dim}/{heads}"
            )
        self.heads, self.window, self.score_shift = heads, window, ACT_BITS + int(math.log2(head_dim)) // 2
        self.qkv = IntegerLinear(dim, 3 * dim)
        self.out = IntegerLinear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(heads, (2 * window - 1) ** 2))
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        relative = (ys[:, None] - ys[None, :] + window - 1) * (2 * window - 1) + (
            xs[:, None] - xs[None, :] + window - 1
        )
        self.register_buffer("relative", relative, persistent=False)

    def forward(self, x: Tensor, pad: Tensor, table: Tensor) -> Tensor:
        """``x`` (B, T, dim) windows of tokens, ``pad`` (B, T) True where a token is padding."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        bias = _integer(self.bias, 2**ACT_BITS, LIMIT, x)[:, self.relative]  # (heads, T, T)
        scores = _div_floor(q @ k.transpose(-1, -2), 2**self.score_shift) + bias
        scores = scores.masked_fill(pad[:, None, None, :], -(2**40))
        gap = scores.amax(-1, keepdim=True).detach() - scores
        weights = _exp2_weights(gap, table)
        mixed = _div_floor(weights @ v, weights.sum(-1, keepdim=True))
        return self.out(mixed.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: int = 2):
        super().__init__()
        self.norm1, self.attention = IntegerRMSNorm(dim), WindowAttention(dim, heads, window)
        self.norm2 = IntegerRMSNorm(dim)
        self.fc1, self.fc2 = IntegerLinear(dim, mlp_ratio * dim), IntegerLinear(mlp_ratio * dim, dim)

    def forward(self, x: Tensor, pad: Tensor, table: Tensor) -> Tensor:
        x = (x + self.attention(self.norm1(x), pad, table)).clamp(-LIMIT, LIMIT)
        return (x + self.fc2(F.relu(self.fc1(self.norm2(x))))).clamp(-LIMIT, LIMIT)


class IndexTransformer(nn.Module):
    """The masked integer transformer of the module docstring, over indices in ``[0, num_codes)``."""

    def __init__(self, num_codes: int, dim: int = 64, heads: int = 4, layers: int = 2, window: int = 8):
        super().__init__()
        self.num_codes, self.window = int(num_codes), int(window)
        self.mask_token, self.pad_token = self.num_codes, self.num_codes + 1
        self.embedding = nn.Parameter(torch.randn(num_codes + 2, dim) * 0.5)
        self.blocks = nn.ModuleList(Block(dim, heads, window) for _ in range(layers))
        self.norm = IntegerRMSNorm(dim)
        self.head = IntegerLinear(dim, num_codes)
        self.register_buffer("table", exp2_table())

    # -- the network ---------------------------------------------------------------------

    def logits(self, tokens: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Integer logits ``(N, h, w, K)`` (units ``2^-ACT_BITS`` of a bit) of a token map
        ``(N, h, w)`` (indices, mask and pad tokens): differentiable in float32 under grad,
        exact in float64 (coding) and int64 (the CPU oracle the tests compare with)."""
        n, h, w = tokens.shape
        s = self.window
        rows, cols = -(-h // s) * s, -(-w // s) * s
        padded = F.pad(tokens, (0, cols - w, 0, rows - h), value=self.pad_token)
        windows = padded.reshape(n, rows // s, s, cols // s, s).permute(0, 1, 3, 2, 4).reshape(-1, s * s)
        like = torch.zeros((), dtype=dtype, requires_grad=dtype.is_floating_point and torch.is_grad_enabled())
        x = _integer(self.embedding, 2**ACT_BITS, LIMIT, like)[windows]
        pad = windows == self.pad_token
        for block in self.blocks:
            x = block(x, pad, self.table)
        logits = self.head(self.norm(x))
        logits = logits.reshape(n, rows // s, cols // s, s, s, -1).permute(0, 1, 3, 2, 4, 5)
        return logits.reshape(n, rows, cols, -1)[:, :h, :w]

    pass_masks = staticmethod(pass_masks)

    def masked(self, indices: Tensor, known: Tensor) -> Tensor:
        """The token map: ``indices`` where ``known``, the mask token elsewhere."""
        return torch.where(known, indices, torch.full_like(indices, self.mask_token))

    # -- training ------------------------------------------------------------------------

    def likelihoods(self, indices: Tensor) -> Tensor:
        """The probability of each index ``(N, h, w)`` under its pass's distribution (training:
        one forward per pass, each seeing the earlier passes' indices)."""
        n, h, w = indices.shape
        masks = pass_masks(h, w, indices.device)
        out = torch.zeros(indices.shape, device=indices.device)
        for p in range(PASSES):
            known = masks[:p].any(0).expand(n, h, w)
            logits = self.logits(self.masked(indices, known))
            gap = logits.amax(-1, keepdim=True).detach() - logits
            weights = _exp2_weights(gap, self.table)
            chosen = weights.gather(-1, indices[..., None])[..., 0] / weights.sum(-1)
            out = torch.where(masks[p].expand(n, h, w), chosen, out)
        return out

    # -- coding --------------------------------------------------------------------------

    @torch.no_grad()
    def frequencies(self, tokens: Tensor, where: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
        """int64 frequencies ``(n, K + 1)`` (the ``K`` indices, then the coder's escape) summing to
        ``2^PRECISION``, every one at least 1, of the positions ``where`` (N, h, w) of a token
        map, computed exactly (module docstring)."""
        return self._frequencies(self.logits(tokens, dtype)[where])

    def _frequencies(self, logits: Tensor) -> Tensor:
        gap = logits.amax(-1, keepdim=True) - logits
        weights = _exp2_weights(gap, self.table).long()  # integers up to 2^EXP_TOP
        total = 1 << tables.PRECISION
        spare = total - (self.num_codes + 1)  # everything above the floor of 1 each
        freq = 1 + weights * spare // weights.sum(-1, keepdim=True)
        top = weights.argmax(-1, keepdim=True)  # the first largest
        freq.scatter_add_(-1, top, (total - 1) - freq.sum(-1, keepdim=True))
        return torch.cat([freq, torch.ones_like(freq[:, :1])], -1)

    def cdfs(self, tokens: Tensor, where: Tensor) -> list[np.ndarray]:
        """The coder's CDF table (int32, ``K + 2`` entries) of each position ``where``."""
        freq = self.frequencies(tokens, where)
        cdf = torch.zeros(len(freq), freq.shape[1] + 1, dtype=torch.int64)
        cdf[:, 1:] = freq.cpu().cumsum(-1)
        return list(cdf.to(torch.int32).numpy())

    @torch.no_grad()
    def restore(self, indices: Tensor, lost: Tensor) -> Tensor:
        """``indices`` (N, h, w) with the positions ``lost`` replaced, pass by pass, by their most
        probable index given everything known (exact: the same on every device)."""
        h, w = indices.shape[1:]
        known = ~lost
        restored = indices.clone()
        for phase in pass_masks(h, w, indices.device):
            missing = lost & phase
            if missing.any():
                logits = self.logits(self.masked(restored, known), torch.float64)
                restored[missing] = logits[missing].argmax(-1)
                known = known | missing
        return restored


def check_bounds(model: IndexTransformer) -> None:
    """ValueError if a partial sum of the coding-time arithmetic could reach 2^53 (module docstring)."""
    worst = 0
    for module in model.modules():
        if isinstance(module, IntegerLinear):
            worst = max(
                worst, module.in_features * LIMIT * WEIGHT_MAX + WEIGHT_MAX * 2**ACT_BITS * 2**ACT_BITS
            )
        elif isinstance(module, WindowAttention):
            tokens = module.window**2
            head = module.qkv.out_features // 3 // module.heads
            worst = max(worst, head * LIMIT * LIMIT, tokens * 2 ** (EXP_TOP + 1) * LIMIT)
        elif isinstance(module, IntegerRMSNorm):
            worst = max(worst, len(module.gain) * LIMIT**2, LIMIT * WEIGHT_MAX)
    worst = max(worst, (2 ** (EXP_TOP + 1)) * (1 << tables.PRECISION) * model.num_codes)
    if worst >= EXACT:
        raise ValueError(f"the integer transformer's sums may reach {worst:.3g} >= 2^53: make it narrower")
