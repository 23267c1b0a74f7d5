"""Prior learning for ``recombiner-image`` and ``recombiner-audio`` (:mod:`neurocodec.models.recombiner`):
empirical Bayes by coordinate ascent, as RECOMBINER's ``main_prior_training.py`` does.

``--medium image`` (default) trains on random 64x64 crops of ``--data`` (``shared/data/train``);
``--medium audio`` on random 1024-sample crops of the mid and side signals (mono: the signal) of
the WAV/FLAC clips of ``--data`` (``shared/data/audio/music``) but those ``--exclude`` names, at
their own sample rate; ``--medium speech`` the same on the 16-kHz clips of
``shared/data/audio/speech`` (``--rate``: only clips at that rate; ``--resample``: the others
resampled to it), for ``recombiner-speech``. The KL budget is in bits per pixel (image) or per
sample (audio).

Each iteration

1. runs ``epochs`` passes of Adam over the training patches, minimising ``MSE + beta * KL/pixel``
   jointly in every patch's posterior and in the shared parts (``A`` matrices, LPE upsampler);
2. sets the prior in closed form from the posteriors: ``mean = E[mu_q]``, ``var = E[sigma_q^2 +
   (mu_q - mean)^2]`` (the maximiser of the ELBO over a diagonal Gaussian prior);
3. steers ``beta``: times 1.5 when the mean KL per pixel is above the budget, divided by 1.5 when
   it is below ``budget - band`` (:class:`BetaController`).

This is its own loop, not :mod:`neurocodec.train.trainer`: the harness trains one network on
batches of fresh crops for ``distortion + lambda * rate``; here the state is a posterior per
training patch that persists across iterations, the prior is set in closed form between
passes and beta moves with the KL, none of which the harness expresses without large changes.
The loop checkpoints after every iteration (``checkpoint.pt`` in ``--run``) and resumes from it.

    OMP_NUM_THREADS=1 python -m neurocodec.train.recombiner --run /tmp/recombiner/q1 --budget 0.1 \\
        --minutes 18 --export 1
    OMP_NUM_THREADS=1 python -m neurocodec.train.recombiner --medium audio --run /tmp/rca/q1 \
        --budget 0.3 --exclude music_vibe_ace_kevin_macleod_000-030s.wav --minutes 12 --export 1
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import time
from pathlib import Path

import torch

from neurocodec.io.atomic import write_atomic
from neurocodec.io.audio import read_audio
from neurocodec.io.image import read_image
from neurocodec.models.recombiner import (
    AUDIO_ARCH,
    CPU_ARCH,
    BetaController,
    Posterior,
    Recombiner,
    elbo_loss,
    posterior_optimizer,
    to_signals,
)

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"  # /work/shared beside the checkout
TRAIN = SHARED / "train"
MUSIC = SHARED / "audio" / "music"
SPEECH = SHARED / "audio" / "speech"
ARCHS = {"image": CPU_ARCH, "audio": AUDIO_ARCH, "speech": AUDIO_ARCH}
WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
MIN_LOG_STD = math.log(1e-4)
SMOOTH_BETA = 10  # iterations whose betas the shipped beta averages


def training_patches(folder: Path, count: int, patch: int, seed: int) -> torch.Tensor:
    """``count`` random ``patch``-pixel crops (count, 3, patch, patch), one from each of ``count``
    images drawn at random (with replacement) from ``folder`` and its subfolders."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    rng = random.Random(seed)
    crops = []
    for _ in range(count):
        x, _ = read_image(rng.choice(files))
        _, h, w = x.shape
        top, left = rng.randrange(h - patch + 1), rng.randrange(w - patch + 1)
        crops.append(x[:, top : top + patch, left : left + patch])
    return torch.stack(crops).float()


def training_files(
    folder: Path, exclude: list[str], rate: int | None = None, resample: bool = False
) -> list[Path]:
    """The audio clips (WAV, FLAC) in ``folder`` and its subfolders but those named in ``exclude``
    (and, with ``rate`` but not ``resample``, those at another rate: read from their headers)."""
    import soundfile

    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in (".wav", ".flac") and p.name not in exclude
    )
    if rate is not None and not resample:
        files = [f for f in files if soundfile.info(f).samplerate == rate]
    if not files:
        raise SystemExit(f"no audio clips to train on in {folder}")
    return files


