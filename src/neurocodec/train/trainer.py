"""The rate-distortion training loop shared by every codec family.

loss = distortion + lambda * rate (:func:`~neurocodec.models.losses.rd_loss`: MSE with
CompressAI's ``lambda * 255^2`` scale, or MS-SSIM) plus the terms the model adds itself
(``loss_terms``, see :class:`neurocodec.registry.CodecFamily`), and the entropy bottleneck's auxiliary
loss on its own optimizer, and a GAN's discriminator (a model's ``discriminator`` module and its
``discriminator_loss(x, x_hat)``) on a third. Adam, gradient clipping, a learning-rate schedule (a 10x drop at
``lr_drop_at`` of the run by default, or cosine with warmup), bf16 autocast (on CUDA by default; on
the CPU when asked, where the CPU has bf16 units), optional
channels-last and EMA of the weights, periodic validation on held-out data, seeds, JSON-lines
logs, checkpoints (sharded safetensors, see :mod:`neurocodec.train.checkpoint`) and exact
resume: the model, the optimizers, the EMA, the step and the RNG states are restored.
Under ``torchrun`` the same loop trains data-parallel (:mod:`neurocodec.train.distributed`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from neurocodec.io import media_files
from neurocodec.registry import trainable
from neurocodec.text import text_encoder
from neurocodec.train.checkpoint import has_checkpoint, load_checkpoint, model_weights, save_checkpoint
from neurocodec.train.data import AudioClips, ImageCrops, VideoClips
from neurocodec.train.distributed import join
from neurocodec.train.ema import WeightAverage
from neurocodec.train.losses import check_distortion, loss_and_stats
from neurocodec.train.schedule import check_periods, check_schedule, cosine_lr

__all__ = ["TrainConfig", "Trainer"]

_PEAK = {"image": 1.0, "audio": 2.0, "video": 1.0}  # peak-to-peak range, for the PSNR


@dataclass
class TrainConfig:
    model: str = "hyperprior"
    arch: dict | None = None  # the model's constructor arguments; None: its registered default
    data: str = ""
    out: str = "runs/hyperprior"
    lmbda: float = 0.0130
    steps: int = 100_000
    batch_size: int = 8
    crop: int = 256  # images and video: the side of the square crops
    samples: int = 16384  # audio: the length of the clips
    frames: int = 4  # video: the length of the clips
    image_data: str = ""  # video models that code images too: a folder of images ...
    image_every: int = 0  # ... a batch of its crops every this many steps (joint image/video training)
    captions: str = ""  # text-guided video models: a JSON file of {video file name: caption}
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lr_schedule: str = "step"  # "step" (10x drop at lr_drop_at) or "cosine"
    lr_drop_at: float = 0.9
    warmup: int = 0  # steps of linear warmup
    clip: float = 1.0
    distortion: str = "mse"  # or "ms-ssim"
    ema: float = 0.0  # the decay of an EMA of the weights; 0: none
    val: str = ""  # a held-out folder to validate on ...
    val_split: int = 0  # ... or this many files held out of `data` (the last ones, in sorted order)
    val_every: int = 1000
    channels_last: bool = False
    seed: int = 0
    device: str = "cpu"
    bf16: bool | None = None  # bf16 autocast: None on CUDA only, True on any device, False never
    log_every: int = 50
    checkpoint_every: int = 1000
    init: str = ""  # a run folder (or checkpoint folder) whose weights start a new run
    train_only: str = ""  # comma-separated parameter-name prefixes: train those, freeze the rest


def _init_source(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """The model weights ``--init`` names: a run folder, its checkpoint folder, or an exported
    ``.safetensors`` weight file."""
    if path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(device))
        except (SafetensorError, OSError) as e:
            raise ValueError(f"--init {path}: not a readable safetensors weight file ({e})") from None
    folder = path / "checkpoint" if (path / "checkpoint").is_dir() else path
    if not has_checkpoint(folder):
        raise ValueError(f"--init {path}: no checkpoint there")
    return model_weights(load_checkpoint(folder, device)[0])[0]


class Trainer:
    def __init__(self, config: TrainConfig):
        self.config = c = config
        self.spec = trainable(c.model)
        if c.arch is None:
            c.arch = dict(self.spec.arch)
        check_distortion(c.distortion, self.spec.data, c.crop)
        check_schedule(c.lr_schedule, c.warmup, c.steps)
        check_periods(val_every=c.val_every, log_every=c.log_every, checkpoint_every=c.checkpoint_every)
        if bool(c.image_data) != (c.image_every > 0) or (c.image_data and self.spec.data != "video"):
            raise ValueError("joint training takes image_data with image_every > 0, for a video model")
        self.world, device = join(c.device)
        self.device = torch.device(device)
        torch.manual_seed(c.seed)
        self.model = self.spec.build_model(c.arch).to(self.device)
        if c.captions and not getattr(self.model, "text_model", ""):
            raise ValueError("captions train a text-guided video model: its architecture names a text_model")
        if c.channels_last and self.spec.data == "image":
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.world.distributed:  # the same weights everywhere; the noise differs per process
            torch.manual_seed(c.seed + 7919 * self.world.rank)
        aux = {n for n, _ in self.model.named_parameters() if n.endswith("quantiles")}
        self.aux_params = [p for n, p in self.model.named_parameters() if n in aux]
        discriminator = getattr(self.model, "discriminator", None)
        self.disc_params = list(discriminator.parameters()) if discriminator is not None else []
        # like the quantiles, the discriminator is outside the main optimizer, --train-only and DDP
        aux |= {n for n, _ in self.model.named_parameters() if n.startswith("discriminator.")}
        self.main_params = [p for n, p in self.model.named_parameters() if n not in aux]
        if c.train_only:
            prefixes = tuple(p.strip() for p in c.train_only.split(",") if p.strip())
            names = [n for n, _ in self.model.named_parameters() if n not in aux]
            if not any(n.startswith(prefixes) for n in names):
                raise ValueError(f"--train-only {c.train_only}: no parameter of {c.model} starts so")
            for n, p in self.model.named_parameters():
                if n not in aux and not n.startswith(prefixes):
                    p.requires_grad_(False)  # frozen: no gradient, no optimizer state
            self.main_params = [p for p in self.main_params if p.requires_grad]
        self.net = self._parallel(aux) if self.world.distributed else self.model  # what trains
        self.opt = torch.optim.Adam(self.main_params, lr=c.lr)
        self.aux_opt = torch.optim.Adam(self.aux_params, lr=c.aux_lr) if self.aux_params else None
        # a GAN's discriminator: its own Adam (taming's betas), stepped after the model's
        self.disc_opt = (
            torch.optim.Adam(self.disc_params, lr=c.lr, betas=(0.5, 0.9)) if self.disc_params else None
        )
        self.ema = WeightAverage(self.model, c.ema) if c.ema else None
        self.gen = torch.Generator(device="cpu").manual_seed(c.seed)
        self.step = 0
        self.out = Path(c.out)
        self.data: ImageCrops | AudioClips | VideoClips | None = None
        self.image_data: ImageCrops | None = None  # joint training's images (image_data)
        self.val_data: ImageCrops | AudioClips | VideoClips | None = None

    def _parallel(self, aux: set[str]) -> torch.nn.Module:
        """The model wrapped for data-parallel training. The quantiles are left out: only the aux
        loss moves them, and it is the same in every process, so they stay equal unsynchronized."""
        from torch.nn.parallel import DistributedDataParallel

        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.model, sorted(aux))
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)

    def _optimizers(self) -> list[tuple[str, torch.optim.Optimizer]]:
        extra = [("aux_opt", self.aux_opt), ("disc_opt", self.disc_opt)]
        return [("opt", self.opt)] + [(tag, opt) for tag, opt in extra if opt is not None]

    # -- data -------------------------------------------------------------------------------

    def _dataset(self, files) -> ImageCrops | AudioClips | VideoClips:
        c, kind = self.config, self.spec.data
        if kind == "image":
            return ImageCrops(files, c.crop, self.device)
        if kind == "audio":
            return AudioClips(files, c.samples, self.device)
        return VideoClips(files, c.frames, c.crop, self.device)

    def load_data(self) -> None:
        """The training set and, when asked for, the validation set (a folder or a held-out split)."""
        c = self.config
        train = c.data
        if c.val_split:
            files = media_files(c.data, self.spec.data)
            if c.val_split >= len(files):
                raise ValueError(f"cannot hold {c.val_split} of the {len(files)} files of {c.data} out")
            train, held_out = files[: -c.val_split], files[-c.val_split :]
            self.val_data = self._dataset(held_out)
        elif c.val:
            self.val_data = self._dataset(c.val)
        self.data = self._dataset(train)
        if c.image_data:
            self.image_data = ImageCrops(c.image_data, c.crop, self.device)
        if c.captions:
            captions = json.loads(Path(c.captions).read_text())
            embed = text_encoder(self.model.text_model)
            for dataset in (self.data, self.val_data):
                if dataset is not None:
                    dataset.caption(captions, embed)

    # -- checkpoints ------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        for tag, opt in self._optimizers():
            for i, st in opt.state_dict()["state"].items():
                for k, v in st.items():
                    tensors[f"{tag}.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        meta = {
            "step": self.step,
            "config": asdict(self.config),
            "generator": self.gen.get_state().tolist(),
            "lr": self.opt.param_groups[0]["lr"],
        }
        noise = self.world.gather(self._noise_rng())  # every process's, in rank order
        meta.update(noise[0])
        if self.world.distributed:
            meta["processes"] = noise
        return tensors, meta

    def _noise_rng(self) -> dict:
        """This process's RNG states: the quantization noise (CPU, and CUDA on a GPU)."""
        return {
            "torch_rng": torch.get_rng_state().tolist(),
            "cuda_rng": torch.cuda.get_rng_state().tolist() if self.device.type == "cuda" else None,
        }

    def save(self) -> None:
        """Writes the checkpoint (every process takes part; process 0 writes)."""
        tensors, meta = self._state()
        if self.world.leader:
            save_checkpoint(self.out / "checkpoint", tensors, meta)
        self.world.barrier()

    def try_resume(self) -> bool:
        folder = self.out / "checkpoint"
        if not has_checkpoint(folder):
            return False
        tensors, meta = load_checkpoint(folder, self.device)
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if self.ema is not None:
            average = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
            self.ema.load_state_dict(average or self.model.state_dict())  # EMA switched on mid-run
        for tag, opt in self._optimizers():
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
        processes = meta.get("processes") or [meta]
        if len(processes) == self.world.size:
            rng = processes[self.world.rank]
            torch.set_rng_state(torch.tensor(rng["torch_rng"], dtype=torch.uint8))
            if rng.get("cuda_rng") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(torch.tensor(rng["cuda_rng"], dtype=torch.uint8))
        else:  # another number of processes: the crops continue, the noise is new
            torch.manual_seed(self.config.seed + 7919 * self.world.rank + self.step)
        for g in self.opt.param_groups:
            g["lr"] = meta["lr"]
        return True

    def init_weights(self, run: str | Path) -> tuple[int, int]:
        """Start from the weights of another run (its EMA when it kept one), or of an exported
        weight file (``<codec>-q<Q>.safetensors``, e.g. a shipped one): every tensor whose name
        and shape match this model's; the rest keep their initialization (e.g. a hyperprior
        added to a trained WaLLoC). Returns (tensors taken, tensors of this model)."""
        source = dict(_init_source(Path(run), self.device))
        if hasattr(self.model, "renamed_keys"):  # a 0.1.0 weight file's keys -> today's
            self.model.renamed_keys(source)
        if hasattr(self.model, "inherit"):  # e.g. a VQGAN's codebook reduced to this model's size
            self.model.inherit(source)
        own = self.model.state_dict()
        taken = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        if not taken:
            raise ValueError(
                f"--init {run}: none of its weights fit a {self.config.model} of this architecture"
            )
        self.model.load_state_dict(taken, strict=False)
        if self.ema is not None:
            self.ema = WeightAverage(self.model, self.config.ema)
        return len(taken), len(own)

    # -- the loop ---------------------------------------------------------------------------

    def _autocast(self):
        bf16 = self.config.bf16
        enabled = self.device.type == "cuda" if bf16 is None else bf16
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _set_lr(self) -> None:
        """The rate of the coming step. The step schedule only changes the rate at its events
        (end of warmup, the drop), so a resumed run keeps the rate its checkpoint holds."""
        c = self.config
        if c.lr_schedule == "cosine":
            lr = cosine_lr(self.step, c.lr, c.steps, c.warmup)
        elif self.step < c.warmup:
            lr = c.lr * (self.step + 1) / c.warmup
        elif c.warmup and self.step == c.warmup:
            lr = c.lr
        else:
            lr = None
        if c.lr_schedule == "step" and self.step == int(c.lr_drop_at * c.steps):
            lr = c.lr / 10
        if lr is not None:
            for g in self.opt.param_groups:
                g["lr"] = lr

    def train_step(self, x: torch.Tensor, text: torch.Tensor | None = None) -> dict:
        """One step on the batch ``x`` (and, for a text-guided model, its captions' embeddings)."""
        c = self.config
        self.model.train()
        with self._autocast():
            out = self.net(self._input(x)) if text is None else self.net(self._input(x), text)
        loss, stats = loss_and_stats(out, x, c.lmbda, c.distortion, _PEAK[self.spec.data])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.main_params, c.clip)
        self.opt.step()
        if self.aux_opt is not None and hasattr(self.model, "aux_loss"):
            aux = self.model.aux_loss()
            self.aux_opt.zero_grad(set_to_none=True)
            aux.backward()
            self.aux_opt.step()
            stats["aux"] = float(aux.detach())
        if self.disc_opt is not None:
            disc = self.model.discriminator_loss(x, out["x_hat"].detach())
            self.disc_opt.zero_grad(set_to_none=True)
            if disc.requires_grad:
                disc.backward()
                self.disc_opt.step()
            stats["discriminator"] = float(disc.detach())
        if self.ema is not None:
            self.ema.update(self.model)
        return stats

    @torch.no_grad()
    def validate(self) -> dict:
        """Loss, bpp, MSE and PSNR of the model in eval mode (the EMA when there is one) on the
        validation set's fixed items, averaged over them. RNG states are left as they were,
        so validating does not change the training run."""
        if self.val_data is None:
            raise ValueError("no validation set: set val or val_split")
        c = self.config
        model = self.ema.model if self.ema is not None else self.model
        was_training = model.training
        model.eval()
        totals: dict[str, float] = {}
        batch = self.val_data.validation_batch()
        texts = [None] * len(batch)
        if c.captions:
            texts = list(self.val_data.validation_text().split(c.batch_size))
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            for chunk, text in zip(batch.split(c.batch_size), texts, strict=False):
                with self._autocast():
                    out = model(self._input(chunk)) if text is None else model(self._input(chunk), text)
                _, stats = loss_and_stats(out, chunk, c.lmbda, c.distortion, _PEAK[self.spec.data])
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v * len(chunk)
        model.train(was_training)
        return {k: v / len(batch) for k, v in totals.items()}

    def run(self, progress: bool = True, until: int | None = None, time_limit: float | None = None) -> None:
        """Trains to ``config.steps``; stops early after step ``until`` or once ``time_limit``
        seconds have passed, with a checkpoint, so that the same command resumes later."""
        c, world = self.config, self.world
        stop = c.steps if until is None else min(until, c.steps)
        if world.leader:
            self.out.mkdir(parents=True, exist_ok=True)
        world.barrier()
        resumed = self.try_resume()
        if self.data is None:
            self.load_data()
        log = (self.out / "log.jsonl").open("a") if world.leader else None
        bar = tqdm(
            total=c.steps, initial=self.step, disable=not (progress and world.leader), desc="train",
            dynamic_ncols=True,
        )  # fmt: skip
        say = bar.write if world.leader else lambda _: None
        if resumed:
            say(f"resumed at step {self.step}")
        elif c.init:
            taken, total = self.init_weights(c.init)
            say(f"started from {taken} of {total} weight tensors of {c.init}")
        if world.distributed:
            say(f"{world.size} processes, {c.batch_size} crops each: {world.size * c.batch_size} a step")
        rows = world.rows(c.batch_size)
        t0 = time.perf_counter()
        while self.step < stop:
            if time_limit is not None and world.any(time.perf_counter() - t0 > time_limit):
                self.save()
                break
            self._set_lr()
            joint = self.image_data is not None and self.step % c.image_every == c.image_every - 1
            size = world.size * c.batch_size
            if joint:
                stats = self.train_step(self.image_data.batch(size, self.gen, rows))
            elif c.captions:
                stats = self.train_step(*self.data.text_batch(size, self.gen, rows))
            else:
                stats = self.train_step(self.data.batch(size, self.gen, rows))
            self.step += 1
            bar.update(1)
            if self.step % c.log_every == 0 or self.step == c.steps:
                stats = world.mean(stats)
                stats.update(step=self.step, seconds=round(time.perf_counter() - t0, 1))
                if log is not None:
                    log.write(json.dumps(stats) + "\n")
                    log.flush()
                bar.set_postfix(
                    loss=f"{stats['loss']:.3f}", bpp=f"{stats['bpp']:.3f}", psnr=f"{stats['psnr']:.2f}"
                )
            if (
                world.leader
                and self.val_data is not None
                and (self.step % c.val_every == 0 or self.step == c.steps)
            ):
                record = {"split": "val", **self.validate(), "step": self.step}
                log.write(json.dumps(record) + "\n")
                log.flush()
                say(f"step {self.step}: validation bpp {record['bpp']:.4f}, PSNR {record['psnr']:.2f} dB")
            if self.step % c.checkpoint_every == 0 or self.step == stop:
                self.save()
        bar.close()
        if log is not None:
            log.close()
