"""The file container (neurocodec.container, docs/bitstream.md §5): layout, limits, corruption."""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocodec.container import (
    COLOURS,
    DEFAULT_LIMITS,
    FORMAT_VERSION,
    MAGIC,
    MAX_AUDIO_CHANNELS,
    MAX_BIT_DEPTH,
    MAX_FRAMES,
    MAX_IMAGE_CHANNELS,
    MAX_RATE_TERM,
    MAX_SAMPLE_RATE,
    MAX_SAMPLES,
    MAX_SECTION_BYTES,
    MAX_SIDE,
    MIN_FILE_BYTES,
    NO_LIMITS,
    AudioGeometry,
    Header,
    ImageGeometry,
    Limits,
    VideoGeometry,
    overhead,
    pack,
    peek_header,
    unpack,
    weights_hash_of,
)
from neurocodec.errors import (
    BitstreamError,
    ChecksumError,
    ContainerError,
    GeometryError,
    LimitError,
    NeurocodecError,
    UnsupportedVersionError,
)

HASH = bytes.fromhex("a1b2c3d4")
KODAK = ImageGeometry(height=512, width=768, channels=3, bit_depth=8)


def leb(value: int) -> bytes:
    """Minimal LEB128, written independently of the module under test."""
    out = []
    while True:
        out.append(value & 0x7F)
        value >>= 7
        if not value:
            return bytes(out)
        out[-1] |= 0x80


def seal(body: bytes) -> bytes:
    """``body`` followed by its CRC-32, so that a crafted file passes the checksum."""
    return body + zlib.crc32(body).to_bytes(4, "little")


def raw_file(
    *,
    version: int = FORMAT_VERSION,
    kind: int | None = None,
    codec: bytes = b"walloc-image",
    geometry: bytes = leb(512) + leb(768) + bytes([0x27]),
    sections: bytes = b"\x01z" + leb(3) + b"abc",
) -> bytes:
    """A file assembled byte by byte from the layout in docs/bitstream.md §5."""
    kind = (0 << 5 | (len(codec) - 1)) if kind is None else kind
    return seal(MAGIC + bytes([version, kind]) + codec + bytes([3]) + HASH + geometry + sections)


def small_file() -> bytes:
    return pack(Header("walloc-image", 3, HASH, KODAK), {"z": b"\x01\x02\x03", "y": bytes(range(40))})


# --------------------------------------------------------------------------------------------
# Layout and round trips


def test_layout_is_as_documented():
    header = Header("walloc-image", 3, HASH, KODAK)
    assert pack(header, {"z": b"abc"}) == raw_file()
    assert raw_file()[:4] == b"\x89NC\x01"


@pytest.mark.parametrize(
    ("geometry", "geometry_bytes", "media"),
    [
        (ImageGeometry(512, 768, 3, 8), leb(512) + leb(768) + bytes([2 << 4 | 7]), 0),
        (ImageGeometry(1, 65535, 1, 16), leb(1) + leb(65535) + bytes([0 << 4 | 15]), 0),
        (AudioGeometry(44100, 2, 1_000_000), leb(44100) + leb(2) + leb(1_000_000), 1),
        (
            VideoGeometry(120, 30000, 1001, 144, 176, 3, 8),
            leb(120) + leb(30000) + leb(1001) + leb(144) + leb(176) + bytes([0x27, 0]),
            2,
        ),
        (
            VideoGeometry(9, 12, 1, 192, 320, 3, 10, colour="yuv420", full_range=True),
            leb(9) + leb(12) + leb(1) + leb(192) + leb(320) + bytes([0x29, 3 | 4]),
            2,
        ),
        (
            VideoGeometry(1, 25, 1, 2, 2, 3, 8, colour="yuv422"),
            leb(1) + leb(25) + leb(1) + leb(2) + leb(2) + bytes([0x27, 2]),
            2,
        ),
    ],
)
def test_round_trip_each_media_type(geometry, geometry_bytes, media):
    header = Header("codec-1", 7, HASH, geometry)
    sections = {"y": b"payload", "z": b"", "side.info": bytes(200)}
    data = pack(header, sections)
    body = b"".join(bytes([len(n)]) + n.encode() + leb(len(p)) + p for n, p in sections.items())
    assert data == seal(
        MAGIC + bytes([1, media << 5 | 6]) + b"codec-1" + bytes([7]) + HASH + geometry_bytes + body
    )
    got_header, got_sections = unpack(data)
    assert got_header == header
    assert got_sections == sections
    assert list(got_sections) == list(sections)  # file order
    assert peek_header(data) == header
    assert overhead(data) == len(data) - sum(map(len, sections.values()))


