"""The rate-distortion loss: ``distortion + lambda * rate`` plus the terms a model adds itself.

- ``distortion="mse"``: ``lambda * 255^2 * MSE + bpp``, CompressAI's convention, so its lambdas
  carry over (mbt2018-mean q1..q8: 0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.18).
- ``distortion="ms-ssim"``: ``lambda * (1 - MS-SSIM) + bpp``, again CompressAI's convention
  (its MS-SSIM lambdas, q1..q8: 2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.0). Images
  and videos (frame by frame) only, with sides of at least 161 pixels.

``bpp`` is the rate from the likelihoods, in bits per pixel (images, video: per pixel of every
frame) or per sample instant (audio, all channels together). A model's ``loss_terms`` are added
as they are (the model weights them) and logged by name.
"""

from __future__ import annotations

import math

import torch

from neurocodec.errors import ConfigError
from neurocodec.evaluation.metrics import MS_SSIM_MIN_SIZE

__all__ = ["DISTORTIONS", "check_distortion", "rd_loss"]

DISTORTIONS = ("mse", "ms-ssim")


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


def _frames(x: torch.Tensor) -> torch.Tensor:
    """Images as they are; a video batch ``(N, C, T, H, W)`` as ``(N*T, C, H, W)`` frames."""
    return x if x.ndim == 4 else x.transpose(1, 2).flatten(0, 1)


def rd_loss(
    out: dict, x: torch.Tensor, lmbda: float, distortion: str = "mse", peak: float = 1.0
) -> tuple[torch.Tensor, dict]:
    """The loss and its parts as floats (loss, bpp, mse, psnr, ms_ssim when used, each loss term).

    ``peak`` is the signal's peak-to-peak range for the PSNR: 1 for images and video in [0, 1],
    2 for audio in [-1, 1].
    """
    positions = x.numel() // x.shape[1]
    bpp = sum(-torch.log2(lik.float()).sum() for lik in out["likelihoods"].values()) / positions
    x_hat = out["x_hat"].float()
    mse = torch.mean((x_hat - x) ** 2)
    stats = {}
    if distortion == "mse":
        loss = lmbda * 255**2 * mse + bpp
    elif distortion == "ms-ssim":
        from pytorch_msssim import ms_ssim

        similarity = ms_ssim(_frames(x_hat), _frames(x), data_range=1.0)
        loss = lmbda * (1 - similarity) + bpp
        stats["ms_ssim"] = float(similarity.detach())
    else:
        raise ConfigError(f"distortion must be one of {', '.join(DISTORTIONS)}, not {distortion!r}")
    terms = out.get("loss_terms") or {}
    for name, term in terms.items():
        loss = loss + term.float()
        stats[name] = float(term.detach())
    stats = {
        "loss": float(loss.detach()),
        "bpp": float(bpp.detach()),
        "mse": float(mse.detach()),
        "psnr": 10 * math.log10(peak**2 / max(float(mse.detach()), 1e-10)),
        **stats,
    }
    return loss, stats
