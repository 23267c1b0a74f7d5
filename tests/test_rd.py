"""Rate-distortion tools: Bjøntegaard deltas, the Pillow baselines, and `neurocodec eval`.

BD-rate is checked on cases whose answer is known by hand, against SciPy's PCHIP where SciPy
is installed, and against published BD-rates computed with the `bjontegaard` package
(`method="pchip"`) on CompressAI's Kodak curves (../shared/research/ecosystem.md).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import toy_codec
from neurocodec import cli
from neurocodec.errors import ConfigError
from neurocodec.evaluation import baselines, bd, published
from neurocodec.evaluation import rows as evaluation_rows
from neurocodec.evaluation.baselines import BASELINES, evaluate_baseline
from neurocodec.evaluation.bd import bd_psnr, bd_rate, overlap
from neurocodec.evaluation.metrics import ms_ssim, ms_ssim_db
from neurocodec.evaluation.plots import plot_rd
from neurocodec.evaluation.rows import curve_points, mean_curve, rd_row, spread
from neurocodec.evaluation.runner import RowStore

TESTS = Path(__file__).resolve().parent
KODAK = TESTS.parents[1] / "shared" / "data" / "kodak"
needs_kodak = pytest.mark.skipif(not (KODAK / "kodim23.png").exists(), reason="shared Kodak data not present")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("NEUROCODEC_")}
CLEAN_ENV["NEUROCODEC_PACKAGE_WEIGHTS"] = "0"  # only the tests' own weights (see conftest.py)

# A typical R-D curve: PSNR = 30 + 10 dB per decade of rate, around 0.1-2 bpp.
RATES = [0.1, 0.2, 0.35, 0.5, 0.8, 1.2, 2.0]
LINE = [(r, 30 + 10 * math.log10(r)) for r in RATES]

# CompressAI's published Kodak curves (results/image/kodak/*.json, as rounded in ecosystem.md).
JPEG = list(
    zip(
        [0.2212, 0.3266, 0.4231, 0.5084, 0.5879, 0.6601, 0.7289, 0.7860, 0.8497, 0.9060,
         0.9644, 1.0372, 1.1274, 1.2398, 1.3688, 1.5718, 1.8588, 2.3502, 3.4013],
        [23.78, 26.58, 28.04, 29.04, 29.78, 30.38, 30.90, 31.31, 31.70, 32.06,
         32.40, 32.79, 33.23, 33.79, 34.39, 35.24, 36.33, 37.91, 40.56],
        strict=True,
    )
)  # fmt: skip
WEBP = list(
    zip(
        [0.2344, 0.2963, 0.3529, 0.4070, 0.4608, 0.5127, 0.5674, 0.6207, 0.6747, 0.7218,
         0.7709, 0.8237, 0.8740, 0.9343, 0.9984, 1.2163, 1.5201, 2.0104, 2.9285],
        [28.33, 29.15, 29.82, 30.41, 30.94, 31.44, 31.94, 32.42, 32.88, 33.24,
         33.61, 33.97, 34.33, 34.69, 35.10, 36.37, 37.78, 39.56, 41.76],
        strict=True,
    )
)  # fmt: skip
JPEG2000 = list(
    zip(
        [2.3973, 1.1982, 0.7983, 0.5988, 0.4793, 0.3986, 0.3418, 0.2986, 0.2657, 0.2394,
         0.2176, 0.1992, 0.1844, 0.1707, 0.1595, 0.1489, 0.1408, 0.1325, 0.1258],
        [39.79, 35.68, 33.49, 32.09, 31.07, 30.30, 29.70, 29.19, 28.77, 28.42,
         28.10, 27.80, 27.55, 27.32, 27.12, 26.92, 26.76, 26.59, 26.44],
        strict=True,
    )
)  # fmt: skip
# VTM and BPG from the library's published curves: the BD-rates below check their transcription too
BPG = curve_points(published.KODAK["BPG"].curve())
VTM = curve_points(published.KODAK["VTM"].curve())


# --------------------------------------------------------------------------------------------
# Bjøntegaard deltas


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_of_identical_curves_is_zero(method: str) -> None:
    assert bd_rate(JPEG, JPEG, method) == pytest.approx(0, abs=1e-12)
    assert bd_psnr(JPEG, JPEG, method) == pytest.approx(0, abs=1e-12)
    assert bd_rate(JPEG, JPEG[::-1], method) == pytest.approx(0, abs=1e-12)  # any point order


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_rates_scaled_by_0_9_is_minus_10_percent(method: str) -> None:
    for curve in (LINE, JPEG, WEBP):
        test = [(0.9 * r, q) for r, q in curve]
        assert bd_rate(curve, test, method) == pytest.approx(-10.0, abs=1e-9)
        assert bd_rate(test, curve, method) == pytest.approx(100 / 0.9 - 100, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_half_a_db_better_on_a_straight_line(method: str) -> None:
    """PSNR linear in log-rate (10 dB a decade): +0.5 dB is 10^(-0.05) the rate, at every PSNR.

    Both interpolations reproduce a straight line exactly, so the deltas are exact too, though
    the curves overlap over only part of their range.
    """
    better = [(r, q + 0.5) for r, q in LINE]
    assert bd_psnr(LINE, better, method) == pytest.approx(0.5, abs=1e-9)
    assert bd_rate(LINE, better, method) == pytest.approx(100 * (10**-0.05 - 1), abs=1e-9)  # -10.87 %
    assert overlap(LINE, better) == pytest.approx((LINE[0][1] + 0.5, LINE[-1][1]))


def test_test_and_anchor_swapped_is_the_inverse_rate() -> None:
    forward, backward = bd_rate(JPEG, WEBP), bd_rate(WEBP, JPEG)
    assert (1 + forward / 100) * (1 + backward / 100) == pytest.approx(1, abs=1e-12)
    assert bd_psnr(JPEG, WEBP) == pytest.approx(-bd_psnr(WEBP, JPEG), abs=1e-12)


@pytest.mark.parametrize(
    ("anchor", "test", "published"),
    [
        (JPEG, WEBP, -36.2),
        (JPEG, JPEG2000, -35.9),
        (WEBP, JPEG, +56.7),
        (WEBP, JPEG2000, +6.7),
        (JPEG, BPG, -58.9),
        (BPG, VTM, -18.0),
        (JPEG, VTM, -67.6),
    ],
    ids=["webp/jpeg", "jpeg2000/jpeg", "jpeg/webp", "jpeg2000/webp", "bpg/jpeg", "vtm/bpg", "vtm/jpeg"],
)
def test_published_kodak_bd_rates(anchor, test, published: float) -> None:
    """bjontegaard 1.3.0 (pchip) on CompressAI's Kodak curves, as ecosystem.md tabulates them."""
    assert bd_rate(anchor, test) == pytest.approx(published, abs=0.1)  # inputs and outputs are rounded


