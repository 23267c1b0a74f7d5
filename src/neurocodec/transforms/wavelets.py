"""Multi-level wavelet *packet* transforms, 1-D and 2-D, in torch: exactly invertible, batched.

A wavelet packet transform (WPT) of ``J`` levels splits *every* sub-band again at each level
(a plain DWT splits only the low band). It is the fixed, invertible front end of WaLLoC: a
signal becomes many small sub-band channels, and the learned part of the codec only mixes
channels.

- 2-D: ``(N, C, H, W) -> (N, C * 4**J, H / 2**J, W / 2**J)``;
- 1-D: ``(N, C, T) -> (N, C * 2**J, T / 2**J)``.

Boundary: periodization (the signal wraps around), so the transform is a square invertible
linear map and every size is exactly halved; sizes must be multiples of ``2**J`` (a codec pads
to that). Filters are PyWavelets' (``pywt.Wavelet(name)``): analysis with ``dec_lo``/``dec_hi``,
synthesis with ``rec_lo``/``rec_hi``.

How it runs: one level is a stride-2 convolution, written in polyphase form (the signal's two
phases through one stride-1 convolution that outputs the two bands; the inverse, the bands
through one convolution that outputs the phases). That one-level transform is the
definition; the transforms run it a few levels at a time: up to 3 levels (8 phases) are one
grouped convolution whose kernels are the exact float64 impulse responses of the one-level
steps, and the 2-D transform is separable (rows, then columns, then a fixed reordering of the
channels). One pass over the data per 3 levels and axis instead of per level: 3-4x faster
on CPUs than level by level, on any device and in any floating dtype.

**Channel order** (identical to PyWavelets' ``WaveletPacket``/``WaveletPacket2D`` nodes of
level ``J`` in ``order="natural"``): input channel ``c`` owns the ``4**J`` (2-D) or ``2**J``
(1-D) consecutive output channels starting at ``c * 4**J`` (``c * 2**J``). Within them, the
packet's path is written in base 4 (base 2), the first level's band being the most significant
digit. One level's bands are, in 1-D, ``0 = a`` (low pass) and ``1 = d`` (high pass); in 2-D,
``0 = a`` (low along H and W), ``1 = h`` (high along H, low along W: pywt's horizontal detail
``cH``), ``2 = v`` (low along H, high along W: ``cV``), ``3 = d`` (high along both). So the
first channel of each input channel is the all-low-pass approximation, ``a…a``.
:func:`packet_frequencies` gives each packet's frequency band (the natural order is not the
frequency order: a high-pass split mirrors the spectrum, so the band is the Gray-decoded path).
"""

from __future__ import annotations

from functools import cache

import pywt
import torch
import torch.nn.functional as F
from torch import Tensor

from neurocodec.errors import GeometryError

__all__ = ["WAVELETS", "iwpt1d", "iwpt2d", "packet_frequencies", "wpt1d", "wpt2d"]

# Wavelets known to work exactly here: even-length, perfect-reconstruction filter banks.
WAVELETS = ("haar", "bior4.4", "db2", "db4", "sym4", "bior2.2", "coif1")


@cache
def _filters(wavelet: str) -> tuple[tuple[float, ...], ...]:
    """PyWavelets' ``(dec_lo, dec_hi, rec_lo, rec_hi)`` of ``wavelet``."""
    if wavelet not in WAVELETS:
        raise ValueError(f"unknown wavelet {wavelet!r}; use one of {', '.join(WAVELETS)}")
    w = pywt.Wavelet(wavelet)
    return tuple(w.dec_lo), tuple(w.dec_hi), tuple(w.rec_lo), tuple(w.rec_hi)


