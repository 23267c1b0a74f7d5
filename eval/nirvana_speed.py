"""How fast ``nirvana`` decodes carphone (QCIF, 120 frames) on 1 and 2 CPU threads, against the
issue's target of 30 frames/s on 2 threads.

The file is fitted at a tiny effort (the decoder's work depends on the architecture and the
frame count, not on how well the networks fitted); each decode is timed ``--reps`` times and the
best kept. Run it on a quiet machine: with another job on one of the two cores, a 2-thread decode
waits on the busy core (measured 13-14 s against 0.7-0.8 s on one thread, eval/nirvana_carphone.jsonl).

    python eval/nirvana_speed.py [--reps 3] [--out eval/nirvana_speed.json]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import DATA, command, load_average, machine, write_json
from neurocodec.codecs.nirvana import NirvanaCodec
from neurocodec.io import read_codec_input

CLIP = DATA / "video" / "carphone_qcif_176x144_30000-1001fps_i420_120f.y4m"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default="eval/nirvana_speed.json")
    args = p.parse_args()
    x, options = read_codec_input(CLIP, "video")
    codec = NirvanaCodec(quality=3)
    codec.progress = False
    data = codec.encode(x, effort=2, **options)
    frames = x.shape[1]
    rows, first = {}, None
    for threads in (1, 2):
        torch.set_num_threads(threads)
        codec.decode(data)  # warm
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            y = codec.decode(data)
            times.append(time.perf_counter() - start)
        first = y if first is None else first
        rows[f"{threads}_threads"] = {
            "seconds": min(times),
            "seconds_all": times,
            "fps": frames / min(times),
            "same_frames_as_1_thread": bool(torch.equal(first, y)),
        }
        print(threads, rows[f"{threads}_threads"], flush=True)
    write_json(
        args.out,
        {
            "what": "nirvana decoding of carphone (QCIF 176x144, 120 frames), best of --reps",
            "command": command(),
            "machine": machine(),
            "load_average_after": load_average(),
            "bytes": len(data),
            "frames": frames,
            "arch": codec.last_fit["arch"],
            "parameters_per_group": codec.last_fit["parameters_per_group"],
            "target_fps_2_threads": 30,
            **rows,
        },
    )


if __name__ == "__main__":
    main()
