"""Held-out check of a recombiner-speech prior checkpoint (a training run folder): encode the first
3 s of librispeech_5703-47212-0000 at each effort, print kbit/s and SNR.

    OMP_NUM_THREADS=1 python eval/archive/recombiner_checkpoint_probe.py RUN BUDGET EFFORT...
"""

import math
import sys
import time

import torch

from neurocodec.codecs.recombiner import RecombinerSpeechCodec
from neurocodec.evaluation.metrics import snr
from neurocodec.io.audio import read_audio
from neurocodec.models.recombiner import AUDIO_ARCH

torch.set_num_threads(1)
run, budget = sys.argv[1], float(sys.argv[2])
body = torch.load(f"{run}/checkpoint.pt", weights_only=True)
c = RecombinerSpeechCodec(**AUDIO_ARCH)
c.model.load_state_dict(body["model"])
log = body["log"]
recent = [r["beta"] for r in log[-10:]]
c.model.beta.fill_(math.exp(sum(map(math.log, recent)) / len(recent)))
c.kl_budget, c.kl_band = budget, budget / 5
c.progress = False
x, info = read_audio("/work/shared/data/audio/speech/librispeech_16k/librispeech_5703-47212-0000.wav")
x = x[:, : 3 * 16000]
for effort in map(int, sys.argv[3:]):
    t = time.time()
    data = c.encode(x, 16000, effort=effort)
    y = c.decode(data)
    print(
        effort,
        f"kbps {8 * len(data) / 3 / 1000:.2f} snr {snr(x, y):.2f} fit_psnr {c.last_fit['psnr_fit']:.2f} kl {c.last_fit['kl_bpp_fit']:.3f} {time.time() - t:.0f}s",
        flush=True,
    )
