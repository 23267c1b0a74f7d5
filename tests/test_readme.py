"""The README runs as written (issue 33): each of its ```bash blocks is run command by command
through the CLI, and each ```python block with exec, in a fresh namespace, in a temporary
directory that looks like a checkout: ``../shared/data`` beside it holds a small copy of the shared
media (a Kodak crop, 1.5 s of music and 3 s of speech, the smallest video clip), and the
current directory holds the files the README's examples name (photo.png, song.flac, ...).

A command that cannot run in a test (it installs packages, runs this suite, or trains for hours) is
in :data:`NOT_RUN` with the reason; every entry there must still match a README command, so the list
cannot go stale."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED = ROOT.parent / "shared" / "data"
KODAK = SHARED / "kodak"
MUSIC = SHARED / "audio" / "music" / "music_vibe_ace_kevin_macleod_000-030s.wav"
SPEECH = SHARED / "audio" / "speech" / "jfk_inaugural_16k.wav"
VIDEO = SHARED / "video" / "CiscoVT2people_320x192_12fps_i420_9f.yuv"

# command prefixes (after "$ " and leading whitespace) that the test does not run, and why
NOT_RUN = {
    "pip install": "installs packages (CI runs the install itself)",
    "python -m pytest": "this test suite",
    "python eval/bench_entropy.py": "needs CompressAI, which the bench route installs without its pins",
    "python notebooks/run.py": "executes the notebooks (tests/test_notebooks.py does)",
    "neurocodec train": "trains for hours (tests/test_cli.py trains and exports a tiny model)",
    "neurocodec export runs/": "needs the checkpoint of the training command above",
}

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[tuple[int, str]]:
    """The README's fenced blocks in ``language``: (line number, text)."""
    text = README.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1) in ((language, "sh", "shell", "console") if language == "bash" else (language,))
    ]


def commands(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments, prompts and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", block)
    out = []
    for line in joined.splitlines():
        line = line.strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        if words:
            out.append(shlex.join(words))
    return out


def reason_not_run(command: str) -> str | None:
    return next((why for prefix, why in NOT_RUN.items() if command.startswith(prefix)), None)


def _all_commands() -> list[str]:
    return [c for _, block in blocks("bash") for c in commands(block)]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary checkout-like folder with the README's example inputs and ../shared/data beside it."""
    if not (KODAK / "kodim23.png").is_file() or not MUSIC.is_file():
        pytest.skip("needs the shared Kodak and music data")
    import soundfile as sf

    from neurocodec.io.image import read_image, write_image

    top = tmp_path_factory.mktemp("readme")
    data = top / "shared" / "data"
    for folder in ("kodak", "train", "audio/music", "audio/speech", "video"):
        (data / folder).mkdir(parents=True)
    crop = read_image(KODAK / "kodim05.png")[0][:, :176, :240].contiguous()  # MS-SSIM needs 161+
    write_image(data / "kodak" / "kodim05.png", crop)
    write_image(data / "train" / "kodim05.png", crop)
    music, rate = sf.read(MUSIC, frames=66150, dtype="int16")  # 1.5 s: ViSQOL needs about 1 s
    sf.write(data / "audio" / "music" / "music.wav", music, rate)
    if SPEECH.is_file():
        speech, rate = sf.read(SPEECH, frames=3 * 16000, dtype="int16")
        sf.write(data / "audio" / "speech" / "speech.wav", speech, rate)
    if VIDEO.is_file():
        (data / "video" / VIDEO.name).symlink_to(VIDEO)
    work = top / "neurocodec"
    work.mkdir()
    write_image(work / "photo.png", read_image(KODAK / "kodim23.png")[0][:, :128, :192].contiguous())
    sf.write(work / "song.flac", music, 44100)
    sf.write(work / "song.wav", music, 44100)
    if VIDEO.is_file():  # clip.y4m: 8 frames of the smallest clip, cropped to 96x64 (a quick fit)
        from neurocodec.io.video import read_video, write_y4m

        y, u, v = read_video(VIDEO, rgb=False, max_frames=8)[0]
        write_y4m(work / "clip.y4m", (y[:, :64, :96], u[:, :32, :48], v[:, :32, :48]), 12)
    bin_dir = top / "bin"  # `neurocodec` as the editable install provides it, for this interpreter
    bin_dir.mkdir()
    script = bin_dir / "neurocodec"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m neurocodec "$@"\n')
    script.chmod(0o755)
    return work


def test_not_run_list_matches_the_readme() -> None:
    every = _all_commands()
    stale = [prefix for prefix in NOT_RUN if not any(c.startswith(prefix) for c in every)]
    assert not stale, f"no README command starts with {stale}: update NOT_RUN"


@pytest.mark.parametrize(
    ("line", "block"), blocks("bash"), ids=lambda v: f"line{v}" if isinstance(v, int) else "block"
)
@pytest.mark.usefixtures("shipped")
def test_bash_block_runs(line: int, block: str, checkout: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{checkout.parent / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",  # the machine is shared: one thread each, as the other tests take
    }
    env.pop("TRITON_INTERPRET", None)  # conftest's, for in-process GPU-kernel tests only
    failures = []
    for command in commands(block):
        if reason_not_run(command):
            continue
        start = time.perf_counter()
        done = subprocess.run(
            ["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True, timeout=600
        )
        print(f"{time.perf_counter() - start:6.1f} s  {command}")  # shown with -s: where the time goes
        if done.returncode != 0 or "Traceback" in done.stderr:
            failures.append(
                f"README line {line}: `{command}` exited {done.returncode}:\n{done.stderr[-2000:]}"
            )
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize(
    ("line", "block"), blocks("python"), ids=lambda v: f"line{v}" if isinstance(v, int) else "block"
)
@pytest.mark.usefixtures("shipped")
def test_python_block_runs(line: int, block: str, checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(checkout)
    exec(compile(block, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
