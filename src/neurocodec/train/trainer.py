"""The rate-distortion training loop shared by the image codecs.

loss = lambda * 255^2 * MSE + bpp (CompressAI's convention, so lambdas carry over), plus the
entropy bottleneck's auxiliary loss on its own optimizer. Adam, gradient clipping, a learning
rate drop by 10x at ``lr_drop_at`` of the run, bf16 autocast on CUDA, seeds, JSON-lines logs,
checkpoints (sharded safetensors, see :mod:`neurocodec.train.checkpoint`) and exact resume:
the model, both optimizers, the step and the data generator's state are restored.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from neurocodec.train.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from neurocodec.train.data import ImageCrops

__all__ = ["TrainConfig", "Trainer", "rd_loss"]


@dataclass
class TrainConfig:
    model: str = "hyperprior"
    arch: dict = field(default_factory=lambda: {"N": 128, "M": 192})
    data: str = ""
    out: str = "runs/hyperprior"
    lmbda: float = 0.0130
    steps: int = 100_000
    batch_size: int = 8
    crop: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lr_drop_at: float = 0.9
    clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    bf16: bool = True
    log_every: int = 50
    checkpoint_every: int = 1000


def build_model(name: str, arch: dict) -> nn.Module:
    if name == "hyperprior":
        from neurocodec.models.hyperprior import MeanScaleHyperprior

        return MeanScaleHyperprior(**arch)
    raise ValueError(f"no trainable model named {name!r}")


def rd_loss(out: dict, x: torch.Tensor, lmbda: float) -> tuple[torch.Tensor, dict]:
    """``lambda * 255^2 * MSE + bpp`` and its parts (bpp from the likelihoods, PSNR from the MSE)."""
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = sum(-torch.log2(lik.float()).sum() for lik in out["likelihoods"].values()) / pixels
    mse = torch.mean((out["x_hat"].float() - x) ** 2)
    loss = lmbda * 255**2 * mse + bpp
    psnr = -10 * math.log10(max(float(mse.detach()), 1e-10))
    return loss, {
        "loss": float(loss.detach()),
        "bpp": float(bpp.detach()),
        "mse": float(mse.detach()),
        "psnr": psnr,
    }


class Trainer:
    def __init__(self, config: TrainConfig):
        self.config = c = config
        self.device = torch.device(c.device)
        torch.manual_seed(c.seed)
        self.model = build_model(c.model, c.arch).to(self.device)
        aux = {n for n, _ in self.model.named_parameters() if n.endswith("quantiles")}
        self.aux_params = [p for n, p in self.model.named_parameters() if n in aux]
        self.main_params = [p for n, p in self.model.named_parameters() if n not in aux]
        self.opt = torch.optim.Adam(self.main_params, lr=c.lr)
        self.aux_opt = torch.optim.Adam(self.aux_params, lr=c.aux_lr)
        self.gen = torch.Generator(device="cpu").manual_seed(c.seed)
        self.step = 0
        self.out = Path(c.out)
        self.data: ImageCrops | None = None

    # -- checkpoints ------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        for tag, opt in (("opt", self.opt), ("aux_opt", self.aux_opt)):
            for i, st in opt.state_dict()["state"].items():
                for k, v in st.items():
                    tensors[f"{tag}.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        meta = {
            "step": self.step,
            "config": asdict(self.config),
            "generator": self.gen.get_state().tolist(),
            "torch_rng": torch.get_rng_state().tolist(),  # the quantization noise
            "cuda_rng": torch.cuda.get_rng_state().tolist() if self.device.type == "cuda" else None,
            "lr": self.opt.param_groups[0]["lr"],
        }
        return tensors, meta

    def save(self) -> None:
        tensors, meta = self._state()
        save_checkpoint(self.out / "checkpoint", tensors, meta)

    def try_resume(self) -> bool:
        folder = self.out / "checkpoint"
        if not has_checkpoint(folder):
            return False
        tensors, meta = load_checkpoint(folder, self.device)
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        for tag, opt in (("opt", self.opt), ("aux_opt", self.aux_opt)):
            sd = opt.state_dict()
            state: dict[int, dict] = {}
            for k, v in tensors.items():
                if k.startswith(tag + "."):
                    _, i, name = k.split(".", 2)
                    state.setdefault(int(i), {})[name] = v.float() if name != "step" else v.cpu()
            sd["state"] = state
            opt.load_state_dict(sd)
        self.step = meta["step"]
        self.gen.set_state(torch.tensor(meta["generator"], dtype=torch.uint8))
        torch.set_rng_state(torch.tensor(meta["torch_rng"], dtype=torch.uint8))
        if meta.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(torch.tensor(meta["cuda_rng"], dtype=torch.uint8))
        for g in self.opt.param_groups:
            g["lr"] = meta["lr"]
        return True

    # -- the loop ---------------------------------------------------------------------------

    def train_step(self, x: torch.Tensor) -> dict:
        c = self.config
        self.model.train()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=c.bf16 and self.device.type == "cuda")
        with autocast:
            out = self.model(x)
        loss, stats = rd_loss(out, x, c.lmbda)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.main_params, c.clip)
        self.opt.step()
        aux = self.model.aux_loss()
        self.aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        self.aux_opt.step()
        stats["aux"] = float(aux.detach())
        return stats

    def run(self, progress: bool = True, until: int | None = None, time_limit: float | None = None) -> None:
        """Trains to ``config.steps``; stops early after step ``until`` or once ``time_limit``
        seconds have passed, with a checkpoint, so that the same command resumes later."""
        c = self.config
        stop = c.steps if until is None else min(until, c.steps)
        self.out.mkdir(parents=True, exist_ok=True)
        resumed = self.try_resume()
        if self.data is None:
            self.data = ImageCrops(c.data, c.crop, self.device)
        log = (self.out / "log.jsonl").open("a")
        bar = tqdm(total=c.steps, initial=self.step, disable=not progress, desc="train", dynamic_ncols=True)
        if resumed:
            bar.write(f"resumed at step {self.step}")
        t0 = time.perf_counter()
        while self.step < stop:
            if time_limit is not None and time.perf_counter() - t0 > time_limit:
                self.save()
                break
            if self.step == int(c.lr_drop_at * c.steps):
                for g in self.opt.param_groups:
                    g["lr"] = c.lr / 10
            stats = self.train_step(self.data.batch(c.batch_size, self.gen))
            self.step += 1
            bar.update(1)
            if self.step % c.log_every == 0 or self.step == c.steps:
                stats.update(step=self.step, seconds=round(time.perf_counter() - t0, 1))
                log.write(json.dumps(stats) + "\n")
                log.flush()
                bar.set_postfix(bpp=f"{stats['bpp']:.3f}", psnr=f"{stats['psnr']:.2f}")
            if self.step % c.checkpoint_every == 0 or self.step == stop:
                self.save()
        bar.close()
        log.close()
