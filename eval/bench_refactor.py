"""Is the refactored tree as fast as 0.1.0? `neurocodec bench` of both trees, alternated, in one run.

    python eval/bench_refactor.py --base /path/to/checkout-of-65912c2 [--rounds 2] [--reps 3]

Runs ``neurocodec bench hyperprior mlic walloc-image --data ../shared/data/kodak --limit 4
--threads 1`` in a subprocess for the base checkout (its ``src/`` on PYTHONPATH, its native
coder built or copied beside its sources) and for this checkout, alternating base/new over
``--rounds`` rounds so that a drift of the machine's load falls on both, and writes
``eval/bench_refactor.json``: per codec and quality, the median over rounds of each tree's
mean encode and decode time, and their ratio new/base (issue 25 asks for within 3 %).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import KODAK, ROOT, command, git_commit, machine, write_json

CODECS = ("hyperprior", "mlic", "walloc-image")
SHIM = "import sys; sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != 'ScikitBuildRedirectingFinder']"


def bench(tree: Path, codecs: list[str], data: Path, reps: int, out: Path) -> dict:
    """One `neurocodec bench` of ``tree``'s sources (this checkout's: the installed package); its
    summary rows by (codec, quality)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "import sys; from neurocodec.cli import main; sys.exit(main(sys.argv[1:]))"
    if tree != ROOT:  # the base's sources first, past the editable install's redirect to ROOT
        env["PYTHONPATH"] = str(tree / "src")
        code = f"{SHIM}; {code}"
    cmd = [
        sys.executable,
        "-c",
        code,
        "bench",
        *codecs,
        "--data",
        str(data),
        "--limit",
        "4",
        "--threads",
        "1",
        "--reps",
        str(reps),
        "--json",
        str(out),
        "-f",
        "--quiet",
    ]
    subprocess.run(cmd, env=env, check=True, cwd=tree)
    report = json.loads(out.read_text(encoding="utf-8"))
    return {f"{row['codec']} q{row['quality']}": row for row in report["summary"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=KODAK)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=ROOT / "eval" / "bench_refactor.json")
    args = parser.parse_args()
    trees = {"base": args.base.resolve(), "new": ROOT}
    runs: dict[str, list[dict]] = {"base": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in ("base", "new") if r % 2 == 0 else ("new", "base"):
                runs[name].append(
                    bench(
                        trees[name],
                        args.codecs.split(","),
                        args.data,
                        args.reps,
                        Path(tmp) / f"{name}{r}.json",
                    )
                )
    base_commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=trees["base"], capture_output=True, text=True, check=True
    ).stdout.strip()
    rows = {}
    for key in runs["base"][0]:
        row = {}
        for what in ("encode_ms", "decode_ms"):
            base = statistics.median(run[key][what] for run in runs["base"])
            new = statistics.median(run[key][what] for run in runs["new"])
            row[what] = {"base": base, "new": new, "ratio": new / base}
        row["same_size"] = all(run[key]["bytes"] == runs["base"][0][key]["bytes"] for run in runs["new"])
        rows[key] = row
        print(f"{key:18s} encode {row['encode_ms']['ratio']:.3f}x  decode {row['decode_ms']['ratio']:.3f}x")
    ratios = [row[w]["ratio"] for row in rows.values() for w in ("encode_ms", "decode_ms")]
    result = {
        "command": command(),
        "machine": machine(),
        "base_commit": base_commit,
        "new_commit": git_commit(),
        "rounds": args.rounds,
        "reps": args.reps,
        "threads": 1,
        "rows": rows,
        "geometric_mean_ratio": statistics.geometric_mean(ratios),
        "worst_ratio": max(ratios),
    }
    write_json(args.json, result)
    print(f"geometric mean new/base {result['geometric_mean_ratio']:.3f}, worst {result['worst_ratio']:.3f}")


if __name__ == "__main__":
    main()
