"""Training-step speed: our `hyperprior` through the harness vs CompressAI's `mbt2018-mean`
driven as its `examples/train.py` drives it, same machine, same process, same batch.

Both models have the same architecture and channel counts (N=128, M=192). One step is what a
training loop does per batch, forward + rate-distortion loss + backward + gradient clipping at
1.0 + Adam step + the auxiliary (quantiles) loss, its backward and its Adam step:

- ours: :meth:`neurocodec.train.trainer.Trainer.train_step` (MSE loss, default settings), the
  same with ``channels_last=True`` (to measure whether channels-last helps here), and with
  ``bf16=True`` (bf16 autocast of the transforms, ``neurocodec train --bf16``; on the CPU it
  needs bf16 units, which this AMD EPYC has: avx512_bf16);
- CompressAI: ``compressai.zoo.mbt2018_mean(quality=Q, pretrained=False)`` with
  ``RateDistortionLoss(lmbda)`` and the two Adam optimizers built as ``configure_optimizers``
  in its ``examples/train.py`` builds them, and its ``train_one_epoch`` loop body.

Every variant gets the same batch (random 256x256 crops of Kodak images, flips, seeded). The
reps are interleaved (A, B, C, A, B, C, ...) after one warm-up step each, so that load from
other processes on a shared machine hits every variant alike. Each step is timed twice: wall
clock, and the CPU time of this process (``time.process_time``), which on a CPU shared with
other jobs counts only the work of this one (with one thread it is the step's compute time;
on a GPU only wall time means anything). The results are, per clock, the median seconds per
step of each variant and, more robust to a load that drifts, the median over the reps of
each rep's ratio to CompressAI's step of the same rep.

    OMP_NUM_THREADS=1 python eval/bench_train.py [--threads 1] [--batch 8] [--crop 256] [--reps 3]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile

import torch

from common import EVAL, KODAK, interleaved, load_average, machine, write_json

LAMBDA = 0.0130  # mbt2018-mean quality 4, CompressAI's MSE lambda
THEIRS = "compressai mbt2018-mean"


def ours(channels_last: bool, workdir: str, bf16: bool | None = None):
    from neurocodec.train.trainer import TrainConfig, Trainer

    config = TrainConfig(
        arch={"N": 128, "M": 192}, lmbda=LAMBDA, out=workdir, channels_last=channels_last, bf16=bf16
    )
    trainer = Trainer(config)
    return trainer.model, trainer.train_step


def compressai_step():
    """CompressAI's examples/train.py, the parts that run per batch."""
    from compressai.losses import RateDistortionLoss
    from compressai.zoo import mbt2018_mean

    net = mbt2018_mean(quality=4, pretrained=False)
    net.train()
    criterion = RateDistortionLoss(lmbda=LAMBDA)
    # configure_optimizers(net, args)
    parameters = {n for n, p in net.named_parameters() if not n.endswith(".quantiles") and p.requires_grad}
    aux_parameters = {n for n, p in net.named_parameters() if n.endswith(".quantiles") and p.requires_grad}
    params = dict(net.named_parameters())
    optimizer = torch.optim.Adam((params[n] for n in sorted(parameters)), lr=1e-4)
    aux_optimizer = torch.optim.Adam((params[n] for n in sorted(aux_parameters)), lr=1e-3)

    def step(d: torch.Tensor) -> dict:
        # train_one_epoch, the body of its loop
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        out_net = net(d)
        out_criterion = criterion(out_net, d)
        out_criterion["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        aux_loss = net.aux_loss()
        aux_loss.backward()
        aux_optimizer.step()
        return {
            "loss": float(out_criterion["loss"].detach()),
            "bpp": float(out_criterion["bpp_loss"].detach()),
        }

    return net, step


def summarize(times: dict[str, list[float]]) -> dict:
    """Median seconds per step, their ratio to CompressAI's, the median of per-rep ratios."""
    reference = times[THEIRS]
    medians = {name: statistics.median(t) for name, t in times.items()}
    paired = {
        name: statistics.median(a / b for a, b in zip(t, reference, strict=True)) for name, t in times.items()
    }
    return {
        "seconds_per_step": {name: round(m, 4) for name, m in medians.items()},
        "all_seconds": {name: [round(x, 4) for x in t] for name, t in times.items()},
        "ratio_of_medians": {name: round(m / medians[THEIRS], 3) for name, m in medians.items()},
        "median_paired_ratio": {name: round(r, 3) for name, r in paired.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data", default=str(KODAK))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(EVAL / "bench_train.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_start = load_average()  # other jobs on the machine: the context of the wall times

    from neurocodec.train.data import ImageCrops

    batch = (
        ImageCrops(args.data, args.crop).batch(args.batch, torch.Generator().manual_seed(0)).to(args.device)
    )
    with tempfile.TemporaryDirectory() as workdir:
        variants = {}
        for name, build in (
            ("neurocodec hyperprior", lambda: ours(False, workdir)),
            ("neurocodec hyperprior, channels-last", lambda: ours(True, workdir)),
            ("neurocodec hyperprior, bf16 autocast", lambda: ours(False, workdir, bf16=True)),
            (THEIRS, compressai_step),
        ):
            torch.manual_seed(0)
            model, step = build()
            model.to(args.device)
            variants[name] = step
        sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
        timings = interleaved({name: lambda s=step: s(batch) for name, step in variants.items()}, args.reps, sync,
                              warmup=1)  # fmt: skip
        times = {name: t.wall for name, t in timings.items()}
        cpu_times = {name: t.cpu for name, t in timings.items()}

    summary = {clock: summarize(t) for clock, t in (("wall", times), ("cpu", cpu_times))}
    result = {
        "benchmark": "one training step (forward, R-D loss, backward, clip 1.0, Adam, aux loss + Adam)",
        "command": shlex.join(
            ["OMP_NUM_THREADS=" + str(args.threads), "python", "eval/bench_train.py", *sys.argv[1:]]
        ),
        "batch": args.batch,
        "crop": args.crop,
        "threads": args.threads,
        "reps": args.reps,
        "device": args.device,
        "machine": machine(args.device),
        "load_average": {"start": load_start, "end": load_average()},
        "wall": summary["wall"],
        "cpu": summary["cpu"],
    }
    write_json(args.out, result)
    for clock, numbers in summary.items():
        for name, seconds in numbers["seconds_per_step"].items():
            print(
                f"{clock}: {name}: {seconds:.3f} s/step, {numbers['ratio_of_medians'][name]:.3f}x CompressAI's "
                f"(median paired ratio {numbers['median_paired_ratio'][name]:.3f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
