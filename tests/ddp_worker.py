"""One process of a data-parallel training run for tests/test_distributed.py, started by torchrun:

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py \
        MODEL DATA OUT STEPS UNTIL BATCH

trains ``MODEL`` ("toy-image": :class:`ExactToyImage`; or "hyperprior" at N=8, M=12) and
writes each process's final weights to ``OUT/rank<R>.safetensors``.
"""

from __future__ import annotations

import os
import sys

import torch
from safetensors.torch import save_file
from torch import nn

from neurocodec.registry import CodecFamily, register_family
from neurocodec.train.distributed import leave
from neurocodec.train.trainer import TrainConfig, Trainer


class ExactToyImage(nn.Module):
    """An image autoencoder without randomness (straight-through rounding, a learned Laplace
    prior): its training depends on the crops alone, so K processes and one process with K
    times the batch must train the same weights."""

    def __init__(self, latent: int = 4):
        super().__init__()
        self.analysis = nn.Conv2d(3, latent, 4, stride=4)
        self.synthesis = nn.ConvTranspose2d(latent, 3, 4, stride=4)
        self.log_scale = nn.Parameter(torch.zeros(1, latent, 1, 1))

    def forward(self, x: torch.Tensor) -> dict:
        y = self.analysis(x)
        y_hat = y + (torch.round(y) - y).detach()
        laplace = torch.distributions.Laplace(0.0, self.log_scale.exp())
        likelihoods = (laplace.cdf(y_hat + 0.5) - laplace.cdf(y_hat - 0.5)).clamp_min(1e-9)
        return {"x_hat": self.synthesis(y_hat), "likelihoods": {"y": likelihoods}}


register_family(CodecFamily("toy-image", "image", model=ExactToyImage))


def config(model: str, data: str, out: str, steps: int, batch: int) -> TrainConfig:
    arch, crop = ({}, 32) if model == "toy-image" else ({"N": 8, "M": 12}, 64)
    return TrainConfig(
        model=model, arch=arch, data=data, out=out, steps=steps, batch_size=batch, crop=crop, lr=1e-2,
        log_every=1, checkpoint_every=2, seed=5,
    )  # fmt: skip


if __name__ == "__main__":
    model, data, out, steps, until, batch = sys.argv[1:]
    torch.set_num_threads(1)
    trainer = Trainer(config(model, data, out, int(steps), int(batch)))
    trainer.run(progress=False, until=int(until))
    state = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
    save_file(state, f"{out}/rank{trainer.world.rank}.safetensors")
    leave(trainer.world)
    # Skip the interpreter's teardown, once the weights are written and the process group is
    # destroyed: one CI run lost a process to "terminate called without an active exception"
    # (a C++ abort, not reproduced here in repeated runs, idle and loaded), and exit-time destructors are where torch's
    # and gloo's threads are most likely to cause one. The test reports which weights were written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
