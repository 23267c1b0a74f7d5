"""Corrupted variants of a real codec file: with the CRC intact every one is an error or the
original image; past the CRC (re-packed with a fresh one) none crashes, hangs or decodes to a
tensor other than the one the file describes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "eval"))
from corrupt_files import KINDS, corrupt_payload, run, run_past_crc
from neurocodec.codecs.hyperprior import HyperpriorCodec


def small_file() -> tuple[HyperpriorCodec, bytes]:
    torch.manual_seed(0)
    codec = HyperpriorCodec(N=16, M=24, quality=1).eval()
    codec.model.update_tables()
    g = torch.Generator().manual_seed(1)
    x = (torch.linspace(0, 1, 80).expand(3, 48, 80) * 0.8 + 0.2 * torch.rand(3, 48, 80, generator=g)).clamp(
        0, 1
    )
    return codec, codec.encode(x)


def test_200_corrupted_variants():
    codec, data = small_file()
    result = run(codec, data, codec.decode(data), variants=200, seed=0, timeout=10.0)
    for kind in KINDS:
        counts = result["counts"][kind]
        assert counts["crash"] == counts["wrong"] == counts["slow"] == 0, (kind, result["problems"])
        assert counts["error"] > 0


def test_200_variants_past_the_crc():
    codec, data = small_file()
    result = run_past_crc(codec, data, codec.decode(data), variants=200, seed=0, timeout=10.0)
    counts = result["counts"]
    for outcomes in counts.values():
        assert outcomes["crash"] == outcomes["bad-output"] == outcomes["slow"] == 0, result["problems"]
    # every kind of damage was tried, and damaged streams are caught by the coder, not decoded
    assert {"geometry", "geometry-grow", "y-flip", "z-truncate"} <= set(counts)
    assert sum(c["error"] for c in counts.values()) > 100
    assert counts["geometry-grow"]["error"] == sum(counts["geometry-grow"].values())


def test_past_the_crc_variants_are_valid_files():
    from neurocodec import container

    codec, data = small_file()
    rng = np.random.default_rng(0)
    for _ in range(50):
        _, bad = corrupt_payload(data, rng)
        header = container.peek_header(bad)  # the CRC and the header are fine: only the payload lies
        assert header.codec == codec.name
