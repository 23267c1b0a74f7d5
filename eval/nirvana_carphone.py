"""R-D and speed of the ``nirvana`` video codec on carphone (QCIF, 120 frames), with x264 as anchor.

Resumable: one JSON-lines row per (codec, quality or CRF, preset) is appended to ``--out`` as
soon as it is measured; a restart skips the rows already there. Run ONE process at a time, on
one thread (the decode is also timed on 2 threads):

    OMP_NUM_THREADS=1 python eval/nirvana_carphone.py --qualities 2 4 --preset fast
    OMP_NUM_THREADS=1 python eval/nirvana_carphone.py --qualities 3 --group 8 --motion-budget 10 --label g8-b10
    python eval/nirvana_carphone.py --x264 28 33 38     # the anchor rows
    OMP_NUM_THREADS=1 python eval/nirvana_carphone.py --clip ../shared/data/video/bigbuckbunny_1280x720_25fps_132f_h264.mp4 \
        --frames 60 --out eval/nirvana_bunny.jsonl --x264 23 28 33 38 --qualities 3

The codec is given the clip's own Y, Cb, Cr planes (chroma repeated to the frame's size,
``colour="yuv420"``: no RGB round trip; its loss weights them 6:1:1), and its output is turned
back into 4:2:0 planes (:func:`neurocodec.io.video.tensor_to_planes`); ``--rgb`` gives it the
clip's BT.601 RGB instead (its output is then converted to 4:2:0 for the metric). A row: bytes of
the complete file, bpp (over the frames' pixels, all frames), kbps at the clip's 30000/1001
frames/s, PSNR-Y/U/V/YUV (6:1:1) and RGB PSNR of the decoded planes against the file's
(:func:`neurocodec.evaluation.metrics.video_psnr`, as the x264 rows), encode seconds (one
thread), decode seconds on 1 and 2 threads (best of 2 runs each) and frames/s on 2.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from fractions import Fraction
from pathlib import Path

import torch

from common import DATA, append_row, read_rows
from neurocodec.codecs.nirvana import PRESETS, NirvanaCodec
from neurocodec.evaluation.rows import rd_row
from neurocodec.io.video import planes_to_tensor, read_video, tensor_to_planes

HERE = Path(__file__).resolve().parent
CLIP = DATA / "video/carphone_qcif_176x144_30000-1001fps_i420_120f.y4m"
BUNNY = DATA / "video/bigbuckbunny_1280x720_25fps_132f_h264.mp4"
SOURCE = {"clip": CLIP, "rate": Fraction(30000, 1001)}  # the clip measured (--clip), and its frame rate


def done(path: Path) -> set[tuple]:
    return {
        (r["codec"], r["setting"], r.get("preset"), r["frames"], r.get("input", "yuv420"), r.get("label"))
        for r in read_rows(path)
    }


def append(path: Path, row: dict) -> None:
    append_row(path, row)
    print(json.dumps(row), flush=True)


def timed_decode(codec: NirvanaCodec, data: bytes, threads: int) -> tuple[torch.Tensor, float]:
    torch.set_num_threads(threads)
    best, y = math.inf, None
    for _ in range(2):
        start = time.perf_counter()
        y = codec.decode(data)
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(1)
    return y, best


def nirvana_row(
    quality: int, preset: str, x: torch.Tensor, colour: str, planes, group: int | None, budget: str | None,
    label: str | None,
) -> dict:  # fmt: skip
    codec = NirvanaCodec(quality=quality, **({"group": group} if group else {}))
    if budget is not None:
        codec.motion_budget = None if budget == "none" else float(budget)
    codec.progress = True
    start = time.perf_counter()
    data = codec.encode(x, effort=PRESETS[preset], colour=colour)
    encode_s = time.perf_counter() - start
    y1, dec1 = timed_decode(codec, data, 1)
    y2, dec2 = timed_decode(codec, data, 2)
    t = x.shape[1]
    return {
        "codec": "nirvana",
        "setting": quality,
        "preset": preset,
        **({"label": label} if label else {}),
        "group": codec.last_fit["arch"]["group"],
        "motion_budget": codec.motion_budget,
        "group_sizes": codec.last_fit["group_sizes"],
        "input": colour,
        "effort": PRESETS[preset],
        "lambda": codec.lmbda,
        **quality_row(planes, data, tensor_to_planes(y1, colour), encode_s, dec1),
        "decode_s_1thread": dec1,
        "decode_s_2threads": dec2,
        "decode_fps_2threads": t / dec2,
        "identical_1_2_threads": bool(torch.equal(y1, y2)),
        "header_bytes": codec.last_fit["header_bytes"],
        "params_bytes": codec.last_fit["params_bytes"],
        "first_group_bytes": round(codec.last_fit["group_bits"][0] / 8),
        "group_bytes_estimated": [round(b / 8) for b in codec.last_fit["group_bits"]],
        "params_bytes_laplace": round(sum(codec.last_fit["group_bits"]) / 8),
        "params_bytes_zero_order_bound": round(codec.last_fit["zero_order_bits"] / 8),
        "psnr_fit_channels_alike": codec.last_fit["psnr_fit"],
        "steps": codec.last_fit["steps"],
        "parameters_per_group": codec.last_fit["parameters_per_group"],
    }


ANCHOR_PRESETS = {
    "x264": "medium",
    "x265": "medium",
    "svtav1": "8",
}  # as neurocodec.evaluation.baselines runs them


def anchor_row(crf: int, planes, anchor: str = "x264") -> dict:
    """A row of the video baseline ``anchor`` (x264, x265 or svtav1) at ``crf``."""
    from neurocodec.evaluation.baselines import VIDEO_BASELINES

    baseline = VIDEO_BASELINES[anchor]
    start = time.perf_counter()
    data = baseline.encode(planes, SOURCE["rate"], crf)
    middle = time.perf_counter()
    decoded = baseline.decode(data)
    seconds = time.perf_counter() - middle
    row = {"codec": anchor, "setting": crf, "preset": ANCHOR_PRESETS[anchor], "input": "yuv420"}
    return {**row, **quality_row(planes, data, decoded, middle - start, seconds)}


def quality_row(planes, data: bytes, decoded, encode_s: float, decode_s: float) -> dict:
    """The video row of :func:`neurocodec.evaluation.rows.rd_row` (frames, bytes, bpp, kbps, PSNR-Y/U/V/YUV),
    its RGB PSNR as ``psnr_rgb`` (the name of the earlier rows)."""
    row = rd_row(SOURCE["clip"], planes, data, decoded, encode_s, decode_s, frame_rate=SOURCE["rate"])
    row["psnr_rgb"] = row.pop("psnr")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qualities", type=int, nargs="*", default=[])
    parser.add_argument("--preset", choices=tuple(PRESETS), default="fast")
    parser.add_argument("--x264", type=int, nargs="*", default=[], help="x264 CRFs")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--rgb", action="store_true", help="give the codec RGB rather than the planes")
    parser.add_argument(
        "--clip", type=Path, default=CLIP, help="the clip (default carphone; e.g. " + BUNNY.name + ")"
    )
    parser.add_argument("--out", type=Path, default=HERE / "nirvana_carphone.jsonl")
    parser.add_argument(
        "--group", type=int, default=None, help="frames a group has at most (default: ARCH's)"
    )
    parser.add_argument(
        "--motion-budget", default=None, help="motion a later group may span, or 'none' for groups of G"
    )
    parser.add_argument("--label", default=None, help="names a variant's rows (part of what a restart skips)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    planes, info = read_video(args.clip, rgb=False, max_frames=args.frames)
    SOURCE.update(clip=args.clip, rate=Fraction(info.rate_num, info.rate_den))
    if args.rgb:
        x, colour = read_video(args.clip, max_frames=args.frames)[0], "rgb"
    else:
        x, colour = planes_to_tensor(planes)
    have = done(args.out)
    for crf in args.x264:
        if ("x264", crf, "medium", args.frames, "yuv420", None) not in have:
            append(args.out, anchor_row(crf, planes))
    for q in args.qualities:
        if ("nirvana", q, args.preset, args.frames, colour, args.label) not in have:
            row = nirvana_row(q, args.preset, x, colour, planes, args.group, args.motion_budget, args.label)
            append(args.out, row)


if __name__ == "__main__":
    main()