def test_published_curves_are_monotone_and_compare_where_they_overlap() -> None:
    for curve in published.KODAK.values():
        assert len(curve.bpp) == len(curve.psnr) >= 4
        assert curve.ms_ssim is None or len(curve.ms_ssim) == len(curve.bpp)
        assert list(curve.bpp) == sorted(curve.bpp) and list(curve.psnr) == sorted(curve.psnr)
    vtm = published.KODAK["VTM"].curve()
    rows = {r["anchor"]: r for r in published.compare_published(vtm)}
    assert rows["VTM"]["bd_rate_percent"] == pytest.approx(0, abs=1e-9)
    assert rows["BPG"]["bd_rate_percent"] == pytest.approx(-18.0, abs=0.1)  # VTM against BPG, as published
    # a curve below MLIC++'s lowest PSNR (29.16 dB) but within its rates: BD-PSNR only
    low = [{"bpp": b, "psnr": q} for b, q in ((0.15, 26.0), (0.25, 27.0), (0.35, 27.8))]
    row = next(r for r in published.compare_published(low) if r["anchor"] == "MLIC++")
    assert row["bd_rate_percent"] is None and "do not overlap" in row["no_bd_rate"]
    assert row["quality_interval_db"] is None and row["rate_interval_bpp"] == pytest.approx((0.15, 0.35))
    assert -5 < row["bd_quality_db"] < -3
    # MS-SSIM: MLIC++ publishes none, so it is left out
    ssim = [{**p, "ms_ssim_db": p["psnr"] / 3} for p in low]
    assert "MLIC++" not in {r["anchor"] for r in published.compare_published(ssim, metric="ms-ssim")}


