"""Quality metrics on tensors in [0, 1]: PSNR and MS-SSIM (pytorch-msssim), of the output as a
decoder writes it (quantized to the file's bit depth)."""

from __future__ import annotations

import math

import torch

__all__ = ["MS_SSIM_MIN_SIZE", "ms_ssim", "ms_ssim_db", "psnr", "quantized"]

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


def snr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-noise ratio in dB of ``test`` against ``reference`` (audio); ``inf`` when equal."""
    reference, test = reference.double().cpu(), test.double().cpu()
    noise = float((reference - test).square().sum())
    signal = float(reference.square().sum())
    if noise == 0:
        return math.inf
    return 10 * math.log10(max(signal, 1e-300) / noise)


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
