"""R-D plots: curves of ``(rate, quality)`` points as a PNG, drawn without pyplot."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from neurocodec.evaluation.bd import Point
from neurocodec.io.atomic import write_atomic

__all__ = ["plot_rd"]


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
