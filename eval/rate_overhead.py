"""Real file size against the model's ideal rate, per Kodak image (issue target: within 1 %).

The ideal rate is the sum of -log2 of the coding-time likelihoods: the factorized prior of
``round(z)`` and the Gaussian of ``round(y - mean)`` at the table scale the integer prior
selects. "file" counts every byte of the .ncd file; "streams" only the two rANS sections.

    NEUROCODEC_WEIGHTS_PATH=DIR python eval/rate_overhead.py [--codec hyperprior] [-q 3] [--data kodak/]
"""

from __future__ import annotations

import argparse
import json

import torch

import neurocodec as nc
from common import EVAL, KODAK, command, write_json
from neurocodec import container
from neurocodec.io import image_files
from neurocodec.io.image import read_image


def ideal_bytes(model, x: torch.Tensor) -> float:
    """The model's ideal rate of ``x`` in bytes, with the exact coding-time prior."""
    with torch.inference_mode():
        lc = model.latent_codec
        y = model.g_a(x[None])
        z_hat = torch.round(lc.h_a(y))
        bits_z = -lc.entropy_bottleneck.likelihood(z_hat).double().log2().sum()
        index, means = lc.coding_parameters(z_hat)
        scales = torch.from_numpy(lc.gaussian_conditional.scale_table)[index.long()]
        y_hat = torch.round(y.double() - means) + means
        bits_y = -lc.gaussian_conditional.likelihood(y_hat, scales, means).double().log2().sum()
    return float(bits_z + bits_y) / 8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", default="hyperprior")
    ap.add_argument("-q", "--quality", type=int)
    ap.add_argument("--data", default=str(KODAK))
    ap.add_argument("--out", default=str(EVAL / "rate_overhead.json"))
    args = ap.parse_args()
    codec = nc.load(args.codec, quality=args.quality)
    rows = []
    for path in image_files(args.data):
        x, _ = read_image(path)
        data = codec.encode(x)
        _, sections = container.unpack(data)
        ideal = ideal_bytes(codec.model, x)
        streams = sum(len(s) for s in sections.values())
        rows.append(
            {
                "file": path.name,
                "ideal_bytes": round(ideal, 1),
                "file_bytes": len(data),
                "file_over_ideal_pct": round(100 * (len(data) / ideal - 1), 3),
                "streams_over_ideal_pct": round(100 * (streams / ideal - 1), 3),
            }
        )
    total_ideal = sum(r["ideal_bytes"] for r in rows)
    summary = {
        "file_over_ideal_pct": round(100 * (sum(r["file_bytes"] for r in rows) / total_ideal - 1), 3),
        "worst_file_over_ideal_pct": max(r["file_over_ideal_pct"] for r in rows),
        "worst_streams_over_ideal_pct": max(r["streams_over_ideal_pct"] for r in rows),
    }
    report = {
        "benchmark": "eval/rate_overhead.py",
        "command": command(),
        "codec": f"{codec.name} q{codec.quality}",
        "weights_sha256_prefix": codec.weights_hash.hex(),
        "summary": summary,
        "rows": rows,
    }
    print(json.dumps(summary))
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
