"""Encoder-side adaptation (``--effort``, stochastic Gumbel annealing) on Kodak: R-D and time.

With a codec's weights (``--codec``, default the shipped ``hyperprior``; weights outside the
package through ``NEUROCODEC_WEIGHTS_PATH``, see :mod:`neurocodec.registry`), every quality
codes each image twice, at effort 0 (the plain encoder) and at effort N (N SGA iterations,
:mod:`neurocodec.codecs.adapt`); both files are decoded by the same, unchanged decoder. Per file and per quality: bpp from the real file
size, PSNR and MS-SSIM of the 8-bit output (:func:`neurocodec.evaluation.rd_row`), encode and decode
seconds, and whether the adapted file is the plain one (the refined latents were rejected as not
better). Summary: the mean R-D point of each effort per quality, the BD-rate and BD-PSNR of
effort N against effort 0 over the four qualities (:func:`neurocodec.evaluation.bd_rate`, pchip, over
the PSNR interval both cover), the encode-time ratio and the seconds per iteration.

The JSON is rewritten after each quality, so a cut-off run keeps what it measured;
``--resummarize`` recomputes the summary of an existing JSON from its rows, without coding;
``--merge`` joins runs over disjoint ``--qualities`` (e.g. two processes, one per core) into
``--out`` with one summary; parts run at different commits are joined, and the result lists the
files under ``src/`` that differ between those commits.

    python eval/bench_adapt.py [--codec hyperprior] [--effort 40] [--limit 24] [--qualities 1,2,3,4]
                               [--threads 1] [--data ../shared/data/kodak] [--out eval/bench_adapt.json]
    python eval/bench_adapt.py --resummarize [--out eval/bench_adapt.json]
    python eval/bench_adapt.py --merge part-a.json part-b.json --out eval/bench_adapt.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from common import EVAL, KODAK, ROOT, command, load_average, machine, timed, write_json


def summary(rows: dict, effort: int) -> dict:
    """Mean points per quality and effort, BD-rate/BD-PSNR of effort N vs 0, time ratios."""
    from neurocodec.evaluation import bd_psnr, bd_rate, curve_points, mean_curve, overlap

    curves = {e: mean_curve({q: r[e] for q, r in rows.items()}) for e in ("0", str(effort))}
    out = {"curves": curves}
    anchor, test = (curve_points(curves[e]) for e in ("0", str(effort)))
    if len(anchor) >= 2:
        try:
            out["bd_rate_percent"] = bd_rate(anchor, test)
            out["bd_psnr_db"] = bd_psnr(anchor, test)
            out["psnr_interval_db"] = overlap(anchor, test)
            out["bd_rate_ms_ssim_percent"] = bd_rate(
                *(curve_points(curves[e], "ms-ssim") for e in ("0", str(effort)))
            )
        except ValueError as e:  # e.g. two qualities whose curves do not overlap: no delta
            out["no_bd_rate"] = str(e)
    files = [(a, b) for r in rows.values() for a, b in zip(r["0"], r[str(effort)], strict=True)]
    enc0, encn = sum(a["encode_s"] for a, _ in files), sum(b["encode_s"] for _, b in files)
    dec0, decn = sum(a["decode_s"] for a, _ in files), sum(b["decode_s"] for _, b in files)
    out["encode_time_ratio"] = encn / enc0
    out["decode_time_ratio"] = decn / dec0
    out["seconds_per_iteration"] = (encn - enc0) / (effort * len(files))
    out["files_kept_plain"] = sum(b["same_as_effort_0"] for _, b in files)
    out["files"] = len(files)
    return out


def merge(parts: list[str], out: str) -> int:
    """One result from runs of the same codec, effort and images over disjoint qualities."""
    runs = [json.loads(Path(p).read_text()) for p in parts]
    first = runs[0]
    for run in runs[1:]:
        for key in ("codec", "effort", "data", "threads"):
            if run[key] != first[key]:
                raise SystemExit(f"cannot merge: {key} differs ({first[key]!r} vs {run[key]!r})")
        if set(run["rows"]) & set(first["rows"]):
            raise SystemExit(f"cannot merge: qualities {sorted(set(run['rows']) & set(first['rows']))} twice")
    result = {k: v for k, v in first.items() if k not in ("command", "load_average", "summary", "rows")}
    result["command"] = command()
    result["parts"] = {
        p: {"command": r["command"], "commit": r["commit"], "load_average": r["load_average"]}
        for p, r in zip(parts, runs, strict=True)
    }
    commits = sorted({r["commit"] for r in runs})
    if len(commits) > 1:  # parts run at other commits: say what library code differs between them
        changed = set()
        for other in commits[1:]:
            diff = ["git", "diff", "--name-only", commits[0], other, "--", "src"]
            changed |= set(subprocess.run(diff, capture_output=True, text=True, cwd=ROOT).stdout.split())
        changed = sorted(changed)
        result["commit"] = commits
        result["src_changed_between_parts"] = changed
        print(f"parts from {len(commits)} commits; src changed between them: {changed or 'nothing'}")
    for key in ("lambda", "weights", "rows"):
        result[key] = {q: v for r in runs for q, v in sorted(r[key].items())}
    result["summary"] = summary(result["rows"], result["effort"])
    write_json(out, result)
    print({k: v for k, v in result["summary"].items() if k != "curves"})
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--codec", default="hyperprior", help="a codec that adapts (hyperprior, mlic)")
    parser.add_argument("--effort", type=int, default=40, help="SGA iterations of the adapted encodes")
    parser.add_argument("--limit", type=int, default=24, help="the first LIMIT Kodak images (sorted)")
    parser.add_argument("--qualities", default="1,2,3,4")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=str(KODAK))
    parser.add_argument("--out", default=str(EVAL / "bench_adapt.json"))
    parser.add_argument("--resummarize", action="store_true", help="recompute --out's summary from its rows")
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="join runs over disjoint qualities into --out"
    )
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.out)
    if args.resummarize:
        result = json.loads(Path(args.out).read_text())
        result["summary"] = summary(result["rows"], result["effort"])
        result["summary_command"] = command()
        write_json(args.out, result)
        print({k: v for k, v in result["summary"].items() if k != "curves"})
        return 0
    torch.set_num_threads(args.threads)

    import neurocodec as nc
    from neurocodec.evaluation import rd_row
    from neurocodec.io.image import read_image
    from neurocodec.registry import weight_configs

    paths = sorted(Path(args.data).glob("*.png"))[: args.limit]
    images = [(p, read_image(p)[0]) for p in paths]
    record = machine()
    result = {
        "benchmark": "eval/bench_adapt.py",
        "command": command(),
        "commit": record["git_commit"],
        "codec": args.codec,
        "effort": args.effort,
        "data": f"{Path(args.data).name}: {len(paths)} images ({paths[0].name} .. {paths[-1].name})",
        "threads": args.threads,
        "machine": record,
        "load_average": {"before": record["load_average"]},
        "metrics": "bpp = 8 * file bytes / pixels; PSNR and MS-SSIM of the decoded 8-bit image; means over "
        "files (PSNR averaged in dB); encode/decode seconds of Codec.encode/decode (wall clock)",
    }
    rows: dict[str, dict[str, list[dict]]] = {}
    for q in [int(q) for q in args.qualities.split(",")]:
        codec = nc.load(args.codec, quality=q)
        result.setdefault("lambda", {})[str(q)] = codec.lmbda
        card = next(c for c in weight_configs() if (c.codec, c.quality) == (args.codec, q))
        result.setdefault("weights", {})[str(q)] = {"file": str(card.path), "sha256": card.sha256}
        rows[str(q)] = {"0": [], str(args.effort): []}
        for path, x in images:
            plain = None
            for effort in (0, args.effort):
                data, enc = timed(codec.encode, x, effort=effort)
                x_hat, dec = timed(codec.decode, data)
                row = rd_row(path, x, data, x_hat, enc, dec)
                if effort:
                    row["same_as_effort_0"] = data == plain
                plain = data
                row["rd_loss"] = codec.lmbda * 255**2 * 10 ** (-row["psnr"] / 10) + row["bpp"]
                rows[str(q)][str(effort)].append(row)
            a, b = (rows[str(q)][e][-1] for e in ("0", str(args.effort)))
            print(
                f"q{q} {path.name}: {a['bpp']:.4f} -> {b['bpp']:.4f} bpp, {a['psnr']:.2f} -> {b['psnr']:.2f} dB, "
                f"loss {100 * (b['rd_loss'] / a['rd_loss'] - 1):+.2f} %, encode {a['encode_s']:.2f} -> "
                f"{b['encode_s']:.1f} s",
                flush=True,
            )
        result["load_average"]["after"] = load_average()
        result["rows"] = rows
        result["summary"] = summary(rows, args.effort)
        write_json(args.out, result)
    s = result["summary"]
    for e, curve in s["curves"].items():
        points = ", ".join(f"q{p['setting']} {p['bpp']:.4f} bpp {p['psnr']:.2f} dB" for p in curve)
        print(f"effort {e}: {points}")
    if "bd_rate_percent" in s:
        print(
            f"BD-rate effort {args.effort} vs 0: {s['bd_rate_percent']:+.2f} % (BD-PSNR {s['bd_psnr_db']:+.3f} dB)"
        )
    print(
        f"encode time x{s['encode_time_ratio']:.1f}, decode time x{s['decode_time_ratio']:.2f}, "
        f"{s['seconds_per_iteration']:.3f} s per iteration"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
