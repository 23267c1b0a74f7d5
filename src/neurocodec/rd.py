"""Rate-distortion evaluation: measure codecs on image, audio or video files, average, compare (BD-rate), plot.

- :func:`evaluate_images`: per file, bpp from the real file size, PSNR and MS-SSIM of the
  8-bit output;
- :func:`evaluate_audio`: per file, kbit/s from the real file size, SNR and SI-SDR;
- :func:`mean_point`, :func:`mean_curve`: the averaged point of each setting; :func:`spread`: a
  shorter sweep with the same ends;
- :func:`curve_points`: a mean curve as ``(rate, quality)`` points: ``(bpp, PSNR or MS-SSIM
  dB)`` for images, ``(kbit/s, SNR or SI-SDR dB)`` for audio, ``(bpp, PSNR-Y or PSNR-YUV
  dB)`` for video (:func:`rd_row` measures video rows, :mod:`neurocodec.baselines` codes them);
- :func:`bd_rate`, :func:`bd_psnr`: Bjøntegaard deltas between two R-D curves, and
  :func:`bd_table` / :func:`bd_table_lines` for every codec against every anchor;
- :func:`plot_rd`: the curves as a PNG (matplotlib's Agg renderer).

Bjøntegaard deltas
------------------
A curve is a list of ``(bpp, psnr)`` points, in any order (any positive rate and any quality
in dB work the same way: ``(kbit/s, SNR)`` for audio). The quality axis may as well be
MS-SSIM in dB, ``-10 log10(1 - MS-SSIM)`` (:func:`curve_points` with ``metric="ms-ssim"``):
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

import io
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from neurocodec.codecs.base import Codec
from neurocodec.io.atomic import write_atomic
from neurocodec.io.image import read_image
from neurocodec.metrics import ms_ssim, ms_ssim_db, psnr, si_sdr, snr, video_psnr

__all__ = [
    "bd_psnr",
    "bd_rate",
    "bd_table",
    "bd_table_lines",
    "cpu_model",
    "curve_points",
    "evaluate_audio",
    "evaluate_images",
    "mean_curve",
    "mean_point",
    "overlap",
    "plot_rd",
    "rd_row",
    "spread",
]

Point = tuple[float, float]  # (bpp, PSNR in dB)
METHODS = ("pchip", "cubic")


def evaluate_images(codec: Codec, paths: Sequence[str | Path], effort: int = 0) -> list[dict]:
    """Per file: bytes and bpp of the complete file, PSNR and MS-SSIM (RGB, 8-bit output),
    encode/decode seconds (see :func:`rd_row`); each file encoded with ``effort`` (see
    :meth:`~neurocodec.codecs.base.Codec.encode`)."""
    rows = []
    for path in paths:
        x, _ = read_image(path)
        t0 = time.perf_counter()
        data = codec.encode(x, effort=effort)
        t1 = time.perf_counter()
        x_hat = codec.decode(data)
        t2 = time.perf_counter()
        rows.append(rd_row(path, x, data, x_hat, t1 - t0, t2 - t1))
    return rows


def evaluate_audio(codec: Codec, paths: Sequence[str | Path]) -> list[dict]:
    """Per audio file: bytes and kbit/s of the complete file, SNR and SI-SDR of the decoded
    float output, encode/decode seconds (see :func:`rd_row`). Each file is coded at its own
    sample rate, which the codec records (WaLLoC's audio model was trained at 44.1 kHz)."""
    from neurocodec.io.audio import read_audio  # soundfile, only where audio is read

    rows = []
    for path in paths:
        x, info = read_audio(path)
        t0 = time.perf_counter()
        data = codec.encode(x, info.sample_rate)
        t1 = time.perf_counter()
        x_hat = codec.decode(data)
        t2 = time.perf_counter()
        rows.append(rd_row(path, x, data, x_hat, t1 - t0, t2 - t1, sample_rate=info.sample_rate))
    return rows


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), for benchmark records."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def rd_row(
    path: str | Path,
    x,
    data: bytes,
    x_hat,
    encode_s: float,
    decode_s: float,
    *,
    sample_rate: int | None = None,
    frame_rate: float | None = None,
) -> dict:
    """One file's row: bytes and bpp of the coded file, PSNR and MS-SSIM (also in dB) of the
    8-bit output, timings. MS-SSIM is NaN for images under 161 pixels on a side.

    With ``sample_rate`` (Hz), ``x`` and ``x_hat`` are audio ``(C, T)`` and the row has
    ``kbps`` (8 * bytes over the duration ``T / sample_rate``, in kbit/s), ``snr`` and
    ``si_sdr`` (dB) of the float output instead of bpp, PSNR and MS-SSIM.

    With ``frame_rate`` (frames per second), ``x`` and ``x_hat`` are video planes ``(Y, U, V)``
    of ``(T, h, w)`` and the row has ``frames``, bpp (8 * bytes over ``T * H * W``), ``kbps``
    (over the duration ``T / frame_rate``) and :func:`~neurocodec.metrics.video_psnr`'s PSNR,
    frame-averaged: ``psnr_y``, ``psnr_u``, ``psnr_v``, ``psnr_yuv`` (6:1:1) and ``psnr`` (RGB).
    """
    if frame_rate is not None:
        frames, h, w = x[0].shape
        quality = video_psnr(x, x_hat)
        return {
            "file": Path(path).name,
            "frames": frames,
            "bytes": len(data),
            "bpp": 8 * len(data) / (frames * h * w),
            "kbps": 8 * len(data) / (frames / float(frame_rate)) / 1000,
            "psnr_y": quality["y"],
            "psnr_u": quality["u"],
            "psnr_v": quality["v"],
            "psnr_yuv": quality["yuv"],
            "psnr": quality["rgb"],
            "encode_s": encode_s,
            "decode_s": decode_s,
        }
    if sample_rate is not None:
        seconds = x.shape[-1] / sample_rate
        return {
            "file": Path(path).name,
            "bytes": len(data),
            "kbps": 8 * len(data) / seconds / 1000,
            "snr": snr(x, x_hat),
            "si_sdr": si_sdr(x, x_hat),
            "encode_s": encode_s,
            "decode_s": decode_s,
        }
    h, w = x.shape[-2:]
    similarity = ms_ssim(x, x_hat)
    return {
        "file": Path(path).name,
        "bytes": len(data),
        "bpp": 8 * len(data) / (h * w),
        "psnr": psnr(x, x_hat),
        "ms_ssim": similarity,
        "ms_ssim_db": ms_ssim_db(similarity),
        "encode_s": encode_s,
        "decode_s": decode_s,
    }


