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

``header`` (version 1), ``16 + n + groups * n`` bytes::

    offset  size  field
    0       1     version: 1
    1       1     G, frames per group (1..32)
    2       1     P, patch side (8, 16 or 32)
    3       1     Fourier frequencies per coordinate (0..16)
    4       2     MLP hidden width (1..256)
    6       2     width0: channels of the P/4 feature map (1..256)
    8       2     width1: channels a frame at P/2 (1..256)
    10      2     width2: channels a frame at P (1..256)
    12      1     C, channels (the geometry's)
    13      2     groups = ceil(frames / G)
    15      1     n, parameter tensors a network (10)
    16      n     k_i (int8, 0..24): tensor i's integers are its values * 2^k_i
    16+n    g*n   s_{g,i} (uint8, < 48): the scale index of the zero-mean Laplace table of tensor
                  i of group g (group-major), c3's tables (table s * 16 of
                  :func:`neurocodec.models.c3.laplace_tables`)

``params``: one rANS stream (:mod:`neurocodec.entropy.coder`; its lane count is the encoder's
choice, :func:`~neurocodec.entropy.coder.fit_lanes`) of ``groups * parameter_count`` integers:
group by group, tensor by tensor in the order of
:func:`~neurocodec.models.nirvana.parameter_tensors` (``fc1.weight (hidden, 2 + 4 freqs)``,
``fc1.bias``, ``fc2.weight (width0 (P/4)^2, hidden)``, ``fc2.bias``, ``conv1.weight (G 4 width1,
width0, 3, 3)``, ``conv1.bias``, ``conv2.weight (G 4 width2, width1, 3, 3)``, ``conv2.bias``,
``conv3.weight (G C, width2, 3, 3)``, ``conv3.bias``), each tensor's entries in row-major order.
The value coded for entry e of tensor i of group g is ``n_{g,i}[e] - n_{g-1,i}[e]`` (``n_{-1} =
0``), with the table of ``s_{g,i}``; the parameter is ``n_{g,i}[e] * 2^-k_i``.

The computation is part of the format (version 1): the network of
:mod:`neurocodec.models.nirvana` (its Fourier features, frame code, exact GELU, PixelShuffle,
zero-padded 3x3 convolutions, patches in raster order, frame ``j`` of group ``g`` being frame
``g G + j``); changing any of it needs a new header version.

