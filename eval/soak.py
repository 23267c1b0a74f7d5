"""Soak: encode and decode the same media many times in one process with every shipped codec.

Checks what a long-running service would notice: every repetition writes the same file bytes and
decodes the same output as the first (drift), memory stays flat (the RSS slope over the last 90 %
of the repetitions, as a percentage of the RSS), and no file descriptors or threads pile up.
Results are written after every repetition, so a long run can be watched or stopped.

Inputs: the Kodak images, the music clips (optionally cut to ``--audio-seconds``) and the video
clips (their first ``--frames`` frames), each to the codecs of its medium. The codecs that fit
every file at encode time (those with effort presets: c3, recombiner, nirvana) take minutes a
file, so they code small pieces of the same media instead (``--fit-*``: the first images and
clips, cropped, at a small effort): the same code paths, a fit included, at a size a hundred
repetitions can afford.

    python eval/soak.py [--reps 100] [--images 24] [--music 4] [--audio-seconds 0] [--frames 16]
        [--codecs all] [--fit-effort 20] [--fit-crop 64] [--fit-items 2] [--fit-audio-seconds 0.25]
        [--fit-frames 2] [--out eval/soak.json]
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

import neurocodec as nc
from common import fitting_piece
from neurocodec.io import read_codec_input
from neurocodec.io.files import audio_files, image_files, video_files
from neurocodec.registry import list_codecs

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
WINDOW = 0.9  # the RSS slope is fitted over the last 90 % of the repetitions


def process_state(trim: bool = False) -> dict:
    """RSS (MiB), open file descriptors and threads of this process (Linux /proc). ``trim``: first
    return the allocator's free memory to the system (glibc ``malloc_trim``), so that the RSS is
    what the process holds rather than what freed blocks left behind in malloc's arenas."""
    if trim:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * resource.getpagesize() / 2**20
    return {
        "rss_mb": round(rss, 1),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": len(os.listdir("/proc/self/task")),
    }


def digest(data: bytes, out: torch.Tensor) -> str:
    return hashlib.sha256(data).hexdigest()[:16] + hashlib.sha256(out.numpy().tobytes()).hexdigest()[:16]


def rss_growth(rows: list[dict]) -> dict:
    """The least-squares RSS slope over the last 90 % of ``rows`` (MiB per repetition), and the
    growth it implies over that window as a percentage of the window's first fitted RSS."""
    window = rows[len(rows) - max(2, round(len(rows) * WINDOW)) :]
    if len(window) < 2:
        return {}
    reps = np.array([r["rep"] for r in window], float)
    rss = np.array([r["rss_mb"] for r in window], float)
    slope, intercept = np.polyfit(reps, rss, 1)
    start = intercept + slope * reps[0]
    return {
        "window_reps": len(window),
        "rss_slope_mb_per_rep": round(float(slope), 3),
        "rss_growth_percent": round(float(slope * (reps[-1] - reps[0]) / start * 100), 3),
    }


def read_media(args: argparse.Namespace) -> dict[str, list[tuple[str, torch.Tensor, dict]]]:
    """Per medium, the (name, tensor, encode keywords) of every input the soak codes."""
    media: dict[str, list] = {"image": [], "audio": [], "video": []}
    for p in image_files(DATA / "kodak")[: args.images]:
        media["image"].append((p.name, *read_codec_input(p, "image")))
    for p in audio_files(DATA / "audio" / "music")[: args.music]:
        x, kw = read_codec_input(p, "audio")
        cut = int(args.audio_seconds * kw["sample_rate"]) if args.audio_seconds else x.shape[-1]
        media["audio"].append((p.name, x[:, :cut].contiguous(), kw))
    for p in video_files(DATA / "video")[: args.videos]:
        media["video"].append((p.name, *read_codec_input(p, "video", max_frames=args.frames)))
    return media


