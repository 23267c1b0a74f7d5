"""bf16 autocast on the CPU (``neurocodec train --bf16``) against float32: one training step of
each image family at its shipped CPU-preview size, same process, interleaved repetitions.

For each model two trainers are built with the same seed, one with ``bf16=True`` and one
without, and both take steps on the same batch (128x128 Kodak crops, batch 8, the crops of
the shipped recipes), in turn, after one warm-up step each. Reported: the median seconds per
step of each and their ratio. bf16 needs a CPU with bf16 units (avx512_bf16 or AMX); elsewhere
it may be slower than float32.

    OMP_NUM_THREADS=1 python eval/bench_train_bf16.py [--reps 5] [--out eval/bench_train_bf16.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import torch

from common import EVAL, KODAK, interleaved, load_average, machine, write_json
from neurocodec.train.data import ImageCrops
from neurocodec.train.trainer import TrainConfig, Trainer

MODELS = {  # the shipped CPU previews' architectures
    "hyperprior": {"N": 64, "M": 96},
    "mlic": {"preset": "tiny"},
    "walloc-image": {"decoder_width": 64, "decoder_blocks": 1, "latent_dim": 24, "hyper_channels": 64},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(KODAK))
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=str(EVAL / "bench_train_bf16.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    batch = ImageCrops(args.data, args.crop).batch(args.batch, torch.Generator().manual_seed(0))
    load_before = load_average()
    rows = {}
    with tempfile.TemporaryDirectory() as workdir:
        for model, arch in MODELS.items():
            steps = {}
            for name, bf16 in (("float32", None), ("bf16", True)):
                config = TrainConfig(model=model, arch=arch, out=workdir, crop=args.crop, bf16=bf16)
                steps[name] = Trainer(config).train_step
            timings = interleaved({name: lambda s=step: s(batch) for name, step in steps.items()}, args.reps,
                                  warmup=1)  # fmt: skip
            median = {name: t.median for name, t in timings.items()}
            rows[model] = {
                "arch": arch,
                "seconds_per_step": median,
                "bf16_over_float32": median["bf16"] / median["float32"],
            }
            print(
                f"{model}: float32 {median['float32']:.3f} s, bf16 {median['bf16']:.3f} s "
                f"({median['float32'] / median['bf16']:.2f}x faster)"
            )
    result = {
        "benchmark": "eval/bench_train_bf16.py",
        "command": "OMP_NUM_THREADS=1 python "
        + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "crop": args.crop,
        "batch": args.batch,
        "threads": 1,
        "reps": args.reps,
        "statistic": "median of the interleaved repetitions, after one warm-up step each",
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_average()},
        "rows": rows,
    }
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
