"""Export a training checkpoint as shipped weights: safetensors + a JSON model card.

The weights are the run's EMA when it kept one (``--ema``), its live weights otherwise; the
codec is the trained family's (:class:`~neurocodec.registry.CodecFamily`). The CDF tables are
built here, once (``update_tables``), and stored in the safetensors file with the weights; the card
records how the weights were made and their R-D on Kodak, measured with the real codec (bytes
of complete files, 8-bit decoded output).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from safetensors.torch import save_file

from neurocodec.errors import ConfigError
from neurocodec.evaluation.rows import evaluate_audio, evaluate_images, mean_curve, mean_point
from neurocodec.io import audio_files, image_files
from neurocodec.registry import WEIGHTS_DIR, WeightConfig, trainable
from neurocodec.train.checkpoint import load_checkpoint, model_weights

__all__ = ["export_weights"]

DISTORTIONS = {"mse": "MSE (lambda * 255^2 * MSE + bpp)", "ms-ssim": "MS-SSIM (lambda * (1 - MS-SSIM) + bpp)"}


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _describe_data(folder: str) -> str:
    """A data folder as a model card names it: from ``shared/`` on when it lies there (the
    project's data, as every checkout sees it), as given when relative (a folder of the
    checkout, e.g. ``runs/music-split/train``), else by its name; and its file count."""
    path = Path(folder)
    parts = path.parts
    if "shared" in parts:
        shown = Path(*parts[parts.index("shared") :])
    else:
        shown = path if not path.is_absolute() else Path(path.name)
    count = ""
    for kind, files in (("images", image_files), ("audio files", audio_files)):
        try:
            count = f" ({len(files(path))} {kind})"
            break
        except FileNotFoundError:  # the folder is gone (exported elsewhere) or holds none of these
            continue
    return f"{shown.as_posix()}{count}"


def export_weights(
    checkpoint: str | Path,
    quality: int,
    *,
    out_dir: str | Path = WEIGHTS_DIR,
    kodak: str | Path | None = None,
    music: str | Path | None = None,
    training_data: str = "",
    notes: str = "",
) -> Path:
    """Writes ``<codec>-q<quality>.safetensors`` and ``.json`` into ``out_dir``; returns the card's path.

    ``kodak`` (image codecs) and ``music`` (audio codecs): folders to measure the card's R-D on.
    """
    tensors, meta = load_checkpoint(checkpoint)
    config = meta["config"]
    family = trainable(config["model"])
    name, codec_class = family.name, family.codec
    if codec_class is None:
        raise ConfigError(f"{name} declares no codec class: nothing to export to")
    try:
        codec = codec_class(**config["arch"])
    except TypeError as e:  # e.g. a measurement-only variant (the hyperprior's float_prior)
        raise ConfigError(
            f"{name} cannot code the architecture {config['arch']} of {checkpoint}: {e}"
        ) from None
    weights, is_ema = model_weights(tensors)
    codec.model.load_state_dict(weights)
    codec.model.update_tables()
    codec.eval()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}-q{quality}.safetensors"
    save_file({k: v.contiguous() for k, v in codec.model.state_dict().items()}, str(weights))
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    codec.quality, codec.weights_hash = quality, bytes.fromhex(sha256)[:4]

    card = {
        "training_data": training_data or _describe_data(config["data"]),
        "steps": meta["step"],
        "lambda": config["lmbda"],
        "distortion": DISTORTIONS[config.get("distortion", "mse")],
        "batch_size": config["batch_size"],
        **({"samples": config["samples"]} if codec.media == "audio" else {"crop": config["crop"]}),
        "lr": config["lr"],
        "device": config["device"],
        "commit": _commit(),
        "rd_kodak": [],
    }
    if is_ema:
        card["ema_decay"] = config["ema"]  # the shipped weights are the run's moving average
    if notes:
        card["notes"] = notes
    if kodak is not None and codec.media == "image":
        rows = evaluate_images(codec, image_files(kodak))
        point = mean_point(rows)
        card["rd_kodak"] = [{"bpp": round(point["bpp"], 4), "psnr": round(point["psnr"], 3)}]
        card["rd_kodak_files"] = len(rows)
    if music is not None and codec.media == "audio":
        rows = evaluate_audio(codec, audio_files(music))
        (point,) = mean_curve({quality: rows})
        card["rd_music"] = {key: round(point[key], 3) for key in ("kbps", "snr", "si_sdr")}
        card["rd_music_files"] = _describe_data(str(music))
    entry = {
        "codec": name,
        "quality": quality,
        "media": codec.media,
        "filename": weights.name,
        "sha256": sha256,
        "arch": config["arch"],
        "model_card": card,
    }
    path = weights.with_suffix(".json")
    path.write_text(json.dumps(entry, indent=1) + "\n")
    WeightConfig.from_json(path)  # validates what was written
    return path