def test_accepts_bytearray_and_memoryview():
    data = small_file()
    assert unpack(bytearray(data)) == unpack(memoryview(data)) == unpack(data)


def test_no_sections_and_empty_sections():
    header = Header("a", 0, HASH, ImageGeometry(1, 1, 1, 1))
    assert unpack(pack(header, {})) == (header, {})
    assert len(pack(header, {})) == MIN_FILE_BYTES
    assert unpack(pack(header, {"e": b""}))[1] == {"e": b""}


@st.composite
def pictures(draw):
    channels = draw(st.integers(1, MAX_IMAGE_CHANNELS))
    height = draw(st.integers(1, MAX_SIDE))
    width = draw(st.integers(1, min(MAX_SIDE, MAX_SAMPLES // (height * channels))))
    return height, width, channels, draw(st.integers(1, MAX_BIT_DEPTH))


@st.composite
def audio(draw):
    channels = draw(st.integers(1, MAX_AUDIO_CHANNELS))
    rate = draw(st.integers(1, MAX_SAMPLE_RATE))
    return AudioGeometry(rate, channels, draw(st.integers(1, MAX_SAMPLES // channels)))


geometries = st.one_of(
    pictures().map(lambda p: ImageGeometry(*p)),
    audio(),
    st.builds(
        lambda frames, num, den, p, colour, full: VideoGeometry(
            frames,
            num,
            den,
            *p,
            **({"colour": colour, "full_range": full} if p[2] == 3 and colour != "rgb" else {}),
        ),
        st.integers(1, MAX_FRAMES),
        st.integers(1, MAX_RATE_TERM),
        st.integers(1, MAX_RATE_TERM),
        pictures(),
        st.sampled_from(COLOURS),
        st.booleans(),
    ),
)
headers = st.builds(
    Header,
    codec=st.from_regex(r"[a-z0-9-]{1,32}", fullmatch=True),
    quality=st.integers(0, 255),
    weights_hash=st.binary(min_size=4, max_size=4),
    geometry=geometries,
)
section_maps = st.dictionaries(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16),
    st.binary(max_size=300),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(headers, section_maps)
def test_round_trip_property(header, sections):
    data = pack(header, sections)
    got_header, got_sections = unpack(data)
    assert got_header == header
    assert list(got_sections.items()) == list(sections.items())
    assert overhead(data) == len(data) - sum(map(len, sections.values()))


# --------------------------------------------------------------------------------------------
# Overhead


def test_image_overhead_at_most_40_bytes():
    """Two sections (hyper-latent z, latent y), the longest shipped codec name, a Kodak image."""
    header = Header("walloc-image", 3, HASH, KODAK)
    # magic 3 + version 1 + kind 1 + name 12 + quality 1 + hash 4 + geometry 5 + CRC 4 = 31,
    # then per section 1 (name length) + 1 (name) + LEB128 length: z < 16 KiB, y < 2 MiB.
    assert overhead(pack(header, {"z": bytes(500), "y": bytes(60_000)})) == 31 + 4 + 5 == 40
    assert overhead(pack(header, {"z": bytes(60), "y": bytes(2_000)})) == 31 + 3 + 4 == 38


def test_weights_hash_of():
    import hashlib

    assert weights_hash_of(b"weights") == hashlib.sha256(b"weights").digest()[:4]


# --------------------------------------------------------------------------------------------
# Invalid headers and limits (writing)


@pytest.mark.parametrize("codec", ["", "A", "walloc_image", "x" * 33, "é", "a b", b"abc", None])
def test_bad_codec_names(codec):
    with pytest.raises(ValueError, match="codec name"):
        Header(codec, 0, HASH, KODAK)


@pytest.mark.parametrize("name", ["", "a" * 17, "a b", "é", "\n", 5])
def test_bad_section_names(name):
    with pytest.raises(ValueError, match="section name"):
        pack(Header("a", 0, HASH, KODAK), {name: b""})


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"quality": 256}, ValueError),
        ({"quality": -1}, ValueError),
        ({"weights_hash": b"abc"}, ValueError),
        ({"weights_hash": "abcd"}, ValueError),
        ({"geometry": (1, 1, 1, 8)}, TypeError),
    ],
)
def test_bad_header_fields(kwargs, error):
    fields = {"codec": "a", "quality": 0, "weights_hash": HASH, "geometry": KODAK, **kwargs}
    with pytest.raises(error):
        Header(**fields)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ImageGeometry(0, 1, 1, 8),
        lambda: ImageGeometry(MAX_SIDE + 1, 1, 1, 8),
        lambda: ImageGeometry(1, 1, 17, 8),
        lambda: ImageGeometry(1, 1, 1, 0),
        lambda: ImageGeometry(1, 1, 1, 17),
        lambda: ImageGeometry(65535, 65535, 1, 8),  # more than MAX_SAMPLES
        lambda: AudioGeometry(0, 1, 1),
        lambda: AudioGeometry(MAX_SAMPLE_RATE + 1, 1, 1),
        lambda: AudioGeometry(48000, 256, 1),
        lambda: AudioGeometry(48000, 2, MAX_SAMPLES // 2 + 1),
        lambda: VideoGeometry(0, 30, 1, 16, 16, 3, 8),
        lambda: VideoGeometry(MAX_FRAMES + 1, 30, 1, 16, 16, 3, 8),
        lambda: VideoGeometry(1, 0, 1, 16, 16, 3, 8),
        lambda: VideoGeometry(1, 30, MAX_RATE_TERM + 1, 16, 16, 3, 8),
        lambda: VideoGeometry(1, 30, 1, 65535, 65535, 3, 8),
    ],
)
def test_geometry_limits(make):
    with pytest.raises(GeometryError, match=r"outside the supported range|more than the supported"):
        make()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"colour": "yuv411"}, "video colour must be one of"),
        ({"colour": "yuv420", "channels": 1}, "has 3 channels"),
        ({"full_range": True}, "full_range is for YCbCr"),
    ],
)
def test_video_colour_is_checked(fields, message):
    with pytest.raises(GeometryError, match=message):
        VideoGeometry(
            **{
                **dict(frames=1, rate_num=25, rate_den=1, height=2, width=2, channels=3, bit_depth=8),
                **fields,
            }
        )


