"""Is a change to c3 faster? CPU seconds per fitting step and per decode, base tree against this one.

    OMP_NUM_THREADS=1 python eval/c3_tree_ab.py --base /path/to/base/checkout --base-label COMMIT
        [--rounds 3] [--iterations 30] [--out eval/c3_tree_ab.json]

Each measurement runs in a fresh subprocess, base and new alternating (new first on odd rounds) so
that a drift of the machine's load falls on both: timing both trees in one process lets one's
allocator and cache state skew the other's. A subprocess runs ``eval/c3_speed.py``'s
``fitting_speed`` (the real loop, kodim01 whole, one thread, the architecture of quality
``c3.RICH_QUALITY`` up) and ``decoding_speed`` (best of 3 decodes of a file fitted at effort 100)
with the base's sources first on ``sys.path`` (its native coder built or copied beside them), or
this checkout's installed package. The result: per tree, each round's CPU seconds and their
median, and new/base.

    OMP_NUM_THREADS=1 python eval/c3_tree_ab.py --base DIR --base-label COMMIT --files A.ncd B.ncd ...

decodes those files instead (real fits: their latents are as sparse as a user's, unlike a fit at
effort 100) and fits nothing: per tree the CPU seconds of decoding them all (best of 3 each),
and whether both trees decoded every file to the same pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench_refactor import SHIM
from common import ROOT, command, git_commit, machine, write_json

MEASURE = """
import json, sys
sys.path.insert(0, {eval!r})
import c3_speed
from common import KODIM01
from neurocodec.io.image import read_image
x = read_image(KODIM01)[0][None]
fit = c3_speed.fitting_speed(x, {iterations}, 1, c3_speed.ARCHS["rich"])
decode = c3_speed.decoding_speed(x[0], c3_speed.QUALITIES["rich"])
print(json.dumps({{"fit_cpu_s": fit["cpu_s_per_iteration"], "decode_cpu_s": decode["cpu_s"]}}))
"""

MEASURE_FILES = """
import hashlib, json, time
import torch
import neurocodec as nc
torch.set_num_threads(1)
total, digest = 0.0, hashlib.sha256()
for path in {files!r}:
    data = open(path, "rb").read()
    x_hat = nc.decode(data)  # tables built, kernels warm
    digest.update(x_hat.numpy().tobytes())
    def once():
        c0 = time.process_time()
        nc.decode(data)
        return time.process_time() - c0
    total += min(once() for _ in range(3))
print(json.dumps({{"decode_cpu_s": total, "pixels_sha256": digest.hexdigest()}}))
"""


def measure(tree: Path, iterations: int, files: list[str] | None = None) -> dict:
    """One subprocess's CPU seconds a fitting step and a decode with ``tree``'s sources (with
    ``files``: of decoding those files, and a digest of their pixels)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if files:
        code = MEASURE_FILES.format(files=[str(Path(f).resolve()) for f in files])
    else:
        code = MEASURE.format(eval=str(ROOT / "eval"), iterations=iterations)
    if tree != ROOT:  # the base's sources first, past the editable install's redirect to ROOT
        env["PYTHONPATH"] = str(tree / "src")
        code = f"{SHIM}\n{code}"
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, required=True, help="a checkout or snapshot of the base tree")
    p.add_argument("--base-label", required=True, help="what the base is (its commit)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--out", default="eval/c3_tree_ab.json")
    p.add_argument("--files", nargs="+", help="c3 files to decode instead of fitting (see above)")
    args = p.parse_args()
    keys = ("decode_cpu_s",) if args.files else ("fit_cpu_s", "decode_cpu_s")
    trees = {"base": args.base.resolve(), "new": ROOT}
    runs: dict[str, list[dict]] = {"base": [], "new": []}
    for r in range(args.rounds):
        for name in ("base", "new") if r % 2 == 0 else ("new", "base"):
            runs[name].append(measure(trees[name], args.iterations, args.files))
            print(name, runs[name][-1], flush=True)
    medians = {
        name: {what: statistics.median(run[what] for run in rows) for what in keys}
        for name, rows in runs.items()
    }
    write_json(
        args.out,
        {
            "benchmark": "eval/c3_tree_ab.py",
            "command": command(),
            "machine": machine(),
            "base": args.base_label,
            "new": git_commit(),
            "runs": runs,
            "median": medians,
            "files": args.files,
            "same_pixels": (
                len({run["pixels_sha256"] for rows in runs.values() for run in rows}) == 1
                if args.files
                else None
            ),
            "new_over_base": {w: medians["new"][w] / medians["base"][w] for w in keys},
        },
    )
    print(json.dumps(medians), flush=True)


if __name__ == "__main__":
    main()
