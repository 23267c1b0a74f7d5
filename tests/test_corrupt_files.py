"""200 corrupted variants of a real codec file: every one is an error or the original image."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "eval"))
from corrupt_files import KINDS, run
from neurocodec.codecs.hyperprior import HyperpriorCodec


def test_200_corrupted_variants():
    torch.manual_seed(0)
    codec = HyperpriorCodec(N=16, M=24, quality=1).eval()
    codec.model.update_tables()
    g = torch.Generator().manual_seed(1)
    x = (torch.linspace(0, 1, 80).expand(3, 48, 80) * 0.8 + 0.2 * torch.rand(3, 48, 80, generator=g)).clamp(
        0, 1
    )
    data = codec.encode(x)
    result = run(codec, data, codec.decode(data), variants=200, seed=0, timeout=10.0)
    for kind in KINDS:
        counts = result["counts"][kind]
        assert counts["crash"] == counts["wrong"] == counts["slow"] == 0, (kind, result["problems"])
        assert counts["error"] > 0
