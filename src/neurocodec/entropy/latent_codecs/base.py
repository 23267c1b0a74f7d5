"""The latent-codec interface, and the walk that gives a module tree its ``aux_loss`` and ``update_tables``.

A latent codec turns a latent ``y`` (N, C, ...) into named byte sections and back, and gives the
training pass its likelihoods. A model is then transforms (``g_a``, ``g_s``, ...) plus one latent
codec; a codec family reuses a latent codec and writes only its transforms.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from neurocodec.entropy.models.base import EntropyModel, Mode
from neurocodec.errors import BitstreamError

__all__ = ["LatentCodec", "aux_loss", "update_tables"]


def aux_loss(module: nn.Module) -> Tensor:
    """The sum of the auxiliary losses of every entropy model inside ``module`` (the factorized
    priors' quantile fits); a zero tensor when none has one."""
    losses = [
        m.aux_loss() for m in module.modules() if isinstance(m, EntropyModel) and hasattr(m, "aux_loss")
    ]
    if not losses:
        return torch.zeros(())
    return losses[0] if len(losses) == 1 else torch.stack(losses).sum()


@torch.no_grad()
def update_tables(module: nn.Module) -> None:
    """Build the integer tables of every entropy model inside ``module``, once, after training
    (they are buffers: they travel with the state_dict)."""
    for m in module.modules():
        if isinstance(m, EntropyModel) and hasattr(m, "update_tables"):
            m.update_tables()


class LatentCodec(nn.Module, metaclass=abc.ABCMeta):
    """A latent ``y`` -> named sections -> ``y_hat``, and its training-time rates.

    Implementations say which sections they write (:attr:`section_names`) and define:

    - ``forward(y, side=None, mode=None) -> (y_hat, likelihoods)``: the training pass. ``mode``
      quantizes for the rates (a mode of :meth:`~neurocodec.entropy.models.base.EntropyModel.quantize`:
      "noise" by default in training, "ste" in eval, or a relaxed rounding); ``y_hat`` is what the
      synthesis sees (straight-through rounded as coded, or the relaxed rounding);
      ``likelihoods`` maps a section name to per-element likelihoods (the rate is
      ``sum(-log2(likelihoods))``).
    - ``compress(y, side=None) -> dict[str, bytes]``: the sections of ``y`` (always a dict, one
      stream per section).
    - ``decompress(sections, shape) -> y_hat``: the latent a decoder gets, for ``y`` of ``shape``,
      on the device of the codec's weights.
    - ``coded_latent(y) -> y_hat``: what :meth:`decompress` returns for ``compress(y)`` (by
      default by coding; implementations compute it without coding where they can).

    Encoder-side adaptation (:mod:`neurocodec.codecs.adapt`) refines ``y`` together with the
    *side latents* the codec derives from it (:meth:`side_latents`, e.g. a hyperprior's ``z =
    h_a(y)``): ``forward`` and ``compress`` take them as ``side`` instead of deriving them.
    ``aux_loss()`` and ``update_tables()`` walk the entropy models inside.
    """

    section_names: ClassVar[tuple[str, ...]] = ("y",)

    def side_latents(self, y: Tensor) -> dict[str, Tensor]:
        """The latents derived from ``y`` that are coded too (none by default)."""
        return {}

    @abc.abstractmethod
    def forward(
        self, y: Tensor, side: Mapping[str, Tensor] | None = None, mode: Mode | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The training pass (the class docstring)."""

    @abc.abstractmethod
    def compress(self, y: Tensor, side: Mapping[str, Tensor] | None = None) -> dict[str, bytes]:
        """The sections of ``y`` (the class docstring)."""

    @abc.abstractmethod
    def decompress(self, sections: Mapping[str, bytes], shape: Sequence[int]) -> Tensor:
        """``y_hat`` from the sections (the class docstring)."""

    def coded_latent(self, y: Tensor) -> Tensor:
        return self.decompress(self.compress(y), y.shape)

    def check_sections(self, sections: Mapping[str, bytes], what: str = "this file") -> None:
        """:class:`BitstreamError` naming the sections this codec needs that ``sections`` lacks."""
        missing = sorted(set(self.section_names) - sections.keys())
        if missing:
            raise BitstreamError(f"{what} lacks its {' and '.join(missing)} section")

    def aux_loss(self) -> Tensor:
        return aux_loss(self)

    def update_tables(self) -> None:
        update_tables(self)
