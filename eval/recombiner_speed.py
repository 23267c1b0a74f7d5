"""How fast does ``recombiner-image`` decode a Kodak image on 1 and 2 threads (issue 27: under 1 s on 2)?

The file is kodim01 at quality 1 encoded with a short fit (``--effort``, 10 iterations by default:
decoding regenerates every block's sample and evaluates the networks once, whatever the fit, and
a short fit leaves more blocks than a full one, so this is the slower case). Best of ``--reps``
decodes on each thread count, interleaved; the outputs must be identical. Run on a quiet machine.

    python eval/recombiner_speed.py
"""

from __future__ import annotations

import argparse
import time

import torch

from common import EVAL, KODIM01, interleaved, machine, write_json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--effort", type=int, default=10)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default=str(EVAL / "recombiner_speed.json"))
    args = p.parse_args()
    import neurocodec as nc
    from neurocodec.io.image import read_image

    x = read_image(KODIM01)[0]
    codec = nc.load("recombiner-image", quality=1)
    codec.progress = False
    start = time.perf_counter()
    data = codec.encode(x, effort=args.effort)
    encode_s = time.perf_counter() - start

    def decode_on(threads: int):
        def run() -> torch.Tensor:
            torch.set_num_threads(threads)
            return nc.decode(data)

        return run

    times = interleaved({threads: decode_on(threads) for threads in (1, 2)}, reps=args.reps)
    record = {
        "command": "python eval/recombiner_speed.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "out"),
        "file": "kodim01, quality 1",
        "effort": args.effort,
        "bytes": len(data),
        "encode_s": encode_s,
        "decode_s": {f"{threads} threads": t.summary() for threads, t in times.items()},
        "same_on_1_and_2_threads": bool(torch.equal(times[1].out, times[2].out)),
        "machine": machine(),
    }
    write_json(args.out, record)
    print(
        {k: round(v["min_s"], 3) for k, v in record["decode_s"].items()},
        "same:",
        record["same_on_1_and_2_threads"],
    )


if __name__ == "__main__":
    main()
