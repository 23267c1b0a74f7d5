"""Video rate-distortion evaluation: PSNR of YUV video, the x264/x265/SVT-AV1 baselines through
PyAV, and ``neurocodec eval`` on video (bpp and kbit/s from real file sizes, PSNR-Y and
PSNR-YUV, BD-rates, plots)."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from neurocodec.errors import UnsupportedMediaError
from neurocodec.evaluation.baselines import VIDEO_BASELINES, evaluate_baseline
from neurocodec.evaluation.metrics import video_psnr
from neurocodec.io.video import decode_video, read_video, write_y4m
from test_audio_eval import PNG_MAGIC
from test_rd import in_process

CARPHONE = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "carphone_qcif_176x144_30000-1001fps_i420_120f.y4m"  # fmt: skip
MATROSKA = b"\x1a\x45\xdf\xa3"  # the EBML magic number
DECODER = {"x264": "h264", "x265": "hevc", "svtav1": "libdav1d"}
HIGH = {"x264": 18, "x265": 18, "svtav1": 22}  # the high-rate end of each sweep


def clip(frames: int = 4, height: int = 48, width: int = 64) -> tuple[torch.Tensor, ...]:
    """4:2:0 planes on the 8-bit grid: a textured ramp moving 2 pixels a frame, smooth chroma."""
    t = torch.arange(frames).view(-1, 1, 1)
    yy, xx = torch.arange(height).view(1, -1, 1), torch.arange(width).view(1, 1, -1)
    y = 40 + 2 * ((xx + 2 * t) % 64) + 20 * torch.sin((yy + xx + 2 * t) / 3.0)
    cy, cx = torch.arange(height // 2).view(1, -1, 1), torch.arange(width // 2).view(1, 1, -1)
    u = (128 + cx - cy + 0 * t).expand(frames, -1, -1)
    v = (110 + cy + t + 0 * cx).expand(frames, -1, -1)
    return tuple(p.float().round().clamp(16, 235).div(255).contiguous() for p in (y, u, v))


def need_carphone() -> Path:
    if not CARPHONE.exists():
        pytest.skip(f"{CARPHONE} is not here")
    return CARPHONE


# --------------------------------------------------------------------------------------------
# PSNR of YUV video


def test_video_psnr_hand_checked() -> None:
    """Errors of 1, 2, 4 codes everywhere give 20 log10(255 / e) per plane; frames are averaged in
    dB (not their MSE); YUV weighs Y, U, V 6:1:1; RGB is of the rendered 8-bit pictures."""
    x = clip(2)
    codes = [1, 2, 4]
    y = tuple(p + e / 255 for p, e in zip(x, codes, strict=True))
    db = [20 * math.log10(255 / e) for e in codes]
    out = video_psnr(x, y)
    for name, value in zip("yuv", db, strict=True):
        assert out[name] == pytest.approx(value, abs=1e-3)
    assert out["yuv"] == pytest.approx((6 * db[0] + db[1] + db[2]) / 8, abs=1e-3)
    assert 20 < out["rgb"] < db[0]
    second_worse = (x[0] + torch.tensor([1.0, 2.0]).view(2, 1, 1) / 255, *x[1:])
    assert video_psnr(x, second_worse)["y"] == pytest.approx((db[0] + db[1]) / 2, abs=1e-3)
    assert video_psnr(x, x)["yuv"] == math.inf


# --------------------------------------------------------------------------------------------
# Baselines


@pytest.mark.parametrize("name", list(VIDEO_BASELINES))
def test_round_trip(name: str) -> None:
    """A Matroska file that FFmpeg's own demuxer reads back: the right codec, every frame at the
    source size, close to the source at the high-rate end; no informational SEI."""
    x = clip()
    baseline = VIDEO_BASELINES[name]
    data, decoded = baseline(x, 25, HIGH[name])
    assert data.startswith(MATROSKA)
    assert [p.shape for p in decoded] == [p.shape for p in x]
    assert video_psnr(x, decoded)["y"] > 35
    planes, info = decode_video(data, rgb=False)
    assert info.codec == DECODER[name] and (info.width, info.height) == (64, 48)
    assert all(torch.equal(a, b) for a, b in zip(planes, decoded, strict=True))
    assert b"x264 - core" not in data and b"x265 (build" not in data
    assert baseline.setting == "crf" and baseline.media == "video"
    assert {"x264": "x264 core", "x265": "x265 4.", "svtav1": "SVT-AV1 v"}[name] in baseline.description


@pytest.mark.parametrize("name", list(VIDEO_BASELINES))
def test_sweep_is_monotone_on_carphone(name: str) -> None:
    """Along the default sweep (low to high rate) on 8 carphone frames, the file grows and PSNR-Y,
    PSNR-YUV and RGB PSNR rise; the rates are those of the real file, and PSNR-Y is the PSNR of
    the file as FFmpeg decodes it, computed here from the codes."""
    rows = evaluate_baseline(name, [need_carphone()], frames=8)
    assert [row["setting"] for row in rows] == list(VIDEO_BASELINES[name].sweep)
    for key in ("bytes", "psnr_y", "psnr_yuv", "psnr"):
        values = [row[key] for row in rows]
        assert values == sorted(set(values)), (key, values)  # strictly increasing
    assert rows[-1]["psnr_y"] > rows[0]["psnr_y"] + 8
    source, _ = read_video(CARPHONE, rgb=False, max_frames=8)
    row = rows[2]
    data = VIDEO_BASELINES[name].encode(source, Fraction(30000, 1001), row["setting"])
    assert len(data) == row["bytes"] and row["frames"] == 8
    assert row["bpp"] == pytest.approx(8 * len(data) / (8 * 176 * 144))
    assert row["kbps"] == pytest.approx(8 * len(data) / (8 * 1001 / 30000) / 1000)
    decoded, _ = decode_video(data, rgb=False)
    reference = source[0].mul(255).round().numpy()
    errors = [np.mean((decoded[0][t].mul(255).round().numpy() - reference[t]) ** 2) for t in range(8)]
    assert row["psnr_y"] == pytest.approx(np.mean([10 * np.log10(255**2 / e) for e in errors]), abs=1e-3)


def test_bad_input() -> None:
    x264 = VIDEO_BASELINES["x264"]
    with pytest.raises(ValueError, match=r"planes \(Y, U, V\).*shape \(3, 2, 16, 16\)"):
        x264(torch.zeros(3, 2, 16, 16), 25, 28)  # RGB, not planes
    with pytest.raises(ValueError, match="empty"):
        x264(tuple(p[:0] for p in clip()), 25, 28)
    y, u, v = clip()
    with pytest.raises(ValueError, match="4:2:0"):
        x264((y, y, y), 25, 28)  # 4:4:4 chroma
    with pytest.raises(ValueError, match="4:2:0"):
        x264((y[:, :47], u, v), 25, 28)  # odd height


def test_evaluate_refuses_other_than_420(tmp_path: Path) -> None:
    rgb = torch.rand(3, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    write_y4m(tmp_path / "a.y4m", rgb, 25, chroma="444")
    with pytest.raises(UnsupportedMediaError, match="8-bit 4:2:0, not yuv444p"):
        evaluate_baseline("x264", [tmp_path / "a.y4m"], (28,))


# --------------------------------------------------------------------------------------------
# neurocodec eval


def test_eval_video_baselines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two clips: a Y4M and a raw .yuv named with its geometry (a .yuv without is skipped)."""
    folder = tmp_path / "clips"
    folder.mkdir()
    write_y4m(folder / "a.y4m", clip(5), 25)
    raw = torch.cat([p.reshape(5, -1) for p in clip(5, 32, 48)], dim=1)
    raw.mul(255).round().to(torch.uint8).numpy().tofile(folder / "b_48x32_10fps.yuv")
    (folder / "unnamed.yuv").write_bytes(bytes(100))
    args = ("x264", "svtav1", "--data", "clips", "--frames", 4, "--baselines", "x264", "--out", "o")
    status, out, err = in_process(
        *args, "--sweep", "x264=38,23", "--sweep", "svtav1=56,32", cwd=tmp_path, capsys=capsys
    )
    assert status == 0, err
    assert "note: each video is coded from its first 4 frames at most" in out
    assert "BD-rate, PSNR-Y on 2 videos" in out and "BD-rate, PSNR-YUV 6:1:1 (dB) on 2 videos:" in out
    assert out.splitlines()[-1] == "wrote o/results.json, o/rd.png and o/rd-psnr-yuv.png"
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    assert report["data"]["files"] == ["a.y4m", "b_48x32_10fps.yuv"]
    assert report["command"].startswith("neurocodec eval x264 svtav1 --data clips --frames 4")
    assert {"pyav", "ffmpeg", "x264", "x265", "svtav1", "dav1d"} <= set(report["machine"])
    svtav1 = report["codecs"]["svtav1"]
    assert svtav1["setting"] == "crf" and [p["setting"] for p in svtav1["mean"]] == [56, 32]
    for row in svtav1["per_file"]:
        pixels, seconds = {"a.y4m": (64 * 48, 4 / 25), "b_48x32_10fps.yuv": (48 * 32, 4 / 10)}[row["file"]]
        assert row["frames"] == 4
        assert row["bpp"] == pytest.approx(8 * row["bytes"] / (4 * pixels), rel=1e-5)
        assert row["kbps"] == pytest.approx(8 * row["bytes"] / seconds / 1000, rel=1e-5)
    assert svtav1["results"]["psnr-y"] == [p["psnr_y"] for p in svtav1["mean"]]
    first = [row["psnr_yuv"] for row in svtav1["per_file"] if row["setting"] == 56]
    assert svtav1["mean"][0]["psnr_yuv"] == pytest.approx(sum(first) / 2, rel=1e-5)  # mean over the clips
    assert [(e["test"], e["anchor"]) for e in report["bd_rate"]] == [("svtav1", "x264")]
    assert report["bd_rate_psnr_yuv"][0]["bd_rate_percent"] is not None
    per_file = report["bd_rate_per_file"]  # each clip's own BD-rates
    assert list(per_file) == ["a.y4m", "b_48x32_10fps.yuv"]
    assert [(e["test"], e["anchor"]) for e in per_file["a.y4m"]["psnr-yuv"]] == [("svtav1", "x264")]
    for plot in ("rd.png", "rd-psnr-yuv.png"):
        assert (tmp_path / "o" / plot).read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("x264", "jpeg", "--data", "."), "eval compares codecs of one media (image, audio or video)"),
        (("x264", "--data", ".", "--baselines", "opus"), "--baselines: opus is an audio codec, not video"),
        (("jpeg", "--data", ".", "--baselines", "x264"), "--baselines: x264 is a video codec, not image"),
        (("x264", "--data", ".", "--frames", "-1"), "--frames must be 0 (all) or more"),
        (("x264", "--data", "."), "--data: no videos"),
    ],
)
def test_eval_video_usage_errors(
    tmp_path: Path, args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = in_process(*args, cwd=tmp_path, capsys=capsys)
    assert status == 2
    assert message in err.splitlines()[-1]
