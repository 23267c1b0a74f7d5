"""Fuzz targets of the decoders: each takes untrusted bytes and must either decode them or raise a
:class:`~neurocodec.errors.NeurocodecError`; any other exception, a hang or a wrong answer
to one of the oracles below is a finding. ``eval/fuzz.py`` runs them under atheris (libFuzzer,
coverage-guided); ``tests/test_fuzz.py`` runs them over their seeds, a few thousand mutations
and every crasher found so far.

Targets (``TARGETS``), each with seeds from real files (``seeds(name)``):

- ``container``: :func:`neurocodec.container.unpack` of the bytes as they are, and with a fresh
  CRC-32 appended (so the fuzzer explores the parser behind the checksum). Oracle: a file that
  parses packs back to the same bytes (every encoding is canonical).
- ``coder``: the C++ coder (:mod:`neurocodec.entropy.coder`) decoding the bytes as a rANS stream
  with fixed tables, in one call and as a :class:`StreamDecoder` in three pulls. Oracles: both
  agree; a stream that decodes is re-encoded to the same bytes.
- ``reference``: the plain-torch reference decoder on the same streams. Oracle: it and the C++
  coder agree (both refuse, or both return the same values).
- one per shipped codec (``hyperprior``, ``mlic``, ``walloc-image``, ``walloc-audio``): the
  codec's ``decode`` of the bytes with a fresh CRC, at the quality of its seeds, under small
  resource limits. Oracle: a decode has the shape the header gives and finite samples.
  Seeds: the 0.1.0 corpus files (tests/corpus) of that codec, small images and clips.
- ``c3`` (no released files yet): the same on c3 files, the raster context model decoded by the
  native coder from fuzzed networks and latents. Seed: a 64x64 picture fitted briefly.
- ``nirvana`` (no released files yet): the same on nirvana video files (fuzzed architecture,
  steps and weight streams). Seed: a 4-frame 32x48 clip fitted briefly.
- ``recombiner-image`` (no released files yet): the same on its files (patch shares, block
  indexes) with its shipped prior of quality 1. Seed: a 64x64 picture fitted briefly.
- ``recombiner-audio`` (no released files yet): the same on its files, with its shipped prior of
  quality 1. Seed: a 0.1-s stereo clip fitted briefly. ``recombiner-speech``: the same with the
  speech prior of quality 1; seed: a 0.1-s 16-kHz mono clip.
- ``s2lic`` (no weights shipped yet): its decode under small limits, with seeded initial weights
  of the small preset. Seed: a 64x64 picture.
- ``video-vae``: its decode under small limits, with seeded weights of a tiny architecture
  (:data:`VIDEO_VAE_ARCH`). Seeds: a 5-frame 32x48 clip (two latent groups) and its first frame
  (the image path). ``video-vae-temporal``: the same with the temporal-context latent codec.
- ``vqgan`` (no released files yet): the same on vqgan files of quality 4 (its smallest shipped
  codebook), one index stream and 16 loss-resilient packets (missing or damaged ones are
  restored). Seeds: a 64x96 picture both ways.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from neurocodec import container
from neurocodec.errors import NeurocodecError

CORPUS = Path(__file__).resolve().parent / "corpus"
CODECS = ("hyperprior", "mlic", "walloc-image", "walloc-audio")
SEED_QUALITY = 1  # the codec targets decode files of this quality (their seeds' quality) ...
SEED_QUALITIES = {"vqgan": 4}  # ... or of this one
VIDEO_VAE_ARCH = {"width": 8, "latent": 8, "hidden": 8, "hyper": 8}  # the video-vae target's weights
# Small enough that a fuzzed geometry never makes a decode slow; every seed is within it.
FUZZ_LIMITS = container.Limits(max_samples=1 << 16, max_frames=16, max_sections=8)
MAX_STREAM_SYMBOLS = 1 << 16  # the coder targets skip streams that claim more symbols


class Finding(AssertionError):
    """An oracle of a fuzz target failed: the decoder answered wrongly without crashing."""


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC-32: the file a buggy writer with a correct checksum would make."""
    return body + zlib.crc32(body).to_bytes(4, "little")


