"""Rate-distortion evaluation of a codec on image files: bpp from the real file size."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from neurocodec.codecs.base import Codec
from neurocodec.io.image import read_image
from neurocodec.metrics import psnr

__all__ = ["evaluate_images", "mean_point"]


def evaluate_images(codec: Codec, paths: Sequence[str | Path]) -> list[dict]:
    """Per file: bytes and bpp of the complete file, PSNR (RGB, 8-bit output), encode/decode seconds."""
    rows = []
    for path in paths:
        x, _ = read_image(path)
        t0 = time.perf_counter()
        data = codec.encode(x)
        t1 = time.perf_counter()
        x_hat = codec.decode(data)
        t2 = time.perf_counter()
        h, w = x.shape[-2:]
        rows.append(
            {
                "file": Path(path).name,
                "bytes": len(data),
                "bpp": 8 * len(data) / (h * w),
                "psnr": psnr(x, x_hat),
                "encode_s": t1 - t0,
                "decode_s": t2 - t1,
            }
        )
    return rows


def mean_point(rows: Sequence[dict]) -> dict:
    """The mean bpp and PSNR of per-file rows (PSNR averaged in dB, as CompressAI reports it)."""
    return {key: sum(r[key] for r in rows) / len(rows) for key in ("bpp", "psnr")}
