"""CDF tables (neurocodec.entropy.tables): properties, optimality, determinism, edge cases."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocodec.entropy.tables import (
    DEFAULT_LEVELS,
    DEFAULT_SCALE_MAX,
    DEFAULT_SCALE_MIN,
    DEFAULT_TAIL_MASS,
    gaussian_pmf,
    gaussian_scale_table,
    gaussian_tables,
    quantize_pmf,
    scale_boundaries,
    scale_index,
)

M = 1 << 16


def check_cdf(cdf: np.ndarray, n: int, precision: int = 16) -> np.ndarray:
    assert cdf.dtype == np.int32
    assert cdf.shape == (n + 1,)
    assert cdf[0] == 0
    assert cdf[-1] == 1 << precision
    f = np.diff(cdf.astype(np.int64))
    assert f.min() >= 1
    return f


def cross_entropy(p: np.ndarray, f: np.ndarray, total: int) -> float:
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum()
    return float(-(p * np.log2(f / total)).sum())


# --------------------------------------------------------------------------------------------
# quantize_pmf


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1e3, allow_nan=False), min_size=2, max_size=300).filter(
        lambda v: sum(v) > 0
    )
)
def test_quantize_pmf_properties(values):
    p = np.array(values)
    cdf = quantize_pmf(p)
    f = check_cdf(cdf, len(values))
    assert f.sum() == M
    assert np.array_equal(cdf, quantize_pmf(p))  # deterministic


def test_quantize_pmf_is_optimal_small():
    # Exhaustive check of the cross-entropy optimality on tiny alphabets and precisions.
    rng = np.random.default_rng(7)
    for _ in range(60):
        n = int(rng.integers(2, 5))
        precision = int(rng.integers(2, 6))
        total = 1 << precision
        if n > total:
            continue
        p = rng.random(n) ** rng.choice([1, 4, 12])
        if rng.random() < 0.2:
            p[rng.integers(n)] = 0.0
        f = np.diff(quantize_pmf(p, precision))
        best = min(
            cross_entropy(p, np.array(c), total)
            for c in itertools.product(range(1, total + 1), repeat=n)
            if sum(c) == total
        )
        assert cross_entropy(p, f, total) <= best + 1e-12


def test_quantize_pmf_not_worse_than_rounding():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.dirichlet(np.full(500, 0.3))
        f = np.diff(quantize_pmf(p)).astype(np.int64)
        g = np.maximum(1, np.rint(p * M)).astype(np.int64)
        g[np.argmax(g)] += M - g.sum()
        assert cross_entropy(p, f, M) <= cross_entropy(p, g, M) + 1e-15


def test_quantize_pmf_determinism_and_ties():
    p = np.array([0.25, 0.25, 0.25, 0.25, 1e-9])  # 5 entries: a forced, tied imbalance
    a = quantize_pmf(p)
    assert np.array_equal(a, quantize_pmf(p.copy()))
    assert np.array_equal(a, quantize_pmf(list(p)))
    f = np.diff(a)
    assert f.sum() == M and f[-1] == 1
    # the one unit taken from the four tied entries comes from the lowest index
    assert f.tolist() == [16383, 16384, 16384, 16384, 1]


def test_quantize_pmf_extremes():
    # one huge mass and a tiny escape
    f = np.diff(quantize_pmf(np.array([1.0, 1e-15])))
    assert f.tolist() == [M - 1, 1]
    # uniform over 65536 entries: every frequency 1
    f = np.diff(quantize_pmf(np.ones(M)))
    assert np.all(f == 1)
    # one huge mass and 65535 tiny ones: all forced to 1
    f = np.diff(quantize_pmf(np.r_[1.0, np.full(M - 1, 1e-12)]))
    assert np.all(f == 1)
    # entries of probability ~1e-12 (and exactly 0) get frequency 1
    p = np.r_[np.full(100, 1e-12), 0.0, np.full(10, 0.1)]
    f = np.diff(quantize_pmf(p))
    assert np.all(f[:101] == 1) and f.sum() == M
    assert abs(int(f[101:].max()) - int(f[101:].min())) <= 1
    # two entries with precision 1
    assert quantize_pmf(np.array([0.9, 0.1]), precision=1).tolist() == [0, 1, 2]
    # unnormalized input is normalized
    assert np.array_equal(quantize_pmf(np.array([2.0, 6.0])), quantize_pmf(np.array([0.25, 0.75])))


def test_quantize_pmf_close_to_rounding_for_smooth_pmfs():
    p = np.exp(-0.5 * (np.arange(-40, 41) / 9.0) ** 2)
    p /= p.sum()
    f = np.diff(quantize_pmf(p))
    assert np.abs(f - p * M).max() <= 1.0


@pytest.mark.parametrize(
    "bad",
    [
        np.array([0.5, np.nan]),
        np.array([0.5, np.inf]),
        np.array([0.5, -0.1, 0.6]),
        np.array([1.0]),
        np.array([]),
        np.zeros(3),
        np.ones((2, 2)),
        np.ones(M + 1),
        np.array(["a", "b"]),
    ],
)
def test_quantize_pmf_rejects(bad):
    with pytest.raises(ValueError):
        quantize_pmf(bad)


@pytest.mark.parametrize("precision", [0, 31, 16.0, True])
def test_quantize_pmf_rejects_precision(precision):
    with pytest.raises(ValueError):
        quantize_pmf(np.array([0.5, 0.5]), precision=precision)


# --------------------------------------------------------------------------------------------
# Gaussian tables


def test_scale_table():
    t = gaussian_scale_table()
    assert t.dtype == np.float64 and t.shape == (DEFAULT_LEVELS,)
    assert t[0] == DEFAULT_SCALE_MIN and t[-1] == DEFAULT_SCALE_MAX
    assert np.all(np.diff(t) > 0)
    steps = np.diff(np.log(t))
    assert np.allclose(steps, steps[0], rtol=1e-9)
    assert np.array_equal(t, gaussian_scale_table())
    assert gaussian_scale_table(1.0, 2.0, 2).tolist() == [1.0, 2.0]
    for args in [(0.0, 1.0, 4), (2.0, 1.0, 4), (0.1, math.inf, 4), (0.1, 1.0, 1), (0.1, 1.0, 2.5)]:
        with pytest.raises(ValueError):
            gaussian_scale_table(*args)


def test_gaussian_pmf_accurate():
    for s in [0.11, 0.5, 1.0, 7.3, 64.0]:
        k = 2 + math.ceil(6 * s)
        center, side, escape = gaussian_pmf(s, k)
        assert abs(center + 2 * side.sum() + escape - 1.0) < 1e-14
        assert np.all(side > 0) and np.all(np.diff(side) < 0)
        # against the float64 CDF where that has no cancellation problem
        j = np.arange(1, k + 1, dtype=np.float64)
        ref = (
            0.5
            * (
                torch.special.erfc(torch.from_numpy((j - 0.5) / (s * math.sqrt(2))))
                - torch.special.erfc(torch.from_numpy((j + 0.5) / (s * math.sqrt(2))))
            ).numpy()
        )
        assert np.allclose(side, ref, rtol=1e-12, atol=0)
    # far tail: tiny but positive and relatively accurate (no 1 - (1 - x) cancellation)
    _, side, escape = gaussian_pmf(0.11, 3)
    assert 0 < side[-1] < 1e-100 and 0 < escape < side[-1]


def test_gaussian_tables_default():
    t = gaussian_scale_table()
    cdfs, offsets = gaussian_tables(t)
    assert len(cdfs) == len(t) and offsets.dtype == np.int32 and offsets.shape == (len(t),)
    total_entries = 0
    prev_k = 0
    for cdf, off in zip(cdfs, offsets, strict=True):
        k = -int(off)
        assert k >= 1 and k >= prev_k
        prev_k = k
        f = check_cdf(cdf, 2 * k + 2)
        body = f[:-1]
        assert np.array_equal(body, body[::-1])  # symmetric
        assert body[k] == body.max()  # mode at 0
        assert np.all(np.diff(body[k:]) <= 0)  # unimodal
        total_entries += len(f)
    assert total_entries < 8000  # modest: under 16 KB as u16
    # deterministic
    cdfs2, offsets2 = gaussian_tables(t)
    assert all(np.array_equal(a, b) for a, b in zip(cdfs, cdfs2, strict=True))
    assert np.array_equal(offsets, offsets2)


def test_gaussian_tables_support():
    cdfs, offsets = gaussian_tables([0.01, 1.0, 10.0], tail_mass=DEFAULT_TAIL_MASS)
    z = -NormalDist().inv_cdf(DEFAULT_TAIL_MASS / 2)
    assert 4.3 < z < 4.4
    assert offsets.tolist() == [-1, -math.ceil(1.0 * z), -math.ceil(10.0 * z)]
    assert [len(c) for c in cdfs] == [2 * (-o) + 3 for o in offsets.tolist()]
    f = np.diff(cdfs[0])
    assert f.tolist() == [1, M - 3, 1, 1]


def test_gaussian_tables_optimal_among_symmetric():
    # Brute force over all symmetric 6-bit tables with K <= 2.
    total = 64
    for scale in [0.2, 0.3, 0.45]:
        cdfs, offsets = gaussian_tables([scale], precision=6)
        k = -int(offsets[0])
        assert k in (1, 2)
        center, side, escape = gaussian_pmf(scale, k)
        p = np.array([*side[::-1], center, *side, escape])
        got = cross_entropy(p, np.diff(cdfs[0]), total)
        best = math.inf
        for half in itertools.product(range(1, total), repeat=k):
            for fe in range(1, total):
                fc = total - fe - 2 * sum(half)
                if fc >= 1:
                    f = np.array([*half[::-1], fc, *half, fe])
                    best = min(best, cross_entropy(p, f, total))
        assert got <= best + 1e-12


@pytest.mark.parametrize(
    "kwargs", [{"scales": []}, {"scales": [0.0]}, {"scales": [np.nan]}, {"scales": [1.0], "tail_mass": 0.0}]
)
def test_gaussian_tables_rejects(kwargs):
    with pytest.raises(ValueError):
        gaussian_tables(**kwargs)


def test_gaussian_tables_ideal_overhead_workload_g():
    # A 200k-symbol slice of benchmark workload G: ideal cost of the default tables
    # (scale quantization + 16-bit frequencies + escapes) vs the exact Shannon information.
    n = 200_000
    rng = np.random.default_rng(12345)
    s = np.exp(rng.uniform(math.log(0.11), math.log(64.0), n))
    sym = np.rint(rng.standard_normal(n) * s).astype(np.int64)
    k = torch.from_numpy(np.abs(sym).astype(np.float64))
    sq = torch.from_numpy(s) * math.sqrt(2)
    p = 0.5 * (torch.special.erfc((k - 0.5) / sq) - torch.special.erfc((k + 0.5) / sq))
    shannon = torch.where(k == 0, -torch.log1p(-torch.special.erfc(0.5 / sq)), -torch.log(p)) / math.log(2)
    shannon = float(shannon.sum())

    t = gaussian_scale_table()
    cdfs, offsets = gaussian_tables(t)
    idx = scale_index(s, t)
    bits = 0.0
    for ti in np.unique(idx):
        v = sym[idx == ti] - offsets[ti]
        f = np.diff(cdfs[ti].astype(np.int64))
        e = len(f) - 1
        esc = (v < 0) | (v >= e)
        dist = np.where(v < 0, -2 * v - 1, 2 * (v - e))[esc]  # zig-zag distance, LEB128 bytes:
        leb = 1 + sum((dist >= (1 << (7 * j))).astype(np.int64) for j in range(1, 5))
        bits += float(np.sum(16 - np.log2(f[np.where(esc, e, v)])) + 8 * np.sum(leb))
    overhead = bits / shannon - 1
    assert 0 < overhead < 0.0008


# --------------------------------------------------------------------------------------------
# scale_index


def test_scale_index_rule():
    t = gaussian_scale_table()
    b = scale_boundaries(t)
    # exactly on a table scale
    assert scale_index(t, t).tolist() == list(range(len(t)))
    # below the minimum, zero, above the maximum
    assert scale_index([0.0, 1e-30, 0.05, t[0]], t).tolist() == [0, 0, 0, 0]
    assert scale_index([t[-1], 100.0, 1e30], t).tolist() == [len(t) - 1] * 3
    # exactly on a boundary: the larger table; one ulp below: the smaller
    assert scale_index(b, t).tolist() == list(range(1, len(t)))
    assert scale_index(np.nextafter(b, 0), t).tolist() == list(range(len(t) - 1))
    # nearest in the log domain
    rng = np.random.default_rng(0)
    s = np.exp(rng.uniform(math.log(0.05), math.log(100), 10_000))
    idx = scale_index(s, t)
    ref = np.argmin(np.abs(np.log(s)[:, None] - np.log(t)[None, :]), axis=1)
    near = np.abs(np.log(s / b[np.clip(ref - 1, 0, len(b) - 1)])) < 1e-12
    assert np.all((idx == ref) | near)


@pytest.mark.parametrize("levels", [3, 17, 64, 300])
def test_scale_index_fast_path_matches_rule(levels):
    # Large inputs take the log-grid path; it must equal the comparison rule everywhere,
    # including exactly on and one ulp around every boundary and table scale.
    t = gaussian_scale_table(levels=levels)
    b = scale_boundaries(t)
    rng = np.random.default_rng(levels)
    s = np.exp(rng.uniform(math.log(1e-3), math.log(1e4), 50_000))
    edge = np.concatenate(
        [b, np.nextafter(b, 0), np.nextafter(b, np.inf), t, np.nextafter(t, 0), [0.0, 5e-324]]
    )
    s = np.concatenate([s, np.tile(edge, 3)])
    rng.shuffle(s)
    assert np.array_equal(scale_index(s, t), np.searchsorted(b, s, side="right"))
    s32 = s.astype(np.float32)
    assert np.array_equal(scale_index(s32, t), np.searchsorted(b, s32.astype(np.float64), side="right"))
    # same answer whether the symbols come one by one (small path) or all at once
    assert np.array_equal(scale_index(edge, t), scale_index(np.tile(edge, 20), t)[: len(edge)])


def test_scale_index_non_uniform_table():
    t = np.array([0.1, 0.2, 5.0, 6.0, 100.0])
    s = np.exp(np.random.default_rng(3).uniform(-4, 6, 5000))
    assert np.array_equal(scale_index(s, t), np.searchsorted(scale_boundaries(t), s, side="right"))


def test_scale_index_types_and_shapes():
    t = gaussian_scale_table()
    s = np.exp(np.random.default_rng(1).uniform(-3, 5, (2, 3, 4)))
    idx = scale_index(s, t)
    assert idx.dtype == np.int32 and idx.shape == (2, 3, 4)
    assert np.array_equal(scale_index(torch.from_numpy(s), t), idx)
    s32 = s.astype(np.float32)
    assert np.array_equal(scale_index(s32, t), scale_index(s32.astype(np.float64), t))
    assert np.array_equal(scale_index(torch.from_numpy(s32), t), scale_index(s32, t))
    assert scale_index(np.zeros(0), t).shape == (0,)
    assert scale_index(5.0, t).shape == ()
    assert scale_index([0.1, 10.0], [3.0]).tolist() == [0, 0]


@pytest.mark.parametrize("bad", [[np.nan], [np.inf], [1.0, -np.inf], [-0.5]])
def test_scale_index_rejects(bad):
    with pytest.raises(ValueError):
        scale_index(np.array(bad), gaussian_scale_table())


@pytest.mark.parametrize("bad_table", [[], [1.0, 1.0], [2.0, 1.0], [0.0, 1.0], [1.0, np.nan]])
def test_scale_index_rejects_tables(bad_table):
    with pytest.raises(ValueError):
        scale_index([1.0], bad_table)
