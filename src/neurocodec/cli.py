"""The ``neurocodec`` command line: encode, decode, info, list, train, export, eval, latents and bench.

Exit status: 0 success, 1 some input failed (the other inputs are still done), 2 usage
error. A failure prints one line, ``neurocodec: error: ...``, on stderr (with the traceback
only under --verbose). Outputs are written atomically (:func:`~neurocodec.io.atomic.write_atomic`)
and never replace a file without -f. torch and the image I/O are imported only by the
commands that code, so ``info`` and ``list`` answer at once.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from neurocodec import __version__
from neurocodec.container import (
    FORMAT_VERSION,
    AudioGeometry,
    Geometry,
    ImageGeometry,
    overhead,
    peek_header,
    unpack,
)
from neurocodec.errors import (
    ConfigError,
    MediaReadError,
    NeurocodecError,
    OutputError,
    OutputExistsError,
    UnknownCodecError,
    UnsupportedMediaError,
)
from neurocodec.io.atomic import write_atomic
from neurocodec.registry import decode, default_codec, list_codecs, load

if TYPE_CHECKING:
    import torch

    from neurocodec.codecs.base import Codec

PROG = "neurocodec"
SUFFIX = ".ncd"
_GLOB = re.compile(r"[*?[]")

EPILOG = f"""\
examples:
  {PROG} encode photo.png                    writes photo.ncd with the default codec
  {PROG} encode 'shots/*.png' -o out/ -q 3   a glob, outputs into a directory
  {PROG} encode song.flac --metrics          audio: kbit/s and SNR; decodes to song.wav
  {PROG} decode photo.ncd -o photo.webp      the format follows the extension
  {PROG} info photo.ncd                      what the file holds
  {PROG} list                                installed codecs, qualities, R-D points

  {PROG} train hyperprior --data train/ --lmbda 0.0067 --steps 200000 --out runs/q3
  {PROG} export runs/q3 -q 3 --kodak kodak/         shipped-weight files + model card
  {PROG} eval hyperprior --data kodak/              R-D vs JPEG, WebP, AVIF, JPEG 2000; BD-rates
  {PROG} eval walloc-audio --data audio/music/      R-D vs Opus and MP3 (SNR, SI-SDR); BD-rates
  {PROG} eval x264 x265 svtav1 --data video/        video baselines (PSNR-Y, PSNR-YUV); BD-rates
  {PROG} latents walloc-image --data photos/ --out lat/  latents for a downstream model
  {PROG} bench hyperprior mlic --data kodak/ --limit 4 --threads 1   encode/decode speed (MP/s)

exit status: 0 success, 1 an input failed (the others are still done), 2 usage error.
"""


class UsageError(Exception):
    """A command line that cannot be run as given (exit status 2)."""


class _Console:
    """Where results, errors and progress go; counts what succeeded and what failed."""

    def __init__(self, quiet: bool, verbose: bool) -> None:
        self.quiet, self.verbose = quiet, verbose
        self.done = self.failed = 0

    def say(self, line: str) -> None:
        if not self.quiet:
            tqdm.write(line, file=sys.stdout)

    def error(self, error: BaseException, path: Path | None = None) -> None:
        """One line for ``error`` (about ``path``), after its traceback under --verbose."""
        self.failed += 1
        if self.verbose:
            tqdm.write("".join(traceback.format_exception(error)).rstrip(), file=sys.stderr)
        message = " ".join(str(error).split()) or type(error).__name__
        if path is not None and str(path) not in message:
            message = f"{path}: {message}"
        tqdm.write(f"{PROG}: error: {message}", file=sys.stderr)

    def progress(self, jobs: list[tuple[Path, Path]], verb: str) -> tqdm:
        quiet = self.quiet or len(jobs) < 2
        return tqdm(jobs, desc=verb, unit="file", file=sys.stderr, disable=quiet, leave=False)

    def summary(self) -> None:
        total = self.done + self.failed
        if self.failed and total > 1:
            tqdm.write(f"{PROG}: {self.failed} of {total} inputs failed", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Inputs and outputs


def _expand(patterns: Sequence[str], console: _Console) -> list[Path]:
    """The input files: each argument as it is, or the files its glob matches (sorted), once each."""
    paths: dict[Path, None] = {}
    for pattern in patterns:
        matches = [pattern]
        if not os.path.lexists(pattern) and _GLOB.search(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                console.error(MediaReadError(f"no file matches {pattern}"))
        paths.update((Path(m), None) for m in matches)
    return list(paths)


def _jobs(
    inputs: list[Path],
    output: str | None,
    suffix: str | Callable[[Path], str],
    force: bool,
    console: _Console,
) -> list[tuple[Path, Path]]:
    """(input, output) pairs, less those whose output cannot be written (reported now, before any work).
    ``suffix`` is the default output extension, or a function of the input that gives it."""
    suffix_of = suffix if callable(suffix) else lambda _: suffix
    if output is None:
        outputs = [path.with_suffix(suffix_of(path)) for path in inputs]
    elif Path(output).is_dir():
        outputs = [Path(output) / path.with_suffix(suffix_of(path)).name for path in inputs]
    elif len(inputs) > 1:
        raise UsageError(f"-o {output}: with several inputs, -o must be an existing directory")
    else:
        outputs = [Path(output)]
    if len(set(outputs)) < len(outputs):
        raise UsageError("two inputs would be written to the same output; give them other names")
    jobs = []
    for src, dst in zip(inputs, outputs, strict=True):
        try:
            if dst.resolve() == src.resolve():
                raise OutputError(f"cannot write {dst} over its input; choose another name with -o")
            if os.path.lexists(dst) and not force:
                raise OutputExistsError(f"{dst} already exists (use -f to replace it)")
            if not dst.parent.is_dir():
                raise OutputError(f"cannot write {dst}: no such directory {dst.parent}")
            jobs.append((src, dst))
        except OutputError as e:
            console.error(e, src)
    return jobs


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise MediaReadError(f"cannot read {path}: {e.strerror or e}") from None


def _run(
    jobs: list[tuple[Path, Path]], verb: str, one: Callable[[Path, Path], str], console: _Console
) -> None:
    for src, dst in console.progress(jobs, verb):
        try:
            line = one(src, dst)
        except (NeurocodecError, OSError) as e:
            console.error(e, src)
        else:
            console.done += 1
            console.say(line)


# --------------------------------------------------------------------------------------------
# Descriptions


def _channels(count: int) -> str:
    return f"{count} channel{'s' if count > 1 else ''}"


def _media(geometry: Geometry) -> str:
    return type(geometry).__name__.removesuffix("Geometry").lower()


def _describe(g: Geometry) -> str:
    if isinstance(g, AudioGeometry):
        return f"{_channels(g.channels)}, {g.samples} samples at {g.sample_rate} Hz ({g.samples / g.sample_rate:.2f} s)"
    picture = f"{g.width}x{g.height}, {_channels(g.channels)}, {g.bit_depth}-bit"
    if isinstance(g, ImageGeometry):
        return picture
    return f"{picture}, {g.frames} frames at {g.rate_num / g.rate_den:.3f} fps"


def _rate(g: Geometry, size: int) -> str:
    bits = 8 * size
    if isinstance(g, AudioGeometry):
        return f"{bits * g.sample_rate / g.samples / 1000:.1f} kbit/s"
    if isinstance(g, ImageGeometry):
        return f"{bits / (g.height * g.width):.4f} bpp"
    seconds = g.frames * g.rate_den / g.rate_num
    return f"{bits / (g.height * g.width * g.frames):.4f} bpp, {bits / seconds / 1000:.1f} kbit/s"


def _psnr(x: torch.Tensor, y: torch.Tensor, bit_depth: int) -> str:
    from neurocodec.metrics import psnr

    value = psnr(x, y, bit_depth)
    return "PSNR inf dB (lossless)" if value == float("inf") else f"PSNR {value:.2f} dB"


# --------------------------------------------------------------------------------------------
# Commands


def _input_media(path: Path) -> str:
    """What an input file holds, by its extension: audio for soundfile's formats, else an image."""
    from neurocodec.io.audio import WRITE_FORMATS

    return "audio" if path.suffix.lower() in WRITE_FORMATS else "image"


