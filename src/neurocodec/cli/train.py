"""``neurocodec train``: train a codec with the rate-distortion harness."""

from __future__ import annotations

import argparse

from neurocodec.cli.common import Console, UsageError, number
from neurocodec.errors import ConfigError


def add_parser(
    commands: argparse._SubParsersAction, verbose: argparse.ArgumentParser, coding: argparse.ArgumentParser
) -> None:
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
    _add_data_arguments(train)
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
    train.set_defaults(run=run)


def _add_data_arguments(train: argparse.ArgumentParser) -> None:
    """The batch and its crops, clips and joint image data."""
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--crop", type=int, default=256, help="side of the image and video crops")
    train.add_argument("--samples", type=int, default=16384, help="length of the audio clips")
    train.add_argument("--frames", type=int, default=4, help="length of the video clips")
    train.add_argument(
        "--image-data",
        metavar="DIR",
        default="",
        help="video models that code images too (video-vae): a folder of images for joint training",
    )
    train.add_argument(
        "--image-every",
        type=int,
        default=0,
        metavar="K",
        help="with --image-data: every K-th step trains on a batch of image crops instead of clips",
    )
    train.add_argument(
        "--captions",
        metavar="FILE",
        default="",
        help="text-guided video models (an --arch with text_model=static): a JSON file of "
        "{video file name: caption}, embedded by that text model and fed with each clip",
    )


def _arch_value(text: str) -> int | float | str:
    """An ``--arch`` value: a number, or a name (``preset=tiny``)."""
    try:
        return number(text)
    except ValueError:
        if not text.isidentifier():
            raise
        return text


def parse_arch(text: str) -> dict[str, int | float | str]:
    """``--arch N=128,M=192`` (or ``preset=tiny``) as the architecture dict."""
    try:
        pairs = [pair.split("=") for pair in text.split(",")]
        return {key.strip(): _arch_value(value.strip()) for key, value in pairs}
    except ValueError:
        raise UsageError(f"--arch must look like N=128,M=192 or preset=tiny, not {text!r}") from None


def run(args: argparse.Namespace, console: Console) -> None:
    from neurocodec.registry import trainable
    from neurocodec.train.distributed import leave
    from neurocodec.train.trainer import TrainConfig, Trainer

    try:
        family = trainable(args.model)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    arch = parse_arch(args.arch) if args.arch else dict(family.arch)
    if args.val and args.val_split:
        raise UsageError("give --val or --val-split, not both")
    config = TrainConfig(
        model=args.model, arch=arch, data=args.data, out=args.out, lmbda=args.lmbda, steps=args.steps,
        batch_size=args.batch_size, crop=args.crop, samples=args.samples, frames=args.frames,
        image_data=args.image_data, image_every=args.image_every, captions=args.captions, distortion=args.distortion, lr=args.lr, lr_schedule=args.lr_schedule, warmup=args.warmup,
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