# --------------------------------------------------------------------------------------------
# The container


def container_target(data: bytes) -> None:
    for candidate in (data, with_crc(data)):
        try:
            header, sections = container.unpack(candidate)
        except NeurocodecError:
            continue
        if container.pack(header, sections) != candidate:
            raise Finding("a file that parses does not pack back to the same bytes")


# --------------------------------------------------------------------------------------------
# The rANS coder (C++ core and reference)


@functools.cache
def fuzz_tables() -> tuple[list[np.ndarray], np.ndarray]:
    """Fixed CDF tables of the coder targets: the smallest (2 entries), a skewed one, a uniform
    256-entry one and a full-width one (65536 entries), with offsets of both signs."""
    cdfs = [
        np.array([0, 1, 65536]),
        np.array([0, 60000, 64000, 65000, 65535, 65536]),
        np.arange(0, 65537, 256),
        np.arange(65537),
    ]
    return [c.astype(np.int32) for c in cdfs], np.array([0, -2, 100, -32768], np.int32)


@functools.cache
def _table_set():
    from neurocodec.entropy.coder import TableSet

    return TableSet(*fuzz_tables())


def stream_indexes(n: int) -> np.ndarray:
    """The table indexes the coder targets decode ``n`` symbols with: every table in turn."""
    return (np.arange(n, dtype=np.int32) * 7 // 3) % len(fuzz_tables()[0])


def _native_decode(data: bytes) -> np.ndarray | None:
    """The C++ coder's values of ``data`` (None: refused), checked against the incremental
    decoder and re-encoding; ``data`` must claim at most MAX_STREAM_SYMBOLS symbols."""
    from neurocodec.entropy import coder

    info = coder.stream_info(data)
    n = info["num_symbols"]
    indexes = stream_indexes(n)
    try:
        values = coder.decode(data, indexes, _table_set())
    except NeurocodecError:
        values = None
    try:
        dec = coder.StreamDecoder(data, _table_set())
        pulled = [dec.pull(part) for part in np.array_split(indexes, 3)]
        dec.finish()
        incremental = np.concatenate(pulled)
    except NeurocodecError:
        incremental = None
    if (values is None) != (incremental is None) or (
        values is not None and not np.array_equal(values, incremental)
    ):
        raise Finding("decode and StreamDecoder disagree on a stream")
    if values is not None:
        again = coder.encode(
            values, indexes, _table_set(), chunk_bits=info["chunk_bits"], lanes=info["lanes"]
        )
        if again != data:
            raise Finding("a stream that decodes does not re-encode to the same bytes")
    return values


def _claimed_symbols(data: bytes) -> int | None:
    from neurocodec.entropy import coder

    try:
        return coder.stream_info(data)["num_symbols"]
    except NeurocodecError:
        return None


def coder_target(data: bytes) -> None:
    n = _claimed_symbols(data)
    if n is not None and n <= MAX_STREAM_SYMBOLS:
        _native_decode(data)


def reference_target(data: bytes) -> None:
    from neurocodec.entropy import reference

    n = _claimed_symbols(data)
    if n is None or n > MAX_STREAM_SYMBOLS:
        return
    native = _native_decode(data)
    try:
        ref = reference.decode(data, stream_indexes(n), *fuzz_tables()).numpy()
    except NeurocodecError:
        ref = None
    if (native is None) != (ref is None) or (native is not None and not np.array_equal(native, ref)):
        raise Finding(
            f"the reference decoder and the C++ coder disagree: {'refused' if native is None else 'decoded'} "
            f"by the C++ coder, {'refused' if ref is None else 'decoded'} by the reference"
        )


# --------------------------------------------------------------------------------------------
# The shipped codecs


@functools.cache
def _codec(name: str):
    import neurocodec as nc

    if name == "s2lic":
        return _s2lic_codec()
    if name in ("video-vae", "video-vae-temporal"):
        return _video_vae_codec(temporal=name.endswith("temporal"))
    return nc.load(name, SEED_QUALITIES.get(name, SEED_QUALITY))


def _s2lic_codec():
    """s2lic ships no weights yet: the small preset with seeded initial weights and built tables."""
    import torch

    from neurocodec.codecs.s2lic import S2LICCodec

    torch.manual_seed(0)
    codec = S2LICCodec("small", quality=SEED_QUALITY).eval()
    codec.model.update_tables()
    return codec


def _video_vae_codec(temporal: bool):
    """A tiny video-vae with seeded weights (its temporal layers made non-zero, so the fuzzed
    streams reach every path of the synthesis) and built tables; ``temporal``: with the
    temporal-context latent codec."""
    import torch

    from neurocodec.codecs.video_vae import VideoVAECodec

    torch.manual_seed(0)
    codec = VideoVAECodec(**VIDEO_VAE_ARCH, temporal=temporal, quality=SEED_QUALITY).eval()
    with torch.no_grad():
        for name, p in codec.model.named_parameters():
            if ".time." in name and name.endswith("weight"):
                p.normal_(0, 0.05)
    codec.model.update_tables()
    return codec


def codec_target(name: str) -> Callable[[bytes], None]:
    """The target of codec ``name``: its decode of the bytes with a fresh CRC."""

    def target(data: bytes) -> None:
        import torch

        from neurocodec.codecs.base import shape_of

        codec = _codec(name)
        file = with_crc(data)
        try:
            out = codec.decode(file, FUZZ_LIMITS)
        except NeurocodecError:
            return
        shape = shape_of(container.peek_header(file).geometry)
        if tuple(out.shape) != shape or not bool(torch.isfinite(out).all()):
            raise Finding(
                f"{name} decoded a tensor of shape {tuple(out.shape)} (finite: "
                f"{bool(torch.isfinite(out).all())}) from a file that says {shape}"
            )

    target.__name__ = f"{name.replace('-', '_')}_target"
    return target


TARGETS: dict[str, Callable[[bytes], None]] = {
    "container": container_target,
    "coder": coder_target,
    "reference": reference_target,
    **{
        name: codec_target(name)
        for name in (
            *CODECS,
            "c3",
            "nirvana",
            "recombiner-image",
            "recombiner-audio",
            "recombiner-speech",
            "s2lic",
            "video-vae",
            "video-vae-temporal",
            "vqgan",
        )
    },
}


# --------------------------------------------------------------------------------------------
# Seeds


def corpus_files(codec: str | None = None) -> list[bytes]:
    """The 0.1.0 corpus files (of ``codec``; of quality SEED_QUALITY when a codec is named)."""
    files = []
    for manifest in sorted(CORPUS.glob("*/manifest.json")):
        for entry in json.loads(manifest.read_text(encoding="utf-8"))["files"]:
            if codec is None or (entry["codec"], entry["quality"]) == (codec, SEED_QUALITY):
                files.append((manifest.parent / entry["file"]).read_bytes())
    return files


def _stream_seeds() -> list[bytes]:
    """Streams of the fixed tables: empty, one symbol, escapes both ways, several chunks and lanes."""
    from neurocodec.entropy import coder

    rng = np.random.default_rng(0)
    seeds = []
    for n, chunk_bits, lanes in ((0, 18, 32), (1, 18, 32), (40, 5, 3), (300, 6, 32), (2000, 10, 7)):
        indexes = stream_indexes(n)
        values = rng.integers(-40, 300, n).astype(np.int32)
        values[::17] = rng.integers(-(1 << 31), (1 << 31) - 1, len(values[::17]))  # escapes
        seeds.append(coder.encode(values, indexes, _table_set(), chunk_bits=chunk_bits, lanes=lanes))
    return seeds


def smooth_picture(height: int, width: int):
    """A smooth RGB picture ``(3, height, width)`` in [0, 1], the same every time: a seed to encode."""
    import torch

    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    return torch.stack([0.5 + 0.4 * torch.sin(5 * xx + c) * torch.cos(3 * yy) for c in range(3)])


@functools.cache
def _c3_seed() -> bytes:
    """A small c3 file (a smooth 64x64 picture, 40 fitting iterations; deterministic)."""
    return _codec("c3").encode(smooth_picture(64, 64), effort=40)


@functools.cache
def _nirvana_seed() -> bytes:
    """A small nirvana file (a moving smooth 4-frame 32x48 clip, a few fitting iterations; deterministic)."""
    import torch

    t = torch.arange(4).view(-1, 1, 1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 48), indexing="ij")
    x = torch.stack([0.5 + 0.4 * torch.sin(5 * xx + 0.3 * t + c) * torch.cos(3 * yy) for c in range(3)])
    return _codec("nirvana").encode(x, effort=4, frame_rate=(30000, 1001))


