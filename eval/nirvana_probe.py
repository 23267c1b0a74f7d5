"""Where nirvana's rate and distortion go, group by group, on the first frames of carphone.

Fits the codec's groups (its own fitting, :mod:`neurocodec.codecs.nirvana_fit`, on the clip's Y,
Cb, Cr planes) and records for each group: its frames, the PSNR (the loss's 6:1:1 weighting) of
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
from neurocodec.codecs import c3_fit, nirvana_fit
from neurocodec.codecs.nirvana import ARCH, LAMBDAS, MOTION_BUDGET
from neurocodec.io.video import planes_to_tensor, read_y4m
from neurocodec.models.nirvana import Arch, GroupNet, coded_rows, coordinate_features

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
    c, _, h, w = x.shape
    arch = Arch(**{**ARCH.as_dict(), "channels": c})
    p = arch.patch
    rows, cols = -(-h // p), -(-w // p)
    x = torch.nn.functional.pad(x, (0, cols * p - w, 0, rows * p - h), mode="replicate")
    features = coordinate_features(rows, cols, arch.freqs).float()
    lmbda = LAMBDAS[args.quality]
    torch.manual_seed(0)
    net = GroupNet(arch)
    schedule = nirvana_fit.Schedule(args.effort)
    sizes = nirvana_fit.group_sizes(x, arch.group, MOTION_BUDGET, colour)
    float_psnr = []
    choose = nirvana_fit.choose_steps

    def choose_and_record(problem, weight=1.0):  # the float network, just before quantization
        with torch.no_grad():
            float_psnr.append(psnr(problem.mse().item()))
        return choose(problem, weight)

    nirvana_fit.choose_steps = choose_and_record
    groups, steps, previous, first = [], None, None, 0
    prev_ints = None
    for n in sizes:
        problem = nirvana_fit.new_problem(
            x[:, first : first + n], features, rows, cols, n, (h, w), lmbda, net, colour
        )
        fit, steps = nirvana_fit.fit_group(problem, schedule, steps, previous, lambda m, b: None)
        base = prev_ints or [torch.zeros_like(i) for i in fit.ints]
        coded = sum(
            c3_fit.parameter_cost((i - j)[:r].reshape(-1))[1]
            for i, j, r in zip(fit.ints, base, coded_rows(arch, n), strict=True)
        )
        pixels = n * h * w
        groups.append(
            {
                "frames": n,
                "psnr": psnr(fit.mse),
                "bytes": round(coded / 8),
                "proxy_bytes": round(fit.bits / 8),
                "bytes_a_frame": round(coded / 8 / n),
                "loss_distortion": lmbda * 255**2 * fit.mse,
                "loss_bpp": coded / pixels,
            }
        )
        print(groups[-1], flush=True)
        previous = [i.to(torch.float32) for i in fit.ints]
        prev_ints = fit.ints
        first += n
    nirvana_fit.choose_steps = choose
    append_row(
        args.out,
        {
            "quality": args.quality,
            "lambda": lmbda,
            "effort": args.effort,
            "frames": args.frames,
            "group_0_float_psnr": float_psnr[0],
            "groups": groups,
            "git_commit": git_commit(),
        },
    )


if __name__ == "__main__":
    main()
