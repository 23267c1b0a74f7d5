"""Quality metrics on tensors in [0, 1]."""

from __future__ import annotations

import math

import torch

__all__ = ["psnr", "quantized"]


def quantized(x: torch.Tensor, bit_depth: int = 8) -> torch.Tensor:
    """``x`` as it would be written to a ``bit_depth``-bit file (rounded to the integer grid)."""
    top = (1 << bit_depth) - 1
    return x.clamp(0, 1).mul(top).round().div(top)


def psnr(reference: torch.Tensor, test: torch.Tensor, bit_depth: int = 8) -> float:
    """PSNR in dB of ``test`` (quantized to ``bit_depth`` bits, as a decoder writes it) against
    ``reference``; ``inf`` when they are equal."""
    mse = float((reference.float().cpu() - quantized(test.float().cpu(), bit_depth)).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)
