"""``nirvana``: an implicit neural video codec (NIRVANA, Maiya et al., CVPR 2023). No trained
weights: the video is cut into groups of G frames and each group gets its own small network
(:mod:`neurocodec.models.nirvana`) that maps patch coordinates to the group's patches, fitted
at encode time (:mod:`neurocodec.codecs.nirvana_fit`). Group g > 0 starts from group g-1's
network, and the file codes the differences of their quantized parameters.

Quality ``q`` is the rate-distortion trade-off ``lambda`` (:data:`LAMBDAS`, loss ``lambda * 255^2 *
MSE + bpp``). ``effort`` is the number of fitting iterations of each group after the first; the
first group gets :data:`FIRST_MULTIPLE` times as many. :data:`PRESETS` (also the class attribute
``presets``) names budgets; ``effort=0`` uses the ``fast`` one. The channels are coded as given
(RGB, or Y, Cb, Cr planes at the frame's size: the base class's ``colour``), with MSE over them
weighted alike for RGB and 6:1:1 for YCbCr (as PSNR-YUV weights the planes).

File sections (all integers little-endian):

``header`` (version 2), ``16 + n + groups + groups * n`` bytes::

    offset  size  field
    0       1     version: 2 (1 is read too, see below)
    1       1     G, the most frames a group has: the network's frame heads (1..32)
    2       1     P, patch side (8, 16 or 32)
    3       1     Fourier frequencies per coordinate (0..16)
    4       2     MLP hidden width (1..256)
    6       2     width0: channels of the P/4 feature map (1..256)
    8       2     width1: channels a frame at P/2 (1..256)
    10      2     width2: channels a frame at P (1..256)
    12      1     C, channels (the geometry's)
    13      2     groups (1..frames)
    15      1     n, parameter tensors a network (10)
    16      n     k_i (int8, 0..24): tensor i's integers are its values * 2^k_i
    16+n    groups  m_g (uint8, 1..G): the frames of group g, which sum to the video's frames
    16+n+groups  g*n  s_{g,i} (uint8, < 48): the scale index of the zero-mean Laplace table of
                  tensor i of group g (group-major), c3's tables (table s * 16 of
                  :func:`neurocodec.models.c3.laplace_tables`)

The encoder picks the group sizes by motion (:func:`neurocodec.codecs.nirvana_fit.group_sizes`:
the first group has G frames, later ones span at most :data:`MOTION_BUDGET` of motion, and a
scene cut starts a group); the decoder only reads them.

``params``: one rANS stream (:mod:`neurocodec.entropy.coder`; its lane count is the encoder's
choice, :func:`~neurocodec.entropy.coder.fit_lanes`) of the coded integers, group by group,
tensor by tensor in the order of :func:`~neurocodec.models.nirvana.parameter_tensors`
(``fc1.weight (hidden, 2 + 4 freqs)``, ``fc1.bias``, ``fc2.weight (width0 (P/4)^2, hidden)``,
``fc2.bias``, ``conv1.weight (G 4 width1, width0, 3, 3)``, ``conv1.bias``, ``conv2.weight (G 4
width2, width1, 3, 3)``, ``conv2.bias``, ``conv3.weight (G C, width2, 3, 3)``, ``conv3.bias``).
Group g codes of each tensor its leading rows that its m_g frames use
(:func:`~neurocodec.models.nirvana.coded_rows`: the MLP's whole, the convolutions' first m_g
frame blocks), entries in row-major order. The value coded for entry e of tensor i of group g is
``n_{g,i}[e] - n_{g-1,i}[e]`` (``n_{-1} = 0``), with the table of ``s_{g,i}``; entries a group
does not code keep ``n_{g-1,i}[e]``; the parameter is ``n_{g,i}[e] * 2^-k_i``. Frame ``j`` of
group g is frame ``m_0 + ... + m_{g-1} + j`` of the video, made by frame head j.

Version 1 (files before 2026-12-07) has no ``m_g``: ``groups = ceil(frames / G)``, every group
has G frames and codes every row, and the last group's frames past the video's end are dropped.

The computation is part of the format (versions 1 and 2 alike): the network of
:mod:`neurocodec.models.nirvana` (its Fourier features, frame code, exact GELU, PixelShuffle,
zero-padded 3x3 convolutions, patches in raster order); changing any of it needs a new header
version.

Decoding rebuilds each group's network from its integers (one group's integers pulled from the
stream at a time), evaluates several groups' networks at once in float64 on every patch of the
frame padded to a multiple of P, keeps each group's m_g frames, and rounds the samples to the
8-bit grid: the integers are exact, float64 keeps the network's rounding error near 1e-16, and
the rounding to 1/255 removes it unless a sample falls within about 1e-15 of a half step, so
the frames are the same on 1 and 2 threads (tested; on carphone too) and, but for such ties, on
any CPU. The padding (and a
version-1 file's frames past the video's end) are cropped by the base class.
"""

