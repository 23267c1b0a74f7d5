"""Audio (soundfile) and video (PyAV, Y4M, raw YUV) readers and writers."""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocodec.errors import MediaReadError, OutputExistsError, UnsupportedMediaError
from neurocodec.io.audio import AudioInfo, read_audio, write_audio
from neurocodec.io.video import (
    decode_video,
    raw_geometry,
    read_video,
    read_y4m,
    read_yuv,
    write_video,
    write_y4m,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
AUDIO = DATA / "audio"
VIDEO = DATA / "video"
CARPHONE_Y4M = VIDEO / "carphone_qcif_176x144_30000-1001fps_i420_120f.y4m"
CARPHONE_MP4 = VIDEO / "carphone_pristine_qcif_x264qp10.mp4"
BUNNY = VIDEO / "bigbuckbunny_1280x720_25fps_132f_h264.mp4"
CISCO = VIDEO / "CiscoVT2people_320x192_12fps_i420_9f.yuv"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not here")
    return path


def _tone(channels: int, rate: int, seconds: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    rows = [0.5 * torch.sin(2 * math.pi * (220 + 110 * c) * t) for c in range(channels)]
    return torch.stack(rows).float()


def _snr(x: torch.Tensor, y: torch.Tensor) -> float:
    return 10 * math.log10(float((x**2).sum() / ((x - y) ** 2).sum()))


def _wav_header(rate: int, channels: int, bits: int, data_bytes: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    riff = min(4 + 8 + len(fmt) + 8 + data_bytes, 0xFFFFFFFF)
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", min(data_bytes, 0xFFFFFFFF))
    )


# --------------------------------------------------------------------------------------------
# Audio


@pytest.mark.parametrize("channels", [1, 2, 5])
@pytest.mark.parametrize("rate", [8000, 22050, 48000])
@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_lossless_audio_round_trip_is_exact(tmp_path, ext, rate, channels):
    g = torch.Generator().manual_seed(rate + channels)
    x = torch.randint(-32768, 32768, (channels, 1234), generator=g).float() / 32768
    path = tmp_path / f"a{ext}"
    write_audio(path, x, rate)
    y, info = read_audio(path)
    assert info == AudioInfo(rate, channels, "PCM_16", "WAV" if ext == ".wav" else "FLAC")
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.equal(y, x)


def test_wav_rounds_and_clips(tmp_path):
    x = torch.tensor([[0.0, 0.3, -0.3, 1.0, -1.0, 1.7, -2.0, 0.123456]])
    write_audio(tmp_path / "a.wav", x, 16000)
    y, _ = read_audio(tmp_path / "a.wav")
    assert (y - x.clamp(-1, 1)).abs().max() <= 1 / 32768 + 1e-9
    assert y.min() >= -1 and y.max() <= 1


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT"])
def test_wav_other_subtypes(tmp_path, subtype):
    x = _tone(2, 44100, 0.1)
    write_audio(tmp_path / "a.wav", x, 44100, subtype=subtype)
    y, info = read_audio(tmp_path / "a.wav")
    assert info.subtype == subtype
    assert (y - x).abs().max() <= 2**-23


@pytest.mark.parametrize(
    ("ext", "rate", "channels"), [(".ogg", 22050, 1), (".ogg", 44100, 2), (".opus", 48000, 2)]
)
def test_lossy_ogg_round_trip_is_close(tmp_path, ext, rate, channels):
    x = _tone(channels, rate)
    write_audio(tmp_path / f"a{ext}", x, rate)
    y, info = read_audio(tmp_path / f"a{ext}")
    assert info.format == "OGG" and info.subtype == ("OPUS" if ext == ".opus" else "VORBIS")
    assert info.sample_rate == rate and y.shape[0] == channels
    assert abs(y.shape[1] - x.shape[1]) <= rate // 100
    n = min(x.shape[1], y.shape[1])
    assert _snr(x[:, :n], y[:, :n]) > 15


def test_write_audio_refuses_overwrite_and_bad_input(tmp_path):
    x = _tone(1, 8000, 0.05)
    write_audio(tmp_path / "a.wav", x, 8000)
    with pytest.raises(OutputExistsError):
        write_audio(tmp_path / "a.wav", x, 8000)
    write_audio(tmp_path / "a.wav", -x, 8000, overwrite=True)
    assert torch.allclose(read_audio(tmp_path / "a.wav")[0], -x, atol=1 / 32768)
    with pytest.raises(UnsupportedMediaError, match="extension"):
        write_audio(tmp_path / "a.mp3", x, 8000)
    with pytest.raises(UnsupportedMediaError, match="Opus"):
        write_audio(tmp_path / "a.opus", x, 44100)
    with pytest.raises(ValueError):
        write_audio(tmp_path / "b.wav", x[0], 8000)
    with pytest.raises(ValueError):
        write_audio(tmp_path / "b.wav", x * float("nan"), 8000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_shared_audio_files():
    music = sorted(_need(AUDIO / "music").glob("music_vibe_ace*.wav"))
    speech = _need(AUDIO / "speech" / "jfk_inaugural_16k.wav")
    if not music:
        pytest.skip("no music file")
    x, info = read_audio(music[0])
    assert info == AudioInfo(44100, 2, "PCM_16", "WAV") and x.shape == (2, 1_323_000)
    assert 0.5 < x.abs().max() <= 1
    y, info = read_audio(speech)
    assert info == AudioInfo(16000, 1, "PCM_16", "WAV") and y.shape[0] == 1
    assert abs(y.shape[1] / 16000 - 11.0) < 0.1


def test_audio_read_errors(tmp_path):
    with pytest.raises(MediaReadError, match="No such file"):
        read_audio(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF junk, not a wave file" * 20)
    with pytest.raises(UnsupportedMediaError):
        read_audio(tmp_path / "junk.wav")
    (tmp_path / "text.flac").write_text("hello")
    with pytest.raises(UnsupportedMediaError):
        read_audio(tmp_path / "text.flac")
    write_audio(tmp_path / "ok.flac", _tone(2, 8000, 0.5), 8000)
    data = (tmp_path / "ok.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[:60])
    with pytest.raises((MediaReadError, UnsupportedMediaError)):
        read_audio(tmp_path / "cut.flac")


def test_audio_size_limits_are_checked_from_the_header(tmp_path):
    # A real (sparse) 8-bit mono WAV of 2**31 + 2 samples: refused before any sample is read.
    n = (1 << 31) + 2
    header = _wav_header(8000, 1, 8, n)
    with open(tmp_path / "huge.wav", "wb") as f:
        f.write(header)
        f.truncate(len(header) + n)
    with pytest.raises(UnsupportedMediaError, match="sample count"):
        read_audio(tmp_path / "huge.wav")
    # A sample rate outside the container's limits.
    (tmp_path / "rate.wav").write_bytes(_wav_header(4_000_000, 1, 16, 200) + bytes(200))
    with pytest.raises(UnsupportedMediaError, match="sample rate"):
        read_audio(tmp_path / "rate.wav")
    # A header that claims more data than the file holds reads what is there.
    (tmp_path / "lie.wav").write_bytes(_wav_header(8000, 1, 16, 0xFFFFFF00) + bytes(200))
    x, _ = read_audio(tmp_path / "lie.wav")
    assert x.shape == (1, 100)


# --------------------------------------------------------------------------------------------
# Video


def _levels(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).float() / 255


def test_y4m_planes_round_trip_exactly(tmp_path):
    for chroma, (ch, cw) in (("444", (12, 20)), ("420", (6, 10)), ("422", (12, 10))):
        planes = (_levels((3, 12, 20), 1), _levels((3, ch, cw), 2), _levels((3, ch, cw), 3))
        path = tmp_path / f"p{chroma}.y4m"
        write_y4m(path, planes, (24000, 1001))
        back, info = read_y4m(path, rgb=False)
        assert info.pix_fmt == f"yuv{chroma}p" and (info.rate_num, info.rate_den) == (24000, 1001)
        assert (info.width, info.height, info.frames) == (20, 12, 3)
        assert all(torch.equal(a, b) for a, b in zip(planes, back, strict=True))


@pytest.mark.parametrize("chroma", ["444", "420"])
def test_y4m_rgb_round_trip(tmp_path, chroma):
    # Colours constant over 2x2 blocks, so 4:2:0 loses nothing but the 8-bit YUV rounding.
    x = torch.rand(3, 2, 8, 12, generator=torch.Generator().manual_seed(0))
    x = x.repeat_interleave(2, 2).repeat_interleave(2, 3)
    write_y4m(tmp_path / "a.y4m", x, 25, chroma=chroma)
    y, info = read_video(tmp_path / "a.y4m")
    assert y.shape == x.shape and info.frames == 2 and info.codec == "rawvideo"
    assert (y - x).abs().max() <= 3 / 255
    smooth = torch.linspace(0.1, 0.9, 24).expand(3, 2, 16, 24).contiguous()  # grey ramp: chroma is flat
    write_y4m(tmp_path / "b.y4m", smooth, 25, chroma=chroma)
    assert (read_video(tmp_path / "b.y4m")[0] - smooth).abs().max() <= 2.5 / 255


def test_carphone_y4m_and_mp4():
    x, info = read_video(_need(CARPHONE_Y4M))
    assert x.shape == (3, 120, 144, 176) and x.dtype == torch.float32
    assert (info.rate_num, info.rate_den, info.width, info.height, info.frames, info.pix_fmt) == (
        30000,
        1001,
        176,
        144,
        120,
        "yuv420p",
    )
    planes, _ = read_y4m(CARPHONE_Y4M, rgb=False, max_frames=2)
    assert [tuple(p.shape) for p in planes] == [(2, 144, 176), (2, 72, 88), (2, 72, 88)]
    y, info = read_video(_need(CARPHONE_MP4), max_frames=4)
    assert y.shape == (3, 4, 144, 176) and info.codec == "h264" and info.frames == 120
    assert Fraction(info.rate_num, info.rate_den) == Fraction(30000, 1001)
    # The Y4M holds the MP4's decoded planes: FFmpeg's RGB conversion and ours agree closely.
    assert (y - x[:, :4]).abs().mean() < 2 / 255


def test_bunny_first_frames():
    x, info = read_video(_need(BUNNY), max_frames=2)
    assert x.shape == (3, 2, 720, 1280)
    assert (info.rate_num, info.rate_den, info.width, info.height, info.frames) == (25, 1, 1280, 720, 132)
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.05


def test_raw_yuv(tmp_path):
    x, info = read_yuv(_need(CISCO), 320, 192, rate=(12, 1))
    assert x.shape == (3, 9, 192, 320) and info.frames == 9 and (info.rate_num, info.rate_den) == (12, 1)
    planes, _ = read_yuv(CISCO, 320, 192, rgb=False, max_frames=2)
    raw = np.fromfile(CISCO, np.uint8, count=2 * 92160).reshape(2, 92160)
    assert torch.equal(planes[0], torch.from_numpy(raw[:, :61440].reshape(2, 192, 320)).float() / 255)
    with pytest.raises(MediaReadError, match="whole number"):
        read_yuv(CISCO, 321, 192)
    with pytest.raises(UnsupportedMediaError, match="pixel format"):
        read_yuv(CISCO, 320, 192, pix_fmt="nv12")


def test_raw_yuv_named_with_its_geometry(tmp_path):
    assert raw_geometry(CISCO) == (320, 192, "yuv420p", Fraction(12))
    assert raw_geometry("clip_176x144_30000-1001fps.yuv") == (176, 144, "yuv420p", Fraction(30000, 1001))
    assert raw_geometry("clip_64x32_yuv444p.yuv") == (64, 32, "yuv444p", Fraction(30))
    assert raw_geometry("clip.yuv") is None and raw_geometry("take2x.yuv") is None
    planes, info = read_video(_need(CISCO), rgb=False, max_frames=2)
    expected, _ = read_yuv(CISCO, 320, 192, rgb=False, max_frames=2)
    assert all(torch.equal(a, b) for a, b in zip(planes, expected, strict=True))
    assert (info.rate_num, info.frames) == (12, 9)


def test_container_planes_as_decoded():
    """``rgb=False`` gives a container's decoded planes: those the carphone .y4m was written from."""
    planes, info = read_video(_need(CARPHONE_MP4), rgb=False, max_frames=3)
    expected, _ = read_y4m(_need(CARPHONE_Y4M), rgb=False, max_frames=3)
    assert info.pix_fmt == "yuv420p"
    assert all(torch.equal(a, b) for a, b in zip(planes, expected, strict=True))
    same, info = decode_video(CARPHONE_MP4.read_bytes(), rgb=False, max_frames=3)
    assert info.codec == "h264" and all(torch.equal(a, b) for a, b in zip(planes, same, strict=True))
    with pytest.raises(MediaReadError, match="cannot decode <bytes>"):
        decode_video(b"\x00\x00\x00\x18ftypjunk" + bytes(100))


@pytest.mark.parametrize(
    ("name", "options", "tolerance"),
    [
        ("a.mkv", {"codec": "ffv1"}, 0.0),
        ("b.mp4", {"qp": 0, "pix_fmt": "yuv444p"}, 3 / 255),
    ],
)
def test_container_lossless_round_trip(tmp_path, name, options, tolerance):
    x = _levels((3, 3, 16, 24), 7)
    write_video(tmp_path / name, x, 25, **options)
    y, info = read_video(tmp_path / name)
    assert y.shape == x.shape and info.frames == 3 and (info.rate_num, info.rate_den) == (25, 1)
    assert (y - x).abs().max() <= tolerance + 1e-6


def test_container_lossy_round_trip(tmp_path):
    x = torch.linspace(0, 1, 32).expand(3, 4, 16, 32).contiguous()
    write_video(tmp_path / "c.mp4", x, (30000, 1001))
    y, info = read_video(tmp_path / "c.mp4")
    assert y.shape == x.shape and (info.rate_num, info.rate_den) == (30000, 1001)
    assert (y - x).abs().mean() < 4 / 255
    with pytest.raises(OutputExistsError):
        write_video(tmp_path / "c.mp4", x, 25)


def test_video_errors(tmp_path):
    with pytest.raises(MediaReadError):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(UnsupportedMediaError, match="extension"):
        read_video(tmp_path / "clip.flv")
    with pytest.raises(UnsupportedMediaError, match="read_yuv"):
        read_video(tmp_path / "clip.yuv")
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypjunk" + bytes(100))
    with pytest.raises(MediaReadError):
        read_video(tmp_path / "junk.mp4")
    (tmp_path / "junk.y4m").write_bytes(b"not a y4m file\n")
    with pytest.raises(UnsupportedMediaError):
        read_video(tmp_path / "junk.y4m")
    (tmp_path / "cut.y4m").write_bytes(b"YUV4MPEG2 W16 H16 F25:1 C420jpeg\nFRAME\n" + bytes(100))
    with pytest.raises(MediaReadError):
        read_video(tmp_path / "cut.y4m")
    (tmp_path / "bad.y4m").write_bytes(b"YUV4MPEG2 W16 H16 F25:1 C420jpeg\nFRAMX\n" + bytes(384))
    with pytest.raises(MediaReadError, match="FRAME"):
        read_video(tmp_path / "bad.y4m")
    (tmp_path / "alpha.y4m").write_bytes(b"YUV4MPEG2 W16 H16 F25:1 C444alpha\nFRAME\n" + bytes(1024))
    with pytest.raises(UnsupportedMediaError, match="C444alpha"):
        read_video(tmp_path / "alpha.y4m")
    with pytest.raises(UnsupportedMediaError, match="extension"):
        write_video(tmp_path / "a.gif", torch.zeros(3, 1, 8, 8), 25)
    assert not (tmp_path / "a.gif").exists()


def test_video_size_limits_before_decoding(tmp_path):
    # A 70000-pixel-wide frame is outside the container's limits: refused from the header alone.
    (tmp_path / "wide.y4m").write_bytes(b"YUV4MPEG2 W70000 H16 F25:1 C420jpeg\nFRAME\n" + bytes(64))
    with pytest.raises(UnsupportedMediaError, match="width"):
        read_video(tmp_path / "wide.y4m")
    (tmp_path / "tiny.yuv").write_bytes(bytes(96))
    with pytest.raises(UnsupportedMediaError, match="width"):
        read_yuv(tmp_path / "tiny.yuv", 70000, 8)
    with pytest.raises(ValueError, match="max_frames"):
        read_video(tmp_path / "wide.y4m", max_frames=0)
