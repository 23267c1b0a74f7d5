"""Speed of the learned codecs: encode and decode times per file, from Python or ``neurocodec bench``.

Each file is read once (:func:`~neurocodec.io.read_codec_input`, as ``neurocodec encode`` reads it), then coded
``warmup`` times untimed, then ``reps`` times timed, an encode and a decode in turn, each
timed with :func:`time.perf_counter` (the CUDA device synchronized before and after on a GPU).
A row (:func:`bench_input`, :func:`bench_file`) reports the median and the fastest of the
repetitions, the size of the complete file the encoder wrote (its rate: bpp for images, kbit/s
for audio), the throughput (megapixels or seconds of audio coded per second) and whether the
repetitions agreed: ``same_bytes`` (every encode wrote the same file) and ``deterministic``
(every decode gave the same tensor, :func:`torch.equal`; None with one repetition).
:func:`summarize` averages the rows of one codec and quality.

Times include moving the input to the codec's device (encode) but not the output back (decode).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from neurocodec.io import read_codec_input

if TYPE_CHECKING:
    from neurocodec.codecs.base import Codec

__all__ = ["bench_codec", "bench_file", "bench_input", "summarize"]


def _ms(seconds: Sequence[float]) -> tuple[float, float]:
    """Median and minimum of ``seconds``, in milliseconds."""
    return 1000 * statistics.median(seconds), 1000 * min(seconds)


def bench_input(
    codec: Codec,
    x: torch.Tensor,
    options: dict | None = None,
    reps: int = 5,
    warmup: int = 1,
    effort: int = 0,
) -> dict:
    """Time ``codec`` on one input ``x`` (an image ``(C, H, W)`` in [0, 1], audio ``(C, T)`` in
    [-1, 1], a video ``(C, T, H, W)``), coded with the keywords ``options`` of
    :meth:`~neurocodec.codecs.base.Codec.encode` (``sample_rate``, ``frame_rate``, ...;
    :func:`~neurocodec.io.read_codec_input` gives them): ``warmup`` untimed encode+decode, then ``reps`` timed encodes
    and decodes in turn. The row's times are in milliseconds (median, and ``_min``, of the reps;
    ``_all``: each rep)."""
    if reps < 1 or warmup < 0:
        raise ValueError(f"reps must be at least 1 and warmup at least 0, not {reps} and {warmup}")
    device = codec.device

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def encode() -> bytes:
        return codec.encode(x, effort=effort, **(options or {}))

    for _ in range(warmup):
        codec.decode(encode())
    encode_s, decode_s = [], []
    first_data, first_y = None, None
    same_bytes = deterministic = True
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        data = encode()
        sync()
        t1 = time.perf_counter()
        y = codec.decode(data)
        sync()
        t2 = time.perf_counter()
        encode_s.append(t1 - t0)
        decode_s.append(t2 - t1)
        if first_data is None:
            first_data, first_y = data, y
        else:
            same_bytes = same_bytes and data == first_data
            deterministic = deterministic and torch.equal(y, first_y)
    assert first_data is not None

    encode_ms, encode_min = _ms(encode_s)
    decode_ms, decode_min = _ms(decode_s)
    size = len(first_data)
    options = options or {}
    if codec.media == "audio":
        rate = options.get("sample_rate") or codec.sample_rate
        seconds = x.shape[-1] / rate
        shape = {"samples": x.shape[-1], "sample_rate": rate, "seconds": seconds}
        rates = {"kbps": 8 * size / seconds / 1000}
        speed = {
            "encode_x_realtime": seconds / (encode_ms / 1000),
            "decode_x_realtime": seconds / (decode_ms / 1000),
        }
    elif codec.media == "video":
        frames, pixels = x.shape[-3], x.shape[-3] * x.shape[-2] * x.shape[-1]
        seconds = frames / float(options.get("frame_rate") or 25)
        shape = {"frames": frames, "height": x.shape[-2], "width": x.shape[-1], "pixels": pixels}
        rates = {"bpp": 8 * size / pixels, "kbps": 8 * size / seconds / 1000}
        speed = {
            "encode_mp_s": pixels / 1e6 / (encode_ms / 1000),
            "decode_mp_s": pixels / 1e6 / (decode_ms / 1000),
            "encode_fps": frames / (encode_ms / 1000),
            "decode_fps": frames / (decode_ms / 1000),
        }
    else:
        pixels = x.shape[-2] * x.shape[-1]
        shape = {"height": x.shape[-2], "width": x.shape[-1], "pixels": pixels}
        rates = {"bpp": 8 * size / pixels}
        speed = {
            "encode_mp_s": pixels / 1e6 / (encode_ms / 1000),
            "decode_mp_s": pixels / 1e6 / (decode_ms / 1000),
        }
    return {
        **shape,
        "bytes": size,
        **rates,
        "encode_ms": encode_ms,
        "encode_ms_min": encode_min,
        "decode_ms": decode_ms,
        "decode_ms_min": decode_min,
        "total_ms": encode_ms + decode_ms,
        **speed,
        "same_bytes": same_bytes,
        "deterministic": deterministic if reps > 1 else None,
        "encode_ms_all": [1000 * s for s in encode_s],
        "decode_ms_all": [1000 * s for s in decode_s],
    }


def bench_file(codec: Codec, path: str | Path, reps: int = 5, warmup: int = 1, effort: int = 0) -> dict:
    """:func:`bench_input` of the file at ``path`` (read once), with its name as ``file``."""
    x, options = read_codec_input(path, codec.media, codec.channels)
    return {"file": Path(path).name, **bench_input(codec, x, options, reps, warmup, effort)}


def bench_codec(
    codec: Codec, paths: Sequence[str | Path], reps: int = 5, warmup: int = 1, effort: int = 0
) -> list[dict]:
    """:func:`bench_file` of each of ``paths``, in order (a file that cannot be read or coded raises)."""
    return [bench_file(codec, path, reps, warmup, effort) for path in paths]


def summarize(rows: Sequence[dict]) -> dict:
    """The rows of one codec and quality together: their count, mean bytes and rate (bpp or
    kbit/s), the mean over files of each file's median encode, decode and total milliseconds,
    the throughput of all of them (total megapixels, or seconds of audio, over the total of the
    medians) and whether every file was ``deterministic`` (None when no file was checked)."""
    if not rows:
        raise ValueError("no rows to summarize")
    count = len(rows)
    audio = "sample_rate" in rows[0]  # else pixels: images, or the frames of a video
    summary: dict = {"files": count, "bytes": statistics.fmean(r["bytes"] for r in rows)}
    summary["kbps" if audio else "bpp"] = statistics.fmean(r["kbps" if audio else "bpp"] for r in rows)
    for key in ("encode_ms", "decode_ms", "total_ms"):
        summary[key] = statistics.fmean(r[key] for r in rows)
    amount = sum(r["seconds"] if audio else r["pixels"] / 1e6 for r in rows)
    unit = "x_realtime" if audio else "mp_s"
    for what in ("encode", "decode", "total"):
        summary[f"{what}_{unit}"] = amount / (summary[f"{what}_ms"] * count / 1000)
    checked = [r["deterministic"] for r in rows if r["deterministic"] is not None]
    summary["same_bytes"] = all(r["same_bytes"] for r in rows)
    summary["deterministic"] = all(checked) if checked else None
    return summary
