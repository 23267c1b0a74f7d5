"""eval/compare_results.py (BD-rate of one codec across two `neurocodec eval` reports) and
eval/compare_published.py (a report placed against published Kodak curves)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from neurocodec.evaluation.published import KODAK

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "eval" / "compare_results.py"
PUBLISHED_SCRIPT = ROOT / "eval" / "compare_published.py"
KODAK_FILES = [f"kodim{i:02d}.png" for i in range(1, 25)]


def report(path: Path, scale: float, files: list[str]) -> Path:
    """A report of `walloc-audio` on a straight SNR line, rates scaled by ``scale``."""
    mean = [{"setting": q, "kbps": scale * r, "snr": 10 + 10 * q, "si_sdr": 9 + 10 * q} for q, r in ((1, 32), (2, 64), (3, 128))]  # fmt: skip
    entry = {"mean": mean, "weights": {"1": "ab"}, "effort": 0}
    body = {
        "command": "neurocodec eval ...",
        "date": "now",
        "data": {"files": files},
        "codecs": {"walloc-audio": entry},
    }
    path.write_text(json.dumps(body))
    return path


def run(*args: object, script: Path = SCRIPT) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_rates_times_0_9_are_minus_10_percent(tmp_path: Path) -> None:
    old, new = report(tmp_path / "a.json", 1.0, ["x.wav"]), report(tmp_path / "b.json", 0.9, ["x.wav"])
    done = run(old, new, "--codec", "walloc-audio", "--out", tmp_path / "c.json")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "c.json").read_text())
    for metric in ("snr", "si-sdr"):
        assert result[metric]["bd_rate_percent"] == pytest.approx(-10.0, abs=1e-6)
        assert result[metric]["rate"] == "kbps"
    assert result["anchor"]["report"] == str(old) and result["test"]["mean"][0]["kbps"] == pytest.approx(28.8)


def test_refuses_other_files_or_a_missing_codec(tmp_path: Path) -> None:
    old, new = report(tmp_path / "a.json", 1.0, ["x.wav"]), report(tmp_path / "b.json", 0.9, ["y.wav"])
    assert "different files" in run(old, new, "--codec", "walloc-audio").stderr
    assert "has no opus" in run(old, old, "--codec", "opus").stderr


def published_report(path: Path, files: list[str]) -> Path:
    """A report whose `mine` is the published VTM curve with 10 % fewer bits."""
    mean = [{**p, "bpp": 0.9 * p["bpp"]} for p in KODAK["VTM"].curve()]
    body = {
        "command": "neurocodec eval ...",
        "date": "now",
        "data": {"files": files},
        "codecs": {"mine": {"mean": mean}},
    }
    path.write_text(json.dumps(body))
    return path


def test_a_curve_with_10_percent_fewer_bits_is_minus_10_percent_against_vtm(tmp_path: Path) -> None:
    done = run(
        published_report(tmp_path / "r.json", KODAK_FILES),
        "--codecs",
        "mine",
        "--out",
        tmp_path / "p.json",
        script=PUBLISHED_SCRIPT,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "p.json").read_text())
    rows = {(metric, r["anchor"]): r for metric, rs in result["codecs"]["mine"].items() for r in rs}
    assert rows["psnr", "VTM"]["bd_rate_percent"] == pytest.approx(-10.0, abs=1e-6)
    assert rows["ms-ssim", "VTM"]["bd_rate_percent"] == pytest.approx(-10.0, abs=1e-6)
    assert ("ms-ssim", "MLIC++") not in rows  # MLIC++ publishes no MS-SSIM
    assert set(result["published"]) == set(KODAK)
    assert (tmp_path / "rd-published.png").exists()


def test_refuses_a_report_of_other_images_or_a_missing_codec(tmp_path: Path) -> None:
    assert (
        "did not measure the 24 Kodak images"
        in run(
            published_report(tmp_path / "a.json", KODAK_FILES[:3]),
            "--codecs",
            "mine",
            script=PUBLISHED_SCRIPT,
        ).stderr
    )
    assert (
        "has no avif"
        in run(
            published_report(tmp_path / "b.json", KODAK_FILES),
            "--codecs",
            "mine,avif",
            script=PUBLISHED_SCRIPT,
        ).stderr
    )
