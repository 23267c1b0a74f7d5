"""``c3``: an overfitted image codec (C3 / Cool-chic class). No trained weights: each image gets
its own latent grids and tiny networks, fitted at encode time (:mod:`neurocodec.codecs.c3_fit`),
and the networks' quantized parameters travel in the file (:mod:`neurocodec.models.c3`).

Quality ``q`` is the rate-distortion trade-off ``lambda`` (:data:`LAMBDAS`, loss ``bpp + lambda *
255^2 * MSE``); ``effort`` is the number of fitting iterations (:data:`PRESETS` names budgets;
``effort=0`` uses the ``fast`` one). Setting ``target_bpp`` fits to a rate instead: lambda is
steered during the fit (:class:`~neurocodec.codecs.c3_fit.RateTarget`; ``neurocodec encode --bpp``).

File sections:

- ``networks``: the architecture (5 bytes: ARM hidden width, window, coarse window, scan order
  -- 1, raster, the only one --, synthesis width), for each of the 5 parameter groups its step
  exponent ``k`` (step ``2^-k``, int8) and the scale index ``s`` (uint8) of the zero-mean Laplace
  table that codes it, then one rANS stream of every parameter's integer (parameter / step), in
  the order of :func:`~neurocodec.codecs.c3_fit.groups`;
- ``latents``: one rANS stream of every latent, grids coarse to fine, each in raster order;
  latent ``y`` is coded as ``y - m`` with table ``s * 16 + f``, where the integer ARM's mean is
  ``m + f/16`` and its log-scale the ``s``-th table scale (``entropy/native/arm.hpp``): 48 scales x
  16 mean fractions of Laplace tables (:func:`laplace_tables`).
"""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

import numpy as np
import torch

from neurocodec.codecs import c3_fit
from neurocodec.codecs.base import Codec, pad_to_multiple
from neurocodec.container import Header, ImageGeometry
from neurocodec.entropy import _rans, coder
from neurocodec.errors import BitstreamError, ConfigError, NeurocodecError
from neurocodec.models.c3 import (
    GRIDS,
    LATENT_MAX,
    MEAN_BITS,
    SCALES,
    WEIGHT_MAX,
    ImageModel,
    IntegerARM,
    check_integer_bounds,
    grid_sizes,
    laplace_tables,
)
from neurocodec.registry import register_codec

__all__ = ["LAMBDAS", "PRESETS", "C3Codec", "laplace_tables"]

# quality -> lambda (loss bpp + lambda * 255^2 * MSE): geometric from 0.0018 to 0.0932
LAMBDAS = {1: 0.0018, 2: 0.0040, 3: 0.0087, 4: 0.0193, 5: 0.0424, 6: 0.0932}
PRESETS = {"fast": 1000, "medium": 3000, "slow": 10000}  # fitting iterations
ARCH = {
    "arm_hidden": 8,
    "arm_kernel": 5,
    "arm_coarse_kernel": 3,
    "synthesis_width": 32,
    "synthesis_relu_residual": False,
}  # hidden 8: fewer parameter bytes, same R-D (kodim01 crops, q1 and q3); synthesis 32: -9 points
# of BD-rate against AVIF on kodim01-04 at the fast preset (eval/c3_kodak_full.json), ~15-20 % slower fits
RICH_ARCH = {"arm_hidden": 16}  # from quality RICH_QUALITY (or a target of RICH_BPP) up
RICH_QUALITY, RICH_BPP = 3, 0.25
# A 16-wide ARM coded kodim03 and kodim04 whole at q3 (fast) with 6 % fewer latent bytes for about
# 400 B more of networks: -2.4 and -3.4 % rate at +0.21 and +0.15 dB (eval/c3_probe.jsonl, tags
# arm16-full-q3). Below q3 those 400 B are as much as the ARM saves or more. Decoding a Kodak
# image takes 0.299 s with it against 0.134 s without (one thread, eval/c3_speed.json).
RASTER = 1  # the scan order (low 4 bits of the networks header's layout byte): the only one
# Layout flag of the networks header: the synthesis lacks the ReLU residual 3x3 that files before
# 2026-12-06 have.
NO_RELU_RESIDUAL = 0x10
PADDING = 1 << (GRIDS - 1)
LATENTS_CHUNK_BITS = 30  # the coder's largest chunk: every latent stream is one chunk


# --------------------------------------------------------------------------------------------
# Bits of the networks


_HEAD = struct.Struct("<5B")  # ARM hidden, window, coarse window, layout; synthesis width
_GROUP = struct.Struct("<bB")  # step exponent k (step 2^-k), scale index of the group's table


