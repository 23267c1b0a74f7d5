"""S2LIC small against `mlic` tiny at an equal training budget, and S2LIC's two anchor variants.

Issue 30's R-D target: trained from scratch by the harness with the same steps, crop, batch,
lambda, learning rate and seed, s2lic small (N=64, M=96, 4 slices of 24: mlic tiny's width) is at
or below mlic tiny's BD-rate on Kodak. The same budget also decides S2LIC's ACGC variant: whether a
slice's non-anchors see its freshly decoded anchors (``anchor_context=1``, the paper's figure) or
reuse the anchors' contexts (``anchor_context=0``, the released code).

Each ``--model LABEL RUN CARD`` is a training run (``neurocodec train``'s folder: its config and
log) and the model card its ``neurocodec export --out-dir`` wrote. Every model codes the Kodak
images (``--limit`` of them, in name order) into complete files with the real codec: bpp of the
file, PSNR of the 8-bit output, encode and decode seconds (one thread unless ``--threads``). Rows
with the same LABEL are one R-D curve (one point per lambda); with two points or more a curve
gets a BD-rate against ``--anchor``'s (``neurocodec.evaluation.bd``). At a single lambda the R-D
cost ``lambda * 255^2 * MSE + bpp`` on Kodak (the training loss, MSE averaged over the images) is
the comparison: lower is better at that trade-off. ``--measured JSON`` takes the models of an
earlier output of this script as they were measured then (their rows, training facts and the
commit that measured them), so that a second lambda joins a first without retraining it.

    OMP_NUM_THREADS=1 python eval/s2lic_budget.py --model mlic-tiny RUN CARD --model s2lic-small RUN CARD ...
        [--measured eval/s2lic_budget.json] [--anchor mlic-tiny] [--kodak ../shared/data/kodak]
        [--limit 24] [--out eval/s2lic_budget.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from common import EVAL, KODAK, command, load_average, machine, write_json
from s2lic_speed import load_card


def training_facts(run: Path) -> dict:
    """What a run trained with (its config) and how it went (its log): seconds per step, and the
    mean training loss, bpp and PSNR over its last logged fifth."""
    meta = json.loads((run / "checkpoint" / "meta.json").read_text())
    config = meta["config"]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if "split" not in r and "loss" in r]
    tail = train[-max(1, len(train) // 5) :]
    last = train[-1]
    return {
        "run": str(run),
        "arch": config["arch"],
        "budget": {
            k: config[k] for k in ("steps", "crop", "batch_size", "lmbda", "lr", "lr_schedule", "seed")
        },
        "steps_done": meta["step"],
        "train_seconds": last["seconds"],
        "seconds_per_step": last["seconds"] / last["step"],
        "train_tail": {k: sum(r[k] for r in tail) / len(tail) for k in ("loss", "bpp", "psnr")},
    }


def kodak_rows(codec, paths: list[Path]) -> list[dict]:
    from neurocodec.evaluation.rows import evaluate_images

    with torch.inference_mode():
        return evaluate_images(codec, paths)


def latent_bits_by_part(codec, paths: list[Path]) -> dict[str, float]:
    """Bits per latent element of ``y`` at the checkerboard's anchor and non-anchor positions, over
    ``paths``: ``-log2`` of the eval-mode likelihoods (the rounded latent the file codes; its rate
    is the file's within about 1 %, eval/rate_overhead.py), the image padded as the codec pads it.
    Where the non-anchors see their slice's anchors they should cost less than the anchors."""
    from neurocodec.codecs.base import pad_to_multiple
    from neurocodec.entropy.models.schedules import checkerboard_mask
    from neurocodec.io.image import read_image

    m = codec.model
    parity = m.latent_codec.schedule.anchor_parity
    bits = {"anchor": 0.0, "non_anchor": 0.0}
    elements = {"anchor": 0, "non_anchor": 0}
    for path in paths:
        x, _ = read_image(path)
        with torch.inference_mode():
            likelihoods = m(pad_to_multiple(x[None], m.downsampling))["likelihoods"]["y"]
        anchors = checkerboard_mask(*likelihoods.shape[-2:], parity).expand_as(likelihoods)
        for part, where in (("anchor", anchors), ("non_anchor", ~anchors)):
            bits[part] += float(-likelihoods[where].log2().sum())
            elements[part] += int(where.sum())
    return {part: bits[part] / elements[part] for part in bits}


MIN_OVERLAP_DB = 0.5  # a BD-rate averages over the PSNR both curves span; below this it says nothing


def rd_cost(rows: list[dict], lmbda: float) -> float:
    """``lambda * 255^2 * MSE + bpp`` over the images (MSE of the 8-bit output in [0, 1] units)."""
    mse = sum(10 ** (-r["psnr"] / 10) for r in rows) / len(rows)
    bpp = sum(r["bpp"] for r in rows) / len(rows)
    return lmbda * 255**2 * mse + bpp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs=3, action="append", metavar=("LABEL", "RUN", "CARD"), default=[])
    ap.add_argument("--measured", help="an earlier output of this script: its models join this run's")
    ap.add_argument("--anchor", default="mlic-tiny", help="the label BD-rates are measured against")
    ap.add_argument("--kodak", default=str(KODAK))
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(EVAL / "s2lic_budget.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from neurocodec.evaluation.bd import bd_table
    from neurocodec.evaluation.rows import mean_point

    paths = sorted(Path(args.kodak).glob("*.png"))[: args.limit]
    load_before = load_average()
    models = []
    if args.measured:
        earlier = json.loads(Path(args.measured).read_text())
        if earlier["kodak_files"] != len(paths):
            raise SystemExit(
                f"{args.measured} measured {earlier['kodak_files']} Kodak files, not {len(paths)}"
            )
        measured_in = {"command": earlier["command"], "git_commit": earlier["machine"]["git_commit"]}
        models += [{**m, "measured_in": m.get("measured_in", measured_in)} for m in earlier["models"]]
    for label, run, card in args.model:
        facts = training_facts(Path(run))
        codec = load_card(card)
        rows = kodak_rows(codec, paths)
        point = mean_point(rows)
        lmbda = facts["budget"]["lmbda"]
        entry = {
            "label": label,
            "card": card,
            **facts,
            "kodak": {
                "files": len(rows),
                **point,
                "rd_cost": rd_cost(rows, lmbda),
                "encode_s": sum(r["encode_s"] for r in rows) / len(rows),
                "decode_s": sum(r["decode_s"] for r in rows) / len(rows),
                "y_bits_per_element": latent_bits_by_part(codec, paths),
            },
            "rows": [
                {k: r[k] for k in ("file", "bpp", "psnr", "encode_s", "decode_s") if k in r} for r in rows
            ],
        }
        models.append(entry)
        k = entry["kodak"]
        print(
            f"{label:24s} lambda {lmbda}: {k['bpp']:.4f} bpp  {k['psnr']:.3f} dB  R-D cost {k['rd_cost']:.4f}"
            f"  decode {k['decode_s']:.2f} s/image  y bits/element: {k['y_bits_per_element']}"
        )
    budgets = {
        json.dumps({k: v for k, v in m["budget"].items() if k != "lmbda"}, sort_keys=True) for m in models
    }
    curves: dict[str, list[tuple[float, float]]] = {}
    for m in models:
        curves.setdefault(m["label"], []).append((m["kodak"]["bpp"], m["kodak"]["psnr"]))
    tests = [label for label in curves if label != args.anchor]
    bd = bd_table(curves, tests, [args.anchor]) if args.anchor in curves else []
    for entry in bd:
        lo, hi = entry.get("psnr_interval_db") or (0.0, 0.0)
        if entry.get("bd_rate_percent") is not None and hi - lo < MIN_OVERLAP_DB:
            entry["meaningful"] = False
            entry["why"] = (
                f"the curves overlap over {hi - lo:.3f} dB of PSNR (under {MIN_OVERLAP_DB} dB): "
                "compare the R-D costs at each lambda instead"
            )
    result = {
        "benchmark": "eval/s2lic_budget.py",
        "command": command(),
        "kodak_files": len(paths),
        "threads": args.threads,
        "equal_budget": len(budgets) == 1,
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_average()},
        "models": models,
        "curves": curves,
        "bd_rate": bd,
    }
    for entry in bd:
        print(entry)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
