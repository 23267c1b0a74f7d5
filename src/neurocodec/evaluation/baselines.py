"""Conventional image codecs through Pillow, audio codecs through PyAV (FFmpeg) and soundfile
(libsndfile), and video codecs through PyAV, as anchors for rate-distortion comparisons.

Each codec is a function ``(image, setting) -> (bytes, decoded)``: ``image`` is a float tensor
``(C, H, W)`` in ``[0, 1]`` (grey is coded as RGB) or a PIL image, ``setting`` the codec's one
rate knob, ``bytes`` the complete file Pillow writes and ``decoded`` that file decoded again,
as an RGB float tensor ``(3, H, W)`` on the 8-bit grid. Nothing is written to disk.

=============  ================================================================  ================
name           encoder (Pillow 13 options)                                       setting
=============  ================================================================  ================
``jpeg``       libjpeg(-turbo), 4:2:0, standard Huffman tables (as CompressAI)   ``quality``
``jpeg-444``   the same with 4:4:4 (no chroma subsampling)                       ``quality``
``webp``       libwebp, lossy, ``method=6`` (slowest, best)                      ``quality``
``avif``       libavif + libaom, ``speed=4``, ``subsampling="4:4:4"``, 1 thread  ``quality``
``jpeg2000``   OpenJPEG, ``irreversible=True`` (9/7 wavelet), ``mct=1`` (RGB ->  ``ratio``
               YCbCr), one layer at ``quality_layers=[ratio]``, raw codestream
=============  ================================================================  ================

:data:`BASELINES` maps the names to :class:`Baseline` entries holding the encoder and a default
sweep of settings that spans about 0.1-2 bpp on Kodak, from low to high rate.
:func:`evaluate_baseline` measures a sweep on image files with the same rows as
:func:`neurocodec.evaluation.rows.evaluate_images` (bpp from the length of the file, PSNR of the 8-bit
decoded RGB against the original).

Audio baselines (:data:`AUDIO_BASELINES`, :class:`AudioBaseline`) take a float tensor
``(C, T)`` in ``[-1, 1]`` and its sample rate, and give the complete file and the decoded
signal at the source rate, aligned to the source (see :func:`aligned`):

=========  ==========================================================================  =========
name       encoder                                                                     setting
=========  ==========================================================================  =========
``opus``   PyAV's ``libopus`` in Ogg: VBR, ``application=audio``, complexity 10, 20    ``kbps``
           ms frames; other rates than Opus's 8/12/16/24/48 kHz are resampled to 48
           kHz with torchaudio for the encoder, and the decoded 48 kHz back
``mp3``    PyAV's ``libmp3lame`` (LAME), CBR, LAME's default quality, native rate       ``kbps``
``flac``   soundfile (libFLAC), 16-bit, the lossless reference point (rate only)       ``level``
=========  ==========================================================================  =========

Opus goes through PyAV rather than soundfile because libsndfile exposes no bitrate, only a
``compression_level`` it maps linearly onto 6-256 kbit/s per channel (and bundles an older
libopus). Opus and MP3 optimize perception, not the waveform: their SNR and SI-SDR say how close
the waveform is, not how good it sounds. LAME scales its output by 0.95 at CBR up to 160 kbit/s,
which caps MP3's SNR (SI-SDR fits the gain). :func:`evaluate_baseline` measures audio with the
rows of :func:`neurocodec.evaluation.rows.evaluate_audio` (kbit/s from the length of the file over the
duration, SNR and SI-SDR of the float output).

Video baselines (:data:`VIDEO_BASELINES`, :class:`VideoBaseline`) take the planes ``(Y, U, V)`` of
8-bit 4:2:0 video, float ``(T, h, w)`` in ``[0, 1]`` as ``read_video(path, rgb=False)`` gives them,
and the frame rate; they give the complete Matroska file, written in memory, and its planes as
FFmpeg decodes them. The setting is the encoder's CRF, and every encoder runs on one thread, so
files and times are the same on any machine (x264's frame threads, FFmpeg's default, cost 12 % in
BD-rate on the QCIF carphone clip):

==========  ==========================================================================  =======
name        encoder (FFmpeg's, through PyAV 18) and decoder                             setting
==========  ==========================================================================  =======
``x264``    libx264, ``preset=medium``; its informational SEI (version and options,     ``crf``
            about 680 bytes) removed by FFmpeg's ``filter_units`` bitstream filter;
            FFmpeg's h264 decoder
``x265``    libx265, ``preset=medium``, ``info=0`` (no informational SEI), one          ``crf``
            frame thread and one worker; FFmpeg's hevc decoder
``svtav1``  libsvtav1 (SVT-AV1), ``preset=8``, ``lp=1``; libdav1d                       ``crf``
==========  ==========================================================================  =======

The sweeps span about 0.02-0.35 bpp on our clips (carphone, CiscoVT2people, Big Buck Bunny).
:func:`evaluate_baseline` measures the first :data:`VIDEO_FRAMES` frames of each clip by default
(``frames=None``: all), with the video rows of :func:`neurocodec.evaluation.rows.rd_row`: bpp and kbit/s from
the length of the file, PSNR-Y, -U, -V and PSNR-YUV (6:1:1) frame by frame, and RGB PSNR.

JPEG 2000's setting is OpenJPEG's compression ratio against the uncompressed 8-bit samples,
so a file takes about ``24 / ratio`` bpp for RGB; its sweep therefore goes from high ratios to
low ones. AVIF is limited to one encoder thread so that its encode times compare with the
single-threaded JPEG and WebP encoders (the bitstream is the same with more threads).
"""