def pack_networks(model: ImageModel, steps: dict[str, int]) -> bytes:
    """The ``networks`` section of a fitted model whose groups are quantized with ``steps``."""
    arm = model.arm
    layout = RASTER | (NO_RELU_RESIDUAL if model.synthesis.res1 is None else 0)
    out = bytearray(
        _HEAD.pack(arm.hidden_size, arm.kernel, arm.coarse_kernel, layout, model.synthesis.mix.out_channels)
    )
    values, indexes = [], []
    for name, tensors in c3_fit.groups(model):
        k = steps[name]
        ints = (
            torch.cat([c3_fit.coded_values(model, t).detach() * 2.0**k for t in tensors])
            .cpu()
            .to(torch.int64)
        )
        scale = c3_fit.parameter_cost(ints)[0]
        out += _GROUP.pack(k, scale)
        values.append(ints)
        indexes.append(torch.full_like(ints, scale << MEAN_BITS))
    stream = coder.encode(
        torch.cat(values).to(torch.int32), torch.cat(indexes).to(torch.int32), laplace_tables(), lanes=1
    )
    return bytes(out) + stream


def unpack_networks(data: bytes) -> tuple[ImageModel, dict[str, int]]:
    """The networks of a ``networks`` section, in an :class:`ImageModel` (its latents are a
    placeholder: the networks do not depend on the image size), and the step exponents."""
    groups_len = 5 * _GROUP.size
    if len(data) < _HEAD.size + groups_len:
        raise BitstreamError("the c3 networks section is truncated")
    head = _HEAD.unpack_from(data)
    hidden, kernel, coarse_kernel, layout, width_ = head
    supported = kernel in (3, 5, 7) and coarse_kernel in (3, 5) and layout & ~NO_RELU_RESIDUAL == RASTER
    if not (supported and 1 <= hidden <= 64 and 1 <= width_ <= 64):
        raise BitstreamError(f"the c3 networks section has an unsupported architecture {head}")
    arch = {
        "arm_hidden": hidden,
        "arm_kernel": kernel,
        "arm_coarse_kernel": coarse_kernel,
        "synthesis_width": width_,
        "synthesis_relu_residual": not layout & NO_RELU_RESIDUAL,
    }
    model = ImageModel(PADDING, PADDING, **arch)
    groups = c3_fit.groups(model)
    steps, indexes = {}, []
    for i, (name, tensors) in enumerate(groups):
        k, scale = _GROUP.unpack_from(data, _HEAD.size + i * _GROUP.size)
        if not (-8 <= k <= 24 and scale < SCALES):
            raise BitstreamError("the c3 networks section is corrupt")
        steps[name] = k
        count = sum(c3_fit.coded_values(model, t).numel() for t in tensors)
        indexes.append(torch.full((count,), scale << MEAN_BITS, dtype=torch.int32))
    values = torch.from_numpy(
        coder.decode(data[_HEAD.size + groups_len :], torch.cat(indexes), laplace_tables())
    )
    values = values.to(torch.float64)
    position = 0
    with torch.no_grad():
        for name, tensors in groups:
            for t in tensors:
                n = c3_fit.coded_values(model, t).numel()
                v = (values[position : position + n] * 2.0 ** -steps[name]).to(t.dtype)
                position += n
                if t is model.arm.same:
                    t.zero_()
                    t[model.arm.mask.expand_as(t)] = v
                else:
                    t.copy_(v.reshape(t.shape))
    return model.eval(), steps


def integer_arm(model: ImageModel, steps: dict[str, int]) -> IntegerARM:
    """The ARM of a quantized model as integers, checked to evaluate exactly."""
    arm = model.arm
    kw, kb = steps["arm.weight"], steps["arm.bias"]

    def ints(t: torch.Tensor, k: int) -> torch.Tensor:
        return torch.round(t.detach().to(torch.float64).cpu() * 2.0**k)

    result = IntegerARM(
        same=ints(arm.same * arm.mask, kw),
        coarse=ints(arm.coarse, kw),
        bias=ints(arm.bias, kb),
        hidden_w=ints(arm.hidden.weight, kw),
        hidden_b=ints(arm.hidden.bias, kb),
        head_w=ints(arm.head.weight, kw),
        head_b=ints(arm.head.bias, kb),
        kw=kw,
        kb=kb,
    )
    reason = check_integer_bounds(result)
    if reason:
        raise BitstreamError(f"the c3 ARM cannot be evaluated exactly: {reason}")
    return result


# --------------------------------------------------------------------------------------------
# Latents


