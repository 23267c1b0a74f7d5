"""``neurocodec decode``: decompress .ncd files into images, audio or video."""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from neurocodec.cli.common import Console, describe, expand, jobs_for, read_bytes, run_jobs
from neurocodec.container import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_MAX_VIDEO_SAMPLES,
    AudioGeometry,
    ImageGeometry,
    Limits,
    VideoGeometry,
    peek_header,
)
from neurocodec.errors import NeurocodecError, PacketLossWarning, UnsupportedMediaError
from neurocodec.registry import decode

DECODED = ".decoded"  # x.ncd decodes beside itself to x.decoded.png


def add_parser(
    commands: argparse._SubParsersAction, verbose: argparse.ArgumentParser, coding: argparse.ArgumentParser
) -> None:
    decode_ = commands.add_parser(
        "decode",
        parents=[coding],
        help="decompress .ncd files into images, audio or video",
        description="Decompress .ncd files; the file names its codec, so no flags are needed. "
        "The format follows the extension of -o (.flac/.ogg/.opus for audio, .jpg/.webp/.tif for images, "
        ".y4m/.mp4/.mkv/.mov for video). Without -o, x.ncd is decoded beside itself to x.decoded.png "
        "(images), x.decoded.wav (audio) or x.decoded.y4m (video), so that a round trip never meets its "
        "source; with -o DIR, to DIR/x.png, DIR/x.wav or DIR/x.y4m. Video coded as YUV is written as "
        "YUV of its source's chroma format and bit depth (.y4m), or 4:2:0 planes straight to the encoder "
        "(.mp4/.mkv/.mov: lossless H.264 unless --video-codec/--crf say otherwise).",
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
    decode_.add_argument(
        "--max-video-samples",
        type=_samples,
        default=DEFAULT_MAX_VIDEO_SAMPLES,
        metavar="N",
        help="refuse, before decoding, a video of more than N samples in all (frames x channels x height "
        "x width; decoding takes up to ~75 bytes per sample); "
        f"default {DEFAULT_MAX_VIDEO_SAMPLES} (2^28); 0: no limit",
    )
    decode_.add_argument(
        "--video-codec",
        default="libx264",
        metavar="NAME",
        help="FFmpeg encoder of .mp4/.mkv/.mov outputs: libx264 (default), libx265, ffv1 (.mkv), ...",
    )
    decode_.add_argument(
        "--crf", type=int, metavar="N", help="a lossy .mp4/.mkv/.mov at this CRF (default: lossless, QP 0)"
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
    return Limits(max_samples=args.max_samples or None, max_video_samples=args.max_video_samples or None)


def _decoded_suffix(src: Path) -> str:
    """The output extension of a file: .wav for audio, .y4m for video, .png for images (and
    unreadable files, which fail later with their own error)."""
    try:
        g = peek_header(src.read_bytes()).geometry
    except (OSError, NeurocodecError):
        return ".png"
    return {AudioGeometry: ".wav", VideoGeometry: ".y4m"}.get(type(g), ".png")


def _decoded_suffix_beside(src: Path) -> str:
    """The output extension of a file decoded beside itself: x.ncd -> x.decoded.png (or .wav), never
    the x.png it was most likely encoded from."""
    return DECODED + _decoded_suffix(src)


def _timed_decode(data: bytes, args: argparse.Namespace):
    """``(x, seconds, notes)``: the decoded tensor, the time it took, and what the decoder warned
    of (lost packets), as text for the file's line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PacketLossWarning)
        start = time.perf_counter()
        x = decode(data, args.device, _limits(args))
        seconds = time.perf_counter() - start
    notes = "".join(f" ({w.message})" for w in caught if issubclass(w.category, PacketLossWarning))
    return x.cpu(), seconds, notes


def _decode_one(src: Path, dst: Path, args: argparse.Namespace) -> str:
    data = read_bytes(src)
    g = peek_header(data).geometry
    if isinstance(g, ImageGeometry) and g.channels not in (1, 3):
        raise UnsupportedMediaError(
            f"{src} holds a {g.channels}-channel image; only grey and RGB are written"
        )
    x, seconds, notes = _timed_decode(data, args)
    if isinstance(g, AudioGeometry):
        from neurocodec.io.audio import write_audio

        write_audio(dst, x, g.sample_rate, overwrite=args.force)
        return f"{src} -> {dst}: {describe(g)}, {seconds:.2f} s{notes}"
    if isinstance(g, VideoGeometry):
        _write_video(dst, x, g, args)
        return (
            f"{src} -> {dst}: {describe(g)}, {seconds:.2f} s ({g.frames / max(seconds, 1e-9):.1f} fps){notes}"
        )
    from neurocodec.io.image import write_image

    write_image(dst, x, bit_depth=16 if g.bit_depth > 8 else 8, overwrite=args.force)
    return f"{src} -> {dst}: {describe(g)}, {seconds:.2f} s{notes}"


def _write_video(dst: Path, x, g: VideoGeometry, args: argparse.Namespace) -> None:
    """Write decoded video ``x`` (3, T, H, W) of geometry ``g`` to ``dst`` by its extension."""
    from neurocodec.io.video import tensor_to_planes, write_video, write_y4m

    rate = (g.rate_num, g.rate_den)
    if g.channels != 3:
        raise UnsupportedMediaError(f"the video holds {g.channels} channels; only 3 are written")
    if dst.suffix.lower() == ".y4m":
        if g.colour == "rgb":
            even = not (g.height % 2 or g.width % 2)
            write_y4m(dst, x, rate, chroma="420" if even else "444", overwrite=args.force)
        else:
            planes = tensor_to_planes(x, g.colour)
            depth = 8 if g.bit_depth <= 8 else 10
            write_y4m(dst, planes, rate, bit_depth=depth, full_range=g.full_range, overwrite=args.force)
        return
    video = x if g.colour == "rgb" else tensor_to_planes(x, g.colour)
    lossy = {"crf": args.crf} if args.crf is not None else {"crf": None, "qp": 0}
    write_video(dst, video, rate, codec=args.video_codec, overwrite=args.force, **lossy)


def run(args: argparse.Namespace, console: Console) -> None:
    suffix = _decoded_suffix if args.output else _decoded_suffix_beside
    jobs = jobs_for(expand(args.inputs, console), args.output, suffix, args.force, console)
    run_jobs(jobs, "decode", lambda src, dst: _decode_one(src, dst, args), console)
