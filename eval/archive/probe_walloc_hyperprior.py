"""Would a hyperprior pay for WaLLoC's latent? A probe on trained factorized-prior walloc-image weights.

WaLLoC's encoder is linear and fixed once trained, so the question "how much would a mean-scale
hyperprior save over the trained per-channel factorized prior" can be answered without
retraining the codec: train only a hyperprior (:func:`~neurocodec.models.hyperprior.mean_scale_hyperprior`:
``h_a``, a factorized prior on ``z``, the integer ``h_s``) on the frozen latents of training
crops, then measure on Kodak

- the ideal rate (``-log2`` likelihoods) of the factorized prior on ``round(y)``: the trained codec;
- the ideal rate of ``y`` under the hyperprior's Gaussian, coded around its means, plus ``z``;
- the PSNR of each latent through the trained decoder (rounding around the means moves
  ``y_hat`` a little, so the distortion is reported too).

Ideal rates on both sides: the coder's overhead is about the same for both (below 1 %).
The decoder is not fine-tuned to the new quantization, so this underestimates what a codec
trained end to end with a hyperprior would reach.

    python eval/archive/probe_walloc_hyperprior.py --run runs/wi-q2 --out eval/archive/probe_walloc_hyperprior.json

(``runs/wi-q2`` is the factorized q3 run of docs/training.md's WaLLoC recipe, whose weights
were shipped as walloc-image q3 before the hyperprior.)

Archived: the probe that decided to give WaLLoC a hyperprior, which it has had since; it
needs a factorized-prior run (``runs/wi-q2``) that is not kept. See eval/README.md and CHANGELOG.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from neurocodec.codecs.base import pad_to_multiple
from neurocodec.codecs.walloc import WaLLoCImageCodec
from neurocodec.entropy.latent_codecs import HyperpriorLatentCodec
from neurocodec.evaluation.metrics import psnr
from neurocodec.io import image_files
from neurocodec.io.image import read_image
from neurocodec.models.hyperprior import mean_scale_hyperprior
from neurocodec.train.checkpoint import load_checkpoint, model_weights


def factorized_codec(run: str) -> WaLLoCImageCodec:
    """The walloc-image codec of a training run with the factorized prior (its final weights)."""
    tensors, meta = load_checkpoint(Path(run) / "checkpoint")
    arch = meta["config"]["arch"]
    if arch.get("hyperprior"):
        raise SystemExit(f"{run} already has a hyperprior: give a factorized-prior run")
    codec = WaLLoCImageCodec(**arch).eval()
    codec.model.load_state_dict(model_weights(tensors)[0])
    return codec


def bits(likelihoods: torch.Tensor) -> float:
    return float(-torch.log2(likelihoods.detach().double()).sum())


@torch.no_grad()
def training_latents(codec, files: list[Path], crop: int, per_image: int, seed: int) -> torch.Tensor:
    """``per_image`` random ``crop``-sized crops of each file, through the frozen encoder."""
    g = torch.Generator().manual_seed(seed)
    m = codec.model
    latents = []
    for path in files:
        x, _ = read_image(path)
        _, h, w = x.shape
        if min(h, w) < crop:
            continue
        for _ in range(per_image):
            top = int(torch.randint(0, h - crop + 1, (1,), generator=g))
            left = int(torch.randint(0, w - crop + 1, (1,), generator=g))
            patch = x[None, :, top : top + crop, left : left + crop]
            latents.append(m.encode_latent(m.analysis(patch)))
    return torch.cat(latents)


def train(
    prior: HyperpriorLatentCodec, latents: torch.Tensor, steps: int, batch: int, lr: float, seed: int
) -> list:
    g = torch.Generator().manual_seed(seed)
    main = [p for n, p in prior.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in prior.named_parameters() if n.endswith("quantiles")]
    opt, aux_opt = torch.optim.Adam(main, lr=lr), torch.optim.Adam(aux, lr=1e-3)
    log = []
    for step in range(1, steps + 1):
        if step == int(steps * 0.9):
            for group in opt.param_groups:
                group["lr"] = lr / 10
        y = latents[torch.randint(0, len(latents), (batch,), generator=g)]
        _, likelihoods = prior(y, mode="noise")
        rate = sum(bits(lik) for lik in likelihoods.values()) / y.numel()  # bits per latent element
        loss = -sum(torch.log2(lik).sum() for lik in likelihoods.values()) / y.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        aux_loss = prior.entropy_bottleneck.aux_loss()
        aux_opt.zero_grad()
        aux_loss.backward()
        aux_opt.step()
        if step % 250 == 0:
            log.append({"step": step, "bits_per_element": round(rate, 4)})
            print(log[-1], flush=True)
    return log


@torch.no_grad()
def measure(codec, prior: HyperpriorLatentCodec, path: Path) -> dict:
    x, _ = read_image(path)
    m = codec.model
    _, h, w = x.shape
    y = m.encode_latent(m.analysis(pad_to_multiple(x[None], m.step, "replicate")))
    pixels = h * w

    def quality(y_hat: torch.Tensor) -> float:
        x_hat = m.synthesis(m.decode_latent(y_hat))[..., :h, :w]
        return psnr(x[None], x_hat)

    y_fact, lik_fact = m.latent_codec.entropy_bottleneck(y, "ste")
    y_hyper, likelihoods = prior(y, mode="ste")
    return {
        "file": path.name,
        "factorized": {"bpp": bits(lik_fact) / pixels, "psnr": quality(y_fact)},
        "hyperprior": {
            "bpp": (bits(likelihoods["y"]) + bits(likelihoods["z"])) / pixels,
            "bpp_z": bits(likelihoods["z"]) / pixels,
            "psnr": quality(y_hyper),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", default="runs/wi-q2", help="a factorized walloc-image run (runs/wi-q2: the recipe's q3)"
    )
    parser.add_argument("--train", default="../shared/data/train")
    parser.add_argument("--kodak", default="../shared/data/kodak")
    parser.add_argument("--hidden", type=int, default=64, help="N: the hyper-latent's channels")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--per-image", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="eval/archive/probe_walloc_hyperprior.json")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    codec = factorized_codec(args.run)
    t0 = time.perf_counter()
    latents = training_latents(codec, image_files(args.train), args.crop, args.per_image, args.seed)
    print(f"{len(latents)} training latents {tuple(latents.shape[1:])} in {time.perf_counter() - t0:.0f} s")
    prior = mean_scale_hyperprior(codec.model.latent_dim, args.hidden)
    t0 = time.perf_counter()
    log = train(prior, latents, args.steps, args.batch, args.lr, args.seed)
    train_s = time.perf_counter() - t0
    prior.eval()
    rows = [measure(codec, prior, path) for path in image_files(args.kodak)]

    def mean(kind: str, key: str) -> float:
        return sum(r[kind][key] for r in rows) / len(rows)

    fact_bpp, hyper_bpp = mean("factorized", "bpp"), mean("hyperprior", "bpp")
    summary = {
        "factorized": {"bpp": round(fact_bpp, 4), "psnr": round(mean("factorized", "psnr"), 3)},
        "hyperprior": {
            "bpp": round(hyper_bpp, 4),
            "bpp_z": round(mean("hyperprior", "bpp_z"), 4),
            "psnr": round(mean("hyperprior", "psnr"), 3),
        },
        "rate_change_percent": round(100 * (hyper_bpp / fact_bpp - 1), 2),
    }
    print(json.dumps(summary, indent=1))
    result = {
        "benchmark": "eval/archive/probe_walloc_hyperprior.py",
        "command": "python " + " ".join(["eval/archive/probe_walloc_hyperprior.py", *(argv or sys.argv[1:])]),
        "codec": f"walloc-image with the factorized prior, run {args.run}; decoder and encoder frozen",
        "hyperprior": {"N": args.hidden, "model": "models.hyperprior.mean_scale_hyperprior (integer h_s)"},
        "training": {
            **{k: getattr(args, k) for k in ("crop", "per_image", "steps", "batch", "lr", "seed")},
            "latents": len(latents),
            "seconds": round(train_s),
        },
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
        "summary_kodak_mean": summary,
        "training_log": log,
        "files": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
