"""Media readers and writers: images (:mod:`.image`), audio (:mod:`.audio`), video (:mod:`.video`),
the media files of a folder (:mod:`.files`, here as :func:`image_files` and friends) and atomic
file writes (:mod:`.atomic`). Tensors are float32: images (C, H, W) and video
(C, T, H, W) in [0, 1], audio (C, T) in [-1, 1]."""

from __future__ import annotations

from collections.abc import Collection
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from neurocodec.errors import UnsupportedMediaError
from neurocodec.io.files import audio_files, image_files, media_files, video_files

if TYPE_CHECKING:  # the command line imports this package; torch loads only for the commands that code
    import torch

__all__ = ["audio_files", "image_files", "input_media", "media_files", "read_codec_input", "video_files"]


def input_media(path: str | Path) -> str:
    """What an input file of ``neurocodec encode`` holds, by its extension: audio for the formats
    soundfile reads and writes (WAV, FLAC, Ogg), video for Y4M, raw .yuv and the containers PyAV
    reads (MP4, MKV, MOV, WebM, AVI), else an image."""
    from neurocodec.io.audio import WRITE_FORMATS
    from neurocodec.io.files import VIDEO_SUFFIXES

    suffix = Path(path).suffix.lower()
    if suffix in WRITE_FORMATS:
        return "audio"
    return "video" if suffix in VIDEO_SUFFIXES or suffix == ".yuv" else "image"


def read_codec_input(
    path: str | Path,
    media: str,
    channels: Collection[int] = (3,),
    *,
    max_frames: int | None = None,
    raw: tuple[int, int, str, Fraction] | None = None,
) -> tuple[torch.Tensor, dict]:
    """The file at ``path`` as the input of a codec of ``media`` ("image", "audio" or "video") that
    codes ``channels`` channels, and the keywords :meth:`~neurocodec.codecs.base.Codec.encode` takes
    with it: ``sample_rate`` for audio; for video ``frame_rate``, ``colour``, ``full_range`` and
    ``bit_depth``. A grey image goes into a colour codec as three equal channels. A YUV video goes
    in as its Y, Cb, Cr planes at full size (chroma repeated: no colour conversion,
    :func:`~neurocodec.io.video.planes_to_tensor`), a grey or RGB one as RGB; ``max_frames``: its
    first frames only; ``raw``: the ``(width, height, pix_fmt, rate)`` of a headerless .yuv whose
    name does not give them. Raises the readers' :class:`~neurocodec.errors.NeurocodecError`."""
    if media == "audio":
        from neurocodec.io.audio import read_audio

        x, info = read_audio(path)
        return x, {"sample_rate": info.sample_rate}
    if media == "video":
        return _read_video_input(Path(path), max_frames, raw)
    from neurocodec.io.image import read_image

    x, _ = read_image(path)
    if x.shape[0] == 1 and 1 not in channels:
        x = x.expand(3, -1, -1)
    return x, {}


def _read_video_input(
    path: Path, max_frames: int | None, raw: tuple[int, int, str, Fraction] | None
) -> tuple[torch.Tensor, dict]:
    from neurocodec.io.video import RAW_FORMATS, planes_to_tensor, read_video, read_yuv, yuv_to_rgb

    def read(rgb: bool):
        if raw is not None and path.suffix.lower() == ".yuv":
            return read_yuv(path, *raw, rgb=rgb, max_frames=max_frames)
        return read_video(path, rgb=rgb, max_frames=max_frames)

    try:
        planes, info = read(rgb=False)
    except UnsupportedMediaError:  # a container's pixel format we do not read as planes
        planes, info = None, None
    options: dict = {}
    if planes is None:
        x, info = read(rgb=True)
    elif not planes[1].numel():  # grey: as the RGB reader would give it, without reading the file again
        x = yuv_to_rgb(planes, info.full_range)
    else:
        x, colour = planes_to_tensor(planes)
        options = {"colour": colour, "full_range": info.full_range, "bit_depth": RAW_FORMATS[info.pix_fmt][1]}
    return x, {"frame_rate": Fraction(info.rate_num, info.rate_den), **options}
