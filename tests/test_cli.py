"""The neurocodec command line, run in a subprocess as a user runs it: exit codes, messages, files.

The codec is the test-only lossless one of toy_codec.py, made known through the registry's
developer hooks. Commands that fail before coding (existing outputs, damaged files, info,
list without codecs) do not import torch, so most of these runs are fast.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tomllib
import torch
from PIL import Image

import neurocodec as nc
import toy_codec

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
ERROR = "neurocodec: error: "
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("NEUROCODEC_")}
CLEAN_ENV["NEUROCODEC_PACKAGE_WEIGHTS"] = "0"  # only the tests' own weights (see conftest.py)


def run(*args: object, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "neurocodec", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed run prints: no traceback, nothing else."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(ERROR)
    return line


def write_png(path: Path, height: int = 37, width: int = 53, seed: int = 0) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    weights = tmp_path_factory.mktemp("weights")
    for quality in (1, 2):
        toy_codec.write_weights(weights, quality)
    python_path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {
        **CLEAN_ENV,
        "PYTHONPATH": python_path,
        "NEUROCODEC_WEIGHTS_PATH": str(weights),
        "NEUROCODEC_CODEC_MODULES": toy_codec.MODULES,
    }


@pytest.fixture
def files(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """photo.png and photo.ncd (encoded in this process, with the same codec as the CLI's)."""
    for key in ("NEUROCODEC_WEIGHTS_PATH", "NEUROCODEC_CODEC_MODULES"):
        monkeypatch.setenv(key, env[key])
    png = tmp_path / "photo.png"
    pixels = write_png(png)
    ncd = tmp_path / "photo.ncd"
    ncd.write_bytes(nc.encode(torch.from_numpy(pixels).permute(2, 0, 1) / 255, codec=toy_codec.NAME))
    return SimpleNamespace(dir=tmp_path, png=png, ncd=ncd, pixels=pixels)


def test_encode_then_decode_gives_identical_pixels(tmp_path: Path, env: dict[str, str]) -> None:
    pixels = write_png(tmp_path / "photo.png")
    encoded = run("encode", "photo.png", "--codec", toy_codec.NAME, "--metrics", env=env, cwd=tmp_path)
    assert (encoded.returncode, encoded.stderr) == (0, "")
    size = (tmp_path / "photo.ncd").stat().st_size
    line = rf"photo\.png -> photo\.ncd: {toy_codec.NAME} quality 1, {size} B, {8 * size / (37 * 53):.4f} bpp, \d+\.\d\d s, PSNR inf dB \(lossless\)"
    assert re.fullmatch(line, encoded.stdout.strip())

    decoded = run("decode", "photo.ncd", "-o", "back.png", env=env, cwd=tmp_path)
    assert (decoded.returncode, decoded.stderr) == (0, "")
    assert re.fullmatch(
        r"photo\.ncd -> back\.png: 53x37, 3 channels, 8-bit, \d+\.\d\d s", decoded.stdout.strip()
    )
    assert np.array_equal(np.asarray(Image.open(tmp_path / "back.png")), pixels)


def test_round_trip_without_names_never_meets_its_source(tmp_path: Path, env: dict[str, str]) -> None:
    """encode x.png then decode x.ncd writes x.decoded.png beside them, and -o DIR writes DIR/x.png."""
    pixels = write_png(tmp_path / "photo.png")
    assert run("encode", "photo.png", "-c", toy_codec.NAME, env=env, cwd=tmp_path).returncode == 0
    decoded = run("decode", "photo.ncd", env=env, cwd=tmp_path)
    assert (decoded.returncode, decoded.stderr) == (0, "")
    assert decoded.stdout.startswith("photo.ncd -> photo.decoded.png: ")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "photo.decoded.png")), pixels)
    (tmp_path / "out").mkdir()
    assert run("decode", "photo.ncd", "-o", "out", env=env, cwd=tmp_path).returncode == 0
    assert (tmp_path / "out" / "photo.png").is_file()
    assert "x.decoded.png" in run("decode", "--help", env=env, cwd=tmp_path).stdout