def _encode_one(codec_for: Callable[[str], Codec], src: Path, dst: Path, args: argparse.Namespace) -> str:
    from neurocodec.io import read_codec_input

    media = _input_media(src)
    codec = codec_for(media)
    x, sample_rate = read_codec_input(src, media, codec.channels)
    start = time.perf_counter()
    data = codec.encode(x, sample_rate=sample_rate, effort=args.effort)
    seconds = time.perf_counter() - start
    write_atomic(dst, data, overwrite=args.force)
    g = peek_header(data).geometry
    line = f"{src} -> {dst}: {len(data)} B, {_rate(g, len(data))}, {seconds:.2f} s"
    if args.metrics:
        x_hat = codec.decode(data).cpu()
        if media == "audio":
            from neurocodec.metrics import snr

            line += f", SNR {snr(x, x_hat):.2f} dB"
        else:
            line += f", {_psnr(x, x_hat, g.bit_depth)}"
    return line


def _encode(args: argparse.Namespace, console: _Console) -> None:
    jobs = _jobs(_expand(args.inputs, console), args.output, SUFFIX, args.force, console)
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
            if console.verbose:
                console.say(
                    f"{codec.name} quality {codec.quality} (weights {codec.weights_hash.hex()}) on {codec.device}"
                )
            codecs[media] = codec
        return codecs[media]

    if jobs:
        # Load before any work, so that an unknown codec or quality is a usage error (exit 2) and a
        # codec of the wrong media fails once, not file by file.
        for media in sorted({_input_media(src) for src, _ in jobs}):
            codec_for(media)
        _run(jobs, "encode", lambda src, dst: _encode_one(codec_for, src, dst, args), console)


def _decoded_suffix(src: Path) -> str:
    """The default output extension of a file: .wav for audio, .png for images (and unreadable files,
    which fail later with their own error)."""
    try:
        return ".wav" if isinstance(peek_header(src.read_bytes()).geometry, AudioGeometry) else ".png"
    except (OSError, NeurocodecError):
        return ".png"


def _decode_one(src: Path, dst: Path, args: argparse.Namespace) -> str:
    data = _read_bytes(src)
    g = peek_header(data).geometry
    if isinstance(g, AudioGeometry):
        from neurocodec.io.audio import write_audio

        start = time.perf_counter()
        x = decode(data, args.device)
        seconds = time.perf_counter() - start
        write_audio(dst, x.cpu(), g.sample_rate, overwrite=args.force)
        return f"{src} -> {dst}: {_describe(g)}, {seconds:.2f} s"
    if not isinstance(g, ImageGeometry):
        raise UnsupportedMediaError(f"{src} holds {_media(g)}; decoding {_media(g)} is not supported yet")
    if g.channels not in (1, 3):
        raise UnsupportedMediaError(
            f"{src} holds a {g.channels}-channel image; only grey and RGB are written"
        )
    from neurocodec.io.image import write_image

    start = time.perf_counter()
    x = decode(data, args.device)
    seconds = time.perf_counter() - start
    write_image(dst, x.cpu(), bit_depth=16 if g.bit_depth > 8 else 8, overwrite=args.force)
    return f"{src} -> {dst}: {_describe(g)}, {seconds:.2f} s"


def _decode(args: argparse.Namespace, console: _Console) -> None:
    jobs = _jobs(_expand(args.inputs, console), args.output, _decoded_suffix, args.force, console)
    _run(jobs, "decode", lambda src, dst: _decode_one(src, dst, args), console)


def _info_one(path: Path) -> str:
    data = _read_bytes(path)
    header, sections = unpack(data)
    g = header.geometry
    streams = ", ".join(f"{name} {len(payload)} B" for name, payload in sections.items())
    return "\n".join(
        [
            f"{path}: neurocodec file, format {FORMAT_VERSION}",
            f"  codec     {header.codec}, quality {header.quality}, weights {header.weights_hash.hex()}",
            f"  {_media(g):<9} {_describe(g)}",
            f"  sections  {streams or 'none'}",
            f"  size      {len(data)} B, of which {overhead(data)} B container",
            f"  rate      {_rate(g, len(data))}",
        ]
    )


def _info(args: argparse.Namespace, console: _Console) -> None:
    for path in _expand(args.files, console):
        try:
            console.say(_info_one(path))
        except NeurocodecError as e:
            console.error(e, path)
        else:
            console.done += 1