def test_pchip_integral_matches_scipy() -> None:
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(0)
    for n in (2, 3, 4, 7, 19):
        for _ in range(20):
            x = np.unique(rng.uniform(20, 45, n))
            y = rng.normal(size=len(x)).cumsum() if rng.random() < 0.5 else np.sort(rng.normal(size=len(x)))
            lo, hi = np.sort(rng.uniform(x[0], x[-1], 2))
            expected = interpolate.PchipInterpolator(x, y).integrate(lo, hi)
            assert bd._pchip_integral(x, y, lo, hi) == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize(
    ("anchor", "test", "method", "message"),
    [
        (LINE[:1], LINE, "pchip", "has 1 points; pchip BD needs at least 2"),
        (LINE[:3], LINE, "cubic", "has 3 points; cubic BD needs at least 4"),
        (LINE[:3], LINE[4:], "pchip", "do not overlap"),
        (LINE, [(0.1, 25.0), (0.2, 25.0), (0.4, 31.0)], "pchip", "the same PSNR"),
        (LINE, [(0.0, 25.0), (0.2, 28.0)], "pchip", "positive rate"),
        (LINE, LINE, "akima", "method must be one of"),
    ],
)
def test_bd_rate_refuses_bad_curves(anchor, test, method: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bd_rate(anchor, test, method)


def test_mean_curve() -> None:
    rows = [
        {"file": f, "setting": s, "bytes": b, "bpp": b / 10, "psnr": p, "encode_s": 1.0, "decode_s": 2.0}
        for s, f, b, p in [(10, "a", 10, 30.0), (10, "b", 30, 32.0), (20, "a", 20, 33.0), (20, "b", 40, 35.0)]
    ]
    expected = [
        {"setting": 10, "files": 2, "bytes": 20, "bpp": 2.0, "psnr": 31.0, "encode_s": 1.0, "decode_s": 2.0},
        {"setting": 20, "files": 2, "bytes": 30, "bpp": 3.0, "psnr": 34.0, "encode_s": 1.0, "decode_s": 2.0},
    ]
    assert mean_curve(rows) == expected
    assert mean_curve({10: rows[:2], 20: rows[2:]}) == expected


def test_bd_table_keeps_the_bd_rate_of_curves_apart_in_rate() -> None:
    """Curves that share a quality range but no rate range (a perceptual codec far below a waveform
    codec, as Opus against walloc-audio in ViSQOL) have a BD-rate and no BD-quality."""
    anchor = [(8.0, 2.6), (12.0, 2.9), (16.0, 4.3)]
    test = [(40.0, 2.8), (60.0, 3.2), (90.0, 3.3)]
    (entry,) = bd.bd_table({"anchor": anchor, "test": test}, ["test"], ["anchor"])
    assert entry["bd_rate_percent"] == pytest.approx(bd_rate(anchor, test)) and entry["bd_rate_percent"] > 100
    assert entry["bd_psnr_db"] is None and entry["psnr_interval_db"] == pytest.approx((2.8, 3.3))
    assert "error" not in entry


def test_bd_rate_over_ms_ssim() -> None:
    """A test codec that needs 0.9x the anchor's bytes for the same MS-SSIM, file by file, is
    -10 % over MS-SSIM; its PSNR, better at every point, does not enter that number."""
    anchor_rows, test_rows = [], []
    for setting, (bytes_, similarity) in enumerate([(1000, 0.90), (2000, 0.95), (4000, 0.98), (8000, 0.99)]):
        for file, shift in (("a", 0.0), ("b", 0.004)):
            row = {"file": file, "setting": setting, "bpp": bytes_ / 100, "psnr": 30.0 + setting}
            anchor_rows.append({**row, "ms_ssim": similarity + shift})
            test_rows.append(
                {**row, "bpp": 0.9 * bytes_ / 100, "psnr": 40.0 + setting, "ms_ssim": similarity + shift}
            )
    anchor, test = mean_curve(anchor_rows), mean_curve(test_rows)
    assert anchor[0]["ms_ssim_db"] == pytest.approx(-10 * math.log10(1 - 0.902))
    for method in ("pchip", "cubic"):
        assert bd_rate(
            curve_points(anchor, "ms-ssim"), curve_points(test, "ms-ssim"), method
        ) == pytest.approx(-10)
    assert curve_points(anchor, "psnr") == [(10.0, 30.0), (20.0, 31.0), (40.0, 32.0), (80.0, 33.0)]
    with pytest.raises(ValueError, match="metric must be one of"):
        curve_points(anchor, "ssim")


def test_ms_ssim_metric() -> None:
    """pytorch-msssim's MS-SSIM of the 8-bit output; NaN under 161 px; its dB form."""
    from pytorch_msssim import ms_ssim as reference

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 170, 180, generator=g)
    x_hat = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    value = ms_ssim(x, x_hat)
    expected = float(reference(x[None], x_hat.mul(255).round().div(255)[None], data_range=1.0))
    assert value == pytest.approx(expected, abs=1e-7) and 0.5 < value < 1
    on_grid = x.mul(255).round().div(255)
    assert ms_ssim(on_grid, on_grid) == pytest.approx(1.0, abs=1e-6)
    assert math.isnan(ms_ssim(x[:, :160], x_hat[:, :160]))
    assert ms_ssim_db(0.99) == pytest.approx(20.0) and ms_ssim_db(1.0) == math.inf
    row = rd_row("a.png", x, b"1234", x_hat, 0.1, 0.2)
    assert (
        row["ms_ssim"] == value and row["ms_ssim_db"] == ms_ssim_db(value) and row["bpp"] == 32 / (170 * 180)
    )