def test_never_overwrites_without_force(files: SimpleNamespace, env: dict[str, str]) -> None:
    files.ncd.write_bytes(b"an older file")
    line = one_error_line(run("encode", files.png, env=env, cwd=files.dir))
    assert line == f"{ERROR}{files.png}: {files.ncd} already exists (use -f to replace it)"
    assert files.ncd.read_bytes() == b"an older file"

    forced = run("encode", files.png, "-f", "--quiet", env=env, cwd=files.dir)
    assert (forced.returncode, forced.stdout, forced.stderr) == (0, "", "")
    assert files.ncd.read_bytes().startswith(b"\x89NC")
    assert sorted(p.name for p in files.dir.iterdir()) == ["photo.ncd", "photo.png"]


def _newer_version(data: bytes) -> bytes:
    body = data[:3] + b"\x02" + data[4:-4]
    return body + zlib.crc32(body).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[:40] + bytes([d[40] ^ 0x01]) + d[41:], "checksum mismatch: the file is corrupt"),
        (lambda d: d[: len(d) // 2], "checksum mismatch"),
        (lambda d: d[:10], "truncated neurocodec file (10 bytes)"),
        (lambda d: b"RIFF" + d[4:], "not a neurocodec file (wrong magic bytes)"),
        (_newer_version, "format version 2 is not supported (this neurocodec reads version 1; upgrade"),
        (None, "not a neurocodec file"),
    ],
    ids=["corrupt", "truncated", "truncated-header", "wrong-magic", "newer-version", "png"],
)
def test_damaged_files_fail_with_one_line(
    files: SimpleNamespace, env: dict[str, str], damage, message: str
) -> None:
    bad = files.png if damage is None else files.dir / "bad.ncd"
    if damage is not None:
        bad.write_bytes(damage(files.ncd.read_bytes()))
    before = sorted(files.dir.iterdir())
    line = one_error_line(run("decode", bad, "-o", "out.png", env=env, cwd=files.dir))
    assert line.startswith(f"{ERROR}{bad}: ")
    assert message in line
    assert sorted(files.dir.iterdir()) == before


def test_verbose_shows_the_traceback(files: SimpleNamespace, env: dict[str, str]) -> None:
    files.ncd.write_bytes(files.ncd.read_bytes()[:-1])
    result = run("decode", files.ncd, "-o", "out.png", "--verbose", env=env, cwd=files.dir)
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "ChecksumError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"{ERROR}{files.ncd}: neurocodec file checksum mismatch")


def test_unwritable_output_leaves_nothing(files: SimpleNamespace, env: dict[str, str]) -> None:
    blocker = files.dir / "a-file"
    blocker.write_text("not a directory")
    before = sorted(files.dir.iterdir())
    for command, src in (("decode", files.ncd), ("encode", files.png)):
        line = one_error_line(run(command, src, "-o", blocker / "out.x", "-f", env=env, cwd=files.dir))
        assert f"cannot write {blocker / 'out.x'}: no such directory {blocker}" in line
    assert sorted(files.dir.iterdir()) == before


def test_several_inputs_with_a_glob(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "shots").mkdir()
    (tmp_path / "out").mkdir()
    for i in range(3):
        write_png(tmp_path / "shots" / f"s{i}.png", 20 + i, 30, seed=i)
    result = run(
        "encode", "shots/*.png", "missing.png", "-o", "out", "-c", toy_codec.NAME, env=env, cwd=tmp_path
    )
    assert result.returncode == 1
    assert [line.split(" -> ")[0] for line in result.stdout.splitlines()] == [
        f"shots/s{i}.png" for i in range(3)
    ]
    errors = [line for line in result.stderr.splitlines() if line.startswith("neurocodec: ")]
    assert errors == [
        f"{ERROR}cannot read missing.png: No such file or directory",
        "neurocodec: 1 of 4 inputs failed",
    ]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["s0.ncd", "s1.ncd", "s2.ncd"]