@functools.cache
def _recombiner_seed() -> bytes:
    """A small recombiner-image file (a smooth 64x64 picture, 30 fitting iterations; deterministic)."""
    return _codec("recombiner-image").encode(smooth_picture(64, 64), effort=30)


@functools.cache
def _recombiner_audio_seed() -> bytes:
    """A small recombiner-audio file (a 0.1-s stereo clip of two tones, 10 fitting iterations; deterministic)."""
    import torch

    t = torch.arange(4410) / 44100
    x = torch.stack([0.3 * torch.sin(2 * torch.pi * 440 * t + c) for c in range(2)])
    return _codec("recombiner-audio").encode(x, effort=10)


@functools.cache
def _recombiner_speech_seed() -> bytes:
    """A small recombiner-speech file (a 0.1-s 16-kHz mono chirp, 10 fitting iterations; deterministic)."""
    import torch

    t = torch.arange(1600) / 16000
    x = 0.3 * torch.sin(2 * torch.pi * (200 + 1500 * t) * t)[None]
    return _codec("recombiner-speech").encode(x, effort=10)


@functools.cache
def _s2lic_seed() -> bytes:
    """A small s2lic file (a smooth 64x64 picture; deterministic)."""
    return _codec("s2lic").encode(smooth_picture(64, 64))