def training_clips(
    folder: Path, exclude: list[str], rate: int | None = None, resample: bool = False
) -> list[tuple[str, torch.Tensor]]:
    """(name, signals (C, T)) of :func:`training_files`: the signals ``recombiner-audio`` codes (mid
    and side of a stereo clip). With ``rate`` (Hz), a clip at another rate is left out, or with
    ``resample`` resampled to it (torchaudio's windowed sinc: training only, where determinism
    does not matter)."""
    import torchaudio

    clips = []
    for f in training_files(folder, exclude, rate, resample):
        x, info = read_audio(f)
        x = x.float()
        if rate is not None and info.sample_rate != rate:
            x = torchaudio.functional.resample(x, info.sample_rate, rate)
        clips.append((f.name, to_signals(x)))
    return clips


def training_segments(
    folder: Path,
    count: int,
    patch: int,
    seed: int,
    exclude: list[str],
    rate: int | None = None,
    resample: bool = False,
) -> torch.Tensor:
    """``count`` random ``patch``-sample crops (count, 1, patch) of :func:`training_clips`: each
    from a clip, then a signal (mid or side of a stereo clip), drawn at random."""
    clips = [signals for _, signals in training_clips(folder, exclude, rate, resample)]
    rng = random.Random(seed)
    crops = []
    for _ in range(count):
        clip = rng.choice(clips)
        signal = clip[rng.randrange(clip.shape[0])]
        start = rng.randrange(signal.shape[0] - patch + 1)
        crops.append(signal[start : start + patch])
    return torch.stack(crops)[:, None]


def update_prior(model: Recombiner, posteriors: list[Posterior]) -> None:
    """The prior set in closed form from the posteriors (and the KL profile from them)."""
    with torch.no_grad():
        mean = torch.cat([q.mean for q in posteriors])
        var = torch.exp(2 * torch.cat([q.log_std for q in posteriors]))
        prior_mean = mean.mean(0)
        prior_var = (var + (mean - prior_mean) ** 2).mean(0)
        model.prior_mean.copy_(prior_mean)
        model.prior_log_std.copy_((0.5 * torch.log(prior_var)).clamp_min(MIN_LOG_STD))
        model.kl_profile.copy_(model.kl_bits(mean, torch.log(var) / 2).mean(0))


def arch_of(args: argparse.Namespace) -> dict:
    """The medium's default architecture with the ``--arch NAME=VALUE`` overrides."""
    arch = dict(ARCHS[args.medium])
    for item in args.arch:
        name, _, value = item.partition("=")
        if name not in arch or name == "dims" or not value.isdigit():
            raise SystemExit(
                f"--arch takes NAME=INTEGER for one of {', '.join(k for k in arch if k != 'dims')}"
            )
        arch[name] = int(value)
    return arch


