"""The hyperprior + temporal-context latent codec, for a latent that comes in groups over time (a
video codec's latent frames, one for every group of frames).

A latent is ``(N, M, G, h, w)``: ``N`` videos of ``G`` latent frames of ``M`` channels. Sections:

- ``z``: the hyper-latent of every group, ``(N G, hyper_channels, h / s, w / s)``, factorized prior;
- ``y``: one rANS stream per video, group after group. Group ``g``'s table indexes and means come
  from an integer *prior* given the hyper-synthesis output of its own ``z`` and the decoded
  latent of group ``g - 1`` (the first group has none), and, with a checkerboard schedule, its own
  decoded anchors.

The groups are the slices of a context schedule over the groups stacked along the channels
(``(N, G M, h, w)``), so coding, decoding and the training pass are the schedule's
(:class:`~neurocodec.entropy.models.schedules.ContextSchedule`), exact on every device. The
networks are handed in: ``h_a`` (float, one group's ``y`` -> ``z``), ``h_s`` (an integer
hyper-synthesis, as for :class:`~neurocodec.entropy.latent_codecs.hyperprior.HyperpriorLatentCodec`)
and ``prior``, the parameter function (``prior(step, y_hat, hyper)``, ``prior.forward_integer``,
``prior.hyper_input(index, means)`` and ``prior.schedule(groups)``;
:class:`neurocodec.models.context.TemporalPrior`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from neurocodec.entropy.latent_codecs.base import LatentCodec
from neurocodec.entropy.models import FactorizedPrior, GaussianConditional
from neurocodec.entropy.models.base import Mode

__all__ = ["TemporalLatentCodec"]


def fold(t: Tensor) -> Tensor:
    """``(N, C, G, h, w)`` -> ``(N G, C, h, w)``, group-major per video."""
    n, c, g, h, w = t.shape
    return t.transpose(1, 2).reshape(n * g, c, h, w)


def unfold(t: Tensor, videos: int) -> Tensor:
    """The inverse of :func:`fold` for ``videos`` videos."""
    ng, c, h, w = t.shape
    return t.reshape(videos, ng // videos, c, h, w).transpose(1, 2)


def stack(t: Tensor, videos: int) -> Tensor:
    """``(N G, C, h, w)`` -> ``(N, G C, h, w)``: each video's groups along the channels."""
    ng, c, h, w = t.shape
    return t.reshape(videos, ng // videos * c, h, w)


def unstack(t: Tensor, channels: int) -> Tensor:
    """``(N, G C, h, w)`` -> ``(N, C, G, h, w)``."""
    n, gc, h, w = t.shape
    return t.reshape(n, gc // channels, channels, h, w).transpose(1, 2)


class TemporalLatentCodec(LatentCodec):
    """Hyperprior + temporal context; see the module docstring.

    Args:
        h_a, h_s, prior: the networks (module docstring).
        hyper_channels: the channels of ``z``.
        scale_table: the Gaussian's table scales (default the library's).
        hyper_stride: ``z``'s downsampling of ``y`` along each side.
    """

    section_names = ("z", "y")

    def __init__(
        self,
        h_a: nn.Module,
        h_s: nn.Module,
        prior: nn.Module,
        hyper_channels: int,
        scale_table=None,
        hyper_stride: int = 4,
    ):
        super().__init__()
        self.hyper_channels, self.hyper_stride = int(hyper_channels), int(hyper_stride)
        self.h_a = h_a
        self.entropy_bottleneck = FactorizedPrior(hyper_channels)
        self.gaussian_conditional = GaussianConditional(scale_table)
        self.h_s = h_s
        self.prior = prior

    def side_latents(self, y: Tensor) -> dict[str, Tensor]:
        return {"z": self.h_a(fold(y))}

    def _z(self, y: Tensor, side: Mapping[str, Tensor] | None) -> Tensor:
        """``z`` of every group, folded ``(N G, hyper_channels, ...)``."""
        return self.h_a(fold(y)) if side is None else side["z"]

    def _hyper(self, index: Tensor, means: Tensor, videos: int) -> Tensor:
        return stack(self.prior.hyper_input(index, means), videos)

    def forward(
        self, y: Tensor, side: Mapping[str, Tensor] | None = None, mode: Mode | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(y_hat, {"y", "z"} likelihoods)`` of ``y`` ``(N, M, G, h, w)``; ``y_hat`` and the
        ``y`` likelihoods in ``y``'s layout, the ``z`` ones folded. As
        :class:`~neurocodec.entropy.latent_codecs.context.ContextLatentCodec`: ``h_s`` sees
        ``round(z)`` straight-through, each group's prior the straight-through quantized group
        before it (or its relaxed rounding), all in float32 even under bf16 autocast."""
        n, m, g, _, _ = y.shape
        z = self._z(y, side)
        with torch.autocast(y.device.type, enabled=False):
            y, z = y.float(), z.float()
            _, z_likelihoods = self.entropy_bottleneck(z, mode)
            index, means = self.h_s(self.entropy_bottleneck.quantize(z, "ste"))
            coded = self.prior.schedule(g).likelihoods(
                stack(fold(y), n), self.prior, self._hyper(index, means, n), self.gaussian_conditional, mode
            )
        return unstack(coded.y_hat, m), {"y": unstack(coded.likelihoods, m), "z": z_likelihoods}

    @torch.no_grad()
    def _coding_hyper(self, z_hat: Tensor) -> Tensor:
        """The prior's ``hyper`` (float64) of one video's integer ``z_hat``, by ``h_s``'s int8 path."""
        index, means = self.h_s.forward_integer(z_hat)
        return self._hyper(index.to(torch.float64), means, 1)

    def compress(self, y: Tensor, side: Mapping[str, Tensor] | None = None) -> dict[str, bytes]:
        """``{"z", "y"}`` of one video's latent ``y`` ``(1, M, G, h, w)``."""
        if y.ndim != 5 or y.shape[0] != 1:
            raise ValueError(
                f"a temporal latent codec codes one (1, M, G, h, w) latent, not {tuple(y.shape)}"
            )
        z_symbols = torch.round(self._z(y, side))
        hyper = self._coding_hyper(z_symbols)
        schedule = self.prior.schedule(y.shape[2])
        (stream,) = schedule.compress_streams(stack(fold(y), 1), self.prior, hyper, self.gaussian_conditional)
        return {"z": self.entropy_bottleneck.compress(z_symbols), "y": stream}

    def hyper_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The (folded) shape of ``z`` for a latent of ``shape`` ``(N, M, G, h, w)``."""
        n, _, g, *sides = shape
        return (n * g, self.hyper_channels, *(s // self.hyper_stride for s in sides))

    def decompress(self, sections: Mapping[str, bytes], shape: Sequence[int]) -> Tensor:
        """``y_hat`` (float64, ``(1, M, G, h, w)``, on the device of the weights) for ``shape``."""
        _, m, g, h, w = shape
        device = self.entropy_bottleneck.table_sizes.device
        z_hat = self.entropy_bottleneck.decompress(sections["z"], self.hyper_shape(shape)).to(device)
        y_hat = self.prior.schedule(g).decompress_streams(
            [sections["y"]],
            self.prior,
            self._coding_hyper(z_hat),
            self.gaussian_conditional,
            (h, w),
            device,
        )
        return unstack(y_hat, m)