from __future__ import annotations

import functools
import itertools
import math
import struct
import sys
import time

import torch
from tqdm import tqdm

from neurocodec.codecs import c3_fit, nirvana_fit
from neurocodec.codecs.base import Codec
from neurocodec.container import Header, VideoGeometry
from neurocodec.entropy import coder
from neurocodec.errors import BitstreamError, ConfigError, NeurocodecError
from neurocodec.models.c3 import MEAN_BITS, SCALES, laplace_tables
from neurocodec.models.nirvana import (
    Arch,
    GroupNet,
    coded_rows,
    coordinate_features,
    frame_code,
    parameter_count,
    parameter_tensors,
    stacked_forward,
)
from neurocodec.registry import register_codec

__all__ = ["ARCH", "FIRST_MULTIPLE", "LAMBDAS", "PRESETS", "NirvanaCodec", "pack_header", "unpack_header"]

VERSION = 2
# quality -> lambda (loss lambda * 255^2 * MSE + bpp): geometric, x2 a step
LAMBDAS = {1: 0.001, 2: 0.002, 3: 0.004, 4: 0.008, 5: 0.016, 6: 0.032}
PRESETS = {"fast": 150, "medium": 600, "slow": 2000}  # iterations per group after the first
FIRST_MULTIPLE = 4  # the first group gets this many times the iterations
ARCH = Arch()
# later groups span at most this much motion (nirvana_fit.group_sizes: the sum of the mean absolute
# change from frame to frame, 8-bit levels) and at most ARCH.group frames
MOTION_BUDGET = 10.0
DECODE_NUMBERS = 1 << 24  # about the most activations the decoder holds at once (float64: 128 MiB)
TENSORS = 10

_HEAD = struct.Struct("<BBBBHHHHBHB")


# --------------------------------------------------------------------------------------------
# The header section


def pack_header(arch: Arch, sizes: list[int], steps: list[int], scales: list[list[int]]) -> bytes:
    """The ``header`` section (version 2) of groups of ``sizes`` frames."""
    out = bytearray(
        _HEAD.pack(
            VERSION,
            arch.group,
            arch.patch,
            arch.freqs,
            arch.hidden,
            arch.width0,
            arch.width1,
            arch.width2,
            arch.channels,
            len(sizes),
            len(steps),
        )
    )
    out += struct.pack(f"<{len(steps)}b", *steps)
    out += bytes(sizes)
    for row in scales:
        out += bytes(row)
    return bytes(out)