@pytest.mark.parametrize(
    ("colour_byte", "message"), [(0x08, "unknown video colour"), (0x04, "full_range is for YCbCr")]
)
def test_bad_video_colour_bytes_are_refused(colour_byte, message):
    data = bytearray(pack(Header("v", 1, HASH, VideoGeometry(5, 30, 1, 8, 8, 3, 8)), {}))
    assert data[-5] == 0  # the colour byte, before the CRC
    data[-5] = colour_byte
    with pytest.raises(ContainerError, match=message):
        unpack(seal(bytes(data[:-4])))


def test_geometry_types():
    with pytest.raises(TypeError):
        ImageGeometry(1.0, 1, 1, 8)
    with pytest.raises(TypeError):
        AudioGeometry(48000, True, 10)
    assert isinstance(GeometryError("x"), NeurocodecError)


# --------------------------------------------------------------------------------------------
# Invalid files (reading)


def test_every_truncation_is_an_error():
    data = small_file()
    for n in range(len(data)):
        with pytest.raises(ContainerError):
            unpack(data[:n])


def test_short_prefixes_say_truncated():
    data = small_file()
    for n in (0, 2, 3, MIN_FILE_BYTES - 1):
        with pytest.raises(ContainerError, match="truncated"):
            unpack(data[:n])


@pytest.mark.parametrize("extra", [b"\x00", b"garbage", bytes(4)])
def test_trailing_bytes(extra):
    data = small_file()
    with pytest.raises(ChecksumError, match="extra bytes"):
        unpack(data + extra)
    with pytest.raises(ChecksumError):
        unpack(data + data)


def test_single_byte_flips_always_fail_the_crc():
    data = small_file()
    rng = random.Random(1)
    for _ in range(2000):
        pos = rng.randrange(len(data))
        flipped = bytearray(data)
        flipped[pos] ^= rng.randrange(1, 256)
        # CRC-32 catches every error burst of at most 32 bits: the checksum must not match.
        assert zlib.crc32(flipped[:-4]) != int.from_bytes(flipped[-4:], "little")
        expected = ChecksumError if pos >= len(MAGIC) else ContainerError
        with pytest.raises(expected) as info:
            unpack(bytes(flipped))
        assert "\n" not in str(info.value)


