"""Building blocks of the image transforms: convolutions that halve/double the resolution, GDN.

Inference on the CPU (no autograd) on channels-last tensors takes faster routes that compute
the same functions up to float rounding, with the same parameters: GDN as a matrix product
over channels-last pixels in cache-sized blocks (instead of a 1x1 convolution, which PyTorch
runs through its slow im2col path, and four full-size temporaries); a transposed convolution
with few output channels as one ordinary convolution to ``stride^2`` times the channels
followed by a pixel shuffle. Their outputs are channels-last, the fast layout for the
convolutions that follow. Codecs use them in synthesis transforms, whose last bits may differ
between devices anyway. Analysis transforms get contiguous tensors and keep, bit for bit, the
arithmetic that wrote existing files: the plain convolutions, and GDN either as its 1x1
convolution or, single-threaded, as blocks of that convolution's GEMM (same bits, checked).
Training (autograd) runs the plain formulas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GDN", "Deconv2d", "conv", "deconv"]


def conv(
    in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2, dims: int = 2
) -> nn.Conv1d | nn.Conv2d:
    """A ``dims``-D convolution with ``padding = kernel_size // 2`` (odd kernels keep the size) that
    divides the resolution by ``stride``: the one convolution helper of the transforms (defaults:
    the 5x5, stride-2 layer of the hyperprior's ``g_a``)."""
    return (nn.Conv1d if dims == 1 else nn.Conv2d)(
        in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2
    )


def deconv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2) -> Deconv2d:
    """A transposed convolution that multiplies the resolution by ``stride`` exactly."""
    return Deconv2d(
        in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, output_padding=stride - 1
    )


