"""``neurocodec export``: turn a training run into shipped weights and a model card."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurocodec.cli.common import Console, UsageError


def add_parser(
    commands: argparse._SubParsersAction, verbose: argparse.ArgumentParser, coding: argparse.ArgumentParser
) -> None:
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
    export.set_defaults(run=run, quiet=False)


def run(args: argparse.Namespace, console: Console) -> None:
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