@cache
def _polyphase(wavelet: str) -> tuple[Tensor, Tensor, int]:
    """One level as two stride-1 correlations on the polyphase signal: ``(analysis, synthesis, pad)``.

    With ``x_r[p] = x[2p + r]`` (phase ``r``) and filters of even length ``F``, PyWavelets'
    periodization is ``band_b[k] = sum_j dec_b[j] * x[(2k + F/2 - j) mod n]`` and its inverse
    ``x[(2k + j + 1 - F/2) mod n] += rec_b[j] * band_b[k]``. Both become correlations over
    ``e`` in ``[-pad, pad]``:

    - analysis: ``band_b[k] = sum_{r,e} dec_b[F/2 - r - 2e] * x_r[k + e]``;
    - synthesis: ``x_r[p] = sum_{b,e} rec_b[r - 2e + F/2 - 1] * band_b[p + e]``.

    Returns float64 kernels ``analysis[b, r, pad + e]`` and ``synthesis[r, b, pad + e]``.
    """
    dec_lo, dec_hi, rec_lo, rec_hi = _filters(wavelet)
    taps, half = len(dec_lo), len(dec_lo) // 2
    pad = half // 2 + 1
    analysis = torch.zeros(2, 2, 2 * pad + 1, dtype=torch.float64)
    synthesis = torch.zeros(2, 2, 2 * pad + 1, dtype=torch.float64)
    for b, (dec, rec) in enumerate(((dec_lo, rec_lo), (dec_hi, rec_hi))):
        for r in range(2):
            for e in range(-pad, pad + 1):
                if 0 <= half - r - 2 * e < taps:
                    analysis[b, r, pad + e] = dec[half - r - 2 * e]
                if 0 <= r - 2 * e + half - 1 < taps:
                    synthesis[r, b, pad + e] = rec[r - 2 * e + half - 1]
    # trim the all-zero outer taps (pad was chosen generously)
    used = (analysis.abs().sum((0, 1)) + synthesis.abs().sum((0, 1))) > 0
    trim = min(int(used.nonzero()[0]), 2 * pad - int(used.nonzero()[-1]))
    analysis, synthesis = analysis[..., trim : 2 * pad + 1 - trim], synthesis[..., trim : 2 * pad + 1 - trim]
    return analysis, synthesis, pad - trim


LEVELS_PER_STEP = 3  # 8 phases per step: beyond, the kernels grow faster than the work they save


def _steps(levels: int) -> list[int]:
    """``levels`` cut into steps of at most :data:`LEVELS_PER_STEP` (8 -> 3, 3, 2)."""
    return [min(LEVELS_PER_STEP, levels - done) for done in range(0, levels, LEVELS_PER_STEP)]


def _wrap(x: Tensor, pad: int, dim: int) -> Tensor:
    """``x`` extended periodically by ``pad`` on both sides of dimension ``dim`` (negative)."""
    if pad == 0:
        return x
    n = x.shape[dim]
    if pad <= n:
        return torch.cat([x.narrow(dim, n - pad, pad), x, x.narrow(dim, 0, pad)], dim)
    return x.index_select(dim, torch.arange(-pad, n + pad, device=x.device) % n)  # tiny inputs


def _correlate(x: Tensor, kernel: Tensor, pad: int, dim: int = -1) -> Tensor:
    """The periodic correlation of every group of ``S`` channels of ``x`` with ``kernel`` ``(S, S, 2 pad + 1)``
    along dimension ``dim`` (-1, or -2 of a 4-D ``x``): group ``g``'s outputs are channels
    ``g * S ... g * S + S - 1``. One grouped convolution for the whole batch and every channel.
    """
    groups = x.shape[1] // kernel.shape[1]
    weight = kernel.to(device=x.device, dtype=x.dtype).repeat(groups, 1, 1)
    if x.ndim == 3:
        return F.conv1d(_wrap(x, pad, -1), weight, groups=groups)
    weight = weight.unsqueeze(-1 if dim == -2 else -2)  # (k, 1) along H, (1, k) along W
    return F.conv2d(_wrap(x, pad, dim), weight, groups=groups)


