"""The rate-distortion loss of a model's output: what training and encoder-side adaptation minimize.

- ``distortion="mse"``: ``lambda * 255^2 * MSE + bpp``, CompressAI's convention, so its lambdas
  carry over (mbt2018-mean q1..q8: 0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.18).
- ``distortion="ms-ssim"``: ``lambda * (1 - MS-SSIM) + bpp``, again CompressAI's convention
  (its MS-SSIM lambdas, q1..q8: 2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.0). Images
  and videos (frame by frame) only, with sides of at least 161 pixels.

``bpp`` is the rate from the likelihoods, in bits per pixel (images, video: per pixel of every
frame) or per sample instant (audio, all channels together). A model's ``loss_terms`` are added
as they are (the model weights them). The reconstruction may be larger than the input (a
codec's padding): it is cropped to the input's size, and only the input's positions count.
"""

from __future__ import annotations

import torch

from neurocodec.errors import ConfigError

__all__ = ["DISTORTIONS", "rd_loss"]

DISTORTIONS = ("mse", "ms-ssim")


def _frames(x: torch.Tensor) -> torch.Tensor:
    """Images as they are; a video batch ``(N, C, T, H, W)`` as ``(N*T, C, H, W)`` frames."""
    return x if x.ndim == 4 else x.transpose(1, 2).flatten(0, 1)


def rd_loss(
    out: dict, x: torch.Tensor, lmbda: float, distortion: str = "mse"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, parts)`` of a model's output ``out`` (``{"x_hat", "likelihoods"[, "loss_terms"]}``)
    for the input ``x``: ``parts`` holds the tensors ``bpp``, ``mse``, ``ms_ssim`` (when it is the
    distortion) and each loss term, by name."""
    positions = x.numel() // x.shape[1]
    bpp = sum(-torch.log2(lik.float()).sum() for lik in out["likelihoods"].values()) / positions
    x_hat = out["x_hat"][(..., *(slice(0, s) for s in x.shape[2:]))].float()
    mse = torch.mean((x_hat - x) ** 2)
    parts = {"bpp": bpp, "mse": mse}
    if distortion == "mse":
        loss = lmbda * 255**2 * mse + bpp
    elif distortion == "ms-ssim":
        from pytorch_msssim import ms_ssim

        similarity = ms_ssim(_frames(x_hat), _frames(x), data_range=1.0)
        loss = lmbda * (1 - similarity) + bpp
        parts["ms_ssim"] = similarity
    else:
        raise ConfigError(f"distortion must be one of {', '.join(DISTORTIONS)}, not {distortion!r}")
    for name, term in (out.get("loss_terms") or {}).items():
        loss = loss + term.float()
        parts[name] = term
    return loss, parts
