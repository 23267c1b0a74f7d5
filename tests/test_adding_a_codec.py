"""docs/adding-a-codec.md, proven: a codec family added by writing one module, and nothing else.

The module is tests/toy_codec.py (its network, its codec, its declaration), copied into a folder
of its own beside the entry point an installed package would declare
(``[project.entry-points."neurocodec.codecs"]``); neither the package nor the environment names
it. In fresh processes, as a user would, the command line and the Python API then list it, train
it, export weights from the run, encode and decode with them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import toy_codec
from test_trainer import make_images

TESTS = Path(__file__).resolve().parent


def plugin(site: Path) -> Path:
    """``site``, holding the family's module and the metadata ``pip install`` would write for it."""
    site.mkdir()
    shutil.copy(TESTS / "toy_codec.py", site / "toy_codec.py")
    info = site / "toy_codec-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-codec\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[neurocodec.codecs]\n{toy_codec.NAME} = toy_codec\n")
    return site


def test_a_family_added_by_one_module(tmp_path: Path) -> None:
    site = plugin(tmp_path / "site")
    weights = tmp_path / "weights"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROCODEC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env |= {"NEUROCODEC_PACKAGE_WEIGHTS": "0", "NEUROCODEC_WEIGHTS_PATH": str(weights)}

    def run(*args: str) -> str:
        done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def neurocodec(*args: str) -> str:
        return run(sys.executable, "-m", "neurocodec", *args)

    data = make_images(tmp_path / "images", count=2, size=(40, 36))
    neurocodec("train", toy_codec.NAME, "--data", str(data), "--out", "run", "--lmbda", "0.01",
               "--steps", "3", "--crop", "32", "--batch-size", "2", "--lr", "0.1", "--quiet")  # fmt: skip
    neurocodec("export", "run", "-q", "3", "--out-dir", str(weights))
    listed = neurocodec("list").splitlines()
    assert listed[1].split()[:3] == [toy_codec.NAME, "image", "3*"]

    neurocodec("encode", str(data / "im0.png"), "--codec", toy_codec.NAME, "-o", "a.ncd")
    neurocodec("decode", "a.ncd", "-o", "a.png")
    original = np.asarray(Image.open(data / "im0.png"))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), original)  # lossless

    api = """
import sys, torch
import neurocodec as nc
from neurocodec.io.image import read_image
name, first, second = sys.argv[1:]
assert name in [f.name for f in nc.families()]
assert nc.default_codec("image") == name  # the only image codec installed
x = read_image(second)[0]
assert torch.equal(nc.decode(nc.encode(x)), x)
with open("a.ncd", "rb") as f:
    assert torch.equal(nc.decode(f.read()), read_image(first)[0])  # the CLI's file
codec = nc.load(name)
card = nc.codec_info(name).weights[0]
print(codec.quality, card.model_card["steps"], float(codec.model.log_scale.detach().exp()))
"""
    quality, steps, scale = run(
        sys.executable, "-c", api, toy_codec.NAME, *(str(data / f"im{i}.png") for i in (0, 1))
    ).split()
    assert (quality, steps) == ("3", "3")
    assert float(scale) != 4.0  # the trained table, not the initial one