def test_plot_rd_writes_a_png(tmp_path: Path) -> None:
    path = plot_rd({"jpeg": JPEG, "webp": WEBP, "lossless": [(4.0, math.inf)]}, tmp_path / "rd.png", "Kodak")
    assert path.read_bytes().startswith(PNG_MAGIC)
    with Image.open(path) as im:
        assert im.size == (840, 600)


# --------------------------------------------------------------------------------------------
# Baselines


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two 128x96 crops of Kodak images, as PNG files."""
    if not (KODAK / "kodim23.png").exists():
        pytest.skip("shared Kodak data not present")
    folder = tmp_path_factory.mktemp("crops")
    paths = []
    for name, box in (("kodim01.png", (300, 200, 428, 296)), ("kodim23.png", (320, 160, 448, 256))):
        with Image.open(KODAK / name) as im:
            im.crop(box).save(folder / name)
        paths.append(folder / name)
    return paths


@needs_kodak
@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_curves_are_monotone(name: str, crops: list[Path]) -> None:
    """Over the default sweep (low to high rate) both bpp and PSNR rise, image by image."""
    rows = evaluate_baseline(name, crops)
    assert {tuple(sorted(row)) for row in rows} == {
        ("bpp", "bytes", "decode_s", "encode_s", "file", "ms_ssim", "ms_ssim_db", "psnr", "setting")
    }
    assert len(rows) == 2 * len(BASELINES[name].sweep)
    for path in crops:
        mine = [row for row in rows if row["file"] == path.name]
        assert [row["setting"] for row in mine] == list(BASELINES[name].sweep)
        for key in ("bpp", "psnr"):
            values = [row[key] for row in mine]
            assert all(a < b for a, b in itertools.pairwise(values)), (key, values)
        assert all(row["bpp"] == 8 * row["bytes"] / (96 * 128) for row in mine)


def test_baseline_functions() -> None:
    x = torch.rand(3, 40, 56, generator=torch.Generator().manual_seed(0)).mul(0.5).add(0.25)
    magic = {
        baselines.jpeg: b"\xff\xd8\xff",
        baselines.jpeg444: b"\xff\xd8\xff",
        baselines.webp: b"RIFF",
        baselines.avif: b"\x00\x00\x00",
        baselines.jpeg2000: b"\xff\x4f\xff\x51",
    }
    for function, start in magic.items():
        data, decoded = function(x, 60 if function is not baselines.jpeg2000 else 10)
        assert data.startswith(start), function.__name__
        assert decoded.shape == (3, 40, 56) and decoded.dtype == torch.float32
        assert torch.equal(decoded, decoded.mul(255).round().div(255))  # on the 8-bit grid
        assert (decoded - x).abs().mean() < 0.2
    pil = baselines.to_pil(x)
    assert baselines.jpeg(pil, 50)[0] == baselines.jpeg(x, 50)[0]  # a PIL image works the same
    assert baselines.jpeg(x[:1], 50)[1].shape == (3, 40, 56)  # grey is coded as RGB
    assert len(baselines.jpeg444(x, 50)[0]) > len(baselines.jpeg(x, 50)[0])  # no chroma subsampling


# --------------------------------------------------------------------------------------------
# neurocodec eval


def run_eval(*args: object, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "neurocodec", "eval", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def in_process(*args: object, cwd: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``neurocodec eval ARGS`` run in this process (no torch start-up): status, stdout, stderr."""
    old = Path.cwd()
    os.chdir(cwd)
    try:
        status = cli.main(["eval", *map(str, args)])
    finally:
        os.chdir(old)
    out, err = capsys.readouterr()
    return status, out, err


