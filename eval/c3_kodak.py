"""R-D of the overfitted ``c3`` codec on Kodak images against Pillow AVIF / WebP / JPEG and ``mlic``.

Resumable: every (codec, setting, file) row is appended to a JSON-lines file as soon as it is
measured, and a restart skips the rows already there, so the run survives being stopped; a c3 fit
checkpoints into ``<rows>.fits/<image>-q<quality>-e<effort>`` every 250 steps and a restart resumes
it there (the row's ``resumed_at`` says from which step; its times are the resumed part's). At the
end (or with ``--summary`` alone) the mean curves and BD-rates (PSNR, PCHIP, :mod:`neurocodec.evaluation`)
are written to a JSON summary.

    OMP_NUM_THREADS=1 nohup python eval/c3_kodak.py > c3_kodak.log 2>&1 &
    python eval/c3_kodak.py --summary

Inputs: kodim01..04, whole (or their centre ``--crop`` x ``--crop`` pixels); c3 at
``--effort`` iterations (the fast preset by default) for each of ``--qualities``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import sys
import time
from pathlib import Path
from unittest import mock

import torch

from common import KODAK, append_row, baseline_row, complete_curve, override_c3_schedule, read_rows
from neurocodec import evaluation as rd
from neurocodec.codecs import c3, c3_fit
from neurocodec.evaluation import baselines
from neurocodec.io.image import read_image

HERE = Path(__file__).resolve().parent
ANCHORS = ("avif", "webp", "jpeg")


def crop(x: torch.Tensor, size: int) -> torch.Tensor:
    if not size:
        return x
    _, h, w = x.shape
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top : top + size, left : left + size].contiguous()


def measure_c3(x: torch.Tensor, name: str, quality: int, effort: int, arch: dict, checkpoint: Path) -> dict:
    """One c3 encode and decode as a row; the fit checkpoints into ``checkpoint`` and resumes from
    it (``resumed_at``: the step it resumed from; the times are then the resumed part's).

    When the refit of the ARM on the final latents changed the ARM, the row's
    ``without_arm_refit`` holds the file the same fit makes without it (bytes, bpp, PSNR), so
    that a preset's runs from before the refit and after it can be compared."""
    codec = c3.C3Codec(quality=quality, **arch)
    codec.checkpoint = checkpoint
    before_refit: list = []
    refit = c3_fit.refit_arm

    def recording_refit(model, steps, **kw):
        before_refit.append(copy.deepcopy(model))
        return refit(model, steps, **kw)

    t0, c0 = time.perf_counter(), time.process_time()
    with mock.patch.object(c3_fit, "refit_arm", recording_refit):
        data = codec.encode(x, effort=effort)
    t1, cpu = time.perf_counter(), time.process_time() - c0
    fit = codec.last_fit
    x_hat = codec.decode(data)
    t2 = time.perf_counter()
    without = None
    if fit["arm_refit_bits"] > 0:
        without = encode_without_arm_refit(codec, x, before_refit[0], effort)
    row = rd.rd_row(name, x, data, x_hat, t1 - t0, t2 - t1)
    predicted = fit["predicted_latent_bits"] / 8
    row.update(
        latent_bytes=fit["latent_bytes"],
        predicted_latent_bytes=predicted,
        rate_gap_percent=100 * (fit["latent_bytes"] / predicted - 1),
        payload_gap_percent=100 * ((fit["latent_bytes"] - fit["latent_framing_bytes"]) / predicted - 1),
        network_bytes=fit["network_bytes"],
        steps=fit["steps"],
        networks=codec.arch,
        encode_cpu_s=cpu,
        resumed_at=fit["resumed_at"],
        arm_refit_bits=fit["arm_refit_bits"],
        without_arm_refit=without,
    )
    return row


def encode_without_arm_refit(codec: c3.C3Codec, x: torch.Tensor, fitted, effort: int) -> dict:
    """The file ``codec`` writes from the fitted model ``fitted`` (latents rounded, before the refit
    of the ARM) with no refit: the same quantization, refinement and coding as its encode."""
    with (
        mock.patch.object(c3_fit, "fit", lambda *a, **k: copy.deepcopy(fitted)),
        mock.patch.object(c3_fit, "refit_arm", lambda *a, **k: 0.0),
    ):
        data = codec.encode(x, effort=effort)
    x_hat = codec.decode(data)
    row = rd.rd_row("", x, data, x_hat, 0.0, 0.0)
    return {k: row[k] for k in ("bytes", "bpp", "psnr")} | {"network_bytes": codec.last_fit["network_bytes"]}


def without_arm_refit(rows: list[dict]) -> list[dict]:
    """The rows with each c3 row's file replaced by the one its fit makes without the ARM refit,
    where the row has it (rows from before the refit had none)."""
    return [r | r["without_arm_refit"] if r.get("without_arm_refit") else r for r in rows]


def measure_mlic(x: torch.Tensor, name: str, quality: int) -> dict:
    import neurocodec as nc

    codec = nc.load("mlic", quality=quality)
    t0 = time.perf_counter()
    data = codec.encode(x)
    t1 = time.perf_counter()
    x_hat = codec.decode(data)
    t2 = time.perf_counter()
    return rd.rd_row(name, x, data, x_hat, t1 - t0, t2 - t1)


def summarize(rows: list[dict]) -> dict:
    by_codec: dict[str, list[dict]] = {}
    for r in rows:
        by_codec.setdefault(r["codec"], []).append(r)
    files = sorted({r["file"] for r in rows if r["codec"] == "c3"})
    curves, points = {}, {}
    for name, rs in by_codec.items():
        curve = complete_curve(rs, files)  # same files only
        curves[name] = curve
        points[name] = rd.curve_points(curve)
    tests = [n for n in ("c3", "mlic") if len(points.get(n, [])) >= 2]
    anchors = [n for n in ANCHORS if len(points.get(n, [])) >= 2]
    table = rd.bd_table(points, tests, anchors)
    gaps = [r["rate_gap_percent"] for r in by_codec.get("c3", [])]
    return {
        "files": files,
        "curves": curves,
        "bd_rate": table,
        "c3_rate_gap_percent": {"mean": sum(gaps) / len(gaps), "max": max(gaps)} if gaps else None,
        "c3_db_over_avif": db_over_anchor(by_codec.get("c3", []), by_codec.get("avif", [])),
    }


def db_over_anchor(tests: list[dict], anchors: list[dict]) -> list[dict]:
    """Each test row's PSNR minus the anchor's on the same file at the same bpp (linear in
    log-bpp between the anchor's neighbouring points; None outside its range)."""
    out = []
    for r in tests:
        points = sorted((a["bpp"], a["psnr"]) for a in anchors if a["file"] == r["file"])
        at = None
        for (b0, p0), (b1, p1) in itertools.pairwise(points):
            if b0 <= r["bpp"] <= b1:
                at = p0 + (p1 - p0) * math.log(r["bpp"] / b0) / math.log(b1 / b0)
                break
        out.append(
            {
                "file": r["file"],
                "setting": r["setting"],
                "bpp": r["bpp"],
                "db": None if at is None else r["psnr"] - at,
            }
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", default="kodim01,kodim02,kodim03,kodim04", help="the images run and summarized")
    p.add_argument("--crop", type=int, default=0, help="centre crop size (0: the full images)")
    p.add_argument("--qualities", default="1,3,5,2", help="c3 qualities, in the order they are run")
    p.add_argument("--effort", type=int, default=c3.PRESETS["fast"])
    p.add_argument("--rows", type=Path, default=HERE / "c3_kodak_full.jsonl")
    p.add_argument("--out", type=Path, default=HERE / "c3_kodak_full.json")
    p.add_argument("--mlic", default="1,2,3,4", help="mlic qualities ('' to skip)")
    p.add_argument("--summary", action="store_true", help="only summarize the rows there are")
    p.add_argument(
        "--arch", default="{}", help="c3 architecture overrides (JSON), e.g. '{\"synthesis_width\": 32}'"
    )
    p.add_argument(
        "--sched", default="{}", help="c3_fit.Schedule overrides (JSON), e.g. '{\"latent_lr\": 16}'"
    )
    p.add_argument(
        "--same-points-as",
        type=Path,
        help="summarize only the c3 (quality, image) points that this other rows file has (e.g. to "
        "compare the fast preset with a medium run that is not finished)",
    )
    p.add_argument(
        "--without-arm-refit",
        action="store_true",
        help="summarize each c3 point by the file its fit makes without the refit of the ARM (where the "
        "row has one), to compare with rows from before the refit",
    )
    p.add_argument(
        "--note",
        default="2-core machine, one thread a fit, two fits at a time (the qualities split in two "
        "processes): encode times are for a machine shared by two fits",
        help="how the rows were measured (into the summary)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    arch, sched = json.loads(args.arch), json.loads(args.sched)
    override_c3_schedule(sched)
    rows = read_rows(args.rows)
    if not args.summary:
        done = {(r["codec"], r["setting"], r["file"]) for r in rows}
        images = {n: crop(read_image(KODAK / f"{n}.png")[0], args.crop) for n in args.files.split(",")}
        jobs = [(c, s, n) for c in ANCHORS for s in baselines.BASELINES[c].sweep for n in images]
        jobs += [("mlic", q, n) for q in map(int, filter(None, args.mlic.split(","))) for n in images]
        jobs += [("c3", q, n) for q in map(int, args.qualities.split(",")) for n in images]
        for codec, setting, name in jobs:
            if (codec, setting, name) in done:
                continue
            x = images[name]
            try:
                if codec == "c3":
                    fits = args.rows.with_suffix(".fits")  # checkpoints of unfinished fits
                    row = measure_c3(
                        x, name, setting, args.effort, arch, fits / f"{name}-q{setting}-e{args.effort}"
                    )
                elif codec == "mlic":
                    row = measure_mlic(x, name, setting)
                else:
                    row = baseline_row(x, name, codec, setting)[0]
            except Exception as e:
                print(f"{codec} {setting} {name}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            row.update(
                codec=codec, setting=setting, crop=args.crop, effort=args.effort if codec == "c3" else None
            )
            if codec == "c3" and arch:
                row.update(arch=arch)
            if codec == "c3" and sched:
                row.update(sched=sched)
            append_row(args.rows, row)
            rows.append(row)
            print(
                json.dumps({k: row[k] for k in ("codec", "setting", "file", "bpp", "psnr", "encode_s")}),
                flush=True,
            )
    chosen = args.files.split(",")
    if args.same_points_as:
        points = {(r["setting"], r["file"]) for r in read_rows(args.same_points_as) if r["codec"] == "c3"}
        rows = [r for r in rows if r["codec"] != "c3" or (r["setting"], r["file"]) in points]
    if args.without_arm_refit:
        rows = without_arm_refit(rows)
    summary = summarize([r for r in rows if r["file"] in chosen])
    summary.update(
        crop=args.crop,
        effort=args.effort,
        arch=arch,
        sched=sched,
        threads=1,
        without_arm_refit=args.without_arm_refit,
        cpu=rd.cpu_model(),
        note=args.note,
    )
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    tests = list(dict.fromkeys(e["test"] for e in summary["bd_rate"]))
    anchors = list(dict.fromkeys(e["anchor"] for e in summary["bd_rate"]))
    for line in rd.bd_table_lines(summary["bd_rate"], tests, anchors):
        print(line)


if __name__ == "__main__":
    main()
