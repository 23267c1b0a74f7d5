"""The weights the package ships: every card's file is there and hash-checked, each quality codes a
real image or music clip through the file, and `neurocodec encode kodim01.png && neurocodec decode` works
offline with the default codec (issue 4's first target)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import neurocodec as nc
from neurocodec.evaluation.metrics import psnr, snr
from neurocodec.io.audio import read_audio
from neurocodec.io.image import read_image
from neurocodec.io.video import planes_to_tensor, read_y4m
from neurocodec.registry import WEIGHTS_DIR

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KODAK, MUSIC = DATA / "kodak", DATA / "audio" / "music"
SPEECH = DATA / "audio" / "speech" / "librispeech_16k" / "librispeech_5703-47212-0000.wav"  # held out
CARPHONE = DATA / "video" / "carphone_qcif_176x144_30000-1001fps_i420_120f.y4m"
CARDS = sorted(WEIGHTS_DIR.glob("*.json"))

pytestmark = pytest.mark.skipif(not CARDS, reason="this build ships no weights")


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.stem)
def test_each_shipped_quality_codes_real_media(card: Path, shipped: None) -> None:
    entry = json.loads(card.read_text())
    codec = nc.load(entry["codec"], quality=entry["quality"])  # checks the SHA-256
    assert entry["model_card"]["steps"] > 0
    if codec.media == "audio":
        speech = entry["codec"] == "recombiner-speech"
        assert entry["model_card"]["rd_speech" if speech else "rd_music"]["kbps"] > 0
        x, info = read_audio(SPEECH if speech else MUSIC / "music_vibe_ace_kevin_macleod_000-030s.wav")
        x = x[:, info.sample_rate : 3 * info.sample_rate]  # two seconds
        data = codec.encode(x, info.sample_rate)
        x_hat = nc.decode(data)
        assert x_hat.shape == x.shape
        kbps = 8 * len(data) / 2 / 1000
        # a trained codec, not noise; the CPU previews of recombiner-audio and -speech are barely
        # above silence (0 dB): recombiner-audio 0.76 dB here at q1, 15 kbit/s
        floor = {"recombiner-audio": 0.25, "recombiner-speech": 1}.get(entry["codec"], 10)
        assert 2 < kbps < 400 and snr(x, x_hat) > floor
        return
    if codec.media == "video":
        assert entry["model_card"]["rd_carphone"]
        planes, _ = read_y4m(CARPHONE, rgb=False, max_frames=8)
        x, colour = planes_to_tensor(planes)
        data = codec.encode(x, colour=colour)
        x_hat = nc.decode(data)
        assert x_hat.shape == x.shape
        bpp = 8 * len(data) / (x.shape[1] * x.shape[2] * x.shape[3])
        assert 0.01 < bpp < 4 and psnr(x[0], x_hat[0]) > 20  # PSNR-Y: a trained codec, not noise
        return
    assert entry["model_card"]["rd_kodak"]
    x = read_image(KODAK / "kodim23.png")[0][:, 100:292, 200:456]  # a 192x256 crop
    data = codec.encode(x)
    x_hat = nc.decode(data)
    assert x_hat.shape == x.shape
    bpp = 8 * len(data) / (x.shape[1] * x.shape[2])
    # a trained codec, not noise (the crop's mean colour alone scores 13.2 dB); the CPU previews of
    # vqgan (below 0.06 bpp here) and recombiner-image (16 dB at 0.1 bpp) are far from the others
    floor = {"vqgan": 16, "recombiner-image": 14}.get(entry["codec"], 20)
    assert 0.01 < bpp < 4 and psnr(x, x_hat) > floor


@pytest.mark.skipif(not KODAK.is_dir(), reason="needs ../shared/data/kodak")
def test_cli_encode_decode_with_the_default_codec(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROCODEC_")}
    cli = [sys.executable, "-m", "neurocodec"]
    encoded = subprocess.run(
        [*cli, "encode", str(KODAK / "kodim01.png"), "-o", str(tmp_path / "a.ncd")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert encoded.returncode == 0, encoded.stderr
    assert "bpp" in encoded.stdout
    decoded = subprocess.run(
        [*cli, "decode", str(tmp_path / "a.ncd"), "-o", str(tmp_path / "a.png")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert decoded.returncode == 0, decoded.stderr
    assert Image.open(tmp_path / "a.png").size == (768, 512)


def test_the_cross_device_script_dry_runs_on_the_cpu(tmp_path: Path, shipped: None) -> None:
    """eval/cross_device.py (issue 3's CPU<->GPU check, run when a GPU is lent) on one Kodak crop
    with both sides on the CPU: files from either side decode identically on both."""
    if not (KODAK / "kodim01.png").exists():
        pytest.skip("shared Kodak data not present")
    crop = read_image(KODAK / "kodim01.png")[0][:, :128, :192]
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray((crop.permute(1, 2, 0) * 255).round().byte().numpy()).save(data / "crop.png")
    script = Path(__file__).resolve().parents[1] / "eval" / "cross_device.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("NEUROCODEC_PACKAGE_WEIGHTS", None)
    args = [
        "--device",
        "cpu",
        "--codecs",
        "mlic:1,hyperprior:1",
        "--data",
        data,
        "--out",
        tmp_path / "r.json",
    ]
    done = subprocess.run(
        [sys.executable, script, *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] == {"mlic:1": 1, "hyperprior:1": 1}
    assert all(r["same_bytes"] for rows in report["rows"].values() for r in rows)