def test_info_needs_no_codec(files: SimpleNamespace) -> None:
    result = run("info", files.ncd, env=CLEAN_ENV, cwd=files.dir)
    assert (result.returncode, result.stderr) == (0, "")
    data = files.ncd.read_bytes()
    payload = len(nc.container.unpack(data)[1]["px"])
    lines = result.stdout.splitlines()
    assert lines[0] == f"{files.ncd}: neurocodec file, format 1"
    assert re.fullmatch(r"  codec +test-lossless, quality 1, weights [0-9a-f]{8}", lines[1])
    assert re.fullmatch(r"  image +53x37, 3 channels, 8-bit", lines[2])
    assert re.fullmatch(rf"  sections +px {payload} B", lines[3])
    assert re.fullmatch(rf"  size +{len(data)} B, of which {len(data) - payload} B container", lines[4])
    assert re.fullmatch(rf"  rate +{8 * len(data) / (37 * 53):.4f} bpp", lines[5])


def test_list(tmp_path: Path, env: dict[str, str]) -> None:
    empty = run("list", env=CLEAN_ENV, cwd=tmp_path)
    assert (empty.returncode, empty.stderr) == (0, "")
    assert "No codec is installed with weights yet" in empty.stdout

    listed = run("list", env=env, cwd=tmp_path)
    assert (listed.returncode, listed.stderr) == (0, "")
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[1][:3] == [toy_codec.NAME, "image", "1*"]
    assert rows[2][:1] == ["2"]
    assert "6.000 bpp 99.00 dB" in listed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: COMMAND"),
        (("bench", "--data", "."), "the following arguments are required: CODEC"),
        (("eval", "jpeg"), "the following arguments are required: --data"),
        (
            ("encode", "a.png", "b.png", "-o", "x.ncd"),
            "with several inputs, -o must be an existing directory",
        ),
        (
            ("encode", "a.png", "--codec", "nosuch"),
            "unknown codec 'nosuch' (no codec is installed with weights yet)",
        ),
        (("encode", "a.png", "-q", "high"), "invalid int value: 'high'"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    (tmp_path / "a.png").touch()
    result = run(*args, env=CLEAN_ENV, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_help_and_entry_points(tmp_path: Path) -> None:
    result = run("--help", env=CLEAN_ENV, cwd=tmp_path)
    assert result.returncode == 0
    for command in ("encode", "decode", "info", "list", "train", "export", "eval", "latents", "bench"):
        assert f"    {command} " in result.stdout
    assert "later release" not in result.stdout
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"neurocodec": "neurocodec.cli:main"}


def test_each_command_is_a_small_module(files: SimpleNamespace) -> None:
    """One module per command, its parser beside its code, no function over 80 lines; info
    imports neither torch nor the measuring part of the evaluation."""
    from neurocodec import cli

    names = [command.__name__.rsplit(".", 1)[1] for command in cli.COMMANDS]
    assert names == ["encode", "decode", "info", "listing", "evaluate", "train", "export", "latents", "bench"]
    for module in (*cli.COMMANDS, cli, cli.common):
        tree = ast.parse(Path(module.__file__).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno < 80, f"{module.__name__}.{node.name}"
    for command in cli.COMMANDS:
        assert callable(command.add_parser) and callable(command.run), command.__name__

    code = (
        "import sys; from neurocodec.cli import main; status = main(['info', sys.argv[1]]); "
        "heavy = ('torch', 'neurocodec.evaluation.rows', 'neurocodec.evaluation.baselines'); "
        "print(status, [m for m in heavy if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(files.ncd)],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        timeout=300,
    )
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr


def test_train_then_export_then_encode(tmp_path: Path, env: dict[str, str]) -> None:
    """`neurocodec train` and `export` produce weights that `encode`/`decode` then use."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        write_png(data / f"im{i}.png", 72, 80, seed=i)
    trained = run(
        "train", "hyperprior", "--data", data, "--out", "run", "--lmbda", "0.01", "--steps", "2",
        "--arch", "N=8,M=12", "--crop", "64", "--batch-size", "2", "--quiet", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    exported = run("export", "run", "-q", "2", "--out-dir", "w", "--kodak", data, env=env, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    env = {**env, "NEUROCODEC_WEIGHTS_PATH": str(tmp_path / "w")}
    write_png(tmp_path / "photo.png", 40, 50)
    assert run("encode", "photo.png", "--codec", "hyperprior", env=env, cwd=tmp_path).returncode == 0
    assert run("decode", "photo.ncd", "-o", "back.png", env=env, cwd=tmp_path).returncode == 0
    assert Image.open(tmp_path / "back.png").size == (50, 40)
    missing = run("export", "nowhere", "-q", "2", env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr and "Traceback" not in missing.stderr


def test_audio_encode_then_decode(tmp_path: Path, env: dict[str, str]) -> None:
    """Audio inputs go to the default audio codec; a decoded audio file is written as .wav."""
    import soundfile as sf

    from neurocodec.codecs.walloc import WaLLoCAudioCodec
    from test_walloc import write_weights

    weights = tmp_path / "weights"
    weights.mkdir()
    write_weights(weights, WaLLoCAudioCodec, 1, levels=4, latent_dim=8)
    env = {**env, "NEUROCODEC_WEIGHTS_PATH": str(weights)}
    (tmp_path / "in").mkdir()
    wav = tmp_path / "in" / "clip.wav"
    t = np.arange(3001) / 32000
    sf.write(wav, 0.4 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], 1), 32000)

    result = run("encode", wav, "-o", tmp_path / "clip.ncd", "--metrics", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "kbit/s" in result.stdout and "SNR" in result.stdout
    info = run("info", tmp_path / "clip.ncd", env=env, cwd=tmp_path)
    assert "walloc-audio" in info.stdout and "3001 samples at 32000 Hz" in info.stdout

    result = run("decode", tmp_path / "clip.ncd", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    audio, rate = sf.read(tmp_path / "clip.decoded.wav")
    assert rate == 32000 and audio.shape == (3001, 2)

    png = tmp_path / "photo.png"
    write_png(png)
    wrong = run("encode", png, "--codec", "walloc-audio", env=env, cwd=tmp_path)
    assert "codes audio, not image" in one_error_line(wrong)
    assert not (tmp_path / "photo.ncd").exists()


def test_decode_max_samples(files: SimpleNamespace, env: dict[str, str]) -> None:
    """--max-samples refuses a file holding more samples before decoding it (37x53x3 = 5883 here)."""
    line = one_error_line(
        run("decode", files.ncd, "-o", "refused.png", "--max-samples", 5882, env=env, cwd=files.dir)
    )
    assert line.startswith(f"{ERROR}{files.ncd}: refused: this file holds an image of 53x37x3 = 5883 samples")
    assert sorted(p.name for p in files.dir.iterdir()) == ["photo.ncd", "photo.png"]
    for limit in (5883, 0):  # 0: no limit
        done = run(
            "decode", files.ncd, "-o", f"back{limit}.png", "--max-samples", limit, env=env, cwd=files.dir
        )
        assert (done.returncode, done.stderr) == (0, "")
    bad = run("decode", files.ncd, "--max-samples", -1, env=env, cwd=files.dir)
    assert bad.returncode == 2 and "a whole number of samples >= 0" in bad.stderr


def test_decode_max_video_samples(tmp_path: Path, env: dict[str, str]) -> None:
    """--max-video-samples refuses a video whose frames hold more samples in all, before the codec
    it names is even loaded (none is installed by that name here); nothing is written."""
    from neurocodec.container import Header, VideoGeometry, pack

    video = tmp_path / "clip.ncd"
    video.write_bytes(
        pack(Header("no-such-video-codec", 1, bytes(4), VideoGeometry(10, 25, 1, 16, 16, 3, 8)), {})
    )
    line = one_error_line(run("decode", video, "--max-video-samples", 7679, env=env, cwd=tmp_path))
    assert "refused: this file holds a video of 10 frames x 768 samples = 7680 samples" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.ncd"]
    allowed = run("decode", video, "--max-video-samples", 7680, env=env, cwd=tmp_path)
    assert "refused" not in allowed.stderr and "no-such-video-codec" in allowed.stderr  # past the limit check
