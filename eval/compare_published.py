"""Place codecs measured by ``neurocodec eval`` against published Kodak curves (VTM, BPG,
CompressAI's mbt2018-mean and cheng2020-anchor, MLIC++: :mod:`neurocodec.evaluation.published`).

For each codec of the report and each published curve: BD-rate over PSNR and over MS-SSIM (dB)
where the quality intervals overlap, and BD-PSNR (BD-MS-SSIM dB) where the rate intervals do,
with both intervals. The published curves were not measured in our run; read the result as a
placement (see the module's notes).

    python eval/compare_published.py eval/results/kodak-mlic/results.json --codecs mlic,hyperprior,avif \
        [--out eval/results/kodak-mlic/vs-published.json]   # and rd-published.png beside it
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import command, write_json
from neurocodec.evaluation import curve_points, plot_rd
from neurocodec.evaluation.published import KODAK, compare_published


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="results.json of a `neurocodec eval` run on Kodak")
    parser.add_argument("--codecs", required=True, help="comma-separated codec names in the report")
    parser.add_argument("--out", help="write the comparison here as JSON, and rd-published.png beside it")
    args = parser.parse_args()
    report = json.loads(Path(args.report).read_text())
    if len(report["data"]["files"]) != 24 or "kodim01.png" not in report["data"]["files"]:
        raise SystemExit(f"{args.report} did not measure the 24 Kodak images; the published curves did")
    out = {
        "benchmark": "eval/compare_published.py",
        "command": command(),
        "report": {"path": args.report, "command": report["command"], "date": report["date"]},
        "published": {name: curve.source for name, curve in KODAK.items()},
        "codecs": {},
    }
    for name in args.codecs.split(","):
        if name not in report["codecs"]:
            raise SystemExit(f"{args.report} has no {name} (it has {', '.join(report['codecs'])})")
        mean = report["codecs"][name]["mean"]
        out["codecs"][name] = {
            metric: compare_published(mean, metric=metric) for metric in ("psnr", "ms-ssim")
        }
        for metric, rows in out["codecs"][name].items():
            for row in rows:
                rate = "n/a" if row["bd_rate_percent"] is None else f"{row['bd_rate_percent']:+.1f} %"
                quality = "n/a" if row["bd_quality_db"] is None else f"{row['bd_quality_db']:+.2f} dB"
                print(
                    f"{name:>12} vs {row['anchor']:<16} {metric:>7}: BD-rate {rate:>9}, BD-quality {quality:>9}"
                )
    if args.out:
        write_json(args.out, out)
        curves = {name: curve_points(report["codecs"][name]["mean"]) for name in out["codecs"]}
        curves |= {f"{name} (published)": curve_points(curve.curve()) for name, curve in KODAK.items()}
        plot = plot_rd(
            curves, Path(args.out).with_name("rd-published.png"), "Kodak, 24 images", xlim=(0, 1.0)
        )
        print(f"wrote {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
