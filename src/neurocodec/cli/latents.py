"""``neurocodec latents``: encode a folder into a latent dataset (compressed learning)."""

from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from neurocodec.cli.common import PROG, Console, UsageError
from neurocodec.registry import load


def add_parser(
    commands: argparse._SubParsersAction, verbose: argparse.ArgumentParser, coding: argparse.ArgumentParser
) -> None:
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
    latents.set_defaults(run=run)


def run(args: argparse.Namespace, console: Console) -> None:
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