def make_state(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    model = Recombiner(**arch_of(args))
    if args.medium != "image":
        patches = training_segments(
            Path(args.data), args.patches, model.arch.patch, args.seed, args.exclude, args.rate, args.resample
        )
    else:
        patches = training_patches(Path(args.data), args.patches, model.arch.patch, args.seed)
    chunks = list(torch.split(patches, args.batch))
    posteriors = [Posterior(model, len(c), init_noise=1.0) for c in chunks]
    return {
        "model": model,
        "patches": chunks,
        "posteriors": posteriors,
        "iteration": 0,
        "beta": args.beta,
        "log": [],
    }


def optimizers(
    state: dict, args: argparse.Namespace
) -> tuple[torch.optim.Optimizer, list[torch.optim.Optimizer]]:
    model = state["model"]
    shared = torch.optim.Adam(
        [
            {"params": list(model.A.parameters()), "lr": args.a_lr},
            {"params": list(model.upsampler.parameters()), "lr": args.shared_lr},
        ]
    )
    local = [posterior_optimizer(q, args.lr) for q in state["posteriors"]]
    return shared, local


def save(run: Path, state: dict, shared: torch.optim.Optimizer, local: list[torch.optim.Optimizer]) -> None:
    body = {
        "model": state["model"].state_dict(),
        "posteriors": [q.state_dict() for q in state["posteriors"]],
        "patches": state["patches"],
        "shared_opt": shared.state_dict(),
        "local_opt": [o.state_dict() for o in local],
        "iteration": state["iteration"],
        "beta": state["beta"],
        "log": state["log"],
    }
    tmp = run / "checkpoint.pt.tmp"
    torch.save(body, tmp)
    tmp.replace(run / "checkpoint.pt")


def load(
    run: Path, args: argparse.Namespace
) -> tuple[dict, torch.optim.Optimizer, list[torch.optim.Optimizer]]:
    body = torch.load(run / "checkpoint.pt", weights_only=True)
    model = Recombiner(**arch_of(args))
    model.load_state_dict(body["model"])
    posteriors = []
    for chunk, q_state in zip(body["patches"], body["posteriors"], strict=True):
        q = Posterior(model, len(chunk))
        q.load_state_dict(q_state)
        posteriors.append(q)
    state = {
        **{k: body[k] for k in ("patches", "iteration", "beta", "log")},
        "model": model,
        "posteriors": posteriors,
    }
    shared, local = optimizers(state, args)
    shared.load_state_dict(body["shared_opt"])
    for o, s in zip(local, body["local_opt"], strict=True):
        o.load_state_dict(s)
    return state, shared, local


def run_iteration(
    state: dict, shared: torch.optim.Optimizer, local: list[torch.optim.Optimizer], epochs: int
) -> dict:
    """One coordinate-ascent iteration at the state's beta: the passes, then the prior. Returns its log row."""
    model, beta = state["model"], state["beta"]
    mses, kls = [], []
    for _ in range(epochs):
        for patches, q, opt in zip(state["patches"], state["posteriors"], local, strict=True):
            loss, mse, kl = elbo_loss(model, q, patches, beta)
            shared.zero_grad(set_to_none=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            shared.step()
            opt.step()
            mses.append(mse.item())
            kls.append(kl.item())
    update_prior(model, state["posteriors"])
    with torch.no_grad():  # the KL against the new prior
        kl_bpp = sum(q.kl_bits(model).sum().item() for q in state["posteriors"]) / (
            sum(len(p) for p in state["patches"]) * model.arch.patch**model.arch.dims
        )
    n = len(state["patches"])
    mse = sum(mses[-n:]) / n
    return {
        "iteration": state["iteration"],
        "beta": beta,
        "mse": mse,
        "psnr": -10 * math.log10(mse),
        "kl_bpp": kl_bpp,
    }


def train(args: argparse.Namespace) -> dict:
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    if (run / "checkpoint.pt").exists():
        state, shared, local = load(run, args)
    else:
        state = make_state(args)
        shared, local = optimizers(state, args)
    controller = BetaController(args.budget, args.band, state["beta"])
    deadline = time.monotonic() + 60 * args.minutes
    while state["iteration"] < args.iterations and time.monotonic() < deadline:
        t0 = time.monotonic()
        epochs = args.first_epochs if state["iteration"] == 0 else args.epochs
        row = run_iteration(state, shared, local, epochs)
        row["seconds"] = round(time.monotonic() - t0, 2)
        state["beta"] = controller.update(row["kl_bpp"])
        state["model"].beta.fill_(row["beta"])  # the beta the posteriors were fitted at
        state["iteration"] += 1
        state["log"].append(row)
        save(run, state, shared, local)
        print(json.dumps(row), flush=True)
    return state


def export(state: dict, args: argparse.Namespace) -> Path:
    """``recombiner-{medium}-q{N}.safetensors`` and its model card (R-D filled in by the evaluation)."""
    import hashlib

    from safetensors.torch import save as save_safetensors

    model = state["model"]
    # the controller oscillates around the budget: ship the geometric mean of its last betas
    recent = [row["beta"] for row in state["log"][-SMOOTH_BETA:]]
    model.beta.fill_(math.exp(sum(map(math.log, recent)) / len(recent)))
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    data = save_safetensors(tensors)
    name = f"recombiner-{args.medium}-q{args.export}"
    out = Path(args.out_dir)
    write_atomic(out / f"{name}.safetensors", data, overwrite=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=out
    ).stdout.strip()
    last = state["log"][-1]
    crops = sum(len(p) for p in state["patches"])
    if args.medium != "image":
        clips = [f.name for f in training_files(Path(args.data), args.exclude, args.rate, args.resample)]
        where = Path(args.data).resolve()
        base = SHARED.resolve().parent.parent  # "shared/data/..."
        where = where.relative_to(base) if where.is_relative_to(base) else where
        data_card = (
            f"{where}: {crops} random {model.arch.patch}-sample crops (seed {args.seed}) of the signals "
            f"(stereo: mid and side) of {', '.join(clips)}; held out: {', '.join(args.exclude) or 'none'}"
            + (f"; clips at other rates resampled to {args.rate} Hz" if args.resample else "")
        )
    else:
        data_card = (
            f"shared/data/train (680 images): {crops} random "
            f"{model.arch.patch}x{model.arch.patch} crops (seed {args.seed})"
        )
    per = "pixel" if args.medium == "image" else "sample"
    card = {
        "codec": f"recombiner-{args.medium}",
        "quality": args.export,
        "media": "image" if args.medium == "image" else "audio",
        "filename": f"{name}.safetensors",
        "sha256": hashlib.sha256(data).hexdigest(),
        "arch": arch_of(args),
        "model_card": {
            "training_data": data_card,
            "steps": (args.first_epochs + (state["iteration"] - 1) * args.epochs) * len(state["patches"]),
            "em_iterations": state["iteration"],
            "train_minutes": round(sum(row["seconds"] for row in state["log"]) / 60, 1),
            "epochs_per_iteration": args.epochs,
            "kl_budget_bpp": args.budget,
            "kl_band_bpp": args.band,
            "beta": float(model.beta),
            "final_train": {k: last[k] for k in ("psnr", "kl_bpp")},
            "lambda": 1 / (float(model.beta) * 255**2),
            "distortion": f"MSE (lambda * 255^2 * MSE + KL bits per {per}: the beta-ELBO MSE + beta KL/{per})",
            "lr": args.lr,
            "shared_lr": args.shared_lr,
            "a_lr": args.a_lr,
            "device": "cpu (1 thread)",
            "command": args.command,
            "commit": commit,
            {"image": "rd_kodak", "audio": "rd_music", "speech": "rd_speech"}[args.medium]: [],
            "notes": "CPU preview: patch-level prior only (no hierarchical group/image latents), "
            f"narrow LPE ({'CPU_ARCH' if args.medium == 'image' else 'AUDIO_ARCH'}), a few minutes of coordinate "
            "ascent instead of the paper's 550 x 100 epochs.",
        },
    }
    write_atomic(out / f"{name}.json", (json.dumps(card, indent=1) + "\n").encode(), overwrite=True)
    return out / f"{name}.json"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="folder of the checkpoint (resumed when present)")
    p.add_argument("--medium", choices=tuple(ARCHS), default="image")
    p.add_argument(
        "--rate", type=int, default=None, help="audio: train only on clips at this rate (speech: 16000)"
    )
    p.add_argument("--resample", action="store_true", help="audio: resample clips at another rate to --rate")
    p.add_argument(
        "--budget", type=float, required=True, help="KL budget, bits per pixel (audio: per sample)"
    )
    p.add_argument("--band", type=float, default=None, help="band under the budget (default budget/5)")
    p.add_argument(
        "--data", default=None, help="default: shared/data/train (image), shared/data/audio/music (audio)"
    )
    p.add_argument(
        "--exclude", action="append", default=[], metavar="NAME", help="audio: a clip not to train on"
    )
    p.add_argument(
        "--arch",
        action="append",
        default=[],
        metavar="NAME=N",
        help="an architecture parameter (patch, lpe_channels, ...)",
    )
    p.add_argument("--patches", type=int, default=192)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--first-epochs", type=int, default=30)
    p.add_argument("--minutes", type=float, default=18)
    p.add_argument("--lr", type=float, default=2e-2, help="posteriors' learning rate")
    p.add_argument("--shared-lr", type=float, default=1e-3, help="the LPE upsampler's learning rate")
    p.add_argument("--a-lr", type=float, default=3e-6, help="the A matrices' (1e-4 undoes the fits)")
    p.add_argument("--beta", type=float, default=2e-3, help="the first beta")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export", type=int, default=0, help="quality N: write recombiner-MEDIUM-qN weights")
    p.add_argument("--out-dir", default=str(WEIGHTS))
    args = p.parse_args(argv)
    if args.band is None:
        args.band = args.budget / 5
    if args.data is None:
        args.data = str({"image": TRAIN, "audio": MUSIC, "speech": SPEECH}[args.medium])
    if args.medium == "speech" and args.rate is None:
        args.rate = 16000
    return args


def main(argv: list[str] | None = None) -> None:
    import sys

    args = parse(argv)
    args.command = "python -m neurocodec.train.recombiner " + " ".join(sys.argv[1:] if argv is None else argv)
    state = train(args)
    if args.export:
        print(export(state, args))


if __name__ == "__main__":
    main()