def test_random_corruptions_are_neurocodec_errors():
    data = small_file()
    rng = random.Random(2)
    for _ in range(200):
        corrupt = bytearray(data)
        a = rng.randrange(len(data))
        b = rng.randrange(a, len(data) + 1)
        kind = rng.randrange(4)
        if kind == 0:  # overwrite a range with random bytes
            corrupt[a:b] = rng.randbytes(b - a)
        elif kind == 1:  # delete a range
            del corrupt[a:b]
        elif kind == 2:  # insert random bytes
            corrupt[a:a] = rng.randbytes(rng.randrange(1, 9))
        else:  # scatter a few flips
            for _ in range(rng.randrange(2, 6)):
                corrupt[rng.randrange(len(corrupt))] ^= rng.randrange(1, 256)
        if bytes(corrupt) == data:
            continue
        with pytest.raises(NeurocodecError):
            unpack(bytes(corrupt))


@pytest.mark.parametrize(
    "data", [b"\x89PNG\r\n\x1a\n" + bytes(40), b"hello world, this is text", b"\x00" * 30]
)
def test_wrong_magic(data):
    with pytest.raises(ContainerError, match="not a neurocodec file"):
        unpack(data)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 255])
def test_newer_version(version):
    with pytest.raises(UnsupportedVersionError, match=f"version {version} .*upgrade"):
        unpack(raw_file(version=version))


def test_unknown_older_version():
    with pytest.raises(UnsupportedVersionError, match="version 0 is not supported"):
        unpack(raw_file(version=0))


@pytest.mark.parametrize(
    ("kind", "geometry"),
    [
        (0, leb(70000) + leb(768) + bytes([0x27])),  # a side too long
        (0, leb(65535) + leb(65535) + bytes([0x27])),  # too many samples
        (1, leb(48000) + leb(2) + leb(2**34)),
        (2, leb(2**30) + leb(30) + leb(1) + leb(64) + leb(64) + bytes([0x27])),
        (2, leb(10) + leb(0) + leb(1) + leb(64) + leb(64) + bytes([0x27])),
    ],
)
def test_huge_geometry_is_refused_before_allocating(kind, geometry):
    data = raw_file(kind=kind << 5 | 11, geometry=geometry)
    tracemalloc.start()
    try:
        with pytest.raises(ContainerError, match="unsupported neurocodec file"):
            unpack(data)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()


def test_duplicate_section():
    with pytest.raises(ContainerError, match="duplicate section 'z'"):
        unpack(raw_file(sections=b"\x01z\x01a\x01z\x01b"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"codec": b"ABC"}, "invalid codec name"),
        ({"codec": b"wal_loc"}, "invalid codec name"),
        ({"kind": 3 << 5}, "unknown media type"),
        ({"kind": 0x80 | 11}, "unknown media type"),
        ({"kind": 31}, "runs past the end"),  # a 32-byte codec name in a short file
        ({"geometry": b"\x80\x84\x00" + leb(768) + b"\x27"}, "LEB128"),  # 512 padded: not minimal
        ({"geometry": leb(512) + leb(768)}, "runs past the end"),
        ({"sections": b"\x00" + leb(0)}, "invalid section name"),
        ({"sections": b"\x11" + b"s" * 17 + leb(0)}, "invalid section name"),
        ({"sections": b"\x02a b" + leb(0)}, "runs past the end|invalid section name"),
        ({"sections": b"\x01z" + leb(4) + b"abc"}, "runs past the end"),
        ({"sections": b"\x01z" + b"\xff" * 6}, "LEB128"),
    ],
)
def test_malformed_files_with_valid_crc(fields, message):
    with pytest.raises(ContainerError, match=message):
        unpack(raw_file(**fields))


def test_error_hierarchy():
    assert issubclass(ContainerError, BitstreamError)
    assert issubclass(ChecksumError, ContainerError)
    assert issubclass(UnsupportedVersionError, ContainerError)
    with pytest.raises(ValueError):  # BitstreamError is a ValueError
        unpack(b"")


def test_section_size_limit():
    class Huge(bytes):
        def __len__(self) -> int:
            return MAX_SECTION_BYTES + 1

    with pytest.raises(ValueError, match="larger than"):
        pack(Header("a", 0, HASH, KODAK), {"y": Huge()})


