"""Context schedules: a latent ``y`` (B, M, H, W) coded in a sequence of steps.

Each step codes a set of elements — a channel range times a spatial part (every position,
the checkerboard anchors, or the non-anchors) — with entropy parameters computed from the
hyper-prior output and from everything earlier steps decoded. The schedule knows *which*
elements a step codes and in which order; *how* the parameters are computed is a function the
codec plugs in::

    params(step, y_hat, hyper) -> (index, mean)

``y_hat`` is the latent decoded so far (B, M, H, W): earlier steps' elements hold their decoded
values, every other element is exactly 0 (in the encoder too, so a parameter function cannot
see more than the decoder will). ``index`` and ``mean`` are shaped (B, stop - start, H, W) for
the step's channel range at every position; the schedule takes the step's positions from them.
At coding time ``index`` holds integers (the table index of each element) and ``mean`` values
on a fixed-point grid, both computed exactly (an integer network, :mod:`neurocodec.models.context`)
so that the decoder derives the same ones on any device.

Schedules (constructors of :class:`ContextSchedule`):

- :meth:`~ContextSchedule.single_step`: one step, every element (the mean-scale hyperprior of
  Minnen et al. 2018: no context);
- :meth:`~ContextSchedule.channel_slices`: one step per slice of channels, possibly uneven
  (Minnen & Singh 2020; ELIC's 16, 16, 32, 64, M - 128);
- :meth:`~ContextSchedule.checkerboard`: anchors first, from the hyper-prior only, then the
  non-anchors with their decoded anchor neighbours as context (He et al. 2021);
- :meth:`~ContextSchedule.sliced_checkerboard`: for each slice an anchor step then a
  non-anchor step (ELIC, MLICv2, S2LIC).

Coding (:meth:`~ContextSchedule.compress_streams` / :meth:`~ContextSchedule.decompress_streams`)
writes one rANS stream per batch item, one ``push`` (one ``pull``) per step; the decoder fills ``y_hat``
step by step and can stop after any step (:meth:`~ContextSchedule.decode_steps`). Training
(:meth:`~ContextSchedule.likelihoods`) runs the same parameter function once per step over the
whole tensor — the usual masked / two-pass trick: each step's parameters see the quantized
(straight-through) values of the earlier steps' elements and zeros elsewhere, exactly the
``y_hat`` of coding — so a codec trains with the function it codes with.

The order of the symbols in a stream (steps, parity, element order) is part of the format:
docs/bitstream.md §7.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from neurocodec.entropy import coder
from neurocodec.entropy.coder import fit_lanes
from neurocodec.entropy.models.base import Mode
from neurocodec.entropy.models.gaussian import ScaleConditional
from neurocodec.errors import BitstreamError

__all__ = [
    "ALL",
    "ANCHOR",
    "ANCHOR_PARITY",
    "NON_ANCHOR",
    "ContextSchedule",
    "ParameterFunction",
    "ScheduleOutput",
    "Step",
    "checkerboard_mask",
    "table_scales",
]

ALL, ANCHOR, NON_ANCHOR = "all", "anchor", "non_anchor"
PARTS = (ALL, ANCHOR, NON_ANCHOR)

ANCHOR_PARITY = 0
"""Checkerboard anchors are the positions ``(i + j) % 2 == ANCHOR_PARITY`` (row ``i``, column ``j``):
with 0 the top-left element is an anchor (CompressAI's default ``anchor_parity="even"``). Part of
the format: a stream coded with one parity does not decode with the other."""

ParameterFunction = Callable[["Step", Tensor, Any], tuple[Tensor, Tensor]]


def checkerboard_mask(
    height: int, width: int, parity: int, device: torch.device | str | None = None
) -> Tensor:
    """Bool (height, width): True where ``(i + j) % 2 == parity``."""
    i = torch.arange(height, device=device).view(-1, 1)
    j = torch.arange(width, device=device).view(1, -1)
    return (i + j) % 2 == parity


def _coder_for(conditional: ScaleConditional, device: torch.device):
    """The coder for tensors on ``device`` and its tables: the GPU kernels (:mod:`neurocodec.entropy.gpu`,
    whose incremental decoder keeps its state on the device between steps) for CUDA tensors, else
    the C++ core. Both write the same bytes."""
    if device.type == "cuda":
        from neurocodec.entropy import gpu

        return gpu, conditional.gpu_tables(device)
    return coder, conditional.tables


@dataclass(frozen=True)
class Step:
    """One step of a schedule: channels ``[start, stop)`` of slice ``slice`` at the positions of ``part``."""

    index: int
    slice: int
    start: int
    stop: int
    part: str
    anchor_parity: int = ANCHOR_PARITY

    def __post_init__(self) -> None:
        if self.part not in PARTS or not 0 <= self.start < self.stop or self.anchor_parity not in (0, 1):
            raise ValueError(f"invalid step {self}")

    @property
    def channels(self) -> int:
        return self.stop - self.start

    def positions(self, height: int, width: int, device: torch.device | str | None = None) -> Tensor:
        """Bool (height, width): the positions this step codes (in every channel of its range)."""
        if self.part == ALL:
            return torch.ones(height, width, dtype=torch.bool, device=device)
        parity = self.anchor_parity if self.part == ANCHOR else 1 - self.anchor_parity
        return checkerboard_mask(height, width, parity, device)

    def num_elements(self, height: int, width: int) -> int:
        """Elements this step codes per batch item."""
        return self.channels * int(self.positions(height, width).sum())

    def gather(self, t: Tensor) -> Tensor:
        """(B, n): this step's elements of ``t`` (B, M, H, W), row-major over (channel, row, column)."""
        return self.select(t[:, self.start : self.stop])

    def select(self, t: Tensor) -> Tensor:
        """(B, n): this step's elements of a step-shaped tensor (B, stop - start, H, W)."""
        if self.part == ALL:
            return t.reshape(t.shape[0], -1)
        return t[:, :, self.positions(t.shape[2], t.shape[3], t.device)].reshape(t.shape[0], -1)

    def scatter_(self, t: Tensor, values: Tensor) -> None:
        """Writes ``values`` (B, n) to this step's elements of ``t`` (B, M, H, W), in place."""
        b, _, h, w = t.shape
        values = values.to(t.dtype).reshape(b, self.channels, -1)
        if self.part == ALL:
            t[:, self.start : self.stop] = values.reshape(b, self.channels, h, w)
        else:
            t[:, self.start : self.stop, self.positions(h, w, t.device)] = values

    def mask(
        self, num_channels: int, height: int, width: int, device: torch.device | str | None = None
    ) -> Tensor:
        """Bool (M, H, W): the elements of the latent this step codes."""
        m = torch.zeros(num_channels, height, width, dtype=torch.bool, device=device)
        m[self.start : self.stop] = self.positions(height, width, device)
        return m


@dataclass
class ScheduleOutput:
    """The training pass: the quantized latent (straight-through), per-element likelihoods, and the
    per-element table indexes and means each element's step computed (all shaped like ``y``)."""

    y_hat: Tensor
    likelihoods: Tensor
    indexes: Tensor
    means: Tensor


def table_scales(index: Tensor, scale_table: Sequence[float] | Tensor) -> Tensor:
    """The table scale of each (integer-valued) ``index``, differentiable in ``index``.

    ``scale_table[i0] * (scale_table[i0+1] / scale_table[i0]) ** (index - i0)`` with
    ``i0 = floor(index)``: log-linear between table entries, so an integer index gives exactly
    its table scale and a straight-through index still gets a gradient.
    """
    table = torch.as_tensor(scale_table, dtype=torch.float64).to(index.device)
    n = table.numel()
    if n < 2:
        raise ValueError("a scale table needs at least two entries")
    i0 = torch.clamp(torch.floor(index.detach()), 0, n - 2).long()
    log_ratio = torch.log(table[1:] / table[:-1]).to(index.dtype)
    frac = index - i0.to(index.dtype)
    return table[i0].to(index.dtype) * torch.exp(frac * log_ratio[i0])


class ContextSchedule:
    """The steps that code a latent of ``num_channels`` channels (see the module docstring).

    Build one with a constructor (:meth:`single_step`, :meth:`channel_slices`,
    :meth:`checkerboard`, :meth:`sliced_checkerboard`); ``anchor_parity`` is the format's
    :data:`ANCHOR_PARITY` and is a parameter only so that tests can show that the other one fails.
    """

    def __init__(
        self, name: str, slice_sizes: Sequence[int], checkerboard: bool, anchor_parity: int = ANCHOR_PARITY
    ):
        sizes = tuple(int(s) for s in slice_sizes)
        if not sizes or any(s <= 0 for s in sizes):
            raise ValueError(f"slice sizes must be positive, got {sizes}")
        if anchor_parity not in (0, 1):
            raise ValueError(f"anchor_parity must be 0 or 1, got {anchor_parity}")
        self.name = name
        self.slice_sizes = sizes
        self.checkerboard = checkerboard
        self.anchor_parity = anchor_parity
        self.num_channels = sum(sizes)
        self.slices = tuple(itertools.pairwise(itertools.accumulate(sizes, initial=0)))
        parts = (ANCHOR, NON_ANCHOR) if checkerboard else (ALL,)
        steps = []
        for k, (start, stop) in enumerate(self.slices):
            for part in parts:
                steps.append(Step(len(steps), k, start, stop, part, anchor_parity))
        self.steps = tuple(steps)

    # -- constructors ----------------------------------------------------------------------

    @classmethod
    def single_step(cls, num_channels: int) -> ContextSchedule:
        """One step: every element, parameters from the hyper-prior alone."""
        return cls("single_step", [num_channels], checkerboard=False)

    @classmethod
    def channel_slices(cls, slice_sizes: Sequence[int]) -> ContextSchedule:
        """One step per slice of channels; slice k's parameters may use slices < k."""
        return cls("channel_slices", slice_sizes, checkerboard=False)

    @classmethod
    def checkerboard(cls, num_channels: int, anchor_parity: int = ANCHOR_PARITY) -> ContextSchedule:
        """Two steps: the anchors (hyper-prior only), then the non-anchors (with the anchors as context)."""
        return cls("checkerboard", [num_channels], checkerboard=True, anchor_parity=anchor_parity)

    @classmethod
    def sliced_checkerboard(
        cls, slice_sizes: Sequence[int], anchor_parity: int = ANCHOR_PARITY
    ) -> ContextSchedule:
        """For each slice, its anchors then its non-anchors; context from earlier slices and the slice's anchors."""
        return cls("sliced_checkerboard", slice_sizes, checkerboard=True, anchor_parity=anchor_parity)

    def __repr__(self) -> str:
        parity = f", anchor_parity={self.anchor_parity}" if self.checkerboard else ""
        return f"ContextSchedule({self.name!r}, slices={list(self.slice_sizes)}{parity}, {len(self.steps)} steps)"

    # -- the parameter function ---------------------------------------------------------------

    def _check_shape(self, y: Tensor, what: str) -> None:
        if y.dim() != 4 or y.shape[1] != self.num_channels:
            raise ValueError(f"{what} must be (B, {self.num_channels}, H, W), got {tuple(y.shape)}")

    @staticmethod
    def _parameters(
        params: ParameterFunction, step: Step, y_hat: Tensor, hyper: Any
    ) -> tuple[Tensor, Tensor]:
        """Calls the parameter function and checks what it returns."""
        index, mean = params(step, y_hat, hyper)
        expected = (y_hat.shape[0], step.channels, y_hat.shape[2], y_hat.shape[3])
        for name, t in (("index", index), ("mean", mean)):
            if tuple(t.shape) != expected:
                raise ValueError(
                    f"step {step.index}: the parameter function's {name} is {tuple(t.shape)}, expected {expected}"
                )
        return index, mean

    @staticmethod
    def _coding_indexes(step: Step, index: Tensor, num_tables: int, device: torch.device) -> Tensor:
        """The step's int32 table indexes on the coder's ``device``; non-integer or out-of-range ones are the
        parameter function's mistake (``ValueError``), never silently truncated."""
        selected = step.select(index.detach())
        if selected.numel():
            if selected.is_floating_point() and not bool((selected == torch.round(selected)).all()):
                raise ValueError(f"step {step.index}: table indexes must be integers")
            low, high = int(selected.min()), int(selected.max())
            if low < 0 or high >= num_tables:
                raise ValueError(
                    f"step {step.index}: table indexes must lie in [0, {num_tables}), got [{low}, {high}]"
                )
        return selected.to(device=device, dtype=torch.int32).contiguous()

    # -- coding -----------------------------------------------------------------------------

    @torch.no_grad()
    def compress_streams(
        self, y: Tensor, params: ParameterFunction, hyper: Any, conditional: ScaleConditional
    ) -> list[bytes]:
        """One rANS stream per batch item: step by step, the symbols ``round(y - mean)`` of the
        step's elements with their table indexes (one ``push`` per step)."""
        self._check_shape(y, "y")
        b, m, h, w = y.shape
        impl, tables = _coder_for(conditional, y.device)
        y_hat = torch.zeros(y.shape, dtype=torch.float64, device=y.device)
        pushes = []  # (symbols, indexes) per step, pushed once the lane count is known
        for step in self.steps:
            index, mean = self._parameters(params, step, y_hat, hyper)
            indexes = self._coding_indexes(step, index, tables.num_tables, y.device)
            means = step.select(mean.detach()).to(torch.float64)
            symbols = conditional.quantize(step.gather(y.detach()).to(means.device), "symbols", means)
            pushes.append((symbols.to(y.device), indexes))
            step.scatter_(y_hat, conditional.dequantize(symbols, means).to(y_hat.device))

        def stream(i: int, lanes: int) -> bytes:
            encoder = impl.StreamEncoder(tables, lanes=lanes)
            for symbols, indexes in pushes:
                encoder.push(symbols[i], indexes[i])
            return encoder.finish()

        return [fit_lanes(functools.partial(stream, i), m * h * w) for i in range(b)]

    @torch.no_grad()
    def decode_steps(
        self,
        streams: Sequence[bytes],
        params: ParameterFunction,
        hyper: Any,
        conditional: ScaleConditional,
        size: tuple[int, int],
        device: torch.device | str | None = None,
    ) -> Iterator[tuple[Step, Tensor]]:
        """Decodes step by step, yielding ``(step, y_hat)`` after each step (one ``pull`` per stream).

        ``y_hat`` (float64, (len(streams), M, H, W)) is updated in place: the elements of the
        steps so far hold ``symbol + mean``, the others 0. A consumer may stop after any step;
        one that runs to the end gets the final-state check of every stream (a wrong schedule,
        parity, parameter function or table set raises :class:`BitstreamError`).
        """
        h, w = size
        device = torch.device("cpu" if device is None else device)
        impl, tables = _coder_for(conditional, device)
        decoders = [impl.StreamDecoder(s, tables) for s in streams]
        expected = self.num_channels * h * w
        for i, decoder in enumerate(decoders):
            if decoder.num_symbols != expected:
                raise BitstreamError(
                    f"stream {i} holds {decoder.num_symbols} symbols; a {self.num_channels}x{h}x{w} latent has {expected}"
                )
        y_hat = torch.zeros(len(decoders), self.num_channels, h, w, dtype=torch.float64, device=device)
        for step in self.steps:
            index, mean = self._parameters(params, step, y_hat, hyper)
            indexes = self._coding_indexes(step, index, tables.num_tables, device)
            means = step.select(mean.detach()).to(torch.float64)
            symbols = torch.stack([torch.as_tensor(d.pull(indexes[i])) for i, d in enumerate(decoders)])
            step.scatter_(y_hat, conditional.dequantize(symbols.to(means.device), means).to(y_hat.device))
            yield step, y_hat
        for decoder in decoders:
            decoder.finish()

    def decompress_streams(
        self,
        streams: Sequence[bytes],
        params: ParameterFunction,
        hyper: Any,
        conditional: ScaleConditional,
        size: tuple[int, int],
        device: torch.device | str | None = None,
    ) -> Tensor:
        """The decoded latent (float64, (len(streams), M, H, W)) of streams written by :meth:`compress_streams`."""
        decoded = None
        for _, decoded in self.decode_steps(streams, params, hyper, conditional, size, device):  # noqa: B007
            pass
        if decoded is None:  # unreachable: every schedule has a step
            raise ValueError("a schedule without steps decodes nothing")
        return decoded

    # -- training -----------------------------------------------------------------------------

    def likelihoods(
        self,
        y: Tensor,
        params: ParameterFunction,
        hyper: Any,
        conditional: ScaleConditional,
        mode: Mode | None = None,
    ) -> ScheduleOutput:
        """The training pass: per-element likelihoods of ``y`` under the same parameters as coding.

        One call of ``params`` per step over the whole tensor; step k sees the straight-through
        quantized values ``round(y - mean) + mean`` of steps < k and zeros elsewhere (the ``y_hat``
        of :meth:`compress_streams`). ``mode`` is the conditional's: "noise" (default in training) or
        "ste" (default in eval); or a relaxed rounding, whose values replace the straight-through
        ones in ``y_hat``. In float64 the indexes and means are exactly those of coding.
        """
        self._check_shape(y, "y")
        _, m, h, w = y.shape
        scale_table = torch.from_numpy(conditional.scale_table)
        y_hat = torch.zeros_like(y)
        likelihoods = torch.zeros_like(y)
        indexes = torch.zeros_like(y)
        means = torch.zeros_like(y)

        def place(step: Step, part: Tensor, into: Tensor, where: Tensor) -> Tensor:
            padded = F.pad(part, (0, 0, 0, 0, step.start, m - step.stop))
            return torch.where(where, padded, into)

        for step in self.steps:
            index, mean = self._parameters(params, step, y_hat, hyper)
            index, mean = index.to(y.dtype), mean.to(y.dtype)
            y_step = y[:, step.start : step.stop]
            q, lik = conditional(y_step, table_scales(index, scale_table), mean, mode=mode)
            if not callable(mode):
                q = conditional.quantize(y_step, "ste", mean)
            where = step.mask(m, h, w, y.device)
            y_hat = place(step, q, y_hat, where)
            likelihoods = place(step, lik, likelihoods, where)
            indexes = place(step, index, indexes, where)
            means = place(step, mean, means, where)
        return ScheduleOutput(y_hat, likelihoods, indexes, means)

    # -- sampling --------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        params: ParameterFunction,
        hyper: Any,
        conditional: ScaleConditional,
        shape: tuple[int, int, int, int],
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A latent drawn from the model itself, step by step: each step's elements from
        ``N(mean, table_scale[index])`` given the quantized earlier steps. Synthetic latents whose
        statistics match the model, for tests and benchmarks of the coding path (float64, CPU)."""
        if len(shape) != 4 or shape[1] != self.num_channels:
            raise ValueError(f"shape must have {self.num_channels} channels, got {shape}")
        scale_table = torch.from_numpy(conditional.scale_table)
        y = torch.zeros(shape, dtype=torch.float64)
        y_hat = torch.zeros(shape, dtype=torch.float64)
        for step in self.steps:
            index, mean = self._parameters(params, step, y_hat, hyper)
            mean = step.select(mean.to(torch.float64).cpu())
            scale = table_scales(step.select(index.to(torch.float64).cpu()), scale_table)
            values = mean + scale * torch.randn(mean.shape, dtype=torch.float64, generator=generator)
            step.scatter_(y, values)
            step.scatter_(y_hat, conditional.quantize(values, "ste", mean))
        return y
