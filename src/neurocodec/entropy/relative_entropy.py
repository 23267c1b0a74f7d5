"""Relative-entropy coding of factorised Gaussian posteriors with shared randomness.

A block of ``D`` parameters has a posterior ``q = N(mu_q, sigma_q^2)`` and a prior ``p = N(mu_p,
sigma_p^2)`` (diagonal). The encoder draws ``2^k`` samples from ``p`` with a *shared* sampler,
picks one index ``i`` with probability proportional to ``q(z_i) / p(z_i)`` (importance sampling
with the Gumbel-max trick, as RECOMBINER's A*-style coder does), and transmits ``i`` in ``k``
bits. The decoder regenerates ``z_i`` from ``(seed, block, i)`` alone: no search, no other sample.
When the block's KL(q || p) is about ``k`` bits (a few bits below), the chosen sample is close in
distribution to a sample of ``q`` (Havasi et al., 2019; Theis & Yosri, 2022), so a block costs
about its KL. :func:`group_blocks` splits parameters into blocks of about ``k`` bits of KL.

The sampler is counter-based. Sample ``i`` of block ``b`` under seed ``s`` has the standard-normal
coordinates ``n[j] = TABLE[splitmix64(key(s, b) + (i * D + j + 1) * GOLDEN) >> 48]``, ``j < D``:

- ``key(s, b) = splitmix64(splitmix64(s) ^ b)`` and every operation is uint64 arithmetic modulo
  2^64 (numpy), so the 64-bit words are a pure function of ``(s, b, i, j)``, whatever the
  thread count, machine or order of evaluation; ``splitmix64`` is a bijection of its state, so
  the words of one block are distinct;
- ``TABLE`` (:func:`normal_table`) holds the ``2^16`` standard-normal quantiles at the cell
  midpoints ``(t + 1/2) / 2^16``: the samples take 65,536 values, from -4.32 to 4.32, about
  4e-5 apart near 0, each within 1e-11 of the true quantile. The table is computed
  (:func:`computed_normal_table`) with float64 additions, multiplications and divisions only,
  in a fixed order and a fixed number of steps (a series of positive terms for the normal CDF,
  bisection for its inverse); IEEE 754 rounds each of these exactly, so the table is the same
  bits on every conforming platform (``tests/test_relative_entropy.py`` checks its hash, golden
  samples, and that the computation gives the copy that ships beside the module, which a
  process reads instead of spending 1.3 s computing it);
- a parameter's value is ``mu_p + sigma_p * n`` in float64: one exactly rounded multiplication
  and one exactly rounded addition (numpy does not fuse them), so encoder and decoder agree on
  it bit for bit given the same float64 prior.

Only the encoder's choice uses other arithmetic (logarithms of the weights, the Gumbel noise of
its own counter stream), and nothing the decoder computes depends on it but the index.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "TABLE_BITS",
    "TABLE_SHA256",
    "BlockChoice",
    "computed_normal_table",
    "decode_block",
    "decode_blocks",
    "encode_block",
    "gaussian_kl_bits",
    "group_blocks",
    "normal_table",
    "prior_samples",
    "standard_normals",
]

TABLE_BITS = 16  # the standard normals take 2^TABLE_BITS values
TABLE_FILE = Path(__file__).with_name("normal_table.f64")
TABLE_SHA256 = "91dfeb8c2044bfd13e7ada45de13365e66616ca59dca76cbfaaf1525de4f9144"
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1
_CHUNK = 1 << 22  # at most this many sample coordinates in memory at once (encoder)
_GUMBEL_STREAM = 0x6A09E667F3BCC909  # xored into the block id for the encoder's Gumbel noise


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function of the states ``x`` (uint64): a bijection of 64-bit words."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64, copy=True)
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def _mix(value: int) -> int:
    return int(splitmix64(np.array([value & _MASK], dtype=np.uint64))[0])


def stream_key(seed: int, block: int) -> int:
    """The 64-bit key of block ``block`` under ``seed`` (both taken modulo 2^64)."""
    return _mix(_mix(seed) ^ (block & _MASK))


def counter_words(seed: int, block: int, indexes: np.ndarray, dim: int) -> np.ndarray:
    """The uint64 words (len(indexes), dim) of samples ``indexes`` of a block of ``dim`` coordinates."""
    key = np.uint64(stream_key(seed, block))
    counters = indexes.astype(np.uint64)[:, None] * np.uint64(dim) + np.arange(1, dim + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return splitmix64(key + counters * GOLDEN)


# --------------------------------------------------------------------------------------------
# The quantile table


def _normal_cdf_upper(x: np.ndarray) -> np.ndarray:
    """Phi(x) for x >= 0 (float64 arrays) with +, *, / only, fixed order and term counts.

    ``Phi(x) = 1/2 + phi(x) S(x)`` with ``S(x) = sum_n x^(2n+1) / (2n+1)!!`` and ``phi(x) = 1 /
    (sqrt(2 pi) E(x^2 / 2))``, ``E(a) = sum_n a^n / n!``: positive terms (no cancellation);
    ``x <= 4.5`` needs fewer than the 130 and 90 terms taken."""
    x2 = x * x
    term, s = x.copy(), x.copy()
    for n in range(130):
        term = term * x2 / (2 * n + 3)
        s = s + term
    a = x2 / 2.0
    term, e = np.ones_like(x), np.ones_like(x)
    for n in range(1, 90):
        term = term * a / n
        e = e + term
    return 0.5 + s / (2.5066282746310002 * e)  # sqrt(2 pi), correctly rounded


@functools.cache
def normal_table() -> np.ndarray:
    """The 2^16 standard-normal quantiles at ``(t + 1/2) / 2^16`` (float64, read-only), symmetric:
    the copy that ships beside this module (``normal_table.f64``, little-endian) when its SHA-256
    is :data:`TABLE_SHA256`, else computed (:func:`computed_normal_table`, about 1.3 s; the tests
    check that the two agree bit for bit)."""
    try:
        data = TABLE_FILE.read_bytes()
    except OSError:
        data = b""
    if hashlib.sha256(data).hexdigest() == TABLE_SHA256:
        table = np.frombuffer(data, dtype="<f8").astype(np.float64)
    else:
        table = computed_normal_table()
    table.flags.writeable = False
    return table


def computed_normal_table() -> np.ndarray:
    """:func:`normal_table`, computed with exactly rounded float64 operations (module docstring)."""
    half = 1 << (TABLE_BITS - 1)
    targets = (np.arange(half, 2 * half, dtype=np.float64) + 0.5) / float(2 * half)
    low, high = np.zeros(half), np.full(half, 4.5)
    for _ in range(64):  # bisection to the last bit
        mid = (low + high) / 2.0
        below = _normal_cdf_upper(mid) < targets
        low = np.where(below, mid, low)
        high = np.where(below, high, mid)
    upper = (low + high) / 2.0
    return np.concatenate([-upper[::-1], upper])


def standard_normals(seed: int, block: int, indexes: np.ndarray, dim: int) -> np.ndarray:
    """The standard-normal coordinates (len(indexes), dim) of samples ``indexes`` of a block."""
    words = counter_words(seed, block, np.asarray(indexes), dim)
    return normal_table()[(words >> np.uint64(64 - TABLE_BITS)).astype(np.intp)]


def prior_samples(
    mu_p: np.ndarray, sigma_p: np.ndarray, seed: int, block: int, indexes: np.ndarray
) -> np.ndarray:
    """Samples ``indexes`` (len, D) of block ``block`` from the prior ``N(mu_p, sigma_p^2)`` (float64)."""
    mu_p, sigma_p = np.asarray(mu_p, np.float64), np.asarray(sigma_p, np.float64)
    return mu_p + sigma_p * standard_normals(seed, block, indexes, mu_p.size)


# --------------------------------------------------------------------------------------------
# Coding a block


def gaussian_kl_bits(mu_q, sigma_q, mu_p, sigma_p) -> np.ndarray:
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) of each coordinate, in bits (float64)."""
    mu_q, sigma_q, mu_p, sigma_p = (np.asarray(a, np.float64) for a in (mu_q, sigma_q, mu_p, sigma_p))
    ratio = (sigma_q / sigma_p) ** 2
    nats = 0.5 * (ratio + ((mu_q - mu_p) / sigma_p) ** 2 - 1.0 - np.log(ratio))
    return nats / math.log(2)