from __future__ import annotations

import functools
import io
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image, features

from neurocodec.errors import MediaReadError, UnsupportedMediaError
from neurocodec.evaluation.metrics import quantized
from neurocodec.evaluation.rows import rd_row
from neurocodec.io.audio import read_audio
from neurocodec.io.image import read_image
from neurocodec.io.video import Planes, decode_video, read_video

__all__ = [
    "AUDIO_BASELINES",
    "BASELINES",
    "VIDEO_BASELINES",
    "VIDEO_FRAMES",
    "AudioBaseline",
    "Baseline",
    "VideoBaseline",
    "aligned",
    "audio_versions",
    "avif",
    "decode_image",
    "evaluate_baseline",
    "jpeg",
    "jpeg444",
    "jpeg2000",
    "versions",
    "video_versions",
    "webp",
]

ImageLike = torch.Tensor | Image.Image


def to_pil(image: ImageLike) -> Image.Image:
    """An 8-bit RGB PIL image of a ``(C, H, W)`` tensor in ``[0, 1]`` (rounded) or of a PIL image."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    x = image.detach().float().cpu()
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected an image tensor (C, H, W) with 1 or 3 channels, got {tuple(x.shape)}")
    x = x.expand(3, -1, -1)
    pixels = quantized(x).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(pixels, "RGB")


def decode_image(data: bytes) -> torch.Tensor:
    """The RGB float tensor ``(3, H, W)`` in ``[0, 1]`` of an encoded image file (any Pillow format)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        rgb = im.convert("RGB")
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float().div(255)