def latent_symbols(grids: list[torch.Tensor], arm: IntegerARM) -> tuple[np.ndarray, np.ndarray]:
    """(values, table indexes) of integer ``grids`` (float64 (h, w) each, finest first) in coding
    order: each latent minus its predicted mean's integer part, and its table."""
    coarse_first = [np.ascontiguousarray(g.numpy().reshape(-1), dtype=np.int32) for g in reversed(grids)]
    sizes = [tuple(g.shape) for g in reversed(grids)]
    n = sum(g.size for g in coarse_first)
    values, indexes = np.empty(n, np.int32), np.empty(n, np.int32)
    _rans.arm_symbols(arm.native(), sizes, coarse_first, values, indexes)
    return values, indexes


def latent_table_bits(grids: list[torch.Tensor], arm: IntegerARM) -> float:
    """The ideal code length of integer ``grids`` under the coding tables the integer ``arm``
    selects, escapes with their bypass bytes: the stream's size without its framing."""
    values, indexes = latent_symbols(grids, arm)
    total = 0.0
    for t in np.unique(indexes):
        offset, bits = c3_fit.table_bits()[t]
        total += c3_fit.code_length(values[indexes == t].astype(np.int64), offset, bits)
    return total


def latent_framing_bytes(stream: bytes) -> int:
    """Bytes of a ``latents`` stream (one lane, one chunk) that the model's rate does not see:
    its header with the chunk's counts, and the lane's state."""
    info = coder.stream_info(stream)
    return info["header_bytes"] + 4 * info["lanes"]


def encode_latents(grids: list[torch.Tensor], arm: IntegerARM) -> bytes:
    """The ``latents`` stream of integer ``grids`` (float64 (h, w) each, finest first)."""
    values, indexes = latent_symbols(grids, arm)
    # decoding is sequential (each latent's table depends on the latents before it), so the
    # stream has one lane and one chunk: no state or chunk bytes buy parallelism it cannot use
    return coder.encode(values, indexes, laplace_tables(), chunk_bits=LATENTS_CHUNK_BITS, lanes=1)


def decode_latents(data: bytes, sizes: list[tuple[int, int]], arm: IntegerARM) -> list[torch.Tensor]:
    """The integer grids (float64, finest first) of a ``latents`` stream."""
    coarse_first = sizes[::-1]
    out = np.empty(sum(h * w for h, w in sizes), np.int32)
    _rans.arm_decode(arm.native(), laplace_tables()._native, data, coarse_first, out)
    grids, position = [], 0
    for h, w in coarse_first:
        grids.append(torch.from_numpy(out[position : position + h * w].astype(np.float64)).reshape(h, w))
        position += h * w
    return grids[::-1]


# --------------------------------------------------------------------------------------------
# The codec