def mean_point(rows: Sequence[dict]) -> dict:
    """The mean bpp and PSNR (averaged in dB, as CompressAI reports it) of per-file rows, and
    their mean MS-SSIM and its dB form when the rows have it."""
    point = {key: sum(r[key] for r in rows) / len(rows) for key in ("bpp", "psnr")}
    if all("ms_ssim" in r for r in rows):
        point["ms_ssim"] = sum(r["ms_ssim"] for r in rows) / len(rows)
        point["ms_ssim_db"] = ms_ssim_db(point["ms_ssim"])
    return point


_MEANS = (
    "bytes",
    "bpp",
    "kbps",
    "psnr",
    "ms_ssim",
    "snr",
    "si_sdr",
    "psnr_y",
    "psnr_yuv",
    "encode_s",
    "decode_s",
)


def mean_curve(rows_by_setting: Mapping[object, Sequence[dict]] | Iterable[dict]) -> list[dict]:
    """One averaged point per setting: ``{"setting", "files", "bytes", "bpp", "psnr", "ms_ssim",
    "ms_ssim_db", "encode_s", "decode_s"}`` (means over the files; PSNR averaged in dB, MS-SSIM
    averaged and then put in dB as CompressAI does), in the order the settings come; keys the
    rows lack are left out. Audio rows give ``kbps``, ``snr`` and ``si_sdr`` (averaged in dB)
    instead; video rows ``bpp``, ``kbps``, ``psnr_y``, ``psnr_yuv`` and ``psnr`` (RGB).

    ``rows_by_setting`` maps each setting to its per-file rows, or is a flat list of rows that
    carry a ``"setting"`` key (as :func:`neurocodec.baselines.evaluate_baseline` gives).
    """
    if not isinstance(rows_by_setting, Mapping):
        grouped: dict[object, list[dict]] = {}
        for row in rows_by_setting:
            grouped.setdefault(row["setting"], []).append(row)
        rows_by_setting = grouped
    curve = []
    for setting, rows in rows_by_setting.items():
        if not rows:
            continue
        point: dict[str, object] = {"setting": setting, "files": len(rows)}
        for key in _MEANS:
            if all(key in r for r in rows):
                point[key] = sum(r[key] for r in rows) / len(rows)
        if "ms_ssim" in point:
            point["ms_ssim_db"] = ms_ssim_db(point["ms_ssim"])
        curve.append(point)
    return curve