class Deconv2d(nn.ConvTranspose2d):
    """:class:`torch.nn.ConvTranspose2d` (same parameters) that upsamples to few channels faster.

    A transposed convolution with an odd kernel ``k``, ``padding = k // 2`` and ``output_padding =
    stride - 1`` equals, per output phase ``(r, c)`` (``out[s*i + r, s*j + c]``), an ordinary
    convolution of the input with the taps that reach that phase. All phases together are one
    ``ceil(k / s)``-sized convolution to ``stride^2 * C_out`` channels and a pixel shuffle. oneDNN's
    transposed convolution is slow when ``C_out`` is small (the 3-channel output layer of a
    synthesis transform: 2.4x slower, measured); for wide outputs it is as fast as the
    sub-pixel form, which multiplies some zero taps, so those keep the plain operator.
    """

    sub_pixel_max_channels = 16  # measured: faster at C_out = 3, slower at C_out = 128

    def _sub_pixel_applies(self) -> bool:
        (k, _), (s, _) = self.kernel_size, self.stride
        return (
            not torch.is_grad_enabled()
            and self.weight.device.type == "cpu"  # measured there; cuDNN has its own algorithms
            and self.out_channels <= self.sub_pixel_max_channels
            and self.kernel_size[0] == self.kernel_size[1] and k % 2 == 1 and k >= s
            and self.stride[0] == self.stride[1]
            and self.padding == (k // 2, k // 2)
            and self.output_padding == (s - 1, s - 1)
            and self.dilation == (1, 1) and self.groups == 1
        )  # fmt: skip

    def sub_pixel_weight(self) -> Tensor:
        """The ordinary-convolution weight ``(s^2 * C_out, C_in, t, t)`` of the sub-pixel form, phases
        ordered as :func:`torch.nn.functional.pixel_shuffle` expects (channel ``o * s^2 + r * s + c``)."""
        (k, _), (s, _) = self.kernel_size, self.stride
        p = k // 2
        # 1-D: out[s*m + r] = sum over taps t = r + p (mod s) of x[m + (r + p - t) / s] * w[t]
        shifts = {r: {t: (r + p - t) // s for t in range(k) if (t - r - p) % s == 0} for r in range(s)}
        lo = min(d for taps in shifts.values() for d in taps.values())
        hi = max(d for taps in shifts.values() for d in taps.values())
        size = max(-lo, hi) * 2 + 1  # a centered window holding every shift
        half = size // 2
        cin, cout = self.in_channels, self.out_channels
        out = self.weight.new_zeros(cout, s, s, cin, size, size)
        for r, taps_y in shifts.items():
            for c, taps_x in shifts.items():
                for ty, dy in taps_y.items():
                    for tx, dx in taps_x.items():
                        out[:, r, c, :, dy + half, dx + half] = self.weight[:, :, ty, tx].t()
        return out.reshape(cout * s * s, cin, size, size)

    def forward(self, x: Tensor, output_size=None) -> Tensor:
        if output_size is not None or not self._sub_pixel_applies():
            return super().forward(x, output_size)
        s = self.stride[0]
        weight = self.sub_pixel_weight()
        bias = None if self.bias is None else self.bias.repeat_interleave(s * s)
        x = x.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(
            x, weight.contiguous(memory_format=torch.channels_last), bias, padding=weight.shape[-1] // 2
        )
        return F.pixel_shuffle(y, s)


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

    # Pixels per block of the inference path. One thread: 2048 (1 MiB of float32 at 128 channels,
    # cache-resident). Several threads: each op of a block is a parallel region with a barrier,
    # so fewer, larger blocks (2048-pixel blocks with 2 threads on a loaded 2-core machine: 10x
    # slower than 32768-pixel ones, measured).
    block_pixels = 2048
    block_pixels_threaded = 32768

    def forward(self, x: Tensor) -> Tensor:
        if not torch.is_grad_enabled() and x.dim() == 4 and x.device.type == "cpu":
            if not x.is_contiguous():
                return self._forward_blocked(x)
            # Contiguous inputs (the encoder's g_a) must keep their exact bits, so that the
            # encoder writes the same files: blocks of columns of the 1x1 convolution's own
            # GEMM give them on one thread (each output is the same dot product over the
            # channels; tests/test_layers.py checks it), not on several (neither does the 1x1
            # convolution itself from one thread count to another).
            if torch.get_num_threads() == 1:
                return self._forward_blocked_columns(x)
        c = x.shape[1]
        norm = F.conv2d(x * x, self.gamma().view(c, c, 1, 1), self.beta())
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)

    def _forward_blocked_columns(self, x: Tensor) -> Tensor:
        """The same function without autograd for contiguous ``x``, single-threaded: ``norm = beta +
        gamma @ x^2`` on blocks of columns of each image's ``(C, H*W)`` matrix, into one
        contiguous output."""
        n, c, h, w = x.shape
        gamma, beta = self.gamma(), self.beta()
        images = x.view(n, c, h * w)
        out = torch.empty_like(images)
        squares = torch.empty(c, min(self.block_pixels, h * w), dtype=x.dtype, device=x.device)
        for i in range(n):
            for start in range(0, h * w, self.block_pixels):
                cols, norm = (
                    images[i, :, start : start + self.block_pixels],
                    out[i, :, start : start + self.block_pixels],
                )
                sq = torch.mul(cols, cols, out=squares[:, : cols.shape[1]])
                torch.addmm(beta[:, None], gamma, sq, out=norm)
                (norm.sqrt_() if self.inverse else norm.rsqrt_()).mul_(cols)
        return out.view(n, c, h, w)

    def _forward_blocked(self, x: Tensor) -> Tensor:
        """The same function without autograd for channels-last ``x``: ``norm = beta + x^2 @
        gamma^T`` on blocks of pixel rows (every temporary stays in cache), into one
        channels-last output."""
        n, c, h, w = x.shape
        gamma, beta = self.gamma(), self.beta()
        block = self.block_pixels if torch.get_num_threads() == 1 else self.block_pixels_threaded
        pixels = x.permute(0, 2, 3, 1).contiguous().view(-1, c)  # no copy: x is channels-last
        out = torch.empty_like(pixels)
        squares = torch.empty(min(block, len(pixels)), c, dtype=x.dtype, device=x.device)
        for start in range(0, len(pixels), block):
            rows, norm = pixels[start : start + block], out[start : start + block]
            sq = torch.mul(rows, rows, out=squares[: len(rows)])
            torch.addmm(beta, sq, gamma.t(), out=norm)
            (norm.sqrt_() if self.inverse else norm.rsqrt_()).mul_(rows)
        return out.view(n, h, w, c).permute(0, 3, 1, 2)