# --------------------------------------------------------------------------------------------
# Resource limits (a decoder's policy, checked against the header before allocating)


@pytest.mark.parametrize(
    ("geometry", "samples"),
    [
        (ImageGeometry(height=4096, width=4097, channels=4, bit_depth=8), 4096 * 4097 * 4),
        (AudioGeometry(sample_rate=48000, channels=2, samples=(1 << 25) + 1), (1 << 26) + 2),
        (
            VideoGeometry(
                frames=2, rate_num=30, rate_den=1, height=4096, width=4097, channels=4, bit_depth=8
            ),
            4096 * 4097 * 4,
        ),
    ],
)
def test_default_limits_refuse_more_samples_than_the_policy(geometry, samples):
    assert samples > DEFAULT_LIMITS.max_samples
    data = pack(Header("walloc-image", 3, HASH, geometry), {"y": b"tiny"})
    tracemalloc.start()
    try:
        with pytest.raises(
            LimitError,
            match=f"= {samples} samples, more than the decoder's limit of "
            f"{DEFAULT_LIMITS.max_samples} .*max-samples",
        ):
            unpack(data, DEFAULT_LIMITS)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()
    assert unpack(data)[0].geometry == geometry  # the format allows it: only the policy refuses
    assert unpack(data, NO_LIMITS)[0].geometry == geometry


def test_limits_at_and_past_the_boundary():
    kodak = pack(Header("walloc-image", 3, HASH, KODAK), {})
    assert unpack(kodak, Limits(max_samples=512 * 768 * 3))[0].geometry == KODAK
    with pytest.raises(LimitError, match="image of 768x512x3 = 1179648 samples"):
        unpack(kodak, Limits(max_samples=512 * 768 * 3 - 1))
    clip = pack(Header("walloc-audio", 1, HASH, AudioGeometry(44100, 2, 1000)), {})
    with pytest.raises(LimitError, match="audio clip of 2 x 1000 = 2000 samples"):
        peek_header(clip, Limits(max_samples=1999))
    video = pack(Header("v", 1, HASH, VideoGeometry(5, 30, 1, 8, 8, 3, 8)), {})
    assert peek_header(video, Limits(max_frames=5)).geometry.frames == 5
    with pytest.raises(LimitError, match=r"holds 5 video frames, more than the decoder's limit of 4"):
        peek_header(video, Limits(max_frames=4))
    assert peek_header(video, Limits(max_video_samples=5 * 8 * 8 * 3)).geometry.frames == 5
    with pytest.raises(LimitError, match=r"video of 5 frames x 192 samples = 960 samples"):
        peek_header(video, Limits(max_video_samples=5 * 8 * 8 * 3 - 1))
    # 2^16 frames of 720p RGB: each frame and the frame count pass, the whole does not
    long = pack(Header("v", 1, HASH, VideoGeometry(1 << 16, 25, 1, 720, 1280, 3, 8)), {})
    with pytest.raises(LimitError, match="--max-video-samples"):
        peek_header(long, DEFAULT_LIMITS)
    assert peek_header(long, NO_LIMITS).geometry.frames == 1 << 16


def test_section_count_limit():
    data = pack(Header("walloc-image", 3, HASH, KODAK), {str(i): b"" for i in range(5)})
    assert len(unpack(data, Limits(max_sections=5))[1]) == 5
    with pytest.raises(LimitError, match="more than the decoder's limit of 4 sections"):
        unpack(data, Limits(max_sections=4))
    many = pack(
        Header("walloc-image", 3, HASH, KODAK), {str(i): b"" for i in range(DEFAULT_LIMITS.max_sections + 1)}
    )
    with pytest.raises(LimitError):
        unpack(many, DEFAULT_LIMITS)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_limits_are_positive_ints_or_none(bad):
    with pytest.raises(ValueError, match="positive int or None"):
        Limits(max_samples=bad)


def test_decode_refuses_past_its_limits_before_loading_a_codec():
    """neurocodec.decode checks the policy first: the codec the file names is not even installed."""
    import neurocodec as nc

    data = pack(Header("no-such-codec", 1, HASH, KODAK), {})
    with pytest.raises(LimitError):
        nc.decode(data, limits=Limits(max_samples=1000))
    with pytest.raises(nc.UnknownCodecError):
        nc.decode(data)
