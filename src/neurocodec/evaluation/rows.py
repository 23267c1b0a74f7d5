"""R-D rows: measure codecs on image, audio or video files, one row per file, and average them.

- :func:`evaluate_images`: per file, bpp from the real file size, PSNR and MS-SSIM of the
  8-bit output;
- :func:`evaluate_audio`: per file, kbit/s from the real file size, SNR and SI-SDR, and the
  perceptual scores (ViSQOL; PESQ and STOI for speech) where the ``audio-eval`` extra is installed;
- :func:`evaluate_video`: per file, bpp and kbit/s, PSNR-Y/-YUV/-RGB on the planes the video
  baselines are measured on;
- :func:`rd_row`: one file's row (images, audio, or video);
- :func:`mean_point`, :func:`mean_curve`: the averaged point of each setting; :func:`spread`: a
  shorter sweep with the same ends;
- :func:`curve_points`: a mean curve as ``(rate, quality)`` points: ``(bpp, PSNR or MS-SSIM
  dB)`` for images, ``(kbit/s, SNR or SI-SDR dB)`` for audio, ``(bpp, PSNR-Y or PSNR-YUV
  dB)`` for video, for :mod:`~neurocodec.evaluation.bd` and :mod:`~neurocodec.evaluation.plots`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from neurocodec.evaluation.bd import Point
from neurocodec.evaluation.metrics import (
    is_speech,
    ms_ssim,
    ms_ssim_db,
    perceptual_scores,
    psnr,
    si_sdr,
    snr,
    video_psnr,
)
from neurocodec.io.image import read_image

if TYPE_CHECKING:
    from neurocodec.codecs.base import Codec

__all__ = [
    "METRICS",
    "curve_points",
    "evaluate_audio",
    "evaluate_images",
    "evaluate_video",
    "mean_curve",
    "mean_point",
    "rd_row",
    "spread",
]


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


def evaluate_video(
    codec: Codec, paths: Sequence[str | Path], effort: int | str = 0, frames: int | None = None
) -> list[dict]:
    """Per video file (its first ``frames`` frames; None: all): the video row of :func:`rd_row` --
    bpp and kbit/s of the complete file, PSNR-Y, -U, -V, -YUV and -RGB -- measured on the same
    planes as the video baselines. A YUV file is coded as its Y, Cb, Cr planes at full size
    (:func:`neurocodec.io.read_codec_input`) and the decoded chroma averaged back to its
    subsampling; a grey or RGB one (read as RGB) is measured on its BT.601 4:2:0 planes."""
    from neurocodec.io import read_codec_input
    from neurocodec.io.video import tensor_to_planes

    rows = []
    for path in paths:
        x, options = read_codec_input(path, "video", codec.channels, max_frames=frames)
        t0 = time.perf_counter()
        data = codec.encode(x, effort=effort, **options)
        t1 = time.perf_counter()
        x_hat = codec.decode(data)
        t2 = time.perf_counter()
        colour = options.get("colour", "rgb")
        reference, decoded = tensor_to_planes(x, colour), tensor_to_planes(x_hat, colour)
        rows.append(
            rd_row(path, reference, data, decoded, t1 - t0, t2 - t1, frame_rate=options["frame_rate"])
        )
    return rows


def evaluate_audio(codec: Codec, paths: Sequence[str | Path], effort: int | str = 0) -> list[dict]:
    """Per audio file: bytes and kbit/s of the complete file, SNR and SI-SDR of the decoded
    float output, encode/decode seconds (see :func:`rd_row`). Each file is coded at its own
    sample rate, which the codec records (WaLLoC's audio model was trained at 44.1 kHz), with
    ``effort`` (the codec's encoder-side adaptation or fitting iterations, as ``encode --effort``)."""
    from neurocodec.io.audio import read_audio  # soundfile, only where audio is read

    rows = []
    for path in paths:
        x, info = read_audio(path)
        t0 = time.perf_counter()
        data = codec.encode(x, info.sample_rate, effort=effort)
        t1 = time.perf_counter()
        x_hat = codec.decode(data)
        t2 = time.perf_counter()
        rows.append(rd_row(path, x, data, x_hat, t1 - t0, t2 - t1, sample_rate=info.sample_rate))
    return rows


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
    ``si_sdr`` (dB) of the float output instead of bpp, PSNR and MS-SSIM, and
    :func:`~neurocodec.evaluation.metrics.perceptual_scores` (``visqol``; ``pesq`` and ``stoi`` for a
    file whose path says speech) where the ``audio-eval`` extra is installed.

    With ``frame_rate`` (frames per second), ``x`` and ``x_hat`` are video planes ``(Y, U, V)``
    of ``(T, h, w)`` and the row has ``frames``, bpp (8 * bytes over ``T * H * W``), ``kbps``
    (over the duration ``T / frame_rate``) and :func:`~neurocodec.evaluation.metrics.video_psnr`'s PSNR,
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
            **perceptual_scores(x, x_hat, sample_rate, speech=is_speech(path)),
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
    "visqol",
    "pesq",
    "stoi",
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
    instead, and ``visqol``, ``pesq``, ``stoi`` where they have them; video rows ``bpp``, ``kbps``, ``psnr_y``, ``psnr_yuv`` and ``psnr`` (RGB).

    ``rows_by_setting`` maps each setting to its per-file rows, or is a flat list of rows that
    carry a ``"setting"`` key (as :func:`neurocodec.evaluation.baselines.evaluate_baseline` gives).
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
    "visqol": ("kbps", "visqol"),
    "pesq": ("kbps", "pesq"),
    "stoi": ("kbps", "stoi"),
    "psnr-y": ("bpp", "psnr_y"),
    "psnr-yuv": ("bpp", "psnr_yuv"),
}


def curve_points(curve: Sequence[Mapping], metric: str = "psnr") -> list[Point]:
    """``(rate, quality)`` points of a :func:`mean_curve`, for :func:`~neurocodec.evaluation.bd.bd_rate` and
    :func:`~neurocodec.evaluation.plots.plot_rd`: ``(bpp, PSNR)`` (``metric="psnr"``), ``(bpp, MS-SSIM dB)`` ("ms-ssim"),
    ``(kbit/s, SNR)`` ("snr"), ``(kbit/s, SI-SDR)`` ("si-sdr"), ``(kbit/s, MOS or STOI)`` ("visqol",
    "pesq", "stoi"), or for video ``(bpp, PSNR-Y)``
    ("psnr-y") or ``(bpp, PSNR-YUV)`` ("psnr-yuv"). Points whose quality is
    missing or not finite (a lossless file, an image too small for MS-SSIM) are left out."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    rate, key = METRICS[metric]
    return [(p[rate], p[key]) for p in curve if p.get(key) is not None and math.isfinite(p[key])]
