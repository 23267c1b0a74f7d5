"""Integer context networks: the parameter functions of the context schedules.

A context schedule (:mod:`neurocodec.entropy.models.schedules`) codes a latent in steps and
asks a parameter function, at every step, for each element's table index and mean from the
hyper-prior output and the part of the latent decoded so far. The decoder must compute exactly
what the encoder did, on any device, so these networks are integer networks
(:mod:`neurocodec.models.integer`): exact float64 integer arithmetic at coding time,
float32 straight-through rounding in training. Their inputs are integers too:

- decoded latents ``y_hat = symbol + mean`` lie on the means' grid of ``2^-mean_bits``, so the
  networks see ``y_hat * 2^mean_bits`` (:func:`latent_integers`), clamped to
  ``±LATENT_BOUND * 2^mean_bits`` — the bound every accumulator check assumes;
- the hyper-prior output of :class:`~neurocodec.models.hyperprior.HyperSynthesis` (a table
  index and a mean per element) enters as :func:`hyper_features`: the indexes and the means
  in grid units, under the same bound.

Pieces (after He et al. 2021 and ELIC, He et al. 2022):

- :class:`CheckerboardConv2d`: a 5x5 integer convolution whose kernel keeps only the taps of
  the other parity, so a non-anchor's context is its decoded anchor neighbours;
- a channel context: an integer 3x3 convolution over the slices already decoded;
- :class:`EntropyParameters`: a 1x1 integer head from the concatenated features to the
  step's (table index, mean), the same output stage as ``HyperSynthesis``;
- :class:`ContextPrior`: all of them for one schedule, callable as the schedule's
  ``params(step, y_hat, hyper)``;
- :class:`TemporalPrior`: the parameter function of a latent that comes in groups over time
  (:class:`~neurocodec.entropy.latent_codecs.temporal.TemporalLatentCodec`): one slice per
  group, whatever the number of groups, with a temporal context from the group before.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neurocodec.entropy.models.schedules import ALL, ANCHOR, ContextSchedule, Step
from neurocodec.models.integer import IntegerConv2d

__all__ = [
    "LATENT_BOUND",
    "CheckerboardConv2d",
    "ContextPrior",
    "EntropyParameters",
    "StepPrior",
    "TemporalPrior",
    "hyper_features",
    "latent_integers",
]

LATENT_BOUND = 2**15  # |y_hat| and |mean| are clamped to this before a context network (as Z_BOUND for z)
MEAN_BITS = 4  # the means' fixed-point grid, as HyperSynthesis's default


def latent_integers(values: Tensor, mean_bits: int = MEAN_BITS) -> Tensor:
    """``values`` on the ``2^-mean_bits`` grid as integers ``values * 2^mean_bits``, clamped to
    ``±LATENT_BOUND * 2^mean_bits`` (exact: a power-of-two scaling of grid values)."""
    bound = LATENT_BOUND * 2**mean_bits
    return torch.clamp(values * 2.0**mean_bits, -bound, bound)


def hyper_features(index: Tensor, means: Tensor, mean_bits: int = MEAN_BITS) -> Tensor:
    """The hyper-prior output as integer features for :class:`ContextPrior`: ``2M`` channels,
    the table indexes then the means in grid units (:func:`latent_integers`)."""
    return torch.cat([index.to(means.dtype), latent_integers(means, mean_bits)], dim=1)


def _input_bound(mean_bits: int) -> int:
    return LATENT_BOUND * 2**mean_bits


class CheckerboardConv2d(IntegerConv2d):
    """An integer convolution that sees only the other checkerboard parity.

    The kernel keeps the taps at offsets ``(dy, dx)`` with ``dy + dx`` odd: at a position of one
    parity they all fall on the other parity. Applied to a latent whose anchors are decoded
    (and whose non-anchors are still 0), its output at each non-anchor depends on decoded
    anchors only, whichever parity the anchors have. The accumulator check of
    :class:`IntegerConv2d` counts every tap of the kernel, an upper bound for the masked one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5, **kwargs):
        if kernel_size % 2 != 1:
            raise ValueError(f"a checkerboard kernel must have an odd size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, 1, **kwargs)
        offsets = torch.arange(kernel_size)
        taps = (offsets.view(-1, 1) + offsets.view(1, -1)) % 2 == 1
        self.register_buffer("taps", taps.to(torch.float32), persistent=False)

    def integer_weight(self) -> Tensor:
        return super().integer_weight() * self.taps.to(self.weight.dtype)


class EntropyParameters(nn.Module):
    """Integer head: features -> (table index, mean) for ``out_channels`` latent channels.

    A 1x1 integer layer with QReLU activations in [0, 255], then a 1x1 integer layer with
    ``2 * out_channels`` outputs: table indexes (clamped to ``[0, num_scales - 1]``) and means in
    units of ``2^-mean_bits`` (the output stage of ``HyperSynthesis``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_scales: int,
        hidden_channels: int,
        mean_bits: int = MEAN_BITS,
    ):
        super().__init__()
        self.num_scales, self.mean_bits = num_scales, mean_bits
        self.hidden = IntegerConv2d(in_channels, hidden_channels, 1, input_bound=_input_bound(mean_bits))
        self.out = IntegerConv2d(hidden_channels, 2 * out_channels, 1, act_bits=None, init_gain=0.5)
        with torch.no_grad():
            self.hidden.bias.fill_(8.0)  # QReLUs start inside [0, 255]
            self.out.bias[:out_channels].fill_(num_scales / 2)  # start near the middle of the scale table

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        index_raw, mean_raw = self.out(self.hidden(features)).chunk(2, dim=1)
        return torch.clamp(index_raw, 0, self.num_scales - 1), mean_raw * 2.0**-self.mean_bits

    def forward_integer(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Coding time, int8 path: (int64 indexes, float64 means) from int64 ``features``."""
        index_raw, mean_raw = self.out.forward_integer(self.hidden.forward_integer(features)).chunk(2, dim=1)
        return torch.clamp(index_raw, 0, self.num_scales - 1), mean_raw.to(
            torch.float64
        ) * 2.0**-self.mean_bits


class StepPrior(nn.Module):
    """What a schedule's integer parameter function shares: ``hyper`` from a hyper-synthesis's
    output (:func:`hyper_features`), ``forward`` for training (float32, straight-through) and the
    float64 reference path, :meth:`forward_integer` for coding with the layers' int8 path; a
    subclass computes a step's ``(index, mean)`` in ``_step_parameters(step, y_hat, hyper,
    integer)``."""

    @staticmethod
    def hyper_input(index: Tensor, means: Tensor) -> Tensor:
        """The ``hyper`` this prior takes from a hyper-synthesis's output: :func:`hyper_features`."""
        return hyper_features(index, means)

    def forward(self, step: Step, y_hat: Tensor, hyper: Tensor) -> tuple[Tensor, Tensor]:
        """Training (float32, straight-through) or the float64 reference path: float indexes and means."""
        return self._step_parameters(step, y_hat, hyper, integer=False)

    @torch.no_grad()
    def forward_integer(self, step: Step, y_hat: Tensor, hyper: Tensor) -> tuple[Tensor, Tensor]:
        """Coding time with the layers' int8 path: int64 indexes and float64 means, bit for bit
        those of :meth:`forward` on float64 inputs, so a codec may pass either to the schedule
        (which is faster depends on the shapes: ``eval/bench_schedules.json``). ``y_hat`` holds
        values on the means' grid (in any float dtype that holds them exactly)."""
        return self._step_parameters(step, y_hat, hyper, integer=True)

    def _step_parameters(
        self, step: Step, y_hat: Tensor, hyper: Tensor, integer: bool
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class ContextPrior(StepPrior):
    """The integer parameter function of a schedule: ``prior(step, y_hat, hyper) -> (index, mean)``.

    Per slice ``k`` of the schedule: a channel context (integer 3x3 over the decoded slices
    ``< k``, absent for the first slice), a spatial context (:class:`CheckerboardConv2d` over the
    slice itself, for checkerboard schedules; at an anchor step it sees zeros, so anchors depend
    on the hyper-prior and earlier slices only, whatever ``y_hat`` holds) and an :class:`EntropyParameters`
    head over ``[hyper, channel context, spatial context]``.

    ``hyper`` is the integer feature tensor of :func:`hyper_features` (``hyper_channels``
    channels at the latent's resolution). Coding: ``forward`` on float64 ``y_hat`` and ``hyper``
    (the layers' exact float64 reference path) or :meth:`forward_integer` (their int8 path), the
    same integers either way. Training: ``forward`` in float32, straight-through.
    """

    def __init__(
        self,
        schedule: ContextSchedule,
        hyper_channels: int,
        num_scales: int,
        *,
        context_channels: int = 32,
        hidden_channels: int = 64,
        channel_kernel: int = 3,
        mean_bits: int = MEAN_BITS,
    ):
        super().__init__()
        self.schedule = schedule
        self.slices = schedule.slices
        self.mean_bits = mean_bits
        bound = _input_bound(mean_bits)
        self.channel_context = nn.ModuleDict()
        self.spatial_context = nn.ModuleDict()
        self.heads = nn.ModuleList()
        for k, (start, stop) in enumerate(self.slices):
            features = hyper_channels
            if start > 0:
                self.channel_context[str(k)] = IntegerConv2d(
                    start, context_channels, channel_kernel, input_bound=bound
                )
                features += context_channels
            if schedule.checkerboard:
                self.spatial_context[str(k)] = CheckerboardConv2d(
                    stop - start, context_channels, input_bound=bound
                )
                features += context_channels
            self.heads.append(
                EntropyParameters(features, stop - start, num_scales, hidden_channels, mean_bits)
            )

    def _step_parameters(
        self, step: Step, y_hat: Tensor, hyper: Tensor, integer: bool
    ) -> tuple[Tensor, Tensor]:
        if not 0 <= step.slice < len(self.slices) or (step.start, step.stop) != self.slices[step.slice]:
            raise ValueError(f"step {step} does not match this prior's slices {list(self.slices)}")
        dtype = torch.int64 if integer else y_hat.dtype

        def apply(layer: IntegerConv2d, x: Tensor) -> Tensor:
            return layer.forward_integer(x.to(dtype)) if integer else layer(x)

        key = str(step.slice)
        bound = _input_bound(self.mean_bits)  # what the head's accumulator check assumes
        features = [torch.clamp(hyper.to(y_hat.dtype), -bound, bound).to(dtype)]
        if key in self.channel_context:
            own = latent_integers(y_hat[:, : step.start], self.mean_bits)
            features.append(apply(self.channel_context[key], own))
        if key in self.spatial_context:
            layer = self.spatial_context[key]
            if step.part == ANCHOR:
                # anchors have no spatial context (He et al. 2021): the layer's output for an
                # all-zero input, which is the same at every position (computed on one pixel)
                b, _, h, w = y_hat.shape
                zeros = y_hat.new_zeros(b, step.channels, 1, 1)
                features.append(apply(layer, zeros).expand(-1, -1, h, w))
            else:
                features.append(
                    apply(layer, latent_integers(y_hat[:, step.start : step.stop], self.mean_bits))
                )
        x = torch.cat(features, dim=1)
        head = self.heads[step.slice]
        return head.forward_integer(x) if integer else head(x)


class TemporalPrior(StepPrior):
    """The integer parameter function of a latent coded group after group (a video's latent
    frames): ``prior(step, y_hat, hyper) -> (index, mean)`` for a schedule of slices of
    ``channels`` channels, slice ``g`` being group ``g`` (the groups stacked along the channels).

    The same modules serve every group, so a prior codes any number of groups: a temporal context
    (integer ``kernel`` x ``kernel`` convolution over the decoded latent of group ``g - 1``; for
    the first group its output for a zero input), with ``spatial`` a checkerboard context over
    the group's own anchors (schedule :meth:`~ContextSchedule.sliced_checkerboard`; else
    :meth:`~ContextSchedule.channel_slices`), and an :class:`EntropyParameters` head over
    ``[hyper of group g, temporal context, spatial context]``.

    ``hyper`` is :func:`hyper_features` of every group's hyper-synthesis output, stacked the same
    way (``2 * channels`` a group). Coding and training as :class:`ContextPrior`.
    """

    def __init__(
        self,
        channels: int,
        num_scales: int,
        *,
        context_channels: int = 32,
        hidden_channels: int = 64,
        kernel: int = 3,
        spatial: bool = True,
        mean_bits: int = MEAN_BITS,
    ):
        super().__init__()
        self.channels, self.mean_bits, self.spatial = channels, mean_bits, spatial
        self.hyper_channels = 2 * channels
        bound = _input_bound(mean_bits)
        self.temporal_context = IntegerConv2d(channels, context_channels, kernel, input_bound=bound)
        features = self.hyper_channels + context_channels
        self.spatial_context = None
        if spatial:
            self.spatial_context = CheckerboardConv2d(channels, context_channels, input_bound=bound)
            features += context_channels
        self.head = EntropyParameters(features, channels, num_scales, hidden_channels, mean_bits)

    def schedule(self, groups: int) -> ContextSchedule:
        """The schedule of a latent of ``groups`` groups."""
        sizes = [self.channels] * groups
        return (
            ContextSchedule.sliced_checkerboard(sizes)
            if self.spatial
            else ContextSchedule.channel_slices(sizes)
        )

    def _step_parameters(
        self, step: Step, y_hat: Tensor, hyper: Tensor, integer: bool
    ) -> tuple[Tensor, Tensor]:
        c, g = self.channels, step.slice
        checkerboard = step.part != ALL
        if (step.start, step.stop) != (g * c, (g + 1) * c) or checkerboard != self.spatial:
            raise ValueError(f"step {step} is not a group of {c} channels of this prior's schedule")
        dtype = torch.int64 if integer else y_hat.dtype

        def apply(layer: IntegerConv2d, x: Tensor) -> Tensor:
            return layer.forward_integer(x.to(dtype)) if integer else layer(x)

        b, _, h, w = y_hat.shape
        bound = _input_bound(self.mean_bits)
        own = hyper[:, 2 * c * g : 2 * c * (g + 1)]
        features = [torch.clamp(own.to(y_hat.dtype), -bound, bound).to(dtype)]
        if g:
            features.append(
                apply(
                    self.temporal_context,
                    latent_integers(y_hat[:, step.start - c : step.start], self.mean_bits),
                )
            )
        else:  # no group before: the layer's output for zeros, the same everywhere
            features.append(apply(self.temporal_context, y_hat.new_zeros(b, c, 1, 1)).expand(-1, -1, h, w))
        if self.spatial_context is not None:
            if step.part == ANCHOR:
                zeros = y_hat.new_zeros(b, c, 1, 1)
                features.append(apply(self.spatial_context, zeros).expand(-1, -1, h, w))
            else:
                own_latent = latent_integers(y_hat[:, step.start : step.stop], self.mean_bits)
                features.append(apply(self.spatial_context, own_latent))
        x = torch.cat(features, dim=1)
        return self.head.forward_integer(x) if integer else self.head(x)
