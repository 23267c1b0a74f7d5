"""The notebooks run headless (nbclient) on 3 Kodak images, one short music clip and 8 frames of
the carphone clip, so they cannot rot; and they are committed without outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KODAK = DATA / "kodak"
TRUMPET = DATA / "audio" / "music" / "music_solo_trumpet_06_sorohanro_full.wav"  # 5 s
CARPHONE = DATA / "video" / "carphone_qcif_176x144_30000-1001fps_i420_120f.y4m"
sys.path.insert(0, str(NOTEBOOKS))

from run import NOTEBOOKS as NAMES  # noqa: E402
from run import execute  # noqa: E402


def outputs(notebook: nbformat.NotebookNode) -> str:
    """The text every code cell printed or displayed, and the names of its images. Printed text is
    joined as printed: on a loaded machine one ``print`` can arrive as two stream outputs."""
    parts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and parts and parts[-1][0] == out.get("name"):
                parts[-1] = (out.get("name"), parts[-1][1] + out.get("text", ""))
                continue
            parts.append((out.get("name"), out.get("text", "") + out.get("data", {}).get("text/plain", "")))
            parts += [(None, kind) for kind in out.get("data", {}) if kind.startswith("image/")]
    return "\n".join(text for _, text in parts)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, name


@pytest.fixture
def small_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not (KODAK / "kodim01.png").exists():
        pytest.skip("shared Kodak data not present")
    monkeypatch.setenv("NEUROCODEC_KODAK", str(KODAK))
    monkeypatch.setenv("NEUROCODEC_NB_IMAGES", "3")
    monkeypatch.setenv("NEUROCODEC_NB_SETTINGS", "2")  # the two ends of each sweep: enough for a BD-rate
    monkeypatch.setenv("NEUROCODEC_NB_OUT", str(tmp_path / "plots"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


def test_quickstart_runs(small_run: Path) -> None:
    text = outputs(execute("quickstart.ipynb"))
    assert "3 images from" in text
    assert "decoded again identically: True" in text
    assert text.count(" bpp, ") >= 3


def test_rd_images_runs(small_run: Path) -> None:
    text = outputs(execute("rd_images.ipynb"))
    assert "3 images from" in text
    assert "BD-rate over PSNR, 3 images" in text and "BD-rate over MS-SSIM (dB), 3 images" in text
    assert text.count("image/png") == 3
    assert (small_run / "plots" / "rd.png").exists() and (small_run / "plots" / "rd-ms-ssim.png").exists()
    assert (small_run / "plots" / "rd-published.png").exists()
    assert "3 images: the published curves are means over all 24 Kodak images" in text


def test_rd_audio_runs(small_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not TRUMPET.exists():
        pytest.skip("shared music data not present")
    monkeypatch.setenv("NEUROCODEC_MUSIC", str(TRUMPET))
    text = outputs(execute("rd_audio.ipynb"))
    assert "1 audio files from" in text
    assert "no learned audio codec ships weights yet" in text  # the tests hide shipped weights
    assert "BD-rate over SNR, 1 audio files" in text and "BD-rate over SI-SDR, 1 audio files" in text
    assert text.count("image/png") == 2
    assert (small_run / "plots" / "rd.png").exists() and (small_run / "plots" / "rd-si-sdr.png").exists()


def test_rd_video_runs(small_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not CARPHONE.exists():
        pytest.skip("shared video data not present")
    monkeypatch.setenv("NEUROCODEC_VIDEO", str(CARPHONE))
    monkeypatch.setenv("NEUROCODEC_NB_FRAMES", "8")
    text = outputs(execute("rd_video.ipynb"))
    assert "1 videos from" in text and "8 frames of each" in text
    assert "BD-rate over PSNR-Y, 1 videos" in text and "BD-rate over PSNR-YUV, 1 videos" in text
    assert "n/a" not in text  # every BD-rate computed
    assert text.count("image/png") == 2
    assert (small_run / "plots" / "rd.png").exists() and (small_run / "plots" / "rd-psnr-yuv.png").exists()
