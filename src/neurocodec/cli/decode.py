"""``neurocodec decode``: decompress .ncd files into images or audio."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from neurocodec.cli.common import Console, describe, expand, jobs_for, read_bytes, run_jobs
from neurocodec.container import (
    DEFAULT_MAX_SAMPLES,
    AudioGeometry,
    ImageGeometry,
    Limits,
    media_of,
    peek_header,
)
from neurocodec.errors import NeurocodecError, UnsupportedMediaError
from neurocodec.registry import decode

DECODED = ".decoded"  # x.ncd decodes beside itself to x.decoded.png


def add_parser(
    commands: argparse._SubParsersAction, verbose: argparse.ArgumentParser, coding: argparse.ArgumentParser
) -> None:
    decode_ = commands.add_parser(
        "decode",
        parents=[coding],
        help="decompress .ncd files into images or audio",
        description="Decompress .ncd files; the file names its codec, so no flags are needed. "
        "The format follows the extension of -o (.flac/.ogg/.opus for audio, .jpg/.webp/.tif for images). "
        "Without -o, x.ncd is decoded beside itself to x.decoded.png (images) or x.decoded.wav (audio), "
        "so that a round trip never meets its source; with -o DIR, to DIR/x.png or DIR/x.wav.",
    )
    decode_.add_argument("inputs", nargs="+", metavar="IN", help=".ncd files or globs")
    decode_.add_argument(
        "--max-samples",
        type=_samples,
        default=DEFAULT_MAX_SAMPLES,
        metavar="N",
        help="refuse, before decoding, a file whose image or audio holds more than N samples "
        "(channels x height x width, or channels x length; decoding takes up to ~200 bytes per sample, "
        f"docs/bitstream.md); default {DEFAULT_MAX_SAMPLES} (2^26); 0: no limit",
    )
    decode_.set_defaults(run=run)


def _samples(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"a whole number of samples >= 0, not {text!r}")
    return value


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(max_samples=args.max_samples or None)


def _decoded_suffix(src: Path) -> str:
    """The output extension of a file: .wav for audio, .png for images (and unreadable files,
    which fail later with their own error)."""
    try:
        return ".wav" if isinstance(peek_header(src.read_bytes()).geometry, AudioGeometry) else ".png"
    except (OSError, NeurocodecError):
        return ".png"


def _decoded_suffix_beside(src: Path) -> str:
    """The output extension of a file decoded beside itself: x.ncd -> x.decoded.png (or .wav), never
    the x.png it was most likely encoded from."""
    return DECODED + _decoded_suffix(src)


def _decode_one(src: Path, dst: Path, args: argparse.Namespace) -> str:
    data = read_bytes(src)
    g = peek_header(data).geometry
    if isinstance(g, AudioGeometry):
        from neurocodec.io.audio import write_audio

        start = time.perf_counter()
        x = decode(data, args.device, _limits(args))
        seconds = time.perf_counter() - start
        write_audio(dst, x.cpu(), g.sample_rate, overwrite=args.force)
        return f"{src} -> {dst}: {describe(g)}, {seconds:.2f} s"
    if not isinstance(g, ImageGeometry):
        raise UnsupportedMediaError(f"{src} holds {media_of(g)}; decoding {media_of(g)} is not supported yet")
    if g.channels not in (1, 3):
        raise UnsupportedMediaError(
            f"{src} holds a {g.channels}-channel image; only grey and RGB are written"
        )
    from neurocodec.io.image import write_image

    start = time.perf_counter()
    x = decode(data, args.device, _limits(args))
    seconds = time.perf_counter() - start
    write_image(dst, x.cpu(), bit_depth=16 if g.bit_depth > 8 else 8, overwrite=args.force)
    return f"{src} -> {dst}: {describe(g)}, {seconds:.2f} s"


def run(args: argparse.Namespace, console: Console) -> None:
    suffix = _decoded_suffix if args.output else _decoded_suffix_beside
    jobs = jobs_for(expand(args.inputs, console), args.output, suffix, args.force, console)
    run_jobs(jobs, "decode", lambda src, dst: _decode_one(src, dst, args), console)
