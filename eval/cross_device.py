"""Cross-device decoding on Kodak: files encoded on one device decode on the other.

Issue 3's target: 24/24 Kodak images encoded on one device decode bit-exactly on the other.
For each image and codec, the file is encoded on the CPU and on ``--device`` (a GPU), and each
file is decoded on both. The prior path is integer, so the decoded latents are the same on
both devices, or the decode fails with a BitstreamError: no float difference can pick another
CDF. Only the float synthesis of the pixels may differ by rounding. A file therefore passes
when it decodes on both devices to 8-bit images that differ by at most ``--tolerance`` levels
(a CDF mismatch gives garbage: differences of tens of levels, or an error). The report also
says whether the two devices wrote the same bytes (they may not: the float analysis transform
can round a latent differently; each file must still decode everywhere).

Weights: the shipped ones, or those in ``NEUROCODEC_WEIGHTS_PATH`` with
``NEUROCODEC_PACKAGE_WEIGHTS=0`` (on a lent GPU the slim tree carries none: copy the cards and
weights to test into a carried folder; docs/gpu.md).

    python eval/cross_device.py --device cuda [--codecs mlic:3,hyperprior:3] [--data DIR]
                                [--limit 24] [--out eval/cross_device.json]

It exits with 1 when any file fails. ``--device cpu`` runs both sides on the CPU (a dry run of
the script).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from common import EVAL, KODAK, command, machine, write_json


def check(name: str, quality: int, device: str, images: list, tolerance: int) -> list[dict]:
    import neurocodec as nc
    from neurocodec.errors import NeurocodecError
    from neurocodec.evaluation.metrics import quantized

    codecs = {"cpu": nc.load(name, quality), "dev": nc.load(name, quality, device=device)}  # dev: --device
    rows = []
    for path, x in images:
        files = {where: codec.encode(x.to(codec.device)) for where, codec in codecs.items()}
        row = {"file": path.name, "same_bytes": files["cpu"] == files["dev"], "decodes": {}, "ok": True}
        for written, data in files.items():
            outputs = {}
            for where, codec in codecs.items():
                try:
                    outputs[where] = quantized(codec.decode(data).float().cpu())
                except NeurocodecError as e:
                    row["decodes"][f"{written}->{where}"] = f"error: {e}"
            if len(outputs) == len(codecs):
                diff = round(float((outputs["cpu"] - outputs["dev"]).abs().max()) * 255)  # 8-bit levels
                row["decodes"][f"written on {written}: max level difference of the two decodes"] = diff
                row["ok"] &= diff <= tolerance
            else:
                row["ok"] = False
        rows.append(row)
        print(f"{name} q{quality} {path.name}: {'ok' if row['ok'] else 'FAIL'} {row['decodes']}", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--codecs", default="mlic:3,hyperprior:3", help="NAME:QUALITY,...")
    ap.add_argument("--data", default=str(KODAK))
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--tolerance", type=int, default=2, help="8-bit levels the two syntheses may differ by")
    ap.add_argument("--out", default=str(EVAL / "cross_device.json"))
    args = ap.parse_args()

    from neurocodec.io.image import read_image

    paths = sorted(Path(args.data).glob("*.png"))[: args.limit]
    if not paths:
        print(f"no PNG images in {args.data}", file=sys.stderr)
        return 2
    images = [(p, read_image(p)[0]) for p in paths]
    start = time.perf_counter()
    results = {}
    for spec in args.codecs.split(","):
        name, quality = spec.split(":")
        results[spec] = check(name, int(quality), args.device, images, args.tolerance)
    passed = {spec: sum(r["ok"] for r in rows) for spec, rows in results.items()}
    report = {
        "benchmark": "eval/cross_device.py",
        "command": command(),
        "devices": ["cpu", torch.cuda.get_device_name(args.device) if args.device != "cpu" else "cpu"],
        "machine": machine(args.device),
        "images": len(images),
        "tolerance_levels": args.tolerance,
        "passed": passed,
        "seconds": time.perf_counter() - start,
        "rows": results,
    }
    write_json(args.out, report)
    print(f"passed: {passed} of {len(images)} images each")
    return 0 if all(n == len(images) for n in passed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