@register_codec(qualities=tuple(LAMBDAS), priority=-1)  # never the default: it fits each image
class C3Codec(Codec):
    name = "c3"
    media = "image"
    channels = (3,)
    adaptive = True
    default_quality = 3
    presets = PRESETS

    def __init__(self, quality: int = 0, weights_hash: bytes = bytes(4), **arch):
        super().__init__(quality, weights_hash)
        unknown = set(arch) - set(ARCH)
        if unknown:
            raise ConfigError(f"c3 has no architecture parameter {', '.join(sorted(unknown))}")
        self.overrides = arch
        self.lmbda = LAMBDAS.get(quality)
        self.progress = sys.stderr.isatty()
        self.seed = 0
        self.trace = None  # c3_fit.fit's per-step callback (eval/c3_probe.py)
        self.checkpoint: str | Path | None = None  # a folder a long fit saves to and resumes from
        self.arm_refit: int | None = None  # steps of c3_fit.refit_arm (None: the schedule's; 0: none)
        self._target_bpp: float | None = None
        self.last_fit: dict = {}  # what the last encode measured (predicted rate, steps, ...)

    @property
    def arch(self) -> dict:
        """The networks' architecture an encode uses: :data:`ARCH`, with :data:`RICH_ARCH` from
        quality :data:`RICH_QUALITY` (or a target rate of :data:`RICH_BPP`) up, then the
        constructor's overrides."""
        rich = self.quality >= RICH_QUALITY if self.target_bpp is None else self.target_bpp >= RICH_BPP
        return {**ARCH, **(RICH_ARCH if rich else {}), **self.overrides}

    @property
    def target_bpp(self) -> float | None:
        """Fit to this rate (bits per pixel, networks included) instead of the quality's lambda;
        None: use the quality."""
        return self._target_bpp

    @target_bpp.setter
    def target_bpp(self, bpp: float | None) -> None:
        if bpp is not None and not (isinstance(bpp, int | float) and 0.01 <= bpp <= 24):
            raise ConfigError(f"c3's target rate must be 0.01 to 24 bpp, not {bpp}")
        self._target_bpp = bpp

    def fit_model(self, x: torch.Tensor, effort: int = 0) -> tuple[ImageModel, dict]:
        """The model fitted to ``x`` (1, 3, h, w) with its networks quantized, before any bytes: what
        :meth:`encode` writes, and the fit's figures (steps, lambda, refined parameters, and the
        coded loss's bpp of the latents and MSE)."""
        lmbda, target = self.lmbda, None
        if self.target_bpp is not None:
            target = c3_fit.RateTarget(self.target_bpp)
            lmbda = c3_fit.start_lambda(self.target_bpp)
        if lmbda is None:
            raise ConfigError(f"c3 has no quality {self.quality}: use one of {', '.join(map(str, LAMBDAS))}")
        schedule = c3_fit.Schedule(effort or PRESETS["fast"], arm_refit=self.arm_refit)
        with torch.inference_mode(False), torch.enable_grad():
            x = x.clone()
            padded = tuple(pad_to_multiple(x, PADDING).shape[-2:])
            report: dict = {}
            model = c3_fit.fit(
                x, padded, lmbda, schedule, self.arch, self.seed, self.progress, self.trace, target,
                checkpoint=self.checkpoint, report=report,
            )  # fmt: skip
            lmbda = target.lmbda if target is not None else lmbda
            with torch.no_grad():
                for y in model.latents:
                    y.copy_(torch.round(y).clamp(-LATENT_MAX, LATENT_MAX))
            arm_saved = c3_fit.refit_arm(model, schedule.arm_refit_steps())
            with torch.no_grad():
                steps = c3_fit.choose_steps(model, x, lmbda, WEIGHT_MAX)
            refined = c3_fit.refine_parameters(model, x, lmbda, steps, WEIGHT_MAX, schedule.refine_share())
            _, bpp, mse = c3_fit.coded_loss(model, x, lmbda)
        return model, {
            "steps": steps, "lambda": lmbda, "refined_parameters": refined, "bpp": bpp, "mse": mse,
            "arm_refit_bits": arm_saved,
            "resumed_at": report.get("resumed_at", 0),
        }  # fmt: skip

    def _encode(self, x: torch.Tensor, effort: int = 0) -> tuple[ImageGeometry, dict[str, bytes]]:
        _, c, h, w = x.shape
        model, fitted = self.fit_model(x, effort)
        steps, bpp, mse = fitted["steps"], fitted["bpp"], fitted["mse"]
        networks = pack_networks(model, steps)
        grids = [y.detach()[0, 0].to(torch.float64).cpu() for y in model.latents]
        latents = encode_latents(grids, integer_arm(model, steps))
        self.last_fit = {
            "steps": steps,
            "predicted_latent_bits": bpp * h * w,
            "latent_bytes": len(latents),
            "latent_framing_bytes": latent_framing_bytes(latents),
            "network_bytes": len(networks),
            "psnr_fit": -10 * math.log10(max(mse, 1e-10)),
            "lambda": fitted["lambda"],
            "refined_parameters": fitted["refined_parameters"],
            "arm_refit_bits": fitted["arm_refit_bits"],
            "resumed_at": fitted["resumed_at"],
        }
        return ImageGeometry(height=h, width=w, channels=c, bit_depth=8), {
            "networks": networks,
            "latents": latents,
        }

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        missing = {"networks", "latents"} - sections.keys()
        if missing:
            raise BitstreamError(f"this c3 file lacks its {' and '.join(sorted(missing))} section")
        g = header.geometry
        height, width = (-(-n // PADDING) * PADDING for n in (g.height, g.width))
        sizes = grid_sizes(height, width)
        coded = sum(h * w for h, w in sizes)
        try:
            claimed = coder.stream_info(sections["latents"])["num_symbols"]
        except NeurocodecError:
            raise BitstreamError("the c3 latents section is not a valid stream") from None
        if claimed != coded:  # checked before allocating anything of the image's size
            raise BitstreamError(f"the c3 latents stream holds {claimed} latents, the image has {coded}")
        model, steps = unpack_networks(sections["networks"])
        grids = decode_latents(sections["latents"], sizes, integer_arm(model, steps))
        model = model.to(self.device)
        return model.reconstruct([y[None, None].to(self.device, torch.float32) for y in grids])
