"""Quality metrics: PSNR and MS-SSIM (pytorch-msssim) of images in [0, 1], of the output as a
decoder writes it (quantized to the file's bit depth); SNR and SI-SDR of audio ``(C, T)``, and its
perceptual scores (:func:`perceptual_scores`: ViSQOL v3, PESQ, STOI; the optional ``audio-eval``
extra); the per-plane and RGB PSNR of YUV video."""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from neurocodec.io.video import Planes, yuv_to_rgb

__all__ = [
    "MS_SSIM_MIN_SIZE",
    "PERCEPTUAL_PACKAGES",
    "is_speech",
    "missing_perceptual",
    "ms_ssim",
    "ms_ssim_db",
    "perceptual_scores",
    "psnr",
    "quantized",
    "si_sdr",
    "snr",
    "video_psnr",
]

# MS-SSIM's five scales with an 11-tap window need the smaller side above (11 - 1) * 2^4 pixels
MS_SSIM_MIN_SIZE = 161


def quantized(x: torch.Tensor, bit_depth: int = 8) -> torch.Tensor:
    """``x`` as it would be written to a ``bit_depth``-bit file (rounded to the integer grid)."""
    top = (1 << bit_depth) - 1
    return x.clamp(0, 1).mul(top).round().div(top)


def psnr(reference: torch.Tensor, test: torch.Tensor, bit_depth: int = 8) -> float:
    """PSNR in dB of ``test`` (quantized to ``bit_depth`` bits, as a decoder writes it) against
    ``reference``; ``inf`` when they are equal."""
    mse = float((reference.float().cpu() - quantized(test.float().cpu(), bit_depth)).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def video_psnr(reference: Planes, test: Planes, bit_depth: int = 8) -> dict[str, float]:
    """PSNR in dB of a decoded video against its reference, both planes ``(Y, U, V)`` of ``(T, h,
    w)`` in ``[0, 1]`` (as ``read_video(path, rgb=False)`` gives them), frame by frame and averaged
    over the frames in dB: ``"y"``, ``"u"``, ``"v"`` per plane; ``"yuv"`` = ``(6 y + u + v) / 8``,
    the weighting of the MPEG/JVET common test conditions for 4:2:0; ``"rgb"`` of the
    ``bit_depth``-bit RGB of both (BT.601, limited range: :func:`neurocodec.io.video.yuv_to_rgb`)."""
    frames = reference[0].shape[0]
    out = {}
    for name, r, t in zip("yuv", reference, test, strict=True):
        out[name] = sum(psnr(r[i], t[i], bit_depth) for i in range(frames)) / frames
    out["yuv"] = (6 * out["y"] + out["u"] + out["v"]) / 8
    rgb = 0.0
    for i in range(frames):
        frame = slice(i, i + 1)
        rendered = quantized(yuv_to_rgb(tuple(p[frame] for p in reference)), bit_depth)
        rgb += psnr(rendered, yuv_to_rgb(tuple(p[frame] for p in test)), bit_depth)
    out["rgb"] = rgb / frames
    return out


def snr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-noise ratio in dB of ``test`` against ``reference`` (audio); ``inf`` when equal."""
    reference, test = reference.double().cpu(), test.double().cpu()
    noise = float((reference - test).square().sum())
    signal = float(reference.square().sum())
    if noise == 0:
        return math.inf
    return 10 * math.log10(max(signal, 1e-300) / noise)


def si_sdr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019) of audio ``test``
    against ``reference``, both ``(C, T)`` (or ``(T,)``): per channel, both zero-mean, the
    reference scaled by the least-squares gain ``<x, y> / <x, x>``, then
    ``10 log10(|a x|^2 / |a x - y|^2)``; averaged in dB over the channels. Unlike :func:`snr` it
    does not charge a codec for a gain change (LAME scales MP3 by 0.95 at low bitrates).
    ``inf`` for a channel that ``test`` matches up to scale; a silent reference channel is
    skipped (its SI-SDR is undefined), and NaN is returned when every channel is silent."""
    x = reference.double().cpu().reshape(-1, reference.shape[-1])
    y = test.double().cpu().reshape(x.shape)
    x = x - x.mean(dim=-1, keepdim=True)
    y = y - y.mean(dim=-1, keepdim=True)
    values = []
    for xc, yc in zip(x, y, strict=True):
        energy = float(xc.square().sum())
        if energy == 0:
            continue
        target = float(xc @ yc) / energy * xc
        noise = float((target - yc).square().sum())
        signal = float(target.square().sum())
        values.append(math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise))
    return sum(values) / len(values) if values else math.nan


