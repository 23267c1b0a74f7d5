"""``neurocodec info``: what a .ncd file holds."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurocodec.cli.common import Console, describe, expand, rate_text, read_bytes
from neurocodec.container import FORMAT_VERSION, media_of, overhead, unpack
from neurocodec.errors import NeurocodecError


def add_parser(
    commands: argparse._SubParsersAction, verbose: argparse.ArgumentParser, coding: argparse.ArgumentParser
) -> None:
    info = commands.add_parser(
        "info",
        parents=[verbose],
        help="show what a .ncd file holds",
        description="Print a file's header (codec, quality, weights, geometry), its sections and their "
        "sizes, the container overhead and the rate. Needs no codec.",
    )
    info.add_argument("files", nargs="+", metavar="FILE", help=".ncd files or globs")
    info.set_defaults(run=run, quiet=False)


def _info_one(path: Path) -> str:
    data = read_bytes(path)
    header, sections = unpack(data)
    g = header.geometry
    streams = ", ".join(f"{name} {len(payload)} B" for name, payload in sections.items())
    return "\n".join(
        [
            f"{path}: neurocodec file, format {FORMAT_VERSION}",
            f"  codec     {header.codec}, quality {header.quality}, weights {header.weights_hash.hex()}",
            f"  {media_of(g):<9} {describe(g)}",
            f"  sections  {streams or 'none'}",
            f"  size      {len(data)} B, of which {overhead(data)} B container",
            f"  rate      {rate_text(g, len(data))}",
        ]
    )


def run(args: argparse.Namespace, console: Console) -> None:
    for path in expand(args.files, console):
        try:
            console.say(_info_one(path))
        except NeurocodecError as e:
            console.error(e, path)
        else:
            console.done += 1
