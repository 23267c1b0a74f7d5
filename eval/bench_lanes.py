"""What rANS lanes cost and buy on the CPU: one short, low-rate stream coded with 1 to 32 lanes.

The stream is a Kodak-sized q1 latent's worth of symbols (96 x 32 x 48 = 147,456) drawn from
the 12 smallest Gaussian scales of the default scale table: about 3.7 KB, where 4-byte lane
states are a visible share. Per lane count: the stream's bytes, and the best-of-7 encode and
decode times of the C++ core on one thread. This is the measurement behind
``coder.BYTES_PER_LANE`` (at most one lane per 4 KiB of stream).

    python eval/bench_lanes.py [--out eval/bench_lanes.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from neurocodec.entropy import coder, tables
from neurocodec.evaluation import cpu_model

SYMBOLS = 96 * 32 * 48
LANES = (1, 2, 3, 4, 8, 9, 16, 32)


def best_ms(fn, reps: int = 7) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="eval/bench_lanes.json")
    args = parser.parse_args()
    scales = tables.gaussian_scale_table()
    table_set = coder.TableSet(*tables.gaussian_tables(scales))
    rng = np.random.default_rng(0)
    indexes = rng.integers(0, 12, SYMBOLS).astype(np.int32)
    values = np.round(rng.normal(0, scales[indexes])).astype(np.int32)
    rows = []
    for lanes in LANES:
        data = coder.encode(values, indexes, table_set, lanes=lanes)
        assert np.array_equal(coder.decode(data, indexes, table_set), values)
        rows.append({
            "lanes": lanes,
            "bytes": len(data),
            "encode_ms": round(best_ms(lambda k=lanes: coder.encode(values, indexes, table_set, lanes=k)), 3),
            "decode_ms": round(best_ms(lambda d=data: coder.decode(d, indexes, table_set)), 3),
        })  # fmt: skip
        print(rows[-1], flush=True)
    result = {
        "benchmark": "eval/bench_lanes.py",
        "command": "python " + " ".join(sys.argv),
        "machine": {"cpu": cpu_model(), "threads": 1},
        "symbols": SYMBOLS,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
