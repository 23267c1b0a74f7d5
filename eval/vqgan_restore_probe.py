"""How should a vqgan decoder fill the positions of lost packets? MS-SSIM lost on three Kodak
images (3 of 16 packets dropped, as in vqgan_kodak.py) by: the known neighbours' mean codeword,
raw, normalized or snapped to the nearest codeword; and (q10) the context transformer's most
probable index or its expected codeword. Also the chroma spread of the q10 reconstruction.

    OMP_NUM_THREADS=2 python eval/vqgan_restore_probe.py
"""

import random

import torch
import torch.nn.functional as F

import neurocodec as nc
from common import EVAL, KODAK, machine, write_json
from neurocodec.entropy.latent_codecs.vector import packet_of
from neurocodec.evaluation.metrics import ms_ssim
from neurocodec.io.image import read_image

result = {"command": "OMP_NUM_THREADS=2 python eval/vqgan_restore_probe.py", "ms_ssim_lost": {}}
for q in (8, 10):
    codec = nc.load("vqgan", quality=q)
    lc = codec.model.latent_codec
    codes = lc.codebook.codes().float()
    res = {}
    for name in ("kodim03", "kodim23", "kodim05"):
        x = read_image(KODAK / f"{name}.png")[0]
        h, w = x.shape[1] // 16, x.shape[2] // 16
        with torch.no_grad():
            idx = lc.quantize(codec.model.g_a(x[None]))[1]
        dropped = random.Random(f"{name}-{lc.codebook.size}").sample(range(16), 3)
        lost = torch.isin(packet_of(h, w, 16), torch.tensor(dropped))[None]
        full = codes[idx].permute(0, 3, 1, 2)

        def show(y, codec=codec, x=x):
            with torch.no_grad():
                out = codec.model.g_s(y)[0].clamp(0, 1)
            return ms_ssim(x, (out * 255).round() / 255)

        base = show(full)
        est = {}
        # neighbour mean, snapped / normalized
        vec = full * (~lost)[:, None]
        ring = torch.ones(1, 1, 3, 3)
        tot = F.conv2d(vec.flatten(0, 1)[:, None], ring, padding=1).view_as(vec)
        wgt = F.conv2d((~lost)[:, None].float(), ring, padding=1)
        mean = tot / wgt.clamp_min(1)
        y = full.clone()
        m = F.normalize(mean, dim=1)
        y[:, :, lost[0]] = m[:, :, lost[0]]
        est["mean-norm"] = show(y)
        y = full.clone()
        y[:, :, lost[0]] = mean[:, :, lost[0]]
        est["mean-raw"] = show(y)
        snapped = lc.codebook.nearest(mean.permute(0, 2, 3, 1)[lost], codes)
        y = full.clone()
        y.permute(0, 2, 3, 1)[lost] = codes[snapped]
        est["mean-snap"] = show(y)
        if lc.context is not None:
            r = lc.context.restore(idx, lost)
            y = codes[r].permute(0, 3, 1, 2)
            est["tf-argmax"] = show(y)
            # expected codeword, pass by pass like restore
            known = ~lost
            cur = idx.clone()
            yy = full.clone()
            from neurocodec.models.index_prior import pass_masks

            for phase in pass_masks(h, w):
                miss = lost & phase
                if miss.any():
                    with torch.no_grad():
                        logits = lc.context.logits(lc.context.masked(cur, known), torch.float64)
                    p = torch.softmax(logits[miss] * (0.6931471805599453 / 256), -1).float()
                    e = p @ codes
                    yy.permute(0, 2, 3, 1)[miss] = F.normalize(e, dim=1)
                    cur[miss] = logits[miss].argmax(-1)
                    known = known | miss
            est["tf-expect-norm"] = show(yy)
        for k, v in est.items():
            res.setdefault(k, []).append(base - v)
    result["ms_ssim_lost"][f"q{q}"] = {k: sum(v) / len(v) for k, v in res.items()}
    print(q, {k: round(sum(v) / len(v), 4) for k, v in res.items()})
x = read_image(KODAK / "kodim23.png")[0]
codec = nc.load("vqgan", quality=10)
y = codec.decode(codec.encode(x))
with torch.no_grad():
    unquantized = codec.model.g_s(codec.model.g_a(x[None]))[0]
result["chroma_spread_kodim23"] = {
    "image": float((x - x.mean(0)).std()),
    "q10": float((y - y.mean(0)).std()),
    "q10_unquantized": float((unquantized - unquantized.mean(0)).std()),
}
result["machine"] = machine()
write_json(EVAL / "vqgan_restore_probe.json", result)
