"""A test-only lossless image codec, "test-lossless": a real rANS bitstream for API and CLI tests.

8-bit samples, each row coded as left-neighbour differences (wrapped to -128..127) with one
fixed CDF table that ships as the codec's "weights". The image is padded to a multiple of
``arch["multiple"]`` so that the base class's cropping is exercised. Point the registry at it
with the developer hooks: ``NEUROCODEC_CODEC_MODULES=test-lossless=toy_codec`` (with this
directory on ``sys.path``) and ``NEUROCODEC_WEIGHTS_PATH`` = a directory filled by
:func:`write_weights`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from neurocodec.codecs.base import Codec
from neurocodec.container import Header, ImageGeometry
from neurocodec.entropy import coder
from neurocodec.entropy.tables import quantize_pmf
from neurocodec.registry import WeightConfig, register_codec

NAME = "test-lossless"
MODULES = f"{NAME}=toy_codec"


@register_codec
class ToyLossless(Codec):
    name = NAME
    media = "image"
    channels = (1, 3)
    default_quality = 1

    def __init__(self, cdf: torch.Tensor, multiple: int) -> None:
        super().__init__()
        self.multiple = multiple
        self.register_buffer("cdf", cdf)
        self.tables = coder.TableSet([cdf.numpy()], [-128])

    @classmethod
    def from_weights(
        cls, config: WeightConfig, state: dict[str, torch.Tensor], device: torch.device
    ) -> Codec:
        return cls(state["cdf"], **config.arch).to(device)

    def _encode(self, x: torch.Tensor) -> tuple[ImageGeometry, dict[str, bytes]]:
        _, channels, height, width = x.shape
        x = F.pad(x, (0, -width % self.multiple, 0, -height % self.multiple), mode="replicate")
        levels = x.mul(255).round().to(torch.int32).cpu()
        residual = (levels.diff(dim=-1, prepend=torch.full_like(levels[..., :1], 128)) + 128) % 256 - 128
        stream = coder.encode(residual.flatten(), np.zeros(residual.numel(), np.int32), self.tables)
        return ImageGeometry(height, width, channels, 8), {"px": stream}

    def _decode(self, header: Header, sections: dict[str, bytes]) -> torch.Tensor:
        g = header.geometry
        m = self.multiple
        shape = (1, g.channels, g.height + -g.height % m, g.width + -g.width % m)
        n = int(np.prod(shape))
        residual = torch.from_numpy(coder.decode(sections["px"], np.zeros(n, np.int32), self.tables))
        levels = (residual.reshape(shape).cumsum(-1) + 128) % 256
        return levels.float().div(255).to(self.device)


def write_weights(directory: Path, quality: int = 1, multiple: int = 8) -> WeightConfig:
    """Write the weights (a CDF table that depends on ``quality``) and their model card."""
    values = np.arange(-128, 128)
    pmf = np.append(np.exp(-np.abs(values) / (4.0 * quality)), 1e-6)
    weights = directory / f"{NAME}-q{quality}.safetensors"
    save_file({"cdf": torch.from_numpy(quantize_pmf(pmf))}, weights)
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