Decoding rebuilds each group's network from its integers (one group's integers pulled from the
stream at a time), evaluates several groups' networks at once in float64 on every patch of the
frame padded to a multiple of P, and rounds the samples to the 8-bit grid: the integers are
exact, float64 keeps the network's rounding error near 1e-16, and the rounding to 1/255 removes
it unless a sample falls within about 1e-15 of a half step, so the frames are the same on 1 and
2 threads (tested; on carphone too) and, but for such ties, on any CPU. Frames past the video's
end (the last group is padded by repeating the last frame) and the padding are cropped by the
base class.
"""

from __future__ import annotations

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
    coordinate_features,
    frame_code,
    parameter_count,
    parameter_tensors,
    stacked_forward,
)
from neurocodec.registry import register_codec

__all__ = ["ARCH", "FIRST_MULTIPLE", "LAMBDAS", "PRESETS", "NirvanaCodec", "pack_header", "unpack_header"]

VERSION = 1
# quality -> lambda (loss lambda * 255^2 * MSE + bpp): geometric, x2 a step
LAMBDAS = {1: 0.001, 2: 0.002, 3: 0.004, 4: 0.008, 5: 0.016, 6: 0.032}
PRESETS = {"fast": 150, "medium": 600, "slow": 2000}  # iterations per group after the first
FIRST_MULTIPLE = 4  # the first group gets this many times the iterations
ARCH = Arch()
DECODE_NUMBERS = 1 << 24  # about the most activations the decoder holds at once (float64: 128 MiB)
TENSORS = 10

_HEAD = struct.Struct("<BBBBHHHHBHB")


# --------------------------------------------------------------------------------------------
# The header section


def pack_header(arch: Arch, groups: int, steps: list[int], scales: list[list[int]]) -> bytes:
    """The ``header`` section."""
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
            groups,
            len(steps),
        )
    )
    out += struct.pack(f"<{len(steps)}b", *steps)
    for row in scales:
        out += bytes(row)
    return bytes(out)


def unpack_header(data: bytes, frames: int, channels: int) -> tuple[Arch, int, list[int], list[list[int]]]:
    """(architecture, groups, step exponents, scale indices) of a ``header`` section, every field
    checked against the format and the container's geometry (``frames``, ``channels``)."""
    if len(data) < _HEAD.size:
        raise BitstreamError("the nirvana header section is truncated")
    version, g, p, freqs, hidden, w0, w1, w2, c, groups, n = _HEAD.unpack_from(data)
    if version != VERSION:
        raise BitstreamError(
            f"nirvana header version {version} is not supported (this decoder reads {VERSION})"
        )
    arch = Arch(group=g, patch=p, freqs=freqs, hidden=hidden, width0=w0, width1=w1, width2=w2, channels=c)
    reason = arch.check()
    if reason:
        raise BitstreamError(f"the nirvana header has an unsupported architecture: {reason}")
    if c != channels:
        raise BitstreamError(f"the nirvana header says {c} channels, the file's geometry {channels}")
    if groups != -(-frames // g):
        raise BitstreamError(
            f"the nirvana header says {groups} groups, {frames} frames in groups of {g} make {-(-frames // g)}"
        )
    if n != TENSORS:
        raise BitstreamError(f"the nirvana header says {n} parameter tensors, the network has {TENSORS}")
    size = _HEAD.size + n + groups * n
    if len(data) != size:
        raise BitstreamError(f"the nirvana header section has {len(data)} bytes, its fields need {size}")
    steps = list(struct.unpack_from(f"<{n}b", data, _HEAD.size))
    if not all(0 <= k <= 24 for k in steps):
        raise BitstreamError(f"the nirvana header has a step exponent out of 0..24: {steps}")
    flat = data[_HEAD.size + n :]
    scales = [list(flat[i * n : (i + 1) * n]) for i in range(groups)]
    if any(s >= SCALES for row in scales for s in row):
        raise BitstreamError(f"the nirvana header has a table scale index beyond {SCALES - 1}")
    return arch, groups, steps, scales


# --------------------------------------------------------------------------------------------
# Networks from integers


def tensor_sizes(arch: Arch) -> list[int]:
    """How many integers each parameter tensor of a network codes, in file order."""
    return [t.numel() for _, t in parameter_tensors(GroupNet(arch))]


def _indexes(sizes: list[int], scales: list[list[int]]) -> torch.Tensor:
    """The table index of every coded integer of the groups whose scale indices are ``scales``."""
    return torch.cat(
        [
            torch.full((size,), s << MEAN_BITS, dtype=torch.int32)
            for row in scales
            for s, size in zip(row, sizes, strict=True)
        ]
    )


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
        g, p = arch.group, arch.patch
        groups = -(-t // g)
        rows, cols = -(-h // p), -(-w // p)
        schedule = nirvana_fit.Schedule(effort or PRESETS["fast"], first=FIRST_MULTIPLE)
        with torch.inference_mode(False), torch.enable_grad():
            x = x[0].clone()  # (C, T, H, W), a normal tensor
            pads = (0, cols * p - w, 0, rows * p - h, 0, groups * g - t)
            x = torch.nn.functional.pad(x[None], pads, mode="replicate")[0]
            features = coordinate_features(rows, cols, arch.freqs).to(x.device, torch.float32)
            torch.manual_seed(self.seed)
            net = GroupNet(arch).to(x.device)
            total = schedule.iterations * (schedule.first + groups - 1)
            bar = tqdm(total=total, disable=not self.progress, file=sys.stderr, unit="it", desc="nirvana")
            steps, previous, fits, carry = None, None, [], {}
            for i in range(groups):
                frames = min(g, t - i * g)
                problem = nirvana_fit.new_problem(
                    x[:, i * g : (i + 1) * g], features, rows, cols, frames, (h, w), self.lmbda, net, colour
                )

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
        # the coded integers: differences from the previous group's
        values, scales, group_bits = [], [], []
        prev = [torch.zeros_like(n) for n in fits[0].ints]
        for fit in fits:
            row, bits = [], 0.0
            for n, m in zip(fit.ints, prev, strict=True):
                d = (n - m).reshape(-1).cpu()
                scale, cost = c3_fit.parameter_cost(d)  # the table that codes d in the fewest bits
                row.append(scale)
                bits += cost
                values.append(d)
            scales.append(row)
            group_bits.append(bits)
            prev = fit.ints
        if any(abs(int(v.abs().max())) >= 2**31 - 1 for v in values):
            raise ConfigError("nirvana: a network parameter is too large to code; lower the quality")
        header = pack_header(arch, groups, steps, scales)
        all_values = torch.cat(values).to(torch.int32)
        indexes = _indexes(tensor_sizes(arch), scales)
        params = coder.fit_lanes(
            lambda lanes: coder.encode(all_values, indexes, laplace_tables(), lanes=lanes), len(all_values)
        )
        # what the decoder will see: PSNR of the decoded frames against the input
        sections = {"header": header, "params": params}
        decoded = self._reconstruct(arch, groups, steps, scales, params, rows, cols, x.device)
        mse = float((decoded[:, :t, :h, :w].float() - x[:, :t, :h, :w]).square().mean())  # channels alike
        self.last_fit = {
            "arch": arch.as_dict(),
            "parameters_per_group": parameter_count(arch),
            "groups": groups,
            "iterations": {"first": schedule.iterations * schedule.first, "others": schedule.iterations},
            "steps": {name: k for (name, _), k in zip(parameter_tensors(net), steps, strict=True)},
            "header_bytes": len(header),
            "params_bytes": len(params),
            "group_bits": group_bits,
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
        groups: int,
        steps: list[int],
        scales: list[list[int]],
        params: bytes,
        rows: int,
        cols: int,
        device: torch.device,
    ) -> torch.Tensor:
        """The decoded frames ``(C, groups * G, rows P, cols P)`` (float32) of checked header fields."""
        count = parameter_count(arch)
        try:
            claimed = coder.stream_info(params)["num_symbols"]
        except NeurocodecError:
            raise BitstreamError("the nirvana params section is not a valid stream") from None
        if claimed != groups * count:  # checked before decoding anything
            raise BitstreamError(
                f"the nirvana params stream holds {claimed} integers, the header needs {groups * count}"
            )
        try:
            stream = coder.StreamDecoder(params, laplace_tables())
        except NeurocodecError as e:
            raise BitstreamError(f"the nirvana params stream is corrupt: {e}") from None
        shapes = [tensor.shape for _, tensor in parameter_tensors(GroupNet(arch))]
        sizes = [math.prod(shape) for shape in shapes]
        out = torch.empty(
            arch.channels, groups * arch.group, rows * arch.patch, cols * arch.patch, device=device
        )
        # networks evaluated together: about DECODE_NUMBERS activations a batch (fewer, larger operations)
        together = max(1, DECODE_NUMBERS // (rows * cols * arch.group * arch.activations()))
        ints = [torch.zeros(size, dtype=torch.int64) for size in sizes]
        batch = []
        for i in range(groups):  # one group's integers at a time: memory of one network, not the file's
            try:
                values = torch.from_numpy(stream.pull(_indexes(sizes, [scales[i]])).astype("int64"))
                if i == groups - 1:
                    stream.finish()
            except NeurocodecError as e:
                raise BitstreamError(f"the nirvana params stream is corrupt: {e}") from None
            position = 0
            for j, size in enumerate(sizes):
                ints[j] = ints[j] + values[position : position + size]
                position += size
            if any(int(n.abs().max()) > 2**40 for n in ints if n.numel()):
                raise BitstreamError("the nirvana params stream is corrupt: a parameter is out of range")
            batch.append(
                [
                    (n.to(torch.float64) * 2.0**-k).reshape(shape)
                    for n, k, shape in zip(ints, steps, shapes, strict=True)
                ]
            )
            if len(batch) == together or i == groups - 1:
                stacked = [torch.stack(ts).to(device) for ts in zip(*batch, strict=True)]
                first = (i + 1 - len(batch)) * arch.group
                out[:, first : (i + 1) * arch.group] = evaluate(stacked, arch, rows, cols).float()
                batch = []
        return out

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        missing = {"header", "params"} - sections.keys()
        if missing:
            raise BitstreamError(f"this nirvana file lacks its {' and '.join(sorted(missing))} section")
        geo = header.geometry
        if not isinstance(geo, VideoGeometry):
            raise BitstreamError("a nirvana file holds a video")
        arch, groups, steps, scales = unpack_header(sections["header"], geo.frames, geo.channels)
        rows, cols = -(-geo.height // arch.patch), -(-geo.width // arch.patch)
        return self._reconstruct(arch, groups, steps, scales, sections["params"], rows, cols, self.device)[
            None
        ]
