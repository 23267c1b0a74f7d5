"""Bjøntegaard deltas between R-D curves (:func:`bd_rate`, :func:`bd_psnr`), and tables of them.

A curve is a list of ``(bpp, psnr)`` points, in any order (any positive rate and any quality
in dB work the same way: ``(kbit/s, SNR)`` for audio). The quality axis may as well be
MS-SSIM in dB, ``-10 log10(1 - MS-SSIM)`` (:func:`~neurocodec.evaluation.rows.curve_points` with ``metric="ms-ssim"``):
a BD-rate over MS-SSIM is :func:`bd_rate` of such curves, as CompressAI and the papers report it. :func:`bd_rate` is the average
difference of log-rate over the PSNR interval where both curves have points, as a percentage
(negative: ``test`` needs fewer bits than ``anchor`` for the same PSNR); :func:`bd_psnr` is
the average PSNR difference over the common log-rate interval (positive: ``test`` is better).

``method="pchip"`` (the default) interpolates each curve with piecewise cubic Hermite
polynomials whose slopes are chosen as in PCHIP (Fritsch-Carlson, monotone where the data is;
end slopes as MATLAB's and SciPy's ``pchip``) and integrates them exactly. This is the
interpolation of the JCT-VC/JVET BD-rate spreadsheets and of the ``bjontegaard`` package's
``method="pchip"`` (the one our published-curve comparisons use; tests/test_rd.py checks it
against SciPy and against BD-rates computed with that package); it needs two or more points
per curve and copes with any number of them. ``method="cubic"`` is Bjøntegaard's original
VCEG-M33 form: one least-squares cubic polynomial per curve (four or more points), which can
oscillate on long curves such as a 13-point JPEG sweep. The integration interval is always
the overlap only, as those tools do; :func:`overlap` gives it, and a report should print it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["METHODS", "Point", "bd_psnr", "bd_rate", "bd_table", "bd_table_lines", "overlap"]

Point = tuple[float, float]  # (rate, quality in dB): (bpp, PSNR) for images
METHODS = ("pchip", "cubic")


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The derivatives at the knots of the PCHIP interpolant of ``y(x)`` (``x`` strictly increasing)."""
    h = np.diff(x)
    m = np.diff(y) / h
    if len(x) == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(x)
    # Interior: a weighted harmonic mean of the neighbouring secants, 0 at a local extremum.
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    same_sign = m[:-1] * m[1:] > 0
    safe_lo, safe_hi = np.where(same_sign, m[:-1], 1.0), np.where(same_sign, m[1:], 1.0)
    d[1:-1] = np.where(same_sign, (w1 + w2) / (w1 / safe_lo + w2 / safe_hi), 0.0)
    # Ends: a one-sided three-point estimate, kept shape-preserving.
    for end, (h0, h1, m0, m1) in ((0, (h[0], h[1], m[0], m[1])), (-1, (h[-1], h[-2], m[-1], m[-2]))):
        slope = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(slope) != np.sign(m0):
            slope = 0.0
        elif np.sign(m0) != np.sign(m1) and abs(slope) > 3 * abs(m0):
            slope = 3 * m0
        d[end] = slope
    return d


