"""Fitting a ``c3`` model to one image, and choosing the quantization steps of its networks.

:func:`fit` runs the schedule (Cool-chic / C3):

1. *warm-up*: ``candidates`` models from different seeds, each trained for an equal share of
   ``warmup`` of the budget at the starting temperature; the one with the lowest loss goes on;
2. *main phase*: learning rate ``lr`` on a cosine to 0; latents quantized as
   ``soft_round(soft_round(y, T) + n, T)`` with ``T`` annealed 0.35 -> 0.08 and Gaussian noise
   ``n`` whose standard deviation goes 0.22 -> 0.15 (C3's Kumaraswamy noise with ``gaussian=None``);
3. *hard phase*: ``hard`` (17 %) of the budget with straight-through rounding, the latents held
   and the networks at ``hard_lr`` on a cosine to 0, the rate taken at the coding tables'
   resolution (``coded``), so that what the fitting ends on is what the file costs.

Noise, temperatures, the hard share and the latents' learning rate (16x the networks') are
Cool-chic 5's recipe. Against C3's (Kumaraswamy noise, 0.3 -> 0.1, 8 % hard phase, latents at 4x)
it moved the fast preset on kodim01-04 whole from +12.7 % to -0.8 % BD-rate against AVIF
(``eval/c3_kodak_recipe.json`` against ``eval/c3_kodak_full.json``, whose rows predate the ARM
refit and the tables' pricing of tails: by the files without the refit, -0.8 % too); the 16x rate
is most of it (``eval/c3_probe.jsonl``, tags ``lat16-*``, ``ccrecipe-*``, ``pf0-*``).

Every ``check`` steps of phases 2 and 3 the coded loss is measured, and each phase ends on its
best parameters (:class:`BestModel`, as Cool-chic does): without it, the hard phase of a
10,000-step fit drifted from 0.511 to 0.757 in its last 500 steps (kodim03 centre crop, q3,
``eval/c3_probe.py --trace``; ``eval/c3_probe.jsonl`` tag ``slow-trace-default``).

The networks are fitted with SOAP (:mod:`neurocodec.train.soap`; betas 0.95, weight decay 0.01,
as Cool-chic 5 does), the latents with Adam (SOAP's unpreconditioned case) at ``latent_lr``
times the rate. At 1,000 steps on kodim03's centre crop (q3), SOAP: 0.315 bpp at 32.48 dB
against Adam's 0.344 bpp at 32.07 dB (``eval/c3_probe.jsonl``, tags ``wfix-*``, measured with an ``optimizer`` choice in the
schedule, since removed: Adam is the latents' group of SOAP).

The networks' gradient norm is bounded by ``clip`` (as Cool-chic does): on a kodim01 crop at
2,000 iterations, about even (-2.5 % rate at -0.05 dB, ``eval/c3_probe.jsonl``).

The loss is the codec convention ``bpp + lambda * 255^2 * MSE`` with the latents' rate from the
ARM's Laplace. With the latents rounded, :func:`refit_arm` fits the ARM alone to them (their
bits, the latents held fixed); :func:`choose_steps` then quantizes each module's weights and biases with a
power-of-two step picked greedily for the lowest ``bpp + lambda * 255^2 * MSE``, the
parameters' bits (:func:`parameter_cost`) included, and :func:`refine_parameters` moves single
quantized parameters by one step where that lowers the same loss (RDOQ).

A long fit survives being stopped: with a ``checkpoint`` folder, :func:`fit` saves its state
there after the warm-up and every ``checkpoint_every`` steps (safetensors, written atomically by
:func:`neurocodec.train.checkpoint.save_checkpoint`), resumes from it when the same fit (image,
lambda, schedule, architecture, seed, rate target) is started again, and removes it when done.
A resumed fit ends on the same parameters as one never stopped (the RNG state travels too).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from neurocodec.entropy import tables
from neurocodec.entropy.models import LaplaceConditional
from neurocodec.models.c3 import (
    GRIDS,
    LATENT_MAX,
    MEAN_BITS,
    SCALES,
    ImageModel,
    kumaraswamy_noise,
    laplace_tables,
    log_scale_bounds,
    soft_round,
    table_likelihood,
)
from neurocodec.train.checkpoint import has_checkpoint, load_checkpoint, remove_checkpoint, save_checkpoint
from neurocodec.train.soap import SOAP

__all__ = [
    "RateTarget",
    "Schedule",
    "choose_steps",
    "coded_loss",
    "fit",
    "groups",
    "model_loss",
    "parameter_cost",
    "refine_parameters",
    "start_lambda",
]

MSE_SCALE = 255.0**2


@dataclass(frozen=True)
class Schedule:
    """The fitting schedule of ``iterations`` in all (fractions of it for warm-up and hard phase)."""

    iterations: int
    candidates: int = 2
    warmup: float = 0.1
    hard: float = 0.17
    lr: float = 1e-2
    latent_lr: float = 16.0  # the latents' learning rate, in units of lr
    hard_lr: float = 1e-4
    temperature: tuple[float, float] = (0.35, 0.08)
    # the noise before soft rounding: Gaussian of these standard deviations (annealed through the
    # main phase; warmup_gaussian in the warm-up), or with gaussian=None Kumaraswamy noise (C3's)
    gaussian: tuple[float, float] | None = (0.22, 0.15)
    warmup_gaussian: float = 0.1936
    kumaraswamy: tuple[float, float] = (2.0, 1.0)
    clip: float = 0.1  # bound on the gradient norm of the networks (not the latents); 0: none
    network_betas: tuple[float, float] = (0.95, 0.95)
    weight_decay: float = 0.01  # of the networks, decoupled
    check: int = 100  # every so many steps, keep the parameters if their coded loss is the best yet
    refine: float | None = None  # share of the parameters refine_parameters tries; None: refine_share()
    arm_refit: int | None = None  # steps of refit_arm; None: arm_refit_steps()
    freeze_latents_hard: bool = True  # the latents held in the hard phase (the networks still move)

    def refine_share(self) -> float:
        """The share of each tensor's parameters :func:`refine_parameters` tries: ``refine``, or by
        default a quarter up to the fast preset's 1,000 iterations (about 20 s on a Kodak image)
        and all of them beyond (about 60 s)."""
        if self.refine is not None:
            return self.refine
        return 0.25 if self.iterations <= 1000 else 1.0

    def arm_refit_steps(self) -> int:
        """Steps of :func:`refit_arm`: ``arm_refit``, or by default a tenth of the budget, at least
        300 (about 25 CPU-s with the 16-wide ARM on a Kodak image) and at most the budget."""
        if self.arm_refit is not None:
            return self.arm_refit
        return min(self.iterations, max(300, self.iterations // 10))

    def phases(self) -> tuple[int, int, int]:
        """Iterations per warm-up candidate, of the main phase and of the hard phase."""
        n = self.iterations
        hard = int(n * self.hard)
        per_candidate = int(n * self.warmup) // self.candidates if self.candidates > 1 else 0
        return per_candidate, n - hard - per_candidate * self.candidates, hard


_LAPLACE = LaplaceConditional(scale_bound=math.exp(log_scale_bounds()[0]))


def latent_bits(model: ImageModel, grids: list[Tensor], coded: bool = False) -> Tensor:
    """The ideal code length of ``grids`` under the float ARM's Laplace, in bits (``coded``: with
    its mean and scale at the coding tables' resolution, priced as the tables price them)."""
    total = grids[0].new_zeros(())
    for level in range(GRIDS):
        mean, scale = model.grid_rate(grids, level, coded)
        likelihood = _LAPLACE.likelihood(grids[level], scale, mean)
        if coded:
            likelihood = table_likelihood(grids[level], mean, scale, likelihood)
        total = total - torch.log2(likelihood).sum()
    return total


