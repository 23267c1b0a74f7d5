"""``neurocodec list``: the installed codecs, their qualities and R-D points."""

from __future__ import annotations

import argparse
import json

from neurocodec.cli.common import Console
from neurocodec.registry import list_codecs


def add_parser(
    commands: argparse._SubParsersAction, verbose: argparse.ArgumentParser, coding: argparse.ArgumentParser
) -> None:
    list_ = commands.add_parser(
        "list",
        parents=[verbose],
        help="show the installed codecs, qualities and R-D points",
        description="List the installed codecs: media, qualities, and their model cards' lambda and "
        "R-D points on Kodak (--verbose: the whole model cards).",
    )
    list_.set_defaults(run=run, quiet=False)


def run(args: argparse.Namespace, console: Console) -> None:
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
