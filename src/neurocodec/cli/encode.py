"""``neurocodec encode``: compress images, audio or video into .ncd files."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from neurocodec.cli.common import SUFFIX, Console, UsageError, effort, expand, jobs_for, rate_text, run_jobs
from neurocodec.container import peek_header
from neurocodec.errors import ConfigError, NeurocodecError, UnsupportedMediaError
from neurocodec.io import input_media
from neurocodec.io.atomic import write_atomic
from neurocodec.registry import default_codec, load

if TYPE_CHECKING:
    import torch

    from neurocodec.codecs.base import Codec


def add_parser(
    commands: argparse._SubParsersAction, verbose: argparse.ArgumentParser, coding: argparse.ArgumentParser
) -> None:
    encode = commands.add_parser(
        "encode",
        parents=[coding],
        help="compress images, audio or video into .ncd files",
        description="Compress images (PNG, JPEG, WebP, TIFF, PPM), audio (WAV, FLAC, Ogg) or video (Y4M, "
        "raw .yuv, MP4, MKV, MOV, WebM, AVI) into .ncd files, beside each input unless -o says otherwise, "
        "with the default codec of each input's media (video: name one with -c, e.g. nirvana). YUV video "
        "is coded as its Y, Cb, Cr planes, with no RGB round trip. Prints the codec and quality used, size, "
        "rate (bpp or kbit/s) and time per file (and PSNR, PSNR-YUV or SNR with --metrics).",
    )
    encode.add_argument("inputs", nargs="+", metavar="IN", help="image, audio or video files, or globs")
    encode.add_argument(
        "-c", "--codec", help="codec name (see `neurocodec list`; default: the preferred installed one)"
    )
    encode.add_argument("-q", "--quality", type=int, help="codec quality (default: the codec's default)")
    encode.add_argument(
        "--effort",
        type=effort,
        default=0,
        metavar="N",
        help="adapt the latents to each image by N iterations of stochastic Gumbel annealing: a better "
        "rate-distortion trade-off, same decoder and decoding time, ~N synthesis passes slower "
        "(default 0: off; hyperprior, mlic and walloc-image; see docs/codecs.md); for c3, N fitting "
        "iterations or a preset: fast (1000), medium (3000), slow (10000)",
    )
    encode.add_argument(
        "--bpp",
        type=float,
        metavar="X",
        help="c3 only: fit each image to about X bits per pixel instead of the quality's trade-off "
        "(lambda is steered while fitting; measured 3-8 %% below the target on two Kodak crops)",
    )
    encode.add_argument(
        "--packets",
        type=int,
        metavar="N",
        help="vqgan only: spread the indices over N independently decodable packets (2-48; e.g. 16), "
        "so that a file missing some still decodes, their indices restored (about 1 %% larger)",
    )
    encode.add_argument(
        "--metrics",
        action="store_true",
        help="also decode and print the PSNR (images), PSNR-Y and PSNR-YUV (video) or SNR (audio)",
    )
    video = encode.add_argument_group("video")
    video.add_argument("--frames", type=int, metavar="N", help="code the first N frames only (default: all)")
    video.add_argument(
        "--size", metavar="WxH", help="width and height of raw .yuv inputs whose names do not give them"
    )
    video.add_argument(
        "--pix-fmt", default="yuv420p", help="pixel format of raw .yuv inputs (default yuv420p; "
        "yuv422p, yuv444p, gray and their 10-bit forms such as yuv420p10le)",
    )  # fmt: skip
    video.add_argument(
        "--frame-rate", metavar="R", help="frame rate of raw .yuv inputs: 30, 30000/1001 (default 30)"
    )
    encode.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="encode a dataset on Ray Data with N local worker processes (pip install 'neurocodec[ray]'): "
        "inputs may be folders (their images and audio, keeping their paths below them), -o OUT_DIR is "
        "required (created), OUT_DIR/manifest.jsonl lists every input as it finishes, and a rerun skips "
        "the inputs it lists as done (a killed run resumes); one CPU and one torch thread per worker, "
        "or one GPU each with --device cuda",
    )
    encode.set_defaults(run=run)


def _psnr(x: torch.Tensor, y: torch.Tensor, bit_depth: int) -> str:
    from neurocodec.evaluation.metrics import psnr

    value = psnr(x, y, bit_depth)
    return "PSNR inf dB (lossless)" if value == float("inf") else f"PSNR {value:.2f} dB"


def _raw_video(args: argparse.Namespace) -> tuple[int, int, str, Fraction] | None:
    """The geometry ``--size``, ``--pix-fmt`` and ``--frame-rate`` give raw .yuv inputs (None: not given)."""
    if args.frames is not None and args.frames < 1:
        raise UsageError("--frames must be at least 1")
    if args.size is None:
        if args.frame_rate is not None:
            raise UsageError("--frame-rate goes with --size (raw .yuv inputs)")
        return None
    from neurocodec.io.video import RAW_FORMATS

    try:
        width, height = (int(n) for n in args.size.lower().split("x"))
        rate = Fraction(args.frame_rate or 30)
    except (ValueError, ZeroDivisionError):
        raise UsageError(
            f"--size WxH and --frame-rate R (30, 30000/1001), not {args.size!r} and {args.frame_rate!r}"
        ) from None
    if width < 1 or height < 1 or rate <= 0:
        raise UsageError(f"--size and --frame-rate must be positive, not {args.size} and {args.frame_rate}")
    if args.pix_fmt not in RAW_FORMATS:
        raise UsageError(f"--pix-fmt must be one of {', '.join(RAW_FORMATS)}, not {args.pix_fmt!r}")
    return width, height, args.pix_fmt, rate


def _encode_one(codec_for: Callable[[str], Codec], src: Path, dst: Path, args: argparse.Namespace) -> str:
    from neurocodec.io import read_codec_input

    media = input_media(src)
    codec = codec_for(media)
    x, options = read_codec_input(src, media, codec.channels, max_frames=args.frames, raw=args.raw)
    start = time.perf_counter()
    data = codec.encode(x, effort=args.effort, **options)
    seconds = time.perf_counter() - start
    write_atomic(dst, data, overwrite=args.force)
    g = peek_header(data).geometry
    line = f"{src} -> {dst}: {codec.name} quality {codec.quality}, {len(data)} B, {rate_text(g, len(data))}, {seconds:.2f} s"
    if args.metrics:
        x_hat = codec.decode(data).cpu()
        if media == "audio":
            from neurocodec.evaluation.metrics import snr

            line += f", SNR {snr(x, x_hat):.2f} dB"
        elif media == "video":
            from neurocodec.evaluation.metrics import video_psnr
            from neurocodec.io.video import tensor_to_planes

            scores = video_psnr(tensor_to_planes(x, g.colour), tensor_to_planes(x_hat, g.colour), g.bit_depth)
            line += f", PSNR-Y {scores['y']:.2f} dB, PSNR-YUV {scores['yuv']:.2f} dB"
        else:
            line += f", {_psnr(x, x_hat, g.bit_depth)}"
    return line


def _run_dataset(args: argparse.Namespace, console: Console) -> None:
    """``encode --workers N``: :func:`neurocodec.dataset.encode_dataset`, one line per input."""
    from neurocodec.dataset import encode_dataset

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.output is None:
        raise UsageError("--workers needs -o OUT_DIR: the outputs and their manifest go there")
    if args.metrics:
        raise UsageError("--metrics does not go with --workers (`neurocodec eval` measures quality)")

    def show(row: dict) -> None:
        if row["status"] == "error":
            console.error(NeurocodecError(row["error"]))
            return
        console.done += 1
        if row["status"] == "skipped":
            if console.verbose:
                console.say(f"{row['input']}: done before, skipped")
            return
        rate = f"{row['bpp']:.4f} bpp" if row["bpp"] is not None else f"{row['kbit_s']:.1f} kbit/s"
        console.say(
            f"{row['input']} -> {row['output']}: {row['codec']} quality {row['quality']}, {row['bytes']} B, "
            f"{rate}, {row['seconds']:.2f} s" + (" (the same file was there: kept)" if row["kept"] else "")
        )

    inputs = expand(args.inputs, console)
    if not inputs:
        return
    summary = encode_dataset(
        inputs, args.output, codec=args.codec, quality=args.quality, effort=args.effort, workers=args.workers,
        device=args.device, force=args.force, on_result=show, verbose=args.verbose,
    )  # fmt: skip
    console.say(
        f"{summary.encoded} encoded, {summary.skipped} done before, {summary.failed} failed, "
        f"in {summary.seconds:.1f} s; manifest: {summary.manifest}"
    )


def _set_option(codec: Codec, attribute: str, value: object, flag: str, lacking: str) -> None:
    """Set a codec-specific option given on the command line (``None``: not given), as a usage error
    when the codec has no such option or refuses the value."""
    if value is None:
        return
    if not hasattr(codec, attribute):
        raise UsageError(f"{flag}: {codec.name} {lacking}")
    try:
        setattr(codec, attribute, value)
    except ConfigError as e:
        raise UsageError(f"{flag}: {e}") from None


def run(args: argparse.Namespace, console: Console) -> None:
    args.raw = _raw_video(args)  # its usage errors before any work
    if args.workers is not None:
        if args.bpp is not None or args.packets is not None:
            raise UsageError("--bpp and --packets do not go with --workers")
        _run_dataset(args, console)
        return
    jobs = jobs_for(expand(args.inputs, console), args.output, SUFFIX, args.force, console)
    codecs: dict[str, Codec] = {}

    def codec_for(media: str) -> Codec:
        """The codec for inputs of ``media``: --codec (which must code it), else the default, loaded once."""
        if media not in codecs:
            codec = load(args.codec or default_codec(media), args.quality, args.device)
            if codec.media != media:
                raise UnsupportedMediaError(f"{codec.name} codes {codec.media}, not {media}")
            try:
                codec.check_effort(args.effort)
            except ConfigError as e:
                raise UsageError(f"--effort: {e}") from None
            _set_option(codec, "target_bpp", args.bpp, "--bpp", "has no target-rate mode (c3 has)")
            _set_option(codec, "packets", args.packets, "--packets", "writes no packets (vqgan does)")
            if console.verbose:
                console.say(
                    f"{codec.name} quality {codec.quality} (weights {codec.weights_hash.hex()}) on {codec.device}"
                )
            codecs[media] = codec
        return codecs[media]

    if jobs:
        # Load before any work, so that an unknown codec or quality is a usage error (exit 2) and a
        # codec of the wrong media fails once, not file by file.
        for media in sorted({input_media(src) for src, _ in jobs}):
            codec_for(media)
        run_jobs(jobs, "encode", lambda src, dst: _encode_one(codec_for, src, dst, args), console)
