"""The per-group network of the ``nirvana`` video codec (NIRVANA, Maiya et al., CVPR 2023).

A video is cut into groups of ``G`` frames and every group gets its own small network, fitted
at encode time (:mod:`neurocodec.codecs.nirvana_fit`). A frame is cut into ``P x P`` patches
(the frame padded to a multiple of ``P``); the network maps the 2-D coordinate of a patch to the
``G x C x P x P`` block of video at that patch:

1. coordinate encoding: the patch centre ``(u, v)`` in ``[-1, 1]^2`` and Fourier features
   ``sin(2^l pi u), cos(2^l pi u), sin(2^l pi v), cos(2^l pi v)``, ``l < freqs``
   (:func:`coordinate_features`). Fourier features rather than a SIREN (w0 = 30): the weights
   are quantized, and a SIREN's first layer multiplies its weight error by w0;
2. MLP: ``Linear(2 + 4 freqs -> hidden)``, GELU, ``Linear(hidden -> width0 * (P/4)^2)``, reshaped
   to a ``width0 x P/4 x P/4`` feature map shared by the group's frames;
3. a sinusoidal per-frame code (:func:`frame_code`) added to that map for each of the G frames,
   which are stacked as channels (``G * width0``);
4. two NeRV blocks: grouped 3x3 conv (one group a frame) to ``4 * width`` channels a frame,
   PixelShuffle(2), GELU: ``width0 -> width1`` at ``P/2``, ``width1 -> width2`` at ``P``;
5. a grouped 3x3 conv to ``G * C`` channels: the patch, ``C`` channels of each of the G frames.

:func:`parameter_tensors` lists the coded tensors in file order. Fixed codes (the Fourier
features, the frame code) are computed with Python's ``math`` in float64, element by element,
so that the encoder and every decoder build the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Arch",
    "GroupNet",
    "assemble",
    "coded_rows",
    "coordinate_features",
    "frame_code",
    "parameter_count",
    "parameter_tensors",
    "stacked_forward",
]

MAX_PARAMETERS = 1 << 22  # numbers a group's network may have (a file may not ask for more)
FRAME_CODE_BASE = 100.0  # the per-frame code's frequencies span FRAME_CODE_BASE (see frame_code)


@dataclass(frozen=True)
class Arch:
    """The architecture of every group's network (the file's header records it)."""

    group: int = 4  # G, frames per group
    patch: int = 16  # P, patch side (a multiple of 4)
    freqs: int = 5  # Fourier frequencies per coordinate
    hidden: int = 128  # MLP hidden width
    width0: int = 16  # channels of the P/4 feature map
    width1: int = 8  # channels a frame at P/2
    width2: int = 4  # channels a frame at P
    channels: int = 3  # C, channels of the video

    def check(self) -> str | None:
        """Why this architecture is not one a file may hold, or None."""
        if not 1 <= self.group <= 32:
            return f"frames per group {self.group} is not 1..32"
        if self.patch not in (8, 16, 32):
            return f"patch size {self.patch} is not 8, 16 or 32"
        if not 0 <= self.freqs <= 16:
            return f"{self.freqs} Fourier frequencies is not 0..16"
        for name in ("hidden", "width0", "width1", "width2"):
            if not 1 <= getattr(self, name) <= 256:
                return f"{name} {getattr(self, name)} is not 1..256"
        if self.channels not in (1, 3):
            return f"{self.channels} channels is not 1 or 3"
        if parameter_count(self) > MAX_PARAMETERS:
            return f"{parameter_count(self)} parameters a network is more than {MAX_PARAMETERS}"
        return None

    def activations(self) -> int:
        """Numbers the network holds at once for one patch of one frame (its widest layers)."""
        half, full = (self.patch // 2) ** 2, self.patch**2
        return max(5 * self.width1 * half, (5 * self.width2 + self.channels) * full)

    def as_dict(self) -> dict:
        return asdict(self)


def coordinate_features(rows: int, cols: int, freqs: int) -> Tensor:
    """The encoded centres of a ``rows x cols`` grid of patches, raster order: float64
    ``(rows * cols, 2 + 4 * freqs)``."""
    out = []
    for r in range(rows):
        v = (2 * r + 1) / rows - 1
        for c in range(cols):
            u = (2 * c + 1) / cols - 1
            f = [u, v]
            for level in range(freqs):
                w = math.pi * 2.0**level
                f += [math.sin(w * u), math.cos(w * u), math.sin(w * v), math.cos(w * v)]
            out.append(f)
    return torch.tensor(out, dtype=torch.float64)


def frame_code(group: int, width: int) -> Tensor:
    """The sinusoidal code added to the feature map of frame ``j`` of a group: float64
    ``(group * width,)``, entry ``j * width + i`` = ``sin`` (even ``i``) or ``cos`` (odd ``i``) of
    ``pi * (j / group) * FRAME_CODE_BASE^(1 - 2 floor(i/2) / width)``."""
    out = []
    for j in range(group):
        t = j / group
        for i in range(width):
            phase = math.pi * t * FRAME_CODE_BASE ** (1 - 2 * (i // 2) / width)
            out.append(math.sin(phase) if i % 2 == 0 else math.cos(phase))
    return torch.tensor(out, dtype=torch.float64)


class GroupNet(nn.Module):
    """One group's network: patch coordinates -> ``(patches, G * C, P, P)``."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        reason = arch.check()
        if reason:
            raise ValueError(f"nirvana architecture: {reason}")
        self.arch = a = arch
        side = a.patch // 4
        g = a.group
        self.fc1 = nn.Linear(2 + 4 * a.freqs, a.hidden)
        self.fc2 = nn.Linear(a.hidden, a.width0 * side * side)
        self.conv1 = nn.Conv2d(g * a.width0, g * 4 * a.width1, 3, padding=1, groups=g)
        self.conv2 = nn.Conv2d(g * a.width1, g * 4 * a.width2, 3, padding=1, groups=g)
        self.conv3 = nn.Conv2d(g * a.width2, g * a.channels, 3, padding=1, groups=g)
        self.register_buffer("code", frame_code(g, a.width0).float(), persistent=False)

    def forward(self, features: Tensor) -> Tensor:
        """``features`` (patches, 2 + 4 freqs) -> the patches ``(patches, G * C, P, P)``."""
        a, side = self.arch, self.arch.patch // 4
        h = F.gelu(self.fc1(features))
        h = self.fc2(h).reshape(-1, 1, a.width0, side, side)
        code = self.code.to(h.dtype).reshape(1, a.group, a.width0, 1, 1)
        h = (h + code).reshape(-1, a.group * a.width0, side, side)
        h = F.gelu(F.pixel_shuffle(self.conv1(h), 2))  # (n, G*4*w1, s, s) -> (n, G*w1, 2s, 2s)
        h = F.gelu(F.pixel_shuffle(self.conv2(h), 2))
        return self.conv3(h)


