#!/usr/bin/env python
"""Context-schedule benchmark: coded size vs ideal, encode/decode time, per schedule.

Workload: one latent of M x H x W (default 192 x 32 x 48, a 512 x 768 image), drawn from the
model itself (``ContextSchedule.sample``: each step's elements from ``N(mean, table scale)``
given the earlier steps), so the model's likelihoods describe the data. The hyper-prior
output comes from a random integer ``HyperSynthesis`` (N = 128) on random integer ``z``; the
context networks are random :class:`~neurocodec.models.context.ContextPrior` ones
(32 context channels, 64 hidden), the tables those of a ``GaussianConditional`` (64 scales).
Slices: ELIC's uneven 16, 16, 32, 64, M - 128.

Per schedule: the stream size against the ideal size (the summed ``-log2`` of the training
pass's likelihoods, float64, ``mode="ste"``), and the best of ``--reps`` wall-clock times of
``compress`` and ``decompress`` (parameter networks included; the hyper-synthesis excluded,
as it is the same for every schedule), at 1 torch thread, with the context networks on the
float64 reference path (``prior``) and on the int8 path (``prior.forward_integer``), which
write the same bytes. Every round trip is checked; one more decode measures the time spent
in the parameter networks (``decode_networks_ms``).
No timing targets: the numbers are reported.

Usage::

    python eval/bench_schedules.py                 # writes eval/bench_schedules.json
    python eval/bench_schedules.py --quick --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import EVAL, best_of, command, machine, write_json
from neurocodec.entropy.models import ContextSchedule, GaussianConditional
from neurocodec.models.context import ContextPrior, hyper_features
from neurocodec.models.hyperprior import HyperSynthesis

SEED = 12345
N_HYPER = 128


def elic_slices(m: int) -> list[int]:
    """ELIC's uneven slices 16, 16, 32, 64, M - 128 (fewer when M is small)."""
    sizes, left = [], m
    for s in (16, 16, 32, 64):
        if left <= s:
            break
        sizes.append(s)
        left -= s
    return [*sizes, left]


class TimedParameters:
    """The parameter function, timed: ``seconds`` accumulates the time spent in the networks."""

    def __init__(self, prior):
        self.prior, self.seconds = prior, 0.0

    def __call__(self, step, y_hat, hyper):
        t = time.perf_counter()
        out = self.prior(step, y_hat, hyper)
        self.seconds += time.perf_counter() - t
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--size", type=int, nargs=3, default=(192, 32, 48), metavar=("M", "H", "W"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 64 x 16 x 16 latent, 1 repetition")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON output (default eval/bench_schedules.json)"
    )
    args = parser.parse_args()
    m, h, w = (64, 16, 16) if args.quick else args.size
    reps = 1 if args.quick else args.reps
    out_path = args.out or (None if args.quick else EVAL / "bench_schedules.json")

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    conditional = GaussianConditional()
    conditional.update_tables()
    h_s = HyperSynthesis(N_HYPER, m, num_scales=64)
    z = torch.round(3 * torch.randn(1, N_HYPER, h // 4, w // 4))
    with torch.no_grad():
        hyper = hyper_features(*h_s(z.to(torch.float64)))
    slices = elic_slices(m)
    schedules = [
        ContextSchedule.single_step(m),
        ContextSchedule.channel_slices(slices),
        ContextSchedule.checkerboard(m),
        ContextSchedule.sliced_checkerboard(slices),
    ]
    rows = []
    for schedule in schedules:
        torch.manual_seed(SEED + 1)
        prior = ContextPrior(schedule, hyper.shape[1], 64).eval()
        y = schedule.sample(prior, hyper, conditional, (1, m, h, w), torch.Generator().manual_seed(SEED + 2))
        y = y.to(torch.float32)
        with torch.no_grad():
            out = schedule.likelihoods(y.double(), prior, hyper, conditional, mode="ste")
        ideal = float(-torch.log2(out.likelihoods).sum()) / 8
        for path, params in (("float64", prior), ("int8", prior.forward_integer)):
            enc_s, streams = best_of(
                lambda s=schedule, p=params, y=y: s.compress_streams(y, p, hyper, conditional), reps
            )
            dec_s, y_hat = best_of(
                lambda s=schedule, p=params, st=streams: s.decompress_streams(
                    st, p, hyper, conditional, (h, w)
                ),
                reps,
            )
            timed = TimedParameters(params)  # one more decode: how much of it is the networks
            schedule.decompress_streams(streams, timed, hyper, conditional, (h, w))
            if not torch.equal(y_hat, out.y_hat):
                raise RuntimeError(f"{schedule.name}, {path} path: the round trip is not exact")
            size = len(streams[0])
            row = {
                "schedule": schedule.name,
                "slices": list(schedule.slice_sizes),
                "steps": len(schedule.steps),
                "prior_path": path,
                "bytes": size,
                "ideal_bytes": round(ideal, 1),
                "overhead_pct": round(100 * (size / ideal - 1), 3),
                "bpe": round(8 * size / (m * h * w), 4),
                "encode_ms": round(1000 * enc_s, 1),
                "decode_ms": round(1000 * dec_s, 1),
                "decode_networks_ms": round(1000 * timed.seconds, 1),
            }
            rows.append(row)
            print(
                f"{row['schedule']:>20} {row['steps']:2d} steps {path:>7}  {size:8d} B  ideal {ideal:10.1f} B "
                f"({row['overhead_pct']:+.3f} %)  enc {row['encode_ms']:7.1f} ms  dec {row['decode_ms']:7.1f} ms "
                f"(networks {row['decode_networks_ms']:.1f} ms)"
            )
    result = {
        "benchmark": "eval/bench_schedules.py",
        "command": command(),
        "latent": [m, h, w],
        "context_prior": {
            "context_channels": 32,
            "hidden_channels": 64,
            "hyper_channels": int(hyper.shape[1]),
        },
        "torch_threads": 1,
        "reps": reps,
        "machine": machine(),
        "rows": rows,
    }
    if out_path is not None:
        write_json(out_path, result, indent=2)


if __name__ == "__main__":
    main()
