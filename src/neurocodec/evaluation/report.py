"""The evaluation report: :func:`run_eval` measures an :class:`~neurocodec.evaluation.plan.EvalPlan`
(resumably, :mod:`~neurocodec.evaluation.runner`) and writes ``OUT/results.json``, the R-D plots
``OUT/rd.png`` and ``OUT/rd-<second metric>.png``; :func:`summary_lines` says what it found.

``results.json``: the command, date, version and machine; the data; what the metrics and the
BD-rates mean (``metrics``, ``bd``); notes; ``bd_rate`` (the first metric of the media: PSNR,
SNR or PSNR-Y) and ``bd_rate_<other>`` (MS-SSIM, SI-SDR or PSNR-YUV; for audio also ViSQOL, and
PESQ and STOI for speech, where measured) of each test against each anchor; for video ``bd_rate_per_file`` (each clip's own curves); and per codec its kind, its
description, its settings, its ``mean`` curve, CompressAI's ``results`` layout of that curve and
its ``per_file`` rows. Floats are rounded to 6 decimals, a non-finite one is null.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from neurocodec import __version__
from neurocodec.errors import OutputError, OutputExistsError
from neurocodec.evaluation.bd import bd_table, bd_table_lines
from neurocodec.evaluation.plan import EvalPlan
from neurocodec.evaluation.records import clean, machine, to_json
from neurocodec.evaluation.rows import METRICS, curve_points, mean_curve
from neurocodec.evaluation.runner import ROWS, RowStore, measure
from neurocodec.io.atomic import write_atomic

__all__ = ["MEDIA", "MediaReport", "check_outputs", "run_eval", "summary_lines"]


@dataclass(frozen=True)
class Metric:
    """A quality metric of the curves: its :data:`~neurocodec.evaluation.rows.METRICS` name, its
    key in CompressAI's "results", the axis label and the plot file."""

    name: str
    key: str
    label: str
    plot: str


@dataclass(frozen=True)
class MediaReport:
    """How a media is reported: its metrics (the first is the main one; the first two are always
    reported, the others where the rows have them), what its files are called, the rate axis, its
    unit and format, and what the metrics and BD-rates mean."""

    metrics: tuple[Metric, ...]
    files: str
    xlabel: str
    rate_unit: str
    rate_format: str
    metrics_description: str
    bd_description: str

    def bd_key(self, metric: Metric) -> str:
        """The report's key of the BD-rate table over ``metric``."""
        return "bd_rate" if metric is self.metrics[0] else f"bd_rate_{metric.name.replace('-', '_')}"

    def measured(self, codecs: dict[str, dict]) -> list[Metric]:
        """The metrics reported for ``codecs`` (their report entries): the first two, and each other
        that some codec's mean curve has (the perceptual audio scores need the audio-eval extra)."""
        return [
            m for i, m in enumerate(self.metrics)
            if i < 2 or any(curve_points(e["mean"], m.name) for e in codecs.values())
        ]  # fmt: skip


