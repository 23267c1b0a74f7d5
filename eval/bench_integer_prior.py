"""What the integer prior path costs: the shipped hyperprior against its float twin, on Kodak.

The hyperprior's ``h_s`` is an integer network (``models/integer.py``): int weights, floored
activations, integer table indexes (one of the scale table's 64 scales) and means on a 1/16 grid.
Its float twin runs the same trained parameters as a plain float network: float weights,
unfloored activations, a continuous scale ``exp(log_s0 + index * step)`` and the unrounded
mean. Same ``g_a``, ``h_a``, ``z``, ``g_s``; the rate of each is its ideal rate (``-log2`` of the
likelihoods of ``y`` and ``z``), the distortion the PSNR of its own 8-bit reconstruction. The real
file sizes of the integer path are reported too (they add the coder's and container's overhead,
``eval/rate_overhead.py``).

This measures what the integer arithmetic costs *these weights*; the weights were trained with
that arithmetic (straight-through), so a float model trained on its own could differ further.

    python eval/bench_integer_prior.py --data ../shared/data/kodak --out eval/bench_integer_prior.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

import neurocodec as nc
from neurocodec.codecs.base import pad_to_multiple
from neurocodec.io.image import read_image
from neurocodec.metrics import psnr
from neurocodec.models.hyperprior import Z_BOUND, HyperSynthesis
from neurocodec.rd import bd_rate, cpu_model
from neurocodec.train.data import image_files


def float_prior(h_s: HyperSynthesis, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_s`` as a float network: continuous (index, mean) from the same parameters."""
    x = torch.clamp(z_hat, -Z_BOUND, Z_BOUND)
    for layer in (h_s.up1, h_s.up2, h_s.out):
        x = layer._conv(x, layer.weight, layer.bias)  # conv(x, w) + b: the integer layer before rounding
        if layer.act_bits is not None:
            x = torch.clamp(x, 0, 2**layer.act_bits - 1)
    index, mean = x.chunk(2, dim=1)
    return torch.clamp(index, 0, h_s.num_scales - 1), mean * 2.0**-h_s.mean_bits


def bits(likelihoods: torch.Tensor) -> float:
    return float(-torch.log2(likelihoods.double()).sum())


@torch.no_grad()
def measure(codec, path: Path) -> dict:
    x, _ = read_image(path)
    m = codec.model
    _, h, w = x.shape
    y = m.g_a(pad_to_multiple(x[None], m.downsampling))
    z_hat, z_likelihoods = m.entropy_bottleneck(m.h_a(y), "ste")
    z_bits = bits(z_likelihoods)
    row = {"file": path.name}
    index, means = m.prior(z_hat)  # the coded path: exact integers
    float_index, float_means = float_prior(m.h_s, z_hat)
    paths = {
        "integer": (m.scales_of(index.float()), means.float()),
        "float": (m.scales_of(float_index), float_means),
    }
    for name, (scales, mu) in paths.items():
        y_hat, y_likelihoods = m.gaussian(y, scales, mu, "ste")
        x_hat = m.g_s(y_hat)[0, :, :h, :w].clamp(0, 1)
        row[name] = {"bpp": (bits(y_likelihoods) + z_bits) / (h * w), "psnr": psnr(x, x_hat)}
    data = codec.encode(x)
    row["integer_file"] = {"bpp": 8 * len(data) / (h * w), "psnr": psnr(x, codec.decode(data))}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/kodak")
    parser.add_argument("--qualities", default="1,2,3,4")
    parser.add_argument("--out", default="eval/bench_integer_prior.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = image_files(args.data)
    curves: dict[str, list[tuple[float, float]]] = {"integer": [], "float": [], "integer_file": []}
    per_quality = []
    start = time.perf_counter()
    for quality in [int(q) for q in args.qualities.split(",")]:
        codec = nc.load("hyperprior", quality)
        rows = [measure(codec, path) for path in files]
        point = {"quality": quality}
        for name, curve in curves.items():
            bpp = sum(r[name]["bpp"] for r in rows) / len(rows)
            db = sum(r[name]["psnr"] for r in rows) / len(rows)
            curve.append((bpp, db))
            point[name] = {"bpp": round(bpp, 5), "psnr": round(db, 4)}
        per_quality.append(point)
        print(point, flush=True)
    result = {
        "benchmark": "eval/bench_integer_prior.py",
        "command": "python " + " ".join(sys.argv),
        "machine": {"cpu": cpu_model(), "python": platform.python_version(), "torch": torch.__version__},
        "data": f"{Path(args.data).name} ({len(files)} images)",
        "points": per_quality,
        "bd_rate_pct": {
            "integer_vs_float_ideal": round(bd_rate(curves["float"], curves["integer"]), 3),
            "integer_file_vs_float_ideal": round(bd_rate(curves["float"], curves["integer_file"]), 3),
        },
        "seconds": round(time.perf_counter() - start, 1),
        "notes": "float = the same trained parameters without the integer rounding (weights, activations, "
        "table index, mean grid); a float model trained on its own is still to be measured (GPU work).",
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(result["bd_rate_pct"], "->", args.out)


if __name__ == "__main__":
    main()
