"""The ``neurocodec`` command line: encode, decode, info, list, eval, train, export, latents and bench,
one module each (its parser and its ``run``); :mod:`~neurocodec.cli.common` holds what they share.

Exit status: 0 success, 1 some input failed (the other inputs are still done), 2 usage
error. A failure prints one line, ``neurocodec: error: ...``, on stderr (with the traceback
only under --verbose). Outputs are written atomically (:func:`~neurocodec.io.atomic.write_atomic`)
and never replace a file without -f. torch and the image I/O are imported only by the
commands that code, so ``info`` and ``list`` answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from neurocodec import __version__
from neurocodec.cli import bench, decode, encode, evaluate, export, info, latents, listing, train
from neurocodec.cli.common import PROG, Console, UsageError
from neurocodec.errors import NeurocodecError, UnknownCodecError

__all__ = ["main", "parser"]

COMMANDS = (encode, decode, info, listing, evaluate, train, export, latents, bench)  # in the order of --help

EPILOG = f"""\
examples:
  {PROG} encode photo.png                    writes photo.ncd with the default codec
  {PROG} encode 'shots/*.png' -o out/ -q 3   a glob, outputs into a directory
  {PROG} encode photos/ -o out/ --workers 2  a folder on Ray Data (neurocodec[ray]), resumable
  {PROG} encode song.flac --metrics          audio: kbit/s and SNR; decodes to song.decoded.wav
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


def parser() -> argparse.ArgumentParser:
    """The parser of the whole command line; each command's namespace has ``run(args, console)``."""
    from neurocodec.cli.common import parent_parsers

    top = argparse.ArgumentParser(
        prog=PROG,
        description="Learned neural codecs for images, audio and video.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    verbose, coding = parent_parsers()
    commands = top.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands, verbose, coding)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors
        return int(e.code or 0)
    args.argv = argv
    console = Console(args.quiet, args.verbose)
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
