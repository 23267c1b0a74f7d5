"""``neurocodec bench``: encode and decode times of learned codecs
(:mod:`neurocodec.evaluation.bench`), as a table and optionally a JSON record."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from neurocodec import __version__
from neurocodec.cli.common import PROG, Console, UsageError, checked_qualities, effort
from neurocodec.errors import ConfigError, NeurocodecError, OutputError, OutputExistsError
from neurocodec.io.atomic import write_atomic
from neurocodec.registry import list_codecs, load

DESCRIPTION = (
    "per file: the input read once, --warmup untimed encode+decode, then --reps timed encodes and decodes "
    "in turn (time.perf_counter; torch.cuda.synchronize before and after each on cuda); encode_ms and "
    "decode_ms: the median of the reps, _min the fastest, _all each one; bytes: the complete file the "
    "encoder wrote; bpp = 8 * bytes / pixels, kbps = 8 * bytes / duration / 1000; mp_s: megapixels per "
    "second and x_realtime: seconds of audio per second, at the median; same_bytes: every encode wrote the "
    "same file; deterministic: every decode gave the same tensor (torch.equal; null with one rep). "
    "summary, per codec and quality: mean bytes and rate, the mean over files of the medians, and the "
    "throughput of all files (their pixels or seconds over the sum of their medians)"
)


def add_parser(
    commands: argparse._SubParsersAction, verbose: argparse.ArgumentParser, coding: argparse.ArgumentParser
) -> None:
    bench = commands.add_parser(
        "bench",
        parents=[verbose],
        help="time the encoders and decoders of learned codecs",
        description="Time each CODEC at each of its qualities on the files of --data (images or audio, as "
        "the codec codes): each file is read once, coded --warmup times untimed, then --reps times, an "
        "encode and a decode in turn. Prints, per codec and quality, the mean file size and rate (bpp or "
        "kbit/s, from the real files), the mean of each file's median encode and decode time, and the "
        "throughput (megapixels, or seconds of audio, per second); checks that the repeated decodes of a "
        "file are identical (a warning and exit status 1 if not). --json writes every file's times too.",
    )
    bench.add_argument(
        "codecs", nargs="+", metavar="CODEC", help="installed learned codecs (see `neurocodec list`)"
    )
    bench.add_argument("--data", required=True, help="a folder (searched recursively) or one file")
    bench.add_argument("--qualities", metavar="Q,Q,...", help="qualities to time (default: all shipped)")
    bench.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    bench.add_argument(
        "--threads", type=int, metavar="N", help="torch's intra-op threads (default: torch's own choice)"
    )
    bench.add_argument(
        "--reps", type=int, default=5, metavar="R", help="timed repetitions per file (default 5)"
    )
    bench.add_argument(
        "--warmup", type=int, default=1, metavar="W", help="untimed encode+decode first, per file (default 1)"
    )
    bench.add_argument("--limit", type=int, metavar="N", help="only the first N files")
    bench.add_argument(
        "--effort",
        type=effort,
        default=0,
        metavar="N",
        help="encode with N iterations of adaptation, or a preset name (as encode --effort)",
    )
    bench.add_argument(
        "--json", metavar="OUT.json", help="also write the command, machine, per-file times and summary"
    )
    bench.add_argument("-f", "--force", action="store_true", help="replace an existing --json file")
    bench.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    bench.set_defaults(run=run)


def _codecs(names: Sequence[str]) -> list:
    """The installed learned codecs (``CodecInfo``) named, once each; a baseline or an unknown name
    is a usage error."""
    from neurocodec.evaluation.plan import known_baselines
    from neurocodec.registry import codec_info

    infos = []
    for name in dict.fromkeys(names):
        if name in known_baselines():
            learned = ", ".join(info.name for info in list_codecs()) or "none installed"
            raise UsageError(
                f"{name} is a baseline: bench times the learned codecs ({learned}); "
                f"`{PROG} eval` records the baselines' times"
            )
        info = codec_info(name)  # UnknownCodecError: unknown codec 'x' (installed: ...)
        infos.append(info)
    return infos


def _table(summaries: list[dict]) -> list[str]:
    rows = [
        ("codec", "q", "files", "bytes", "rate", "enc ms", "dec ms", "total ms", "encode", "decode", "det")
    ]
    for s in summaries:
        audio = s["media"] == "audio"
        rate = f"{s['kbps']:.1f} kbit/s" if audio else f"{s['bpp']:.4f} bpp"
        speed = (lambda v: f"{v:.1f}x rt") if audio else (lambda v: f"{v:.3f} MP/s")
        unit = "x_realtime" if audio else "mp_s"
        det = {True: "yes", False: "NO", None: "-"}[s["deterministic"] and s["same_bytes"]]
        rows.append(
            (
                s["codec"], str(s["quality"]), str(s["files"]), f"{s['bytes']:.0f}", rate,
                f"{s['encode_ms']:.1f}", f"{s['decode_ms']:.1f}", f"{s['total_ms']:.1f}",
                speed(s[f"encode_{unit}"]), speed(s[f"decode_{unit}"]), det,
            )
        )  # fmt: skip
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    justify = [str.ljust] * 2 + [str.rjust] * (len(widths) - 2)  # names left, numbers right
    return [
        "  ".join(j(cell, w) for j, cell, w in zip(justify, row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _options(args: argparse.Namespace) -> list[int] | None:
    """The qualities asked for, once every option is checked (and --threads applied)."""
    if args.reps < 1:
        raise UsageError("--reps must be at least 1")
    if args.warmup < 0:
        raise UsageError("--warmup must be 0 or more")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be at least 1")
    wanted = checked_qualities(args)
    import torch

    try:
        device = torch.device(args.device)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device: unknown device {args.device!r} (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA GPU on this machine (use cpu)")
    return wanted


def _plan(args: argparse.Namespace, infos: list, wanted: list[int] | None) -> tuple[list[tuple], list[str]]:
    """``(name, media, files, {quality: codec})`` per codec, every codec loaded and checked, and the notes."""
    from neurocodec.io import media_files

    notes: list[str] = []
    plan = []
    for info in infos:
        chosen = info.qualities if wanted is None else tuple(q for q in wanted if q in info.qualities)
        missing = [q for q in wanted or () if q not in info.qualities]
        if missing:
            notes.append(
                f"{info.name} has no quality {', '.join(map(str, missing))} "
                f"(shipped: {', '.join(map(str, info.qualities))})"
            )
        if not chosen:
            continue
        try:
            paths = media_files(args.data, info.media)[: args.limit]
        except FileNotFoundError as e:
            raise UsageError(f"--data: {e} for {info.name}") from None
        codecs = {q: load(info.name, q, args.device) for q in chosen}
        try:
            for codec in codecs.values():
                codec.check_effort(args.effort)
        except ConfigError as e:
            raise UsageError(f"--effort: {e}") from None
        plan.append((info.name, info.media, paths, codecs))
    if not plan:
        raise UsageError("nothing to time: " + "; ".join(notes))
    return plan, notes


def _time(plan: list[tuple], args: argparse.Namespace, console: Console) -> list[dict]:
    """Every file's row, each file read once and timed with each quality."""
    from neurocodec.evaluation.bench import bench_input
    from neurocodec.io import read_codec_input

    per_file: list[dict] = []
    total = sum(len(paths) * len(codecs) for _, _, paths, codecs in plan)
    bar = tqdm(total=total, unit="run", file=sys.stderr, disable=console.quiet, leave=False)
    with bar:
        for name, media, paths, codecs in plan:
            bar.set_description(name)
            for path in paths:
                try:
                    x, options = read_codec_input(path, media, next(iter(codecs.values())).channels)
                except NeurocodecError as e:
                    console.error(e, path)
                    bar.update(len(codecs))
                    continue
                for quality, codec in codecs.items():
                    try:
                        row = bench_input(codec, x, options, args.reps, args.warmup, args.effort)
                    except (NeurocodecError, OSError) as e:
                        console.error(e, path)
                    else:
                        console.done += 1
                        row = {"codec": name, "quality": quality, "file": path.name, **row}
                        per_file.append(row)
                        _check_row(row, args.reps, console)
                        if console.verbose:
                            console.say(_line(row))
                    bar.update(1)
    return per_file


