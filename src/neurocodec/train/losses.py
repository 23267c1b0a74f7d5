"""The training loss: :func:`neurocodec.models.losses.rd_loss` and its parts as logged floats.

The R-D loss itself (``distortion + lambda * rate`` plus the terms a model adds) lives in
:mod:`neurocodec.models.losses`, where encoder-side adaptation (:mod:`neurocodec.codecs.adapt`)
uses it too; here: which distortions a data set allows, and the statistics a step logs.
"""

from __future__ import annotations

import math

import torch

from neurocodec.errors import ConfigError
from neurocodec.evaluation.metrics import MS_SSIM_MIN_SIZE
from neurocodec.models.losses import DISTORTIONS, rd_loss

__all__ = ["DISTORTIONS", "check_distortion", "loss_and_stats"]


def check_distortion(distortion: str, data: str, crop: int) -> None:
    """Raise :class:`ConfigError` when ``distortion`` cannot be computed on this data."""
    if distortion not in DISTORTIONS:
        raise ConfigError(f"distortion must be one of {', '.join(DISTORTIONS)}, not {distortion!r}")
    if distortion == "ms-ssim":
        if data == "audio":
            raise ConfigError("MS-SSIM is an image metric: train audio models with --distortion mse")
        if crop < MS_SSIM_MIN_SIZE:
            raise ConfigError(
                f"MS-SSIM needs crops of at least {MS_SSIM_MIN_SIZE} px for its 5 scales, not {crop}"
            )


def loss_and_stats(
    out: dict, x: torch.Tensor, lmbda: float, distortion: str = "mse", peak: float = 1.0
) -> tuple[torch.Tensor, dict]:
    """The :func:`~neurocodec.models.losses.rd_loss` and its parts as floats (loss, bpp, mse, psnr,
    ms_ssim when used, each loss term).

    ``peak`` is the signal's peak-to-peak range for the PSNR: 1 for images and video in [0, 1],
    2 for audio in [-1, 1].
    """
    loss, parts = rd_loss(out, x, lmbda, distortion)
    values = {name: float(part.detach()) for name, part in parts.items()}
    stats = {
        "loss": float(loss.detach()),
        "bpp": values.pop("bpp"),
        "mse": values.pop("mse"),
        "psnr": 10 * math.log10(peak**2 / max(float(parts["mse"].detach()), 1e-10)),
        **values,
    }
    return loss, stats