def _hermite(x: np.ndarray, y: np.ndarray, d: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The cubic Hermite interpolant with knots ``x``, values ``y`` and slopes ``d`` at ``t``."""
    k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    s = (t - x[k]) / h
    return (
        (2 * s**3 - 3 * s**2 + 1) * y[k]
        + (s**3 - 2 * s**2 + s) * h * d[k]
        + (-2 * s**3 + 3 * s**2) * y[k + 1]
        + (s**3 - s**2) * h * d[k + 1]
    )


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """The exact integral from ``lo`` to ``hi`` (inside ``[x[0], x[-1]]``) of the PCHIP interpolant:
    two-point Gauss-Legendre on each piece between knots, exact for cubics."""
    d = _pchip_slopes(x, y)
    edges = np.unique(np.concatenate([[lo, hi], x[(x > lo) & (x < hi)]]))
    a, b = edges[:-1], edges[1:]
    mid, half = (a + b) / 2, (b - a) / 2
    offset = half / math.sqrt(3)
    return float(np.sum(half * (_hermite(x, y, d, mid - offset) + _hermite(x, y, d, mid + offset))))


def _cubic_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """The integral from ``lo`` to ``hi`` of the least-squares cubic through the points (VCEG-M33)."""
    antiderivative = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo))


def _curve(points: Iterable[Point], name: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(log10 bpp, PSNR) of a curve's points as arrays, checked."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    array = np.asarray([(float(r), float(q)) for r, q in points], dtype=np.float64).reshape(-1, 2)
    need = 4 if method == "cubic" else 2
    if len(array) < need:
        raise ValueError(f"the {name} curve has {len(array)} points; {method} BD needs at least {need}")
    if not np.all(np.isfinite(array)) or np.any(array[:, 0] <= 0):
        raise ValueError(f"the {name} curve needs finite points with a positive rate")
    return np.log10(array[:, 0]), array[:, 1]


def _delta(anchor: Iterable[Point], test: Iterable[Point], method: str, over_psnr: bool) -> float:
    """The mean of (test - anchor) over the common interval of the free variable: log-rate as a
    function of PSNR (``over_psnr``), or PSNR as a function of log-rate."""
    curves = []
    for name, points in (("anchor", anchor), ("test", test)):
        log_rate, quality = _curve(points, name, method)
        x, y = (quality, log_rate) if over_psnr else (log_rate, quality)
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        if np.any(np.diff(x) <= 0):
            axis = "PSNR" if over_psnr else "rate"
            raise ValueError(f"two points of the {name} curve have the same {axis}; drop one")
        curves.append((x, y))
    (xa, ya), (xt, yt) = curves
    lo, hi = max(xa[0], xt[0]), min(xa[-1], xt[-1])
    if not lo < hi:
        axis = "PSNR" if over_psnr else "rate"
        raise ValueError(f"the curves do not overlap in {axis}: no Bjøntegaard delta")
    integral = _pchip_integral if method == "pchip" else _cubic_integral
    return (integral(xt, yt, lo, hi) - integral(xa, ya, lo, hi)) / (hi - lo)


def bd_rate(anchor: Iterable[Point], test: Iterable[Point], method: str = "pchip") -> float:
    """The Bjøntegaard delta rate of ``test`` against ``anchor``, in percent: the average rate
    change at equal PSNR over the PSNR interval both curves cover (negative: ``test`` is better).

    Curves are ``(bpp, psnr)`` points in any order; ``method`` is "pchip" (default) or "cubic"
    (see the module's docstring). Raises ValueError for curves that are too short, do not
    overlap, or have two points at the same PSNR.
    """
    return float(10 ** _delta(anchor, test, method, over_psnr=True) - 1) * 100


def bd_psnr(anchor: Iterable[Point], test: Iterable[Point], method: str = "pchip") -> float:
    """The Bjøntegaard delta PSNR of ``test`` against ``anchor``, in dB: the average PSNR gain at
    equal rate over the log-rate interval both curves cover (positive: ``test`` is better)."""
    return float(_delta(anchor, test, method, over_psnr=False))


def overlap(anchor: Iterable[Point], test: Iterable[Point]) -> tuple[float, float] | None:
    """The PSNR interval (dB) :func:`bd_rate` integrates over, or None when the curves do not overlap."""
    a, t = np.asarray(list(anchor), float)[:, 1], np.asarray(list(test), float)[:, 1]
    lo, hi = max(a.min(), t.min()), min(a.max(), t.max())
    return (float(lo), float(hi)) if lo < hi else None


def bd_table(
    curves: Mapping[str, Sequence[Point]], tests: Sequence[str], anchors: Sequence[str]
) -> list[dict]:
    """BD-rate (pchip) of each of ``tests`` against each of ``anchors`` (skipping a codec against
    itself): ``{"test", "anchor", "bd_rate_percent", "bd_psnr_db", "psnr_interval_db"}``, or
    ``bd_rate_percent`` None and ``error`` when the curves allow no delta (``bd_psnr_db`` None alone
    when they overlap in quality but not in rate). ``curves`` map names to
    ``(bpp, quality)`` points: PSNR or MS-SSIM in dB (:func:`~neurocodec.evaluation.rows.curve_points`); the keys keep PSNR's
    names either way."""
    table = []
    for test in tests:
        for anchor in anchors:
            if test == anchor:
                continue
            entry: dict[str, object] = {"test": test, "anchor": anchor}
            try:
                entry["bd_rate_percent"] = bd_rate(curves[anchor], curves[test])
            except ValueError as e:
                entry["bd_rate_percent"] = None
                entry["error"] = str(e)
            else:
                try:  # over rate: the curves may overlap in quality and not in rate
                    entry["bd_psnr_db"] = bd_psnr(curves[anchor], curves[test])
                except ValueError:
                    entry["bd_psnr_db"] = None
                entry["psnr_interval_db"] = overlap(curves[anchor], curves[test])
            table.append(entry)
    return table


def bd_table_lines(table: Sequence[dict], tests: Sequence[str], anchors: Sequence[str]) -> list[str]:
    """A :func:`bd_table` as aligned text: a row per test, a column per anchor, BD-rate in %."""
    cells = {(e["test"], e["anchor"]): e["bd_rate_percent"] for e in table}
    rows = [["test \\ anchor", *anchors]]
    for test in tests:
        row = [test]
        for anchor in anchors:
            value = cells.get((test, anchor))
            row.append("-" if test == anchor else "n/a" if value is None else f"{value:+.1f} %")
        rows.append(row)
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(w) if c else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
