"""Categorical models of integer symbols in ``[0, num_symbols)``: learned logits or counts.

For vector-quantizer indices, INR weights and other discrete data. One table (offset 0, the
symbols, then the escape with a negligible mass) built once by ``update_tables()`` with
:func:`tables.quantize_pmf`; every symbol uses it. Symbols outside the range are refused
(``ValueError``) rather than escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from neurocodec.entropy import tables
from neurocodec.entropy.models.base import TableEntropyModel

__all__ = ["AdaptiveCategorical", "Categorical"]


class _CategoricalModel(TableEntropyModel):
    """Coding of symbols in ``[0, num_symbols)`` with a single table built from :meth:`probabilities`."""

    def __init__(self, num_symbols: int, likelihood_bound: float = 1e-9):
        super().__init__(likelihood_bound)
        if not 1 <= num_symbols < 1 << tables.PRECISION:
            raise ValueError(f"num_symbols must be in [1, {(1 << tables.PRECISION) - 1}], got {num_symbols}")
        self.num_symbols = int(num_symbols)

    def probabilities(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The probability of every symbol, shape ``(num_symbols,)``, computed in ``dtype``."""
        raise NotImplementedError

    def _check_symbols(self, symbols: Tensor) -> Tensor:
        if symbols.dtype.is_floating_point or symbols.dtype.is_complex:
            raise ValueError(f"symbols must be integers, got {symbols.dtype}")
        if symbols.numel() and (symbols.min() < 0 or symbols.max() >= self.num_symbols):
            raise ValueError(f"symbols must lie in [0, {self.num_symbols})")
        return symbols.long()

    def forward(self, symbols: Tensor) -> Tensor:
        """The likelihood of each symbol (floored at ``likelihood_bound``), shaped like ``symbols``."""
        return self._bound(self.probabilities()[self._check_symbols(symbols)])

    def bits(self, symbols: Tensor) -> Tensor:
        """The total ideal code length ``-sum(log2 p)`` of ``symbols``, in bits."""
        return -torch.log2(self(symbols)).sum()

    @torch.no_grad()
    def update_tables(self) -> None:
        """Build the table from the current probabilities (float64, on the CPU), once."""
        pmf = self.probabilities(torch.float64).detach().cpu().numpy()
        cdf = tables.quantize_pmf(np.append(pmf, tables.ESCAPE_FLOOR))
        self._store_tables([cdf], np.zeros(1, dtype=np.int32))

    def compress(self, symbols: Tensor) -> bytes:
        """The rANS stream of ``symbols`` (any shape, row-major order)."""
        symbols = self._check_symbols(symbols).to(torch.int32)
        return self._encode(symbols, torch.zeros(symbols.numel(), dtype=torch.int32))

    def decompress(self, data: bytes, shape: Sequence[int]) -> Tensor:
        """The symbols as an int64 tensor of ``shape``, on the CPU."""
        shape = tuple(shape)
        indexes = torch.zeros(int(np.prod(shape, dtype=np.int64)), dtype=torch.int32)
        return self._decode(data, indexes).reshape(shape).long()


class Categorical(_CategoricalModel):
    """A learned distribution over ``num_symbols`` symbols: ``p = softmax(logits)``.

    Training minimizes :meth:`bits` (the cross-entropy, in bits) through the logits.
    """

    def __init__(self, num_symbols: int, likelihood_bound: float = 1e-9):
        super().__init__(num_symbols, likelihood_bound)
        self.logits = nn.Parameter(torch.zeros(self.num_symbols))

    def probabilities(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.softmax(self.logits.to(dtype), dim=0)


class AdaptiveCategorical(_CategoricalModel):
    """A distribution estimated from symbol counts: ``p(s) = (count(s) + pseudo_count) / sum``.

    :meth:`observe` accumulates counts (int64 buffer ``counts``, saved with the state_dict);
    the probabilities have no gradient. As for every model, ``update_tables`` then fixes the
    integer table; a decoder uses the table it receives, never one rebuilt from the counts.

    Args:
        num_symbols: alphabet size.
        pseudo_count: added to every symbol's count (0.5 is the Krichevsky–Trofimov estimator).
    """

    def __init__(self, num_symbols: int, pseudo_count: float = 0.5, likelihood_bound: float = 1e-9):
        super().__init__(num_symbols, likelihood_bound)
        if not pseudo_count > 0:
            raise ValueError(f"pseudo_count must be positive, got {pseudo_count}")
        self.pseudo_count = float(pseudo_count)
        self.register_buffer("counts", torch.zeros(self.num_symbols, dtype=torch.int64))

    @torch.no_grad()
    def observe(self, symbols: Tensor) -> None:
        """Add the occurrences of ``symbols`` to the counts."""
        flat = self._check_symbols(symbols).reshape(-1).to(self.counts.device)
        self.counts += torch.bincount(flat, minlength=self.num_symbols)

    def probabilities(self, dtype: torch.dtype = torch.float32) -> Tensor:
        c = self.counts.to(torch.float64) + self.pseudo_count
        return (c / c.sum()).to(dtype)