def _list(args: argparse.Namespace, console: _Console) -> None:
    infos = list_codecs()
    if not infos:
        console.say("No codec is installed with weights yet: this release of neurocodec ships none.")
        return
    rows = [("codec", "media", "quality", "lambda", "R-D on Kodak")]
    for info in infos:
        for i, quality in enumerate(info.qualities):
            w = info.weights_of(quality)  # None: built without weights
            lam, points = (w.model_card.get("lambda"), w.rd_points) if w else (None, [])
            rows.append(
                (
                    info.name if i == 0 else "",
                    info.media if i == 0 else "",
                    f"{quality}{'*' if quality == info.default_quality else ''}",
                    "-" if lam is None else f"{lam:g}",
                    "; ".join(f"{p['bpp']:.3f} bpp {p['psnr']:.2f} dB" for p in points) or "-",
                )
            )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        console.say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    console.say("* default quality")
    if console.verbose:
        for info in infos:
            for w in info.weights:
                console.say(
                    f"\n{info.name} quality {w.quality} ({w.path}):\n{json.dumps(w.model_card, indent=2)}"
                )


# --------------------------------------------------------------------------------------------
# Evaluation

DEFAULT_BASELINES = {"image": "jpeg,webp,avif,jpeg2000", "audio": "opus,mp3", "video": "x264,x265,svtav1"}

# Per media: the two quality metrics of the curves (rd.curve_points names) with their JSON key
# of the CompressAI-style "results", the axis label and the plot file; the first is the BD-rate
# table's main one.
_EVAL_METRICS = {
    "image": (
        ("psnr", "psnr-rgb", "PSNR RGB (dB)", "rd.png"),
        ("ms-ssim", "ms-ssim-rgb", "MS-SSIM RGB (dB)", "rd-ms-ssim.png"),
    ),
    "audio": (
        ("snr", "snr", "SNR (dB)", "rd.png"),
        ("si-sdr", "si-sdr", "SI-SDR (dB)", "rd-si-sdr.png"),
    ),
    "video": (
        ("psnr-y", "psnr-y", "PSNR-Y (dB)", "rd.png"),
        ("psnr-yuv", "psnr-yuv", "PSNR-YUV 6:1:1 (dB)", "rd-psnr-yuv.png"),
    ),
}
# Per media: what its files are called, the rate axis, its unit and how rates are printed
_EVAL_UNITS = {
    "image": ("images", "rate (bpp, from file sizes)", "bpp", ".3f"),
    "audio": ("audio files", "rate (kbit/s, from file sizes)", "kbit/s", ".1f"),
    "video": ("videos", "rate (bpp, from file sizes)", "bpp", ".4f"),
}
_EVAL_DESCRIPTIONS = {
    "image": {
        "metrics": "bpp = 8 * file bytes / pixels; PSNR of the 8-bit decoded RGB, averaged in dB over files; "
        "MS-SSIM (pytorch-msssim, RGB, 5 scales) of the 8-bit decoded image averaged over files, and in dB "
        "-10 log10(1 - mean MS-SSIM); encode/decode seconds per file",
        "bd": "Bjøntegaard delta rate (%) and PSNR (dB) of test vs anchor, pchip, over the PSNR interval both "
        "cover; bd_rate_ms_ssim: the same over MS-SSIM in dB (its bd_psnr_db and psnr_interval_db are in MS-SSIM dB)",
    },
    "audio": {
        "metrics": "kbps = 8 * file bytes / duration / 1000 (headers and container included), averaged over "
        "files; SNR (no gain fit) "
        "and SI-SDR (zero-mean, optimal gain, per channel averaged) in dB of the float decoded signal at the "
        "source rate, averaged in dB over files; conventional decoders' output is aligned to the source by "
        "cross-correlation first (whole samples, up to 8192); encode/decode seconds per file. Opus and MP3 "
        "optimize perception, not the waveform",
        "bd": "Bjøntegaard delta rate (%) and SNR (dB, in the bd_psnr_db key) of test vs anchor, pchip, over "
        "the SNR interval both cover (psnr_interval_db); bd_rate_si_sdr: the same over SI-SDR",
    },
    "video": {
        "metrics": "8-bit 4:2:0 (yuv420p) frames coded into an in-memory Matroska file and decoded by PyAV; "
        "bpp = 8 * file bytes / (frames * width * height) and kbps = 8 * file bytes / (frames / frame rate) "
        "/ 1000 (container included), averaged over files; PSNR-Y, -U, -V per frame against the source "
        "planes (peak 255), averaged over frames in dB; PSNR-YUV = (6 Y + U + V) / 8; psnr: PSNR of the "
        "8-bit RGB of both (BT.601, limited range), averaged over frames; all PSNRs then averaged in dB "
        "over files; encode/decode seconds per file (one encoder thread)",
        "bd": "Bjøntegaard delta rate (%) and PSNR-Y (dB, in the bd_psnr_db key) of test vs anchor, pchip, "
        "over the PSNR-Y interval both cover (psnr_interval_db), of the curves averaged over files; "
        "bd_rate_psnr_yuv: the same over PSNR-YUV; bd_rate_per_file: both for each file's own curves",
    },
}


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _qualities(text: str | None) -> list[int] | None:
    """``--qualities 1,2,3`` as a list (None: not given)."""
    try:
        return None if text is None else [int(q) for q in text.split(",")]
    except ValueError:
        raise UsageError(f"--qualities must look like 1,2,3, not {text!r}") from None


def _qualities_limit_effort(args: argparse.Namespace) -> list[int] | None:
    """The ``--qualities`` of ``eval`` and ``bench``, once their ``--limit`` and ``--effort`` are checked."""
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if args.effort < 0:
        raise UsageError("--effort must be 0 or more")
    return _qualities(args.qualities)


def _arch_value(text: str) -> int | float | str:
    """An ``--arch`` value: a number, or a name (``preset=tiny``)."""
    try:
        return _number(text)
    except ValueError:
        if not text.isidentifier():
            raise
        return text


