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
import zlib
from pathlib import Path

import numpy as np
import pytest

import neurocodec as nc
from neurocodec.container import FORMAT_VERSION, pack, peek_header, unpack

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


# --------------------------------------------------------------------------------------------
# Format version rules (docs/bitstream.md §8)


def _releases() -> list[str]:
    return sorted(p.parent.name for p in CORPUS.glob("*/manifest.json"))


def test_the_current_release_has_its_corpus():
    """Releasing means writing the release's corpus (tests/corpus/make_corpus.py <version>)."""
    assert nc.__version__ in _releases(), f"no tests/corpus/{nc.__version__}/: run tests/corpus/make_corpus.py"


def test_every_release_wrote_a_format_version_this_reader_reads():
    """A reader of format version N reads every file of versions 1..N: the corpus holds no newer one."""
    for folder, entry in _entries():
        version = (folder / entry["file"]).read_bytes()[3]
        assert 1 <= version <= FORMAT_VERSION, f"{folder.name}/{entry['file']} is format version {version}"


def _resealed(data: bytes, body: bytes | None = None, version: int | None = None) -> bytes:
    body = bytearray(data[:-4] if body is None else body)
    if version is not None:
        body[3] = version
    return bytes(body) + zlib.crc32(body).to_bytes(4, "little")


def _smallest() -> tuple[Path, dict]:
    return min(_entries(), key=lambda fe: (fe[0] / fe[1]["file"]).stat().st_size)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 255])
def test_a_newer_format_version_is_refused_with_upgrade_advice(version):
    folder, entry = _smallest()
    data = _resealed((folder / entry["file"]).read_bytes(), version=version)
    with pytest.raises(nc.UnsupportedVersionError, match=f"version {version} .*upgrade neurocodec"):
        nc.decode(data)


def test_a_version_no_release_wrote_is_refused():
    folder, entry = _smallest()
    with pytest.raises(nc.UnsupportedVersionError, match="version 0 is not supported"):
        nc.decode(_resealed((folder / entry["file"]).read_bytes(), version=0))


def test_a_section_the_codec_does_not_read_is_ignored():
    """Within a format version, a section a codec does not know changes nothing it decodes."""
    folder, entry = _smallest()
    data = (folder / entry["file"]).read_bytes()
    header, sections = unpack(data)
    extended = pack(header, {**sections, "note": b"written by a later release"})
    np.testing.assert_array_equal(nc.decode(extended).numpy(), nc.decode(data).numpy())


def test_the_streams_of_every_release_are_of_a_version_this_reader_reads():
    """Every section of the shipped codecs is a rANS stream (§3) of a version this coder reads."""
    from neurocodec.entropy.coder import FORMAT_VERSION as STREAM_VERSION
    from neurocodec.entropy.coder import stream_info

    for folder, entry in _entries():
        for name, payload in unpack((folder / entry["file"]).read_bytes())[1].items():
            assert stream_info(payload)["version"] <= STREAM_VERSION, f"{folder.name}/{entry['file']} section {name}"
