"""Soak: encode and decode the same media many times in one process with every shipped codec.

Checks what a long-running service would notice: every repetition writes the same file bytes and
decodes the same output as the first (drift), memory stays flat (the RSS slope over the last 90 %
of the repetitions, as a percentage of the RSS), and no file descriptors or threads pile up.
Results are written after every repetition, so a long run can be watched or stopped.

Inputs: the Kodak images, the music clips (optionally cut to ``--audio-seconds``), for the image
and audio codecs. The shipped codecs code no video, so the video clips have no codec to run
(reported as such).

    python eval/soak.py [--reps 100] [--images 24] [--music 4] [--audio-seconds 0]
        [--codecs hyperprior,mlic,walloc-image,walloc-audio] [--out eval/soak.json]
"""

from __future__ import annotations

import argparse
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
from neurocodec.io.audio import read_audio
from neurocodec.io.files import audio_files, image_files
from neurocodec.io.image import read_image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
WINDOW = 0.9  # the RSS slope is fitted over the last 90 % of the repetitions


def process_state() -> dict:
    """RSS (MiB), open file descriptors and threads of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * resource.getpagesize() / 2**20
    return {"rss_mb": round(rss, 1), "fds": len(os.listdir("/proc/self/fd")), "threads": len(os.listdir("/proc/self/task"))}


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
    return {"window_reps": len(window), "rss_slope_mb_per_rep": round(float(slope), 3),
            "rss_growth_percent": round(float(slope * (reps[-1] - reps[0]) / start * 100), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--images", type=int, default=24, help="the first N Kodak images")
    ap.add_argument("--music", type=int, default=4, help="the first N music clips")
    ap.add_argument("--audio-seconds", type=float, default=0, help="cut each clip to this length (0: whole)")
    ap.add_argument("--codecs", default="hyperprior,mlic,walloc-image,walloc-audio")
    ap.add_argument("--out", default=str(ROOT / "eval" / "soak.json"))
    args = ap.parse_args()

    media = {
        "image": [(p.name, read_image(p)[0]) for p in image_files(DATA / "kodak")[: args.images]],
        "audio": [],
    }
    for p in audio_files(DATA / "audio" / "music")[: args.music]:
        x, info = read_audio(p)
        media["audio"].append((p.name, x[:, : int(args.audio_seconds * info.sample_rate)] if args.audio_seconds else x))
    codecs = [nc.load(name) for name in args.codecs.split(",")]
    report = {
        "benchmark": "eval/soak.py", "command": "python " + " ".join(sys.argv), "torch_threads": torch.get_num_threads(),
        "codecs": [f"{c.name} q{c.quality}" for c in codecs],
        "inputs": {kind: [name for name, _ in items] for kind, items in media.items()},
        "video": "not run: no shipped codec codes video",
        "reps": [],
    }
    first: dict[str, str] = {}
    drift: list[dict] = []
    start = {**process_state(), "rep": -1}
    for rep in range(args.reps):
        t0 = time.perf_counter()
        for codec in codecs:
            for name, x in media[codec.media]:
                data = codec.encode(x)
                key = f"{codec.name}/{name}"
                d = digest(data, nc.decode(data))
                if first.setdefault(key, d) != d:
                    drift.append({"rep": rep, "item": key})
        report["reps"].append({"rep": rep, "seconds": round(time.perf_counter() - t0, 1), **process_state()})
        report["summary"] = {
            "reps_done": rep + 1, "items_per_rep": len(first), "drifted": len(drift), "drift": drift[:20],
            "before": start, **rss_growth(report["reps"]),
            "fds": [report["reps"][0]["fds"], report["reps"][-1]["fds"]],
            "threads": [report["reps"][0]["threads"], report["reps"][-1]["threads"]],
        }
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(rep, json.dumps(report["reps"][-1]), f"drifted {len(drift)}", flush=True)
    print(json.dumps(report["summary"]))
    return 1 if drift else 0


if __name__ == "__main__":
    raise SystemExit(main())
