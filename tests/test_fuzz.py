"""The fuzz targets (tests/fuzz_targets.py) in the default suite: each over its seeds (real files of
every codec), a few hundred deterministic mutations of them, and every crasher found so far
(tests/fuzz_crashers/<target>/, one file per finding: a regression test). A target passes an
input when it decodes it or raises a NeurocodecError, and its oracles hold. Plus a seconds-long
coverage-guided run of eval/fuzz.py, skipped when atheris is not installed."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fuzz_targets
import neurocodec as nc
from fuzz_targets import TARGETS, seeds
from neurocodec import container
from neurocodec.container import AudioGeometry, ImageGeometry
from neurocodec.errors import ContainerError

ROOT = Path(__file__).resolve().parent.parent
CRASHERS = Path(__file__).resolve().parent / "fuzz_crashers"
sys.path.insert(0, str(ROOT / "eval"))
from corrupt_files import KINDS, corrupt  # noqa: E402


def inputs(target: str, mutations: int) -> list[bytes]:
    """The seeds of ``target``, ``mutations`` corrupted variants of them, and its crashers."""
    base = seeds(target)
    rng = np.random.default_rng(0)
    mutated = [
        corrupt(base[i % len(base)], KINDS[i % len(KINDS)], rng)
        for i in range(mutations)
        if base[i % len(base)]
    ]
    found = sorted((CRASHERS / target).glob("*"))  # none yet: see tests/fuzz_crashers/README.md
    return base + mutated + [p.read_bytes() for p in found]


def run_all(target: str, mutations: int) -> None:
    for i, data in enumerate(inputs(target, mutations)):
        try:
            TARGETS[target](data)
        except Exception as e:
            raise AssertionError(
                f"target {target}, input {i} ({data[:32].hex()}...): {type(e).__name__}: {e}"
            ) from e


def test_container_target_on_seeds_mutations_and_crashers():
    run_all("container", 3000)


def test_coder_targets_on_seeds_mutations_and_crashers():
    run_all("coder", 2000)
    run_all("reference", 300)


@pytest.mark.usefixtures("shipped")
@pytest.mark.parametrize("codec", fuzz_targets.CODECS)
def test_codec_target_on_seeds_mutations_and_crashers(codec: str):
    assert seeds(codec), f"no seed files of {codec} in tests/corpus"
    run_all(codec, 24)


@pytest.mark.usefixtures("shipped")
@pytest.mark.parametrize(
    "target",
    [
        "c3",
        "nirvana",
        "recombiner-image",
        "recombiner-audio",
        "recombiner-speech",
        "s2lic",
        "vqgan",
        "video-vae",
        "video-vae-temporal",
    ],
)
def test_unreleased_codec_target_on_its_seeds_mutations_and_crashers(target: str):
    """The codecs with no released files yet, on files made from their seeds."""
    run_all(target, 200)


@pytest.mark.usefixtures("shipped")
@pytest.mark.parametrize(
    ("codec", "geometry", "holds"),
    [
        (
            "walloc-image",
            AudioGeometry(44100, 2, 4410),
            "2-channel audio",
        ),  # the first finding: an AttributeError
        ("walloc-audio", ImageGeometry(50, 70, 3, 8), "3-channel image"),
        ("hyperprior", ImageGeometry(50, 70, 1, 8), "1-channel image"),  # decoded, silently cropped
        ("walloc-audio", AudioGeometry(44100, 1, 4410), "1-channel audio"),
    ],
)
def test_a_header_the_codec_never_writes_is_refused(codec, geometry, holds):
    file = fuzz_targets.with_crc(seeds(codec)[0])
    header, sections = container.unpack(file)
    bad = container.pack(dataclasses.replace(header, geometry=geometry), sections)
    with pytest.raises(ContainerError, match=f"{codec} codes .* but the file holds {holds}"):
        nc.decode(bad)


def test_the_oracles_can_fail(monkeypatch: pytest.MonkeyPatch):
    """A reference decoder that answers differently from the C++ coder is a finding."""
    from neurocodec.entropy import reference

    decode = reference.decode
    monkeypatch.setattr(reference, "decode", lambda *a: decode(*a) + 1)
    with pytest.raises(fuzz_targets.Finding, match="disagree"):
        fuzz_targets.reference_target(seeds("reference")[2])


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None, reason="atheris not installed (pip install atheris==3.0.0)"
)
def test_coverage_guided_smoke_run(tmp_path: Path):
    out = tmp_path / "fuzz.json"
    cmd = [
        sys.executable,
        str(ROOT / "eval" / "fuzz.py"),
        "--targets",
        "container,coder",
        "--runs",
        "3000",
        "--seconds",
        "20",
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    for result in report["targets"]:
        assert result["executions"] == 3000 and result["findings"] == []
        assert result["cov_end"]["ft"] >= result["cov_start"]["ft"] > 0
