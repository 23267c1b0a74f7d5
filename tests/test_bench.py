"""`neurocodec bench`, run in-process through neurocodec.cli.main on small crops of the shared data:
a 64x96 Kodak crop for hyperprior and a 1 s music clip for walloc-audio (a few seconds in all)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from PIL import Image

import neurocodec as nc
from neurocodec.cli import main
from neurocodec.codecs.base import Codec
from neurocodec.evaluation.bench import bench_codec, summarize
from neurocodec.io.image import read_image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KODIM01 = DATA / "kodak" / "kodim01.png"
MUSIC = DATA / "audio" / "music" / "music_solo_trumpet_06_sorohanro_full.wav"
ERROR = "neurocodec: error: "

pytestmark = [
    pytest.mark.usefixtures("one_thread", "shipped"),
    pytest.mark.skipif(not (KODIM01.exists() and MUSIC.exists()), reason="shared data not present"),
]

H, W = 64, 96
FAST = ["--qualities", "1", "--reps", "2", "--warmup", "0", "--threads", "1"]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder holding one 64x96 crop of kodim01."""
    folder = tmp_path / "images"
    folder.mkdir()
    with Image.open(KODIM01) as im:
        im.crop((200, 100, 200 + W, 100 + H)).save(folder / "crop.png")
    return folder


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """One second of stereo music at 44.1 kHz, as a WAV file in its own folder."""
    folder = tmp_path / "audio"
    folder.mkdir()
    samples, rate = sf.read(MUSIC, frames=44100, start=44100, dtype="float32", always_2d=True)
    sf.write(folder / "clip.wav", samples, rate, subtype="PCM_16")
    return folder


def test_bench_image_table_json_and_no_overwrite(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "hyperprior", "--data", str(images), *FAST, "--json", str(out)]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    header, row = [line.split() for line in stdout.splitlines() if line.startswith(("codec ", "hyperprior "))]
    assert header[:5] == ["codec", "q", "files", "bytes", "rate"]
    assert row[:3] == ["hyperprior", "1", "1"] and row[-1] == "yes"
    assert f"wrote {out}" in stdout

    report = json.loads(out.read_text())
    assert report["command"].startswith("neurocodec bench hyperprior --data ")
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["torch_threads"] == 1
    assert (report["threads"], report["threads_option"], report["reps"], report["warmup"]) == (1, 1, 2, 0)
    (file_row,) = report["per_file"]
    (summary,) = report["summary"]
    assert (file_row["codec"], file_row["quality"], file_row["file"]) == ("hyperprior", 1, "crop.png")
    assert (file_row["height"], file_row["width"], file_row["pixels"]) == (H, W, H * W)
    # the rate is that of the real file: the one `encode` writes for the same image
    x, _ = read_image(images / "crop.png")
    assert file_row["bytes"] == len(nc.load("hyperprior", 1).encode(x)) > 0
    assert file_row["bpp"] == pytest.approx(file_row["bytes"] * 8 / (H * W), rel=1e-5)
    for key in ("encode_ms", "encode_ms_min", "decode_ms", "decode_ms_min", "encode_mp_s", "decode_mp_s"):
        assert file_row[key] > 0, key
    assert file_row["encode_ms_min"] <= file_row["encode_ms"]
    assert len(file_row["encode_ms_all"]) == len(file_row["decode_ms_all"]) == 2
    assert file_row["deterministic"] is True and file_row["same_bytes"] is True
    assert summary["files"] == 1 and summary["bytes"] == file_row["bytes"]
    assert summary["bpp"] == pytest.approx(file_row["bpp"], rel=1e-5)
    assert summary["deterministic"] is True and summary["weights"]
    assert summary["encode_mp_s"] == pytest.approx(H * W / 1e6 / (summary["encode_ms"] / 1000), rel=1e-4)

    # an existing --json is never replaced without -f
    before = out.read_bytes()
    assert main(args) != 0
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([*args, "-f", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(out.read_text())["command"].endswith("-f --quiet")


def test_bench_audio(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "audio.json"
    args = ["bench", "walloc-audio", "--data", str(clip), *FAST, "--json", str(out)]
    assert main(args) == 0
    assert "kbit/s" in capsys.readouterr().out
    (row,) = json.loads(out.read_text())["per_file"]
    assert (row["samples"], row["sample_rate"], row["seconds"]) == (44100, 44100, 1.0)
    assert row["bytes"] > 0
    assert row["kbps"] == pytest.approx(row["bytes"] * 8 / 1.0 / 1000, rel=1e-5)
    assert row["encode_x_realtime"] > 0 and row["decode_x_realtime"] > 0
    assert row["deterministic"] is True


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["jpeg"], "jpeg is a baseline"),
        (["nosuch"], "unknown codec 'nosuch' (installed: "),
        (["hyperprior", "--reps", "0"], "--reps must be at least 1"),
        (["hyperprior", "--warmup", "-1"], "--warmup must be 0 or more"),
        (["hyperprior", "--qualities", "9"], "hyperprior has no quality 9"),
        (["walloc-audio"], "--data: no audio files"),
    ],
)
def test_bench_usage_errors_exit_2(
    images: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *extra, "--data", str(images)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(ERROR) and message in line


def test_bench_cuda_without_gpu(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["bench", "hyperprior", "--data", str(images), "--device", "cuda"]) == 2
    assert "torch sees no CUDA GPU" in capsys.readouterr().err


def test_bench_bad_file_others_still_run(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (images / "broken.png").write_bytes(b"not a png")
    assert main(["bench", "hyperprior", "--data", str(images), *FAST]) == 1
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "Traceback" not in captured.err
    (row,) = [line.split() for line in captured.out.splitlines() if line.startswith("hyperprior ")]
    assert row[:3] == ["hyperprior", "1", "1"]


def test_bench_flags_a_decoder_that_changes(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    decode = Codec.decode
    calls = iter(range(1000))
    monkeypatch.setattr(Codec, "decode", lambda self, data: decode(self, data) + next(calls) * 1e-3)
    out = tmp_path / "unstable.json"
    assert main(["bench", "hyperprior", "--data", str(images), *FAST, "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert "neurocodec: warning: hyperprior q1 crop.png: the 2 decodes differ" in captured.err
    assert captured.out.splitlines()[-2].split()[-1] == "NO"
    report = json.loads(out.read_text())
    assert report["per_file"][0]["deterministic"] is False
    assert report["summary"][0]["deterministic"] is False


def test_bench_codec_from_python(images: Path) -> None:
    codec = nc.load("hyperprior", 1)
    rows = bench_codec(codec, [images / "crop.png"], reps=1, warmup=1)
    assert [row["file"] for row in rows] == ["crop.png"]
    assert rows[0]["deterministic"] is None  # one repetition checks nothing
    assert summarize(rows)["deterministic"] is None
    with pytest.raises(ValueError, match="reps"):
        bench_codec(codec, [images / "crop.png"], reps=0)