def fitting_pieces(media: dict, args: argparse.Namespace) -> dict[str, list[tuple[str, torch.Tensor, dict]]]:
    """The small pieces the fitting codecs code: of the first ``--fit-items`` inputs of each
    medium (:func:`common.fitting_piece`)."""
    return {
        medium: [
            (*fitting_piece(name, x, kw, medium, args.fit_crop, args.fit_frames, args.fit_audio_seconds), kw)
            for name, x, kw in items[: args.fit_items]
        ]
        for medium, items in media.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--images", type=int, default=24, help="the first N Kodak images")
    ap.add_argument("--music", type=int, default=4, help="the first N music clips")
    ap.add_argument("--audio-seconds", type=float, default=0, help="cut each clip to this length (0: whole)")
    ap.add_argument("--videos", type=int, default=4, help="the first N video clips")
    ap.add_argument("--frames", type=int, default=16, help="the first N frames of each video clip")
    ap.add_argument("--codecs", default="all", help="comma-separated names, or all: every registered codec")
    ap.add_argument("--fit-effort", type=int, default=20, help="fitting codecs: iterations a piece")
    ap.add_argument("--fit-items", type=int, default=2, help="fitting codecs: the first N inputs of a medium")
    ap.add_argument(
        "--fit-crop", type=int, default=64, help="fitting codecs: images and frames cropped to NxN"
    )
    ap.add_argument("--fit-audio-seconds", type=float, default=0.25, help="fitting codecs: clips cut to this")
    ap.add_argument("--fit-frames", type=int, default=2, help="fitting codecs: the first N frames")
    ap.add_argument(
        "--trim", action="store_true", help="RSS after glibc's malloc_trim (memory held, not arena leftovers)"
    )
    ap.add_argument("--out", default=str(ROOT / "eval" / "soak.json"))
    args = ap.parse_args()

    names = [c.name for c in list_codecs()] if args.codecs == "all" else args.codecs.split(",")
    codecs = [nc.load(name) for name in names]
    media = read_media(args)
    pieces = fitting_pieces(media, args)
    plans = [
        (codec, pieces[codec.media], args.fit_effort) if codec.presets else (codec, media[codec.media], 0)
        for codec in codecs
    ]
    report = {
        "benchmark": "eval/soak.py", "command": "python " + " ".join(sys.argv), "torch_threads": torch.get_num_threads(),
        "malloc_trim": args.trim,
        "codecs": {f"{c.name} q{c.quality}": {"inputs": [name for name, _, _ in items], "effort": effort}
                   for c, items, effort in plans},
        "reps": [],
    }  # fmt: skip
    first: dict[str, str] = {}
    drift: list[dict] = []
    start = {**process_state(args.trim), "rep": -1}
    for rep in range(args.reps):
        t0 = time.perf_counter()
        seconds = {}
        for codec, items, effort in plans:
            t1 = time.perf_counter()
            for name, x, kw in items:
                data = codec.encode(x, effort=effort, **kw)
                key = f"{codec.name}/{name}"
                d = digest(data, nc.decode(data))
                if first.setdefault(key, d) != d:
                    drift.append({"rep": rep, "item": key})
            seconds[codec.name] = round(time.perf_counter() - t1, 2)
        row = {
            "rep": rep,
            "seconds": round(time.perf_counter() - t0, 1),
            **process_state(args.trim),
            "codec_seconds": seconds,
        }
        report["reps"].append(row)
        report["summary"] = {
            "reps_done": rep + 1, "items_per_rep": len(first), "drifted": len(drift), "drift": drift[:20],
            "before": start, **rss_growth(report["reps"]),
            "fds": [report["reps"][0]["fds"], report["reps"][-1]["fds"]],
            "threads": [report["reps"][0]["threads"], report["reps"][-1]["threads"]],
        }  # fmt: skip
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(rep, json.dumps(row), f"drifted {len(drift)}", flush=True)
    print(json.dumps(report["summary"]))
    return 1 if drift else 0


if __name__ == "__main__":
    raise SystemExit(main())
