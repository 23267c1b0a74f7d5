"""What the commands share: the console (results, one-line errors, progress, the exit status's
counts), the usage error (exit status 2), input globs and output paths, the description of a
file's geometry, and option values.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from neurocodec.container import AudioGeometry, Geometry, ImageGeometry
from neurocodec.errors import MediaReadError, NeurocodecError, OutputError, OutputExistsError

PROG = "neurocodec"
SUFFIX = ".ncd"
_GLOB = re.compile(r"[*?[]")


class UsageError(Exception):
    """A command line that cannot be run as given (exit status 2)."""


class Console:
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


def parent_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The options every command has (-v) and those of the commands that code files (-o, --device,
    -f, --quiet, and -v)."""
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", help="more detail; tracebacks on errors")
    coding = argparse.ArgumentParser(add_help=False, parents=[verbose])
    coding.add_argument("-o", "--output", metavar="OUT", help="output file, or directory for several inputs")
    coding.add_argument(
        "--device", default="cpu", help="cpu (default) or cuda; files are bit-exact across devices"
    )
    coding.add_argument("-f", "--force", action="store_true", help="replace existing output files")
    coding.add_argument("--quiet", action="store_true", help="print errors only")
    return verbose, coding


def expand(patterns: Sequence[str], console: Console) -> list[Path]:
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


def jobs_for(
    inputs: list[Path],
    output: str | None,
    suffix: str | Callable[[Path], str],
    force: bool,
    console: Console,
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


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise MediaReadError(f"cannot read {path}: {e.strerror or e}") from None


def run_jobs(
    jobs: list[tuple[Path, Path]], verb: str, one: Callable[[Path, Path], str], console: Console
) -> None:
    for src, dst in console.progress(jobs, verb):
        try:
            line = one(src, dst)
        except (NeurocodecError, OSError) as e:
            console.error(e, src)
        else:
            console.done += 1
            console.say(line)


def channels(count: int) -> str:
    return f"{count} channel{'s' if count > 1 else ''}"


def describe(g: Geometry) -> str:
    if isinstance(g, AudioGeometry):
        return f"{channels(g.channels)}, {g.samples} samples at {g.sample_rate} Hz ({g.samples / g.sample_rate:.2f} s)"
    picture = f"{g.width}x{g.height}, {channels(g.channels)}, {g.bit_depth}-bit"
    if isinstance(g, ImageGeometry):
        return picture
    colour = "" if g.colour == "rgb" else f", {g.colour}" + (" full range" if g.full_range else "")
    return f"{picture}, {g.frames} frames at {g.rate_num / g.rate_den:.3f} fps{colour}"


def rate_text(g: Geometry, size: int) -> str:
    bits = 8 * size
    if isinstance(g, AudioGeometry):
        return f"{bits * g.sample_rate / g.samples / 1000:.1f} kbit/s"
    if isinstance(g, ImageGeometry):
        return f"{bits / (g.height * g.width):.4f} bpp"
    seconds = g.frames * g.rate_den / g.rate_num
    return f"{bits / (g.height * g.width * g.frames):.4f} bpp, {bits / seconds / 1000:.1f} kbit/s"


def number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


PRESET_NAMES = ("fast", "medium", "slow")  # the effort presets of the codecs that fit each input


def effort(text: str) -> int | str:
    """An ``--effort`` of encode, eval and bench: a whole number of iterations, or a preset name
    (each codec says what its presets are: ``Codec.presets``)."""
    if text in PRESET_NAMES:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a number of iterations or one of {', '.join(PRESET_NAMES)}: {text!r}"
        ) from None


def qualities(text: str | None) -> list[int] | None:
    """``--qualities 1,2,3`` as a list (None: not given)."""
    try:
        return None if text is None else [int(q) for q in text.split(",")]
    except ValueError:
        raise UsageError(f"--qualities must look like 1,2,3, not {text!r}") from None


def checked_qualities(args: argparse.Namespace) -> list[int] | None:
    """The ``--qualities`` of ``eval`` and ``bench``, once their ``--limit`` and ``--effort`` are checked."""
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if isinstance(args.effort, int) and args.effort < 0:
        raise UsageError("--effort must be 0 or more")
    return qualities(args.qualities)