@needs_kodak
def test_eval_baselines_only(tmp_path: Path, crops: list[Path]) -> None:
    """As a user runs it, in a subprocess: a codec without weights, one baseline, --limit."""
    data = tmp_path / "images"
    data.mkdir()
    for path in [*crops, crops[0]]:  # three files; --limit takes the first two
        (data / f"{len(list(data.iterdir()))}-{path.name}").write_bytes(path.read_bytes())
    args = ("hyperprior", "jpeg", "--data", data, "--limit", 2, "--baselines", "jpeg", "--sweep", "jpeg=10,30,60,90")  # fmt: skip
    result = run_eval(*args, "--out", "out", env=CLEAN_ENV, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "note: hyperprior has no weights installed, so it is not evaluated" in result.stdout
    assert "evaluating the baselines only" in result.stdout
    assert result.stdout.splitlines()[-1] == "wrote out/results.json, out/rd.png and out/rd-ms-ssim.png"

    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert report["command"].startswith("neurocodec eval hyperprior jpeg --data ")
    assert report["data"]["files"] == ["0-kodim01.png", "1-kodim23.png"]
    assert {"cpu", "python", "torch", "pillow", "libjpeg_turbo", "libavif"} <= set(report["machine"])
    jpeg = report["codecs"]["jpeg"]
    assert [p["setting"] for p in jpeg["mean"]] == [10, 30, 60, 90]
    assert len(jpeg["per_file"]) == 8 and jpeg["results"]["bpp"] == [p["bpp"] for p in jpeg["mean"]]
    assert jpeg["results"]["ms-ssim-rgb"] == [None] * 4  # the crops are under 161 px
    assert report["bd_rate"] == report["bd_rate_ms_ssim"] == []  # one baseline, nothing to compare it with
    assert (tmp_path / "out" / "rd.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "out" / "rd-ms-ssim.png").read_bytes().startswith(PNG_MAGIC)


def test_eval_learned_codec_against_a_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test-only lossless codec at its two qualities against JPEG: infinite PSNR is written
    as null, its BD-rate is not available, and results are not replaced without -f."""
    weights = tmp_path / "weights"
    weights.mkdir()
    for quality in (1, 2):
        toy_codec.write_weights(weights, quality)
    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(weights))
    monkeypatch.setenv("NEUROCODEC_CODEC_MODULES", toy_codec.MODULES)
    data = tmp_path / "images"
    data.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(data / "noise.png")
    args = (toy_codec.NAME, "--data", data, "--baselines", "jpeg", "--sweep", "jpeg=50,90", "--out", "o")
    assert in_process(*args, "--quiet", cwd=tmp_path, capsys=capsys) == (0, "", "")
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    toy = report["codecs"][toy_codec.NAME]
    assert toy["kind"] == "learned" and [p["setting"] for p in toy["mean"]] == [1, 2]
    assert all(p["psnr"] is None for p in toy["mean"])
    (entry,) = report["bd_rate"]
    assert (entry["test"], entry["anchor"], entry["bd_rate_percent"]) == (toy_codec.NAME, "jpeg", None)

    # without --out: ./neurocodec-eval/<data>-<codecs> in the current directory, not the source tree
    default_args = [a for a in args if a not in ("--out", "o")]
    assert in_process(*default_args, "--quiet", cwd=tmp_path, capsys=capsys) == (0, "", "")
    assert (tmp_path / "neurocodec-eval" / f"images-{toy_codec.NAME}-jpeg" / "results.json").is_file()

    before = (tmp_path / "o" / "results.json").read_bytes()
    status, _, err = in_process(*args, cwd=tmp_path, capsys=capsys)
    assert (status, err) == (1, "neurocodec: error: o/results.json already exists (use -f to replace it)\n")
    assert (tmp_path / "o" / "results.json").read_bytes() == before


def test_eval_resumes_a_stopped_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file's rows are written as it finishes: a run stopped after one file, run again,
    measures only the others and writes the report an uninterrupted run writes; the rows of
    another evaluation are refused."""
    weights = tmp_path / "weights"
    weights.mkdir()
    for quality in (1, 2):
        toy_codec.write_weights(weights, quality)
    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(weights))
    monkeypatch.setenv("NEUROCODEC_CODEC_MODULES", toy_codec.MODULES)
    data = tmp_path / "images"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(data / f"{i}.png")
    ticks = itertools.count()  # every encode and decode takes 1 s: times equal from run to run
    clock = SimpleNamespace(perf_counter=lambda: float(next(ticks)))
    monkeypatch.setattr(evaluation_rows, "time", clock)
    monkeypatch.setattr(baselines, "time", clock)
    measured: list[str] = []
    evaluate_images = evaluation_rows.evaluate_images
    stop_at = None

    def counted(codec, paths, **options):
        measured.append(f"q{codec.quality} {paths[0].name}")
        if len(measured) == stop_at:
            raise KeyboardInterrupt
        return evaluate_images(codec, paths, **options)

    monkeypatch.setattr(evaluation_rows, "evaluate_images", counted)
    args = (toy_codec.NAME, "--data", data, "--baselines", "jpeg", "--sweep", "jpeg=50,90", "--quiet")
    assert in_process(*args, "--out", "whole", cwd=tmp_path, capsys=capsys) == (0, "", "")
    assert len(measured) == 6  # 2 qualities x 3 files

    measured.clear()
    stop_at = 2
    status, _, err = in_process(*args, "--out", "part", cwd=tmp_path, capsys=capsys)
    assert (status, err) == (130, "neurocodec: interrupted\n")
    assert not (tmp_path / "part" / "results.json").exists()
    rows_file = tmp_path / "part" / "rows.jsonl"
    assert len(rows_file.read_text().splitlines()) == 2  # what it knows, one file
    with rows_file.open("a") as f:
        f.write('{"unit": "[\\"test-lossl')  # a line cut short as the run was killed
    measured.clear()
    stop_at = None
    assert in_process(*args, "--out", "part", cwd=tmp_path, capsys=capsys) == (0, "", "")
    assert measured == ["q1 1.png", "q1 2.png", "q2 0.png", "q2 1.png", "q2 2.png"]  # not q1 0.png again

    whole, part = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("whole", "part"))
    for report in (whole, part):
        del report["date"], report["command"]
    assert part == whole
    assert (
        len(part["codecs"][toy_codec.NAME]["per_file"]) == 6 and len(part["codecs"]["jpeg"]["per_file"]) == 6
    )

    for written in ("results.json", "rd.png", "rd-ms-ssim.png"):
        (tmp_path / "part" / written).unlink()
    other = tmp_path / "other"
    other.mkdir()
    (other / "0.png").write_bytes((data / "0.png").read_bytes())
    status, _, err = in_process(toy_codec.NAME, "--data", other, "--out", "part", cwd=tmp_path, capsys=capsys)
    assert status == 1 and "part/rows.jsonl holds the rows of another evaluation" in err
    assert "use -f to start over" in err


