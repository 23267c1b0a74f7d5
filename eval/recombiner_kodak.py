"""R-D of ``recombiner-image`` on Kodak images (whole, through 64x64 patches) against Pillow WebP.

Resumable: every (codec, setting, file) row is appended to a JSON-lines file as soon as it is
measured, and a restart skips the rows already there. At the end (or with ``--summary`` alone) the
mean curves and BD-rates (PSNR, PCHIP, :mod:`neurocodec.evaluation`) against WebP, over all points
and over the points at or under ``--low-bpp``, are written to a JSON summary with the command.

    OMP_NUM_THREADS=1 nohup python eval/recombiner_kodak.py > /tmp/recombiner/eval.log 2>&1 &
    python eval/recombiner_kodak.py --summary

Encoding runs on one thread (``--effort`` fitting iterations, the fast preset by default);
each file is decoded on one thread (``decode_s``) and again on two (``decode_2t_s``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from common import KODAK, append_row, baseline_row, command, machine, read_rows, write_json
from neurocodec import evaluation as rd
from neurocodec.codecs import recombiner
from neurocodec.io.image import read_image

HERE = Path(__file__).resolve().parent
WEBP_QUALITIES = (1, 5, 10, 20, 30, 40, 50, 60, 75)  # 0.1-0.7 bpp on kodim01-04


def measure_recombiner(x: torch.Tensor, name: str, quality: int, effort: int) -> dict:
    import neurocodec as nc

    codec = nc.load("recombiner-image", quality=quality)
    t0 = time.perf_counter()
    data = codec.encode(x, effort=effort)
    t1 = time.perf_counter()
    x_hat = codec.decode(data)
    t2 = time.perf_counter()
    torch.set_num_threads(2)
    try:
        t3 = time.perf_counter()
        again = codec.decode(data)
        decode_2t = time.perf_counter() - t3
    finally:
        torch.set_num_threads(1)
    row = rd.rd_row(name, x, data, x_hat, t1 - t0, t2 - t1)
    fit = codec.last_fit
    row.update(
        decode_2t_s=decode_2t,
        same_on_2_threads=bool(torch.equal(again, x_hat)),
        blocks=fit["blocks"],
        psnr_fit=fit["psnr_fit"],
        kl_bpp_fit=fit["kl_bpp_fit"],
        block_bits=codec.block_bits,
    )
    return row


def curves(rows: list[dict], files: list[str]) -> dict[str, list[dict]]:
    """The mean curve of each codec over the settings measured on all ``files``."""
    out = {}
    for codec in sorted({r["codec"] for r in rows}):
        grouped: dict[object, list[dict]] = {}
        for r in rows:
            if r["codec"] == codec and r["file"] in files:
                grouped.setdefault(r["setting"], []).append(r)
        complete = {s: g for s, g in grouped.items() if sorted(r["file"] for r in g) == files}
        if complete:
            out[codec] = rd.mean_curve(complete)
    return out


def summarize(rows: list[dict], low_bpp: float) -> dict:
    ours = [r for r in rows if r["codec"] == "recombiner-image"]
    qualities = {r["setting"] for r in ours}
    # the files every quality was measured on (a run stopped midway leaves some with fewer)
    files = sorted(
        f for f in {r["file"] for r in ours} if {r["setting"] for r in ours if r["file"] == f} == qualities
    )
    mean = curves(rows, files)
    points = {name: rd.curve_points(c) for name, c in mean.items()}
    low = {name: [p for p in pts if p[0] <= low_bpp] for name, pts in points.items()}
    ours = [r for r in ours if r["file"] in files]
    table = (
        rd.bd_table(points, ["recombiner-image"], ["webp"])
        if len(points.get("recombiner-image", [])) >= 2
        else []
    )
    low_ok = all(len(low.get(n, [])) >= 2 for n in ("recombiner-image", "webp"))
    low_table = (
        rd.bd_table(low, ["recombiner-image"], ["webp"])
        if low_ok
        else [{"test": "recombiner-image", "anchor": "webp", "bd_rate_percent": None,
               "error": f"fewer than 2 mean points of each at or under {low_bpp} bpp"}]
    )  # fmt: skip
    return {
        "files": files,
        "curves": mean,
        "bd_rate_vs_webp": table,
        f"bd_rate_vs_webp_at_most_{low_bpp}_bpp": low_table,
        "encode_s_per_image": {
            str(q): sum(r["encode_s"] for r in ours if r["setting"] == q)
            / max(1, sum(r["setting"] == q for r in ours))
            for q in sorted({r["setting"] for r in ours})
        },
        "decode_2t_s_mean": sum(r["decode_2t_s"] for r in ours) / len(ours) if ours else None,
        "decode_1t_s_mean": sum(r["decode_s"] for r in ours) / len(ours) if ours else None,
        "same_on_2_threads": all(r["same_on_2_threads"] for r in ours),
    }


def update_cards(rows: list[dict], files: list[str]) -> None:
    """Each quality's mean Kodak point (over ``files``) into its model card (the weights are unchanged)."""
    from neurocodec.registry import WEIGHTS_DIR

    for quality, curve in ((f"q{q}", c) for q, c in by_quality(rows, files).items()):
        card_path = WEIGHTS_DIR / f"recombiner-image-{quality}.json"
        card = json.loads(card_path.read_text())
        card["model_card"]["rd_kodak"] = [{"bpp": round(curve["bpp"], 4), "psnr": round(curve["psnr"], 3)}]
        card["model_card"]["rd_kodak_files"] = len(files)
        card["model_card"]["rd_kodak_command"] = command()
        card_path.write_text(json.dumps(card, indent=1) + "\n")


