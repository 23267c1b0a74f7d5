"""What the pass schedule of c3's context model costs: the rate of the coded schemes against a
raster-causal ARM (same network, same window, one mask: the whole causal half-window; it cannot
be decoded fast, one position at a time, so it is measured here only, never coded), on a 256x256
crop of kodim01, same seed, schedule and lambda, one thread.

Schemes: ``phases`` (2x2 lattice, 4 passes per grid), ``lattice4`` (4x4 lattice, 16 passes),
``coarse5`` (2x2 lattice, 5x5 window of the coarser grid), ``raster``. Each result has the
latents' rate from the float ARM once the networks are quantized (``latent_bpp``), the networks'
bytes as coded (``network_bpp``) and their sum (``bpp``), the PSNR, and CPU seconds.

    PYTHONPATH=src OMP_NUM_THREADS=1 python eval/c3_passes.py ITERATIONS SCHEME [QUALITY...]  # appends to eval/c3_passes.jsonl
    PYTHONPATH=src python eval/c3_passes.py --summary     # eval/c3_passes.jsonl -> eval/c3_passes.json
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

SCHEMES = {
    "phases": {},
    "lattice4": {"arm_lattice": 4},
    "coarse5": {"arm_coarse_kernel": 5},
    "raster": {"scheme": "raster"},
}
QUALITIES = (2, 4)
LOG = Path(__file__).with_suffix(".jsonl")


def measure(iterations: int, scheme: str, quality: int, crop: str) -> dict:
    x = read_image("/work/shared/data/kodak/kodim01.png")[0][None].float()
    if crop != "full":
        x = x[..., :256, :256]
    lmbda = c3.LAMBDAS[quality]
    t = time.process_time()
    model = c3_fit.fit(
        x, tuple(x.shape[-2:]), lmbda, c3_fit.Schedule(iterations), {**c3.ARCH, **SCHEMES[scheme]}
    )
    with torch.no_grad():
        for y in model.latents:
            y.copy_(torch.round(y))
        steps = c3_fit.choose_steps(model, x, lmbda, c3.WEIGHT_MAX)
        _, bpp, mse = c3_fit.model_loss(model, x, lmbda, c3_fit.hard_round)
    network_bpp = 8 * len(c3.pack_networks(model, steps)) / x[0, 0].numel()
    return {
        "iterations": iterations,
        "crop": crop,
        "scheme": scheme,
        "quality": quality,
        "latent_bpp": bpp.item(),
        "network_bpp": network_bpp,
        "bpp": bpp.item() + network_bpp,
        "psnr": -10 * math.log10(mse.item()),
        "cpu_seconds": time.process_time() - t,
    }


def decode_time(scheme: str, effort: int = 100, repeats: int = 3) -> dict:
    """CPU seconds (best of ``repeats``, one thread) to decode all of kodim01 (768x512) coded with
    ``scheme`` at q2 (a short fit: the decoder's work does not depend on how well it fitted)."""
    x = read_image("/work/shared/data/kodak/kodim01.png")[0]
    codec = c3.C3Codec(quality=2, **SCHEMES[scheme])
    data = codec.encode(x, effort=effort)
    times = []
    for _ in range(repeats):
        t = time.process_time()
        codec.decode(data)
        times.append(time.process_time() - t)
    return {"crop": "full", "scheme": scheme, "decode_cpu_seconds": min(times), "bytes": len(data)}


def rate_at_psnr(points: list[dict], psnr: float, rate: str = "bpp") -> float:
    """The ``rate`` of a scheme at ``psnr``: log-rate interpolated linearly in PSNR between its two qualities."""
    (p0, r0), (p1, r1) = sorted((p["psnr"], math.log(p[rate])) for p in points)
    return math.exp(r0 + (r1 - r0) * (psnr - p0) / (p1 - p0))


def summary() -> None:
    results, decode = {}, {}
    for line in LOG.read_text().splitlines():
        r = json.loads(line)
        if "decode_cpu_seconds" in r:
            decode[r["scheme"]] = r
        else:
            results[f"{r['crop']}-q{r['quality']}-{r['scheme']}"] = r
    over, latent_over = {}, {}
    for crop in ("256x256", "full"):
        if not all(f"{crop}-q{q}-phases" in results for q in QUALITIES):
            continue
        base = [results[f"{crop}-q{q}-phases"] for q in QUALITIES]
        for scheme in SCHEMES:
            if scheme == "phases" or not all(f"{crop}-q{q}-{scheme}" in results for q in QUALITIES):
                continue
            for q in QUALITIES:
                r = results[f"{crop}-q{q}-{scheme}"]
                key = f"{crop}-q{q}-{scheme}"
                over[key] = 100 * (r["bpp"] / rate_at_psnr(base, r["psnr"]) - 1)
                latent_over[key] = 100 * (r["latent_bpp"] / rate_at_psnr(base, r["psnr"], "latent_bpp") - 1)
    out = {
        "image": "kodim01: its 256x256 top-left crop, and all of it (full)",
        "results": results,
        "rate_over_phases_at_equal_psnr_percent": over,
        "latent_rate_over_phases_at_equal_psnr_percent": latent_over,
        "decode": decode,
    }
    Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        summary()
        sys.exit()
    torch.set_num_threads(1)
    if sys.argv[1] == "--decode-time":
        for scheme in sys.argv[2:]:
            result = decode_time(scheme)
            with LOG.open("a") as f:
                f.write(json.dumps(result) + "\n")
            print(json.dumps(result), flush=True)
        sys.exit()
    crop = "full" if "--full" in sys.argv else "256x256"
    args = [a for a in sys.argv[1:] if a != "--full"]
    iterations, scheme = int(args[0]), args[1]
    for quality in [int(q) for q in args[2:]] or QUALITIES:
        result = measure(iterations, scheme, quality, crop)
        with LOG.open("a") as f:
            f.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)
