"""Video through the library: the codec API's frame rate and colour, YUV coded as its planes with
no RGB round trip, ``neurocodec encode`` / ``decode`` / ``eval`` of video files.

The codec is the test-only lossless one of toy_video_codec.py, so that every output can be
compared exactly with its source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

import toy_video_codec
from neurocodec.codecs.c3 import C3Codec
from neurocodec.container import peek_header
from neurocodec.errors import ConfigError, UnsupportedMediaError
from neurocodec.evaluation.rows import evaluate_video
from neurocodec.io import input_media, read_codec_input
from neurocodec.io.video import (
    planes_to_tensor,
    read_video,
    read_y4m,
    tensor_to_planes,
    write_video,
    write_y4m,
)
from test_video_baselines import clip

TESTS = Path(__file__).resolve().parent
CODEC = toy_video_codec.ToyVideoCodec(quality=1)


def ten_bit_planes(frames: int = 3, height: int = 9, width: int = 13, chroma: tuple[int, int] = (2, 2)):
    """Random 10-bit planes of an odd-sized frame (the last chroma sample covers one column/row)."""
    g = torch.Generator().manual_seed(0)
    ch, cw = -(-height // chroma[1]), -(-width // chroma[0])
    shapes = [(frames, height, width), (frames, ch, cw), (frames, ch, cw)]
    return tuple(torch.randint(0, 1024, s, generator=g).float() / 1023 for s in shapes)


@pytest.mark.parametrize(("chroma", "colour"), [((2, 2), "yuv420"), ((2, 1), "yuv422"), ((1, 1), "yuv444")])
def test_planes_to_tensor_and_back_is_exact(chroma, colour) -> None:
    planes = ten_bit_planes(chroma=chroma)
    x, found = planes_to_tensor(planes)
    assert found == colour and x.shape == (3, 3, 9, 13)
    for a, b in zip(planes, tensor_to_planes(x, colour), strict=True):
        assert torch.equal(a, b)


def test_yuv_is_coded_as_its_planes(tmp_path: Path) -> None:
    """A 10-bit, full-range 4:2:0 Y4M: the file records it, and its planes come back to the level."""
    planes = ten_bit_planes()
    write_y4m(tmp_path / "a.y4m", planes, (30000, 1001), bit_depth=10, full_range=True)
    assert input_media(tmp_path / "a.y4m") == "video"
    x, options = read_codec_input(tmp_path / "a.y4m", "video")
    assert options == {
        "frame_rate": Fraction(30000, 1001),
        "colour": "yuv420",
        "full_range": True,
        "bit_depth": 10,
    }
    data = CODEC.encode(x, **options)
    g = peek_header(data).geometry
    assert (g.frames, g.rate_num, g.rate_den, g.height, g.width) == (3, 30000, 1001, 9, 13)
    assert (g.colour, g.full_range, g.bit_depth) == ("yuv420", True, 10)
    decoded = tensor_to_planes(CODEC.decode(data), g.colour)
    for a, b in zip(planes, decoded, strict=True):
        assert torch.equal(a.mul(1023).round(), b.mul(1023).round())


def test_video_encode_arguments() -> None:
    x = torch.rand(3, 2, 8, 8)
    g = peek_header(CODEC.encode(x)).geometry
    assert (g.rate_num, g.rate_den, g.colour, g.bit_depth) == (25, 1, "rgb", 8)  # FFmpeg's raw default
    assert peek_header(CODEC.encode(x, frame_rate=Fraction(24000, 1001))).geometry.rate_den == 1001
    for bad, message in [
        ({"frame_rate": 0}, "rate must be a positive"),
        ({"frame_rate": "30"}, "rate must be a positive"),
        ({"colour": "yuv411"}, "video colour must be one of"),
        ({"full_range": True}, "full_range is for YCbCr"),
        ({"bit_depth": 17}, "bit depth 17 is outside"),
    ]:
        with pytest.raises(ConfigError, match=message):
            CODEC.encode(x, **bad)
    with pytest.raises(UnsupportedMediaError, match=r"shape \(C, T, H, W\)"):
        CODEC.encode(torch.rand(3, 8, 8))
    with pytest.raises(UnsupportedMediaError, match="are for video"):
        C3Codec(quality=3).encode(torch.rand(3, 8, 8), frame_rate=30)


def test_effort_presets_are_the_codecs_own() -> None:
    c3 = C3Codec(quality=3)
    assert c3.resolve_effort("medium") == 3000 and c3.resolve_effort(7) == 7
    with pytest.raises(
        ConfigError, match="c3 has no effort preset 'turbo': its presets are fast, medium, slow"
    ):
        c3.check_effort("turbo")
    with pytest.raises(ConfigError, match="test-video has no effort preset 'fast'"):
        CODEC.check_effort("fast")


def test_read_codec_input_of_each_video_kind(tmp_path: Path) -> None:
    y, u, v = clip(4, 16, 24)
    write_video(tmp_path / "a.mp4", (y, u, v), 30, qp=0)  # yuv420p H.264, lossless
    x, options = read_codec_input(tmp_path / "a.mp4", "video", max_frames=3)
    assert x.shape == (3, 3, 16, 24) and options["colour"] == "yuv420" and options["frame_rate"] == 30
    assert torch.equal(tensor_to_planes(x, "yuv420")[1], u[:3])
    grey = y.unsqueeze(0).expand(3, -1, -1, -1)
    write_y4m(tmp_path / "grey.y4m", (y, torch.zeros(4, 0, 0), torch.zeros(4, 0, 0)), 25)
    x, options = read_codec_input(tmp_path / "grey.y4m", "video")
    assert options == {"frame_rate": 25} and x.shape == grey.shape  # grey goes in as RGB
    raw = torch.cat([p.reshape(4, -1) for p in (y, u, v)], dim=1).mul(255).round().to(torch.uint8)
    raw.numpy().tofile(tmp_path / "clip.yuv")
    x, options = read_codec_input(tmp_path / "clip.yuv", "video", raw=(24, 16, "yuv420p", Fraction(12)))
    assert options["frame_rate"] == 12 and torch.equal(tensor_to_planes(x, "yuv420")[0], y)


def test_evaluate_video_measures_on_the_planes(tmp_path: Path) -> None:
    write_y4m(tmp_path / "a.y4m", clip(3, 16, 24), 30)
    (row,) = evaluate_video(CODEC, [tmp_path / "a.y4m"], frames=2)
    assert row["frames"] == 2 and row["psnr_y"] == row["psnr_yuv"] == float("inf")  # lossless
    assert row["kbps"] == pytest.approx(8 * row["bytes"] / (2 / 30) / 1000)


# --------------------------------------------------------------------------------------------
# The command line


def neurocodec(*args: object, cwd: Path, package: bool = False) -> subprocess.CompletedProcess[str]:
    """The command line in a subprocess, with test-video known (and the package's codecs if ``package``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROCODEC_")}
    env.update(
        NEUROCODEC_PACKAGE_WEIGHTS="1" if package else "0",
        NEUROCODEC_CODEC_MODULES=toy_video_codec.MODULES,
        PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    )
    command = [sys.executable, "-m", "neurocodec", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_cli_round_trips_y4m_exactly(tmp_path: Path) -> None:
    write_y4m(tmp_path / "clip.y4m", clip(3, 16, 24), (30000, 1001))
    done = neurocodec("encode", "clip.y4m", "-c", "test-video", "--metrics", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "PSNR-Y inf dB, PSNR-YUV inf dB" in done.stdout and "kbit/s" in done.stdout
    done = neurocodec("decode", "clip.ncd", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 frames at 29.970 fps" in done.stdout
    assert (tmp_path / "clip.decoded.y4m").read_bytes() == (tmp_path / "clip.y4m").read_bytes()
    done = neurocodec("decode", "clip.ncd", "-o", "clip.mp4", cwd=tmp_path)  # lossless H.264 of the planes
    assert done.returncode == 0, done.stderr
    planes, info = read_video(tmp_path / "clip.mp4", rgb=False)
    assert info.codec == "h264" and Fraction(info.rate_num, info.rate_den) == Fraction(30000, 1001)
    for a, b in zip(planes, read_y4m(tmp_path / "clip.y4m", rgb=False)[0], strict=True):
        assert torch.equal(a, b)


def test_cli_raw_yuv_needs_its_geometry(tmp_path: Path) -> None:
    y, u, v = clip(2, 16, 24)
    raw = torch.cat([p.reshape(2, -1) for p in (y, u, v)], dim=1).mul(255).round().to(torch.uint8)
    raw.numpy().tofile(tmp_path / "clip.yuv")
    done = neurocodec("encode", "clip.yuv", "-c", "test-video", cwd=tmp_path)
    assert done.returncode == 1 and "its name gives no geometry" in done.stderr
    done = neurocodec(
        "encode", "clip.yuv", "-c", "test-video", "--size", "24x16", "--frame-rate", "12", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    g = peek_header((tmp_path / "clip.ncd").read_bytes()).geometry
    assert (g.width, g.height, g.frames, g.rate_num, g.colour) == (24, 16, 2, 12, "yuv420")
    done = neurocodec("encode", "clip.yuv", "-c", "test-video", "--size", "24by16", "-f", cwd=tmp_path)
    assert done.returncode == 2 and "--size WxH" in done.stderr


def test_cli_eval_puts_a_learned_video_codec_beside_x264(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    write_y4m(tmp_path / "clips" / "a.y4m", clip(3, 16, 24), 25)
    done = neurocodec(
        "eval", "test-video", "--data", "clips", "--frames", 2, "--baselines", "x264", "--sweep", "x264=40,30",
        "--out", "o", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    (row,) = report["codecs"]["test-video"]["per_file"]
    assert row["frames"] == 2 and row["psnr_yuv"] is None and row["bpp"] > 0  # lossless: inf, written as null
    assert [p["setting"] for p in report["codecs"]["x264"]["mean"]] == [40, 30]


def test_cli_nirvana_round_trip(tmp_path: Path) -> None:
    """The first learned video codec end to end: a 6-frame clip fitted briefly, decoded from the file alone."""
    write_y4m(tmp_path / "clip.y4m", clip(6, 16, 24), 25)
    done = neurocodec(
        "encode",
        "clip.y4m",
        "-c",
        "nirvana",
        "-q",
        "2",
        "--effort",
        "3",
        "--metrics",
        cwd=tmp_path,
        package=True,
    )
    assert done.returncode == 0, done.stderr
    assert "nirvana quality 2" in done.stdout and "PSNR-YUV" in done.stdout
    g = peek_header((tmp_path / "clip.ncd").read_bytes()).geometry
    assert (g.frames, g.colour, g.rate_num) == (6, "yuv420", 25)
    done = neurocodec("decode", "clip.ncd", cwd=tmp_path, package=True)
    assert done.returncode == 0, done.stderr
    planes, info = read_y4m(tmp_path / "clip.decoded.y4m", rgb=False)
    assert info.frames == 6 and planes[1].shape == (6, 8, 12)
