"""The probes that chose c3's raster context model (archived: the 4-pass scheme, ``--arch
'{"scheme": "raster"}'`` and the ``noise``/``clip`` schedule options it ran with are gone, so it no
longer runs). One fit on kodim01's 256x256 top-left crop; the latents' rate under the float ARM
after the networks are quantized, plus the coded networks for the 4-pass scheme. Rows:
``c3_probe_training_rate.jsonl`` (its ``code`` field names the commit; the noise and clip
options were a local patch of ``c3_fit.Schedule``: Gaussian noise of std -a, and clipping of the
networks' gradient norm)."""

import argparse
import json
import math
import time

import torch

from neurocodec.codecs import c3_fit
from neurocodec.codecs.c3 import ARCH, WEIGHT_MAX, pack_networks
from neurocodec.io.image import read_image
from neurocodec.models.c3 import LATENT_MAX

p = argparse.ArgumentParser()
p.add_argument("--it", type=int, default=2000)
p.add_argument("--cc", type=float, default=0.004, help="Cool-chic lambda")
p.add_argument("--crop", type=int, default=256)
p.add_argument("--img", default="kodim01")
p.add_argument("--arch", default="{}")
p.add_argument("--sched", default="{}")
p.add_argument("--tag", default="")
a = p.parse_args()
torch.set_num_threads(1)
lmbda = 1 / (a.cc * 255**2)
x = read_image(f"/work/shared/data/kodak/{a.img}.png")[0]
if a.crop:
    x = x[:, : a.crop, : a.crop]
x = x[None].float().contiguous()
arch = {**ARCH, **json.loads(a.arch)}
sched = c3_fit.Schedule(a.it, **json.loads(a.sched))
h, w = x.shape[-2:]
pad = (-(-h // 64) * 64, -(-w // 64) * 64)
t = time.process_time()
model = c3_fit.fit(x, pad, lmbda, sched, arch)
fit_s = time.process_time() - t
with torch.no_grad():
    _, bpp_soft, mse_soft = c3_fit.model_loss(model, x, lmbda, c3_fit.hard_round)
    for y in model.latents:
        y.copy_(torch.round(y).clamp(-LATENT_MAX, LATENT_MAX))
    if arch.get("scheme", "phases") == "phases":
        steps = c3_fit.choose_steps(model, x, lmbda, WEIGHT_MAX)
        net = len(pack_networks(model, steps))
    else:
        steps, net = None, float("nan")
    _, bpp, mse = c3_fit.model_loss(model, x, lmbda, c3_fit.hard_round)
r = dict(
    tag=a.tag,
    img=a.img,
    crop=a.crop,
    it=a.it,
    cc=a.cc,
    arch=a.arch,
    sched=a.sched,
    latent_bpp=float(bpp),
    net_bpp=net * 8 / (h * w),
    bpp=float(bpp) + net * 8 / (h * w),
    psnr=-10 * math.log10(float(mse)),
    psnr_prequant=-10 * math.log10(float(mse_soft)),
    fit_cpu_s=fit_s,
    s_per_it=fit_s / a.it,
)
print(json.dumps(r))
open("/tmp/exp/results.jsonl", "a").write(json.dumps(r) + "\n")
