"""c3 on a GPU (run there; docs/gpu.md): fitting seconds per iteration on all of kodim01 for
both architectures, decoding time, and files across devices: a file fitted on the CPU and one
fitted on the GPU, each decoded on both and the 8-bit pixels compared. The latents are decoded
by the native coder's integer context model on either device, so only the float synthesis can
make a pixel differ.

    python eval/c3_gpu.py --device cuda [--iterations 200] [--effort 300] --out $OUT/c3_gpu.json

On the CPU (``--device cpu``) it rehearses the same steps, the two "devices" being one.
"""

from __future__ import annotations

import argparse
import time

import torch

from c3_speed import fitting_speed, synchronize
from common import KODIM01, command, machine, write_json
from neurocodec.codecs import c3
from neurocodec.io.image import read_image

ARCHS = {"base": c3.ARCH, "rich": {**c3.ARCH, **c3.RICH_ARCH}}


def decoded(codec: c3.C3Codec, data: bytes) -> tuple[torch.Tensor, float]:
    codec.decode(data)
    synchronize(codec.device)
    w0 = time.perf_counter()
    y = codec.decode(data)
    synchronize(codec.device)
    return (y.clamp(0, 1) * 255).round().to(torch.uint8).cpu(), time.perf_counter() - w0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--effort", type=int, default=300, help="iterations of the cross-device files' fits")
    p.add_argument("--out", default="eval/c3_gpu.json")
    args = p.parse_args()
    device = torch.device(args.device)
    x = read_image(KODIM01)[0]
    record = {"command": command(), "machine": machine(device=args.device), "fitting": {}, "files": {}}
    for name, arch in ARCHS.items():
        record["fitting"][name] = fitting_speed(
            x[None].to(device), args.iterations, torch.get_num_threads(), arch
        )
        print(name, record["fitting"][name], flush=True)
    codecs = {
        "cpu": c3.C3Codec(quality=c3.RICH_QUALITY),
        "device": c3.C3Codec(quality=c3.RICH_QUALITY).to(device),
    }
    for fitted_on, codec in codecs.items():
        t0 = time.perf_counter()
        data = codec.encode(x, effort=args.effort)
        fit_s = time.perf_counter() - t0
        pixels = {where: decoded(c, data) for where, c in codecs.items()}
        diff = (pixels["cpu"][0].int() - pixels["device"][0].int()).abs()
        record["files"][f"fitted on {fitted_on}"] = {
            "bytes": len(data),
            "fit_s": fit_s,
            "decode_s": {where: t for where, (_, t) in pixels.items()},
            "pixels_differing": int((diff > 0).sum()),
            "max_level_difference": int(diff.max()),
        }
        print(fitted_on, record["files"][f"fitted on {fitted_on}"], flush=True)
    write_json(args.out, record)


if __name__ == "__main__":
    main()
