"""How closely RECOMBINER's audio networks can fit speech with no rate term (beta 0): the
architecture's reach, apart from what the learned prior makes cheap.

32 random crops of the 16-kHz training speech (``neurocodec.train.recombiner.training_segments``,
seed 1), an untrained prior (N(0, 1), ``A`` at SIREN's initialisation), each crop's posterior fitted
by Adam at the codec's learning rate for ``--steps``; prints and writes the SNR every fifth of the way.

    OMP_NUM_THREADS=1 python eval/recombiner_capacity.py --steps 500 --label ours
    OMP_NUM_THREADS=1 python eval/recombiner_capacity.py --steps 500 --label paper-width \\
        --arch patch=800 lpe_channels=128 lpe_width=64
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from common import DATA, append_row
from neurocodec.codecs.recombiner import LR
from neurocodec.models.recombiner import AUDIO_ARCH, Posterior, Recombiner, elbo_loss, posterior_optimizer
from neurocodec.train.recombiner import training_segments

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--arch", nargs="*", default=[], metavar="NAME=N")
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", type=Path, default=HERE / "recombiner_capacity.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    arch = dict(AUDIO_ARCH)
    for item in args.arch:
        name, value = item.split("=")
        arch[name] = int(value)
    model = Recombiner(**arch)
    model.requires_grad_(False)
    speech = DATA / "audio" / "speech"
    x = training_segments(speech, 32, arch["patch"], 1, ["librispeech_5703-47212-0000.wav"], rate=16000)
    q = Posterior(model, len(x), init_noise=1.0)
    opt = posterior_optimizer(q, LR)
    power = (x**2).mean().item()
    trace, t0 = [], time.perf_counter()
    for i in range(args.steps):
        loss, mse, _ = elbo_loss(model, q, x, 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (i + 1) % max(1, args.steps // 5) == 0:
            trace.append({"step": i + 1, "snr": round(10 * math.log10(power / mse.item()), 2)})
            print(trace[-1], flush=True)
    append_row(
        args.out,
        {"label": args.label, "arch": arch, "steps": args.steps, "trace": trace,
         "seconds": round(time.perf_counter() - t0, 1)},
    )  # fmt: skip


if __name__ == "__main__":
    main()
