"""Gaussian mixture conditional: training likelihoods, and per-symbol tables by integer arithmetic.

Training: ``p(y) = sum_k w_k P(round(y) | N(mu_k, s_k))`` with ``w = softmax(weight logits)``,
scales lower-bounded by ``scale_bound``, likelihood floored at ``likelihood_bound``. The coded
values are ``round(y)`` (the means enter the tables, not the values).

Coding scheme (deterministic: integer operations only once the parameters are integers):

1. Parameters -> integers (:meth:`GaussianMixtureConditional.quantize_parameters`, the FLOAT
   path, exact across devices only for bit-identical inputs; a deterministic prior path supplies
   the integers directly): scale -> scale-table index ``t`` (:func:`tables.scale_index`), mean ->
   ``m = round(mean * 2^mean_bits)`` (clamped to ``±MEAN_LIMIT`` integer units), weights ->
   ``floor(softmax * 2^weight_bits)`` with the remainder added to the largest (first on ties),
   so they sum to ``2^weight_bits``.
2. Component tables, built once by ``update_tables()`` (float64, scalar libm, then
   :func:`tables.quantize_pmf`) and stored in the buffers: for every scale-table entry ``t`` and
   mean phase ``phi`` in ``0 … 2^mean_bits - 1``, the 16-bit frequencies ``F[t, phi][u]`` of
   ``round(Y) - j``, ``Y ~ N(j + phi / 2^mean_bits, s_t)``, for ``u`` in ``[-K_t, K_t + 1]``, plus
   an escape frequency ``E[t, phi]`` (``K_t`` as in :func:`tables.gaussian_tables`).
3. Per symbol, with ``j_k = m_k >> mean_bits`` and ``phi_k = m_k & (2^mean_bits - 1)``: over the
   union window ``[L, R]`` of the components with ``w_k > 0``, the integer mass
   ``P(v) = sum_k w_k F[t_k, phi_k][v - j_k]`` (0 outside a component's range) and the escape
   ``E = sum_k w_k E[t_k, phi_k]``; they sum to ``2^(weight_bits + 16)`` exactly. The 16-bit
   frequencies are ``1 + (P * (2^16 - n)) >> (weight_bits + 16)`` for each of the ``n = R - L + 2``
   entries (escape included), and the remainder goes to the most probable value (first on ties).
   Every step is int64 numpy arithmetic on whole batches.
4. Every symbol gets its own table in one :class:`~neurocodec.entropy.coder.TableSet` (offset
   ``L``), and the values are coded as one rANS stream with table index ``i`` for symbol ``i``.

Cost and limitations: one table is built per symbol, so time and memory grow with the summed
window widths (about ``2 K_t + 2`` entries per component, more when the means are far apart).
Measured with K = 3 on a 2-core CPU (100k symbols, encode and decode alike): about 450k
symbols/s for scales in [0.11, 0.5] (~12 entries per table), 160k/s for [1, 10] (~60), 40k/s
for [0.11, 64] (~200); roughly a third of it is the TableSet construction (a Python step per
table). All parameters must be known before a call, so an autoregressive or multi-pass model
makes one call (one stream) per pass; split very large tensors into several calls.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import torch
from torch import Tensor

from neurocodec.entropy import coder, tables
from neurocodec.entropy.models.base import EntropyModel, lower_bound, scale_table_bits, scale_table_from_bits
from neurocodec.entropy.models.gaussian import gaussian_interval_mass

__all__ = ["MEAN_LIMIT", "GaussianMixtureConditional"]

#: Means are clamped to ``[-MEAN_LIMIT, MEAN_LIMIT]`` (so every window fits in a 16-bit table).
MEAN_LIMIT = 1 << 13
_BATCH = 1 << 14  # symbols per batch of the table construction
_ESCAPE_FLOOR = 1e-300


def _component_pmf(scale: float, phase: float, support: int) -> list[float]:
    """Masses of ``round(Y)`` for ``u = -support … support + 1``, then the escape; ``Y ~ N(phase, scale)``.

    Each interval mass is a difference of two tails on the same side of the mean (``erfc``, no
    cancellation against 1), or one minus both tails when the interval contains the mean.
    """
    r = 1.0 / (scale * math.sqrt(2.0))
    bounds = [(u - 0.5 - phase) * r for u in range(-support, support + 3)]
    masses = []
    for a, b in itertools.pairwise(bounds):
        if a >= 0:
            masses.append(0.5 * (math.erfc(a) - math.erfc(b)))
        elif b <= 0:
            masses.append(0.5 * (math.erfc(-b) - math.erfc(-a)))
        else:
            masses.append(1.0 - 0.5 * (math.erfc(-a) + math.erfc(b)))
    escape = 0.5 * (math.erfc(-bounds[0]) + math.erfc(bounds[-1]))
    return [*masses, max(escape, _ESCAPE_FLOOR)]


def _int64_rows(x: Tensor | np.ndarray, k: int) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"integer parameters must have an integer dtype, got {a.dtype}")
    if a.ndim == 0 or a.shape[-1] != k:
        raise ValueError(f"integer parameters must be shaped (..., {k}), got {a.shape}")
    return a.astype(np.int64).reshape(-1, k)


class GaussianMixtureConditional(EntropyModel):
    """``K``-component Gaussian mixture of ``round(y)``.

    The parameters are shaped ``(*y.shape, K)``: scales, means and weight logits (the weights
    are their softmax over the last dimension).

    Args:
        K: number of components.
        scale_table: table scales (default :func:`tables.gaussian_scale_table`).
        scale_bound: lower bound of the scales in the training likelihood.
        tail_mass: two-sided mass each component table leaves to the escape.
        mean_bits: the means' grid is ``2^-mean_bits`` (0 … 8).
        weight_bits: the integer weights sum to ``2^weight_bits`` (1 … 24).
        likelihood_bound: floor of the training likelihoods.
    """

    _table_buffers = ("component_freqs", "component_support", "scale_table_bits")

    def __init__(
        self,
        K: int = 3,
        scale_table=None,
        scale_bound: float = 0.11,
        tail_mass: float = tables.DEFAULT_TAIL_MASS,
        mean_bits: int = 4,
        weight_bits: int = 12,
        likelihood_bound: float = 1e-9,
    ):
        super().__init__(likelihood_bound)
        if not (0 <= mean_bits <= 8 and 1 <= weight_bits <= 24 and K >= 1):
            raise ValueError(
                f"need K >= 1, 0 <= mean_bits <= 8, 1 <= weight_bits <= 24; got {K}, {mean_bits}, {weight_bits}"
            )
        if not 0 < tail_mass < 1:
            raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
        self.K = int(K)
        self.scale_bound = float(scale_bound)
        self.tail_mass = float(tail_mass)
        self.mean_bits = int(mean_bits)
        self.weight_bits = int(weight_bits)
        self.scale_table_bits = scale_table_bits(scale_table)
        self._components: dict[str, np.ndarray] | None = None

    @property
    def scale_table(self) -> np.ndarray:
        """The table scales (float64; stored bit-exactly in the int64 buffer ``scale_table_bits``)."""
        return scale_table_from_bits(self.scale_table_bits)

    # -- training ---------------------------------------------------------------------------

    def _check_params(self, y: Tensor, *params: Tensor) -> None:
        for p in params:
            if tuple(p.shape) != (*y.shape, self.K):
                raise ValueError(f"parameters must be shaped {(*y.shape, self.K)}, got {tuple(p.shape)}")

    def likelihood(self, y_hat: Tensor, scales: Tensor, means: Tensor, weights: Tensor) -> Tensor:
        """Mixture probability of each (quantized or noisy) value; ``weights`` are logits."""
        self._check_params(y_hat, scales, means, weights)
        values = (y_hat.unsqueeze(-1) - means).abs()
        mass = gaussian_interval_mass(values, lower_bound(scales, self.scale_bound))
        return self._bound((torch.softmax(weights, dim=-1) * mass).sum(-1))

    def forward(
        self, y: Tensor, scales: Tensor, means: Tensor, weights: Tensor, mode: str | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(y_hat, likelihoods)``: ``mode`` "noise" (default in training) or "ste" (in eval)."""
        mode = self._default_mode(mode)
        if mode == "symbols":
            raise ValueError('forward needs a differentiable mode: "noise" or "ste"')
        y_hat = self.quantize(y, mode)
        return y_hat, self.likelihood(y_hat, scales, means, weights)

    # -- parameters -> integers (float path) ----------------------------------------------

    @torch.no_grad()
    def quantize_parameters(
        self, scales: Tensor, means: Tensor, weights: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(scale_indexes, mean_steps, int_weights)``, int32 CPU tensors shaped like the inputs.

        The FLOAT path (see the module docstring): exact across devices only for bit-identical
        inputs. ``weights`` are logits.
        """
        t = torch.from_numpy(tables.scale_index(scales, self.scale_table))
        limit = MEAN_LIMIT << self.mean_bits
        m = torch.round(means.detach().cpu().double() * (1 << self.mean_bits)).clamp(-limit, limit)
        total = 1 << self.weight_bits
        w = torch.floor(torch.softmax(weights.detach().cpu().double(), dim=-1) * total).to(torch.int64)
        first_max = w.argmax(dim=-1, keepdim=True)  # torch.argmax returns the first maximum
        w.scatter_add_(-1, first_max, total - w.sum(-1, keepdim=True))
        return t, m.to(torch.int32), w.to(torch.int32)

    # -- tables -----------------------------------------------------------------------------

    @torch.no_grad()
    def update_tables(self) -> None:
        """Build the integer component tables (one per scale and mean phase), once."""
        z = -NormalDist().inv_cdf(self.tail_mass / 2)
        phases = 1 << self.mean_bits
        support, freqs = [], []
        for s in self.scale_table.tolist():
            k = max(1, math.ceil(s * z))
            if 2 * k + 2 + 2 * MEAN_LIMIT + 1 > (1 << tables.PRECISION):
                raise ValueError(f"scale {s} is too wide for a mixture table")
            support.append(k)
            for phi in range(phases):
                freqs.append(np.diff(tables.quantize_pmf(_component_pmf(s, phi / phases, k))))
        self._set_table_buffers(
            component_freqs=np.concatenate(freqs).astype(np.int32),
            component_support=np.array(support, dtype=np.int32),
        )

    def _tables_changed(self) -> None:
        self._components = None

    @property
    def has_tables(self) -> bool:
        return self.component_support.numel() > 0

    def _component_arrays(self) -> dict[str, np.ndarray]:
        """Index arrays derived from the buffers: per table ``t`` and per component table ``t, phi``."""
        if self._components is None:
            if not self.has_tables:
                raise RuntimeError("GaussianMixtureConditional has no tables: call update_tables() first")
            support = self.component_support.cpu().numpy().astype(np.int64)
            length = 2 * support + 2  # ordinary entries; the escape follows
            sizes = np.repeat(length + 1, 1 << self.mean_bits)
            freqs = self.component_freqs.cpu().numpy().astype(np.int64)
            if support.size != self.scale_table.size or sizes.sum() != freqs.size:
                raise ValueError("component tables do not match the scale table and mean_bits")
            start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            self._components = {
                "lo": -support,
                "length": length,
                "start": start,
                "escape": freqs[start + sizes - 1],
                "freqs": freqs,
            }
        return self._components

    def _check_integers(self, t: np.ndarray, m: np.ndarray, w: np.ndarray) -> None:
        if not t.shape == m.shape == w.shape:
            raise ValueError("scale indexes, mean steps and weights must share a shape")
        if t.size and (t.min() < 0 or t.max() >= self.scale_table.size):
            raise ValueError("scale index out of range")
        limit = MEAN_LIMIT << self.mean_bits
        if m.size and (m.min() < -limit or m.max() > limit):
            raise ValueError(f"mean steps must lie in [-{limit}, {limit}]")
        if w.size and (w.min() < 0 or np.any(w.sum(1) != 1 << self.weight_bits)):
            raise ValueError(f"integer weights must be >= 0 and sum to 2**{self.weight_bits}")

    def _batch_cdfs(
        self, t: np.ndarray, m: np.ndarray, w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-symbol CDFs for a batch: ``(flat cdfs, cdf lengths, offsets)``; int64 arithmetic only."""
        c = self._component_arrays()
        total_bits = self.weight_bits + tables.PRECISION
        comp = (t << self.mean_bits) + (m & ((1 << self.mean_bits) - 1))
        lo = (m >> self.mean_bits) + c["lo"][t]
        length = c["length"][t]
        active = w > 0
        big = np.iinfo(np.int64).max
        first = np.where(active, lo, big).min(1)
        last = np.where(active, lo + length - 1, -big).max(1)
        n = last - first + 1  # ordinary entries per symbol
        starts = np.concatenate([[0], np.cumsum(n)[:-1]])
        rows = np.repeat(np.arange(n.size), n)
        mass = np.zeros(rows.size, dtype=np.int64)
        for k in range(self.K):  # add component k's frequencies, scaled by w_k, into each window
            count = np.where(active[:, k], length[:, k], 0)
            sym = np.repeat(np.arange(n.size), count)
            u = np.arange(sym.size) - np.repeat(np.cumsum(count) - count, count)  # entry in the table
            dest = starts[sym] + (lo[sym, k] - first[sym]) + u
            mass[dest] += w[sym, k] * c["freqs"][c["start"][comp[sym, k]] + u]
        escape = (w * c["escape"][comp]).sum(1)

        spare = (1 << tables.PRECISION) - (n + 1)  # frequency left after the floor of 1 per entry
        freq = 1 + ((mass * spare[rows]) >> total_bits)
        freq_escape = 1 + ((escape * spare) >> total_bits)
        remainder = (1 << tables.PRECISION) - np.add.reduceat(freq, starts) - freq_escape
        top = np.maximum.reduceat(mass, starts)
        candidates = np.where(mass == top[rows], np.arange(rows.size), rows.size)
        freq[np.minimum.reduceat(candidates, starts)] += remainder

        # CDF per symbol: 0, then the running sum of its n ordinary frequencies and its escape.
        cdf = np.zeros(rows.size + 2 * n.size, dtype=np.int64)
        head = starts + 2 * np.arange(n.size)  # where each symbol's CDF begins
        body = np.arange(rows.size) + 2 * rows + 1
        running = np.cumsum(freq)
        cdf[body] = running - (running[starts] - freq[starts])[rows]
        cdf[head + n + 1] = 1 << tables.PRECISION
        return cdf, n + 2, first

    def symbol_tables(self, scale_indexes: Tensor, mean_steps: Tensor, int_weights: Tensor) -> coder.TableSet:
        """One table per symbol (in row-major order) from the integer parameters."""
        t, m, w = (_int64_rows(x, self.K) for x in (scale_indexes, mean_steps, int_weights))
        self._check_integers(t, m, w)
        cdfs, sizes, offsets = [], [], []
        for a in range(0, t.shape[0], _BATCH):
            cdf, size, first = self._batch_cdfs(t[a : a + _BATCH], m[a : a + _BATCH], w[a : a + _BATCH])
            cdfs.append(cdf)
            sizes.append(size)
            offsets.append(first)
        if not cdfs:  # no symbols: a placeholder, since a table set needs one table
            return coder.TableSet([np.array([0, 1, 1 << tables.PRECISION])], np.zeros(1, np.int32))
        flat = np.concatenate(cdfs).astype(np.int32)
        ends = np.cumsum(np.concatenate(sizes)).tolist()
        return coder.TableSet([flat[a:b] for a, b in itertools.pairwise([0, *ends])], np.concatenate(offsets))

    # -- coding -----------------------------------------------------------------------------

    def compress(self, y: Tensor, scale_indexes: Tensor, mean_steps: Tensor, int_weights: Tensor) -> bytes:
        """The rANS stream of ``round(y)``, symbol ``i`` coded with its own mixture table."""
        if tuple(scale_indexes.shape) != (*y.shape, self.K):
            raise ValueError(
                f"parameters must be shaped {(*y.shape, self.K)}, got {tuple(scale_indexes.shape)}"
            )
        symbol_tables = self.symbol_tables(scale_indexes, mean_steps, int_weights)
        indexes = np.arange(y.numel(), dtype=np.int32)
        return coder.encode(self.quantize(y, "symbols").detach().cpu().contiguous(), indexes, symbol_tables)

    def decompress(
        self, data: bytes, scale_indexes: Tensor, mean_steps: Tensor, int_weights: Tensor
    ) -> Tensor:
        """The integers ``round(y)`` as float32 on the CPU, shaped ``scale_indexes.shape[:-1]``."""
        shape = tuple(scale_indexes.shape[:-1])
        symbol_tables = self.symbol_tables(scale_indexes, mean_steps, int_weights)
        values = coder.decode(data, np.arange(math.prod(shape), dtype=np.int32), symbol_tables)
        return torch.from_numpy(values).reshape(shape).to(torch.float32)