def model_loss(
    model: ImageModel, x: Tensor, lmbda: float, quantize: Callable[[Tensor], Tensor], coded: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, bpp of the latents, MSE) of ``model`` on ``x`` (1, 3, h, w), latents quantized by
    ``quantize``, their rate at the coding tables' resolution when ``coded``."""
    grids = [quantize(y) for y in model.latents]
    _, _, h, w = x.shape
    x_hat = model.reconstruct(grids)[..., :h, :w]
    mse = torch.mean((x_hat - x) ** 2)
    bpp = latent_bits(model, grids, coded) / (h * w)
    return bpp + lmbda * MSE_SCALE * mse, bpp, mse


def coded_loss(model: ImageModel, x: Tensor, lmbda: float) -> tuple[float, float, float]:
    """(loss, bpp of the latents, MSE) of ``model`` on ``x`` as the file would cost it now: latents
    rounded, their rate at the coding tables' resolution (no gradients)."""
    with torch.no_grad():
        loss, bpp, mse = model_loss(model, x, lmbda, hard_round, coded=True)
    return loss.item(), bpp.item(), mse.item()


def hard_round(y: Tensor) -> Tensor:
    """``round(y)`` (clamped to the coded range) with the identity's gradient."""
    return y + (torch.round(y).clamp(-LATENT_MAX, LATENT_MAX) - y).detach()


