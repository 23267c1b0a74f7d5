"""R-D and decoding speed of the ``video-vae`` codec on carphone (QCIF, 120 frames), beside x264
medium in the same file, and how it compares with x264 (PSNR-Y and PSNR-YUV): each point's rate
over x264's at the same PSNR, and the BD-rate when the shipped curve has two points.

Carphone was held out of the training of the shipped weights (see their model cards). Resumable:
one JSON-lines row per (codec, quality or CRF) is appended to ``--out`` as soon as it is measured
(a restart skips the rows already there); then the summary (BD-rates, their PSNR overlap, decode
frames/s, the command and the machine) is written to ``--summary``. Run ONE process, on one thread
(the decode is also timed on 2 threads); on a shared machine the timings are indicative:

    OMP_NUM_THREADS=1 python eval/video_vae_carphone.py --qualities 1 --x264 23 28 33 38 43 48 51
    OMP_NUM_THREADS=1 python eval/video_vae_carphone.py --clip ../shared/data/video/bigbuckbunny_1280x720_25fps_132f_h264.mp4 \
        --frames 60 --qualities 1 --x264 23 28 33 38 --out eval/video_vae_bunny.jsonl --summary eval/video_vae_bunny.json \
        --in-training   # Big Buck Bunny's 64x64 crops trained the shipped weights (their model cards)

Rows of models trained but not shipped carry the codec name ``video-vae-unshipped``: measured with
their weights from a folder of cards, ``--weights DIR --label NAME`` (the row's setting is then
``NAME``; older rows were renamed by hand, with a note). The package's own cards are then
ignored, so a card of the same quality as a shipped one is the one measured. ``--caption TEXT``
encodes with that caption (weights with a text module).

The codec gets the clip's Y, Cb, Cr planes (``colour="yuv420"``; it maps them to RGB and back
itself), the rows are :func:`nirvana_carphone.quality_row`'s (bytes of the complete file, bpp over
all frames' pixels, kbps, PSNR-Y/U/V/YUV 6:1:1, RGB PSNR), plus decode seconds on 1 and 2 threads
(best of 2) and frames/s. ``--weights DIR`` reads the model cards there (``NEUROCODEC_WEIGHTS_PATH``)
rather than only the package's.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time
from fractions import Fraction
from pathlib import Path

import torch

from common import command, machine, read_rows, write_json
from neurocodec.evaluation.bd import bd_rate, overlap
from neurocodec.io.video import planes_to_tensor, read_video, tensor_to_planes
from nirvana_carphone import CLIP, SOURCE, anchor_row, append, quality_row, timed_decode

HERE = Path(__file__).resolve().parent


def video_vae_row(
    quality: int, x: torch.Tensor, colour: str, planes, label: str | None = None, caption: str | None = None
) -> dict:
    import neurocodec as nc

    codec = nc.load("video-vae", quality)
    codec.text = caption
    start = time.perf_counter()
    data = codec.encode(x, colour=colour, frame_rate=(30000, 1001))
    encode_s = time.perf_counter() - start
    y1, dec1 = timed_decode(codec, data, 1)
    y2, dec2 = timed_decode(codec, data, 2)
    t = x.shape[1]
    return {
        "codec": "video-vae" if label is None else "video-vae-unshipped",
        "setting": quality if label is None else label,
        "preset": None,
        "input": colour,
        "lambda": codec.lmbda,
        "weights": codec.weights_hash.hex(),
        "caption": caption,
        **quality_row(planes, data, tensor_to_planes(y1, colour), encode_s, dec1),
        "decode_s_1thread": dec1,
        "decode_s_2threads": dec2,
        "decode_fps_1thread": t / dec1,
        "decode_fps_2threads": t / dec2,
        "encode_fps_1thread": t / encode_s,
        "identical_1_2_threads": bool(torch.equal(y1, y2)),
    }


def anchor_rate_at(anchor: list[dict], metric: str, quality: float) -> float | None:
    """The anchor's bpp at ``quality`` dB of ``metric``: log-rate interpolated linearly between its
    two points around it (None outside its curve)."""
    points = sorted((r[metric], math.log(r["bpp"])) for r in anchor)
    for (q0, r0), (q1, r1) in itertools.pairwise(points):
        if q0 <= quality <= q1:
            return math.exp(r0 + (r1 - r0) * (quality - q0) / (q1 - q0))
    return None


def versus(anchor: list[dict], ours: list[dict], other: list[dict], name: str) -> dict:
    """PSNR-Y and PSNR-YUV against one anchor's rows: each point's rate over the anchor's at the
    same PSNR, the shipped curve's BD-rate (two points or more) and every trained model's."""
    out = {}
    for metric in ("psnr_y", "psnr_yuv"):
        entry: dict = {f"rate_over_{name}_at_equal_psnr": {}}
        for r in (*ours, *other):
            rate = anchor_rate_at(anchor, metric, r[metric])
            entry[f"rate_over_{name}_at_equal_psnr"][f"{r['codec']} {r['setting']}"] = (
                None if rate is None else r["bpp"] / rate
            )
        a = [(r["bpp"], r[metric]) for r in anchor]
        t = [(r["bpp"], r[metric]) for r in ours]
        if len(t) >= 2 and overlap(a, t) is not None:
            entry["bd_rate_percent"], entry["overlap_db"] = bd_rate(a, t), overlap(a, t)
        else:
            entry["bd_rate_percent"] = None
            entry["note"] = "no BD-rate: the shipped curve has fewer than two points or no PSNR overlap"
        every = sorted((r["bpp"], r[metric]) for r in (*ours, *other))
        if len(every) >= 2 and overlap(a, every) is not None:  # every model trained, shipped or not
            entry["bd_rate_all_trained_percent"] = bd_rate(a, every)
            entry["overlap_all_trained_db"] = overlap(a, every)
        out[metric] = entry
    return out


def summary(rows: list[dict], frames: int) -> dict:
    """Against x264 medium (and x265 medium, SVT-AV1 preset 8 where rows have them), PSNR-Y and
    PSNR-YUV: :func:`versus`; the decoding speeds. Unshipped models (``video-vae-unshipped``) are
    listed too."""
    rows = [r for r in rows if r["frames"] == frames]
    anchor = sorted((r for r in rows if r["codec"] == "x264"), key=lambda r: r["bpp"])
    ours = sorted((r for r in rows if r["codec"] == "video-vae"), key=lambda r: r["bpp"])
    other = sorted((r for r in rows if r["codec"] == "video-vae-unshipped"), key=lambda r: r["bpp"])
    out: dict = {"frames": frames, "points": {}}
    for name, group in (("video-vae", ours), ("video-vae-unshipped", other), ("x264", anchor)):
        out["points"][name] = [
            {k: r[k] for k in ("setting", "bpp", "kbps", "psnr_y", "psnr_yuv")} for r in group
        ]
    for name, key in (
        ("x264", "vs_x264_medium"),
        ("x265", "vs_x265_medium"),
        ("svtav1", "vs_svtav1_preset8"),
    ):
        anchor = sorted((r for r in rows if r["codec"] == name), key=lambda r: r["bpp"])
        if anchor:
            out[key] = versus(anchor, ours, other, name)
    out["decode_fps"] = {
        f"{r['codec']} {r['setting']}": {
            "1_thread": r["decode_fps_1thread"],
            "2_threads": r["decode_fps_2threads"],
        }
        for r in (*ours, *other)
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qualities", type=int, nargs="*", default=[])
    parser.add_argument("--x264", type=int, nargs="*", default=[], help="x264 CRFs (preset medium)")
    parser.add_argument("--x265", type=int, nargs="*", default=[], help="x265 CRFs (preset medium)")
    parser.add_argument("--svtav1", type=int, nargs="*", default=[], help="SVT-AV1 CRFs (preset 8)")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--weights", type=Path, help="a folder of model cards to load video-vae from")
    parser.add_argument("--label", help="with --weights: the rows are video-vae-unshipped, setting LABEL")
    parser.add_argument("--caption", help="text-guided weights: encode with this caption")
    parser.add_argument("--clip", type=Path, default=CLIP, help="the clip (default carphone)")
    parser.add_argument(
        "--in-training",
        action="store_true",
        help="the clip was in the weights' training data (the summary says so)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "video_vae_carphone.jsonl")
    parser.add_argument("--summary", type=Path, default=HERE / "video_vae_carphone.json")
    args = parser.parse_args()
    if args.weights:  # its cards only: the package's would win for the same quality
        os.environ["NEUROCODEC_WEIGHTS_PATH"] = str(args.weights.resolve())
        os.environ["NEUROCODEC_PACKAGE_WEIGHTS"] = "0"
    torch.set_num_threads(1)
    planes, info = read_video(args.clip, rgb=False, max_frames=args.frames)
    SOURCE.update(clip=args.clip, rate=Fraction(info.rate_num, info.rate_den))  # for the rows
    x, colour = planes_to_tensor(planes)
    have = {(r["codec"], r["setting"], r["frames"]) for r in read_rows(args.out)}
    for anchor in ("x264", "x265", "svtav1"):
        for crf in getattr(args, anchor):
            if (anchor, crf, args.frames) not in have:
                append(args.out, anchor_row(crf, planes, anchor))
    if args.label and not args.weights:
        parser.error("--label names models measured from --weights")
    for q in args.qualities:
        key = ("video-vae", q) if args.label is None else ("video-vae-unshipped", args.label)
        if (*key, args.frames) not in have:
            append(args.out, video_vae_row(q, x, colour, planes, args.label, args.caption))
    record = {
        "command": command(),
        "clip": args.clip.name,
        "clip_in_training": args.in_training,
        "machine": machine(),
        "note": "a shared 2-core machine: timings are indicative",
        **summary(read_rows(args.out), args.frames),
    }
    write_json(args.summary, record)


if __name__ == "__main__":
    main()
