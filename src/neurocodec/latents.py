"""Compressed learning: a folder of images or audio clips -> a dataset of codec latents.

WaLLoC's latent is a small, dimension-reduced tensor (24 channels at 1/8 of an image's
resolution with the shipped weights; 1/256 of an audio clip's rate) that a downstream model can learn from directly,
without decoding. This module turns media files into those latents and keeps them on disk:

- :func:`encode_latents` is a pure function over a list of files: the same files and codec
  give the same latents, in the same order, on any worker. Ray Data, Spark or a plain
  ``multiprocessing`` pool can map it over shards of a file list; nothing here schedules work.
  Files are read on the CPU and go through the codec's analysis in batches on the codec's
  device (a GPU when the codec is on one).
- :func:`save_latents` writes the items it yields as safetensors shards plus an
  ``index.json`` (every file atomically, the index last: a folder with an index is complete).
- :class:`LatentDataset` reads such a folder back as a :class:`torch.utils.data.Dataset`,
  without the codec.

A latent is the latent as a decoder gets it from the file (``codec.latent(x)``, as float32:
the rounded latent, or with a hyperprior the rounded residuals plus its predicted means), one
item per file, without a batch dimension. Items of different sizes:
``crop=None`` (default) encodes each file at its own size, so latents differ in size and
batches hold runs of consecutive same-size files; ``crop=(H, W)`` (images) or ``crop=T``
(audio) takes the centred crop of that size of every file first, so every latent has the
same shape. A file smaller than the crop is a bad file. Grey images and mono clips are
repeated into the codec's channels; an audio file's sample rate is recorded, not converted.

Bad files (unreadable, corrupt, of a kind the codec cannot code, smaller than the crop)
raise a :class:`~neurocodec.errors.NeurocodecError` naming the file, unless
``skip_bad=True``: then each is reported with a :class:`SkippedFileWarning` and left out.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from tqdm import tqdm

from neurocodec.errors import (
    ConfigError,
    MediaReadError,
    NeurocodecError,
    OutputExistsError,
    UnsupportedMediaError,
)
from neurocodec.io.atomic import write_atomic

if TYPE_CHECKING:
    from neurocodec.codecs.base import Codec

__all__ = ["LatentDataset", "LatentItem", "SkippedFileWarning", "encode_latents", "save_latents"]

INDEX = "index.json"
FORMAT = "neurocodec-latents"
VERSION = 1


class SkippedFileWarning(UserWarning):
    """A file :func:`encode_latents` left out under ``skip_bad=True``; the message says why."""


@dataclass(frozen=True)
class LatentItem:
    """The latent of one file.

    ``latent``: float32 with integer values, ``(channels, h, w)`` for images or
    ``(channels, t)`` for audio, on the CPU. ``shape``: the file's samples as read, before
    any crop, ``(C, H, W)`` or ``(C, T)``. ``sample_rate``: the audio file's rate in Hz (None
    for images).
    """

    path: str
    latent: torch.Tensor
    shape: tuple[int, ...]
    sample_rate: int | None = None


# --------------------------------------------------------------------------------------------
# Encoding


def _check_codec(codec: Codec) -> None:
    if not callable(getattr(codec, "latent", None)) or codec.media not in ("image", "audio"):
        raise ConfigError(
            f"{getattr(codec, 'name', type(codec).__name__)} exposes no latent(x) of images or audio: "
            "compressed learning needs a codec that does (walloc-image, walloc-audio)"
        )


def _crop_size(crop: int | Sequence[int] | None, media: str) -> tuple[int, ...] | None:
    if crop is None:
        return None
    size = (crop,) if isinstance(crop, int) else tuple(crop)
    dims = 2 if media == "image" else 1
    if len(size) != dims or not all(isinstance(s, int) and s > 0 for s in size):
        layout = "(height, width)" if media == "image" else "a number of samples"
        raise ConfigError(f"the crop of {media} files is {layout} of positive ints, not {crop!r}")
    return size


def _center_crop(x: torch.Tensor, size: tuple[int, ...], path: Path) -> torch.Tensor:
    """The centred ``size`` crop of ``x``'s trailing dimensions (offsets as torchvision rounds them)."""
    sides = tuple(x.shape[-len(size) :])
    if any(s < c for s, c in zip(sides, size, strict=True)):
        raise UnsupportedMediaError(f"{path} is {'x'.join(map(str, sides))}, smaller than the crop {size}")
    index = [slice(None)] * (x.ndim - len(size))
    starts = [round((s - c) / 2.0) for s, c in zip(sides, size, strict=True)]
    index += [slice(start, start + c) for start, c in zip(starts, size, strict=True)]
    return x[tuple(index)]


