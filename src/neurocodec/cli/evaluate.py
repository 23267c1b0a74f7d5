"""``neurocodec eval``: rate-distortion evaluation of codecs and baselines
(:mod:`neurocodec.evaluation`), with a progress bar and a summary."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from neurocodec.cli.common import PROG, Console, UsageError, checked_qualities, effort, number
from neurocodec.errors import ConfigError
from neurocodec.evaluation.plan import DEFAULT_BASELINES


def add_parser(
    commands: argparse._SubParsersAction, verbose: argparse.ArgumentParser, coding: argparse.ArgumentParser
) -> None:
    eval_ = commands.add_parser(
        "eval",
        parents=[verbose],
        help="rate-distortion evaluation against JPEG, WebP, AVIF, JPEG 2000 (images), Opus, MP3 (audio) "
        "or x264, x265, SVT-AV1 (video)",
        description="Code the images of --data with each CODEC at each of its settings (a learned codec's "
        "shipped qualities, a baseline's sweep) and with the baselines; write OUT/results.json (per-file "
        "and mean bpp from real file sizes, PSNR and MS-SSIM of the 8-bit output, times, the command, the "
        "machine), OUT/rd.png and OUT/rd-ms-ssim.png, and print the BD-rates (over PSNR and over MS-SSIM) of "
        "each codec against each baseline. A CODEC may be a "
        "baseline: jpeg (4:2:0), jpeg-444, webp (method 6), avif (speed 4, 4:4:4), jpeg2000. Audio codecs "
        "(walloc-audio; baselines opus, mp3, flac) are measured on the WAV/FLAC files of --data instead: "
        "kbit/s from real file sizes, SNR and SI-SDR (OUT/rd.png is kbit/s vs SNR, OUT/rd-si-sdr.png vs SI-SDR). "
        "The video baselines x264 (medium), x265 (medium) and svtav1 (preset 8), over CRF sweeps, are measured on "
        "the videos of --data (Y4M, MP4, ..., and raw .yuv named with their geometry): bpp and kbit/s from real "
        "file sizes, PSNR-Y and PSNR-YUV (OUT/rd.png is bpp vs PSNR-Y, OUT/rd-psnr-yuv.png vs PSNR-YUV). "
        "Each file's rows go to OUT/rows.jsonl as soon as it is coded: the same command run again resumes "
        "a stopped evaluation where it stopped (-f starts over).",
    )
    eval_.add_argument("codecs", nargs="+", metavar="CODEC", help="installed codecs and/or baselines")
    eval_.add_argument(
        "--data", required=True, help="folder of images or audio files (searched recursively), or one file"
    )
    eval_.add_argument(
        "--qualities", metavar="Q,Q,...", help="qualities of the learned codecs (default: all shipped)"
    )
    eval_.add_argument(
        "--baselines",
        metavar="NAME,...",
        help=f"conventional codecs to compare with (default: {DEFAULT_BASELINES['image']} for images, "
        f"{DEFAULT_BASELINES['audio']} for audio, {DEFAULT_BASELINES['video']} for video; 'none' for none)",
    )
    eval_.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=S,S,...",
        help="settings of a baseline instead of its default sweep, e.g. avif=30,50,70 (repeatable)",
    )
    eval_.add_argument("--limit", type=int, metavar="N", help="only the first N files")
    eval_.add_argument(
        "--effort",
        type=effort,
        default=0,
        metavar="N",
        help="encode with N iterations of encoder-side adaptation or fitting, or a preset name (as encode "
        "--effort; learned codecs that have it; default 0)",
    )
    eval_.add_argument(
        "--frames",
        type=int,
        metavar="N",
        help="video: code the first N frames of each clip (default: neurocodec.evaluation.baselines.VIDEO_FRAMES, 30; "
        "0: all of them)",
    )
    eval_.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: ./neurocodec-eval/<data>-<codecs>, in the current directory)",
    )
    eval_.add_argument("--device", default="cpu", help="device of the learned codecs: cpu (default) or cuda")
    eval_.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="replace results.json and the plots, and start over (without -f, a stopped run resumes)",
    )
    eval_.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    eval_.set_defaults(run=run)


def _sweeps(items: Sequence[str]) -> dict[str, tuple[int | float, ...]]:
    """``--sweep avif=30,50,70`` (repeatable) as ``{name: settings}``."""
    sweeps = {}
    for item in items:
        name, _, values = item.partition("=")
        try:
            sweeps[name] = tuple(number(v) for v in values.split(","))
        except ValueError:
            raise UsageError(f"--sweep must look like avif=30,50,70, not {item!r}") from None
    return sweeps


def run(args: argparse.Namespace, console: Console) -> None:
    from neurocodec.evaluation import check_outputs, plan_eval, run_eval, summary_lines

    qualities = checked_qualities(args)
    baselines = None
    if args.baselines is not None:
        baselines = [n.strip() for n in args.baselines.split(",") if n.strip() not in ("", "none")]
    try:
        plan = plan_eval(
            args.codecs, args.data, baselines=baselines, qualities=qualities, sweeps=_sweeps(args.sweep),
            limit=args.limit, effort=args.effort, frames=args.frames, device=args.device,
        )  # fmt: skip
    except ConfigError as e:
        raise UsageError(str(e)) from None
    out = Path(args.out) if args.out else plan.default_out()
    check_outputs(out, plan.media, args.force)
    for note in plan.notes:
        console.say(f"note: {note}")
    total = sum(len(s) for s in plan.settings.values()) * len(plan.paths)
    unit = "image" if plan.media == "image" else "file"
    with tqdm(total=total, unit=unit, file=sys.stderr, disable=console.quiet, leave=False) as bar:

        def progress(name: str, count: int) -> None:
            bar.set_description(name)
            bar.update(count)

        command = shlex.join([PROG, *args.argv])
        report = run_eval(plan, out, force=args.force, command=command, progress=progress)
    for line in summary_lines(report, plan, out):
        console.say(line)
    console.done += 1