def stacked_forward(features: Tensor, params: list[Tensor], arch: Arch, code: Tensor) -> Tensor:
    """The patches of B networks at once: ``params`` are the tensors of :func:`parameter_tensors`
    of the B networks stacked on a first dimension (``(B, *shape)``), ``code`` is
    :func:`frame_code` in the features' dtype. Returns ``(patches, B * G * C, P, P)``: network b's
    patch block at channels ``b G C .. (b + 1) G C``. The same arithmetic as B calls of
    :meth:`GroupNet.forward`, in fewer, larger operations (grouped convolutions over B G groups)."""
    a, side = arch, arch.patch // 4
    w1, b1, w2, b2, c1w, c1b, c2w, c2b, c3w, c3b = params
    n, count = features.shape[0], w1.shape[0]
    h = F.gelu(torch.einsum("ni,bhi->bnh", features, w1) + b1[:, None])
    h = torch.einsum("bnh,boh->bno", h, w2) + b2[:, None]  # (B, n, width0 s s)
    h = h.reshape(count, n, 1, a.width0, side, side) + code.reshape(1, 1, a.group, a.width0, 1, 1)
    h = h.permute(1, 0, 2, 3, 4, 5).reshape(n, count * a.group * a.width0, side, side)
    groups = count * a.group
    h = F.gelu(F.pixel_shuffle(F.conv2d(h, c1w.flatten(0, 1), c1b.flatten(), padding=1, groups=groups), 2))
    h = F.gelu(F.pixel_shuffle(F.conv2d(h, c2w.flatten(0, 1), c2b.flatten(), padding=1, groups=groups), 2))
    return F.conv2d(h, c3w.flatten(0, 1), c3b.flatten(), padding=1, groups=groups)


def parameter_tensors(net: GroupNet) -> list[tuple[str, Tensor]]:
    """The coded tensors of a group's network, in file order (each has its own step)."""
    layers = ("fc1", "fc2", "conv1", "conv2", "conv3")
    return [(f"{n}.{k}", getattr(getattr(net, n), k)) for n in layers for k in ("weight", "bias")]


def coded_rows(arch: Arch, frames: int) -> list[int]:
    """How many leading rows (first dimension) of each tensor of :func:`parameter_tensors` a
    group of ``frames`` frames uses: the MLP's whole, the convolutions' rows of its first
    ``frames`` frames (frame ``j``'s rows of a grouped convolution are its ``j``-th block)."""
    full = [arch.hidden] * 2 + [arch.width0 * (arch.patch // 4) ** 2] * 2
    per_frame = (4 * arch.width1, 4 * arch.width2, arch.channels)
    return full + [frames * n for n in per_frame for _ in range(2)]


def parameter_count(arch: Arch) -> int:
    """How many numbers one group's network codes."""
    side = arch.patch // 4
    g = arch.group
    n_in = 2 + 4 * arch.freqs
    mlp = (
        n_in * arch.hidden + arch.hidden + arch.hidden * arch.width0 * side * side + arch.width0 * side * side
    )
    c1 = g * (arch.width0 * 4 * arch.width1 * 9 + 4 * arch.width1)
    c2 = g * (arch.width1 * 4 * arch.width2 * 9 + 4 * arch.width2)
    c3 = g * (arch.width2 * arch.channels * 9 + arch.channels)
    return mlp + c1 + c2 + c3


def assemble(patches: Tensor, arch: Arch, rows: int, cols: int) -> Tensor:
    """Patches ``(rows * cols, G * C, P, P)`` (raster order) -> frames ``(C, G, rows P, cols P)``."""
    p, g, c = arch.patch, arch.group, arch.channels
    x = patches.reshape(rows, cols, g, c, p, p)
    return x.permute(3, 2, 0, 4, 1, 5).reshape(c, g, rows * p, cols * p)
