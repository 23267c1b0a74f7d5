"""What the scripts of ``eval/`` share: where the data is, the machine record, timing, JSON.

A script run as ``python eval/NAME.py`` finds this module beside it (``from common import ...``).

- :func:`machine`: the record every JSON carries, so a number can be read against the CPU, the
  versions, the commit and the load it was measured under;
- :func:`interleaved` / :func:`best_of`: time functions, in turn within each repetition when
  there are several, so that load from other processes hits each alike;
- :func:`write_json`: the JSON, written the same way by every script;
- :func:`read_rows` / :func:`append_row`: the JSON-lines rows of a resumable evaluation, one
  appended as soon as it is measured, so a killed run loses at most the row it was measuring;
- :func:`baseline_row`: one image through a Pillow baseline, as a row;
- :func:`fitting_piece`: the small piece of an input that the codecs which fit every file at
  encode time code in the long checks (soak, corrupted files).
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the checkout
EVAL = ROOT / "eval"
DATA = ROOT.parent / "shared" / "data"
KODAK = DATA / "kodak"
KODIM01 = KODAK / "kodim01.png"


def git_commit() -> str:
    """The checkout's HEAD commit ("" outside a git checkout)."""
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        return ""


def load_average() -> list[float] | None:
    """1/5/15-minute load averages: a busy machine makes every timing slower and noisier."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine(device: str = "cpu", packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """The machine a result was measured on: CPU, cores, platform, versions (python, torch, numpy,
    and each of ``packages`` that is installed), torch's threads, the commit, the load average
    now, and the GPU when ``device`` is a CUDA one."""
    import numpy as np
    import torch

    from neurocodec.evaluation import cpu_model

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for dist in packages:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    record: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions,
        "torch_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "load_average": load_average(),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


def command() -> str:
    """How this script was run, for the JSON: ``python eval/NAME.py ARGS`` (the script's path
    relative to the checkout, however it was called)."""
    script = Path(sys.argv[0]).resolve()
    if script.is_relative_to(ROOT):
        script = script.relative_to(ROOT)
    return shlex.join(["python", str(script), *sys.argv[1:]])


@dataclass
class Timing:
    """The times of one timed function: wall clock and this process's CPU time
    (``time.process_time``: all its threads, user + system; on a shared machine it leaves out the
    time other processes hold the cores), one entry per repetition, and its last result."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    out: Any = None

    @property
    def best(self) -> float:
        return min(self.wall)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    def summary(self) -> dict[str, float]:
        """Median and minimum seconds, wall clock and CPU time."""
        return {
            "median_s": self.median,
            "min_s": self.best,
            "cpu_median_s": statistics.median(self.cpu),
            "cpu_min_s": min(self.cpu),
        }


def interleaved(
    fns: dict[Any, Callable[[], Any]],
    reps: int,
    sync: Callable[[], None] | None = None,
    warmup: int = 0,
    gc_off: bool = False,
) -> dict[Any, Timing]:
    """Time each function ``reps`` times, the functions taking turns within every repetition
    after ``warmup`` untimed rounds. ``sync`` (``torch.cuda.synchronize`` on a GPU) runs before
    and after each call, inside the timing; ``gc_off`` keeps the garbage collector out of it."""
    timings = {name: Timing() for name in fns}
    for rep in range(warmup + reps):
        for name, fn in fns.items():
            if gc_off:
                gc.collect()
                gc.disable()
            try:
                if sync:
                    sync()
                w0, c0 = time.perf_counter(), time.process_time()
                out = fn()
                if sync:
                    sync()
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            finally:
                if gc_off:
                    gc.enable()
            if rep >= warmup:
                timing = timings[name]
                timing.wall.append(wall)
                timing.cpu.append(cpu)
                timing.out = out
    return timings


def best_of(
    fn: Callable[[], Any],
    reps: int,
    sync: Callable[[], None] | None = None,
    warmup: int = 0,
    gc_off: bool = False,
) -> tuple[float, Any]:
    """The best wall time of ``reps`` calls of ``fn`` (after ``warmup`` untimed ones), and its last result."""
    timing = interleaved({"fn": fn}, reps, sync, warmup, gc_off)["fn"]
    return timing.best, timing.out


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """The result of one call and its wall time in seconds."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def write_json(path: str | Path, record: Any, indent: int = 1) -> Path:
    """Write ``record`` as indented JSON with a final newline (folders made as needed); print where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=indent) + "\n")
    print(f"wrote {path}")
    return path


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a JSON-lines file (none when it does not exist); a line cut short by a kill
    is skipped, so its row is measured again."""
    path = Path(path)
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def append_row(path: str | Path, row: dict) -> None:
    """Append ``row`` to a JSON-lines file, flushed at once."""
    with Path(path).open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def baseline_row(x, name: str, codec: str, setting: float):
    """``(row, x_hat)``: one image ``x`` through the Pillow baseline ``codec`` at ``setting``, its
    :func:`neurocodec.evaluation.rows.rd_row` (timed encode and decode) and the decoded image."""
    from neurocodec.evaluation import baselines
    from neurocodec.evaluation.rows import rd_row

    t0 = time.perf_counter()
    data = baselines.BASELINES[codec].encode(baselines.to_pil(x), setting)
    t1 = time.perf_counter()
    x_hat = baselines.decode_image(data)
    t2 = time.perf_counter()
    return rd_row(name, x, data, x_hat, t1 - t0, t2 - t1), x_hat


def fitting_piece(
    name: str, x, kw: dict, medium: str, crop: int = 64, frames: int = 2, seconds: float = 0.25
):
    """``(name, piece)``: what a codec that fits each file at encode time (c3, recombiner,
    nirvana: minutes a file) codes of the input ``x`` of ``medium`` in a check that runs every
    codec many times: an image, or a video's first ``frames`` frames, cropped to ``crop`` x
    ``crop``; a clip's first ``seconds`` (``kw["sample_rate"]``). The name says which piece."""
    if medium == "audio":
        cut = int(seconds * kw["sample_rate"])
        return f"{name}[:{cut}]", x[:, :cut].contiguous()
    if medium == "video":
        return f"{name}[:{frames},:{crop},:{crop}]", x[:, :frames, :crop, :crop].contiguous()
    return f"{name}[:{crop},:{crop}]", x[:, :crop, :crop].contiguous()


def override_c3_schedule(overrides: dict) -> None:
    """Every c3 fit of this process with its ``c3_fit.Schedule`` fields replaced by ``overrides``
    (the codec builds its schedule from the effort; a probe of a fitting recipe changes it here)."""
    import dataclasses

    from neurocodec.codecs import c3_fit

    if not overrides:
        return
    schedule = c3_fit.Schedule

    def overridden(iterations: int, **kw) -> c3_fit.Schedule:
        return dataclasses.replace(schedule(iterations, **kw), **overrides)

    c3_fit.Schedule = overridden


def complete_curve(rows: list[dict], files: list[str]) -> list[dict]:
    """The :func:`neurocodec.evaluation.rows.mean_curve` of ``rows`` (one codec's) over the settings
    measured on every one of ``files`` (and only on them)."""
    from neurocodec.evaluation import mean_curve

    grouped: dict[object, list[dict]] = {}
    for r in rows:
        if r["file"] in files:
            grouped.setdefault(r["setting"], []).append(r)
    return mean_curve({s: g for s, g in grouped.items() if sorted(r["file"] for r in g) == files})