def _read(codec: Codec, path: Path, crop: tuple[int, ...] | None) -> tuple[torch.Tensor, LatentItem]:
    """The codec's input for ``path`` and the item to fill in (its latent still empty).

    Grey images and mono clips are repeated into the codec's channels, as a viewer plays them.
    """
    if codec.media == "image":
        from neurocodec.io.image import read_image

        x, _ = read_image(path)
        rate = None
    else:
        from neurocodec.io.audio import read_audio

        x, info = read_audio(path)
        rate = info.sample_rate
    want = codec.channels[0]
    if x.shape[0] not in codec.channels:
        if x.shape[0] != 1:
            raise UnsupportedMediaError(
                f"{path} has {x.shape[0]} channels; {codec.name} codes {' or '.join(map(str, codec.channels))}"
            )
        x = x.expand(want, *x.shape[1:])
    item = LatentItem(str(path), torch.empty(0), tuple(x.shape), rate)
    if crop is not None:
        x = _center_crop(x, crop, path)
    return x.contiguous(), item


def _files(codec: Codec, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(paths, str | os.PathLike):
        from neurocodec.io import media_files

        try:
            return media_files(paths, codec.media)
        except FileNotFoundError as e:
            raise MediaReadError(str(e)) from None
    return [Path(p) for p in paths]


def encode_latents(
    codec: Codec,
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    batch_size: int | None = None,
    crop: int | Sequence[int] | None = None,
    device: str | torch.device | None = None,
    skip_bad: bool = False,
    progress: bool = True,
) -> Iterator[LatentItem]:
    """The latent of each file, in the order given, batched through the codec on its device.

    Args:
        codec: a codec with ``latent(x)`` (``walloc-image`` or ``walloc-audio``); else
            :class:`~neurocodec.errors.ConfigError`.
        paths: a list of files, or a folder (its images or WAV/FLAC files, recursively, sorted).
        batch_size: files per call of the codec (a run of same-size files; a size change
            ends a batch early). Batching changes the speed, not the latents. None: 1 on the
            CPU, where the analysis of a batch of 8 Kodak-sized images took 1.4-2x as long as 8
            analyses of one (one thread, measured), and 16 on a GPU, where batches fill the device.
        crop: None to encode every file whole, or the centred crop to take first: ``(H, W)``
            for images, a number of samples for audio.
        device: where the codec runs; None: where it is. Given, the codec is moved there.
        skip_bad: leave out files that cannot be read or coded, with a
            :class:`SkippedFileWarning` each, instead of raising.
        progress: a tqdm bar (files) on stderr.

    Yields :class:`LatentItem` one by one, lazily: a shard of a large list never holds more
    than one batch of inputs in memory.
    """
    _check_codec(codec)
    size = _crop_size(crop, codec.media)
    if device is not None:
        from neurocodec.registry import resolve_device

        codec.to(resolve_device(device))
    if batch_size is None:
        batch_size = 1 if codec.device.type == "cpu" else 16
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
    files = _files(codec, paths)
    bar = tqdm(files, disable=not progress, file=sys.stderr, unit="file", desc=f"{codec.name} latents")
    batch: list[tuple[torch.Tensor, LatentItem]] = []
    for path in bar:
        try:
            x, item = _read(codec, path, size)
        except NeurocodecError as e:
            if not skip_bad:
                raise
            message = f"skipped: {e}" if str(path) in str(e) else f"skipped {path}: {e}"
            warnings.warn(message, SkippedFileWarning, stacklevel=2)
            continue
        if batch and (len(batch) == batch_size or batch[0][0].shape != x.shape):
            yield from _encode_batch(codec, batch)
            batch = []
        batch.append((x, item))
    if batch:
        yield from _encode_batch(codec, batch)


def _encode_batch(codec: Codec, batch: list[tuple[torch.Tensor, LatentItem]]) -> Iterator[LatentItem]:
    x = torch.stack([x for x, _ in batch]).to(codec.device, torch.float32)
    with torch.inference_mode():
        latents = codec.latent(x).float().cpu()
    for latent, (_, item) in zip(latents, batch, strict=True):
        yield LatentItem(item.path, latent.clone(), item.shape, item.sample_rate)


# --------------------------------------------------------------------------------------------
# Saving and loading


def _stored(latent: torch.Tensor) -> torch.Tensor:
    """An integer-valued latent in the narrowest of int16 / int32 that holds it (half the bytes
    of float32); any other (a hyperprior's, on its means' grid) as float32, exactly."""
    if not bool(torch.equal(latent, torch.round(latent))):
        return latent.to(torch.float32).contiguous()
    limit = float(latent.abs().max()) if latent.numel() else 0.0
    if limit >= 2**31:
        raise ConfigError(f"a latent value of {limit:g} does not fit in int32")
    return latent.to(torch.int16 if limit < 2**15 else torch.int32).contiguous()


def save_latents(
    items: Iterable[LatentItem],
    out_dir: str | os.PathLike[str],
    shard_size: int = 1024,
    *,
    codec: Codec | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``items`` as ``shard-NNNNN.safetensors`` files of ``shard_size`` items and an index.

    ``items`` is consumed as it comes (a generator of :func:`encode_latents` streams to disk,
    one shard in memory). Integer-valued latents are stored as integers, others (a
    hyperprior's) as float32; all are read back as float32. The index (``index.json``) lists
    each item's file, original shape, sample rate, shard and latent shape, and, given
    ``codec``, its name, quality and weights hash; it is written last, so an interrupted run
    leaves no loadable dataset. An existing dataset in ``out_dir`` is replaced only with
    ``overwrite=True``. Returns the path of the index.
    """
    if shard_size < 1:
        raise ConfigError(f"shard_size must be at least 1, not {shard_size}")
    out = Path(out_dir)
    if (out / INDEX).exists() and not overwrite:
        raise OutputExistsError(
            f"{out} already holds a latent dataset (use -f / overwrite=True to replace it)"
        )
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    shards: list[str] = []
    pending: dict[str, torch.Tensor] = {}

    def flush() -> None:
        name = f"shard-{len(shards):05d}.safetensors"
        write_atomic(out / name, save_safetensors(pending), overwrite=True)
        shards.append(name)
        pending.clear()

    for item in items:
        key = str(len(pending))
        pending[key] = _stored(item.latent)
        records.append({
            "path": item.path, "shape": list(item.shape), "sample_rate": item.sample_rate,
            "shard": len(shards), "key": key, "latent_shape": list(item.latent.shape),
        })  # fmt: skip
        if len(pending) == shard_size:
            flush()
    if pending:
        flush()
    index = {"format": FORMAT, "version": VERSION, "shards": shards, "items": records}
    if codec is not None:
        index["codec"] = {
            "name": codec.name,
            "quality": codec.quality,
            "weights_hash": codec.weights_hash.hex(),
        }
    write_atomic(out / INDEX, json.dumps(index, indent=1).encode(), overwrite=True)
    return out / INDEX


class LatentDataset(torch.utils.data.Dataset):
    """The latents a :func:`save_latents` folder holds: ``dataset[i]`` is a float32 tensor.

    No codec is needed. Shards are read when first used and kept (latents are small: that is
    their point). ``items[i]`` is the index's record of item ``i``: ``path``, ``shape``,
    ``sample_rate``, ``latent_shape``; ``codec`` names the codec that made them (or None).
    Labels are the caller's: derive them from ``paths``.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        try:
            index = json.loads((self.root / INDEX).read_text())
        except FileNotFoundError:
            raise MediaReadError(f"{self.root} holds no latent dataset (no {INDEX})") from None
        except (OSError, ValueError) as e:
            raise MediaReadError(f"cannot read {self.root / INDEX}: {e}") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise MediaReadError(f"{self.root / INDEX} is not the index of a latent dataset")
        if index.get("version") != VERSION:
            raise MediaReadError(
                f"{self.root / INDEX} is a latent dataset of version {index.get('version')}; "
                f"this neurocodec reads version {VERSION}"
            )
        self.shards: list[str] = index["shards"]
        self.items: list[dict] = index["items"]
        self.codec: dict | None = index.get("codec")
        self._loaded: dict[int, dict[str, torch.Tensor]] = {}

    @property
    def paths(self) -> list[str]:
        return [item["path"] for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def _shard(self, number: int) -> dict[str, torch.Tensor]:
        if number not in self._loaded:
            path = self.root / self.shards[number]
            try:
                self._loaded[number] = load_safetensors(path.read_bytes())
            except (OSError, SafetensorError) as e:
                raise MediaReadError(f"cannot read the latent shard {path}: {e}") from None
        return self._loaded[number]

    def __getitem__(self, i: int) -> torch.Tensor:
        item = self.items[i]
        latent = self._shard(item["shard"]).get(item["key"])
        if latent is None or list(latent.shape) != item["latent_shape"]:
            raise MediaReadError(
                f"{self.root / self.shards[item['shard']]} does not hold item {i} as indexed"
            )
        return latent.float()
