"""What the hand-written backward passes of c3's upsampler and ARM windows buy
(``models/c3.py``: ``_UpsampleAxis``, ``_ShiftedViews``): CPU seconds per fitting step on all of
kodim01 (the 16-wide ARM of quality 3 up, random latents), with them and with autograd's
backward of the same forward arithmetic, the two taking turns in one process so that the
machine's load falls on both alike.

    OMP_NUM_THREADS=1 python eval/c3_backward_ab.py [--rounds 6] [--steps 4] [--out eval/c3_backward_ab.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import KODIM01, command, machine, write_json
from neurocodec.codecs import c3, c3_fit
from neurocodec.codecs.base import pad_to_multiple
from neurocodec.io.image import read_image
from neurocodec.models import c3 as models_c3

WAYS = {
    "hand_written": (models_c3._upsample_axis, models_c3.shifted_views),
    "autograd": (models_c3._upsample_axis_values, models_c3._shifted_views_values),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--out", default="eval/c3_backward_ab.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = read_image(KODIM01)[0][None]
    model = models_c3.ImageModel(*pad_to_multiple(x, c3.PADDING).shape[-2:], **{**c3.ARCH, **c3.RICH_ARCH})
    with torch.no_grad():
        for y in model.latents:
            y.normal_()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    quantize = c3_fit._soft(0.2, 1.5)

    def step() -> None:
        loss = c3_fit.model_loss(model, x, c3.LAMBDAS[3], quantize)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()

    seconds: dict[str, list[float]] = {name: [] for name in WAYS}
    for _ in range(args.rounds):
        for name, (upsample, views) in WAYS.items():
            models_c3._upsample_axis, models_c3.shifted_views = upsample, views
            step()  # untimed
            t0 = time.process_time()
            for _ in range(args.steps):
                step()
            seconds[name].append((time.process_time() - t0) / args.steps)
    medians = {name: statistics.median(v) for name, v in seconds.items()}
    record = {
        "benchmark": "eval/c3_backward_ab.py",
        "command": command(),
        "machine": machine(),
        "image": "kodim01 (whole)",
        "arch": {**c3.ARCH, **c3.RICH_ARCH},
        "cpu_s_per_step": {name: [round(s, 4) for s in v] for name, v in seconds.items()},
        "median_cpu_s_per_step": {name: round(m, 4) for name, m in medians.items()},
        "hand_written_over_autograd": round(medians["hand_written"] / medians["autograd"], 3),
    }
    write_json(args.out, record)
    print(record["median_cpu_s_per_step"], record["hand_written_over_autograd"])


if __name__ == "__main__":
    main()
