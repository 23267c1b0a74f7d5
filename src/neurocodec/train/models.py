"""The trainable models: name -> network constructor + the kind of data it trains on.

A model trains with :class:`~neurocodec.train.trainer.Trainer` when its ``forward(x)`` returns::

    {"x_hat": reconstruction (same shape as x),
     "likelihoods": {name: tensor of per-symbol likelihoods, ...},   # the rate, in bits
     "loss_terms": {name: scalar tensor, ...}}                        # optional

``loss_terms`` are added to ``distortion + lambda * rate`` as they are: the model weights them
itself (a VQ commitment term, a KL term, ...), and each is logged under its name. A model may
have an ``aux_loss()``: it trains its parameters whose names end in ``quantiles`` (the entropy
bottleneck's) on their own optimizer. Inputs are images ``(N, 3, H, W)`` or videos
``(N, 3, T, H, W)`` in ``[0, 1]``, or audio ``(N, C, T)`` in ``[-1, 1]``.

Registering a model is one line, here, beside the others (the module is imported only when the
model is trained, so this file stays cheap to import and models never import ``train``)::

    register_trainable("walloc", "neurocodec.models.walloc:WaLLoC", data="audio", codec="walloc-audio")

(``codec``, the name ``neurocodec export`` writes weights for, defaults to the model's name.) Tests and out-of-tree code may pass the class itself instead of its ``"module:Name"`` path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from neurocodec.errors import ConfigError

if TYPE_CHECKING:  # torch is imported by the models themselves, so the CLI can list names at once
    from torch import nn

__all__ = [
    "DATA_KINDS",
    "TrainableModel",
    "build_model",
    "register_trainable",
    "trainable",
    "trainable_names",
]

DATA_KINDS = ("image", "audio", "video")


@dataclass(frozen=True)
class TrainableModel:
    """A registered model: ``constructor(**arch)`` builds it; ``data`` is what it trains on;
    ``codec`` is the registered codec (:mod:`neurocodec.registry`) its weights export to;
    ``arch`` is the architecture ``neurocodec train`` uses when ``--arch`` is not given."""

    name: str
    constructor: str | Callable[..., nn.Module]
    data: str
    codec: str
    arch: dict = field(default_factory=dict, hash=False)

    def build(self, arch: dict) -> nn.Module:
        constructor = self.constructor
        if isinstance(constructor, str):
            module, _, attribute = constructor.partition(":")
            constructor = getattr(importlib.import_module(module), attribute)
        try:
            return constructor(**arch)
        except TypeError as e:  # an architecture key the model does not take
            raise ConfigError(f"{self.name}: bad architecture {arch}: {e}") from None


_TRAINABLE: dict[str, TrainableModel] = {}


def register_trainable(
    name: str,
    constructor: str | Callable[..., nn.Module],
    data: str,
    codec: str | None = None,
    arch: dict | None = None,
) -> None:
    """Make ``name`` trainable by ``neurocodec train NAME``; ``data`` is "image", "audio" or
    "video"; ``codec`` names the codec ``neurocodec export`` writes weights for (default: ``name``);
    ``arch``, the default architecture (default: the constructor's own defaults)."""
    if data not in DATA_KINDS:
        raise ValueError(f"data must be one of {', '.join(DATA_KINDS)}, not {data!r}")
    _TRAINABLE[name] = TrainableModel(name, constructor, data, codec or name, dict(arch or {}))


def trainable_names() -> list[str]:
    return sorted(_TRAINABLE)


def trainable(name: str) -> TrainableModel:
    try:
        return _TRAINABLE[name]
    except KeyError:
        raise ConfigError(
            f"no trainable model named {name!r} (known: {', '.join(trainable_names())})"
        ) from None


def build_model(name: str, arch: dict) -> nn.Module:
    return trainable(name).build(arch)


register_trainable(
    "hyperprior", "neurocodec.models.hyperprior:MeanScaleHyperprior", data="image", arch={"N": 128, "M": 192}
)
register_trainable("walloc-image", "neurocodec.models.walloc:WaLLoCImage", data="image")
register_trainable("walloc-audio", "neurocodec.models.walloc:WaLLoCAudio", data="audio")
register_trainable("mlic", "neurocodec.models.mlic:MLICv2", data="image", arch={"preset": "small"})
