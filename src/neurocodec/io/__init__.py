"""Media readers and writers: images (:mod:`.image`), audio (:mod:`.audio`), video (:mod:`.video`),
the media files of a folder (:mod:`.files`, here as :func:`image_files` and friends) and atomic
file writes (:mod:`.atomic`). Tensors are float32: images (C, H, W) and video
(C, T, H, W) in [0, 1], audio (C, T) in [-1, 1]."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from neurocodec.io.files import audio_files, image_files, media_files, video_files

if TYPE_CHECKING:  # the command line imports this package; torch loads only for the commands that code
    import torch

__all__ = ["audio_files", "image_files", "input_media", "media_files", "read_codec_input", "video_files"]


def input_media(path: str | Path) -> str:
    """What an input file of ``neurocodec encode`` holds, by its extension: audio for the formats
    soundfile reads and writes (WAV, FLAC, Ogg), else an image."""
    from neurocodec.io.audio import WRITE_FORMATS

    return "audio" if Path(path).suffix.lower() in WRITE_FORMATS else "image"


def read_codec_input(
    path: str | Path, media: str, channels: Collection[int] = (3,)
) -> tuple[torch.Tensor, int | None]:
    """The file at ``path`` as the input of a codec of ``media`` ("image" or "audio") that codes
    ``channels`` channels, and its sample rate (None for images): a grey image goes into a colour
    codec as three equal channels. Raises the readers' :class:`~neurocodec.errors.NeurocodecError`."""
    if media == "audio":
        from neurocodec.io.audio import read_audio

        x, info = read_audio(path)
        return x, info.sample_rate
    from neurocodec.io.image import read_image

    x, _ = read_image(path)
    if x.shape[0] == 1 and 1 not in channels:
        x = x.expand(3, -1, -1)
    return x, None