def by_quality(rows: list[dict], files: list[str]) -> dict[int, dict]:
    """The mean point of each recombiner quality measured on every one of ``files``."""
    out = {}
    for q in sorted({r["setting"] for r in rows if r["codec"] == "recombiner-image"}):
        rs = [
            r for r in rows if r["codec"] == "recombiner-image" and r["setting"] == q and r["file"] in files
        ]
        if sorted(r["file"] for r in rs) == files:
            out[q] = rd.mean_point(rs)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", default="kodim01,kodim02,kodim03,kodim04")
    p.add_argument("--qualities", default="1,2", help="recombiner-image qualities, in the order they are run")
    p.add_argument("--effort", type=int, default=recombiner.PRESETS["fast"])
    p.add_argument("--low-bpp", type=float, default=0.3)
    p.add_argument("--rows", type=Path, default=HERE / "recombiner_kodak.jsonl")
    p.add_argument("--out", type=Path, default=HERE / "recombiner_kodak.json")
    p.add_argument("--summary", action="store_true", help="only summarize the rows there are")
    p.add_argument(
        "--update-cards", action="store_true", help="write the mean R-D into the weights' model cards"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = read_rows(args.rows)
    if not args.summary:
        done = {(r["codec"], r["setting"], r["file"]) for r in rows}
        names = args.files.split(",")
        jobs = [("webp", q, n) for n in names for q in WEBP_QUALITIES]
        jobs += [("recombiner-image", int(q), n) for n in names for q in args.qualities.split(",")]
        for codec, setting, name in jobs:
            if (codec, setting, name) in done:
                continue
            x = read_image(KODAK / f"{name}.png")[0]
            if codec == "webp":
                row = baseline_row(x, name, "webp", setting)[0]
            else:
                row = measure_recombiner(x, name, setting, args.effort)
            row.update(codec=codec, setting=setting, effort=args.effort if codec != "webp" else None)
            append_row(args.rows, row)
            rows.append(row)
            print(
                json.dumps({k: row[k] for k in ("codec", "setting", "file", "bpp", "psnr", "encode_s")}),
                flush=True,
            )
    summary = summarize(rows, args.low_bpp)
    summary.update(command=command(), machine=machine(), threads_encode=1, effort=args.effort)
    write_json(args.out, summary)
    if args.update_cards:
        update_cards(rows, summary["files"])
    print(
        json.dumps(
            {
                k: summary[k]
                for k in summary
                if k.startswith("bd_") or k.startswith("encode") or k.startswith("decode")
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
