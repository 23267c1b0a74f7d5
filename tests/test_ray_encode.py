"""Dataset encoding on Ray Data (neurocodec.dataset, `neurocodec encode --workers N`) on a local
Ray instance: the files are the bytes the plain command writes, the manifest lists every input,
a rerun encodes only what is missing, a bad input is reported and not fatal, and without Ray
the error says how to install it.

One Ray instance for the module (2 CPUs, usage reporting off); three pipeline runs in all, on
64x64 crops of Kodak with hyperprior quality 1 (about a minute on a loaded 2-core machine).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

import neurocodec as nc
from neurocodec.cli import main
from neurocodec.dataset import MANIFEST, encode_dataset, read_manifest
from neurocodec.registry import WEIGHTS_DIR

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
CODEC = ["-c", "hyperprior", "-q", "1"]
pytestmark = pytest.mark.skipif(
    not KODAK.is_dir() or not (WEIGHTS_DIR / "hyperprior-q1.json").exists(),
    reason="needs Kodak and the shipped hyperprior weights",
)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance for the module. The workers it starts keep the environment of this
    moment, before any test hides the shipped weights (conftest.py), so they see them."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # as neurocodec.dataset sets it: nothing leaves the machine
    ray = pytest.importorskip("ray")  # the `ray` extra
    ray.init(
        address="local", _node_ip_address="127.0.0.1", num_cpus=2, include_dashboard=False,
        ignore_reinit_error=True, log_to_driver=False,
    )  # fmt: skip
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, local_ray) -> SimpleNamespace:
    """Three Kodak crops and a corrupt PNG in a folder, plus a missing file, encoded on 2 workers."""
    root = tmp_path_factory.mktemp("ray")
    images = root / "images"
    images.mkdir()
    for i in (1, 2, 3):
        Image.open(KODAK / f"kodim0{i}.png").crop((0, 0, 64, 64)).save(images / f"k{i}.png")
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    missing = root / "missing.png"
    out = root / "out"
    rows: list[dict] = []
    os.environ.pop("NEUROCODEC_PACKAGE_WEIGHTS", None)  # the shipped weights, as in the workers
    summary = encode_dataset(
        [images, missing], out, codec="hyperprior", quality=1, workers=2, on_result=rows.append
    )
    return SimpleNamespace(images=images, missing=missing, out=out, rows=rows, summary=summary)


def test_files_are_those_of_the_plain_command(dataset: SimpleNamespace, tmp_path: Path, shipped) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    inputs = [dataset.images / f"k{i}.png" for i in (1, 2, 3)]
    assert main(["encode", *map(str, inputs), "-o", str(plain), *CODEC, "--quiet"]) == 0
    for i in (1, 2, 3):
        data = (dataset.out / f"k{i}.ncd").read_bytes()
        assert data == (plain / f"k{i}.ncd").read_bytes()
        assert nc.decode(data).shape == (3, 64, 64)


def test_manifest_lists_every_input(dataset: SimpleNamespace) -> None:
    s = dataset.summary
    assert (s.encoded, s.skipped, s.failed) == (3, 0, 2)
    lines = [json.loads(line) for line in (dataset.out / MANIFEST).read_text().splitlines()]
    assert sorted(lines, key=lambda r: r["input"]) == sorted(dataset.rows, key=lambda r: r["input"])
    by_input = {Path(row["input"]).name: row for row in lines}
    assert set(by_input) == {"k1.png", "k2.png", "k3.png", "corrupt.png", "missing.png"}
    for i in (1, 2, 3):
        row = by_input[f"k{i}.png"]
        assert row["status"] == "done" and row["error"] is None
        assert (row["codec"], row["quality"], row["effort"]) == ("hyperprior", 1, 0)
        assert row["bytes"] == (dataset.out / f"k{i}.ncd").stat().st_size
        assert row["bpp"] == pytest.approx(8 * row["bytes"] / 64**2, abs=1e-6) and row["seconds"] > 0
    for name in ("corrupt.png", "missing.png"):  # reported, never the end of the run
        row = by_input[name]
        assert row["status"] == "error" and name in row["error"] and row["bytes"] is None
        assert not (dataset.out / name).with_suffix(".ncd").exists()
    assert "not an image" in by_input["corrupt.png"]["error"]
    assert (
        "cannot read" in by_input["missing.png"]["error"]
        or "No such file" in by_input["missing.png"]["error"]
    )


def test_each_media_gets_its_default_codec(local_ray, tmp_path: Path, shipped) -> None:
    """Images and audio in one folder, without --codec: mlic for the image, walloc-audio for the clip."""
    import numpy as np
    import soundfile as sf

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.open(KODAK / "kodim04.png").crop((0, 0, 64, 64)).save(mixed / "photo.png")
    t = np.arange(16000) / 32000
    sf.write(mixed / "tone.wav", 0.4 * np.stack([np.sin(2 * np.pi * 440 * t)] * 2, 1), 32000)
    rows = {}
    summary = encode_dataset(
        mixed, tmp_path / "out", workers=2, on_result=lambda r: rows.update({Path(r["input"]).name: r})
    )
    assert (summary.encoded, summary.failed) == (2, 0), rows
    assert (rows["photo.png"]["codec"], rows["photo.png"]["bpp"] > 0) == (nc.default_codec("image"), True)
    assert (rows["tone.wav"]["codec"], rows["tone.wav"]["kbit_s"] > 0) == (nc.default_codec("audio"), True)
    assert nc.decode((tmp_path / "out" / "tone.ncd").read_bytes()).shape == (2, 16000)


def test_an_output_without_its_manifest_line_is_never_replaced(
    dataset: SimpleNamespace, tmp_path: Path, shipped
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "k1.ncd").write_bytes(b"someone else's file")
    rows: list[dict] = []
    summary = encode_dataset(
        dataset.images / "k1.png", out, codec="hyperprior", quality=1, on_result=rows.append
    )
    assert (summary.encoded, summary.failed) == (0, 1)
    assert "already exists" in rows[0]["error"] and "-f" in rows[0]["error"]
    assert (out / "k1.ncd").read_bytes() == b"someone else's file"


def test_bad_arguments_fail_before_any_work(tmp_path: Path, local_ray, shipped) -> None:
    with pytest.raises(nc.UnknownCodecError, match="no quality 9"):
        encode_dataset(tmp_path / "x.png", tmp_path / "out", codec="hyperprior", quality=9)
    with pytest.raises(nc.NeurocodecError, match="no encoder-side adaptation"):
        encode_dataset(tmp_path / "x.wav", tmp_path / "out", codec="walloc-audio", effort=5)
    with pytest.raises(nc.MediaReadError, match="no image or audio file"):
        encode_dataset(tmp_path, tmp_path / "out")
    with pytest.raises(nc.NeurocodecError, match="workers"):
        encode_dataset(tmp_path, tmp_path / "out", workers=0)
    assert main(["encode", str(tmp_path), "--workers", "2"]) == 2  # -o OUT_DIR is required


def test_without_ray_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(nc.NeurocodecError, match=r"pip install 'neurocodec\[ray\]'"):
        encode_dataset(tmp_path, tmp_path / "out")
    assert main(["encode", str(tmp_path), "-o", str(tmp_path / "out"), "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'neurocodec[ray]'" in err, err
    assert not (tmp_path / "out").exists()


def test_a_rerun_encodes_only_what_is_missing(
    dataset: SimpleNamespace, shipped, capsys: pytest.CaptureFixture[str]
) -> None:
    """Last: it changes the module's output folder. The command line, after a killed run."""
    before = {i: (dataset.out / f"k{i}.ncd").stat().st_mtime_ns for i in (1, 3)}
    data = (dataset.out / "k2.ncd").read_bytes()
    (dataset.out / "k2.ncd").unlink()
    # As a killed run leaves it: k3's file written, its manifest line not, and a torn last line.
    manifest = dataset.out / MANIFEST
    lines = [line for line in manifest.read_text().splitlines() if "k3.png" not in line]
    manifest.write_text("\n".join(lines) + '\n{"input": "/tor')
    capsys.readouterr()
    args = [
        "encode",
        str(dataset.images),
        str(dataset.missing),
        "-o",
        str(dataset.out),
        *CODEC,
        "--workers",
        "2",
    ]
    assert main(args) == 1  # the two bad inputs fail again
    out, err = capsys.readouterr()
    encoded = sorted(line for line in out.splitlines() if " -> " in line)
    assert len(encoded) == 2 and "k2.png" in encoded[0] and "hyperprior quality 1" in encoded[0], out
    assert "k3.png" in encoded[1] and encoded[1].endswith("kept)"), out
    assert "2 encoded, 1 done before, 2 failed" in out
    assert err.count("neurocodec: error:") == 2, err
    assert (dataset.out / "k2.ncd").read_bytes() == data
    assert {i: (dataset.out / f"k{i}.ncd").stat().st_mtime_ns for i in (1, 3)} == before
    latest = {Path(p).name: r for p, r in read_manifest(manifest).items()}  # the torn line left out
    assert sorted(latest) == ["corrupt.png", "k1.png", "k2.png", "k3.png", "missing.png"]
    assert [latest[f"k{i}.png"]["status"] for i in (1, 2, 3)] == ["done"] * 3
    assert (latest["k2.png"]["kept"], latest["k3.png"]["kept"]) == (False, True)