def _soft(temperature: float, a: float) -> Callable[[Tensor], Tensor]:
    return lambda y: soft_round(soft_round(y, temperature) + kumaraswamy_noise(y, a), temperature)


def _soft_gaussian(temperature: float, std: float) -> Callable[[Tensor], Tensor]:
    return lambda y: soft_round(soft_round(y, temperature) + torch.randn_like(y) * std, temperature)


def _warmup_quantizer(schedule: Schedule) -> Callable[[Tensor], Tensor]:
    """The warm-up's soft quantizer: the starting temperature, fixed noise."""
    t0, a0 = schedule.temperature[0], schedule.kumaraswamy[0]
    if schedule.gaussian is None:
        return _soft(t0, a0)
    return _soft_gaussian(t0, schedule.warmup_gaussian)


def _main_quantizer(schedule: Schedule, progress: float) -> Callable[[Tensor], Tensor]:
    """The main phase's soft quantizer ``progress`` (0 to 1) through it: temperature and noise
    annealed linearly."""
    (t0, t1), (a0, a1) = schedule.temperature, schedule.kumaraswamy
    t = t0 + (t1 - t0) * progress
    if schedule.gaussian is None:
        return _soft(t, a0 + (a1 - a0) * progress)
    g0, g1 = schedule.gaussian
    return _soft_gaussian(t, g0 + (g1 - g0) * progress)


