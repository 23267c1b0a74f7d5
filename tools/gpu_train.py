"""Train several runs at once on a lent GPU and bring them back through the device's file limits.

A lent GPU session has minutes, not hours: every call should train, then hand back resumable
runs. This script is that call. It

1. starts one ``neurocodec train`` per run of the plan, all at once on the one GPU (data
   loaded onto the GPU once per run, bf16 autocast, ``--time-limit`` so each stops with a
   checkpoint before the call's limit);
2. packs each run's checkpoint (``pack_checkpoint``: Adam's moments in bf16), plus its log,
   into one tar, and splits the tar into parts of at most 15 MiB under ``$OUT``, because a
   call returns at most 8 files of 16 MiB and 64 MiB in all (../.library/device/README.md,
   "Limits"). If the parts would be more than 4, it drops the
   moments of the largest runs until they fit (such a run resumes with fresh moments), and
   fails, saying so, if even the weights do not fit.

Bring a call's parts back into the checkout with ``--unpack DIR`` (the folder the files came
back to); the next call carries ``runs`` and resumes every run where it stopped.

The plan is a JSON list, one object per run: ``{"out": "runs/hp-q3", "args": ["hyperprior",
"--data", "data_gpu", "--lmbda", "0.0067", ...]}`` (``--out``, ``--device`` and
``--time-limit`` are added). ``tools/gpu_plan_*.json`` are the plans for the next sessions
(docs/training.md says in which order).

    python tools/gpu_train.py tools/gpu_plan_mlic.json --seconds 500     # on the device, OUT=$OUT
    python tools/gpu_train.py --unpack /path/to/returned/files       # here, afterwards
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from neurocodec.train.checkpoint import has_checkpoint, load_checkpoint, pack_checkpoint, save_checkpoint

PART_BYTES = 15 * 2**20
MAX_PARTS = 4  # 4 x 15 MiB: a call returns 64 MiB in all
PART_NAME = "runs.tar.part"


def train_all(plan: list[dict], seconds: int, device: str) -> None:
    """Every run of the plan at once; each stops (with a checkpoint) after ``seconds``."""
    procs = []
    for run in plan:
        Path(run["out"]).mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "neurocodec", "train", *run["args"], "--out", run["out"],
               "--device", device, "--time-limit", str(seconds), "--quiet"]  # fmt: skip
        log = open(Path(run["out"]) / "stdout.txt", "a")
        procs.append((run["out"], subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    for out, proc, log in procs:
        code = proc.wait()
        log.close()
        print(f"{out}: exit {code}", flush=True)


def _tar(runs: list[str], staging: Path, without_moments: set[str]) -> bytes:
    """One tar of each run's packed checkpoint and log (moments dropped for ``without_moments``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for out in runs:
            packed = staging / out / "checkpoint"
            if out in without_moments:
                tensors, meta = load_checkpoint(Path(out) / "checkpoint")
                keep = {k: v for k, v in tensors.items() if not k.startswith(("opt.", "aux_opt."))}
                save_checkpoint(packed, keep, meta)
            else:
                pack_checkpoint(Path(out) / "checkpoint", packed)
            tar.add(packed, arcname=f"{out}/checkpoint")
            log = Path(out) / "log.jsonl"
            if log.exists():
                tar.add(log, arcname=f"{out}/log.jsonl")
    return buffer.getvalue()


def pack_runs(runs: list[str], out_dir: Path) -> list[Path]:
    """The runs' checkpoints as at most ``MAX_PARTS`` tar parts in ``out_dir``."""
    runs = [r for r in runs if has_checkpoint(Path(r) / "checkpoint")]
    by_size = sorted(runs, key=lambda r: -sum(f.stat().st_size for f in (Path(r) / "checkpoint").iterdir()))
    without: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        while True:
            data = _tar(runs, Path(tmp), without)
            parts = -(-len(data) // PART_BYTES)
            if parts <= MAX_PARTS:
                break
            remaining = [r for r in by_size if r not in without]
            if not remaining:
                raise SystemExit(
                    f"{len(data)} bytes of weights alone need {parts} parts (> {MAX_PARTS}): fewer runs"
                )
            without.add(remaining[0])
            print(f"{remaining[0]}: moments dropped to fit {MAX_PARTS} files", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(0, len(data), PART_BYTES):
        path = out_dir / f"{PART_NAME}{i // PART_BYTES:02d}"
        path.write_bytes(data[i : i + PART_BYTES])
        written.append(path)
    return written


def unpack(folder: Path, root: Path = Path(".")) -> list[str]:
    """Extract the returned parts (found anywhere under ``folder``) into ``root``; the run folders."""
    parts = sorted(folder.rglob(f"{PART_NAME}*"))
    if not parts:
        raise SystemExit(f"no {PART_NAME}NN files under {folder}")
    data = b"".join(p.read_bytes() for p in parts)
    runs = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar.getmembers():
            runs.add(member.name.split("/checkpoint")[0].split("/log.jsonl")[0])
        for out in runs:  # a returned checkpoint replaces the local one
            checkpoint = root / out / "checkpoint"
            if checkpoint.exists():
                for f in checkpoint.iterdir():
                    f.unlink()
        tar.extractall(root, filter="data")
    return sorted(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", nargs="?", help="the plan (JSON)")
    parser.add_argument("--seconds", type=int, default=480, help="training time of each run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default=os.environ.get("OUT", "out"), help="where the parts go ($OUT)")
    parser.add_argument("--unpack", metavar="DIR", help="extract the parts returned in DIR into the checkout")
    args = parser.parse_args()
    if args.unpack:
        for out in unpack(Path(args.unpack)):
            print(f"restored {out}")
        return
    if not args.plan:
        parser.error("give a plan, or --unpack DIR")
    plan = json.loads(Path(args.plan).read_text())
    train_all(plan, args.seconds, args.device)
    for path in pack_runs([run["out"] for run in plan], Path(args.out)):
        print(f"{path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
