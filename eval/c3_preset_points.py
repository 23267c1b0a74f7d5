"""Two c3 presets at the points both have measured: for each (image, quality) in both rows files,
the bpp and PSNR of each, their change, and the change of the R-D cost c3 fits (``bpp + lambda
255^2 MSE``, the quality's lambda). For a preset whose evaluation is still running (the slow one)
this is what can be said before its BD-rate.

    python eval/c3_preset_points.py eval/c3_kodak_medium.jsonl eval/c3_kodak_slow.jsonl \\
        --out eval/c3_slow_vs_medium.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import read_rows, write_json
from neurocodec.codecs.c3 import LAMBDAS


def cost(row: dict) -> float:
    mse = 10 ** (-row["psnr"] / 10)
    return row["bpp"] + LAMBDAS[row["setting"]] * 255**2 * mse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", type=Path, help="rows of the preset compared against")
    p.add_argument("test", type=Path, help="rows of the preset compared")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    def points(path: Path) -> dict:
        return {(r["file"], r["setting"]): r for r in read_rows(path) if r["codec"] == "c3"}

    base, test = points(args.base), points(args.test)
    rows = []
    for key in sorted(base.keys() & test.keys()):
        b, t = base[key], test[key]
        rows.append(
            {
                "file": key[0],
                "quality": key[1],
                "base": {
                    "effort": b["effort"],
                    "bpp": b["bpp"],
                    "psnr": b["psnr"],
                    "encode_cpu_s": b.get("encode_cpu_s"),
                },
                "test": {
                    "effort": t["effort"],
                    "bpp": t["bpp"],
                    "psnr": t["psnr"],
                    "encode_cpu_s": t.get("encode_cpu_s"),
                },
                "rate_change_percent": 100 * (t["bpp"] / b["bpp"] - 1),
                "psnr_change_db": t["psnr"] - b["psnr"],
                "cost_change_percent": 100 * (cost(t) / cost(b) - 1),
            }
        )
        r = rows[-1]
        print(
            f"{key[0]} q{key[1]}: {r['rate_change_percent']:+.1f} % rate, {r['psnr_change_db']:+.2f} dB, "
            f"R-D cost {r['cost_change_percent']:+.1f} %"
        )
    write_json(args.out, {"base": str(args.base.name), "test": str(args.test.name), "points": rows})


if __name__ == "__main__":
    main()