def _arch(text: str) -> dict[str, int | float | str]:
    """``--arch N=128,M=192`` (or ``preset=tiny``) as the architecture dict."""
    try:
        pairs = [pair.split("=") for pair in text.split(",")]
        return {key.strip(): _arch_value(value.strip()) for key, value in pairs}
    except ValueError:
        raise UsageError(f"--arch must look like N=128,M=192 or preset=tiny, not {text!r}") from None


def _eval_plan(
    args: argparse.Namespace,
) -> tuple[list[tuple[str, object]], list[str], list[str], list[str], str]:
    """What to run, as ``(name, CodecInfo or baseline)`` pairs; the codecs named (the rows of the
    BD-rate table); the baselines they are compared with (its columns); notes for the user; and
    the media ("image", "audio" or "video") of them all."""
    from neurocodec.baselines import AUDIO_BASELINES, BASELINES, VIDEO_BASELINES
    from neurocodec.registry import families

    known = {**BASELINES, **AUDIO_BASELINES, **VIDEO_BASELINES}
    anchors = None
    if args.baselines is not None:
        anchors = list(
            dict.fromkeys(n.strip() for n in args.baselines.split(",") if n.strip() not in ("", "none"))
        )
        for name in anchors:
            if name not in known:
                raise UsageError(f"--baselines: unknown baseline {name!r} (known: {', '.join(known)})")
    installed = {info.name: info for info in list_codecs()}
    declared = {family.name: family for family in families()}
    plan: list[tuple[str, object]] = []
    notes: list[str] = []
    media: dict[str, str] = {}  # codec name -> its media
    for name in dict.fromkeys(args.codecs):
        if name in known:
            plan.append((name, known[name]))
            media[name] = known[name].media
        elif name in installed:
            plan.append((name, installed[name]))
            media[name] = installed[name].media
        elif name in declared:
            notes.append(f"{name} has no weights installed, so it is not evaluated")
            media[name] = declared[name].media
        else:
            known_names = ", ".join([*installed, *known])
            raise UnknownCodecError(f"unknown codec {name!r} (installed codecs and baselines: {known_names})")
    kinds = set(media.values())
    if len(kinds) > 1 or not kinds <= set(DEFAULT_BASELINES):
        listed = ", ".join(f"{name} ({kind})" for name, kind in media.items())
        raise UsageError(f"eval compares codecs of one media (image, audio or video), not {listed}")
    kind = kinds.pop() if kinds else "image"
    if anchors is None:
        anchors = DEFAULT_BASELINES[kind].split(",")
    for name in anchors:
        if known[name].media != kind:
            article = "a" if known[name].media == "video" else "an"
            raise UsageError(f"--baselines: {name} is {article} {known[name].media} codec, not {kind}")
    if kind == "video" and any(name not in known for name in media):
        raise UsageError("eval measures the video baselines only: learned video codecs come later")
    tests = [name for name, _ in plan]
    if notes and not any(name in installed for name in tests):
        notes.append("no learned codec has weights installed: evaluating the baselines only")
    plan += [(name, known[name]) for name in anchors if name not in tests]
    for name, what in plan:
        if name in known and not what.available:
            raise UsageError(f"this Pillow was built without {name} (AVIF needs Pillow >= 11.3)")
    return plan, tests or anchors, anchors, notes, kind


