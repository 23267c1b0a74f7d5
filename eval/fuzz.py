"""Coverage-guided fuzzing of the decoders (tests/fuzz_targets.py) with atheris (libFuzzer).

Each target runs in a child process (libFuzzer exits its process when done) with the neurocodec
Python modules instrumented for coverage; its corpus starts from the target's seeds (real files
of every codec, coder streams) and grows in ``--work``. The report gives, per target, the
executions, time, coverage (libFuzzer's ``cov`` and ``ft``) at start and end with its growth
over time, peak RSS and every crash, hang or out-of-memory found; a found input is kept in
``--work/<target>/`` and belongs in ``tests/fuzz_crashers/<target>/`` as a regression test.

With ``--native build/fuzz`` the C++ coder is the one tools/build_fuzz_coder.sh builds with
gcc's edge-coverage callbacks (-fsanitize-coverage=trace-pc), whose hashed edge counters
tools/fuzz_cov_bridge.c hands to libFuzzer: its branches guide the fuzzer too. Without it only
the Python code is coverage-guided.

    pip install atheris==3.0.0 && tools/build_fuzz_coder.sh
    python eval/fuzz.py [--targets container,coder,...] [--native build/fuzz] [--runs 1000000] [--seconds 3600]
        [--timeout 10] [--rss-mb 4096] [--work /tmp/neurocodec-fuzz] [--out eval/fuzz.json]
    python eval/fuzz.py --replay --targets coder,reference --work /tmp/neurocodec-fuzz   # the grown corpora, once
    python eval/fuzz.py --replay --rounds 100 --targets reference ...   # does the target itself grow?

``--replay`` needs no atheris: it is how tools/sanitize_coder.sh runs a grown corpus under
AddressSanitizer (atheris's own coverage does not work under gcc's ASan runtime, which takes
over the coverage callbacks).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
STAT = re.compile(
    r"^#(\d+)\s+(\w+)\s"
)  # libFuzzer's status lines: "#execs EVENT cov: ... ft: ... corp: n/size ..."
FIELD = re.compile(r"(cov|ft|corp|exec/s|rss): (\d+)")
FINDINGS = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")


def child(target: str, native: str | None, libfuzzer_args: list[str]) -> None:
    """Runs libFuzzer on ``target`` in this process (never returns); ``native``: the folder of a
    coverage-instrumented C++ coder (tools/build_fuzz_coder.sh), used instead of the package's."""
    import atheris

    sys.path.insert(0, str(TESTS))
    bridge = None
    with atheris.instrument_imports(include=["neurocodec", "fuzz_targets"]):
        import neurocodec.entropy

        if native:  # before anything imports the coder
            bridge = ctypes.CDLL(
                str(Path(native) / "libfuzz_cov_bridge.so"), mode=os.RTLD_NOW | os.RTLD_GLOBAL
            )
            neurocodec.entropy.__path__.insert(0, str(Path(native).resolve()))
        import fuzz_targets
        import neurocodec.entropy.coder
        import neurocodec.entropy.reference

        if target in (*fuzz_targets.CODECS, "c3", "nirvana", "recombiner-image", "s2lic", "vqgan"):
            fuzz_targets._codec(target)  # loads (and instruments) the codec's modules
    import torch

    from neurocodec.entropy import _rans

    if native and not _rans.__file__.startswith(str(Path(native).resolve())):
        raise SystemExit(f"the coder in use is {_rans.__file__}, not the instrumented one in {native}")
    torch.set_num_threads(1)
    target_fn = fuzz_targets.TARGETS[target]
    attached = bridge is None

    def test_one(data: bytes) -> None:
        nonlocal attached
        if not attached:  # libFuzzer is loaded now: hand it the C++ coder's edge counters
            core = next(Path(atheris.__file__).parent.glob("core_with_libfuzzer*.so"))
            if bridge.nc_cov_bridge_attach(str(core).encode()):
                raise SystemExit("could not hand the C++ coder's coverage to libFuzzer")
            attached = True
        target_fn(data)

    atheris.Setup([sys.argv[0], *libfuzzer_args], test_one)
    atheris.Fuzz()


def thinned(points: list, count: int) -> list:
    """``count`` points spread evenly over ``points``, the first and the last included."""
    if len(points) <= count:
        return points
    return [points[i] for i in sorted({round(k * (len(points) - 1) / (count - 1)) for k in range(count)})]