@functools.cache
def _video_vae_seeds(name: str = "video-vae") -> tuple[bytes, bytes]:
    """Small files of ``name``: a moving smooth 5-frame 32x48 clip (two groups), and its first frame."""
    import torch

    t = torch.arange(5).view(-1, 1, 1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 48), indexing="ij")
    x = torch.stack([0.5 + 0.4 * torch.sin(5 * xx + 0.3 * t + c) * torch.cos(3 * yy) for c in range(3)])
    codec = _codec(name)
    return codec.encode(x, frame_rate=(30000, 1001)), codec.encode(x[:, :1])


@functools.cache
def _vqgan_seeds() -> tuple[bytes, bytes]:
    """A small vqgan file (a smooth 64x96 picture), as one index stream and as 16 packets."""
    x = smooth_picture(64, 96)
    codec = _codec("vqgan")
    plain = codec.encode(x)
    codec.packets = 16
    try:
        return plain, codec.encode(x)
    finally:
        codec.packets = 0


def seeds(target: str) -> list[bytes]:
    """The seed inputs of ``target``: real files (less their CRC where the target appends one) or streams."""
    if target == "container":  # the released files, and a video header (no video file was released)
        video = container.VideoGeometry(9, 30000, 1001, 144, 176, 3, 10, colour="yuv420", full_range=True)
        header = container.Header("video-codec", 2, bytes(4), video)
        return [f[:-4] for f in corpus_files()] + [container.pack(header, {"groups": b"\x01\x02"})[:-4]]
    if target in ("coder", "reference"):
        streams = _stream_seeds()
        for file in corpus_files():  # real streams too: refused by hash, which the fuzzer must get past
            streams.extend(container.unpack(file)[1].values())
        return streams
    if target == "c3":
        return [_c3_seed()[:-4]]
    if target == "nirvana":
        return [_nirvana_seed()[:-4]]
    if target == "recombiner-image":
        return [_recombiner_seed()[:-4]]
    if target == "recombiner-audio":
        return [_recombiner_audio_seed()[:-4]]
    if target == "recombiner-speech":
        return [_recombiner_speech_seed()[:-4]]
    if target == "s2lic":
        return [_s2lic_seed()[:-4]]
    if target in ("video-vae", "video-vae-temporal"):
        return [seed[:-4] for seed in _video_vae_seeds(target)]
    if target == "vqgan":
        return [seed[:-4] for seed in _vqgan_seeds()]
    return [f[:-4] for f in corpus_files(target)]
