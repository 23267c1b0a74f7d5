"""Quantized integer CDF tables for the rANS coder (docs/bitstream.md §1).

Everything here is built once, offline, in float64, and then fixed as integers: the integer
tables are the model (ship them with the weights; never rebuild them separately on the encoder
and the decoder side).

- :func:`quantize_pmf` turns a probability vector (ordinary symbols, then the escape mass) into
  a 16-bit CDF with every frequency >= 1, choosing the integer frequencies that minimize the
  expected code length (cross-entropy) exactly, with a deterministic tie rule.
- :func:`gaussian_scale_table`, :func:`gaussian_tables` and :func:`scale_index` give the
  scale-indexed tables of a zero-mean Gaussian conditional (the hyperprior case): log-spaced
  scales, one symmetric table per scale, and a nearest-in-log-domain scale -> table rule.

Determinism: the output depends only on the input values. Every float operation is either an
IEEE basic operation (correctly rounded everywhere) or a scalar libm call (``math.erf``,
``math.erfc``, ``math.log1p``, ``math.exp``, ``math.log``) — no SIMD or GPU kernels, whose
results vary with the CPU. On one platform the output is bit-identical run to run; across C
libraries a special function may differ in its last bit, which can (very rarely) flip a
near-tie. That is why the tables are shipped as integers and the stream carries a table hash.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_SCALE_MAX",
    "DEFAULT_SCALE_MIN",
    "DEFAULT_TAIL_MASS",
    "ESCAPE_FLOOR",
    "PRECISION",
    "gaussian_pmf",
    "gaussian_scale_table",
    "gaussian_tables",
    "quantize_pmf",
    "scale_boundaries",
    "scale_index",
    "symmetric_tables",
]

#: CDF precision of the coder: frequencies sum to ``2**PRECISION``.
PRECISION = 16

# Defaults, chosen by measurement on workload G of eval/bench_entropy.py (1M symbols, scales
# log-uniform in [0.11, 64], zero means). "Ideal overhead" = cost of coding every symbol with its
# selected integer table (-log2(f / 2^16), escapes + their LEB128 bytes) over the exact Shannon
# information under N(0, s_i); it excludes the coder's own overhead (states, renormalization).
#
#   levels (tail 2^-16)   32: +0.117 %   48: +0.052 %   56: +0.041 %   64: +0.034 %
#   tail (64 levels)      2^-10: +0.067 %   2^-12: +0.040 %   2^-14: +0.033 %   2^-16: +0.034 %
#                         2^-20: +0.040 %   1e-9 (compressai's): +0.055 %
#
# A smaller tail mass adds entries that get the minimum frequency 1 and waste code space; a larger
# one escapes too often. 2^-16 sits in the flat optimum with escapes rare (6 in 1M symbols).
# Of the +0.034 %, +0.030 % is the scale quantization itself (float pmf at the table scale) and
# +0.004 % the 16-bit frequencies and escapes. Nearest-in-log is within 0.0003 % of the
# KL-optimal boundaries. Default set: 64 tables, 5,940 entries (11.9 KB as u16), built in ~10 ms.
# (CompressAI's default, 64 levels on [0.11, 256] rounded up, costs +0.158 %.)

#: Smallest table scale.
DEFAULT_SCALE_MIN = 0.11
#: Largest table scale.
DEFAULT_SCALE_MAX = 64.0
#: Number of log-spaced table scales.
DEFAULT_LEVELS = 64
#: Two-sided Gaussian mass left outside ``[-K, K]`` when choosing a table's support.
DEFAULT_TAIL_MASS = 2.0**-16

_MAX_PRECISION = 30  # int32 CDFs


# ---------------------------------------------------------------------------------------------
# pmf -> integer CDF


def _check_precision(precision: int) -> int:
    if isinstance(precision, bool) or not isinstance(precision, (int, np.integer)):
        raise ValueError(f"precision must be an int, got {precision!r}")
    precision = int(precision)
    if not 1 <= precision <= _MAX_PRECISION:
        raise ValueError(f"precision must be in [1, {_MAX_PRECISION}], got {precision}")
    return precision


def _as_pmf(pmf, precision: int) -> np.ndarray:
    p = np.asarray(pmf)
    if p.dtype == object or not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)):
        raise ValueError(f"pmf must be a real-valued array, got dtype {p.dtype}")
    p = p.astype(np.float64)
    if p.ndim != 1:
        raise ValueError(f"pmf must be 1-D, got shape {p.shape}")
    n = p.shape[0]
    if n < 2:
        raise ValueError(f"pmf needs at least 2 entries (symbols + escape), got {n}")
    if n > (1 << precision):
        raise ValueError(f"pmf has {n} entries, more than 2**precision = {1 << precision}")
    if not np.all(np.isfinite(p)):
        raise ValueError("pmf must be finite (no NaN or inf)")
    if np.any(p < 0):
        raise ValueError("pmf must be nonnegative")
    total = math.fsum(p.tolist())
    if not total > 0:
        raise ValueError("pmf must have a positive sum")
    if not math.isfinite(total):
        raise ValueError("pmf sum overflows")
    return p / total


def _initial_frequencies(p: np.ndarray, total: int) -> np.ndarray:
    """``max(1, rint(lam * p))`` with ``lam`` from water-filling: ``sum(max(1, lam * p)) = total``.

    A starting point close to the optimum, so that the exact greedy in :func:`_greedy` only
    needs a few moves even for extreme pmfs (one huge mass and 65535 tiny ones).
    """
    n = p.shape[0]
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    cs = np.cumsum(ps)
    j = np.arange(1, n + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = (total - (n - j)) / cs
        ok = (cs > 0) & (lam * ps >= 1.0)
    if not ok.any():  # only possible when n == total: all ones
        return np.ones(n, dtype=np.int64)
    jj = int(np.flatnonzero(ok)[-1])
    f = np.maximum(1, np.rint(lam[jj] * p)).astype(np.int64)
    return f


def _greedy(
    mass: Sequence[float],
    step: Sequence[int],
    weight: Sequence[int],
    freq: list[int],
    total: int,
) -> list[int]:
    """Exact integer minimization of ``-sum(mass[i] * log(freq[i]))`` s.t. ``sum(weight * freq) == total``.

    Variable ``i`` moves in steps of ``step[i]`` (``freq[i] >= 1`` always) and every move
    changes the constrained sum by the same amount ``u = step[i] * weight[i]``. The objective
    is separable and convex, so the greedy is exact on that lattice: first reach the target
    sum with the cheapest moves, then exchange a unit from the cheapest decrement to the
    largest increment while that strictly lowers the cost.

    The value of a move up from ``f`` is ``g(i, f) = mass[i] * log1p(step[i] / f)`` (a move down
    from ``f`` costs ``g(i, f - step[i])``: the same expression, so the float potential strictly
    grows with every exchange and the loop terminates). Ties go to the lowest index, for both
    increments and decrements.
    """
    n = len(mass)
    u = step[0] * weight[0]
    cur = sum(w * f for w, f in zip(weight, freq, strict=True))
    if (total - cur) % u:
        raise AssertionError("target not reachable")  # callers guarantee the parity

    def gain(i: int, f: int) -> float:
        return mass[i] * math.log1p(step[i] / f)

    # Lazy heaps: entries carry the frequency they were computed for; stale ones are skipped.
    up = [(-gain(i, freq[i]), i, freq[i]) for i in range(n)]
    down = [(gain(i, freq[i] - step[i]), i, freq[i]) for i in range(n) if freq[i] - step[i] >= 1]
    heapq.heapify(up)
    heapq.heapify(down)

    def push(i: int) -> None:
        f = freq[i]
        heapq.heappush(up, (-gain(i, f), i, f))
        if f - step[i] >= 1:
            heapq.heappush(down, (gain(i, f - step[i]), i, f))

    def top(heap: list) -> tuple | None:
        while heap:
            e = heap[0]
            if freq[e[1]] == e[2]:
                return e
            heapq.heappop(heap)
        return None

    while cur < total:
        _, i, _ = top(up)
        heapq.heappop(up)
        freq[i] += step[i]
        cur += u
        push(i)
    while cur > total:
        e = top(down)
        if e is None:
            raise ValueError("pmf cannot be quantized: too many entries for the precision")
        i = e[1]
        heapq.heappop(down)
        freq[i] -= step[i]
        cur -= u
        push(i)
    while True:
        a, b = top(up), top(down)
        if a is None or b is None:
            break
        g, i = -a[0], a[1]
        c, j = b[0], b[1]
        if not g > c or i == j:
            break
        heapq.heappop(up)
        heapq.heappop(down)
        freq[i] += step[i]
        freq[j] -= step[j]
        push(i)
        push(j)
    return freq


def quantize_pmf(pmf, precision: int = PRECISION) -> np.ndarray:
    """The integer CDF of ``pmf`` at ``precision`` bits that minimizes the expected code length.

    Args:
        pmf: 1-D array of ``n >= 2`` nonnegative finite probabilities: the ordinary symbols,
            then the escape mass as the last element. It is normalized by its (exactly
            rounded) sum, so it need not sum to exactly 1.
        precision: the frequencies sum to ``M = 2**precision`` (``n <= M``).

    Returns:
        ``cdf``, int32, length ``n + 1``: ``cdf[0] = 0``, ``cdf[n] = M``, strictly increasing
        (every frequency ``cdf[s+1] - cdf[s] >= 1``, also for entries of probability 0).

    Rule: among all integer frequencies ``f >= 1`` with ``sum(f) = M``, the ones minimizing the
    cross-entropy ``-sum(p * log2(f / M))`` (exact greedy on the convex separable objective,
    started from ``max(1, rint(lam * p))``; ties broken towards the lowest index). Deterministic:
    the same input gives the same output.

    Raises:
        ValueError: not 1-D, fewer than 2 or more than ``M`` entries, NaN/inf, negative, or a
            zero sum.
    """
    precision = _check_precision(precision)
    p = _as_pmf(pmf, precision)
    total = 1 << precision
    f0 = _initial_frequencies(p, total)
    n = p.shape[0]
    freq = _greedy(p.tolist(), [1] * n, [1] * n, f0.tolist(), total)
    cdf = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(freq, out=cdf[1:])
    assert cdf[-1] == total and min(freq) >= 1
    return cdf.astype(np.int32)


def _quantize_symmetric(center: float, side: np.ndarray, escape: float, precision: int) -> np.ndarray:
    """:func:`quantize_pmf` for ``[side[::-1], center, side, escape]`` with an exactly symmetric result.

    ``side[j-1]`` is the probability of each of ``-j`` and ``+j``. Variables: one frequency per
    pair (counted twice), the center and the escape (moved in steps of 2, so every move changes
    the sum by 2 and ``f_center + f_escape`` stays even). The greedy is exact within each of the
    two parity classes (center and escape both even, or both odd); both are solved and the one
    with the lower cross-entropy is kept (the first on a tie). So the result is the optimal
    symmetric table.
    """
    total = 1 << precision
    k = side.shape[0]
    full = np.concatenate([side[::-1], [center], side, [escape]])
    p = _as_pmf(full, precision)
    f_full = _initial_frequencies(p, total)
    pc, pe = float(p[k]), float(p[-1])
    ps = 2.0 * p[k + 1 : 2 * k + 1]  # mass of the pair {-j, +j}
    fc, fe = int(f_full[k]), int(f_full[-1])
    pairs = f_full[k + 1 : 2 * k + 1].tolist()  # p is exactly symmetric, so f_full is too
    mass = [pc, pe, *ps.tolist()]
    step = [2, 2] + [1] * k
    weight = [1, 1] + [2] * k
    starts = [(fc, fe), (fc + 1, fe + 1)] if (fc + fe) % 2 == 0 else [(fc + 1, fe), (fc, fe + 1)]
    best, best_cost = None, math.inf
    for c0, e0 in starts:
        try:
            freq = _greedy(mass, step, weight, [c0, e0, *pairs], total)
        except ValueError:  # this parity class cannot reach the total (tables of ~2^precision entries)
            continue
        cost = math.fsum(-m * math.log(f) for m, f in zip(mass, freq, strict=True) if m > 0)
        if cost < best_cost:
            best, best_cost = freq, cost
    if best is None:
        raise ValueError(f"a symmetric table of {2 * k + 2} entries does not fit in 2**{precision}")
    fc, fe, half = best[0], best[1], best[2:]
    f = np.array([*half[::-1], fc, *half, fe], dtype=np.int64)
    cdf = np.zeros(f.shape[0] + 1, dtype=np.int64)
    np.cumsum(f, out=cdf[1:])
    assert cdf[-1] == total and f.min() >= 1
    return cdf.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Gaussian conditional tables


def _check_scales_range(scale_min: float, scale_max: float) -> None:
    if not (math.isfinite(scale_min) and math.isfinite(scale_max) and 0 < scale_min < scale_max):
        raise ValueError(f"need 0 < scale_min < scale_max < inf, got {scale_min}, {scale_max}")


def gaussian_scale_table(
    scale_min: float = DEFAULT_SCALE_MIN,
    scale_max: float = DEFAULT_SCALE_MAX,
    levels: int = DEFAULT_LEVELS,
) -> np.ndarray:
    """``levels`` log-spaced scales from ``scale_min`` to ``scale_max`` (both included), float64.

    ``scale[i] = exp(log(scale_min) + i * (log(scale_max) - log(scale_min)) / (levels - 1))``,
    with the end points exactly ``scale_min`` and ``scale_max``.

    Default: 64 levels over [0.11, 64] (log step 0.101). With the nearest-in-log rule of
    :func:`scale_index` and the default tail mass, the table quantization costs +0.034 % over the
    exact Shannon information on workload G (measurements in the comment above the defaults).
    """
    scale_min, scale_max = float(scale_min), float(scale_max)
    _check_scales_range(scale_min, scale_max)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")
    levels = int(levels)
    lo, hi = math.log(scale_min), math.log(scale_max)
    out = [math.exp(lo + i * (hi - lo) / (levels - 1)) for i in range(levels)]
    out[0], out[-1] = scale_min, scale_max
    return np.array(out, dtype=np.float64)


def _tail_multiplier(tail_mass: float) -> float:
    tail_mass = float(tail_mass)
    if not (0 < tail_mass < 1):
        raise ValueError(f"tail_mass must be in (0, 1), got {tail_mass}")
    return -NormalDist().inv_cdf(tail_mass / 2)


def gaussian_pmf(scale: float, support: int) -> tuple[float, np.ndarray, float]:
    """Exact float64 masses of ``round(y)``, ``y ~ N(0, scale)``, on ``[-support, support]``.

    Returns ``(center, side, escape)``: ``center = P(0)``; ``side[j-1] = P(j) = P(-j)`` for
    ``j = 1 … support``; ``escape = P(|round(y)| > support)``. Upper tails are computed with
    ``erfc`` of ``|k|`` (no cancellation against 1), the center with ``erf``.
    """
    s = float(scale)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"scale must be positive and finite, got {scale}")
    r = 1.0 / (s * math.sqrt(2.0))
    # upper tail Q((j - 0.5) / s) for j = 1 … support + 1, as erfc
    tails = [math.erfc((j - 0.5) * r) for j in range(1, support + 2)]
    side = np.array([0.5 * (tails[j] - tails[j + 1]) for j in range(support)], dtype=np.float64)
    center = math.erf(0.5 * r)
    escape = tails[support]
    return center, side, escape


ESCAPE_FLOOR = 1e-300  # keeps an escape a positive probability (quantize_pmf gives it frequency >= 1 anyway)


def symmetric_tables(
    scales,
    pmf: Callable[[float, int], tuple[float, np.ndarray, float]],
    tail_multiplier: float,
    precision: int = PRECISION,
) -> tuple[list[np.ndarray], np.ndarray]:
    """One exactly symmetric 16-bit table per scale of a zero-mean distribution.

    For scale ``s``: support ``K = ceil(s * tail_multiplier)`` (at least 1); entries ``-K … K``
    then the escape; ``pmf(s, K)`` gives ``(center, side, escape)`` masses (as
    :func:`gaussian_pmf`), the escape floored at :data:`ESCAPE_FLOOR`; ``offset = -K``. The
    integer frequencies minimize the cross-entropy like :func:`quantize_pmf`, under the extra
    constraint that the table is exactly symmetric (``f(-k) == f(k)``).

    Returns:
        ``(cdfs, offsets)``: a list of int32 CDFs (table ``t`` has ``2 K_t + 3`` values) and
        the int32 offsets.
    """
    precision = _check_precision(precision)
    sc = np.asarray(scales, dtype=np.float64).reshape(-1)
    if sc.size == 0:
        raise ValueError("need at least one scale")
    if not np.all(np.isfinite(sc)) or np.any(sc <= 0):
        raise ValueError("scales must be positive and finite")
    cdfs, offsets = [], []
    for s in sc.tolist():
        k = max(1, math.ceil(s * tail_multiplier))
        if 2 * k + 2 > (1 << precision):
            raise ValueError(f"scale {s} needs {2 * k + 2} entries, more than 2**precision")
        center, side, escape = pmf(s, k)
        cdfs.append(_quantize_symmetric(center, side, max(escape, ESCAPE_FLOOR), precision))
        offsets.append(-k)
    return cdfs, np.array(offsets, dtype=np.int32)


def gaussian_tables(
    scales,
    tail_mass: float = DEFAULT_TAIL_MASS,
    precision: int = PRECISION,
) -> tuple[list[np.ndarray], np.ndarray]:
    """One table per scale for ``round(y)``, ``y ~ N(0, scale)`` (:func:`symmetric_tables`):
    the support ``K = ceil(s * z)`` has ``z`` the upper ``tail_mass / 2`` quantile of N(0, 1)."""
    return symmetric_tables(scales, gaussian_pmf, _tail_multiplier(tail_mass), precision)


def scale_boundaries(table_scales) -> np.ndarray:
    """Decision boundaries of :func:`scale_index`: ``b[i] = sqrt(t[i] * t[i+1])`` (float64)."""
    t = np.asarray(table_scales, dtype=np.float64).reshape(-1)
    if t.size == 0:
        raise ValueError("need at least one table scale")
    if not np.all(np.isfinite(t)) or np.any(t <= 0) or np.any(np.diff(t) <= 0):
        raise ValueError("table scales must be positive, finite and strictly increasing")
    return np.sqrt(t[:-1] * t[1:])


_INDEX_BLOCK = 1 << 16  # symbols per block of the fast path (keeps the temporaries in cache)


def _log_grid(t: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    """``(log t[0], 1 / log_step)`` when ``t`` is log-uniform enough for the fast path, else None.

    The fast path guesses the index from ``log(s)`` on the uniform grid and then corrects it
    with exact comparisons against the boundaries, which fixes a guess off by one in either
    direction. That needs every boundary within a quarter step of its grid position.
    """
    if t.size < 3:
        return None
    lt = np.log(t)
    step = (lt[-1] - lt[0]) / (t.size - 1)
    if not step > 0:
        return None
    xb = (np.log(b) - lt[0]) / step + 0.5
    if np.abs(xb - np.arange(1, t.size)).max() > 0.25:
        return None
    return float(lt[0]), float(1.0 / step)


def scale_index(scales_of_symbols, table_scales) -> np.ndarray:
    """The table index for each symbol's scale: the nearest table scale in the log domain.

    Exact rule: with boundaries ``b[i] = sqrt(t[i] * t[i+1])`` computed in float64 (product
    then square root, both correctly rounded; :func:`scale_boundaries`), the index of a scale
    ``s`` (converted to float64, which is exact) is the number of boundaries ``b[i] <= s``. So a
    scale exactly on a boundary goes to the larger table scale, a scale equal to a table scale
    gets that table, scales below ``t[0]`` (zero included) get 0 and scales above ``t[-1]`` get
    ``len(t) - 1``. The result is defined by float64 comparisons only, so it is identical on
    every platform for identical input scales. (For log-uniform tables a faster path guesses
    the index from ``log(s)`` and then corrects it with those same comparisons; the result is
    always that of ``np.searchsorted(b, s, side="right")``.)

    Args:
        scales_of_symbols: array-like of any shape (numpy, torch CPU tensor, list), float.
        table_scales: the strictly increasing table scales (e.g. :func:`gaussian_scale_table`).

    Returns:
        int32 array of the same shape.

    Raises:
        ValueError: a NaN, an infinity or a negative scale.
    """
    t = np.asarray(table_scales, dtype=np.float64).reshape(-1)
    b = scale_boundaries(t)
    if hasattr(scales_of_symbols, "detach"):  # torch tensor
        scales_of_symbols = scales_of_symbols.detach().cpu().numpy()
    s = np.asarray(scales_of_symbols)
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise ValueError(f"scales must be real numbers, got dtype {s.dtype}")
    if s.size and not np.isfinite(s).all():
        raise ValueError("scales must be finite (got NaN or inf)")
    if s.size and s.min() < 0:
        raise ValueError("scales must be nonnegative")
    shape = s.shape
    s = s.reshape(-1)
    grid = _log_grid(t, b)
    if grid is None or s.size < 1024:
        return np.searchsorted(b, s.astype(np.float64), side="right").astype(np.int32).reshape(shape)
    lb0, inv_step = grid
    last = t.size - 1
    b_hi = np.append(b, np.inf)  # b_hi[c] = b[c]: the boundary above table c
    b_lo = np.concatenate([[-np.inf], b])  # b_lo[c] = b[c - 1]: the boundary below table c
    out = np.empty(s.size, dtype=np.int32)
    blk = min(_INDEX_BLOCK, s.size)
    sv, x, g = np.empty(blk), np.empty(blk), np.empty(blk)
    c, m = np.empty(blk, dtype=np.int32), np.empty(blk, dtype=bool)
    for a in range(0, s.size, blk):
        n = min(blk, s.size - a)
        sb, xb, gb, cb, mb = sv[:n], x[:n], g[:n], c[:n], m[:n]
        sb[...] = s[a : a + n]  # exact conversion to float64
        with np.errstate(divide="ignore"):
            np.log(sb, out=xb)  # log(0) = -inf: clipped to table 0 below
        xb -= lb0
        xb *= inv_step
        xb += 0.5
        np.clip(xb, 0, last, out=xb)
        cb[...] = xb  # truncation = floor: the guess, off by at most one
        np.take(b_hi, cb, out=gb)
        np.greater_equal(sb, gb, out=mb)
        cb += mb
        np.take(b_lo, cb, out=gb)
        np.less(sb, gb, out=mb)
        cb -= mb
        out[a : a + n] = cb
    return out.reshape(shape)