def unpack_header(
    data: bytes, frames: int, channels: int
) -> tuple[Arch, list[int], list[list[int]], list[list[int]]]:
    """(architecture, frames per group, step exponents, scale indices) of a ``header`` section,
    every field checked against the format and the container's geometry (``frames``,
    ``channels``). A version-1 header's groups all have G frames (the last one padded)."""
    if len(data) < _HEAD.size:
        raise BitstreamError("the nirvana header section is truncated")
    version, g, p, freqs, hidden, w0, w1, w2, c, groups, n = _HEAD.unpack_from(data)
    if version not in (1, VERSION):
        raise BitstreamError(
            f"nirvana header version {version} is not supported (this decoder reads 1 and {VERSION})"
        )
    arch = Arch(group=g, patch=p, freqs=freqs, hidden=hidden, width0=w0, width1=w1, width2=w2, channels=c)
    reason = arch.check()
    if reason:
        raise BitstreamError(f"the nirvana header has an unsupported architecture: {reason}")
    if c != channels:
        raise BitstreamError(f"the nirvana header says {c} channels, the file's geometry {channels}")
    if n != TENSORS:
        raise BitstreamError(f"the nirvana header says {n} parameter tensors, the network has {TENSORS}")
    if version == 1 and groups != -(-frames // g):
        raise BitstreamError(
            f"the nirvana header says {groups} groups, {frames} frames in groups of {g} make {-(-frames // g)}"
        )
    if not 1 <= groups <= frames:
        raise BitstreamError(f"the nirvana header says {groups} groups for {frames} frames")
    listed = groups if version > 1 else 0  # version 2 lists each group's frames
    size = _HEAD.size + n + listed + groups * n
    if len(data) != size:
        raise BitstreamError(f"the nirvana header section has {len(data)} bytes, its fields need {size}")
    steps = list(struct.unpack_from(f"<{n}b", data, _HEAD.size))
    if not all(0 <= k <= 24 for k in steps):
        raise BitstreamError(f"the nirvana header has a step exponent out of 0..24: {steps}")
    sizes = list(data[_HEAD.size + n : _HEAD.size + n + listed]) if listed else [g] * groups
    if listed and (not all(1 <= m <= g for m in sizes) or sum(sizes) != frames):
        raise BitstreamError(
            f"the nirvana header's groups do not hold {frames} frames of at most {g} a group"
        )
    flat = data[_HEAD.size + n + listed :]
    scales = [list(flat[i * n : (i + 1) * n]) for i in range(groups)]
    if any(s >= SCALES for row in scales for s in row):
        raise BitstreamError(f"the nirvana header has a table scale index beyond {SCALES - 1}")
    return arch, sizes, steps, scales


# --------------------------------------------------------------------------------------------
# Networks from integers


@functools.lru_cache(maxsize=8)
def _row_numbers(arch: Arch) -> tuple[int, ...]:
    """How many numbers one row (first index) of each parameter tensor holds, in file order."""
    return tuple(t[0].numel() for _, t in parameter_tensors(GroupNet(arch)))


def coded_sizes(arch: Arch, frames: int) -> list[int]:
    """How many integers each parameter tensor of a group of ``frames`` frames codes, in file
    order (:func:`~neurocodec.models.nirvana.coded_rows`)."""
    return [r * n for r, n in zip(coded_rows(arch, frames), _row_numbers(arch), strict=True)]


def _indexes(sizes: list[int], scales: list[int]) -> torch.Tensor:
    """The table index of every coded integer of one group (its tensors' ``sizes`` and ``scales``)."""
    return torch.cat(
        [
            torch.full((size,), s << MEAN_BITS, dtype=torch.int32)
            for s, size in zip(scales, sizes, strict=True)
        ]
    )


def _entropy_bits(values: torch.Tensor) -> float:
    """The empirical zero-order entropy of ``values`` times their count: what a code fitted to
    their own histogram (its table not counted) would take. Kept in ``last_fit`` beside the
    Laplace tables' bits, as the most a learned per-tensor CDF could save."""
    if not values.numel():
        return 0.0
    counts = torch.unique(values, return_counts=True)[1].double()
    return float(-(counts * torch.log2(counts / counts.sum())).sum())


def evaluate(params: list[torch.Tensor], arch: Arch, rows: int, cols: int) -> torch.Tensor:
    """The frames ``(C, B * G, rows P, cols P)`` of B networks (float64 tensors of
    :func:`~neurocodec.models.nirvana.parameter_tensors` stacked, ``(B, *shape)``), rounded to the
    8-bit grid; patches in batches of about :data:`DECODE_NUMBERS` activations."""
    device = params[0].device
    features = coordinate_features(rows, cols, arch.freqs).to(device)
    code = frame_code(arch.group, arch.width0).to(device)
    count = params[0].shape[0]
    step = max(1, DECODE_NUMBERS // (count * arch.group * arch.activations()))
    out = torch.cat(
        [stacked_forward(features[i : i + step], params, arch, code) for i in range(0, len(features), step)]
    )
    c, g, p = arch.channels, arch.group, arch.patch
    frames = out.reshape(rows, cols, count * g, c, p, p).permute(3, 2, 0, 4, 1, 5)
    frames = frames.reshape(c, count * g, rows * p, cols * p)
    return torch.nan_to_num(frames).clamp(0, 1).mul(255).round().div(255)


# --------------------------------------------------------------------------------------------
# The codec


@register_codec(qualities=tuple(LAMBDAS), priority=-1)  # never the default: it fits each video
class NirvanaCodec(Codec):
    name = "nirvana"
    media = "video"
    channels = (3,)
    adaptive = True
    default_quality = 3
    presets = PRESETS

    def __init__(self, quality: int = 0, weights_hash: bytes = bytes(4), **arch):
        super().__init__(quality, weights_hash)
        try:
            self.arch = Arch(**{**ARCH.as_dict(), **arch})
        except TypeError as e:
            raise ConfigError(f"nirvana architecture: {e}") from None
        reason = self.arch.check()
        if reason:
            raise ConfigError(f"nirvana architecture: {reason}")
        self.lmbda = LAMBDAS.get(quality)
        self.progress = sys.stderr.isatty()
        self.seed = 0
        self.motion_budget: float | None = MOTION_BUDGET  # frames per group by motion; None: G each
        self.last_fit: dict = {}

    def _encode(
        self, x: torch.Tensor, colour: str = "rgb", effort: int = 0
    ) -> tuple[VideoGeometry, dict[str, bytes]]:
        if self.lmbda is None:
            raise ConfigError(
                f"nirvana has no quality {self.quality}: use one of {', '.join(map(str, LAMBDAS))}"
            )
        start = time.perf_counter()
        _, c, t, h, w = x.shape
        arch = Arch(**{**self.arch.as_dict(), "channels": c})
        p = arch.patch
        rows, cols = -(-h // p), -(-w // p)
        schedule = nirvana_fit.Schedule(effort or PRESETS["fast"], first=FIRST_MULTIPLE)
        with torch.inference_mode(False), torch.enable_grad():
            x = x[0].clone()  # (C, T, H, W), a normal tensor
            sizes = nirvana_fit.group_sizes(x, arch.group, self.motion_budget, colour)
            groups = len(sizes)
            x = torch.nn.functional.pad(x, (0, cols * p - w, 0, rows * p - h), mode="replicate")
            features = coordinate_features(rows, cols, arch.freqs).to(x.device, torch.float32)
            torch.manual_seed(self.seed)
            net = GroupNet(arch).to(x.device)
            total = schedule.iterations * (schedule.first + groups - 1)
            bar = tqdm(total=total, disable=not self.progress, file=sys.stderr, unit="it", desc="nirvana")
            steps, previous, fits, carry = None, None, [], {}
            for i, first in enumerate(itertools.accumulate([0, *sizes[:-1]])):
                problem = nirvana_fit.new_problem(
                    x[:, first : first + sizes[i]], features, rows, cols, sizes[i], (h, w), self.lmbda, net,
                    colour,
                )  # fmt: skip

                def tick(mse: float, bits: float, i: int = i) -> None:
                    bar.update()
                    bar.set_postfix(
                        group=f"{i + 1}/{groups}",
                        psnr=f"{-10 * math.log10(max(mse, 1e-10)):.2f}",
                        refresh=False,
                    )

                fit, steps = nirvana_fit.fit_group(problem, schedule, steps, previous, tick, carry)
                fits.append(fit)
                previous = [n.to(torch.float32) for n in fit.ints]
            bar.close()
        # the coded integers: differences from the previous group's, the rows each group codes
        values, scales, group_bits, zero_order = [], [], [], 0.0
        prev = [torch.zeros_like(n) for n in fits[0].ints]
        for fit, frames in zip(fits, sizes, strict=True):
            row, bits = [], 0.0
            for n, m, r in zip(fit.ints, prev, coded_rows(arch, frames), strict=True):
                d = (n - m)[:r].reshape(-1).cpu()
                scale, cost = c3_fit.parameter_cost(d)  # the table that codes d in the fewest bits
                row.append(scale)
                bits += cost
                values.append(d)
                zero_order += _entropy_bits(d)
            scales.append(row)
            group_bits.append(bits)
            prev = fit.ints
        if any(abs(int(v.abs().max())) >= 2**31 - 1 for v in values if v.numel()):
            raise ConfigError("nirvana: a network parameter is too large to code; lower the quality")
        header = pack_header(arch, sizes, steps, scales)
        all_values = torch.cat(values).to(torch.int32)
        indexes = torch.cat(
            [_indexes(coded_sizes(arch, n), row) for n, row in zip(sizes, scales, strict=True)]
        )
        params = coder.fit_lanes(
            lambda lanes: coder.encode(all_values, indexes, laplace_tables(), lanes=lanes), len(all_values)
        )
        # what the decoder will see: PSNR of the decoded frames against the input
        sections = {"header": header, "params": params}
        decoded = self._reconstruct(arch, sizes, steps, scales, params, rows, cols, x.device)
        mse = float((decoded[:, :, :h, :w].float() - x[:, :, :h, :w]).square().mean())  # channels alike
        self.last_fit = {
            "arch": arch.as_dict(),
            "parameters_per_group": parameter_count(arch),
            "groups": groups,
            "group_sizes": sizes,
            "motion_budget": self.motion_budget,
            "iterations": {"first": schedule.iterations * schedule.first, "others": schedule.iterations},
            "steps": {name: k for (name, _), k in zip(parameter_tensors(net), steps, strict=True)},
            "header_bytes": len(header),
            "params_bytes": len(params),
            "group_bits": group_bits,
            "group_proxy_bits": [f.bits for f in fits],  # the training's rate proxy, for comparison
            "zero_order_bits": zero_order,
            "psnr_fit": -10 * math.log10(max(mse, 1e-12)),
            "group_psnr_train": [-10 * math.log10(max(f.mse, 1e-12)) for f in fits],
            "lambda": self.lmbda,
            "colour": colour,
            "seconds": time.perf_counter() - start,
        }
        geometry = VideoGeometry(
            frames=t, rate_num=25, rate_den=1, height=h, width=w, channels=c, bit_depth=8
        )
        return geometry, sections

    def _reconstruct(
        self,
        arch: Arch,
        sizes: list[int],
        steps: list[int],
        scales: list[list[int]],
        params: bytes,
        rows: int,
        cols: int,
        device: torch.device,
    ) -> torch.Tensor:
        """The decoded frames ``(C, sum(sizes), rows P, cols P)`` (float32) of checked header fields:
        group ``g`` holds ``sizes[g]`` frames and codes the rows of :func:`coded_sizes`."""
        coded = [coded_sizes(arch, n) for n in sizes]
        try:
            claimed = coder.stream_info(params)["num_symbols"]
        except NeurocodecError:
            raise BitstreamError("the nirvana params section is not a valid stream") from None
        if claimed != sum(map(sum, coded)):  # checked before decoding anything
            raise BitstreamError(
                f"the nirvana params stream holds {claimed} integers, the header needs {sum(map(sum, coded))}"
            )
        try:
            stream = coder.StreamDecoder(params, laplace_tables())
        except NeurocodecError as e:
            raise BitstreamError(f"the nirvana params stream is corrupt: {e}") from None
        shapes = [tensor.shape for _, tensor in parameter_tensors(GroupNet(arch))]
        out = torch.empty(arch.channels, sum(sizes), rows * arch.patch, cols * arch.patch, device=device)
        # networks evaluated together: about DECODE_NUMBERS activations a batch (fewer, larger operations)
        together = max(1, DECODE_NUMBERS // (rows * cols * arch.group * arch.activations()))
        ints = [torch.zeros(math.prod(shape), dtype=torch.int64) for shape in shapes]
        batch, done = [], 0
        for i in range(len(sizes)):  # one group's integers at a time: one network's memory
            try:
                values = torch.from_numpy(stream.pull(_indexes(coded[i], scales[i])).astype("int64"))
                if i == len(sizes) - 1:
                    stream.finish()
            except NeurocodecError as e:
                raise BitstreamError(f"the nirvana params stream is corrupt: {e}") from None
            for j, piece in enumerate(torch.split(values, coded[i])):
                ints[j][: len(piece)] += piece  # the group's leading rows; the rest as before
            if any(int(n.abs().max()) > 2**40 for n in ints if n.numel()):
                raise BitstreamError("the nirvana params stream is corrupt: a parameter is out of range")
            batch.append(
                [
                    (n.to(torch.float64) * 2.0**-k).reshape(shape)
                    for n, k, shape in zip(ints, steps, shapes, strict=True)
                ]
            )
            if len(batch) == together or i == len(sizes) - 1:
                stacked = [torch.stack(ts).to(device) for ts in zip(*batch, strict=True)]
                frames_out = evaluate(stacked, arch, rows, cols).float()  # (C, B G, ...)
                for b, n in enumerate(sizes[i + 1 - len(batch) : i + 1]):
                    out[:, done : done + n] = frames_out[:, b * arch.group : b * arch.group + n]
                    done += n
                batch = []
        return out

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        missing = {"header", "params"} - sections.keys()
        if missing:
            raise BitstreamError(f"this nirvana file lacks its {' and '.join(sorted(missing))} section")
        geo = header.geometry
        if not isinstance(geo, VideoGeometry):
            raise BitstreamError("a nirvana file holds a video")
        arch, sizes, steps, scales = unpack_header(sections["header"], geo.frames, geo.channels)
        rows, cols = -(-geo.height // arch.patch), -(-geo.width // arch.patch)
        return self._reconstruct(arch, sizes, steps, scales, sections["params"], rows, cols, self.device)[
            None
        ]
