"""Files are a promise: every file a release wrote decodes to the output that release decoded.

``tests/corpus/<release>/`` holds, per shipped codec and quality, a file written by that release
and its decoded output (``make_corpus.py`` wrote them). Every symbol a decoder reads is selected by
integer arithmetic, so a changed decoder shows as a different reconstruction; the float
synthesis may differ in its last bits between CPUs, hence the tolerance, far below one 8-bit
step (1/255) and far below what one wrongly decoded symbol changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import neurocodec as nc
from neurocodec.container import peek_header

CORPUS = Path(__file__).resolve().parent / "corpus"
TOLERANCE = 1e-5
pytestmark = pytest.mark.usefixtures("shipped")


def _entries() -> list[tuple[Path, dict]]:
    return [
        (manifest.parent, entry)
        for manifest in sorted(CORPUS.glob("*/manifest.json"))
        for entry in json.loads(manifest.read_text(encoding="utf-8"))["files"]
    ]


def test_the_corpus_holds_every_codec_of_release_0_1_0():
    codecs = {entry["codec"] for folder, entry in _entries() if folder.name == "0.1.0"}
    assert codecs == {"hyperprior", "mlic", "walloc-image", "walloc-audio"}


@pytest.mark.parametrize(("folder", "entry"), _entries(), ids=lambda v: v["file"] if isinstance(v, dict) else v.name)
def test_a_released_file_decodes_to_its_released_output(folder: Path, entry: dict):
    data = (folder / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"], "the corpus file itself changed"
    header = peek_header(data)
    assert (header.codec, header.quality) == (entry["codec"], entry["quality"])
    expected = np.load(folder / entry["output"])
    decoded = nc.decode(data).numpy()
    assert decoded.shape == expected.shape and decoded.dtype == expected.dtype
    np.testing.assert_allclose(decoded, expected, rtol=0, atol=TOLERANCE)
