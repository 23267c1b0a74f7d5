"""Gaussian and Laplace conditionals: ``y`` given per-symbol scales (and means), scale-indexed tables.

Training: the likelihood of the quantized (or noisy) ``y`` under ``N(means, scales)`` or
``Laplace(means, scales)``, with the scales lower-bounded by ``scale_bound`` and the likelihood
by ``likelihood_bound``.

Coding: one zero-mean integer table per entry of ``scale_table`` (built once, stored in the
buffers), and per symbol an int32 table index. The coded symbols are ``round(y - means)``
(``torch.round``, half to even, on the encoder's tensors); the decoder returns
``symbols + means``. Decoding the symbols never uses the means, so the stream decodes exactly
whatever the means; the reconstruction ``symbols + means`` is bit-exact only if the decoder is
given bit-identical means, which the codec's deterministic prior path must guarantee (e.g.
means on an integer or fixed-point grid computed with integer arithmetic).

Table indexes: :meth:`~ScaleConditional.indexes_from_scales` is the FLOAT path
(:func:`tables.scale_index`, nearest table scale in the log domain, a scale exactly on a
boundary ``sqrt(t[i] * t[i+1])`` taking the larger table ``i + 1``). It is exact across devices
only if the scales are bit-identical on both sides; the deterministic prior path hands integer
indexes to :meth:`~ScaleConditional.compress` directly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from neurocodec.entropy import tables
from neurocodec.entropy.models.base import (
    Mode,
    TableEntropyModel,
    lower_bound,
    scale_table_bits,
    scale_table_from_bits,
)

__all__ = [
    "GaussianConditional",
    "LaplaceConditional",
    "ScaleConditional",
    "gaussian_interval_mass",
    "laplace_pmf",
    "laplace_tables",
]


def laplace_pmf(scale: float, support: int) -> tuple[float, np.ndarray, float]:
    """Exact float64 masses of ``round(y)``, ``y ~ Laplace(0, scale)``, on ``[-support, support]``.

    Returns ``(center, side, escape)`` like :func:`tables.gaussian_pmf`: ``center = P(0) =
    1 - exp(-1/(2b))``, ``side[j-1] = P(j) = P(-j) = exp(-(j - 1/2)/b) (1 - exp(-1/b)) / 2``,
    ``escape = P(|round(y)| > support) = exp(-(support + 1/2)/b)``; scalar ``math`` calls only.
    """
    b = float(scale)
    if not (math.isfinite(b) and b > 0):
        raise ValueError(f"scale must be positive and finite, got {scale}")
    step = -math.expm1(-1.0 / b)
    side = np.array([0.5 * math.exp(-(j - 0.5) / b) * step for j in range(1, support + 1)], dtype=np.float64)
    return -math.expm1(-0.5 / b), side, math.exp(-(support + 0.5) / b)


def laplace_tables(
    scales, tail_mass: float = tables.DEFAULT_TAIL_MASS, precision: int = tables.PRECISION
) -> tuple[list[np.ndarray], np.ndarray]:
    """One exactly symmetric table per scale for ``round(y)``, ``y ~ Laplace(0, scale)``.

    The Laplace counterpart of :func:`tables.gaussian_tables`: support ``K = ceil(b * log(1 /
    tail_mass))`` (at least 1; ``P(|y| > b log(1/tail_mass)) = tail_mass``), entries ``-K … K``,
    then the escape with the mass outside ``[-K - 1/2, K + 1/2]``; offset ``-K``; frequencies
    minimizing the cross-entropy under the symmetry constraint.
    """
    if not 0 < tail_mass < 1:
        raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
    return tables.symmetric_tables(scales, laplace_pmf, -math.log(tail_mass), precision)


def gaussian_interval_mass(values: Tensor, scales: Tensor) -> Tensor:
    """The mass of ``[v - 1/2, v + 1/2]`` under ``N(0, s)``, for ``v = values >= 0`` and ``s = scales``.

    Computed on the mirrored interval, ``Phi((1/2 - v)/s) - Phi((-1/2 - v)/s)``, as a difference
    of ``erfc`` terms that are small in the tails, so far-out values keep their precision.
    """
    r = -(2**-0.5) / scales  # Phi(x) = erfc(-x / sqrt(2)) / 2
    return 0.5 * (torch.erfc((0.5 - values) * r) - torch.erfc((-0.5 - values) * r))


class ScaleConditional(TableEntropyModel):
    """Base of the location-scale conditionals: likelihoods, scale-indexed tables, coding.

    Args:
        scale_table: strictly increasing positive table scales (default
            :func:`tables.gaussian_scale_table`: 64 log-spaced scales on [0.11, 64]).
        scale_bound: lower bound of the scales in the training likelihood.
        tail_mass: two-sided mass each table leaves to the escape.
        likelihood_bound: floor of the training likelihoods.

    Call :meth:`update_tables` once to build the integer tables (they depend on the scale
    table only); they are stored in the buffers, with the scale table, and travel with the
    ``state_dict``. The scale table is kept as float64 bit patterns in an int64 buffer, so
    dtype casts of the module cannot move a table boundary.
    """

    _table_buffers = (*TableEntropyModel._table_buffers, "scale_table_bits")

    def __init__(
        self,
        scale_table=None,
        scale_bound: float = 0.11,
        tail_mass: float = tables.DEFAULT_TAIL_MASS,
        likelihood_bound: float = 1e-9,
    ):
        super().__init__(likelihood_bound)
        if not scale_bound > 0:
            raise ValueError(f"scale_bound must be positive, got {scale_bound}")
        self.scale_bound = float(scale_bound)
        self.tail_mass = float(tail_mass)
        self.scale_table_bits = scale_table_bits(scale_table)

    @property
    def scale_table(self) -> np.ndarray:
        """The table scales (float64; stored bit-exactly in the int64 buffer ``scale_table_bits``)."""
        return scale_table_from_bits(self.scale_table_bits)

    def _build_tables(self, scales: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        raise NotImplementedError

    def _interval_mass(self, values: Tensor, scales: Tensor) -> Tensor:
        """``P(Y in [v - 1/2, v + 1/2])`` for ``v = values >= 0``, ``Y`` zero-mean with scale ``scales``."""
        raise NotImplementedError

    def likelihood(self, y_hat: Tensor, scales: Tensor, means: Tensor | None = None) -> Tensor:
        """Probability of each (quantized or noisy) value, floored at ``likelihood_bound``."""
        values = (y_hat - means if means is not None else y_hat).abs()
        return self._bound(self._interval_mass(values, lower_bound(scales, self.scale_bound)))

    def forward(
        self, y: Tensor, scales: Tensor, means: Tensor | None = None, mode: Mode | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(y_hat, likelihoods)``: ``mode`` "noise" (default in training), "ste" (in eval) or a
        relaxed rounding (:meth:`~neurocodec.entropy.models.base.EntropyModel.quantize`)."""
        mode = self._default_mode(mode)
        if mode == "symbols":
            raise ValueError('forward needs a differentiable mode: "noise" or "ste"')
        y_hat = self.quantize(y, mode, means)
        return y_hat, self.likelihood(y_hat, scales, means)

    @torch.no_grad()
    def update_tables(self) -> None:
        """Build one integer table per scale-table entry (float64, scalar libm, on the CPU)."""
        self._store_tables(*self._build_tables(self.scale_table))

    def indexes_from_scales(self, scales: Tensor) -> Tensor:
        """Table index per scale by :func:`tables.scale_index` (the FLOAT path), int32 on the CPU.

        Each scale is compared, as its exact float64 value, with the boundaries
        ``sqrt(t[i] * t[i+1])``: the index is the number of boundaries ``<= scale`` (a scale on a
        boundary takes the larger table). Identical across devices for bit-identical scales only.
        """
        return torch.from_numpy(tables.scale_index(scales, self.scale_table))

    def compress(self, y: Tensor, indexes: Tensor, means: Tensor | None = None) -> bytes:
        """The rANS stream of ``round(y - means)`` with table ``indexes`` (same shape as ``y``)."""
        if tuple(indexes.shape) != tuple(y.shape):
            raise ValueError(f"indexes shape {tuple(indexes.shape)} != y shape {tuple(y.shape)}")
        return self._encode(self.quantize(y, "symbols", means), indexes)

    def decompress(self, data: bytes, indexes: Tensor, means: Tensor | None = None) -> Tensor:
        """``symbols + means`` shaped like ``indexes`` (float32 on the CPU without means)."""
        symbols = self._decode(data, indexes).reshape(tuple(indexes.shape))
        return self.dequantize(symbols, means)


