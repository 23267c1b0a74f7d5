"""Building blocks of the image transforms: convolutions that halve/double the resolution, GDN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GDN", "conv", "deconv"]


def conv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """A convolution that divides the resolution by ``stride`` (``padding = kernel_size // 2``)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2)


def deconv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """A transposed convolution that multiplies the resolution by ``stride`` exactly."""
    return nn.ConvTranspose2d(
        in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, output_padding=stride - 1
    )


class _NonNegative(nn.Module):
    """Ballé's reparametrization ``p = max(v, sqrt(bound + eps))^2 - eps`` keeping ``p >= bound``."""

    pedestal = 2.0**-36

    def __init__(self, init: Tensor, minimum: float = 0.0):
        super().__init__()
        self.bound = (minimum + self.pedestal) ** 0.5
        self.value = nn.Parameter(torch.sqrt(torch.clamp(init + self.pedestal, min=self.pedestal)))

    def forward(self) -> Tensor:
        v = torch.maximum(
            self.value, torch.tensor(self.bound, device=self.value.device, dtype=self.value.dtype)
        )
        return v * v - self.pedestal


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016): ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``.

    ``inverse=True`` gives IGDN (multiply instead of divide), used in synthesis transforms.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta = _NonNegative(torch.ones(channels), minimum=beta_min)
        self.gamma = _NonNegative(gamma_init * torch.eye(channels))

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        norm = F.conv2d(x * x, self.gamma().view(c, c, 1, 1), self.beta())
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)