def test_row_store_reads_back_what_it_wrote(tmp_path: Path) -> None:
    """Rows come back exactly (infinite PSNR included); a damaged file is refused, not misread."""
    path, header = tmp_path / "rows.jsonl", {"media": "image", "effort": 0}
    RowStore(path, header).add("unit a", [{"setting": 1, "bpp": 0.1 + 0.2, "psnr": math.inf}])
    assert RowStore(path, header).get("unit a") == [{"setting": 1, "bpp": 0.1 + 0.2, "psnr": math.inf}]
    with pytest.raises(ConfigError, match="holds the rows of another evaluation"):
        RowStore(path, {**header, "effort": 5})
    with path.open("a") as f:
        f.write("not json\n")
    with pytest.raises(ConfigError, match="damaged at line 3; use -f to start over"):
        RowStore(path, header)
    assert RowStore(path, header, restart=True).get("unit a") is None
    assert RowStore(path, header).units == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuch", "--data", "."), "unknown codec 'nosuch'"),
        (("jpeg", "--data", ".", "--baselines", "gif"), "--baselines: unknown baseline 'gif'"),
        (("jpeg", "--data", "."), "--data: no images under ."),
        (("jpeg", "--data", ".", "--sweep", "gif=1"), "--sweep gif=1: unknown baseline 'gif'"),
        (("hyperprior", "--data", ".", "--limit", "0"), "--limit must be at least 1"),
        (("jpeg", "--data", ".", "--effort", "-1"), "--effort must be 0 or more"),
        (("jpeg",), "the following arguments are required: --data"),
    ],
)
def test_eval_usage_errors(
    tmp_path: Path, args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = in_process(*args, cwd=tmp_path, capsys=capsys)
    assert status == 2
    assert message in err.splitlines()[-1]
    assert "Traceback" not in err


def test_eval_effort(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    crops: list[Path],
    shipped,
) -> None:
    """--effort reaches the learned codec's encoder and the report; a codec without adaptation
    is refused before anything runs or is written."""
    args = ("--data", crops[1], "--baselines", "jpeg", "--sweep", "jpeg=50,90", "--qualities", "1", "--quiet")
    assert in_process("walloc-image", *args, "--effort", "5", "--out", "e5", cwd=tmp_path, capsys=capsys) == (
        0,
        "",
        "",
    )
    assert in_process("walloc-image", *args, "--out", "e0", cwd=tmp_path, capsys=capsys) == (0, "", "")
    adapted, plain = (json.loads((tmp_path / d / "results.json").read_text())["codecs"]["walloc-image"] for d in ("e5", "e0"))  # fmt: skip
    assert (adapted["effort"], plain["effort"]) == (5, 0) and adapted["description"].endswith(", effort 5")
    assert adapted["per_file"][0]["bytes"] != plain["per_file"][0]["bytes"]

    weights = tmp_path / "weights"
    weights.mkdir()
    toy_codec.write_weights(weights, 1)
    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(weights))
    monkeypatch.setenv("NEUROCODEC_CODEC_MODULES", toy_codec.MODULES)
    status, _, err = in_process(
        toy_codec.NAME, *args, "--effort", "2", "--out", "toy", cwd=tmp_path, capsys=capsys
    )
    assert status == 2 and "--effort:" in err and "no encoder-side adaptation" in err
    assert not (tmp_path / "toy").exists()


def test_spread_keeps_the_ends() -> None:
    sweep = (5, 10, 15, 20, 30, 40, 50)
    assert spread(sweep, 2) == (5, 50) and spread(sweep, 3) == (5, 20, 50)
    assert spread(sweep, None) == spread(sweep, 9) == sweep
    with pytest.raises(ValueError, match="at least 2"):
        spread(sweep, 1)


def test_evaluation_names_resolve_lazily() -> None:
    """Each name of neurocodec.evaluation comes from the module that defines it, imported on
    first use: the BD-rate without torch or the media libraries."""
    import importlib

    import neurocodec.evaluation as evaluation

    for name in evaluation.__all__:
        home = importlib.import_module(f"neurocodec.evaluation.{evaluation._HOME[name]}")
        assert name in home.__all__ and getattr(evaluation, name) is getattr(home, name)
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        evaluation.nosuch  # noqa: B018
    code = "import sys; from neurocodec.evaluation import bd_rate; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "False", result.stderr