class GaussianConditional(ScaleConditional):
    """``y ~ N(means, scales)``; tables by :func:`tables.gaussian_tables`."""

    def _build_tables(self, scales: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        return tables.gaussian_tables(scales, self.tail_mass)

    def _interval_mass(self, values: Tensor, scales: Tensor) -> Tensor:
        return gaussian_interval_mass(values, scales)


class LaplaceConditional(ScaleConditional):
    """``y ~ Laplace(means, scales)`` (``scales`` = the diversity ``b``); tables by :func:`laplace_tables`."""

    def _build_tables(self, scales: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        return laplace_tables(scales, self.tail_mass)

    def _interval_mass(self, values: Tensor, scales: Tensor) -> Tensor:
        # v >= 1/2: (exp(-(v - 1/2)/b) - exp(-(v + 1/2)/b)) / 2; v < 1/2: 1 - both tails.
        # Each branch is evaluated where it is selected (clamped elsewhere), so no exp overflows.
        far = values.clamp_min(0.5)
        near = values.clamp_max(0.5)
        outer = 0.5 * torch.exp((0.5 - far) / scales) * -torch.expm1(-1.0 / scales)
        inner = 1 - 0.5 * torch.exp((near - 0.5) / scales) - 0.5 * torch.exp(-(near + 0.5) / scales)
        return torch.where(values >= 0.5, outer, inner)