def fit(
    x: Tensor,
    padded_size: tuple[int, int],
    lmbda: float,
    schedule: Schedule,
    arch: dict,
    seed: int = 0,
    progress: bool = False,
    trace: Callable[[str, ImageModel, float, float, float], None] | None = None,
    target: RateTarget | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 250,
    report: dict | None = None,
) -> ImageModel:
    """An :class:`ImageModel` of ``padded_size`` fitted to ``x`` (1, 3, h, w) for ``lmbda`` (with a
    ``target`` rate: starting from it, see :class:`RateTarget`); ``trace(phase, model, loss, bpp,
    mse)`` is called after every step (``eval/c3_probe.py``). With a ``checkpoint`` folder the fit
    saves its state there every ``checkpoint_every`` steps and resumes from it (module docstring);
    ``report["resumed_at"]`` is then the step it resumed from (0: it started afresh)."""
    per_candidate, main, hard = schedule.phases()
    bar = tqdm(total=schedule.iterations, disable=not progress, file=sys.stderr, unit="it", desc="c3 fit")
    key = _fit_key(x, padded_size, lmbda, schedule, arch, seed, target) if checkpoint else ""
    taken = [0]  # steps taken, those before a resume included

    def new(i: int) -> tuple[ImageModel, torch.optim.Optimizer]:
        torch.manual_seed(seed + i)
        model = ImageModel(*padded_size, **arch).to(x.device)
        latents = list(model.latents.parameters())
        networks = [p for name, p in model.named_parameters() if not name.startswith("latents.")]
        groups = [
            {  # Adam: SOAP with nothing preconditioned
                "params": latents,
                "scale": schedule.latent_lr,
                "lr": schedule.lr * schedule.latent_lr,
                "betas": (0.9, 0.999),
                "max_precond_dim": 0,
            },
            {
                "params": networks,
                "scale": 1.0,
                "lr": schedule.lr,
                "betas": tuple(schedule.network_betas),
                "weight_decay": schedule.weight_decay,
            },
        ]
        return model, SOAP(groups)

    def step(
        phase: str, model: ImageModel, opt: torch.optim.Optimizer, quantize: Callable, coded: bool = False
    ) -> float:
        loss, bpp, mse = model_loss(model, x, lmbda, quantize, coded)  # lmbda moves with a target
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if schedule.clip:
            torch.nn.utils.clip_grad_norm_(opt.param_groups[1]["params"], schedule.clip)
        opt.step()
        if trace is not None:
            trace(phase, model, loss.item(), bpp.item(), mse.item())
        taken[0] += 1
        bar.update()
        bar.set_postfix(
            bpp=f"{bpp.item():.3f}", psnr=f"{-10 * math.log10(max(mse.item(), 1e-10)):.2f}", refresh=False
        )
        return loss.item()

    def save(phase: str, done: int) -> None:
        if checkpoint:
            _save_fit(checkpoint, key, model, opt, best, lmbda, phase, done, taken[0])

    resumed = _load_fit(checkpoint, key, new, x) if checkpoint else None
    controlled = int(main * target.share) if target is not None else 0  # steps with lambda moving
    if resumed is not None:
        model, opt, best, lmbda, phase, done, taken[0] = resumed
        bar.update(taken[0])
    else:
        # warm-up: keep the candidate with the lowest mean loss over its last quarter
        if per_candidate:
            candidate = None
            for i in range(schedule.candidates):
                model, opt = new(i)
                warm = _warmup_quantizer(schedule)
                losses = [step("warmup", model, opt, warm) for _ in range(per_candidate)]
                score = sum(losses[-max(1, per_candidate // 4) :])
                if candidate is None or score < candidate[0]:
                    candidate = (score, model, opt)
            _, model, opt = candidate
        else:
            model, opt = new(0)
        best, phase, done = BestModel(x, lmbda), "main", 0
        save(phase, done)
    if report is not None:
        report["resumed_at"] = taken[0] if resumed is not None else 0
    if phase == "main":
        # main phase: cosine learning rate, annealed temperature and noise
        for i in range(done, main):
            progress_ = i / max(1, main - 1)
            for group in opt.param_groups:
                group["lr"] = group["scale"] * schedule.lr * 0.5 * (1 + math.cos(math.pi * progress_))
            step("main", model, opt, _main_quantizer(schedule, progress_))
            if i < controlled:
                if (i + 1) % max(1, controlled // target.updates) == 0:
                    lmbda = target.steer(lmbda, model, x)
                    best = BestModel(x, lmbda)  # losses at another lambda do not compare
            elif schedule.check and (i + 1) % schedule.check == 0:
                best.offer(model)
            if (i + 1) % checkpoint_every == 0 and i + 1 < main:
                save("main", i + 1)
        best.restore(model)
        phase, done = "hard", 0
        save(phase, done)
    if target is not None:
        target.lmbda = lmbda
    # hard phase: straight-through rounding, a low learning rate on a cosine to 0; held latents
    # take no gradient (the backward pass skips them)
    model.latents.requires_grad_(not schedule.freeze_latents_hard)
    for i in range(done, hard):
        for group in opt.param_groups:
            group["lr"] = (
                group["scale"] * schedule.hard_lr * 0.5 * (1 + math.cos(math.pi * i / max(1, hard - 1)))
            )
        step("hard", model, opt, hard_round, coded=True)
        if schedule.check and (i + 1) % schedule.check == 0:
            best.offer(model)
        if (i + 1) % checkpoint_every == 0 and i + 1 < hard:
            save("hard", i + 1)
    model.latents.requires_grad_(True)
    best.restore(model)
    bar.close()
    if checkpoint:
        remove_checkpoint(checkpoint)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Checkpoints of a fit


def _fit_key(
    x: Tensor, padded_size: tuple[int, int], lmbda: float, schedule: Schedule, arch: dict, seed: int,
    target: RateTarget | None,
) -> str:  # fmt: skip
    """What a fit's result depends on, hashed: a checkpoint of another fit is not resumed."""
    h = hashlib.sha256(x.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    what = (tuple(x.shape), padded_size, lmbda, asdict(schedule), sorted(arch.items()), seed, target)
    h.update(repr(what).encode())
    return h.hexdigest()


def _save_fit(
    folder: str | Path, key: str, model: ImageModel, opt: torch.optim.Optimizer, best: BestModel,
    lmbda: float, phase: str, done: int, steps: int,
) -> None:  # fmt: skip
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best.state.items()})
    fields: dict[str, object] = {}  # "parameter index.name": "tensor", a list's length, or an int
    for i, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                fields[f"{i}.{name}"], tensors[f"opt.{i}.{name}"] = "tensor", value
            elif isinstance(value, list):  # SOAP's per-dimension bases (None where there is none)
                fields[f"{i}.{name}"] = len(value)
                tensors.update({f"opt.{i}.{name}.{j}": v for j, v in enumerate(value) if v is not None})
            else:
                fields[f"{i}.{name}"] = {"int": int(value)}
    cuda = torch.cuda.get_rng_state(model.latents[0].device) if model.latents[0].is_cuda else None
    meta = {
        "key": key, "phase": phase, "done": done, "steps": steps, "lmbda": lmbda,
        "best_loss": best.loss if math.isfinite(best.loss) else None, "best_lmbda": best.lmbda,
        "optimizer": fields, "torch_rng": torch.get_rng_state().tolist(),
        "cuda_rng": None if cuda is None else cuda.tolist(),
    }  # fmt: skip
    save_checkpoint(folder, {k: v.detach() for k, v in tensors.items()}, meta)


def _load_fit(folder: str | Path, key: str, new: Callable, x: Tensor):
    """(model, optimizer, best, lambda, phase, steps done in it, steps done in all) from
    ``folder``; None when it holds no checkpoint of this fit."""
    if not has_checkpoint(folder):
        return None
    tensors, meta = load_checkpoint(folder, x.device)
    if meta.get("key") != key:
        return None
    model, opt = new(0)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for name, kind in meta["optimizer"].items():
        i, field = name.split(".", 1)
        if kind == "tensor":
            value = tensors[f"opt.{name}"]
        elif isinstance(kind, int):
            value = [tensors.get(f"opt.{name}.{j}") for j in range(kind)]
        else:
            value = kind["int"]
        state.setdefault(int(i), {})[field] = value
    saved = opt.state_dict()
    saved["state"] = state
    opt.load_state_dict(saved)
    best = BestModel(x, meta["best_lmbda"])
    best.loss = math.inf if meta["best_loss"] is None else meta["best_loss"]
    best.state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    torch.set_rng_state(torch.tensor(meta["torch_rng"], dtype=torch.uint8))
    if meta["cuda_rng"] is not None:
        torch.cuda.set_rng_state(torch.tensor(meta["cuda_rng"], dtype=torch.uint8), x.device)
    return model, opt, best, meta["lmbda"], meta["phase"], meta["done"], meta["steps"]


@dataclass
class RateTarget:
    """Fitting to a rate instead of a trade-off: ``bpp`` in all, of which the networks are
    estimated to take ``network_bytes``. At ``updates`` even points of the first ``share`` of the
    main phase, lambda is multiplied by ``(wanted / coded) ** gain``, from the rate of the latents
    as they would be coded then; after that it stays, and :func:`fit` leaves it in ``lmbda``.
    Start from :func:`start_lambda`."""

    bpp: float
    network_bytes: int = 640  # about what the networks took on Kodak (eval/c3_kodak_full.jsonl)
    share: float = 0.6
    updates: int = 8
    gain: float = 1.0
    lmbda: float | None = None  # the lambda the fit settled on

    def steer(self, lmbda: float, model: ImageModel, x: Tensor) -> float:
        """The next lambda, from the coded rate of ``model``'s latents on ``x`` now."""
        pixels = x.shape[-2] * x.shape[-1]
        wanted = max(self.bpp - 8 * self.network_bytes / pixels, 0.25 * self.bpp)
        coded = coded_loss(model, x, lmbda)[1]
        return lmbda * (wanted / max(coded, 1e-4)) ** self.gain


# (lambda, mean bpp of c3's fast preset on kodim01-04, eval/c3_kodak_recipe.json): where a target
# rate starts from
LAMBDA_BPP = ((0.0018, 0.1035), (0.0040, 0.1966), (0.0087, 0.3339), (0.0424, 0.824))


def start_lambda(bpp: float) -> float:
    """The lambda whose typical rate is ``bpp`` (log-log interpolation of :data:`LAMBDA_BPP`,
    extrapolated from its ends)."""
    logs = [(math.log(lm), math.log(b)) for lm, b in LAMBDA_BPP]
    t = math.log(bpp)
    pairs = list(itertools.pairwise(logs))
    (l0, b0), (l1, b1) = next(((a, b) for a, b in pairs if t <= b[1]), pairs[-1])
    return math.exp(l0 + (t - b0) * (l1 - l0) / (b1 - b0))


class BestModel:
    """The parameters with the lowest loss as coded (hard rounding, the tables' resolution) among
    those offered: the fit goes back to them at the end of each phase, so that a phase that drifts
    late (noise, a learning rate still high) cannot end worse than it has been."""

    def __init__(self, x: Tensor, lmbda: float) -> None:
        self.x, self.lmbda = x, lmbda
        self.loss = math.inf
        self.state: dict[str, Tensor] = {}

    def offer(self, model: ImageModel) -> None:
        loss = coded_loss(model, self.x, self.lmbda)[0]
        if loss < self.loss:
            self.loss = loss
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, model: ImageModel) -> None:
        """Offer ``model`` as it is, then load the best parameters into it."""
        self.offer(model)
        model.load_state_dict(self.state)


def refit_arm(model: ImageModel, steps: int, lr: float = 3e-3) -> float:
    """Fit the ARM alone to the latents as they are (rounded, held fixed): ``steps`` of Adam on
    their bits under the float Laplace, the learning rate on a cosine to 0. Returns the coded
    bits it saved (it keeps the ARM it started from if those would not fall).

    Fitted beside soft-rounded, noisy latents and barely moved in the hard phase (its learning
    rate is 1e-4 there), the ARM fits the integer latents the file codes less well than it can:
    on kodim03 whole at the fast preset, 300 steps from the fitted ARM coded the latents with
    2.1 % fewer bytes at q3 and 1,000 steps with 7.4 % fewer at q1 (``eval/c3_arm_probe.py
    --warm``, ``eval/c3_arm_probe.jsonl``)."""
    grids = [y.detach() for y in model.latents]
    count = sum(y.numel() for y in grids)
    params = list(model.arm.parameters())
    start = [p.detach().clone() for p in params]
    with torch.no_grad():
        before = latent_bits(model, grids, coded=True).item()
    opt = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():
        for i in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / steps))
            grads = torch.autograd.grad(latent_bits(model, grids) / count, params)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            opt.step()
    for p in params:
        p.grad = None
    with torch.no_grad():
        after = latent_bits(model, grids, coded=True).item()
        if after >= before:
            for p, s in zip(params, start, strict=True):
                p.copy_(s)
            return 0.0
    return before - after