@dataclass(frozen=True)
class BlockChoice:
    """What the encoder chose for a block: the transmitted ``index``, the ``sample`` it decodes
    to (float64, D), and ``log_weight``, its log q/p in nats (about the block's KL in nats when
    the sample is typical of q)."""

    index: int
    sample: np.ndarray
    log_weight: float


def _gumbel(seed: int, block: int, indexes: np.ndarray) -> np.ndarray:
    words = counter_words(seed, block ^ _GUMBEL_STREAM, indexes, 1)[:, 0]
    u = ((words >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    return -np.log(-np.log(u))


def encode_block(mu_q, sigma_q, mu_p, sigma_p, seed: int, block: int, bits: int) -> BlockChoice:
    """Choose one of the ``2^bits`` shared prior samples of block ``block`` for the posterior ``q``:
    index ``argmax_i log q(z_i)/p(z_i) + G_i`` (Gumbel noise ``G_i`` of the encoder's own seeded
    stream), i.e. a draw from the importance weights."""
    if not 0 <= bits <= 30:
        raise ValueError(f"a block index has 0 to 30 bits, not {bits}")
    mu_q, sigma_q, mu_p, sigma_p = (
        np.asarray(a, np.float64).reshape(-1) for a in (mu_q, sigma_q, mu_p, sigma_p)
    )
    dim = mu_p.size
    count = 1 << bits
    step = max(1, _CHUNK // max(dim, 1))
    best = (-math.inf, 0, 0.0)
    log_norm = np.log(sigma_p / sigma_q).sum()
    for start in range(0, count, step):
        indexes = np.arange(start, min(count, start + step), dtype=np.uint64)
        n = standard_normals(seed, block, indexes, dim)
        z = mu_p + sigma_p * n
        log_w = log_norm + 0.5 * ((n * n).sum(1) - (((z - mu_q) / sigma_q) ** 2).sum(1))
        scores = log_w + _gumbel(seed, block, indexes)
        i = int(np.argmax(scores))
        if scores[i] > best[0]:
            best = (float(scores[i]), start + i, float(log_w[i]))
    index = best[1]
    sample = prior_samples(mu_p, sigma_p, seed, block, np.array([index]))[0]
    return BlockChoice(index=index, sample=sample, log_weight=best[2])


def decode_block(mu_p, sigma_p, seed: int, block: int, index: int) -> np.ndarray:
    """The sample (float64, D) that index ``index`` of block ``block`` codes: regenerated, no search."""
    mu_p = np.asarray(mu_p, np.float64).reshape(-1)
    sigma_p = np.asarray(sigma_p, np.float64).reshape(-1)
    return prior_samples(mu_p, sigma_p, seed, block, np.array([index], dtype=np.uint64))[0]


def decode_blocks(mu_p, sigma_p, seed: int, blocks, indexes, sizes) -> np.ndarray:
    """The samples of consecutive blocks, concatenated (float64, ``sum(sizes)``): block ``blocks[t]``
    covers the next ``sizes[t]`` coordinates of the prior ``mu_p``, ``sigma_p`` and is coded by
    ``indexes[t]``. The same values as :func:`decode_block` block by block, in one vectorised pass."""
    mu_p = np.asarray(mu_p, np.float64).reshape(-1)
    sigma_p = np.asarray(sigma_p, np.float64).reshape(-1)
    sizes = np.asarray(sizes, np.int64)
    if sizes.sum() != mu_p.size or (sizes <= 0).any():
        raise ValueError("the blocks' sizes must be positive and cover the prior")
    with np.errstate(over="ignore"):
        keys = splitmix64(np.uint64(_mix(seed)) ^ np.asarray(blocks, np.int64).astype(np.uint64))
        starts = np.cumsum(sizes) - sizes
        within = np.arange(mu_p.size, dtype=np.int64) - np.repeat(starts, sizes)
        counters = (np.repeat(np.asarray(indexes, np.int64) * sizes, sizes) + within + 1).astype(np.uint64)
        words = splitmix64(np.repeat(keys, sizes) + counters * GOLDEN)
    return mu_p + sigma_p * normal_table()[(words >> np.uint64(64 - TABLE_BITS)).astype(np.intp)]


# --------------------------------------------------------------------------------------------
# Grouping


def group_blocks(kl_bits: np.ndarray, bits: float) -> list[tuple[int, int]]:
    """Greedy split of parameters (in the order given) into consecutive blocks ``[start, stop)``
    of at most ``bits`` bits of KL each (``kl_bits`` per parameter); a parameter over ``bits`` on
    its own is a block of one. Every parameter is in exactly one block; none is empty."""
    kl = np.asarray(kl_bits, np.float64).reshape(-1)
    blocks, start, total = [], 0, 0.0
    for i, value in enumerate(kl):
        if i > start and total + value > bits:
            blocks.append((start, i))
            start, total = i, 0.0
        total += value
    if kl.size:
        blocks.append((start, kl.size))
    return blocks
