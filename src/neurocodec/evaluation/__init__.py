"""Rate-distortion and speed evaluation: what ``neurocodec eval`` and ``neurocodec bench`` run, and
what the notebooks call.

- :mod:`~neurocodec.evaluation.metrics`: PSNR, MS-SSIM, SNR, SI-SDR, video PSNR;
- :mod:`~neurocodec.evaluation.baselines`: the conventional codecs (JPEG ... AVIF, Opus, MP3, x264 ...);
- :mod:`~neurocodec.evaluation.rows`: per-file R-D rows of a codec, mean curves, curve points;
- :mod:`~neurocodec.evaluation.bd`: Bjøntegaard deltas and tables;
- :mod:`~neurocodec.evaluation.plots`: R-D plots;
- :mod:`~neurocodec.evaluation.published`: published Kodak curves to place ours against;
- :mod:`~neurocodec.evaluation.plan`, :mod:`~neurocodec.evaluation.runner`,
  :mod:`~neurocodec.evaluation.report`: a whole evaluation, resumable, and its report
  (``results.json`` and plots);
- :mod:`~neurocodec.evaluation.bench`: encode and decode times;
- :mod:`~neurocodec.evaluation.records`: the machine record and the JSON of a report.

An evaluation in three calls::

    from neurocodec.evaluation import plan_eval, run_eval, summary_lines
    plan = plan_eval(["hyperprior", "webp"], "kodak/", baselines=["jpeg"])
    report = run_eval(plan, "out/")          # out/results.json, out/rd.png, out/rd-ms-ssim.png
    print("\\n".join(summary_lines(report, plan, "out/")))

Each name below is importable from here; its module is imported on first use, so that importing
one part (the BD-rate, say) does not import the codecs, torch or the media libraries.
"""

from __future__ import annotations

import importlib

_MODULES = {
    "metrics": (
        "MS_SSIM_MIN_SIZE", "PERCEPTUAL_PACKAGES", "is_speech", "missing_perceptual", "ms_ssim", "ms_ssim_db",
        "perceptual_scores", "psnr", "quantized", "si_sdr", "snr", "video_psnr",
    ),
    "baselines": (
        "AUDIO_BASELINES", "BASELINES", "VIDEO_BASELINES", "VIDEO_FRAMES", "aligned", "evaluate_baseline",
    ),
    "rows": ("METRICS", "curve_points", "evaluate_audio", "evaluate_images", "mean_curve", "mean_point", "rd_row", "spread"),
    "bd": ("Point", "bd_psnr", "bd_rate", "bd_table", "bd_table_lines", "overlap"),
    "plots": ("plot_rd",),
    "published": ("KODAK", "PublishedCurve", "compare_published"),
    "plan": ("DEFAULT_BASELINES", "EvalPlan", "plan_eval"),
    "runner": ("ROWS",),
    "report": ("check_outputs", "run_eval", "summary_lines"),
    "bench": ("bench_codec", "bench_file", "bench_input", "summarize"),
    "records": ("clean", "cpu_model", "machine", "to_json"),
}  # fmt: skip
_HOME = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> object:
    if name in _HOME:
        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