def _save(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _encode_jpeg(image: Image.Image, quality: float, subsampling: str = "4:2:0") -> bytes:
    return _save(image, "JPEG", quality=int(quality), subsampling=subsampling)


def _encode_jpeg444(image: Image.Image, quality: float) -> bytes:
    return _encode_jpeg(image, quality, "4:4:4")


def _encode_webp(image: Image.Image, quality: float) -> bytes:
    return _save(image, "WEBP", quality=float(quality), method=6, lossless=False)


def _encode_avif(image: Image.Image, quality: float) -> bytes:
    return _save(image, "AVIF", quality=int(quality), speed=4, subsampling="4:4:4", max_threads=1)


def _encode_jpeg2000(image: Image.Image, ratio: float) -> bytes:
    return _save(
        image,
        "JPEG2000",
        irreversible=True,
        mct=1,
        quality_mode="rates",
        quality_layers=[float(ratio)],
        no_jp2=True,
    )


@dataclass(frozen=True)
class Baseline:
    """A conventional codec: its encoder ``(PIL RGB image, setting) -> bytes``, the name of its
    setting, a default sweep (low to high rate) and a description (with the library versions)."""

    name: str
    encoder: Callable[[Image.Image, float], bytes]
    setting: str
    sweep: tuple[float, ...]
    description: str
    feature: str  # the PIL.features name of the library it needs
    media: ClassVar[str] = "image"

    @property
    def available(self) -> bool:
        """Whether this Pillow was built with the codec (AVIF needs Pillow >= 11.3)."""
        return bool(features.check(self.feature))

    def encode(self, image: ImageLike, setting: float) -> bytes:
        return self.encoder(to_pil(image), setting)

    def __call__(self, image: ImageLike, setting: float) -> tuple[bytes, torch.Tensor]:
        data = self.encode(image, setting)
        return data, decode_image(data)


def versions() -> dict[str, str | None]:
    """Pillow's version and those of the codec libraries it was built with (None: not built in)."""
    libs = {
        "libjpeg": "jpg",
        "libjpeg_turbo": "libjpeg_turbo",
        "libwebp": "webp",
        "libavif": "avif",
        "openjpeg": "jpg_2000",
    }
    found = {name: features.version(key) for name, key in libs.items()}
    return {"pillow": Image.__version__, **found}


def _describe(what: str, library: str) -> str:
    return f"{what}. Pillow {Image.__version__}, {library} {versions()[library] or '(not built in)'}"


BASELINES: dict[str, Baseline] = {
    "jpeg": Baseline(
        "jpeg",
        _encode_jpeg,
        "quality",
        (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95),
        _describe("JPEG 4:2:0, quality", "libjpeg_turbo"),
        "jpg",
    ),
    "jpeg-444": Baseline(
        "jpeg-444",
        _encode_jpeg444,
        "quality",
        (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95),
        _describe("JPEG 4:4:4, quality", "libjpeg_turbo"),
        "jpg",
    ),
    "webp": Baseline(
        "webp",
        _encode_webp,
        "quality",
        (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95),
        _describe("WebP lossy, method 6, quality", "libwebp"),
        "webp",
    ),
    "avif": Baseline(
        "avif",
        _encode_avif,
        "quality",
        (10, 20, 30, 40, 50, 60, 65, 70, 75, 80, 85, 90),
        _describe("AVIF (libaom), speed 4, 4:4:4, quality", "libavif"),
        "avif",
    ),
    "jpeg2000": Baseline(
        "jpeg2000",
        _encode_jpeg2000,
        "ratio",
        (240, 160, 120, 96, 80, 64, 48, 40, 32, 24, 18, 14, 12, 10),
        _describe("JPEG 2000 (9/7 irreversible, MCT), codestream, compression ratio", "openjpeg"),
        "jpg_2000",
    ),
}


def _function(name: str, doc: str) -> Callable[[ImageLike, float], tuple[bytes, torch.Tensor]]:
    baseline = BASELINES[name]

    def code(image: ImageLike, setting: float) -> tuple[bytes, torch.Tensor]:
        return baseline(image, setting)

    code.__name__ = code.__qualname__ = name.replace("-", "")
    code.__doc__ = doc
    return code


jpeg = _function("jpeg", "``(image, quality 0..95) -> (bytes, decoded)``: JPEG 4:2:0 through Pillow.")
jpeg444 = _function("jpeg-444", "``(image, quality 0..95) -> (bytes, decoded)``: JPEG 4:4:4 through Pillow.")
webp = _function("webp", "``(image, quality 0..100) -> (bytes, decoded)``: lossy WebP, method 6.")
avif = _function("avif", "``(image, quality 0..100) -> (bytes, decoded)``: AVIF, speed 4, 4:4:4.")
jpeg2000 = _function(
    "jpeg2000", "``(image, ratio) -> (bytes, decoded)``: JPEG 2000, 9/7 irreversible, ``ratio``:1."
)


# --------------------------------------------------------------------------------------------
# Audio

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
MAX_LAG = 8192  # samples searched either way when aligning a decoded signal


def _resample(x: torch.Tensor, source: int, target: int) -> torch.Tensor:
    """``x`` ``(C, T)`` resampled from ``source`` to ``target`` Hz (torchaudio's windowed sinc)."""
    if source == target:
        return x
    import torchaudio.functional

    return torchaudio.functional.resample(x, source, target)


def _layout(channels: int, name: str) -> str:
    if channels not in (1, 2):
        raise UnsupportedMediaError(f"{name} codes mono or stereo audio, not {channels} channels")
    return "mono" if channels == 1 else "stereo"


def _pyav_encode(
    x: torch.Tensor, rate: int, codec: str, container: str, kbps: float, **options: str
) -> bytes:
    """The complete file PyAV writes for ``x`` ``(C, T)`` at ``rate`` Hz with ``codec`` in
    ``container`` at a target of ``kbps`` kbit/s (PyAV converts the sample format and frame size)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        layout = _layout(x.shape[0], codec)
        stream = output.add_stream(codec, rate=rate, layout=layout, options=options)
        stream.bit_rate = int(kbps * 1000)
        samples = np.ascontiguousarray(x.float().numpy())
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            output.mux(packet)
    return buffer.getvalue()


def _pyav_decode(data: bytes) -> tuple[torch.Tensor, int]:
    """A file decoded by FFmpeg as float ``(C, T)`` and its sample rate."""
    import av

    chunks = []
    with av.open(io.BytesIO(data)) as source:
        stream = source.streams.audio[0]
        planar = av.AudioResampler(format="fltp")
        for frame in source.decode(stream):
            chunks += [f.to_ndarray() for f in planar.resample(frame)]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
    samples = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return torch.from_numpy(samples).float(), rate


def _encode_opus(x: torch.Tensor, rate: int, kbps: float) -> bytes:
    coded_rate = rate if rate in OPUS_RATES else 48000
    options = {"vbr": "on", "application": "audio", "compression_level": "10", "frame_duration": "20"}
    return _pyav_encode(_resample(x, rate, coded_rate), coded_rate, "libopus", "ogg", kbps, **options)


def _encode_mp3(x: torch.Tensor, rate: int, kbps: float) -> bytes:
    return _pyav_encode(x, rate, "libmp3lame", "mp3", kbps)


def _encode_flac(x: torch.Tensor, rate: int, level: float) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    samples = x.float().numpy().T
    soundfile.write(buffer, samples, rate, format="FLAC", subtype="PCM_16", compression_level=level / 8)
    return buffer.getvalue()


def _decode_soundfile(data: bytes) -> tuple[torch.Tensor, int]:
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(samples.T)), rate


def aligned(reference: torch.Tensor, decoded: torch.Tensor, max_lag: int = MAX_LAG) -> torch.Tensor:
    """``decoded`` shifted by the whole-sample lag (within ``max_lag``) at which the mono mixdowns
    of the two correlate best (FFT cross-correlation), cut or zero-filled to the length of
    ``reference``. Conventional decoders can start late or early by their encoder delay: MP3
    files too small for LAME's gapless tag keep 1105 extra samples, and resampling and the Ogg
    pre-skip can be off by a sample or two. Missing samples stay zero and count as error."""
    x = reference.double().mean(dim=0).numpy()
    y = decoded.double().mean(dim=0).numpy()
    n = len(x) + len(y)
    correlation = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)
    lags = np.arange(-min(max_lag, len(x) - 1), min(max_lag, len(y) - 1) + 1)
    lag = int(lags[np.argmax(correlation[lags % n])])  # decoded[t + lag] ~ reference[t]
    out = torch.zeros(decoded.shape[0], reference.shape[-1], dtype=decoded.dtype)
    start, stop = max(lag, 0), min(decoded.shape[-1], lag + reference.shape[-1])
    if stop > start:
        out[:, start - lag : stop - lag] = decoded[:, start:stop]
    return out


def _bundled_string(library: str, symbol: str, *, variable: bool = False) -> str | None:
    """A C string from a codec library that PyAV's wheel bundles in ``av.libs`` (files carry only
    FFmpeg's own vendor string): what the function ``symbol`` returns, or with ``variable`` the
    ``const char *`` the global ``symbol`` holds; None where the library or symbol is missing."""
    import ctypes

    import av

    for path in sorted((Path(av.__file__).parent.parent / "av.libs").glob(f"{library}*.so*")):
        try:
            lib = ctypes.CDLL(str(path))
            if variable:
                value = ctypes.c_char_p.in_dll(lib, symbol).value
            else:
                function = getattr(lib, symbol)
                function.restype = ctypes.c_char_p
                value = function()
        except (OSError, AttributeError, ValueError):
            continue
        return value.decode() if value else None
    return None


def _libopus_version() -> str:
    """The version string of the libopus PyAV's FFmpeg links."""
    return _bundled_string("libopus", "opus_get_version_string") or "libopus (version unknown)"


@functools.cache
def audio_versions() -> dict[str, str]:
    """PyAV's and FFmpeg's versions, the libopus and LAME that PyAV's FFmpeg links (LAME's from
    the tag of a tiny encoded file) and soundfile's libsndfile."""
    import av
    import soundfile

    mp3 = _encode_mp3(torch.zeros(2, 4800), 48000, 128)
    lame = re.search(rb"LAME\d+\.\d+", mp3)  # the version tag: LAME3.100, LAME4.1
    return {
        "pyav": av.__version__,
        "ffmpeg": av.ffmpeg_version_info,
        "libopus": _libopus_version(),
        "lame": lame.group().decode() if lame else "LAME (version unknown)",
        "libsndfile": soundfile.__libsndfile_version__,
    }


@dataclass(frozen=True)
class AudioBaseline:
    """A conventional audio codec: its encoder ``((C, T) float tensor, rate in Hz, setting) ->
    bytes``, its decoder ``bytes -> ((C, T), rate)``, the name of its setting, a default sweep
    (low to high rate), what it is, and the libraries it uses as a template over
    :func:`audio_versions` (:attr:`description` fills it in)."""

    name: str
    encoder: Callable[[torch.Tensor, int, float], bytes]
    decoder: Callable[[bytes], tuple[torch.Tensor, int]]
    setting: str
    sweep: tuple[float, ...]
    what: str
    libraries: str
    media = "audio"
    available = True  # PyAV and soundfile are dependencies and bundle their codec libraries

    @property
    def description(self) -> str:
        return f"{self.what}. {self.libraries.format(**audio_versions())}"

    def encode(self, x: torch.Tensor, sample_rate: int, setting: float) -> bytes:
        return self.encoder(x.detach().float().cpu(), sample_rate, setting)

    def decode(self, data: bytes, sample_rate: int) -> torch.Tensor:
        """The decoded signal, resampled to ``sample_rate`` where the decoder gives another rate."""
        y, rate = self.decoder(data)
        return _resample(y, rate, sample_rate)

    def __call__(self, x: torch.Tensor, sample_rate: int, setting: float) -> tuple[bytes, torch.Tensor]:
        data = self.encode(x, sample_rate, setting)
        return data, aligned(x, self.decode(data, sample_rate))


AUDIO_BASELINES: dict[str, AudioBaseline] = {
    "opus": AudioBaseline(
        "opus",
        _encode_opus,
        _pyav_decode,
        "kbps",
        (16, 24, 32, 48, 64, 96, 128, 160, 192, 256),
        "Opus in Ogg (libopus VBR, application audio, complexity 10, 20 ms frames), target kbit/s; "
        "44.1 kHz is resampled to 48 kHz for the encoder and the decoded 48 kHz back",
        "PyAV {pyav}, FFmpeg {ffmpeg}, {libopus}, torchaudio resampling",
    ),
    "mp3": AudioBaseline(
        "mp3",
        _encode_mp3,
        _pyav_decode,
        "kbps",
        (32, 48, 64, 80, 96, 128, 160, 192, 256, 320),
        "MP3 (LAME CBR, default quality), kbit/s",
        "PyAV {pyav}, FFmpeg {ffmpeg}, {lame}",
    ),
    "flac": AudioBaseline(
        "flac",
        _encode_flac,
        _decode_soundfile,
        "level",
        (5,),
        "FLAC 16-bit, lossless (the rate of the lossless reference), compression level 0-8",
        "soundfile, libsndfile {libsndfile}",
    ),
}


# --------------------------------------------------------------------------------------------
# Video

VIDEO_FRAMES = 30  # frames of each clip that evaluate_baseline codes by default
VIDEO_CONTAINER = "matroska"


def _video_codes(video: Planes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 8-bit codes ``(T, h, w)`` of 4:2:0 planes ``(Y, U, V)`` in ``[0, 1]``; ValueError otherwise."""
    if not (
        isinstance(video, tuple | list)
        and len(video) == 3
        and all(isinstance(p, torch.Tensor) and p.dim() == 3 for p in video)
    ):
        raise ValueError(
            "expected the planes (Y, U, V) of a 4:2:0 video, three (T, h, w) tensors in [0, 1] as "
            f"read_video(path, rgb=False) gives them, not {type(video).__name__}"
            + (f" of shape {tuple(video.shape)}" if isinstance(video, torch.Tensor) else "")
        )
    y, u, v = video
    frames, height, width = y.shape
    if frames == 0 or height == 0 or width == 0:
        raise ValueError(f"the video is empty: Y planes of shape {tuple(y.shape)}")
    if height % 2 or width % 2 or u.shape != (frames, height // 2, width // 2) or v.shape != u.shape:
        raise ValueError(
            "4:2:0 video needs an even width and height and chroma planes half as wide and high, not "
            f"Y {tuple(y.shape)}, U {tuple(u.shape)}, V {tuple(v.shape)}"
        )
    return tuple(quantized(p.detach().float().cpu()).mul(255).round().to(torch.uint8).numpy() for p in video)


def _encode_video(
    video: Planes, rate: Fraction, codec: str, options: dict[str, str], bsf: str | None, crf: float
) -> bytes:
    """The Matroska file PyAV writes for 4:2:0 ``video`` at ``rate`` frames/s with the FFmpeg encoder
    ``codec`` (one thread), its ``options`` and ``crf``, its packets passed through the bitstream
    filter ``bsf`` if one is given."""
    import av
    import av.bitstream

    y, u, v = _video_codes(video)
    frames, height, width = y.shape
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration at each start; 1: errors only
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=VIDEO_CONTAINER) as output:
        stream = output.add_stream(codec, rate=rate, options={**options, "crf": f"{crf:g}"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        filtered = None

        def mux(packets) -> None:
            nonlocal filtered
            for packet in packets:
                if bsf and filtered is None:  # made once the encoder is open: its parameters are final
                    filtered = av.bitstream.BitStreamFilterContext(bsf, stream)
                output.mux(filtered.filter(packet) if filtered is not None else packet)

        for t in range(frames):
            planar = np.concatenate([y[t].ravel(), u[t].ravel(), v[t].ravel()]).reshape(-1, width)
            frame = av.VideoFrame.from_ndarray(planar, format="yuv420p")
            frame.pts = t
            mux(stream.encode(frame))
        mux(stream.encode(None))
        if filtered is not None:
            output.mux(filtered.filter(None))
    return buffer.getvalue()


@functools.cache
def video_versions() -> dict[str, str]:
    """PyAV's and FFmpeg's versions and those of the x264, x265, SVT-AV1 and dav1d libraries PyAV's
    wheel bundles (x264's from the SEI it writes into a tiny file)."""
    import av

    tiny = (torch.zeros(1, 16, 16), torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))
    sei = _encode_video(tiny, Fraction(25), "libx264", {"preset": "ultrafast"}, None, 51)
    x264 = re.search(rb"x264 - (core \d+[^-]*?) - ", sei)
    return {
        "pyav": av.__version__,
        "ffmpeg": av.ffmpeg_version_info,
        "x264": f"x264 {x264[1].decode() if x264 else '(version unknown)'}",
        "x265": f"x265 {_bundled_string('libx265', 'x265_version_str', variable=True) or '(version unknown)'}",
        "svtav1": f"SVT-AV1 {_bundled_string('libSvtAv1Enc', 'svt_av1_get_version') or '(version unknown)'}",
        "dav1d": f"dav1d {_bundled_string('libdav1d', 'dav1d_version') or '(version unknown)'}",
    }


@dataclass(frozen=True)
class VideoBaseline:
    """A conventional video codec through PyAV: its FFmpeg encoder, encoder options besides the
    CRF, the bitstream filter its packets go through (None: none), a default CRF sweep (low to
    high rate), what it is, and the libraries as a template over :func:`video_versions`."""

    name: str
    codec: str
    options: tuple[tuple[str, str], ...]
    sweep: tuple[float, ...]
    what: str
    libraries: str
    bsf: str | None = None
    setting = "crf"
    media = "video"
    available = True  # PyAV is a dependency and bundles the encoders and dav1d

    @property
    def description(self) -> str:
        return f"{self.what}. {self.libraries.format(**video_versions())}"

    def encode(self, video: Planes, rate: float | Fraction, crf: float) -> bytes:
        """The complete Matroska file of 4:2:0 planes ``(Y, U, V)`` at ``rate`` frames/s."""
        return _encode_video(video, Fraction(rate), self.codec, dict(self.options), self.bsf, crf)

    @staticmethod
    def decode(data: bytes) -> Planes:
        """The decoded planes ``(Y, U, V)``, float ``(T, h, w)`` in ``[0, 1]`` (FFmpeg's decoders)."""
        planes, _ = decode_video(data, rgb=False, name="the coded video")
        return planes  # type: ignore[return-value]

    def __call__(self, video: Planes, rate: float | Fraction, crf: float) -> tuple[bytes, Planes]:
        data = self.encode(video, rate, crf)
        return data, _check_decoded(video, self.decode(data), self.name)


def _check_decoded(video: Planes, decoded: Planes, name: str) -> Planes:
    """``decoded``, after checking it has the frames and plane shapes of ``video``."""
    shapes = [tuple(p.shape) for p in video]
    if [tuple(p.shape) for p in decoded] != shapes:
        got = ", ".join(str(tuple(p.shape)) for p in decoded)
        raise MediaReadError(f"{name} decoded planes of {got}, not {', '.join(map(str, shapes))}")
    return decoded


_CONTAINER = "in Matroska, 1 thread"
VIDEO_BASELINES: dict[str, VideoBaseline] = {
    "x264": VideoBaseline(
        "x264",
        "libx264",
        (("preset", "medium"),),
        (43, 38, 33, 28, 23, 18),
        f"H.264 (x264 preset medium, CRF) {_CONTAINER}; x264's informational SEI (its version and "
        "options, about 680 bytes) removed by FFmpeg's filter_units bitstream filter",
        "PyAV {pyav}, FFmpeg {ffmpeg}, {x264}; FFmpeg's h264 decoder",
        bsf="filter_units=remove_types=6",
    ),
    "x265": VideoBaseline(
        "x265",
        "libx265",
        (("preset", "medium"), ("x265-params", "log-level=error:info=0:pools=1:frame-threads=1")),
        (43, 38, 33, 28, 23, 18),
        f"HEVC (x265 preset medium, CRF, info=0: no informational SEI) {_CONTAINER}",
        "PyAV {pyav}, FFmpeg {ffmpeg}, {x265}; FFmpeg's hevc decoder",
    ),
    "svtav1": VideoBaseline(
        "svtav1",
        "libsvtav1",
        (("preset", "8"), ("svtav1-params", "lp=1")),
        (63, 56, 50, 42, 32, 22),
        f"AV1 (SVT-AV1 preset 8, CRF) {_CONTAINER}",
        "PyAV {pyav}, FFmpeg {ffmpeg}, {svtav1}; {dav1d} decoder",
    ),
}


def evaluate_baseline(
    name: str,
    paths: Sequence[str | Path],
    settings: Sequence[float] | None = None,
    *,
    frames: int | None = VIDEO_FRAMES,
) -> list[dict]:
    """Rows of :func:`neurocodec.evaluation.rows.evaluate_images` (``file``, ``bytes``, ``bpp``, ``psnr``,
    ``encode_s``, ``decode_s``) plus ``setting``, for each file and each setting (default: the
    codec's sweep), file by file; for an audio baseline the rows of
    :func:`neurocodec.evaluation.rows.evaluate_audio` (``kbps``, ``snr``, ``si_sdr``; the decode time includes
    resampling back to the source rate, not the alignment); for a video baseline the video rows
    of :func:`neurocodec.evaluation.rows.rd_row` (``frames``, ``bpp``, ``kbps``, ``psnr_y``, ``psnr_yuv``,
    ``psnr`` of RGB, ...) of the first ``frames`` frames of each clip (None: all of them).
    Raises KeyError for an unknown ``name``."""
    if name in AUDIO_BASELINES:
        return _evaluate_audio_baseline(AUDIO_BASELINES[name], paths, settings)
    if name in VIDEO_BASELINES:
        return _evaluate_video_baseline(VIDEO_BASELINES[name], paths, settings, frames)
    baseline = BASELINES[name]
    settings = baseline.sweep if settings is None else tuple(settings)
    rows = []
    for path in paths:
        x, _ = read_image(path)
        x = x.expand(3, -1, -1)
        image = to_pil(x)
        for setting in settings:
            t0 = time.perf_counter()
            data = baseline.encoder(image, setting)
            t1 = time.perf_counter()
            x_hat = decode_image(data)
            t2 = time.perf_counter()
            rows.append({**rd_row(path, x, data, x_hat, t1 - t0, t2 - t1), "setting": setting})
    return rows


def _evaluate_audio_baseline(
    baseline: AudioBaseline, paths: Sequence[str | Path], settings: Sequence[float] | None
) -> list[dict]:
    settings = baseline.sweep if settings is None else tuple(settings)
    rows = []
    for path in paths:
        x, info = read_audio(path)
        for setting in settings:
            t0 = time.perf_counter()
            data = baseline.encode(x, info.sample_rate, setting)
            t1 = time.perf_counter()
            decoded = baseline.decode(data, info.sample_rate)
            t2 = time.perf_counter()
            x_hat = aligned(x, decoded)
            row = rd_row(path, x, data, x_hat, t1 - t0, t2 - t1, sample_rate=info.sample_rate)
            rows.append({**row, "setting": setting})
    return rows


def _evaluate_video_baseline(
    baseline: VideoBaseline, paths: Sequence[str | Path], settings: Sequence[float] | None, frames: int | None
) -> list[dict]:
    settings = baseline.sweep if settings is None else tuple(settings)
    rows = []
    for path in paths:
        video, info = read_video(path, rgb=False, max_frames=frames)
        if info.pix_fmt != "yuv420p":
            raise UnsupportedMediaError(f"{path}: the video baselines code 8-bit 4:2:0, not {info.pix_fmt}")
        rate = Fraction(info.rate_num, info.rate_den)
        for setting in settings:
            t0 = time.perf_counter()
            data = baseline.encode(video, rate, setting)
            t1 = time.perf_counter()
            decoded = baseline.decode(data)
            t2 = time.perf_counter()
            _check_decoded(video, decoded, baseline.name)
            row = rd_row(path, video, data, decoded, t1 - t0, t2 - t1, frame_rate=rate)
            rows.append({**row, "setting": setting})
    return rows
