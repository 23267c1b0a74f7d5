"""Audio in and out: WAV, FLAC and Ogg (Vorbis, Opus) files <-> float tensors.

A tensor is float32 ``(C, T)`` in ``[-1, 1]``: ``C`` channels (mono, stereo or more) of ``T``
samples each, at any sample rate. Reading goes through soundfile (libsndfile): the header is
read first and the sample rate, channel count and length are checked against the container's
limits (:class:`~neurocodec.container.AudioGeometry`) before any sample is decoded.

Integer PCM is scaled by ``2 ** (bits - 1)`` both ways, so a sample ``k / 32768`` survives a
16-bit WAV or FLAC round trip exactly; writing rounds to the nearest level and clips to
``[-1, 1 - 2 ** (1 - bits)]``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from neurocodec.container import AudioGeometry
from neurocodec.errors import GeometryError, MediaReadError, UnsupportedMediaError
from neurocodec.io.atomic import write_atomic

READ_FORMATS = ("WAV", "WAVEX", "RF64", "W64", "FLAC", "OGG")
# extension -> (libsndfile format, default subtype)
WRITE_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".opus": ("OGG", "OPUS"),
}
_INT_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)

# libsndfile error codes (sndfile.h)
_SF_ERR_UNRECOGNISED_FORMAT = 1
_SF_ERR_UNSUPPORTED_ENCODING = 4


@dataclass(frozen=True)
class AudioInfo:
    """What a read audio file was: its rate, channels, libsndfile subtype and format.

    ``subtype`` is e.g. "PCM_16", "PCM_24", "FLOAT", "VORBIS", "OPUS"; ``format`` is "WAV",
    "FLAC", "OGG", ...
    """

    sample_rate: int
    channels: int
    subtype: str
    format: str


def _sf_error(e: Exception, path: Path) -> Exception:
    code = getattr(e, "code", None)
    message = str(getattr(e, "error_string", "") or e).strip().splitlines()[0] if str(e) else type(e).__name__
    if code == _SF_ERR_UNRECOGNISED_FORMAT:
        return UnsupportedMediaError(
            f"{path} is not an audio file neurocodec can read ({', '.join(READ_FORMATS)})"
        )
    if code == _SF_ERR_UNSUPPORTED_ENCODING:
        return UnsupportedMediaError(f"{path}: unsupported audio encoding ({message})")
    return MediaReadError(f"cannot decode {path}: {message}")


def read_audio(path: str | os.PathLike[str]) -> tuple[torch.Tensor, AudioInfo]:
    """An audio file as a float32 ``(C, T)`` tensor in ``[-1, 1]`` and what it was.

    Raises :class:`UnsupportedMediaError` for formats or sizes neurocodec does not handle, and
    :class:`MediaReadError` for missing, unreadable or corrupt files.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f, sf.SoundFile(f) as sound:
            if sound.format not in READ_FORMATS:
                raise UnsupportedMediaError(
                    f"{path}: {sound.format} audio is not supported ({', '.join(READ_FORMATS)})"
                )
            try:
                AudioGeometry(int(sound.samplerate), int(sound.channels), max(int(sound.frames), 1))
            except GeometryError as e:
                raise UnsupportedMediaError(f"{path}: {e}") from None
            if sound.frames <= 0:
                raise MediaReadError(f"cannot decode {path}: it holds no samples")
            data = sound.read(dtype="float32", always_2d=True)
            info = AudioInfo(int(sound.samplerate), int(sound.channels), sound.subtype, sound.format)
    except (UnsupportedMediaError, MediaReadError):
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise MediaReadError(f"cannot read {path}: {e.strerror}") from None
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as e:
        raise _sf_error(e, path) from None
    if data.shape[0] == 0:
        raise MediaReadError(f"cannot decode {path}: it holds no samples")
    x = torch.from_numpy(np.ascontiguousarray(data.T))
    if info.subtype not in _INT_BITS:  # float and lossy files may overshoot
        if not torch.isfinite(x).all():
            raise MediaReadError(f"cannot decode {path}: it has non-finite samples")
        x = x.clamp_(-1.0, 1.0)
    return x, info


def _samples(audio: torch.Tensor, subtype: str) -> np.ndarray:
    """``audio`` (C, T) as the (T, C) array soundfile should write for ``subtype``."""
    x = audio.detach().to("cpu", torch.float64).clamp(-1.0, 1.0).T.contiguous().numpy()
    bits = _INT_BITS.get(subtype)
    if bits is None:
        return x.astype(np.float32)
    scale = float(1 << (bits - 1))
    levels = np.clip(np.round(x * scale), -scale, scale - 1)
    return (levels.astype(np.int64) << (32 - bits)).astype(np.int32)  # libsndfile drops low bits


def write_audio(
    path: str | os.PathLike[str],
    audio: torch.Tensor,
    sample_rate: int,
    *,
    subtype: str | None = None,
    overwrite: bool = False,
) -> None:
    """Write a ``(C, T)`` tensor in ``[-1, 1]`` as an audio file, atomically.

    The format follows the extension: .wav (16-bit PCM unless ``subtype`` says otherwise, e.g.
    "PCM_24", "FLOAT"), .flac (16-bit unless "PCM_24" or "PCM_S8"), .ogg (Vorbis, or
    ``subtype="OPUS"``) or .opus (Ogg Opus; 8, 12, 16, 24 or 48 kHz). Samples are clipped to
    ``[-1, 1]``. An existing file is replaced only with ``overwrite=True``.
    """
    path = Path(path)
    entry = WRITE_FORMATS.get(path.suffix.lower())
    if entry is None:
        raise UnsupportedMediaError(
            f"cannot write {path}: unknown audio extension {path.suffix!r} ({', '.join(WRITE_FORMATS)})"
        )
    fmt, default = entry
    subtype = (subtype or default).upper()
    if not isinstance(audio, torch.Tensor) or audio.ndim != 2 or audio.shape[1] == 0:
        raise ValueError(f"audio must be a non-empty (C, T) tensor, not {getattr(audio, 'shape', audio)}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
        raise ValueError(f"sample_rate must be an int, not {sample_rate!r}")
    try:
        AudioGeometry(sample_rate, int(audio.shape[0]), int(audio.shape[1]))
    except GeometryError as e:
        raise UnsupportedMediaError(f"cannot write {path}: {e}") from None
    if not sf.check_format(fmt, subtype):
        raise UnsupportedMediaError(f"cannot write {path}: {fmt} has no subtype {subtype}")
    if subtype == "OPUS" and sample_rate not in _OPUS_RATES:
        raise UnsupportedMediaError(
            f"cannot write {path}: Opus needs a sample rate of {', '.join(map(str, _OPUS_RATES))} Hz"
        )
    if not torch.isfinite(audio).all():
        raise ValueError("audio tensor has non-finite values")
    buffer = io.BytesIO()
    try:
        with sf.SoundFile(
            buffer, "w", samplerate=sample_rate, channels=int(audio.shape[0]), format=fmt, subtype=subtype
        ) as sound:
            sound.write(_samples(audio, subtype))
    except (sf.SoundFileError, RuntimeError, ValueError) as e:
        raise UnsupportedMediaError(f"cannot write {path} as {fmt} {subtype}: {e}") from None
    write_atomic(path, buffer.getvalue(), overwrite=overwrite)