def ms_ssim(reference: torch.Tensor, test: torch.Tensor, bit_depth: int = 8) -> float:
    """MS-SSIM (pytorch-msssim, data range 1, the 5 standard scales, averaged over channels) of
    ``test`` quantized to ``bit_depth`` bits against ``reference``, images ``([N,] C, H, W)``;
    NaN when the smaller side is under :data:`MS_SSIM_MIN_SIZE` pixels (no 5-scale value exists)."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    if min(reference.shape[-2:]) < MS_SSIM_MIN_SIZE:
        return math.nan
    x = reference.float().cpu().reshape(-1, *reference.shape[-3:])
    y = quantized(test.float().cpu(), bit_depth).reshape(x.shape)
    return float(_ms_ssim(x, y, data_range=1.0))


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in dB, ``-10 log10(1 - MS-SSIM)`` (as CompressAI plots it); ``inf`` at 1."""
    return math.inf if value >= 1 else -10 * math.log10(1 - value)


# The perceptual audio scores' packages (pip install neurocodec[audio-eval]): module -> PyPI name
PERCEPTUAL_PACKAGES = {"visqol": "visqol-python", "pesq": "pesq", "pystoi": "pystoi"}
_VISQOL_RATE = {"audio": 48000, "speech": 16000}  # the rate each ViSQOL v3 mode scores at
_SPEECH_RATE = 16000  # PESQ (wide band) and STOI


def missing_perceptual() -> list[str]:
    """The PyPI names of the perceptual scores' packages that are not installed."""
    from importlib.util import find_spec

    return [package for module, package in PERCEPTUAL_PACKAGES.items() if find_spec(module) is None]


def is_speech(path: str | Path) -> bool:
    """Whether an audio file is scored as speech: a folder or file name in its path says "speech"
    (as data/audio/speech/ does); other audio is scored as music."""
    return any("speech" in part.lower() for part in Path(path).parts)


def _mono_at(x: torch.Tensor, sample_rate: int, rate: int) -> np.ndarray:
    """Audio ``(C, T)`` (or ``(T,)``) mixed to mono, in float64, resampled to ``rate`` (polyphase)."""
    from scipy.signal import resample_poly

    mono = x.double().cpu().reshape(-1, x.shape[-1]).mean(0).numpy()
    if sample_rate == rate:
        return mono
    g = math.gcd(sample_rate, rate)
    return resample_poly(mono, rate // g, sample_rate // g)


@functools.cache
def _visqol(mode: str):
    from visqol import VisqolApi

    api = VisqolApi()
    api.create(mode=mode)
    return api


def perceptual_scores(reference: torch.Tensor, test: torch.Tensor, sample_rate: int, speech: bool) -> dict:
    """Perceptual scores of audio ``test`` against ``reference`` (``(C, T)`` at ``sample_rate``),
    both mixed to mono: music gets ``visqol``, ViSQOL v3's MOS-LQO (1-5) in audio mode at 48 kHz;
    speech (``speech``) gets ``visqol`` in speech mode at 16 kHz, ``pesq`` (ITU-T P.862.2 wide band,
    MOS-LQO) and ``stoi`` (0-1), at 16 kHz. NaN for a score the clip is too short for; empty when the ``audio-eval`` packages are missing
    (:func:`missing_perceptual`)."""
    if missing_perceptual():
        return {}
    mode = "speech" if speech else "audio"
    ref, deg = (_mono_at(t, sample_rate, _VISQOL_RATE[mode]) for t in (reference, test))
    with warnings.catch_warnings():  # speech mode's note that it maps MOS by a polynomial
        warnings.simplefilter("ignore")
        try:
            scores = {"visqol": float(_visqol(mode).measure_from_arrays(ref, deg, _VISQOL_RATE[mode]).moslqo)}
        except ValueError:  # a clip shorter than ViSQOL's patches (about 1 s): no score
            scores = {"visqol": math.nan}
    if speech:
        from pesq import PesqError, pesq
        from pystoi import stoi

        ref, deg = (_mono_at(t, sample_rate, _SPEECH_RATE) for t in (reference, test))
        try:
            scores["pesq"] = float(pesq(_SPEECH_RATE, ref, deg, "wb"))
        except PesqError:  # too short, or no utterance found
            scores["pesq"] = math.nan
        scores["stoi"] = float(stoi(ref, deg, _SPEECH_RATE))
    return scores