MEDIA = {
    "image": MediaReport(
        (
            Metric("psnr", "psnr-rgb", "PSNR RGB (dB)", "rd.png"),
            Metric("ms-ssim", "ms-ssim-rgb", "MS-SSIM RGB (dB)", "rd-ms-ssim.png"),
        ),
        "images", "rate (bpp, from file sizes)", "bpp", ".3f",
        "bpp = 8 * file bytes / pixels; PSNR of the 8-bit decoded RGB, averaged in dB over files; "
        "MS-SSIM (pytorch-msssim, RGB, 5 scales) of the 8-bit decoded image averaged over files, and in dB "
        "-10 log10(1 - mean MS-SSIM); encode/decode seconds per file",
        "Bjøntegaard delta rate (%) and PSNR (dB) of test vs anchor, pchip, over the PSNR interval both "
        "cover; bd_rate_ms_ssim: the same over MS-SSIM in dB (its bd_psnr_db and psnr_interval_db are in MS-SSIM dB)",
    ),
    "audio": MediaReport(
        (
            Metric("snr", "snr", "SNR (dB)", "rd.png"),
            Metric("si-sdr", "si-sdr", "SI-SDR (dB)", "rd-si-sdr.png"),
            Metric("visqol", "visqol", "ViSQOL v3 MOS-LQO", "rd-visqol.png"),
            Metric("pesq", "pesq", "PESQ (wide band) MOS-LQO", "rd-pesq.png"),
            Metric("stoi", "stoi", "STOI", "rd-stoi.png"),
        ),
        "audio files", "rate (kbit/s, from file sizes)", "kbit/s", ".1f",
        "kbps = 8 * file bytes / duration / 1000 (headers and container included), averaged over "
        "files; SNR (no gain fit) "
        "and SI-SDR (zero-mean, optimal gain, per channel averaged) in dB of the float decoded signal at the "
        "source rate, averaged in dB over files; conventional decoders' output is aligned to the source by "
        "cross-correlation first (whole samples, up to 8192); encode/decode seconds per file. Opus and MP3 "
        "optimize perception, not the waveform: the perceptual scores (pip install neurocodec[audio-eval]) "
        "compare them fairly: visqol, ViSQOL v3 MOS-LQO (visqol-python) of the mono mix, audio mode at 48 kHz "
        "for music, speech mode at 16 kHz (polynomial MOS mapping) for speech (files whose path says speech); "
        "for speech also pesq (ITU-T P.862.2 wide band MOS-LQO) and stoi (0-1) at 16 kHz; averaged over files",
        "Bjøntegaard delta rate (%) and SNR (dB, in the bd_psnr_db key) of test vs anchor, pchip, over "
        "the SNR interval both cover (psnr_interval_db); bd_rate_si_sdr, bd_rate_visqol, bd_rate_pesq, "
        "bd_rate_stoi: the same over SI-SDR, ViSQOL, PESQ and STOI (bd_psnr_db and psnr_interval_db in "
        "that metric's unit)",
    ),
    "video": MediaReport(
        (
            Metric("psnr-y", "psnr-y", "PSNR-Y (dB)", "rd.png"),
            Metric("psnr-yuv", "psnr-yuv", "PSNR-YUV 6:1:1 (dB)", "rd-psnr-yuv.png"),
        ),
        "videos", "rate (bpp, from file sizes)", "bpp", ".4f",
        "8-bit 4:2:0 (yuv420p) frames coded into an in-memory Matroska file and decoded by PyAV; "
        "bpp = 8 * file bytes / (frames * width * height) and kbps = 8 * file bytes / (frames / frame rate) "
        "/ 1000 (container included), averaged over files; PSNR-Y, -U, -V per frame against the source "
        "planes (peak 255), averaged over frames in dB; PSNR-YUV = (6 Y + U + V) / 8; psnr: PSNR of the "
        "8-bit RGB of both (BT.601, limited range), averaged over frames; all PSNRs then averaged in dB "
        "over files; encode/decode seconds per file (one encoder thread)",
        "Bjøntegaard delta rate (%) and PSNR-Y (dB, in the bd_psnr_db key) of test vs anchor, pchip, "
        "over the PSNR-Y interval both cover (psnr_interval_db), of the curves averaged over files; "
        "bd_rate_psnr_yuv: the same over PSNR-YUV; bd_rate_per_file: both for each file's own curves",
    ),
}  # fmt: skip


def check_outputs(out: Path, media: str, force: bool) -> None:
    """OutputExistsError if ``out`` holds a report or plots and ``force`` is not given."""
    for path in (out / "results.json", *(out / m.plot for m in MEDIA[media].metrics)):
        if os.path.lexists(path) and not force:
            raise OutputExistsError(f"{path} already exists (use -f to replace it)")


def _entry(plan: EvalPlan, name: str, rows: list[dict], weights: dict[int, str]) -> dict:
    """A codec's part of the report: what it is, its mean curve, CompressAI's results, its rows."""
    what = dict(plan.entries)[name]
    if plan.is_baseline(name):
        entry = {"kind": "baseline", "description": what.description, "setting": what.setting}
    else:
        entry = {
            "kind": "learned",
            "description": f"{name}, neurocodec {__version__}"
            + (f", effort {plan.effort}" if plan.effort else ""),
            "setting": "quality",
            "weights": weights,
            "effort": plan.effort,
        }
    curve = mean_curve(rows)
    entry["mean"] = curve
    metrics = MEDIA[plan.media].metrics
    rate = METRICS[metrics[0].name][0]
    entry["results"] = {  # CompressAI's layout: one entry per setting
        rate: [p[rate] for p in curve],
        **{
            m.key: [p.get(METRICS[m.name][1]) for p in curve]
            for m in metrics
            if any(METRICS[m.name][1] in p for p in curve)
        },
        "encoding_time": [p["encode_s"] for p in curve],
        "decoding_time": [p["decode_s"] for p in curve],
    }
    entry["per_file"] = rows
    return entry


def _bd_tables(plan: EvalPlan, codecs: dict[str, dict]) -> dict[str, object]:
    """The BD-rate tables of the report: over each metric, and for video per file too."""
    tests = [name for name in plan.tests if name in codecs]
    anchors = [name for name in plan.anchors if name in codecs]
    spec = MEDIA[plan.media]

    def table(curves: dict[str, list[dict]], metric: Metric) -> list[dict]:
        return bd_table({name: curve_points(c, metric.name) for name, c in curves.items()}, tests, anchors)

    means = {name: entry["mean"] for name, entry in codecs.items()}
    measured = spec.measured(codecs)
    tables: dict[str, object] = {spec.bd_key(m): table(means, m) for m in measured}
    per_file = {}  # video: each clip's own BD-rates too, which video papers average
    for path in plan.paths if plan.media == "video" else ():
        clip = {
            name: mean_curve([r for r in e["per_file"] if r["file"] == path.name])
            for name, e in codecs.items()
        }
        per_file[path.name] = {m.name: table(clip, m) for m in measured}
    if per_file:
        tables["bd_rate_per_file"] = per_file
    return tables


