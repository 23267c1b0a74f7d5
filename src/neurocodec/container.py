"""The neurocodec file: one container every codec shares (docs/bitstream.md §5).

A file is a small header (magic, format version, codec name, quality, weights hash, media
type and geometry), then named length-prefixed sections holding the codec's streams, then a
CRC-32 of everything before it. Integers are little-endian; counts and sizes are minimal
LEB128. A reader checks the magic, then the CRC (before trusting any length), then the
version, then parses strictly: every failure is a :class:`~neurocodec.errors.ContainerError`
with one clear line.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, fields

from neurocodec.errors import (
    ChecksumError,
    ContainerError,
    GeometryError,
    LimitError,
    UnsupportedVersionError,
)

MAGIC = b"\x89NC"
FORMAT_VERSION = 1

WEIGHTS_HASH_BYTES = 4
MAX_CODEC_NAME = 32
MAX_SECTION_NAME = 16
MAX_QUALITY = 255
MAX_SECTION_BYTES = (1 << 35) - 1  # a 5-byte LEB128

MAX_SIDE = 65535  # image and video height and width
MAX_IMAGE_CHANNELS = 16  # image and video channels
MAX_BIT_DEPTH = 16  # image and video bits per sample
MAX_SAMPLE_RATE = 1 << 20  # audio, Hz
MAX_AUDIO_CHANNELS = 255
MAX_FRAMES = 1 << 24  # video
MAX_RATE_TERM = (1 << 31) - 1  # video frame-rate numerator and denominator
MAX_SAMPLES = 1 << 31  # samples of one image, one audio clip, or one video frame

MEDIA_IMAGE, MEDIA_AUDIO, MEDIA_VIDEO = 0, 1, 2
_LEB128_MAX_BYTES = 5
_CRC_BYTES = 4
# magic, version, kind, 1-byte codec name, quality, weights hash, smallest geometry, CRC
MIN_FILE_BYTES = len(MAGIC) + 1 + 1 + 1 + 1 + WEIGHTS_HASH_BYTES + 3 + _CRC_BYTES

_CODEC_NAME = re.compile(rf"[a-z0-9-]{{1,{MAX_CODEC_NAME}}}")
_SECTION_NAME = re.compile(rf"[\x21-\x7e]{{1,{MAX_SECTION_NAME}}}")


def _check_ints(geometry: Geometry) -> None:
    for field in fields(geometry):
        if field.name in ("colour", "full_range"):
            continue
        value = getattr(geometry, field.name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{type(geometry).__name__}.{field.name} must be an int, not {value!r}")


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise GeometryError(f"{what} {value} is outside the supported range {low}..{high}")


def _check_picture(height: int, width: int, channels: int, bit_depth: int, what: str) -> None:
    _check_range(f"{what} height", height, 1, MAX_SIDE)
    _check_range(f"{what} width", width, 1, MAX_SIDE)
    _check_range(f"{what} channel count", channels, 1, MAX_IMAGE_CHANNELS)
    _check_range(f"{what} bit depth", bit_depth, 1, MAX_BIT_DEPTH)
    if height * width * channels > MAX_SAMPLES:
        raise GeometryError(
            f"{what} {width}x{height}x{channels} has more than the supported {MAX_SAMPLES} samples"
        )


@dataclass(frozen=True)
class ImageGeometry:
    """One still image: ``channels`` planes of ``height`` x ``width`` samples of ``bit_depth`` bits."""

    height: int
    width: int
    channels: int
    bit_depth: int

    def __post_init__(self) -> None:
        _check_ints(self)
        _check_picture(self.height, self.width, self.channels, self.bit_depth, "image")


@dataclass(frozen=True)
class AudioGeometry:
    """One audio clip: ``samples`` samples per channel at ``sample_rate`` Hz."""

    sample_rate: int
    channels: int
    samples: int

    def __post_init__(self) -> None:
        _check_ints(self)
        _check_range("audio sample rate", self.sample_rate, 1, MAX_SAMPLE_RATE)
        _check_range("audio channel count", self.channels, 1, MAX_AUDIO_CHANNELS)
        _check_range("audio sample count", self.samples, 1, MAX_SAMPLES // self.channels)


# What the channels of a video are (docs/bitstream.md §5): RGB, or the Y, Cb, Cr planes (BT.601)
# at full resolution, of a source whose chroma was 4:4:4, 4:2:2 or 4:2:0 (what a decoder writes back).
COLOURS = ("rgb", "yuv444", "yuv422", "yuv420")


@dataclass(frozen=True)
class VideoGeometry:
    """A video: ``frames`` pictures at ``rate_num / rate_den`` frames per second.

    ``colour``: what its channels are, one of :data:`COLOURS`: "rgb", or Y, Cb, Cr planes at
    the frame's full size ("yuv444", "yuv422", "yuv420": the chroma format of the source, to
    which a decoder subsamples them back). ``full_range``: YCbCr codes use the full range
    (0..2^bits-1) rather than the limited ("TV") range; always False for RGB.
    """

    frames: int
    rate_num: int
    rate_den: int
    height: int
    width: int
    channels: int
    bit_depth: int
    colour: str = "rgb"
    full_range: bool = False

    def __post_init__(self) -> None:
        _check_ints(self)
        _check_range("video frame count", self.frames, 1, MAX_FRAMES)
        _check_range("video frame-rate numerator", self.rate_num, 1, MAX_RATE_TERM)
        _check_range("video frame-rate denominator", self.rate_den, 1, MAX_RATE_TERM)
        _check_picture(self.height, self.width, self.channels, self.bit_depth, "video frame")
        if self.colour not in COLOURS:
            raise GeometryError(f"video colour must be one of {', '.join(COLOURS)}, not {self.colour!r}")
        if not isinstance(self.full_range, bool):
            raise TypeError(f"VideoGeometry.full_range must be a bool, not {self.full_range!r}")
        if self.colour != "rgb" and self.channels != 3:
            raise GeometryError(f"a {self.colour} video has 3 channels (Y, Cb, Cr), not {self.channels}")
        if self.colour == "rgb" and self.full_range:
            raise GeometryError("full_range is for YCbCr video; RGB has no limited range")


Geometry = ImageGeometry | AudioGeometry | VideoGeometry


def media_of(geometry: Geometry) -> str:
    """The media type a geometry describes: "image", "audio" or "video"."""
    return type(geometry).__name__.removesuffix("Geometry").lower()


@dataclass(frozen=True)
class Header:
    """What a file says about itself: enough for ``neurocodec decode`` to need no flags."""

    codec: str
    quality: int
    weights_hash: bytes
    geometry: Geometry

    def __post_init__(self) -> None:
        if not isinstance(self.codec, str) or not _CODEC_NAME.fullmatch(self.codec):
            raise ValueError(f"codec name must be 1..{MAX_CODEC_NAME} of [a-z0-9-], not {self.codec!r}")
        if not isinstance(self.quality, int) or not 0 <= self.quality <= MAX_QUALITY:
            raise ValueError(f"quality must be an int in 0..{MAX_QUALITY}, not {self.quality!r}")
        if not isinstance(self.weights_hash, bytes) or len(self.weights_hash) != WEIGHTS_HASH_BYTES:
            raise ValueError(f"weights hash must be {WEIGHTS_HASH_BYTES} bytes, not {self.weights_hash!r}")
        if not isinstance(self.geometry, ImageGeometry | AudioGeometry | VideoGeometry):
            raise TypeError(f"geometry must be an Image/Audio/VideoGeometry, not {self.geometry!r}")


# --------------------------------------------------------------------------------------------
# Resource limits: what a decoder agrees to allocate for one file (docs/bitstream.md §5)

DEFAULT_MAX_SAMPLES = 1 << 26  # one image, audio clip or video frame: 64 Mi samples (e.g. 4729x4729 RGB)
DEFAULT_MAX_FRAMES = 1 << 16  # video
# a whole video (frames x C·H·W): 256 Mi samples, e.g. 97 frames of 720p RGB or 3,530 of QCIF; the
# video decoders return every frame at once, so their memory grows with this (docs/bitstream.md)
DEFAULT_MAX_VIDEO_SAMPLES = 1 << 28
DEFAULT_MAX_SECTIONS = 64


@dataclass(frozen=True)
class Limits:
    """A decoder's resource policy, checked against a file's header before anything is
    allocated for the file; a file beyond it is refused with a :class:`LimitError`.

    ``max_samples``: samples of the decoded image (C·H·W), audio clip (channels · samples) or
    video frame (C·H·W); what a decode's memory grows with. ``max_frames``: frames of a video;
    ``max_video_samples``: samples of a whole decoded video (frames · C·H·W), what a video
    decode's memory grows with.
    ``max_sections``: sections in the file. ``None``: only the format's own limits.
    ``DEFAULT_LIMITS = Limits()`` is the policy of every decode unless told otherwise; ``NO_LIMITS`` turns it off.
    """

    max_samples: int | None = DEFAULT_MAX_SAMPLES
    max_frames: int | None = DEFAULT_MAX_FRAMES
    max_video_samples: int | None = DEFAULT_MAX_VIDEO_SAMPLES
    max_sections: int | None = DEFAULT_MAX_SECTIONS

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"Limits.{field.name} must be a positive int or None, not {value!r}")

    def check(self, geometry: Geometry) -> None:
        """Raise :class:`LimitError` if decoding ``geometry`` needs more than this policy allows."""
        g = geometry
        if isinstance(g, AudioGeometry):
            what, samples = f"an audio clip of {g.channels} x {g.samples}", g.channels * g.samples
        else:
            kind = "an image" if isinstance(g, ImageGeometry) else "a video frame"
            what, samples = f"{kind} of {g.width}x{g.height}x{g.channels}", g.channels * g.height * g.width
        if self.max_samples is not None and samples > self.max_samples:
            raise LimitError(
                f"refused: this file holds {what} = {samples} samples, more than the decoder's limit "
                f"of {self.max_samples} (raise it: limits=Limits(max_samples=...), or --max-samples)"
            )
        if isinstance(g, VideoGeometry) and self.max_frames is not None and g.frames > self.max_frames:
            raise LimitError(
                f"refused: this file holds {g.frames} video frames, more than the decoder's limit of {self.max_frames}"
            )
        if isinstance(g, VideoGeometry) and self.max_video_samples is not None:
            total = g.frames * samples
            if total > self.max_video_samples:
                raise LimitError(
                    f"refused: this file holds a video of {g.frames} frames x {samples} samples = {total} "
                    f"samples, more than the decoder's limit of {self.max_video_samples} (raise it: "
                    "limits=Limits(max_video_samples=...), or --max-video-samples)"
                )

    def check_sections(self, count: int) -> None:
        if self.max_sections is not None and count > self.max_sections:
            raise LimitError(
                f"refused: this file has more than the decoder's limit of {self.max_sections} sections"
            )


DEFAULT_LIMITS = Limits()
NO_LIMITS = Limits(max_samples=None, max_frames=None, max_video_samples=None, max_sections=None)


def weights_hash_of(weights: bytes) -> bytes:
    """The header's weights hash of a weights file's bytes: the first 4 bytes of its SHA-256."""
    return hashlib.sha256(weights).digest()[:WEIGHTS_HASH_BYTES]


# --------------------------------------------------------------------------------------------
# Writing


def _leb128(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _geometry_bytes(geometry: Geometry) -> tuple[int, bytes]:
    """(media type, geometry field bytes)."""
    g = geometry
    if isinstance(g, AudioGeometry):
        return MEDIA_AUDIO, _leb128(g.sample_rate) + _leb128(g.channels) + _leb128(g.samples)
    picture = _leb128(g.height) + _leb128(g.width) + bytes([(g.channels - 1) << 4 | (g.bit_depth - 1)])
    if isinstance(g, ImageGeometry):
        return MEDIA_IMAGE, picture
    colour = bytes([COLOURS.index(g.colour) | g.full_range << 2])
    return MEDIA_VIDEO, _leb128(g.frames) + _leb128(g.rate_num) + _leb128(g.rate_den) + picture + colour


def pack(header: Header, sections: dict[str, bytes]) -> bytes:
    """The complete file for ``header`` and ``sections`` (written in the dict's order)."""
    media, geometry = _geometry_bytes(header.geometry)
    out = bytearray(MAGIC)
    out.append(FORMAT_VERSION)
    out.append(media << 5 | (len(header.codec) - 1))
    out += header.codec.encode("ascii")
    out.append(header.quality)
    out += header.weights_hash
    out += geometry
    for name, payload in sections.items():
        if not isinstance(name, str) or not _SECTION_NAME.fullmatch(name):
            raise ValueError(f"section name must be 1..{MAX_SECTION_NAME} printable ASCII, not {name!r}")
        if len(payload) > MAX_SECTION_BYTES:
            raise ValueError(f"section {name!r} is larger than {MAX_SECTION_BYTES} bytes")
        out.append(len(name))
        out += name.encode("ascii")
        out += _leb128(len(payload))
        out += payload
    out += zlib.crc32(out).to_bytes(_CRC_BYTES, "little")
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Reading


class _Reader:
    """Strict cursor over the checksummed part of a file; running past it is an error."""

    def __init__(self, data: memoryview, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def take(self, n: int, what: str) -> memoryview:
        if n > self.end - self.pos:
            raise ContainerError(f"malformed neurocodec file: {what} runs past the end")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def leb128(self, what: str) -> int:
        value = 0
        for i in range(_LEB128_MAX_BYTES):
            b = self.byte(what)
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if b == 0 and i > 0:
                    break  # a non-minimal encoding
                return value
        raise ContainerError(f"malformed neurocodec file: {what} is not a valid LEB128")


def _read_picture(r: _Reader) -> tuple[int, int, int, int]:
    height, width = r.leb128("height"), r.leb128("width")
    packed = r.byte("channels and bit depth")
    return height, width, (packed >> 4) + 1, (packed & 0xF) + 1


def _read_geometry(r: _Reader, media: int) -> Geometry:
    try:
        if media == MEDIA_IMAGE:
            return ImageGeometry(*_read_picture(r))
        if media == MEDIA_AUDIO:
            return AudioGeometry(r.leb128("sample rate"), r.leb128("channels"), r.leb128("samples"))
        frames = r.leb128("frame count")
        rate = r.leb128("frame-rate numerator"), r.leb128("frame-rate denominator")
        picture = _read_picture(r)
        colour = r.byte("colour")
        if colour >> 3:  # bits 3-7 are reserved
            raise ContainerError(f"unsupported neurocodec file: unknown video colour byte {colour:#04x}")
        return VideoGeometry(frames, *rate, *picture, COLOURS[colour & 3], bool(colour & 4))
    except GeometryError as e:
        raise ContainerError(f"unsupported neurocodec file: {e}") from None


def _parse(data: bytes | bytearray | memoryview, limits: Limits) -> tuple[Header, dict[str, tuple[int, int]]]:
    """The header and each section's (start, end) offsets; checks everything, ``limits`` included."""
    mv = memoryview(data).cast("B")
    head = bytes(mv[: len(MAGIC)])
    if head != MAGIC[: len(head)]:
        raise ContainerError("not a neurocodec file (wrong magic bytes)")
    if len(mv) < MIN_FILE_BYTES:
        raise ContainerError(f"truncated neurocodec file ({len(mv)} bytes)")
    end = len(mv) - _CRC_BYTES
    if zlib.crc32(mv[:end]) != int.from_bytes(mv[end:], "little"):
        raise ChecksumError(
            "neurocodec file checksum mismatch: the file is corrupt, truncated or has extra bytes"
        )
    version = mv[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(
            f"neurocodec file format version {version} is not supported (this neurocodec reads version "
            f"{FORMAT_VERSION}{'; upgrade neurocodec' if version > FORMAT_VERSION else ''})"
        )
    r = _Reader(mv, len(MAGIC) + 1, end)
    kind = r.byte("media type")
    media = kind >> 5
    if media > MEDIA_VIDEO:
        raise ContainerError(f"malformed neurocodec file: unknown media type {media}")
    codec = bytes(r.take((kind & 0x1F) + 1, "codec name")).decode("latin-1")
    if not _CODEC_NAME.fullmatch(codec):
        raise ContainerError(f"malformed neurocodec file: invalid codec name {codec!r}")
    quality = r.byte("quality")
    weights_hash = bytes(r.take(WEIGHTS_HASH_BYTES, "weights hash"))
    header = Header(codec, quality, weights_hash, _read_geometry(r, media))
    limits.check(header.geometry)
    sections: dict[str, tuple[int, int]] = {}
    while r.pos < end:
        limits.check_sections(len(sections) + 1)
        name = bytes(r.take(r.byte("section name length"), "section name")).decode("latin-1")
        if not _SECTION_NAME.fullmatch(name):
            raise ContainerError(f"malformed neurocodec file: invalid section name {name!r}")
        if name in sections:
            raise ContainerError(f"malformed neurocodec file: duplicate section {name!r}")
        size = r.leb128(f"length of section {name!r}")
        start = r.pos
        r.take(size, f"section {name!r}")
        sections[name] = (start, r.pos)
    return header, sections


def unpack(
    data: bytes | bytearray | memoryview, limits: Limits = NO_LIMITS
) -> tuple[Header, dict[str, bytes]]:
    """The header and the sections (in file order) of a complete file; checks everything, and
    refuses a file beyond ``limits`` (by default only the format's limits: a decoder passes its
    policy, by default ``DEFAULT_LIMITS``)."""
    header, spans = _parse(data, limits)
    mv = memoryview(data).cast("B")
    return header, {name: bytes(mv[start:stop]) for name, (start, stop) in spans.items()}


def peek_header(data: bytes | bytearray | memoryview, limits: Limits = NO_LIMITS) -> Header:
    """The header of a complete file, without copying its sections; checks everything (see :func:`unpack`)."""
    return _parse(data, limits)[0]


def overhead(data: bytes | bytearray | memoryview) -> int:
    """Bytes of a complete file that are container, not section payload."""
    _, spans = _parse(data, NO_LIMITS)
    return memoryview(data).nbytes - sum(stop - start for start, stop in spans.values())