# --------------------------------------------------------------------------------------------
# Quantization of the networks


def groups(model: ImageModel) -> list[tuple[str, list[Tensor]]]:
    """The coded parameter groups, in file order: (name, tensors). Each group has one step.

    The ARM's first-layer weights of the same grid are coded inside its causal mask only (the rest are zeros)."""
    arm, syn = model.arm, model.synthesis
    return [
        ("arm.weight", [arm.same, arm.coarse, arm.hidden.weight, arm.head.weight]),
        ("arm.bias", [arm.bias, arm.hidden.bias, arm.head.bias]),
        ("upsampler.weight", [model.upsampler.taps]),
        ("synthesis.weight", [conv.weight for conv in syn.convolutions()]),
        ("synthesis.bias", [conv.bias for conv in syn.convolutions()]),
    ]


def coded_values(model: ImageModel, tensor: Tensor) -> Tensor:
    """The entries of ``tensor`` that the file codes (flattened)."""
    if tensor is model.arm.same:
        return tensor[model.arm.mask.expand_as(tensor)]
    return tensor.reshape(-1)


@functools.cache
def table_bits() -> list[tuple[int, np.ndarray]]:
    """(offset, bits of each entry, the escape last) of every coding table (:func:`laplace_tables`)."""
    tableset = laplace_tables()
    return [
        (int(offset), tables.PRECISION - np.log2(np.diff(cdf.astype(np.int64))))
        for cdf, offset in zip(tableset.cdfs(), tableset.offsets, strict=True)
    ]