def _to_phases(x: Tensor, phases: int, dim: int) -> Tensor:
    """``x`` ``(N, C, ..., n, ...)`` -> ``(N, C * phases, ..., n / phases, ...)`` along ``dim``
    (negative): channel ``c * phases + r`` holds samples ``phases * p + r``."""
    split = x.unflatten(dim, (x.shape[dim] // phases, phases))  # the phase axis lands at ``dim``
    return split.movedim(dim, 2).flatten(1, 2)


def _from_phases(x: Tensor, phases: int, dim: int) -> Tensor:
    """The inverse of :func:`_to_phases`."""
    split = x.unflatten(1, (x.shape[1] // phases, phases)).movedim(2, dim)
    return split.flatten(dim - 1, dim)


def _one_level_analysis(x: Tensor, wavelet: str) -> Tensor:
    """One level of the 1-D packet analysis: ``(N, C, T) -> (N, 2C, T/2)`` (the definition)."""
    analysis, _, pad = _polyphase(wavelet)
    return _correlate(_to_phases(x, 2, -1), analysis, pad)


def _one_level_synthesis(y: Tensor, wavelet: str) -> Tensor:
    """The inverse of :func:`_one_level_analysis`."""
    _, synthesis, pad = _polyphase(wavelet)
    return _from_phases(_correlate(y, synthesis, pad), 2, -1)


@cache
def _step_kernels(wavelet: str, levels: int) -> tuple[Tensor, Tensor, int]:
    """``levels`` levels of the 1-D packet transform as one correlation on ``S = 2**levels`` phases.

    ``analysis[b, r, pad + e]``: band ``b`` at position ``k`` takes phase ``r`` at ``k + e``;
    ``synthesis[r, b, pad + e]``: phase ``r`` at ``k`` takes band ``b`` at ``k + e``. Both are the
    float64 impulse responses of ``levels`` applications of the one-level transform, so a step
    computes exactly what the level-by-level definition does, in one pass over the data.
    """
    phases, blocks = 2**levels, 64
    centre = blocks // 2
    impulses = torch.zeros(phases, 1, phases * blocks, dtype=torch.float64)
    impulses[torch.arange(phases), 0, phases * centre + torch.arange(phases)] = 1.0
    bands = impulses
    for _ in range(levels):
        bands = _one_level_analysis(bands, wavelet)  # (r, b, k) = analysis[b, r, centre - k]
    unit = torch.zeros(phases, phases, blocks, dtype=torch.float64)
    unit[torch.arange(phases), torch.arange(phases), centre] = 1.0
    signal = unit
    for _ in range(levels):
        signal = _one_level_synthesis(signal.reshape(phases, -1, signal.shape[-1]), wavelet)
    signal = _to_phases(signal, phases, -1)  # (b, r, k) = synthesis[r, b, centre - k]
    used = ((bands != 0).any(0).any(0) | (signal != 0).any(0).any(0)).nonzero().flatten()
    pad = max(centre - int(used.min()), int(used.max()) - centre)
    if pad >= centre:
        raise ValueError(f"{wavelet} at {levels} levels has a support beyond {blocks} blocks")
    window = torch.arange(centre + pad, centre - pad - 1, -1)  # k for e = -pad ... pad
    return bands[:, :, window].transpose(0, 1), signal[:, :, window].transpose(0, 1), pad


@cache
def _natural_order(levels: int) -> Tensor:
    """For each 2-D packet in natural order, its channel among the ``(bw, bh)`` products of the
    two 1-D transforms (``bw * 2**levels + bh``): a level's 2-D band is ``h_bit + 2 * w_bit``."""
    index = []
    for packet in range(4**levels):
        bh = bw = 0
        for level in range(levels):
            band = (packet >> (2 * (levels - 1 - level))) & 3
            bh, bw = 2 * bh + (band & 1), 2 * bw + (band >> 1)
        index.append(bw * 2**levels + bh)
    return torch.tensor(index)


def _grouped_index(order: Tensor, groups: int, device: torch.device) -> Tensor:
    """``order`` applied within each of ``groups`` consecutive blocks of channels."""
    size = len(order)
    return (torch.arange(groups)[:, None] * size + order[None, :]).flatten().to(device)


def _check(x: Tensor, dims: int, levels: int, wavelet: str, what: str) -> None:
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive int, not {levels!r}")
    _filters(wavelet)
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{what} needs a floating-point tensor")
    layout = "(N, C, H, W)" if dims == 2 else "(N, C, T)"
    if x.ndim != dims + 2:
        raise GeometryError(f"{what} needs a tensor shaped {layout}, not {tuple(x.shape)}")


def _check_sizes(x: Tensor, dims: int, levels: int) -> None:
    step = 2**levels
    sizes = tuple(x.shape[-dims:])
    if any(s == 0 or s % step for s in sizes):
        raise GeometryError(
            f"a {levels}-level wavelet packet transform needs sizes that are positive multiples of "
            f"{step}, not {'x'.join(map(str, sizes))} (pad the input first)"
        )


def wpt1d(x: Tensor, levels: int, wavelet: str = "bior4.4") -> Tensor:
    """``(N, C, T) -> (N, C * 2**levels, T / 2**levels)``: the ``levels``-level 1-D packet analysis."""
    _check(x, 1, levels, wavelet, "wpt1d")
    _check_sizes(x, 1, levels)
    for step in _steps(levels):
        analysis, _, pad = _step_kernels(wavelet, step)
        x = _correlate(_to_phases(x, 2**step, -1), analysis, pad)
    return x


def iwpt1d(y: Tensor, levels: int, wavelet: str = "bior4.4") -> Tensor:
    """The exact inverse of :func:`wpt1d`: ``(N, C * 2**levels, T') -> (N, C, T' * 2**levels)``."""
    _check(y, 1, levels, wavelet, "iwpt1d")
    if y.shape[1] % 2**levels:
        raise GeometryError(
            f"iwpt1d of {levels} levels needs a multiple of {2**levels} channels, not {y.shape[1]}"
        )
    for step in reversed(_steps(levels)):
        _, synthesis, pad = _step_kernels(wavelet, step)
        y = _from_phases(_correlate(y, synthesis, pad), 2**step, -1)
    return y


def wpt2d(x: Tensor, levels: int, wavelet: str = "bior4.4") -> Tensor:
    """``(N, C, H, W) -> (N, C * 4**levels, H / 2**levels, W / 2**levels)``: the 2-D packet analysis.

    Separable: each step transforms the rows (W), then the columns (H), several levels at once,
    then puts the ``(bw, bh)`` products in the natural packet order.
    """
    _check(x, 2, levels, wavelet, "wpt2d")
    _check_sizes(x, 2, levels)
    for step in _steps(levels):
        analysis, _, pad = _step_kernels(wavelet, step)
        phases = 2**step
        rows = _correlate(_to_phases(x, phases, -1), analysis, pad, -1)  # channels (c, bw)
        both = _correlate(_to_phases(rows, phases, -2), analysis, pad, -2)  # channels (c, bw, bh)
        x = both.index_select(1, _grouped_index(_natural_order(step), x.shape[1], x.device))
    return x


def iwpt2d(y: Tensor, levels: int, wavelet: str = "bior4.4") -> Tensor:
    """The exact inverse of :func:`wpt2d`: ``(N, C * 4**levels, H', W') -> (N, C, H' * 2**levels, W' * 2**levels)``."""
    _check(y, 2, levels, wavelet, "iwpt2d")
    if y.shape[1] % 4**levels:
        raise GeometryError(
            f"iwpt2d of {levels} levels needs a multiple of {4**levels} channels, not {y.shape[1]}"
        )
    for step in reversed(_steps(levels)):
        _, synthesis, pad = _step_kernels(wavelet, step)
        phases = 2**step
        order = torch.argsort(_natural_order(step))
        both = y.index_select(1, _grouped_index(order, y.shape[1] // phases**2, y.device))
        rows = _from_phases(_correlate(both, synthesis, pad, -2), phases, -2)
        y = _from_phases(_correlate(rows, synthesis, pad, -1), phases, -1)
    return y


def packet_frequencies(levels: int, dims: int) -> Tensor:
    """The frequency band of each packet of one input channel, in channel order: int64 ``(2**(dims*levels), dims)``.

    Row ``p`` holds, per axis (H then W in 2-D), the index ``0 … 2**levels - 1`` of the band
    packet ``p`` covers, from the lowest frequencies up: PyWavelets' ``order="freq"``. Along an
    axis, the packet's path bits (high-pass = 1, first level first) are Gray-decoded.
    """
    if dims not in (1, 2) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"need dims 1 or 2 and positive levels, not dims={dims}, levels={levels}")
    digits = torch.arange(2 ** (dims * levels))
    out = torch.zeros(len(digits), dims, dtype=torch.int64)
    for level in range(levels):
        band = (digits >> (dims * (levels - 1 - level))) % 2**dims  # this level's band
        for axis in range(dims):  # 2-D bands: bit 0 is high along H, bit 1 high along W
            bit = (band >> axis) & 1
            decoded = (out[:, axis] & 1) ^ bit  # Gray decoding: running XOR of the path bits
            out[:, axis] = 2 * out[:, axis] + decoded
    return out
