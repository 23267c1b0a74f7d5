"""c3 on kodim01-04 against Cool-chic 5.0's published R-D on the same four images.

Cool-chic's repository publishes per-image Kodak results (``results/v5.0/image-kodak.tsv`` of
Orange-OpenSource/Cool-Chic at commit a6fe38a: its ``hop`` decoder, 10k iterations, fitted on a
GPU). Averaged over kodim01-04 as our runs average (bpp and PSNR per lambda, PSNR in dB), they
place the issue's target on exactly the images our c3 runs measure: Cool-chic's BD-rate against
our Pillow AVIF rows is the VTM-level the slow preset aims at, and each c3 run's BD-rate against
Cool-chic is the distance left. Their PSNR is their script's, not measured here: read the
comparison as a placement, as :mod:`neurocodec.evaluation.published` says of its curves.

    python eval/coolchic_published.py fast=eval/c3_kodak_recipe.jsonl \
        medium=eval/c3_kodak_medium_recipe.jsonl --out eval/coolchic_published.json

The Pillow rows (``avif``, ``webp``, ``jpeg``) are read from the first run's file. ``--cost
kodim03 0.0017677`` prints instead the lowest R-D cost (``1000 (MSE + lmbda bpp)``, as
``eval/coolchic_runs.py`` scores a run) along one image's published curve, piecewise linear in
(log bpp, PSNR) between its points: where Cool-chic's published fit would sit at that lambda.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

from common import complete_curve, read_rows
from neurocodec import evaluation as rd

SOURCE = "Orange-OpenSource/Cool-Chic a6fe38a results/v5.0/image-kodak.tsv (hop, 10k iterations)"
COOLCHIC = "coolchic-5.0"
# file -> (lambda, bpp, PSNR RGB dB), copied from SOURCE
COOLCHIC_50: dict[str, tuple[tuple[float, float, float], ...]] = {
    "kodim01": (
        (0.0001, 2.083712, 40.755217),
        (0.0004, 1.244437, 35.831222),
        (0.001, 0.771859, 32.34837),
        (0.004, 0.324185, 28.164689),
        (0.02, 0.093285, 24.66416),
    ),
    "kodim02": (
        (0.0001, 1.037409, 41.184148),
        (0.0004, 0.474586, 37.242771),
        (0.001, 0.266528, 34.847259),
        (0.004, 0.100427, 31.788573),
        (0.02, 0.042825, 29.366735),
    ),
    "kodim03": (
        (0.0001, 0.685899, 42.9509),
        (0.0004, 0.359201, 39.529146),
        (0.001, 0.229081, 37.191503),
        (0.004, 0.114122, 33.470817),
        (0.02, 0.050091, 30.301997),
    ),
    "kodim04": (
        (0.0001, 1.120268, 41.109675),
        (0.0004, 0.548856, 37.229605),
        (0.001, 0.311692, 34.760288),
        (0.004, 0.1285, 31.71094),
        (0.02, 0.053079, 28.708811),
    ),
}
PILLOW = ("avif", "webp", "jpeg")


def coolchic_rows() -> list[dict]:
    return [
        {"codec": COOLCHIC, "file": name, "setting": lmbda, "bpp": bpp, "psnr": psnr}
        for name, points in COOLCHIC_50.items()
        for lmbda, bpp, psnr in points
    ]


def lowest_cost(name: str, lmbda: float, steps: int = 1000) -> tuple[float, float, float]:
    """(cost, bpp, PSNR) of the lowest ``1000 (MSE + lmbda bpp)`` along ``name``'s published curve."""
    points = sorted((bpp, psnr) for _, bpp, psnr in COOLCHIC_50[name])
    best = (math.inf, 0.0, 0.0)
    for (b0, p0), (b1, p1) in itertools.pairwise(points):
        for i in range(steps + 1):
            t = i / steps
            bpp, psnr = b0 * (b1 / b0) ** t, p0 + (p1 - p0) * t
            best = min(best, (1000 * (10 ** (-psnr / 10) + lmbda * bpp), bpp, psnr))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", help="NAME=ROWS.jsonl: c3 rows of eval/c3_kodak.py")
    p.add_argument("--out", type=Path)
    p.add_argument("--cost", nargs=2, metavar=("IMAGE", "LMBDA"), help="Cool-chic's lambda")
    args = p.parse_args()
    if args.cost:
        cost, bpp, psnr = lowest_cost(args.cost[0], float(args.cost[1]))
        print(f"{args.cost[0]} at lmbda {args.cost[1]}: cost {cost:.4f} at {bpp:.4f} bpp, {psnr:.2f} dB")
        return
    if not args.runs:
        p.error("give at least one NAME=ROWS.jsonl run (or --cost)")
    runs = dict(run.split("=", 1) for run in args.runs)
    files = sorted(COOLCHIC_50)
    curves = {COOLCHIC: complete_curve(coolchic_rows(), files)}
    first = read_rows(Path(next(iter(runs.values()))))
    for codec in PILLOW:
        curves[codec] = complete_curve([r for r in first if r["codec"] == codec], files)
    for name, path in runs.items():
        curves[name] = complete_curve([r for r in read_rows(Path(path)) if r["codec"] == "c3"], files)
        if len(curves[name]) < 2:
            sys.exit(f"{path}: fewer than 2 c3 settings on all of {', '.join(files)}")
    points = {name: rd.curve_points(curve) for name, curve in curves.items()}
    tests, anchors = [*runs, COOLCHIC], [*PILLOW, COOLCHIC]
    table = rd.bd_table(points, tests, anchors)
    for line in rd.bd_table_lines(table, tests, anchors):
        print(line)
    if args.out:
        summary = {"files": files, "source": SOURCE, "runs": runs, "curves": curves, "bd_rate": table}
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
