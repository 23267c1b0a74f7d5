"""Audio rate-distortion evaluation: SI-SDR, the perceptual scores (ViSQOL, PESQ, STOI), the
Opus/MP3/FLAC baselines, and ``neurocodec eval`` on audio (kbit/s from real file sizes, SNR, SI-SDR
and ViSQOL, BD-rates, plots)."""

from __future__ import annotations

import io
import json
import math
import os
import re
from pathlib import Path

import pytest
import soundfile
import torch

from neurocodec.codecs.walloc import WaLLoCAudioCodec
from neurocodec.evaluation import metrics
from neurocodec.evaluation.baselines import AUDIO_BASELINES, aligned, evaluate_baseline
from neurocodec.evaluation.metrics import is_speech, si_sdr, snr
from neurocodec.evaluation.rows import curve_points, mean_curve
from neurocodec.io.audio import write_audio
from neurocodec.registry import list_codecs
from test_rd import in_process
from test_walloc import write_weights

RATE = 44100
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chords(seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A stereo mixture of sines (a chord per channel) with a little noise, on the 16-bit grid."""
    t = torch.arange(int(seconds * RATE)) / RATE
    left = sum(torch.sin(2 * math.pi * f * t) for f in (220.0, 330.0, 495.0)) / 4
    right = sum(torch.sin(2 * math.pi * f * t) for f in (262.0, 392.0, 523.0)) / 4
    noise = 0.01 * torch.randn(2, len(t), generator=torch.Generator().manual_seed(seed))
    return (torch.stack([left, right]) + noise).mul(32768).round().div(32768)


def wav(path: Path, seconds: float = 1.0, seed: int = 0) -> Path:
    write_audio(path, chords(seconds, seed), RATE)
    return path


# --------------------------------------------------------------------------------------------
# SI-SDR


def test_si_sdr_hand_checked() -> None:
    """x = [1, -1, 1, -1] and y = 0.5 x + e with e = 0.1 [1, 1, -1, -1] orthogonal to x: the scaled
    target is 0.5 x, so SI-SDR = 10 log10(|0.5 x|^2 / |e|^2) = 10 log10(1 / 0.04) = 13.979 dB,
    whatever the gain or offset of y; SNR does charge the gain."""
    x = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    e = 0.1 * torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    y = 0.5 * x + e
    assert si_sdr(x, y) == pytest.approx(10 * math.log10(25), abs=1e-5)
    assert si_sdr(x, 3 * y + 0.2) == pytest.approx(10 * math.log10(25), abs=1e-5)
    assert snr(x, y) == pytest.approx(10 * math.log10(4 / ((0.5**2 + 0.1**2) * 4)), abs=1e-5)
    # per channel, averaged in dB: a second channel at 10 log10(1 / 0.01) = 20 dB
    x2 = torch.cat([x, x])
    y2 = torch.cat([y, x + e])
    assert si_sdr(x2, y2) == pytest.approx((10 * math.log10(25) + 20) / 2, abs=1e-5)
    assert si_sdr(x, x) == math.inf
    # a silent reference channel has no SI-SDR and is left out; all silent: NaN
    assert si_sdr(torch.cat([x, torch.zeros(1, 4)]), torch.cat([y, e])) == pytest.approx(10 * math.log10(25))
    assert math.isnan(si_sdr(torch.zeros(2, 4), torch.ones(2, 4)))


# --------------------------------------------------------------------------------------------
# Baselines


def test_aligned_undoes_a_decoder_delay() -> None:
    x = chords(0.2)
    late = torch.cat([torch.zeros(2, 1105), x], dim=1)  # an MP3 without the gapless tag
    assert torch.equal(aligned(x, late), x)
    early = x[:, 3:]  # starts 3 samples late in the source: the missing tail counts as error
    out = aligned(x, early)
    assert torch.equal(out[:, 3:], early) and torch.equal(out[:, :3], torch.zeros(2, 3))


@pytest.mark.parametrize(("name", "settings"), [("opus", (24, 64, 256)), ("mp3", (64, 128, 256))])
def test_lossy_baseline_rises_with_bitrate(tmp_path: Path, name: str, settings: tuple[int, ...]) -> None:
    """Real files: kbit/s is 8 x their length over the duration, another decoder (libsndfile)
    reads them back to the same duration, and SNR and SI-SDR rise with the rate."""
    path = wav(tmp_path / "chords.wav")
    rows = evaluate_baseline(name, [path], settings)
    assert [row["setting"] for row in rows] == list(settings)
    x = chords()
    for row in rows:
        data = AUDIO_BASELINES[name].encode(x, RATE, row["setting"])
        assert row["bytes"] == len(data)
        assert row["kbps"] == pytest.approx(8 * len(data) / 1.0 / 1000)
        decoded, rate = soundfile.read(io.BytesIO(data), always_2d=True)
        assert decoded.shape[1] == 2 and abs(len(decoded) / rate - 1.0) < 0.06
    kbps = [row["kbps"] for row in rows]
    assert kbps == sorted(kbps) and kbps[-1] > 2 * kbps[0]
    for key in ("snr", "si_sdr"):
        values = [row[key] for row in rows]
        assert values == sorted(values) and values[-1] > values[0] + 3, (key, values)
    assert rows[0]["snr"] > 5  # aligned: a misaligned decode would score near 0 dB
    # the linked library's version is named (LAME3.100 up to PyAV 17, LAME4.1 in PyAV 18)
    assert re.search(
        {"opus": r"libopus \d+\.", "mp3": r"LAME\d+\.\d+"}[name], AUDIO_BASELINES[name].description
    )


def test_flac_is_lossless(tmp_path: Path) -> None:
    (row,) = evaluate_baseline("flac", [wav(tmp_path / "chords.wav")])
    assert row["snr"] == math.inf and row["si_sdr"] > 250  # SI-SDR: float rounding of the zero-mean fit
    assert 100 < row["kbps"] < 2 * 16 * RATE / 1000  # compressed below 16-bit PCM
    (point,) = mean_curve([row])
    assert curve_points([point], "snr") == []  # a lossless point has no place on a curve


# --------------------------------------------------------------------------------------------
# neurocodec eval


@pytest.fixture
def music(tmp_path: Path) -> Path:
    folder = tmp_path / "music"
    folder.mkdir()
    wav(folder / "a.wav", 0.5, seed=1)
    wav(folder / "b.wav", 0.4, seed=2)
    return folder


SWEEPS = ("--sweep", "opus=32,96", "--sweep", "mp3=64,128")


def test_eval_walloc_audio_against_opus_and_mp3(
    tmp_path: Path, music: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    write_weights(weights, WaLLoCAudioCodec, 1, levels=4, latent_dim=8)
    write_weights(weights, WaLLoCAudioCodec, 2, levels=4, latent_dim=8)
    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(weights))
    status, out, err = in_process(
        "walloc-audio", "--data", music, *SWEEPS, "--out", "o", cwd=tmp_path, capsys=capsys
    )
    assert status == 0, err
    assert "BD-rate, SNR on 2 audio files" in out and "BD-rate, SI-SDR (dB) on 2 audio files:" in out
    assert out.splitlines()[-1] == "wrote o/results.json, o/rd.png and o/rd-si-sdr.png"
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    assert report["data"]["files"] == ["a.wav", "b.wav"]
    assert {"pyav", "ffmpeg", "libopus", "lame", "libsndfile"} <= set(report["machine"])
    walloc = report["codecs"]["walloc-audio"]
    assert walloc["kind"] == "learned" and [p["setting"] for p in walloc["mean"]] == [1, 2]
    assert len(walloc["per_file"]) == 4
    for row in walloc["per_file"]:
        seconds = {"a.wav": 0.5, "b.wav": 0.4}[row["file"]]
        assert row["kbps"] == pytest.approx(8 * row["bytes"] / seconds / 1000, rel=1e-5)
        assert set(row) >= {"snr", "si_sdr", "encode_s", "decode_s"}
    opus = report["codecs"]["opus"]
    assert opus["kind"] == "baseline" and "libopus" in opus["description"]
    assert opus["results"]["kbps"] == [p["kbps"] for p in opus["mean"]]
    assert opus["results"]["snr"] == [p["snr"] for p in opus["mean"]]
    assert [(e["test"], e["anchor"]) for e in report["bd_rate"]] == [
        ("walloc-audio", "opus"),
        ("walloc-audio", "mp3"),
    ]
    assert len(report["bd_rate_si_sdr"]) == 2
    for plot in ("rd.png", "rd-si-sdr.png"):
        assert (tmp_path / "o" / plot).read_bytes().startswith(PNG_MAGIC)


def test_eval_audio_codec_without_weights_runs_the_baselines(
    tmp_path: Path, music: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable in [v for v in os.environ if v.startswith("NEUROCODEC_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("NEUROCODEC_PACKAGE_WEIGHTS", "0")  # no shipped weights either
    if "walloc-audio" in {info.name for info in list_codecs()}:
        pytest.skip("walloc-audio ships weights now")
    status, out, err = in_process(
        "walloc-audio", "--data", music, *SWEEPS, "--out", "o", cwd=tmp_path, capsys=capsys
    )
    assert status == 0, err
    assert "note: walloc-audio has no weights installed, so it is not evaluated" in out
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    assert set(report["codecs"]) == {"opus", "mp3"}
    (opus_vs_mp3, mp3_vs_opus) = report["bd_rate"]
    assert (opus_vs_mp3["test"], opus_vs_mp3["anchor"]) == ("opus", "mp3")
    assert (mp3_vs_opus["test"], mp3_vs_opus["anchor"]) == ("mp3", "opus")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("jpeg", "opus", "--data", "."), "eval compares codecs of one media (image, audio or video)"),
        (("opus", "--data", ".", "--baselines", "jpeg"), "--baselines: jpeg is an image codec, not audio"),
        (("opus", "--data", "."), "--data: no audio files"),
    ],
)
def test_eval_audio_usage_errors(
    tmp_path: Path, args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = in_process(*args, cwd=tmp_path, capsys=capsys)
    assert status == 2
    assert message in err.splitlines()[-1]


# --------------------------------------------------------------------------------------------
# Perceptual scores (the audio-eval extra: visqol-python, pesq, pystoi; skipped without them)

SPEECH = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "audio" / "speech" / "jfk_inaugural_16k.wav"
)


def needs_perceptual() -> None:
    for module in ("visqol", "pesq", "pystoi"):
        pytest.importorskip(module)


def test_is_speech() -> None:
    assert is_speech("data/audio/speech/jfk.wav") and is_speech("/x/Speech_clips/a.flac")
    assert not is_speech("data/audio/music/a.wav") and not is_speech("a.wav")


def test_without_the_extra_there_are_no_perceptual_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows and the report simply lack them, and eval says why in a note."""
    monkeypatch.setattr(metrics, "missing_perceptual", lambda: ["visqol-python"])
    x = chords(0.2)
    assert metrics.perceptual_scores(x, x, RATE, speech=False) == {}


def test_visqol_scores_music_lower_as_it_is_degraded() -> None:
    needs_perceptual()
    x = chords(3.0)
    noisy = x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    clean = metrics.perceptual_scores(x, x, RATE, speech=False)
    assert set(clean) == {"visqol"} and clean["visqol"] > 4.5
    assert 1 <= metrics.perceptual_scores(x, noisy, RATE, speech=False)["visqol"] < clean["visqol"] - 0.5
    short = metrics.perceptual_scores(x[:, :4410], x[:, :4410], RATE, speech=False)
    assert math.isnan(short["visqol"])  # shorter than ViSQOL's patches: no score, no crash


@pytest.mark.skipif(not SPEECH.is_file(), reason="needs data/audio/speech")
def test_speech_gets_visqol_speech_mode_pesq_and_stoi() -> None:
    needs_perceptual()
    x, rate = soundfile.read(SPEECH, dtype="float32", frames=4 * 16000)
    x = torch.from_numpy(x)[None]
    noisy = x + 0.03 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    clean = metrics.perceptual_scores(x, x, rate, speech=True)
    degraded = metrics.perceptual_scores(x, noisy, rate, speech=True)
    assert set(clean) == {"visqol", "pesq", "stoi"}
    assert clean["pesq"] > 4.4 and clean["stoi"] > 0.99
    assert degraded["pesq"] < clean["pesq"] - 1 and degraded["stoi"] < clean["stoi"]
    assert degraded["visqol"] < clean["visqol"]


def test_eval_audio_reports_visqol_and_its_bd_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_perceptual()
    weights = tmp_path / "weights"
    weights.mkdir()
    write_weights(weights, WaLLoCAudioCodec, 1, levels=4, latent_dim=8)
    write_weights(weights, WaLLoCAudioCodec, 2, levels=4, latent_dim=8)
    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(weights))
    music = tmp_path / "music"
    music.mkdir()
    wav(music / "a.wav", 2.0, seed=1)
    args = ("walloc-audio", "--data", music, "--baselines", "opus", "--sweep", "opus=16,64", "--out", "o")
    status, out, err = in_process(*args, cwd=tmp_path, capsys=capsys)
    assert status == 0, err
    assert "BD-rate, ViSQOL v3 MOS-LQO on 1 audio files:" in out
    assert out.splitlines()[-1] == "wrote o/results.json, o/rd.png, o/rd-si-sdr.png and o/rd-visqol.png"
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    for name in ("walloc-audio", "opus"):
        rows = report["codecs"][name]["per_file"]
        assert all(1 <= row["visqol"] <= 5 and "pesq" not in row for row in rows)  # music: no PESQ
        assert report["codecs"][name]["results"]["visqol"] == [
            p["visqol"] for p in report["codecs"][name]["mean"]
        ]
    (entry,) = report["bd_rate_visqol"]
    assert (entry["test"], entry["anchor"]) == ("walloc-audio", "opus")
    assert "bd_rate_pesq" not in report
    assert (tmp_path / "o" / "rd-visqol.png").read_bytes().startswith(PNG_MAGIC)
