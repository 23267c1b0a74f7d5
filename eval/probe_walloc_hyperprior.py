"""Would a hyperprior pay for WaLLoC's latent? A probe on the shipped walloc-image weights.

WaLLoC's encoder is linear and fixed once trained, so the question "how much would a mean-scale
hyperprior save over the shipped per-channel factorized prior" can be answered without
retraining the codec: train only a hyperprior (``h_a``, a factorized prior on ``z`` and the
integer ``h_s`` of :mod:`neurocodec.models.hyperprior`) on the frozen latents of training
crops, then measure on Kodak

- the ideal rate (``-log2`` likelihoods) of the factorized prior on ``round(y)``: the shipped codec;
- the ideal rate of ``y`` under the hyperprior's Gaussian, coded around its means, plus ``z``;
- the PSNR of each latent through the shipped decoder (rounding around the means moves
  ``y_hat`` a little, so the distortion is reported too).

Ideal rates on both sides: the coder's overhead is about the same for both (below 1 %).
The decoder is not fine-tuned to the new quantization, so this underestimates what a codec
trained end to end with a hyperprior would reach.

    python eval/probe_walloc_hyperprior.py --quality 3 --out eval/probe_walloc_hyperprior.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

import neurocodec as nc
from neurocodec.codecs.base import pad_to_multiple
from neurocodec.entropy.models.factorized import FactorizedPrior
from neurocodec.entropy.models.gaussian import GaussianConditional
from neurocodec.io.image import read_image
from neurocodec.metrics import psnr
from neurocodec.models.hyperprior import HyperSynthesis
from neurocodec.models.integer import round_ste
from neurocodec.models.layers import conv
from neurocodec.train.data import image_files


class LatentHyperprior(nn.Module):
    """A mean-scale hyperprior for a fixed ``M``-channel latent: ``y -> (y_hat, likelihoods)``."""

    def __init__(self, M: int, N: int):
        super().__init__()
        self.h_a = nn.Sequential(
            conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True), conv(N, N)
        )
        self.entropy_bottleneck = FactorizedPrior(N)
        self.gaussian = GaussianConditional()
        scales = torch.as_tensor(self.gaussian.scale_table)
        self.h_s = HyperSynthesis(N, M, num_scales=len(scales))
        self.register_buffer("log_scale0", scales[0].log().float(), persistent=False)
        self.register_buffer(
            "log_scale_step", ((scales[-1] / scales[0]).log() / (len(scales) - 1)).float(), persistent=False
        )

    def forward(self, y: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.h_a(y)
        _, z_likelihoods = self.entropy_bottleneck(z, mode)
        index, means = self.h_s(round_ste(z))
        scales = torch.exp(self.log_scale0 + index * self.log_scale_step)
        _, y_likelihoods = self.gaussian(y, scales, means, mode)
        return self.gaussian.quantize(y, "ste", means), y_likelihoods, z_likelihoods


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
    prior: LatentHyperprior, latents: torch.Tensor, steps: int, batch: int, lr: float, seed: int
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
        _, y_lik, z_lik = prior(y, "noise")
        rate = (bits(y_lik) + bits(z_lik)) / y.numel()  # bits per latent element, for the log
        loss = -(torch.log2(y_lik).sum() + torch.log2(z_lik).sum()) / y.numel()
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
def measure(codec, prior: LatentHyperprior, path: Path) -> dict:
    x, _ = read_image(path)
    m = codec.model
    _, h, w = x.shape
    y = m.encode_latent(m.analysis(pad_to_multiple(x[None], m.step, "replicate")))
    pixels = h * w

    def quality(y_hat: torch.Tensor) -> float:
        x_hat = m.synthesis(m.decode_latent(y_hat))[..., :h, :w]
        return psnr(x[None], x_hat)

    y_fact, lik_fact = m.entropy_bottleneck(y, "ste")
    y_hyper, y_lik, z_lik = prior(y, "ste")
    return {
        "file": path.name,
        "factorized": {"bpp": bits(lik_fact) / pixels, "psnr": quality(y_fact)},
        "hyperprior": {
            "bpp": (bits(y_lik) + bits(z_lik)) / pixels,
            "bpp_z": bits(z_lik) / pixels,
            "psnr": quality(y_hyper),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--train", default="../shared/data/train")
    parser.add_argument("--kodak", default="../shared/data/kodak")
    parser.add_argument("--hidden", type=int, default=64, help="N: the hyper-latent's channels")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--per-image", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="eval/probe_walloc_hyperprior.json")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    codec = nc.load("walloc-image", args.quality)
    t0 = time.perf_counter()
    latents = training_latents(codec, image_files(args.train), args.crop, args.per_image, args.seed)
    print(f"{len(latents)} training latents {tuple(latents.shape[1:])} in {time.perf_counter() - t0:.0f} s")
    prior = LatentHyperprior(codec.model.latent_dim, args.hidden)
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
        "benchmark": "eval/probe_walloc_hyperprior.py",
        "command": "python " + " ".join(["eval/probe_walloc_hyperprior.py", *(argv or sys.argv[1:])]),
        "codec": f"walloc-image q{args.quality} (shipped), decoder and encoder frozen",
        "hyperprior": {"N": args.hidden, "h_s": "integer HyperSynthesis (models/hyperprior.py)"},
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