def _plot(report: dict, media: str, out: Path) -> None:
    """The report's R-D plots: the mean curves over each metric."""
    from neurocodec.evaluation.plots import plot_rd

    spec = MEDIA[media]
    codecs = report["codecs"]
    measured = spec.measured(codecs)
    curves = {m.name: {n: curve_points(e["mean"], m.name) for n, e in codecs.items()} for m in measured}
    top = max((p[0] for points in curves[spec.metrics[0].name].values() for p in points), default=1.0)
    title = f"{Path(report['data']['dir']).resolve().name}, {report['data']['count']} {spec.files}"
    xlim = (0, min(top * 1.03, 2.5) if media == "image" else top * 1.03)
    for m in measured:
        plot_rd(curves[m.name], out / m.plot, title, xlim=xlim, ylabel=m.label, xlabel=spec.xlabel)


def run_eval(
    plan: EvalPlan,
    out: str | Path,
    *,
    force: bool = False,
    command: str = "",
    progress: Callable[[str, int], None] | None = None,
) -> dict:
    """Measure ``plan`` into the folder ``out`` (created if needed): the rows go to
    ``out/rows.jsonl`` as they are measured, and a run stopped before the end resumes from there
    (``force``: start over, and replace the report and plots of an earlier run); then write
    ``out/results.json`` and the plots. Returns the report as written. ``command``: the command
    line recorded in the report; ``progress(name, count)``: see :func:`~neurocodec.evaluation.runner.measure`."""
    out = Path(out)
    check_outputs(out, plan.media, force)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output directory {out}: {e.strerror or e}") from None
    header = {
        "media": plan.media, "data": str(plan.data.resolve()), "effort": plan.effort,
        "frames": plan.frames if plan.media == "video" else None, "device": plan.device,
    }  # fmt: skip
    store = RowStore(out / ROWS, header, restart=force)
    measured = measure(plan, store, progress)
    codecs = {name: _entry(plan, name, rows, weights) for name, (rows, weights) in measured.items()}
    spec = MEDIA[plan.media]
    report = clean(
        {
            "command": command,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "neurocodec": __version__,
            "machine": machine(plan.device, plan.media),
            "data": {"dir": str(plan.data), "count": len(plan.paths), "files": [p.name for p in plan.paths]},
            "metrics": spec.metrics_description,
            "bd": spec.bd_description,
            "notes": list(plan.notes),
            **_bd_tables(plan, codecs),
            "codecs": codecs,
        }
    )
    write_atomic(out / "results.json", (to_json(report) + "\n").encode(), overwrite=True)
    _plot(report, plan.media, out)
    return report


def summary_lines(report: dict, plan: EvalPlan, out: str | Path) -> list[str]:
    """What ``neurocodec eval`` prints: each codec's range, the BD-rate tables, the files written."""
    spec = MEDIA[plan.media]
    main = spec.metrics[0]
    lines = []
    rate_key, quality_key = METRICS[main.name]
    for name, entry in report["codecs"].items():
        curve = entry["mean"]
        rates, qualities = [p[rate_key] for p in curve], [p[quality_key] for p in curve]
        qualities = [math.inf if q is None else q for q in qualities]  # null: lossless
        lines.append(
            f"{name}: {len(curve)} points, {min(rates):{spec.rate_format}}-{max(rates):{spec.rate_format}} "
            f"{spec.rate_unit}, {min(qualities):.2f}-{max(qualities):.2f} dB"
        )
    tests = [name for name in plan.tests if name in report["codecs"]]
    anchors = [name for name in plan.anchors if name in report["codecs"]]
    files = f"{report['data']['count']} {spec.files}"
    measured = spec.measured(report["codecs"])
    if report["bd_rate"]:
        for metric in measured:
            key = spec.bd_key(metric)
            if metric is main:
                lines.append(
                    f"BD-rate, {metric.label.removesuffix(' (dB)')} on {files} "
                    "(negative: fewer bits than the anchor at equal quality):"
                )
            else:
                lines.append(f"BD-rate, {metric.label} on {files}:")
            lines += bd_table_lines(report[key], tests, anchors)
    elif report["codecs"]:
        lines.append("no BD-rate: name a codec and at least one baseline to compare it with")
    plots = [str(Path(out) / m.plot) for m in measured]
    lines.append(f"wrote {Path(out) / 'results.json'}, {', '.join(plots[:-1])} and {plots[-1]}")
    return lines
