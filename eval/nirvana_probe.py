"""Where nirvana's rate and distortion go, group by group, on the first frames of carphone.

Encodes the frames with the codec (on the clip's Y, Cb, Cr planes) and records, from its
``last_fit``, for each group: its frames, the PSNR (the loss's 6:1:1 weighting) of
its quantized network, the bytes its parameter differences cost with the file's Laplace tables,
and what the training's rate proxy estimated; for group 0 also the PSNR its float network
reached before quantization, and the two terms of its loss (``lambda 255^2 MSE`` and ``bpp``).
Frames per x264 byte put these beside the anchor: the rows of ``eval/nirvana_carphone.jsonl``.

    OMP_NUM_THREADS=1 python eval/nirvana_probe.py [--quality 3] [--effort 600] [--frames 12]

Appends one row a run to ``eval/nirvana_probe.jsonl``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from common import DATA, append_row, git_commit
from neurocodec.codecs import nirvana_fit
from neurocodec.codecs.nirvana import NirvanaCodec
from neurocodec.io.video import planes_to_tensor, read_y4m

HERE = Path(__file__).resolve().parent
CLIP = DATA / "video/carphone_qcif_176x144_30000-1001fps_i420_120f.y4m"


def psnr(mse: float) -> float:
    return -10 * math.log10(max(mse, 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--effort", type=int, default=600, help="iterations a group after the first")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--out", type=Path, default=HERE / "nirvana_probe.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(1)
    planes, _ = read_y4m(CLIP, rgb=False, max_frames=args.frames)
    x, colour = planes_to_tensor(planes)
    float_psnr = []
    choose = nirvana_fit.choose_steps

    def choose_and_record(problem, weight=1.0):  # the float network, just before quantization
        with torch.no_grad():
            float_psnr.append(psnr(problem.mse().item()))
        return choose(problem, weight)

    nirvana_fit.choose_steps = choose_and_record
    try:
        codec = NirvanaCodec(quality=args.quality)
        codec.progress = False
        codec.encode(x[None], effort=args.effort, colour=colour)
    finally:
        nirvana_fit.choose_steps = choose
    fit, (_, _, h, w) = codec.last_fit, x.shape
    groups = []
    for n, bits, proxy, db in zip(
        fit["group_sizes"], fit["group_bits"], fit["group_proxy_bits"], fit["group_psnr_train"], strict=True
    ):
        groups.append(
            {
                "frames": n,
                "psnr": db,
                "bytes": round(bits / 8),
                "proxy_bytes": round(proxy / 8),
                "bytes_a_frame": round(bits / 8 / n),
                "loss_distortion": codec.lmbda * 255**2 * 10 ** (-db / 10),
                "loss_bpp": bits / (n * h * w),
            }
        )
        print(groups[-1], flush=True)
    append_row(
        args.out,
        {
            "quality": args.quality,
            "lambda": codec.lmbda,
            "effort": args.effort,
            "frames": args.frames,
            "group_0_float_psnr": float_psnr[0],
            "groups": groups,
            "git_commit": git_commit(),
        },
    )


if __name__ == "__main__":
    main()
