"""The factorized prior: a learned non-parametric density per channel (Ballé et al. 2018).

The "entropy bottleneck" of tensorflow-compression and CompressAI: per channel, a cumulative
density ``CDF(x) = sigmoid(f(x))`` with ``f`` a small monotone MLP (softplus-constrained matrices,
``tanh`` factors bounded in (-1, 1)), and three learned quantiles (lower tail, median, upper
tail) fitted by :meth:`FactorizedPrior.aux_loss` during training and solved exactly (bisection
of the monotone CDF) when the tables are built: the aux loss's Adam steps move the quantiles at
about its learning rate per step, too slowly for latents that span +-100 (a WaLLoC low-pass
channel), and a table that is too narrow escapes a large share of the values.

Coding: the values are the integers ``round(y)`` themselves (no median shift, so the decoder
needs nothing but the tables). Table ``c`` covers ``[floor(lower quantile), ceil(upper
quantile)]`` (widened to include the rounded median), its offset is the first value of that range,
and every symbol of channel ``c`` uses table ``c``; values outside are escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocodec.entropy import tables
from neurocodec.entropy.models.base import Mode, TableEntropyModel

__all__ = ["FactorizedPrior"]


def _interval_mass(lower: Tensor, upper: Tensor) -> Tensor:
    """``sigmoid(upper) - sigmoid(lower)``, evaluated on the side where both sigmoids are small."""
    sign = 1.0 - 2.0 * (lower + upper > 0).to(lower.dtype)
    return (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()


class FactorizedPrior(TableEntropyModel):
    """Learned univariate density per channel, for latents shaped ``(N, C, ...)``.

    Args:
        channels: number of channels ``C`` (dimension 1 of the latents).
        filters: hidden widths of the per-channel cumulative-logit MLP.
        init_scale: initial width of the density (and of the quantiles ``[-s, 0, s]``).
        tail_mass: two-sided mass the lower and upper quantiles leave outside.
        likelihood_bound: floor of the training likelihoods.
    """

    def __init__(
        self,
        channels: int,
        filters: Sequence[int] = (3, 3, 3, 3),
        init_scale: float = 10.0,
        tail_mass: float = 2.0**-16,
        likelihood_bound: float = 1e-9,
    ):
        super().__init__(likelihood_bound)
        if not 0 < tail_mass < 1:
            raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        self.tail_mass = float(tail_mass)

        widths = (1, *self.filters, 1)
        scale = self.init_scale ** (1 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(widths) - 1):
            init = math.log(math.expm1(1 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((self.channels, widths[i + 1], widths[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(self.channels, widths[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(self.channels, widths[i + 1], 1)))
        s = self.init_scale
        self.quantiles = nn.Parameter(torch.tensor([-s, 0.0, s]).repeat(self.channels, 1, 1))

    # -- density -----------------------------------------------------------------------------

    def _logits_cumulative(self, x: Tensor, stop_gradient: bool = False) -> Tensor:
        """``f(x)`` for ``x`` shaped ``(C, 1, n)``, in ``x``'s dtype and device."""
        logits = x
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            logits = torch.matmul(F.softplus(matrix.to(x)), logits) + bias.to(x)
            if i < len(self.factors):
                factor = self.factors[i].detach() if stop_gradient else self.factors[i]
                logits = logits + torch.tanh(factor.to(x)) * torch.tanh(logits)
        return logits

    def _mass(self, x: Tensor, stop_gradient: bool = False) -> Tensor:
        """``CDF(x + 1/2) - CDF(x - 1/2)`` for ``x`` shaped ``(C, 1, n)``."""
        lower = self._logits_cumulative(x - 0.5, stop_gradient)
        upper = self._logits_cumulative(x + 0.5, stop_gradient)
        return _interval_mass(lower, upper)

    def _channels_first(self, y: Tensor) -> Tensor:
        if y.dim() < 2 or y.shape[1] != self.channels:
            raise ValueError(f"expected latents shaped (N, {self.channels}, ...), got {tuple(y.shape)}")
        return y.transpose(0, 1).reshape(self.channels, 1, -1)

    def likelihood(self, y_hat: Tensor) -> Tensor:
        """Probability of each (quantized or noisy) value under its channel's density, floored."""
        flat = self._channels_first(y_hat)
        lik = self._bound(self._mass(flat))
        shape = (y_hat.shape[1], y_hat.shape[0], *y_hat.shape[2:])
        return lik.reshape(shape).transpose(0, 1)

    def forward(self, y: Tensor, mode: Mode | None = None) -> tuple[Tensor, Tensor]:
        """``(y_hat, likelihoods)``: ``mode`` "noise" (default in training), "ste" (in eval) or a
        relaxed rounding (:meth:`~neurocodec.entropy.models.base.EntropyModel.quantize`)."""
        mode = self._default_mode(mode)
        if mode == "symbols":
            raise ValueError('forward needs a differentiable mode: "noise" or "ste"')
        y_hat = self.quantize(y, mode)
        return y_hat, self.likelihood(y_hat)

    def aux_loss(self) -> Tensor:
        """L1 distance of the quantiles' logits to their targets; trains ``quantiles`` only."""
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        t = math.log(2 / self.tail_mass - 1)
        target = torch.tensor([-t, 0.0, t], dtype=logits.dtype, device=logits.device)
        return (logits - target).abs().sum()

    # -- coding ------------------------------------------------------------------------------

    @torch.no_grad()
    def fit_quantiles(self) -> None:
        """Set :attr:`quantiles` to where ``f`` reaches the aux loss's targets ``(-t, 0, t)``, exactly.

        ``f`` is monotone in ``x``, so each quantile is found by bisection (float64, on the CPU),
        in a bracket doubled from the current quantiles until it holds the target.
        """
        t = math.log(2 / self.tail_mass - 1)
        target = torch.tensor([-t, 0.0, t], dtype=torch.float64).repeat(self.channels, 1, 1)
        q = self.quantiles.detach().to(device="cpu", dtype=torch.float64)
        lo, hi = q.clone(), q.clone()
        width = q[:, :, 2:] - q[:, :, :1] + 1.0
        for _ in range(64):  # widen each bracket until it holds its target
            below = self._logits_cumulative(lo, stop_gradient=True) > target
            above = self._logits_cumulative(hi, stop_gradient=True) < target
            if not (below.any() or above.any()):
                break
            lo = torch.where(below, lo - width, lo)
            hi = torch.where(above, hi + width, hi)
            width = width * 2
        else:
            raise ValueError("the factorized prior's density does not reach its quantile targets")
        for _ in range(80):
            mid = (lo + hi) / 2
            low = self._logits_cumulative(mid, stop_gradient=True) < target
            lo, hi = torch.where(low, mid, lo), torch.where(low, hi, mid)
        self.quantiles.copy_(((lo + hi) / 2).to(self.quantiles))

    @torch.no_grad()
    def update_tables(self) -> None:
        """Fit the quantiles (:meth:`fit_quantiles`), then build the integer tables from the
        current parameters (float64 on the CPU), once.

        Channel ``c``'s table covers ``lo … hi`` with ``lo = min(floor(q_lower), round(median))``
        and ``hi = max(ceil(q_upper), round(median))``; the escape carries the learned mass
        outside ``[lo - 1/2, hi + 1/2]``. Frequencies by :func:`tables.quantize_pmf`.

        The density is evaluated with vectorized torch math, which may differ in the last bit
        between CPUs: ship the resulting integer tables (they are in the state_dict), never
        rebuild them separately on the encoder and the decoder side.
        """
        self.fit_quantiles()
        q = self.quantiles.detach().to(device="cpu", dtype=torch.float64)[:, 0, :]
        med = torch.round(q[:, 1])
        lo = torch.minimum(torch.floor(q[:, 0]), med).to(torch.int64)
        hi = torch.maximum(torch.ceil(q[:, 2]), med).to(torch.int64)
        widths = hi - lo + 1
        if int(widths.max()) > (1 << tables.PRECISION) - 1:
            c = int(widths.argmax())
            raise ValueError(f"channel {c}'s quantiles span {int(widths[c])} values, more than a table holds")
        x = (lo[:, None, None] + torch.arange(int(widths.max()))).to(torch.float64)
        pmf = self._mass(x, stop_gradient=True)[:, 0, :].numpy()
        below = torch.sigmoid(self._logits_cumulative(x[:, :, :1] - 0.5, stop_gradient=True))
        top = hi.to(torch.float64).reshape(-1, 1, 1) + 0.5
        above = torch.sigmoid(-self._logits_cumulative(top, stop_gradient=True))
        escape = (below + above).reshape(-1).numpy()
        cdfs = [
            tables.quantize_pmf(
                np.append(pmf[c, : int(widths[c])], max(float(escape[c]), tables.ESCAPE_FLOOR))
            )
            for c in range(self.channels)
        ]
        self._store_tables(cdfs, lo.numpy().astype(np.int32))

    def indexes(self, shape: Sequence[int]) -> Tensor:
        """Table indexes for latents of ``shape`` ``(N, C, ...)``: the channel index, int32, on the
        model's device (so a model on a GPU codes on the GPU)."""
        shape = tuple(shape)
        if len(shape) < 2 or shape[1] != self.channels:
            raise ValueError(f"expected a shape (N, {self.channels}, ...), got {shape}")
        view = (1, self.channels) + (1,) * (len(shape) - 2)
        device = self.table_sizes.device
        return torch.arange(self.channels, dtype=torch.int32, device=device).reshape(view).expand(shape)

    def compress(self, y: Tensor) -> bytes:
        """The rANS stream of ``round(y)`` (``y`` shaped ``(N, C, ...)``, row-major order)."""
        return self._encode(self.quantize(y, "symbols"), self.indexes(y.shape))

    def decompress(self, data: bytes, shape: Sequence[int]) -> Tensor:
        """The integers ``round(y)`` as float32, shaped ``shape``, on the model's device."""
        return self._decode(data, self.indexes(shape)).reshape(tuple(shape)).to(torch.float32)