def _machine(device: str, media: str = "image") -> dict[str, object]:
    import platform

    import torch

    from neurocodec.baselines import audio_versions, versions, video_versions
    from neurocodec.rd import cpu_model

    cpu = cpu_model()
    machine: dict[str, object] = {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        **{"image": versions, "audio": audio_versions, "video": video_versions}[media](),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name()
    return machine


def _clean(value: object) -> object:
    """``value`` for strict, compact JSON: floats rounded to 6 decimals, and each non-finite one
    (the PSNR of a lossless file) as None."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _json(value: object, indent: str = "") -> str:
    """Indented JSON, with each object or list of plain values on one line (a row per file)."""
    flat = not isinstance(value, dict | list) or all(not isinstance(v, dict | list) for v in (
        value.values() if isinstance(value, dict) else value
    ))  # fmt: skip
    if flat:
        return json.dumps(value, ensure_ascii=False)
    inner = indent + " "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    return "[\n" + ",\n".join(f"{inner}{_json(v, inner)}" for v in value) + f"\n{indent}]"


def _eval(args: argparse.Namespace, console: _Console) -> None:
    from neurocodec.baselines import (
        AUDIO_BASELINES,
        BASELINES,
        VIDEO_BASELINES,
        VIDEO_FRAMES,
        evaluate_baseline,
    )
    from neurocodec.io import audio_files, image_files, video_files
    from neurocodec.rd import (
        METRICS,
        bd_table,
        bd_table_lines,
        curve_points,
        evaluate_audio,
        evaluate_images,
        mean_curve,
        plot_rd,
    )

    plan, tests, anchors, notes, media = _eval_plan(args)
    known = {**BASELINES, **AUDIO_BASELINES, **VIDEO_BASELINES}
    metrics = _EVAL_METRICS[media]
    sweeps: dict[str, tuple[int | float, ...]] = {}
    for item in args.sweep:
        name, _, values = item.partition("=")
        if name not in known:
            raise UsageError(f"--sweep {item}: unknown baseline {name!r} (known: {', '.join(known)})")
        try:
            sweeps[name] = tuple(_number(v) for v in values.split(","))
        except ValueError:
            raise UsageError(f"--sweep must look like avif=30,50,70, not {item!r}") from None
    wanted = _qualities_limit_effort(args)
    if args.frames is not None and args.frames < 0:
        raise UsageError("--frames must be 0 (all) or more")
    lister = {"image": image_files, "audio": audio_files, "video": video_files}[media]
    try:
        paths = lister(args.data)[: args.limit]
    except FileNotFoundError as e:
        raise UsageError(f"--data: {e}") from None
    data_name = Path(args.data).resolve().name
    out = Path(args.out or Path("eval", "results", "-".join([data_name, *(name for name, _ in plan)])))
    for path in (out / "results.json", *(out / plot for *_, plot in metrics)):
        if os.path.lexists(path) and not args.force:
            raise OutputExistsError(f"{path} already exists (use -f to replace it)")

    # The settings of each codec: a baseline's sweep, a learned codec's shipped qualities.
    settings: dict[str, tuple] = {}
    for name, what in plan:
        if name in known:
            settings[name] = sweeps.get(name, known[name].sweep)
            continue
        shipped = what.qualities
        chosen = shipped if wanted is None else tuple(q for q in wanted if q in shipped)
        missing = [q for q in wanted or () if q not in shipped]
        if missing:
            notes.append(
                f"{name} has no quality {', '.join(map(str, missing))} (shipped: {', '.join(map(str, shipped))})"
            )
        if chosen:
            settings[name] = chosen
    if args.effort:  # checked before anything runs: every learned codec must take it
        for name, qualities in settings.items():
            if name not in known:
                try:
                    load(name, qualities[0], args.device).check_effort(args.effort)
                except ConfigError as e:
                    raise UsageError(f"--effort: {e}") from None
        notes.append(f"the learned codecs encode with {args.effort} iterations of adaptation (--effort)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output directory {out}: {e.strerror or e}") from None
    frames = VIDEO_FRAMES if args.frames is None else args.frames or None
    if media == "video" and frames:
        notes.append(f"each video is coded from its first {frames} frames at most (--frames; 0: all)")
    for note in notes:
        console.say(f"note: {note}")

    evaluate = evaluate_audio if media == "audio" else evaluate_images
    unit = "image" if media == "image" else "file"
    codecs: dict[str, dict] = {}
    total = sum(len(s) for s in settings.values()) * len(paths)
    bar = tqdm(total=total, unit=unit, file=sys.stderr, disable=console.quiet, leave=False)
    with bar:
        for name, what in plan:
            if name not in settings:
                continue
            rows: list[dict] = []
            weights = {}
            bar.set_description(name)
            if name in known:
                for path in paths:
                    rows += evaluate_baseline(name, [path], settings[name], frames=frames)
                    bar.update(len(settings[name]))
                entry = {"kind": "baseline", "description": what.description, "setting": what.setting}
            else:
                for quality in settings[name]:
                    codec = load(name, quality, args.device)
                    weights[quality] = codec.weights_hash.hex()
                    effort = {"effort": args.effort} if args.effort else {}
                    for path in paths:
                        rows += [{"setting": quality, **row} for row in evaluate(codec, [path], **effort)]
                        bar.update(1)
                entry = {
                    "kind": "learned",
                    "description": f"{name}, neurocodec {__version__}"
                    + (f", effort {args.effort}" if args.effort else ""),
                    "setting": "quality",
                    "weights": weights,
                    "effort": args.effort,
                }
            curve = mean_curve(rows)
            entry["mean"] = curve
            rate = METRICS[metrics[0][0]][0]
            entry["results"] = {  # CompressAI's layout: one entry per setting
                rate: [p[rate] for p in curve],
                **{key: [p[METRICS[metric][1]] for p in curve] for metric, key, *_ in metrics},
                "encoding_time": [p["encode_s"] for p in curve],
                "decoding_time": [p["decode_s"] for p in curve],
            }
            entry["per_file"] = rows
            codecs[name] = entry

    tests = [name for name in tests if name in codecs]
    anchors = [name for name in anchors if name in codecs]
    curves, tables = {}, {}
    for metric, *_ in metrics:
        curves[metric] = {name: curve_points(entry["mean"], metric) for name, entry in codecs.items()}
        tables[metric] = bd_table(curves[metric], tests, anchors)
    (main, *_), (second, *_) = metrics
    per_file = {}  # video: each clip's own BD-rates too, which video papers average
    for path in paths if media == "video" else ():
        clip = {
            name: mean_curve([r for r in e["per_file"] if r["file"] == path.name])
            for name, e in codecs.items()
        }
        per_file[path.name] = {
            metric: bd_table({name: curve_points(c, metric) for name, c in clip.items()}, tests, anchors)
            for metric, *_ in metrics
        }
    report = {
        "command": shlex.join([PROG, *args.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "neurocodec": __version__,
        "machine": _machine(args.device, media),
        "data": {"dir": str(args.data), "count": len(paths), "files": [p.name for p in paths]},
        **_EVAL_DESCRIPTIONS[media],
        "notes": notes,
        "bd_rate": tables[main],
        f"bd_rate_{second.replace('-', '_')}": tables[second],
        **({"bd_rate_per_file": per_file} if per_file else {}),
        "codecs": codecs,
    }
    write_atomic(out / "results.json", (_json(_clean(report)) + "\n").encode(), overwrite=True)
    top = max((p[0] for points in curves[main].values() for p in points), default=1.0)
    kind, xlabel, rate_unit, rate_format = _EVAL_UNITS[media]
    files = f"{len(paths)} {kind}"
    title, xlim = f"{data_name}, {files}", (0, min(top * 1.03, 2.5) if media == "image" else top * 1.03)
    for metric, _, label, plot in metrics:
        plot_rd(curves[metric], out / plot, title, xlim=xlim, ylabel=label, xlabel=xlabel)

    rate_key, quality_key = METRICS[main]
    for name, entry in codecs.items():
        curve = entry["mean"]
        rates, qualities = [p[rate_key] for p in curve], [p[quality_key] for p in curve]
        console.say(
            f"{name}: {len(curve)} points, {min(rates):{rate_format}}-{max(rates):{rate_format}} {rate_unit}, "
            f"{min(qualities):.2f}-{max(qualities):.2f} dB"
        )
    if tables[main]:
        for metric, _, label, _ in metrics:
            if metric == main:
                console.say(
                    f"BD-rate, {label.removesuffix(' (dB)')} on {files} "
                    "(negative: fewer bits than the anchor at equal quality):"
                )
            else:
                console.say(f"BD-rate, {label} on {files}:")
            for line in bd_table_lines(tables[metric], tests, anchors):
                console.say(line)
    elif codecs:
        console.say("no BD-rate: name a codec and at least one baseline to compare it with")
    plots = [str(out / plot) for *_, plot in metrics]
    console.say(f"wrote {out / 'results.json'}, {' and '.join(plots)}")
    console.done += 1


# --------------------------------------------------------------------------------------------
# Speed

_BENCH_DESCRIPTION = (
    "per file: the input read once, --warmup untimed encode+decode, then --reps timed encodes and decodes "
    "in turn (time.perf_counter; torch.cuda.synchronize before and after each on cuda); encode_ms and "
    "decode_ms: the median of the reps, _min the fastest, _all each one; bytes: the complete file the "
    "encoder wrote; bpp = 8 * bytes / pixels, kbps = 8 * bytes / duration / 1000; mp_s: megapixels per "
    "second and x_realtime: seconds of audio per second, at the median; same_bytes: every encode wrote the "
    "same file; deterministic: every decode gave the same tensor (torch.equal; null with one rep). "
    "summary, per codec and quality: mean bytes and rate, the mean over files of the medians, and the "
    "throughput of all files (their pixels or seconds over the sum of their medians)"
)


def _bench_codecs(names: Sequence[str]) -> list:
    """The installed learned codecs (``CodecInfo``) named, once each; a baseline or an unknown name
    is a usage error."""
    from neurocodec.baselines import AUDIO_BASELINES, BASELINES, VIDEO_BASELINES
    from neurocodec.registry import codec_info

    infos = []
    for name in dict.fromkeys(names):
        if name in {**BASELINES, **AUDIO_BASELINES, **VIDEO_BASELINES}:
            learned = ", ".join(info.name for info in list_codecs()) or "none installed"
            raise UsageError(
                f"{name} is a baseline: bench times the learned codecs ({learned}); "
                f"`{PROG} eval` records the baselines' times"
            )
        info = codec_info(name)  # UnknownCodecError: unknown codec 'x' (installed: ...)
        if info.media not in ("image", "audio"):
            raise UsageError(f"bench times image and audio codecs, not {name} ({info.media})")
        infos.append(info)
    return infos


def _bench_table(summaries: list[dict]) -> list[str]:
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


def _bench(args: argparse.Namespace, console: _Console) -> None:
    from neurocodec.bench import bench_input, summarize
    from neurocodec.io import audio_files, image_files, read_codec_input

    if args.reps < 1:
        raise UsageError("--reps must be at least 1")
    if args.warmup < 0:
        raise UsageError("--warmup must be 0 or more")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be at least 1")
    wanted = _qualities_limit_effort(args)
    import torch

    try:
        device = torch.device(args.device)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device: unknown device {args.device!r} (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA GPU on this machine (use cpu)")
    infos = _bench_codecs(args.codecs)
    out = Path(args.json) if args.json else None
    if out is not None:
        if os.path.lexists(out) and not args.force:
            raise OutputExistsError(f"{out} already exists (use -f to replace it)")
        if not out.parent.is_dir():
            raise OutputError(f"cannot write {out}: no such directory {out.parent}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    # Everything is loaded and checked before anything is timed.
    notes: list[str] = []
    plan = []  # (name, media, files, {quality: codec})
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
        lister = audio_files if info.media == "audio" else image_files
        try:
            paths = lister(args.data)[: args.limit]
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
    for note in notes:
        console.say(f"note: {note}")

    per_file: list[dict] = []
    total = sum(len(paths) * len(codecs) for _, _, paths, codecs in plan)
    bar = tqdm(total=total, unit="run", file=sys.stderr, disable=console.quiet, leave=False)
    with bar:
        for name, media, paths, codecs in plan:
            bar.set_description(name)
            for path in paths:
                try:
                    x, sample_rate = read_codec_input(path, media, next(iter(codecs.values())).channels)
                except NeurocodecError as e:
                    console.error(e, path)
                    bar.update(len(codecs))
                    continue
                for quality, codec in codecs.items():
                    try:
                        row = bench_input(codec, x, sample_rate, args.reps, args.warmup, args.effort)
                    except (NeurocodecError, OSError) as e:
                        console.error(e, path)
                    else:
                        console.done += 1
                        row = {"codec": name, "quality": quality, "file": path.name, **row}
                        per_file.append(row)
                        _bench_check(row, args.reps, console)
                        if console.verbose:
                            console.say(_bench_line(row))
                    bar.update(1)

    summaries = []
    for name, media, _, codecs in plan:
        for quality, codec in codecs.items():
            rows = [r for r in per_file if (r["codec"], r["quality"]) == (name, quality)]
            if rows:
                summaries.append(
                    {
                        "codec": name,
                        "quality": quality,
                        "media": media,
                        "weights": codec.weights_hash.hex(),
                        **summarize(rows),
                    }
                )
    if summaries:
        warm = f", {args.warmup} warm-up" if args.warmup else ""
        console.say(
            f"median of {args.reps} rep{'s' if args.reps > 1 else ''} per file{warm}, "
            f"{torch.get_num_threads()} torch thread{'s' if torch.get_num_threads() > 1 else ''}, {args.device}"
            + (f", effort {args.effort}" if args.effort else "")
        )
        for line in _bench_table(summaries):
            console.say(line)
    if out is not None:
        report = {
            "command": shlex.join([PROG, *args.argv]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "neurocodec": __version__,
            "machine": _machine(args.device, plan[0][1]),
            "threads": torch.get_num_threads(),
            "threads_option": args.threads,
            "reps": args.reps,
            "warmup": args.warmup,
            "effort": args.effort,
            "device": args.device,
            "data": {"path": str(args.data), "limit": args.limit},
            "description": _BENCH_DESCRIPTION,
            "notes": notes,
            "summary": summaries,
            "per_file": per_file,
        }
        write_atomic(out, (_json(_clean(report)) + "\n").encode(), overwrite=args.force)
        console.say(f"wrote {out}")


def _bench_check(row: dict, reps: int, console: _Console) -> None:
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


def _bench_line(row: dict) -> str:
    if "kbps" in row:
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


# --------------------------------------------------------------------------------------------
# Parsing


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Learned neural codecs for images, audio and video.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", help="more detail; tracebacks on errors")
    coding = argparse.ArgumentParser(add_help=False, parents=[verbose])
    coding.add_argument("-o", "--output", metavar="OUT", help="output file, or directory for several inputs")
    coding.add_argument(
        "--device", default="cpu", help="cpu (default) or cuda; files are bit-exact across devices"
    )
    coding.add_argument("-f", "--force", action="store_true", help="replace existing output files")
    coding.add_argument("--quiet", action="store_true", help="print errors only")
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")

    encode = commands.add_parser(
        "encode",
        parents=[coding],
        help="compress images or audio into .ncd files",
        description="Compress images (PNG, JPEG, WebP, TIFF, PPM) or audio (WAV, FLAC, Ogg) into .ncd "
        "files, beside each input unless -o says otherwise, with the default codec of each input's "
        "media. Prints size, rate (bpp or kbit/s) and time per file.",
    )
    encode.add_argument("inputs", nargs="+", metavar="IN", help="image or audio files, or globs")
    encode.add_argument(
        "-c", "--codec", help="codec name (see `neurocodec list`; default: the preferred installed one)"
    )
    encode.add_argument("-q", "--quality", type=int, help="codec quality (default: the codec's default)")
    encode.add_argument(
        "--effort",
        type=int,
        default=0,
        metavar="N",
        help="adapt the latents to each image by N iterations of stochastic Gumbel annealing: a better "
        "rate-distortion trade-off, same decoder and decoding time, ~N synthesis passes slower "
        "(default 0: off; hyperprior, mlic and walloc-image; see docs/codecs.md)",
    )
    encode.add_argument(
        "--metrics", action="store_true", help="also decode and print the PSNR (images) or SNR (audio)"
    )
    encode.set_defaults(run=_encode)

    decode_ = commands.add_parser(
        "decode",
        parents=[coding],
        help="decompress .ncd files into images or audio",
        description="Decompress .ncd files; the file names its codec, so no flags are needed. "
        "The format follows the extension of -o (default beside each input: PNG for images, "
        "WAV for audio; .flac/.ogg/.opus for audio, .jpg/.webp/.tif for images).",
    )
    decode_.add_argument("inputs", nargs="+", metavar="IN", help=".ncd files or globs")
    decode_.set_defaults(run=_decode)

    info = commands.add_parser(
        "info",
        parents=[verbose],
        help="show what a .ncd file holds",
        description="Print a file's header (codec, quality, weights, geometry), its sections and their "
        "sizes, the container overhead and the rate. Needs no codec.",
    )
    info.add_argument("files", nargs="+", metavar="FILE", help=".ncd files or globs")
    info.set_defaults(run=_info, quiet=False)

    list_ = commands.add_parser(
        "list",
        parents=[verbose],
        help="show the installed codecs, qualities and R-D points",
        description="List the installed codecs: media, qualities, and their model cards' lambda and "
        "R-D points on Kodak (--verbose: the whole model cards).",
    )
    list_.set_defaults(run=_list, quiet=False)

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
        "file sizes, PSNR-Y and PSNR-YUV (OUT/rd.png is bpp vs PSNR-Y, OUT/rd-psnr-yuv.png vs PSNR-YUV).",
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
        type=int,
        default=0,
        metavar="N",
        help="encode with N iterations of encoder-side adaptation (as encode --effort; learned image codecs "
        "that have it; default 0)",
    )
    eval_.add_argument(
        "--frames",
        type=int,
        metavar="N",
        help="video: code the first N frames of each clip (default: neurocodec.baselines.VIDEO_FRAMES, 30; "
        "0: all of them)",
    )
    eval_.add_argument("--out", metavar="DIR", help="output folder (default: eval/results/<data>-<codecs>)")
    eval_.add_argument("--device", default="cpu", help="device of the learned codecs: cpu (default) or cuda")
    eval_.add_argument("-f", "--force", action="store_true", help="replace results.json and the plots")
    eval_.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    eval_.set_defaults(run=_eval)

    train = commands.add_parser(
        "train",
        parents=[verbose],
        help="train a codec with the rate-distortion harness",
        description="Train a model (loss = lambda * 255^2 * MSE + bpp, or lambda * (1 - MS-SSIM) + bpp, plus "
        "the model's own terms) on a folder of images, audio or video (what the model needs), on the CPU "
        "or a GPU with the same code. Resumes from OUT/checkpoint when it exists; logs to OUT/log.jsonl.",
    )
    train.add_argument(
        "model", metavar="MODEL", help="the codec family to train (an unknown name lists them)"
    )
    train.add_argument("--data", required=True, help="folder of training files (searched recursively)")
    train.add_argument("--out", required=True, help="run folder: checkpoint, log")
    train.add_argument("--lmbda", type=float, required=True, help="rate-distortion trade-off")
    train.add_argument("--steps", type=int, required=True)
    train.add_argument(
        "--arch",
        help="architecture, e.g. N=128,M=192 or preset=tiny (default: the model's; hyperprior: N=128,M=192; mlic: preset=small)",
    )
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--crop", type=int, default=256, help="side of the image and video crops")
    train.add_argument("--samples", type=int, default=16384, help="length of the audio clips")
    train.add_argument("--frames", type=int, default=4, help="length of the video clips")
    train.add_argument("--distortion", choices=["mse", "ms-ssim"], default="mse")
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument(
        "--lr-schedule",
        choices=["step", "cosine"],
        default="step",
        help="10x drop at 90%% (default) or cosine",
    )
    train.add_argument("--warmup", type=int, default=0, metavar="STEPS", help="linear warmup of the rate")
    train.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping (0: none)")
    train.add_argument("--ema", type=float, default=0.0, metavar="DECAY", help="keep an EMA of the weights")
    train.add_argument("--val", metavar="DIR", default="", help="held-out folder to validate on")
    train.add_argument(
        "--val-split", type=int, default=0, metavar="N", help="hold the last N files of --data out"
    )
    train.add_argument("--val-every", type=int, default=1000, metavar="K", help="validate every K steps")
    train.add_argument("--channels-last", action="store_true", help="channels-last memory format (images)")
    train.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast of the transforms (default: on CUDA only; --bf16 on the CPU too, 1.3-1.8x faster "
        "steps on a CPU with bf16 units; --no-bf16 never)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu")
    train.add_argument(
        "--init",
        metavar="RUN",
        help="start a new run from the weights of another run, or of an exported .safetensors "
        "file such as a shipped one (those whose names and shapes match; e.g. a trained WaLLoC "
        "for one with a hyperprior)",
    )
    train.add_argument(
        "--train-only",
        metavar="PREFIX,...",
        help="train only the parameters whose names start so (e.g. hyperprior); freeze the rest",
    )
    train.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop (with a checkpoint) after this long; rerun to resume",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=1000,
        metavar="K",
        help="write the checkpoint every K steps (and at the end); a killed run resumes from the last one",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)

    export = commands.add_parser(
        "export",
        parents=[verbose],
        help="turn a training run into shipped weights and a model card",
        description="Build the CDF tables once, write <codec>-q<Q>.safetensors and its JSON model card "
        "(training data, steps, lambda, commit, R-D on Kodak measured from real files).",
    )
    export.add_argument("run_dir", metavar="RUN", help="a run folder of `neurocodec train`")
    export.add_argument("-q", "--quality", type=int, required=True)
    export.add_argument("--kodak", help="folder of Kodak images to measure the R-D point on (image codecs)")
    export.add_argument("--music", help="folder of music to measure the R-D point on (audio codecs)")
    export.add_argument("--out-dir", help="where to write (default: the package's weights/ folder)")
    export.add_argument("--notes", default="", help="free text for the model card")
    export.set_defaults(run=_export, quiet=False)

    latents = commands.add_parser(
        "latents",
        parents=[verbose],
        help="encode a folder of images or audio into a latent dataset (compressed learning)",
        description="Run each file of --data through CODEC's analysis (batched, on --device) and save the "
        "integer latents as safetensors shards plus OUT/index.json, for a downstream model "
        "(neurocodec.LatentDataset reads them without the codec). A bad file stops the run unless "
        "--skip-bad. Codecs with a latent: walloc-image, walloc-audio.",
    )
    latents.add_argument("codec", metavar="CODEC", help="a codec with a latent (walloc-image, walloc-audio)")
    latents.add_argument("--data", required=True, help="folder of images or audio (searched recursively)")
    latents.add_argument("--out", required=True, metavar="DIR", help="output folder of the dataset")
    latents.add_argument("-q", "--quality", type=int, help="codec quality (default: the codec's default)")
    latents.add_argument(
        "--crop", metavar="H,W|T", help="centred crop first (H,W for images, T samples for audio); "
        "default: every file whole"
    )  # fmt: skip
    latents.add_argument("--batch-size", type=int, help="files per batch (default: 1 on cpu, 16 on cuda)")
    latents.add_argument("--shard-size", type=int, default=1024, metavar="N", help="items per shard file")
    latents.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    latents.add_argument("--skip-bad", action="store_true", help="skip unreadable files, one line each")
    latents.add_argument("-f", "--force", action="store_true", help="replace an existing dataset in OUT")
    latents.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    latents.set_defaults(run=_latents)

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
        type=int,
        default=0,
        metavar="N",
        help="encode with N iterations of adaptation (as encode --effort)",
    )
    bench.add_argument(
        "--json", metavar="OUT.json", help="also write the command, machine, per-file times and summary"
    )
    bench.add_argument("-f", "--force", action="store_true", help="replace an existing --json file")
    bench.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    bench.set_defaults(run=_bench)
    return parser


def _train(args: argparse.Namespace, console: _Console) -> None:
    from neurocodec.registry import trainable
    from neurocodec.train.distributed import leave
    from neurocodec.train.trainer import TrainConfig, Trainer

    try:
        family = trainable(args.model)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    arch = _arch(args.arch) if args.arch else dict(family.arch)
    if args.val and args.val_split:
        raise UsageError("give --val or --val-split, not both")
    config = TrainConfig(
        model=args.model, arch=arch, data=args.data, out=args.out, lmbda=args.lmbda, steps=args.steps,
        batch_size=args.batch_size, crop=args.crop, samples=args.samples, frames=args.frames,
        distortion=args.distortion, lr=args.lr, lr_schedule=args.lr_schedule, warmup=args.warmup,
        clip=args.clip, ema=args.ema, val=args.val, val_split=args.val_split, val_every=args.val_every,
        channels_last=args.channels_last, bf16=args.bf16, seed=args.seed, device=args.device,
        init=args.init or "", train_only=args.train_only or "", checkpoint_every=args.checkpoint_every,
    )  # fmt: skip
    try:
        trainer = Trainer(config)
        trainer.run(progress=not args.quiet, time_limit=args.time_limit)
    except (FileNotFoundError, ValueError) as e:  # no images, images too small, bad arguments
        raise UsageError(str(e)) from None
    leave(trainer.world)


def _export(args: argparse.Namespace, console: _Console) -> None:
    from neurocodec.train.export import export_weights

    checkpoint = Path(args.run_dir) / "checkpoint"
    from neurocodec.train.checkpoint import has_checkpoint

    if not has_checkpoint(checkpoint):
        raise UsageError(f"{args.run_dir} holds no checkpoint of `neurocodec train`")
    kw = {"out_dir": args.out_dir} if args.out_dir else {}
    card = export_weights(
        checkpoint, args.quality, kodak=args.kodak, music=args.music, notes=args.notes, **kw
    )
    console.say(f"wrote {card} and {card.with_suffix('.safetensors').name}")


def _latents(args: argparse.Namespace, console: _Console) -> None:
    import warnings

    from neurocodec.latents import SkippedFileWarning, encode_latents, save_latents

    try:
        sides = [int(side) for side in args.crop.replace("x", ",").split(",")] if args.crop else None
    except ValueError:
        raise UsageError(f"--crop must look like 256,256 (images) or 65536 (audio): {args.crop!r}") from None
    crop = sides[0] if sides and len(sides) == 1 else sides
    codec = load(args.codec, args.quality, args.device)
    count = 0

    def counted(items):
        nonlocal count
        for item in items:
            count += 1
            yield item

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("always", SkippedFileWarning)
        warnings.showwarning = lambda message, *_: tqdm.write(f"{PROG}: {message}", file=sys.stderr)
        items = encode_latents(
            codec, args.data, batch_size=args.batch_size, crop=crop, skip_bad=args.skip_bad,
            progress=not args.quiet,
        )  # fmt: skip
        index = save_latents(counted(items), args.out, args.shard_size, codec=codec, overwrite=args.force)
    seconds = time.perf_counter() - start
    console.say(f"{count} latents of {codec.name} q{codec.quality} -> {index.parent} ({seconds:.1f} s)")
    console.done += 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors
        return int(e.code or 0)
    args.argv = argv
    console = _Console(args.quiet, args.verbose)
    try:
        args.run(args, console)
    except (UsageError, UnknownCodecError) as e:
        console.error(e)
        return 2
    except NeurocodecError as e:
        console.error(e)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `neurocodec list | head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    console.summary()
    return 1 if console.failed else 0


if __name__ == "__main__":
    sys.exit(main())