def spread(sweep: Sequence, count: int | None) -> tuple:
    """``count`` settings of ``sweep``, evenly spread from its first to its last (all of them when
    ``count`` is None or not smaller): a short sweep with the same ends, as the notebooks' CI runs use."""
    if count is None or count >= len(sweep):
        return tuple(sweep)
    if count < 2:
        raise ValueError(f"a sweep needs at least 2 settings, not {count}")
    return tuple(sweep[round(i * (len(sweep) - 1) / (count - 1))] for i in range(count))


# the (rate, quality) keys of each metric's curves: images and video in bpp, audio in kbit/s
METRICS = {
    "psnr": ("bpp", "psnr"),
    "ms-ssim": ("bpp", "ms_ssim_db"),
    "snr": ("kbps", "snr"),
    "si-sdr": ("kbps", "si_sdr"),
    "psnr-y": ("bpp", "psnr_y"),
    "psnr-yuv": ("bpp", "psnr_yuv"),
}


def curve_points(curve: Sequence[Mapping], metric: str = "psnr") -> list[Point]:
    """``(rate, quality)`` points of a :func:`mean_curve`, for :func:`bd_rate` and
    :func:`plot_rd`: ``(bpp, PSNR)`` (``metric="psnr"``), ``(bpp, MS-SSIM dB)`` ("ms-ssim"),
    ``(kbit/s, SNR)`` ("snr"), ``(kbit/s, SI-SDR)`` ("si-sdr"), or for video ``(bpp, PSNR-Y)``
    ("psnr-y") or ``(bpp, PSNR-YUV)`` ("psnr-yuv"). Points whose quality is
    missing or not finite (a lossless file, an image too small for MS-SSIM) are left out."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    rate, key = METRICS[metric]
    return [(p[rate], p[key]) for p in curve if p.get(key) is not None and math.isfinite(p[key])]


# --------------------------------------------------------------------------------------------
# Bjøntegaard deltas


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
    ``bd_rate_percent`` None and ``error`` when the curves allow no delta. ``curves`` map names to
    ``(bpp, quality)`` points: PSNR or MS-SSIM in dB (:func:`curve_points`); the keys keep PSNR's
    names either way."""
    table = []
    for test in tests:
        for anchor in anchors:
            if test == anchor:
                continue
            entry: dict[str, object] = {"test": test, "anchor": anchor}
            try:
                entry["bd_rate_percent"] = bd_rate(curves[anchor], curves[test])
                entry["bd_psnr_db"] = bd_psnr(curves[anchor], curves[test])
                entry["psnr_interval_db"] = overlap(curves[anchor], curves[test])
            except ValueError as e:
                entry["bd_rate_percent"] = None
                entry["error"] = str(e)
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


# --------------------------------------------------------------------------------------------
# Plots


def plot_rd(
    curves: Mapping[str, Sequence[Point]],
    path: str | Path,
    title: str = "",
    *,
    xlim: tuple[float, float] | None = None,
    ylabel: str = "PSNR RGB (dB)",
    xlabel: str = "rate (bpp, from file sizes)",
) -> Path:
    """Write a PNG of R-D curves (``name -> [(rate, quality), ...]``, each drawn in rate order) to
    ``path`` atomically, replacing it; returns the path. Points of infinite PSNR (lossless) are
    left out; with ``xlim`` the PSNR axis fits the points in that rate range.

    Needs matplotlib. The figure is drawn without pyplot (Agg renders the PNG), so it changes
    no global matplotlib state and needs no display.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 5), dpi=120, layout="constrained")
    axes = figure.add_subplot()
    shown = []
    for name, points in curves.items():
        points = sorted((float(r), float(q)) for r, q in points if math.isfinite(q))
        if not points:
            continue
        bpp, quality = zip(*points, strict=True)
        axes.plot(bpp, quality, marker="o", markersize=3.5, linewidth=1.4, label=name)
        shown += [q for r, q in points if xlim is None or xlim[0] <= r <= xlim[1]]
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if xlim is not None:
        axes.set_xlim(*xlim)
        if shown:  # fit the PSNR axis to the points in view
            margin = 0.04 * (max(shown) - min(shown)) + 0.1
            axes.set_ylim(min(shown) - margin, max(shown) + margin)
    axes.grid(True, alpha=0.35)
    if axes.lines:
        axes.legend(loc="lower right")
    if title:
        axes.set_title(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    path = Path(path)
    write_atomic(path, buffer.getvalue(), overwrite=True)
    return path
