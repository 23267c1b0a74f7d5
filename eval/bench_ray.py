"""Dataset encoding on Ray Data against the plain loop: the 24 Kodak images, in the same run.

    python eval/bench_ray.py [--codec mlic] [--quality 3] [--effort 0] [--rounds 2] [--workers 2]

Encodes every image of ``--data`` (default: Kodak) with the default image codec (mlic q3) four
ways, the ways taking turns within each round so that the machine's load falls on each alike:

- ``plain_1thread`` / ``plain_2threads``: the plain single-process loop, as ``neurocodec encode``
  runs it (load the codec, then read, encode and write each file atomically), with torch on 1 and
  on 2 intra-op threads (the honest baseline: a user's loop can use both cores too);
- ``ray``: :func:`neurocodec.dataset.encode_dataset` with ``--workers`` Ray Data workers (one CPU
  and one torch thread each), on a local Ray instance started once before the rounds (its start
  is timed apart, ``ray_init_s``): each timed run starts its worker pool and loads the codec in
  every worker, as a run of the command does;
- ``cli_ray`` and ``cli_plain_2threads``: the whole command in a subprocess
  (``neurocodec encode DATA -o DIR [--workers N]``, python, torch and Ray starting included), what
  a user waits for.

Writes ``eval/bench_ray.json``: per way the wall seconds of each round, the median, images per
second at the median, and the ratios of the plain loops' median to Ray's (issue 33's target:
>= 1.6x with 2 workers); ``steady_images_per_s`` (median over rounds), the rate once started (for
the plain loops after the codec is loaded, for Ray the images but one per worker between its
first result and its last) and their ratios ray/plain (``steady_*``); and whether every way wrote
the same bytes. The machine record has the load average at the start and the end: on a loaded
machine the ratio is not the one a quiet machine gives.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import KODAK, ROOT, command, load_average, machine, write_json

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


def plain(files: list[Path], out: Path, codec: str, quality: int, effort: int, threads: int) -> float:
    """The loop of ``neurocodec encode``: the codec loaded once, each file read, encoded, written.
    Its images per second once the codec is loaded."""
    import torch

    from neurocodec.io import read_codec_input
    from neurocodec.io.atomic import write_atomic
    from neurocodec.registry import load

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        c = load(codec, quality)
        start = time.perf_counter()
        for src in files:
            x, _ = read_codec_input(src, "image", c.channels)
            write_atomic(
                out / src.with_suffix(".ncd").name, c.encode(x, effort=effort) if effort else c.encode(x)
            )
        return len(files) / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)


def cli(data: Path, out: Path, codec: str, quality: int, effort: int, workers: int | None) -> None:
    """The whole command in a subprocess (2 torch threads for the plain loop: torch's default here)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    code = "import sys; from neurocodec.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [
        "encode",
        str(data),
        "-o",
        str(out),
        "-c",
        codec,
        "-q",
        str(quality),
        "--effort",
        str(effort),
        "--quiet",
    ]
    if workers is None:  # the plain command takes files, not a folder
        args = ["encode", *map(str, sorted(data.glob("*.png"))), *args[2:]]
    else:
        args += ["--workers", str(workers)]
    subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=KODAK)
    parser.add_argument("--codec", default="mlic")
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument(
        "--effort", type=int, default=0, help="encoder-side adaptation steps an image (adaptive codecs)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-cli", action="store_true", help="leave out the subprocess runs")
    parser.add_argument("--json", type=Path, default=ROOT / "eval" / "bench_ray.json")
    args = parser.parse_args()

    import ray

    from neurocodec.dataset import encode_dataset

    files = sorted(args.data.glob("*.png"))
    record = {"command": command(), "machine": machine(packages=("ray",))}
    start = time.perf_counter()
    ray.init(
        address="local", _node_ip_address="127.0.0.1", num_cpus=args.workers, include_dashboard=False,
        ignore_reinit_error=True, log_to_driver=False, logging_level=logging.ERROR,
    )  # fmt: skip
    ray_init_s = time.perf_counter() - start

    def ray_way(out: Path) -> float:
        """Its images per second between the first result and the last, the workers started: the
        images but one per worker over that time (each worker's first is done before it)."""
        arrivals: list[float] = []
        summary = encode_dataset(
            files, out, codec=args.codec, quality=args.quality, effort=args.effort, workers=args.workers,
            on_result=lambda row: arrivals.append(time.perf_counter()),
        )  # fmt: skip
        assert summary.encoded == len(files), summary
        return (len(arrivals) - args.workers) / (arrivals[-1] - arrivals[0])

    ways = {
        "plain_1thread": lambda out: plain(files, out, args.codec, args.quality, args.effort, 1),
        "plain_2threads": lambda out: plain(files, out, args.codec, args.quality, args.effort, 2),
        "ray": ray_way,
    }
    if not args.no_cli:
        ways["cli_plain_2threads"] = lambda out: cli(
            args.data, out, args.codec, args.quality, args.effort, None
        )
        ways["cli_ray"] = lambda out: cli(args.data, out, args.codec, args.quality, args.effort, args.workers)
    walls: dict[str, list[float]] = {name: [] for name in ways}
    steady: dict[str, list[float]] = {name: [] for name in ways}
    same_bytes = True
    with tempfile.TemporaryDirectory() as tmp:
        names = list(ways)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # each way first in turn
            outputs = {}
            for name in order:
                out = Path(tmp) / f"{name}-{r}"
                out.mkdir()
                t0 = time.perf_counter()
                rate = ways[name](out)
                walls[name].append(time.perf_counter() - t0)
                if rate is not None:
                    steady[name].append(rate)
                outputs[name] = {p.name: p.read_bytes() for p in sorted(out.glob("*.ncd"))}
                print(f"round {r} {name}: {walls[name][-1]:.1f} s", flush=True)
            reference = outputs["plain_1thread"]
            same_bytes &= len(reference) == len(files) and all(o == reference for o in outputs.values())
            for name in order:
                shutil.rmtree(Path(tmp) / f"{name}-{r}")
    ray.shutdown()

    results = {
        name: {
            "wall_s": [round(w, 3) for w in ws],
            "median_s": round(statistics.median(ws), 3),
            "images_per_s": round(len(files) / statistics.median(ws), 4),
        }
        for name, ws in walls.items()
    }
    for name, rates in steady.items():
        if rates:
            results[name]["steady_images_per_s"] = round(statistics.median(rates), 4)
    ray_median = results["ray"]["median_s"]
    ratios = {
        "plain_1thread_over_ray": round(results["plain_1thread"]["median_s"] / ray_median, 3),
        "plain_2threads_over_ray": round(results["plain_2threads"]["median_s"] / ray_median, 3),
    }
    ratios["steady_plain_2threads_vs_ray"] = round(
        results["ray"]["steady_images_per_s"] / results["plain_2threads"]["steady_images_per_s"], 3
    )
    ratios["steady_plain_1thread_vs_ray"] = round(
        results["ray"]["steady_images_per_s"] / results["plain_1thread"]["steady_images_per_s"], 3
    )
    if "cli_ray" in results:
        ratios["cli_plain_2threads_over_cli_ray"] = round(
            results["cli_plain_2threads"]["median_s"] / results["cli_ray"]["median_s"], 3
        )
    record.update(
        {
            "data": str(args.data.relative_to(ROOT.parent))
            if args.data.is_relative_to(ROOT.parent)
            else str(args.data),
            "images": len(files),
            "codec": args.codec,
            "quality": args.quality,
            "effort": args.effort,
            "workers": args.workers,
            "rounds": args.rounds,
            "ray_init_s": round(ray_init_s, 3),
            "results": results,
            "ratios": ratios,
            "same_bytes": same_bytes,
            "load_average_end": load_average(),
            "description": __doc__.split("\n\n", 2)[2].strip(),
        }
    )
    write_json(args.json, record)
    print(ratios)


if __name__ == "__main__":
    main()