def _zero_mean_tables() -> list[tuple[int, np.ndarray]]:
    """(offset, bits of each entry) of the zero-mean coding table of every scale."""
    return [table_bits()[s << MEAN_BITS] for s in range(SCALES)]


def code_length(values: np.ndarray, offset: int, bits: np.ndarray) -> float:
    """Bits of the integers ``values`` (int64) under one coding table whose entries ``offset``,
    ``offset + 1``, ... cost ``bits`` (the escape symbol last); an escaped value also costs its
    bypass bytes (7 bits of magnitude each)."""
    i = values - offset
    inside = (i >= 0) & (i < len(bits) - 1)
    escapes = values[~inside]
    escape_bits = len(escapes) * bits[-1] + 8 * np.ceil(np.log2(2 * np.abs(escapes) + 2) / 7).sum()
    return float(bits[i[inside]].sum() + escape_bits)


def parameter_cost(values: Tensor) -> tuple[int, float]:
    """(scale index, bits): the zero-mean Laplace table that codes the integers ``values`` in the
    fewest bits (escapes counted with their bypass bytes), and that many bits."""
    v = values.detach().to(torch.int64).cpu().numpy().reshape(-1)
    costs = [code_length(v, offset, bits) for offset, bits in _zero_mean_tables()]
    s = int(np.argmin(costs))
    return s, costs[s]


