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

import numpy as np

from common import EVAL, best_of, command, machine, write_json
from neurocodec.entropy import coder, tables

SYMBOLS = 96 * 32 * 48
LANES = (1, 2, 3, 4, 8, 9, 16, 32)


def best_ms(fn) -> float:
    return 1e3 * best_of(fn, 7)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(EVAL / "bench_lanes.json"))
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
        "command": command(),
        "machine": machine(),
        "threads": 1,
        "symbols": SYMBOLS,
        "rows": rows,
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
