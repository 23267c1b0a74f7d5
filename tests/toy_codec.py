"""A test-only lossless image codec family, "test-lossless": a whole family in one module, as
docs/adding-a-codec.md describes (its network, its codec and the declaration the registry reads).

8-bit samples, each row coded as left-neighbour differences (wrapped to -128..127) with one CDF
table: a discrete Laplace whose scale :class:`ToyLaplace` learns (``neurocodec train
test-lossless`` lowers the rate; the reconstruction is exact) and ``update_tables`` turns into
the buffer ``cdf`` that the weights ship. The image is padded to a multiple of ``multiple`` so
that the base class's cropping is exercised.

The package does not know this module: tests make it known as another package would, by an
entry point of the group ``neurocodec.codecs`` (tests/test_adding_a_codec.py), or with the
developer hook ``NEUROCODEC_CODEC_MODULES=toy_codec`` (this directory on ``sys.path``), and
``NEUROCODEC_WEIGHTS_PATH`` = a directory filled by :func:`write_weights` or ``neurocodec export``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from neurocodec.codecs.base import Codec
from neurocodec.container import Header, ImageGeometry
from neurocodec.entropy import coder
from neurocodec.entropy.tables import quantize_pmf
from neurocodec.registry import WeightConfig, register_codec

NAME = "test-lossless"
MODULES = "toy_codec"  # for NEUROCODEC_CODEC_MODULES


def laplace_table(scale: float) -> torch.Tensor:
    """The CDF table of the residuals -128..127 (and an escape) under a Laplace of ``scale``."""
    values = np.arange(-128, 128)
    return torch.from_numpy(quantize_pmf(np.append(np.exp(-np.abs(values) / scale), 1e-6)))


def residuals(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """The row differences of a batch of images in [0, 1], padded to a multiple of ``multiple``."""
    _, _, height, width = x.shape
    x = F.pad(x, (0, -width % multiple, 0, -height % multiple), mode="replicate")
    levels = x.mul(255).round().to(torch.int32)
    return (levels.diff(dim=-1, prepend=torch.full_like(levels[..., :1], 128)) + 128) % 256 - 128


class ToyLaplace(nn.Module):
    """The network of the family: one parameter, the scale of the residuals' Laplace."""

    def __init__(self, scale: float = 4.0, multiple: int = 8) -> None:
        super().__init__()
        self.multiple = multiple
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.register_buffer("cdf", laplace_table(scale))

    def forward(self, x: torch.Tensor) -> dict:
        r = residuals(x, self.multiple).float()
        laplace = torch.distributions.Laplace(0.0, self.log_scale.exp())
        likelihoods = (laplace.cdf(r + 0.5) - laplace.cdf(r - 0.5)).clamp_min(1e-9)
        return {"x_hat": x, "likelihoods": {"px": likelihoods}}

    def update_tables(self) -> None:
        self.cdf = laplace_table(float(self.log_scale.exp()))


@register_codec(model=ToyLaplace, arch={"multiple": 8})
class ToyLossless(Codec):
    name = NAME
    media = "image"
    channels = (1, 3)
    default_quality = 1

    def __init__(self, multiple: int = 8, **base) -> None:
        super().__init__(**base)
        self.model = ToyLaplace(multiple=multiple)

    def _tables(self) -> coder.TableSet:
        return coder.TableSet([self.model.cdf.cpu().numpy()], [-128])

    def _encode(self, x: torch.Tensor) -> tuple[ImageGeometry, dict[str, bytes]]:
        _, channels, height, width = x.shape
        r = residuals(x, self.model.multiple).cpu()
        stream = coder.encode(r.flatten(), np.zeros(r.numel(), np.int32), self._tables())
        return ImageGeometry(height, width, channels, 8), {"px": stream}

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        g = header.geometry
        m = self.model.multiple
        shape = (1, g.channels, g.height + -g.height % m, g.width + -g.width % m)
        n = int(np.prod(shape))
        r = torch.from_numpy(coder.decode(sections["px"], np.zeros(n, np.int32), self._tables()))
        levels = (r.reshape(shape).cumsum(-1) + 128) % 256
        return levels.float().div(255).to(self.device)


def write_weights(directory: Path, quality: int = 1, multiple: int = 8) -> WeightConfig:
    """Write the weights (a Laplace of scale 4 x ``quality``) and their model card."""
    weights = directory / f"{NAME}-q{quality}.safetensors"
    save_file(ToyLaplace(4.0 * quality, multiple).state_dict(), weights)
    card = {
        "codec": NAME,
        "quality": quality,
        "media": "image",
        "filename": weights.name,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "arch": {"multiple": multiple},
        "model_card": {
            "training_data": "none (a fixed Laplace table)",
            "steps": 0,
            "lambda": None,
            "commit": "test",
            "rd_kodak": [{"bpp": 4.0 + quality, "psnr": 99.0}],
        },
    }
    path = directory / f"{NAME}-q{quality}.json"
    path.write_text(json.dumps(card, indent=2))
    return WeightConfig.from_json(path)