def _summaries(plan: list[tuple], per_file: list[dict]) -> list[dict]:
    """Per codec and quality that has rows: its weights and :func:`~neurocodec.evaluation.bench.summarize`."""
    from neurocodec.evaluation.bench import summarize

    summaries = []
    for name, media, _, codecs in plan:
        for quality, codec in codecs.items():
            rows = [r for r in per_file if (r["codec"], r["quality"]) == (name, quality)]
            if rows:
                summary = summarize(rows)
                summaries.append(
                    {
                        "codec": name,
                        "quality": quality,
                        "media": media,
                        "weights": codec.weights_hash.hex(),
                        **summary,
                    }
                )
    return summaries


def _write_report(
    out: Path,
    args: argparse.Namespace,
    media: str,
    notes: list[str],
    summaries: list[dict],
    per_file: list[dict],
) -> None:
    import torch

    from neurocodec.evaluation.records import clean, machine, to_json

    report = {
        "command": shlex.join([PROG, *args.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "neurocodec": __version__,
        "machine": machine(args.device, media),
        "threads": torch.get_num_threads(),
        "threads_option": args.threads,
        "reps": args.reps,
        "warmup": args.warmup,
        "effort": args.effort,
        "device": args.device,
        "data": {"path": str(args.data), "limit": args.limit},
        "description": DESCRIPTION,
        "notes": notes,
        "summary": summaries,
        "per_file": per_file,
    }
    write_atomic(out, (to_json(clean(report)) + "\n").encode(), overwrite=args.force)


def run(args: argparse.Namespace, console: Console) -> None:
    wanted = _options(args)
    infos = _codecs(args.codecs)
    out = Path(args.json) if args.json else None
    if out is not None:
        if os.path.lexists(out) and not args.force:
            raise OutputExistsError(f"{out} already exists (use -f to replace it)")
        if not out.parent.is_dir():
            raise OutputError(f"cannot write {out}: no such directory {out.parent}")
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    plan, notes = _plan(args, infos, wanted)  # everything is loaded and checked before anything is timed
    for note in notes:
        console.say(f"note: {note}")
    per_file = _time(plan, args, console)
    summaries = _summaries(plan, per_file)
    if summaries:
        warm = f", {args.warmup} warm-up" if args.warmup else ""
        threads = torch.get_num_threads()
        console.say(
            f"median of {args.reps} rep{'s' if args.reps > 1 else ''} per file{warm}, "
            f"{threads} torch thread{'s' if threads > 1 else ''}, {args.device}"
            + (f", effort {args.effort}" if args.effort else "")
        )
        for line in _table(summaries):
            console.say(line)
    if out is not None:
        _write_report(out, args, plan[0][1], notes, summaries, per_file)
        console.say(f"wrote {out}")


def _check_row(row: dict, reps: int, console: Console) -> None:
    """A warning line, and a failure, for a file whose repetitions did not agree."""
    what = f"{row['codec']} q{row['quality']} {row['file']}"
    problems = []
    if not row["same_bytes"]:
        problems.append(f"the {reps} encodes wrote different files")
    if row["deterministic"] is False:
        problems.append(f"the {reps} decodes differ (not deterministic)")
    for problem in problems:
        tqdm.write(f"{PROG}: warning: {what}: {problem}", file=sys.stderr)
    if problems:
        console.failed += 1


def _line(row: dict) -> str:
    if "sample_rate" in row:
        rate, speed = f"{row['kbps']:.1f} kbit/s", "x_realtime"
        fmt = "{:.1f}x realtime"
    else:
        rate, speed = f"{row['bpp']:.4f} bpp", "mp_s"
        fmt = "{:.3f} MP/s"
    return (
        f"{row['codec']} q{row['quality']} {row['file']}: {row['bytes']} B, {rate}, "
        f"encode {row['encode_ms']:.1f} ms (min {row['encode_ms_min']:.1f}, {fmt.format(row[f'encode_{speed}'])}), "
        f"decode {row['decode_ms']:.1f} ms (min {row['decode_ms_min']:.1f}, {fmt.format(row[f'decode_{speed}'])})"
    )