STEP_CANDIDATES = range(3, 14)  # step 2^-k


def quantize_group(model: ImageModel, tensors: list[Tensor], originals: list[Tensor], k: int) -> float:
    """Set ``tensors`` to ``originals`` on the grid 2^-k; the bits of their integers."""
    with torch.no_grad():
        for t, o in zip(tensors, originals, strict=True):
            t.copy_(torch.round(o * 2.0**k) * 2.0**-k)
        bits = parameter_cost(torch.cat([coded_values(model, t) * 2.0**k for t in tensors]))[1]
    return bits


def choose_steps(model: ImageModel, x: Tensor, lmbda: float, weight_max: float) -> dict[str, int]:
    """Quantize every parameter group in place with the step 2^-k that minimizes the loss (greedy,
    group after group, the later groups still in float); returns k per group name. ARM weights
    whose integers would exceed ``weight_max`` rule their step out."""
    _, _, h, w = x.shape
    steps = {}
    for name, tensors in groups(model):
        originals = [t.detach().clone() for t in tensors]
        best = None
        for k in STEP_CANDIDATES:
            if name == "arm.weight" and max(float(o.abs().max()) for o in originals) * 2.0**k > weight_max:
                continue
            bits = quantize_group(model, tensors, originals, k)
            with torch.no_grad():
                loss = model_loss(model, x, lmbda, hard_round, coded=True)[0].item() + bits / (h * w)
            if best is None or loss < best[0]:
                best = (loss, k)
        steps[name] = best[1]
        quantize_group(model, tensors, originals, best[1])
    return steps