def run_target(target: str, args: argparse.Namespace) -> dict:
    """Fuzz ``target`` in a child process; its statistics and findings."""
    sys.path.insert(0, str(TESTS))
    import fuzz_targets

    work = Path(args.work) / target
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(fuzz_targets.seeds(target)):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
    before = {p.name for p in work.iterdir()}
    flags = [
        str(corpus),
        f"-runs={args.runs}",
        f"-max_total_time={args.seconds}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_mb}",
        f"-artifact_prefix={work}/",
        "-print_final_stats=1",
        "-max_len=65536",
    ]
    native = ["--native", args.native] if args.native else []
    cmd = [sys.executable, __file__, "--child", target, *native, "--", *flags]
    t0 = time.perf_counter()
    growth, first, last, stats, tail = [], None, None, {}, []
    with subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, errors="replace"
    ) as p:
        for line in p.stderr:
            tail = [*tail[-40:], line.rstrip()]
            m = STAT.match(line)
            if m:
                fields = {k: int(v) for k, v in FIELD.findall(line)}
                point = {
                    "seconds": round(time.perf_counter() - t0, 1),
                    "execs": int(m[1]),
                    "event": m[2],
                    "cov": fields.get("cov", 0),
                    "ft": fields.get("ft", 0),
                    "corpus": fields.get("corp", 0),
                    "exec_per_s": fields.get("exec/s", 0),
                    "rss_mb": fields.get("rss", 0),
                }
                first = first or point
                last = point
                if (
                    point["event"] in ("INITED", "pulse", "DONE")
                    or not growth
                    or point["ft"] > growth[-1]["ft"]
                ):
                    growth.append(point)
            elif line.startswith("stat::"):
                key, _, value = line[6:].partition(":")
                stats[key.strip()] = int(value)
    seconds = time.perf_counter() - t0
    findings = sorted(p.name for p in work.iterdir() if p.name not in before and p.name.startswith(FINDINGS))
    return {
        "target": target,
        "exit_code": p.returncode,
        "seconds": round(seconds, 1),
        "executions": stats.get("number_of_executed_units", last["execs"] if last else 0),
        "exec_per_s": stats.get("average_exec_per_sec"),
        "peak_rss_mb": stats.get("peak_rss_mb"),
        "cov_start": first and {k: first[k] for k in ("cov", "ft", "corpus")},
        "cov_end": last and {k: last[k] for k in ("cov", "ft", "corpus")},
        "findings": findings,
        "growth_columns": ["seconds", "executions", "cov", "ft", "corpus"],
        "growth": [[g["seconds"], g["execs"], g["cov"], g["ft"], g["corpus"]] for g in thinned(growth, 12)],
        **({"log_tail": tail} if p.returncode or findings else {}),
    }


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def replay(target: str, work: Path, rounds: int = 1) -> dict:
    """Every input of ``target``'s corpus in ``work`` (and its crashers) through the target
    ``rounds`` times, without atheris: e.g. a corpus grown by a coverage-guided run, replayed under
    a sanitizer; the resident memory after the first round and after the last says whether the
    target itself grows."""
    import fuzz_targets

    files = sorted((work / target / "corpus").glob("*")) + sorted(
        (TESTS / "fuzz_crashers" / target).glob("*")
    )
    inputs = [(path.name, path.read_bytes()) for path in files]
    t0 = time.perf_counter()
    failures, rss = [], []
    for _ in range(rounds):
        for name, data in inputs:
            try:
                fuzz_targets.TARGETS[target](data)
            except Exception as e:  # a finding
                failures.append(f"{name}: {type(e).__name__}: {e}")
        rss.append(_rss_mb())
    return {
        "target": target,
        "replayed": len(files),
        "rounds": rounds,
        "seconds": round(time.perf_counter() - t0, 1),
        "rss_mb_first_last": [round(rss[0]), round(rss[-1])],
        "failures": failures,
    }


def main() -> int:
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        native = sys.argv[sys.argv.index("--native") + 1] if "--native" in sys.argv else None
        child(sys.argv[i + 1], native, sys.argv[sys.argv.index("--") + 1 :])
    sys.path.insert(0, str(TESTS))
    import fuzz_targets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--targets", default=",".join(fuzz_targets.TARGETS), help="comma-separated (default: all)"
    )
    ap.add_argument("--runs", type=int, default=1_000_000, help="executions per target")
    ap.add_argument("--seconds", type=int, default=3600, help="time limit per target")
    ap.add_argument("--timeout", type=int, default=10, help="seconds one input may take (a hang past it)")
    ap.add_argument("--rss-mb", type=int, default=4096, help="memory one target may use")
    ap.add_argument(
        "--native", help="folder of a coverage-instrumented C++ coder (tools/build_fuzz_coder.sh)"
    )
    ap.add_argument("--work", default="/tmp/neurocodec-fuzz", help="corpora and findings")
    ap.add_argument("--out", default=str(ROOT / "eval" / "fuzz.json"))
    ap.add_argument("--replay", action="store_true", help="only run each target over its corpus in --work")
    ap.add_argument("--rounds", type=int, default=1, help="with --replay: passes over the corpus")
    args = ap.parse_args()
    report = {"benchmark": "eval/fuzz.py", "command": "python " + " ".join(sys.argv), "targets": []}
    if args.replay:
        results = [replay(target, Path(args.work), args.rounds) for target in args.targets.split(",")]
        report["targets"] = results
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        for r in results:
            print(
                r["target"],
                f"{r['replayed']} inputs x {r['rounds']}, {len(r['failures'])} failures, "
                f"RSS {r['rss_mb_first_last'][0]} -> {r['rss_mb_first_last'][1]} MB",
                *r["failures"][:5],
                sep="\n  ",
            )
        return 1 if any(r["failures"] for r in results) else 0
    bad = 0
    for target in args.targets.split(","):
        result = run_target(target, args)
        bad += bool(result["findings"]) or result["exit_code"] != 0
        report["targets"].append(result)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        summary = {
            k: result[k] for k in ("executions", "seconds", "cov_start", "cov_end", "findings", "exit_code")
        }
        print(target, json.dumps(summary), flush=True)
    print(f"{bad} targets with findings -> {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
