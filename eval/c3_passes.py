"""What decoding in four passes costs: the training rate of c3's 2x2-phase context model against
a raster-causal one (same network, same window, one mask: the whole causal half-window), on a
256x256 crop of kodim01, same seed, schedule and lambda. A raster ARM cannot be decoded fast
(one position at a time), so it is measured here only, never coded.

    PYTHONPATH=src OMP_NUM_THREADS=1 python eval/c3_passes.py [iterations]
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from neurocodec.codecs import c3, c3_fit
from neurocodec.io.image import read_image

torch.set_num_threads(1)
iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
x = read_image("/work/shared/data/kodak/kodim01.png")[0][None, :, :256, :256].float()
results = {}
for quality in (2, 4):
    lmbda = c3.LAMBDAS[quality]
    for scheme in ("phases", "raster"):
        t = time.perf_counter()
        model = c3_fit.fit(x, (256, 256), lmbda, c3_fit.Schedule(iterations), {**c3.ARCH, "scheme": scheme})
        with torch.no_grad():
            _, bpp, mse = c3_fit.model_loss(model, x, lmbda, c3_fit.hard_round)
        results[f"q{quality}-{scheme}"] = {
            "latent_bpp": bpp.item(),
            "psnr": -10 * math.log10(mse.item()),
            "seconds": time.perf_counter() - t,
        }
        print(json.dumps(results), flush=True)
for quality in (2, 4):
    p, r = results[f"q{quality}-phases"], results[f"q{quality}-raster"]
    results[f"q{quality}-phases_over_raster_rate_percent"] = 100 * (p["latent_bpp"] / r["latent_bpp"] - 1)
out = {"iterations": iterations, "crop": "kodim01 256x256 top-left", "results": results}
Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps(out, indent=1))
