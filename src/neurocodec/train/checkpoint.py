"""Checkpoints as safetensors shards (no pickle), each at most ``max_shard_bytes``.

A checkpoint is a folder: ``state-00000.safetensors``, ``state-00001.safetensors``, ... holding
every tensor of a flat ``{name: tensor}`` dict, and ``meta.json`` with the non-tensor state
(step, RNG states as lists, the run config). Shards stay under 16 MiB so a GPU session can
bring a resumable run back through its file limits; optimizer moments may be stored in bf16.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

__all__ = [
    "has_checkpoint",
    "load_checkpoint",
    "model_weights",
    "pack_checkpoint",
    "remove_checkpoint",
    "save_checkpoint",
]

MAX_SHARD_BYTES = 15 * 2**20


def save_checkpoint(
    folder: str | Path, tensors: dict[str, torch.Tensor], meta: dict, max_shard_bytes: int = MAX_SHARD_BYTES
):
    """Writes the shards and meta.json into ``folder`` (replacing a previous checkpoint there)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for stale in tmp.iterdir():
        stale.unlink()
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        nbytes = t.numel() * t.element_size()
        if nbytes > max_shard_bytes:
            raise ValueError(f"tensor {name} ({nbytes} bytes) exceeds the shard size")
        if size + nbytes > max_shard_bytes and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    for i, shard in enumerate(shards):
        save_file(shard, str(tmp / f"state-{i:05d}.safetensors"))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    # swap the new checkpoint in; a crash at any point leaves a complete one under `folder`
    # or `folder.old`, and load_checkpoint reads the latter when the former is missing
    previous = folder.with_name(folder.name + ".old")
    if folder.exists():
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(folder, previous)
    os.replace(tmp, folder)
    if previous.exists():
        shutil.rmtree(previous)


def has_checkpoint(folder: str | Path) -> bool:
    """Whether ``folder`` (or the ``.old`` copy an interrupted save leaves) holds a checkpoint."""
    folder = Path(folder)
    return any((f / "meta.json").exists() for f in (folder, folder.with_name(folder.name + ".old")))


def remove_checkpoint(folder: str | Path) -> None:
    """Removes ``folder`` and the ``.old`` copy an interrupted save may have left."""
    folder = Path(folder)
    for f in (folder, folder.with_name(folder.name + ".old")):
        shutil.rmtree(f, ignore_errors=True)


def load_checkpoint(
    folder: str | Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict]:
    folder = Path(folder)
    previous = folder.with_name(folder.name + ".old")
    if not (folder / "meta.json").exists() and (previous / "meta.json").exists():
        folder = previous  # a save was interrupted between its two renames
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("state-*.safetensors")):
        tensors.update(load_file(str(shard), device=str(device)))
    meta = json.loads((folder / "meta.json").read_text())
    return tensors, meta


MOMENTS = ("exp_avg", "exp_avg_sq")  # Adam's moment estimates, by their state names


def model_weights(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """The model's state_dict in a checkpoint's tensors: the EMA (``ema.*``) when the run kept
    one, else the live weights (``model.*``); and whether it is the EMA."""
    ema = any(k.startswith("ema.") for k in tensors)
    prefix = "ema." if ema else "model."
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, ema


def pack_checkpoint(src: str | Path, dst: str | Path, moments: torch.dtype = torch.bfloat16) -> list[Path]:
    """A copy of the checkpoint ``src`` in ``dst`` with the optimizer moments stored as ``moments``
    (bf16: half their bytes), to carry a run through a device's file limits; returns its files.

    The weights, the EMA and everything else stay as they are. A run resumed from the copy
    (``Trainer.try_resume`` reads moments of any float dtype) continues with moments rounded to
    bf16's 8 bits: close to, but not bit-for-bit, the uninterrupted run.
    """
    tensors, meta = load_checkpoint(src)
    packed = {
        name: t.to(moments) if name.rsplit(".", 1)[-1] in MOMENTS and t.is_floating_point() else t
        for name, t in tensors.items()
    }
    save_checkpoint(dst, packed, meta)
    return sorted(Path(dst).iterdir())
