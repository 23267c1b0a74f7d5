"""The media files of a folder: every image, audio file or video below it, sorted.

Every command, the trainer, the compressed-learning helpers and the notebooks list their inputs
here, so a folder means the same files everywhere. A path that is a file is that file alone.
Torch-free (the command line imports it before any codec loads).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "audio_files",
    "image_files",
    "media_files",
    "video_files",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".ppm"}
AUDIO_SUFFIXES = {".wav", ".flac"}
VIDEO_SUFFIXES = {".y4m", ".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v"}


def _files(root: str | Path, suffixes: set[str], kind: str) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)
    if not files:
        raise FileNotFoundError(f"no {kind} under {root}")
    return files


def image_files(root: str | Path) -> list[Path]:
    """Every image below ``root`` (recursively), sorted, so the order is the same everywhere."""
    return _files(root, IMAGE_SUFFIXES, "images")


def audio_files(root: str | Path) -> list[Path]:
    """Every WAV and FLAC file below ``root`` (recursively), sorted."""
    return _files(root, AUDIO_SUFFIXES, "audio files (.wav, .flac)")


def video_files(root: str | Path) -> list[Path]:
    """Every Y4M and container video below ``root`` (recursively), and each raw .yuv whose name
    gives its geometry (:func:`neurocodec.io.video.raw_geometry`), sorted; ``root`` itself if it
    is a file (a .yuv file without its geometry fails when it is read, with the reason)."""
    from neurocodec.io.video import raw_geometry

    files = _files(
        root, {*VIDEO_SUFFIXES, ".yuv"}, f"videos ({', '.join(sorted(VIDEO_SUFFIXES))}, named .yuv)"
    )
    return [p for p in files if p.suffix.lower() != ".yuv" or raw_geometry(p) or p == Path(root)]


_LISTERS = {"image": image_files, "audio": audio_files, "video": video_files}


def media_files(root: str | Path, media: str) -> list[Path]:
    """The files of ``media`` ("image", "audio" or "video") below ``root``: :func:`image_files`,
    :func:`audio_files` or :func:`video_files`. Raises :class:`FileNotFoundError` when there is none."""
    try:
        lister = _LISTERS[media]
    except KeyError:
        raise ValueError(f"media must be one of {', '.join(_LISTERS)}, not {media!r}") from None
    return lister(root)
