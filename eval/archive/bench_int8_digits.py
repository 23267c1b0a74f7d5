"""The int8 digit split of the integer prior path: bit operations against the division it replaced.

`neurocodec.models.integer.int8_digits` splits wide integer inputs of the integer layers into
balanced base-256 int8 digits. Until e188bf6 it took each digit with ``torch.remainder`` and
``torch.div``; it now reads the low byte of the two's complement and shifts. This script times
both on the same input (and checks they give the same digits), then decodes and encodes Kodak
images with the shipped `mlic` codec with each split swapped in, in alternating rounds in one
process, and checks the files are identical.

    python eval/archive/bench_int8_digits.py [--images 4] [--quality 3] [--rounds 8] [--out eval/archive/bench_int8_digits.json]

Archived: the A/B of one past change (e188bf6, the digit split by bit operations); the
library keeps only the new split, so this script swaps the old one back in to time it. See
eval/README.md and CHANGELOG.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def division_digits(x: torch.Tensor) -> list[torch.Tensor]:
    """The split as it was before e188bf6 (remainder and floor division)."""
    digits = []
    rest = x.to(torch.int64)
    while True:
        digit = torch.remainder(rest + 128, 256) - 128
        digits.append(digit.to(torch.int8))
        rest = torch.div(rest - digit, 256, rounding_mode="floor")
        if not bool(rest.any()):
            return digits


def timed(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--quality", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "eval" / "archive" / "bench_int8_digits.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    import neurocodec
    from neurocodec.io import read_codec_input
    from neurocodec.models import integer

    splits = {"division (before)": division_digits, "bit operations (now)": integer.int8_digits}
    # a wide input of a context layer's size: 192 channels of a Kodak latent, values up to 2^15
    x = torch.randint(-(2**15), 2**15, (1, 192, 32, 48), generator=torch.Generator().manual_seed(0))
    reference = division_digits(x)
    split_ms = {}
    for name, split in splits.items():
        if not all(torch.equal(a, b) for a, b in zip(split(x), reference, strict=True)):
            raise SystemExit(f"{name}: different digits")
        split_ms[name] = timed(lambda s=split: s(x), 20) * 1e3

    codec = neurocodec.load("mlic", quality=args.quality)
    images = [read_codec_input(path, "image")[0] for path in sorted(KODAK.glob("*.png"))[: args.images]]
    files = [codec.encode(image) for image in images]
    rounds: dict[str, dict[str, list[float]]] = {name: {"encode": [], "decode": []} for name in splits}
    load_before = os.getloadavg()
    try:
        for r in range(args.rounds + 1):  # the first round warms up
            for name, split in splits.items():
                integer.int8_digits = split  # _input_digits looks it up in the module at each call
                t0 = time.perf_counter()
                same = [codec.encode(image) for image in images] == files
                t1 = time.perf_counter()
                for data in files:
                    codec.decode(data)
                t2 = time.perf_counter()
                if not same:
                    raise SystemExit(f"{name}: the files differ")
                if r:
                    rounds[name]["encode"].append((t1 - t0) / len(images) * 1e3)
                    rounds[name]["decode"].append((t2 - t1) / len(images) * 1e3)
    finally:
        integer.int8_digits = splits["bit operations (now)"]
    rows = {
        name: {
            "split_ms": split_ms[name],
            **{f"{step}_ms_median": statistics.median(v) for step, v in steps.items()},
            **{f"{step}_ms_min": min(v) for step, v in steps.items()},
        }
        for name, steps in rounds.items()
    }
    for name, row in rows.items():
        print(f"{name:22s} split {row['split_ms']:6.2f} ms   mlic q{args.quality} encode "
              f"{row['encode_ms_median']:6.1f} ms  decode {row['decode_ms_median']:6.1f} ms (medians)")  # fmt: skip
    result = {
        "benchmark": "eval/archive/bench_int8_digits.py",
        "command": "python " + " ".join(sys.argv),
        "images": [p.name for p in sorted(KODAK.glob("*.png"))[: args.images]],
        "threads": 1,
        "rounds": args.rounds,
        "statistic": "per image, median and best of the alternating rounds after one warm-up round; "
        "the split alone: median of 20 on a (1, 192, 32, 48) input in [-2^15, 2^15)",
        "files_identical": True,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "machine": platform.platform(),
        "torch": torch.__version__,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