def refine_parameters(
    model: ImageModel, x: Tensor, lmbda: float, steps: dict[str, int], weight_max: float, share: float = 1.0
) -> int:
    """Greedy rate-distortion refinement of the quantized networks (RDOQ, as Cool-chic does): the
    ``share`` of each tensor's coded parameters with the largest gradient of the coded loss, in
    that order, each move one step against its gradient and keep the move when it lowers the
    loss (the group's bits included). An ARM parameter changes only the latents' rate and the
    others only the distortion, so a trial evaluates only the part it changes (the latents stay).
    Returns how many parameters moved.

    On kodim03 whole (q3, fast) it saved 0.9 % of the file at equal PSNR with a quarter tried
    (11 CPU-s), 1.0 % with all (47 CPU-s; ``eval/c3_refine_ab.py``, ``eval/c3_refine_ab.jsonl``)."""
    _, _, h, w = x.shape
    pixels = h * w
    grids = [hard_round(y).detach() for y in model.latents]
    coded = [t for _, tensors in groups(model) for t in tensors]
    with torch.enable_grad():
        loss = model_loss(model, x, lmbda, hard_round, coded=True)[0]
        grads = dict(zip(map(id, coded), torch.autograd.grad(loss, coded, allow_unused=True), strict=True))

    with torch.no_grad():
        upsampled = model.upsampler(grids)

        def part(name: str) -> float:  # what a parameter of group ``name`` changes
            if name.startswith("arm"):
                return latent_bits(model, grids, coded=True).item() / pixels
            up = model.upsampler(grids) if name == "upsampler.weight" else upsampled
            x_hat = model.synthesis(grids[0], up)[..., :h, :w]
            return lmbda * MSE_SCALE * torch.mean((x_hat - x) ** 2).item()

        def group_bits(tensors: list[Tensor], k: int) -> float:
            return parameter_cost(torch.cat([coded_values(model, t) * 2.0**k for t in tensors]).round())[1]

        moved = 0
        for name, tensors in groups(model):
            k = steps[name]
            best = part(name) + group_bits(tensors, k) / pixels
            for t in tensors:
                grad = grads[id(t)]
                if grad is None:
                    continue
                flat, g = t.view(-1), grad.reshape(-1)
                if t is model.arm.same:  # outside the causal mask nothing is coded
                    g = g * model.arm.mask.expand_as(t).reshape(-1)
                order = [i for i in torch.argsort(g.abs(), descending=True).tolist() if g[i] != 0]
                for i in order[: round(share * len(order))]:
                    old = flat[i].item()
                    new = old - float(torch.sign(g[i])) * 2.0**-k
                    if name == "arm.weight" and abs(new) * 2.0**k > weight_max:
                        continue
                    flat[i] = new
                    trial = part(name) + group_bits(tensors, k) / pixels
                    if trial < best:
                        best, moved = trial, moved + 1
                    else:
                        flat[i] = old
            if name == "upsampler.weight":  # the synthesis's trials see the refined filters
                upsampled = model.upsampler(grids)
    return moved
