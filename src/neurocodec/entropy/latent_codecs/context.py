"""The hyperprior + context-schedule latent codec (ELIC, MLIC++, MLICv2 and their kind).

Sections ``z`` (the hyper-latent, factorized prior) and ``y`` (one rANS stream, coded step by
step by a :class:`~neurocodec.entropy.models.schedules.ContextSchedule`: channel slices,
checkerboard, or both). Each step's table indexes and means come from a *context model*, the
schedule's parameter function, given the hyper-synthesis output and the elements decoded so far.
The networks are the model's, handed in:

- ``h_a``: ``y`` -> ``z`` at ``1 / hyper_stride`` of ``y``'s resolution;
- ``h_s``: an integer hyper-synthesis (as for :class:`~neurocodec.entropy.latent_codecs.hyperprior.HyperpriorLatentCodec`);
- ``context_model``: an ``nn.Module`` with a ``schedule`` (a ``ContextSchedule``), called as
  ``context_model(step, y_hat, hyper) -> (index, mean)`` (exact integer networks, see
  :mod:`neurocodec.models.context`), and ``context_model.hyper_input(index, means) -> hyper``,
  how it takes ``h_s``'s output;
- ``residual_prediction`` (optional): a float module ``(y_hat, hyper_means) -> y_hat`` applied
  after decoding, for the synthesis only (MLIC++'s latent residual prediction); it never feeds
  a context, so it may differ in its last bits between devices like any synthesis.

The codec codes one latent at a time (a batch of one): the schedule writes one stream per
batch item, and a file holds one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from neurocodec.entropy.latent_codecs.base import LatentCodec
from neurocodec.entropy.models import FactorizedPrior, GaussianConditional
from neurocodec.entropy.models.base import Mode
from neurocodec.entropy.models.schedules import ContextSchedule

__all__ = ["ContextLatentCodec"]


class ContextLatentCodec(LatentCodec):
    """Hyperprior + context schedule; see the module docstring.

    Args:
        h_a, h_s, context_model, residual_prediction: the networks (module docstring).
        hyper_channels: the channels of ``z``.
        scale_table: the Gaussian's table scales (default the library's).
        hyper_stride: ``z``'s downsampling of ``y`` along each side.
    """

    section_names = ("z", "y")

    def __init__(
        self,
        h_a: nn.Module,
        h_s: nn.Module,
        context_model: nn.Module,
        hyper_channels: int,
        scale_table=None,
        hyper_stride: int = 4,
        residual_prediction: nn.Module | None = None,
    ):
        super().__init__()
        self.hyper_channels, self.hyper_stride = int(hyper_channels), int(hyper_stride)
        self.h_a = h_a
        self.entropy_bottleneck = FactorizedPrior(hyper_channels)
        self.gaussian_conditional = GaussianConditional(scale_table)
        self.h_s = h_s
        self.context_model = context_model
        self.residual_prediction = residual_prediction

    @property
    def schedule(self) -> ContextSchedule:
        return self.context_model.schedule

    def side_latents(self, y: Tensor) -> dict[str, Tensor]:
        return {"z": self.h_a(y)}

    def hyper(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """(the context model's hyper input, the hyper means) of integer ``z_hat``: float32
        straight-through in training, exact float64 on ``h_s``'s reference path."""
        index, means = self.h_s(z_hat)
        return self.context_model.hyper_input(index, means), means

    @torch.no_grad()
    def coding_hyper(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`hyper` at coding time with the int8 path of the integer ``h_s``: the same
        numbers as the float64 reference path, bit for bit, several times faster."""
        index, means = self.h_s.forward_integer(z_hat)
        return self.context_model.hyper_input(index.to(torch.float64), means), means

    def forward(
        self, y: Tensor, side: Mapping[str, Tensor] | None = None, mode: Mode | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(y_hat, {"y", "z"} likelihoods)``, ``side["z"]`` replacing ``h_a(y)`` when given.

        ``mode`` quantizes for the rates: "noise" (default in training) or "ste" (in eval), the
        contexts and ``y_hat`` seeing straight-through roundings; or a relaxed rounding
        (:mod:`neurocodec.codecs.adapt`), whose values they see too. ``h_s`` always sees
        ``round(z)`` (straight-through), as when coding. ``y_hat`` is after the residual
        prediction, if any.
        """
        z = self.h_a(y) if side is None else side["z"]
        # the integer prior path in float32 even under bf16 autocast: its straight-through
        # integers must match the exact coding-time ones (bf16 holds 8 significant bits)
        with torch.autocast(y.device.type, enabled=False):
            y, z = y.float(), z.float()
            _, z_likelihoods = self.entropy_bottleneck(z, mode)
            hyper, means = self.hyper(
                self.entropy_bottleneck.quantize(z, "ste")
            )  # round(z), straight-through
            coded = self.schedule.likelihoods(y, self.context_model, hyper, self.gaussian_conditional, mode)
        y_hat = coded.y_hat
        if self.residual_prediction is not None:
            y_hat = self.residual_prediction(y_hat, means)
        return y_hat, {"y": coded.likelihoods, "z": z_likelihoods}

    def compress(self, y: Tensor, side: Mapping[str, Tensor] | None = None) -> dict[str, bytes]:
        """``{"z", "y"}`` of a latent ``y`` (1, M, H, W); ``z = side["z"]`` or ``h_a(y)``."""
        if y.shape[0] != 1:
            raise ValueError(
                f"a context latent codec codes one latent at a time, not a batch of {y.shape[0]}"
            )
        z = self.h_a(y) if side is None else side["z"]
        z_stream = self.entropy_bottleneck.compress(z)
        hyper, _ = self.coding_hyper(torch.round(z))
        (y_stream,) = self.schedule.compress_streams(y, self.context_model, hyper, self.gaussian_conditional)
        return {"z": z_stream, "y": y_stream}

    def hyper_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape of ``z`` for a latent ``y`` of ``shape`` (N, M, H, W)."""
        n, _, *sides = shape
        return (n, self.hyper_channels, *(s // self.hyper_stride for s in sides))

    def decompress(self, sections: Mapping[str, bytes], shape: Sequence[int]) -> Tensor:
        """``y_hat`` for ``y`` of ``shape`` (1, M, H, W), on the device of the weights: float64 as
        decoded, or, with a residual prediction, its output in the dtype of its weights (in the
        channels-last layout, the fast one of its convolutions)."""
        device = self.entropy_bottleneck.table_sizes.device
        z_hat = self.entropy_bottleneck.decompress(sections["z"], self.hyper_shape(shape)).to(device)
        hyper, means = self.coding_hyper(z_hat)
        y_hat = self.schedule.decompress_streams(
            [sections["y"]], self.context_model, hyper, self.gaussian_conditional, tuple(shape[2:]), device
        )
        if self.residual_prediction is None:
            return y_hat
        dtype = next(self.residual_prediction.parameters()).dtype
        layout = torch.channels_last
        return self.residual_prediction(
            y_hat.to(dtype, memory_format=layout), means.to(dtype, memory_format=layout)
        )
