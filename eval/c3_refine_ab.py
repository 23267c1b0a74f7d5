"""What the refinement of the quantized networks (``c3_fit.refine_parameters``, RDOQ) buys, measured
as real files from one fit: the image is fitted once, its networks quantized (``choose_steps``),
then coded without and with the refinement, each file decoded. Same fit, so no fitting noise.
Rows are appended to ``eval/c3_refine_ab.jsonl``.

    OMP_NUM_THREADS=1 python eval/c3_refine_ab.py --img kodim03 --quality 3 [--effort 1000] [--share 0.25 1]
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch

from common import EVAL, KODAK, append_row, git_commit
from neurocodec import container
from neurocodec.codecs import c3, c3_fit
from neurocodec.codecs.base import pad_to_multiple
from neurocodec.container import Header, ImageGeometry
from neurocodec.io.image import read_image


def file_of(codec: c3.C3Codec, model, steps: dict, x: torch.Tensor) -> bytes:
    grids = [y.detach()[0, 0].to(torch.float64) for y in model.latents]
    sections = {
        "networks": c3.pack_networks(model, steps),
        "latents": c3.encode_latents(grids, c3.integer_arm(model, steps)),
    }
    _, c, h, w = x.shape
    header = Header(
        codec.name,
        codec.quality,
        codec.weights_hash,
        ImageGeometry(height=h, width=w, channels=c, bit_depth=8),
    )
    return container.pack(header, sections)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--img", default="kodim03")
    p.add_argument("--quality", type=int, default=3)
    p.add_argument("--effort", type=int, default=c3.PRESETS["fast"])
    p.add_argument("--share", type=float, nargs="+", default=[0.25, 1.0])
    args = p.parse_args()
    torch.set_num_threads(1)
    x = read_image(KODAK / f"{args.img}.png")[0][None]
    codec = c3.C3Codec(quality=args.quality)
    lmbda = codec.lmbda
    padded = tuple(pad_to_multiple(x, c3.PADDING).shape[-2:])
    t0 = time.process_time()
    fitted = c3_fit.fit(x, padded, lmbda, c3_fit.Schedule(args.effort), codec.arch)
    fit_s = time.process_time() - t0
    with torch.no_grad():
        for y in fitted.latents:
            y.copy_(torch.round(y).clamp(-c3.LATENT_MAX, c3.LATENT_MAX))
        steps = c3_fit.choose_steps(fitted, x, lmbda, c3.WEIGHT_MAX)
    for share in [0.0, *args.share]:
        model = copy.deepcopy(fitted)
        t0 = time.process_time()
        moved = c3_fit.refine_parameters(model, x, lmbda, steps, c3.WEIGHT_MAX, share) if share else 0
        refine_s = time.process_time() - t0
        data = file_of(codec, model, steps, x)
        x_hat = codec.decode(data)
        mse = float(torch.mean(((x_hat.clamp(0, 1) * 255).round() / 255 - x[0]) ** 2))
        bpp = len(data) * 8 / x[0, 0].numel()
        row = {
            "img": args.img,
            "quality": args.quality,
            "effort": args.effort,
            "networks": codec.arch,
            "share": share,
            "moved": moved,
            "bytes": len(data),
            "bpp": bpp,
            "psnr": -10 * math.log10(mse),
            "rd_cost": bpp + lmbda * 255**2 * mse,
            "fit_cpu_s": fit_s,
            "refine_cpu_s": refine_s,
            "code": git_commit()[:7],
        }
        print(row, flush=True)
        append_row(EVAL / "c3_refine_ab.jsonl", row)


if __name__ == "__main__":
    main()
