"""The Python codec API and the registry (neurocodec.load / encode / decode / list_codecs, the
family table and its queries).

The shipped weights are hidden (conftest.py), so these run the test-only lossless codec of
toy_codec.py through the registry's developer hooks (NEUROCODEC_WEIGHTS_PATH,
NEUROCODEC_CODEC_MODULES).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import neurocodec as nc
import toy_codec
from neurocodec import cli, registry
from neurocodec.container import pack, unpack


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A weights directory with test-lossless qualities 1 and 2, known to the registry."""
    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(tmp_path))
    monkeypatch.setenv("NEUROCODEC_CODEC_MODULES", toy_codec.MODULES)
    for quality in (1, 2):
        toy_codec.write_weights(tmp_path, quality)
    return tmp_path


def image(channels: int = 3, height: int = 37, width: int = 53, seed: int = 0) -> torch.Tensor:
    """A smooth-ish 8-bit image as a float tensor: exact levels, so the toy codec is lossless."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.arange(height)[:, None] + 2 * torch.arange(width)[None, :]
    noise = torch.randint(0, 9, (channels, height, width), generator=g)
    return ((ramp + noise) % 256).float() / 255


def repacked(data: bytes, **changes: object) -> bytes:
    """``data`` with header fields replaced (a valid file, e.g. of another codec)."""
    header, sections = unpack(data)
    return pack(dataclasses.replace(header, **changes), sections)


@pytest.mark.parametrize("shape", [(3, 37, 53), (1, 5, 7), (3, 1, 1), (1, 3, 8, 16)])
def test_round_trip_any_size(weights: Path, shape: tuple[int, ...]) -> None:
    codec = nc.load(toy_codec.NAME)
    x = image(*shape[-3:])
    data = codec.encode(x.reshape(shape))
    assert data.startswith(b"\x89NC")
    assert torch.equal(codec.decode(data), x)


def test_decode_needs_nothing_but_the_file(weights: Path) -> None:
    x = image()
    data = nc.load(toy_codec.NAME, quality=2).encode(x)
    assert torch.equal(nc.decode(data), x)
    default = nc.encode(x)  # the default codec (the only one installed) at its default quality
    assert unpack(default)[0].codec == toy_codec.NAME
    assert unpack(default)[0].quality == 1
    assert torch.equal(nc.decode(default), x)


def test_encode_batch(weights: Path) -> None:
    codec = nc.load(toy_codec.NAME)
    xs = [image(3, 16, 16, seed=1), image(1, 9, 30, seed=2), image(3, 40, 8, seed=3)]
    files = codec.encode_batch(xs, progress=True)
    assert [codec.decode(f).shape for f in files] == [x.shape for x in xs]
    assert all(torch.equal(codec.decode(f), x) for f, x in zip(files, xs, strict=True))
    stacked = torch.stack([image(seed=s) for s in range(2)])
    assert all(
        torch.equal(codec.decode(f), x) for f, x in zip(codec.encode_batch(stacked), stacked, strict=True)
    )


def test_list_codecs(weights: Path) -> None:
    (info,) = nc.list_codecs()
    assert (info.name, info.media, info.qualities, info.default_quality) == (
        toy_codec.NAME,
        "image",
        (1, 2),
        1,
    )
    assert info.weights[1].rd_points == [{"bpp": 6.0, "psnr": 99.0}]
    assert info.weights[0].model_card["training_data"]


def test_list_codecs_needs_weights_and_a_module(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = json.loads((weights / f"{toy_codec.NAME}-q1.json").read_text())
    (weights / "ghost.json").write_text(json.dumps({**card, "codec": "ghost"}))  # a card, no family
    monkeypatch.setenv("NEUROCODEC_CODEC_MODULES", f"{toy_codec.MODULES},no_such_module")
    with pytest.warns(UserWarning, match="'no_such_module', which fails to import"):
        assert [info.name for info in nc.list_codecs()] == [toy_codec.NAME]
    with pytest.raises(nc.UnknownCodecError, match="unknown codec 'ghost'"):
        nc.load("ghost")
    monkeypatch.delenv("NEUROCODEC_WEIGHTS_PATH")
    assert nc.list_codecs() == []
    assert toy_codec.NAME in [f.name for f in nc.families()]  # declared, not installed


def test_the_family_table(weights: Path) -> None:
    """One declaration per family, read by the codec API, training and export alike."""
    toy = nc.families()[[f.name for f in nc.families()].index(toy_codec.NAME)]
    assert (toy.media, toy.codec, toy.model, toy.arch, toy.data) == (
        "image", toy_codec.ToyLossless, toy_codec.ToyLaplace, {"multiple": 8}, "image"
    )  # fmt: skip
    assert registry.trainable(toy_codec.NAME) is toy
    assert isinstance(toy.build_model(), toy_codec.ToyLaplace)
    with pytest.raises(nc.NeurocodecError, match="bad architecture"):
        toy.build_model({"nope": 1})
    shipped = {f.name: f for f in nc.families()}
    assert {"hyperprior", "mlic", "walloc-image", "walloc-audio"} <= shipped.keys()
    assert shipped["walloc-audio"].data == "audio" and shipped["mlic"].arch == {"preset": "small"}
    assert nc.codec_info(toy_codec.NAME).qualities == (1, 2)
    with pytest.raises(nc.UnknownCodecError, match=r"unknown codec 'mlic' \(installed: test-lossless\)"):
        nc.codec_info("mlic")  # declared, but its weights are hidden here
    with pytest.raises(nc.UnknownCodecError, match=r"unknown codec 'nope' \(known: .*hyperprior"):
        registry.family("nope")
    with pytest.raises(ValueError, match="declared twice"):
        registry.register_family(registry.CodecFamily(toy_codec.NAME, "image", model=torch.nn.Identity))


def test_default_codec_is_the_installed_family_of_highest_priority(shipped: None) -> None:
    """What the shipped families declare keeps the choice the release made: mlic for images,
    walloc-audio for audio (a family of higher priority comes first; the cards' R-D would pick
    walloc-image, which reaches mlic q4's PSNR at fewer bits) and nirvana, the only one, for video."""
    assert (nc.default_codec("image"), nc.default_codec("audio")) == ("mlic", "walloc-audio")
    assert nc.default_codec("video") == "nirvana"


class Overfit(toy_codec.ToyLossless):
    """A family without weight files, as an overfitted codec is: its quality picks its table."""

    name = "test-overfit"

    def __init__(self, quality: int = 0, **base) -> None:
        super().__init__(quality=quality, **base)
        self.model = toy_codec.ToyLaplace(scale=2.0 * max(quality, 1))


@pytest.fixture
def overfit(monkeypatch: pytest.MonkeyPatch) -> registry.CodecFamily:
    """The family of :class:`Overfit` declared for one test (a declaration lasts for the process)."""
    family = registry.CodecFamily(Overfit.name, "image", codec=Overfit, qualities=(3, 1, 2))
    registry.families()  # discovery first, so that the table is restored after the test
    monkeypatch.setitem(registry._FAMILIES, family.name, family)
    return family


def test_a_family_without_weight_files(overfit: registry.CodecFamily, capsys) -> None:
    (info,) = nc.list_codecs()
    assert (info.name, info.qualities, info.weights, info.default_quality) == (
        "test-overfit",
        (1, 2, 3),
        (),
        1,
    )
    codec = nc.load("test-overfit", quality=3)
    assert (codec.quality, codec.weights_hash, float(codec.model.log_scale.detach().exp())) == (
        3,
        bytes(4),
        6.0,
    )
    x = image()
    data = codec.encode(x)
    assert torch.equal(nc.decode(data), x)  # the file names the quality: nothing else to load
    assert len(nc.encode(x, "test-overfit", quality=1)) != len(data)  # another table
    with pytest.raises(nc.UnknownCodecError, match=r"no quality 4 \(installed: 1, 2, 3\)"):
        nc.load("test-overfit", quality=4)
    with pytest.raises(
        nc.UnknownCodecError, match=r"weights 00010203, which is not installed .*weights 00000000"
    ):
        nc.decode(repacked(data, weights_hash=b"\x00\x01\x02\x03"))
    assert cli.main(["list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[1].split() == ["test-overfit", "image", "1*", "-", "-"] and listed[3].split() == [
        "3",
        "-",
        "-",
    ]


def test_wrong_codec_quality_or_weights(weights: Path) -> None:
    data = nc.load(toy_codec.NAME, quality=1).encode(image())
    codec = nc.load(toy_codec.NAME, quality=1)
    with pytest.raises(
        nc.WrongCodecError, match=r"needs codec 'test-lossless' quality 1 .* not .* quality 2"
    ):
        nc.load(toy_codec.NAME, quality=2).decode(data)
    with pytest.raises(nc.WrongCodecError, match="needs codec 'other-codec'"):
        codec.decode(repacked(data, codec="other-codec"))
    other_weights = repacked(data, weights_hash=b"\x00\x01\x02\x03")
    with pytest.raises(nc.WrongCodecError, match="weights 00010203"):
        codec.decode(other_weights)
    with pytest.raises(nc.UnknownCodecError, match="weights 00010203, which is not installed"):
        nc.decode(other_weights)
    with pytest.raises(
        nc.UnknownCodecError, match=r"'other-codec' .* not installed .*installed: test-lossless"
    ):
        nc.decode(repacked(data, codec="other-codec"))


def test_unknown_codec_or_quality(weights: Path) -> None:
    with pytest.raises(nc.UnknownCodecError, match=r"unknown codec 'nope' \(installed: test-lossless\)"):
        nc.load("nope")
    with pytest.raises(nc.UnknownCodecError, match=r"no quality 7 \(installed: 1, 2\)"):
        nc.load(toy_codec.NAME, quality=7)


def test_missing_weights_file(weights: Path) -> None:
    (weights / f"{toy_codec.NAME}-q2.safetensors").unlink()
    with pytest.raises(nc.WeightsError, match="cannot read the weights of test-lossless quality 2"):
        nc.load(toy_codec.NAME, quality=2)


def test_altered_weights_file(weights: Path) -> None:
    path = weights / f"{toy_codec.NAME}-q1.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(nc.WeightsError, match="altered or corrupt: SHA-256"):
        nc.load(toy_codec.NAME)


def test_invalid_model_card(weights: Path) -> None:
    (weights / "broken.json").write_text('{"codec": "x", "quality": 1}')
    with pytest.raises(nc.WeightsError, match=r"invalid model card .*broken\.json"):
        nc.list_codecs()


def spiked(value: float) -> torch.Tensor:
    """A valid image but for one sample, ``value``."""
    x = torch.rand(3, 4, 4)
    x[1, 2, 3] = value
    return x


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.full((3, 4, 4), 1.01), nc.UnsupportedMediaError, r"samples in \[0, 1\]"),
        (torch.full((3, 4, 4), -0.01), nc.UnsupportedMediaError, r"samples in \[0, 1\]"),
        (image().mul(255).to(torch.uint8), nc.UnsupportedMediaError, "floating-point"),
        (torch.rand(37, 53), nc.UnsupportedMediaError, r"shape \(C, H, W\)"),
        (torch.rand(2, 3, 8, 8), nc.UnsupportedMediaError, "encode_batch"),
        (torch.rand(2, 8, 8), nc.UnsupportedMediaError, "codes 1 or 3 channels, not 2"),
        (torch.rand(1, 1, 70000), nc.GeometryError, "width 70000 is outside"),
        (torch.full((3, 4, 4), float("nan")), nc.UnsupportedMediaError, "finite"),
        (spiked(float("nan")), nc.UnsupportedMediaError, "finite"),
        (spiked(float("inf")), nc.UnsupportedMediaError, "finite"),
        (spiked(-float("inf")), nc.UnsupportedMediaError, "finite"),
    ],
)
def test_encode_refuses_bad_input(weights: Path, x: torch.Tensor, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        nc.load(toy_codec.NAME).encode(x)


def test_corrupt_stream_is_an_error(weights: Path) -> None:
    codec = nc.load(toy_codec.NAME)
    header, sections = unpack(codec.encode(image()))
    stream = bytearray(sections["px"])
    stream[len(stream) // 2] ^= 0x10
    with pytest.raises(nc.BitstreamError):
        codec.decode(pack(header, {"px": bytes(stream)}))
    with pytest.raises(nc.ContainerError, match="checksum"):
        codec.decode(codec.encode(image())[:-1])


def test_devices(weights: Path) -> None:
    with pytest.raises(nc.DeviceError, match="unknown device"):
        nc.load(toy_codec.NAME, device="nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(nc.DeviceError, match="not available"):
            nc.load(toy_codec.NAME, device="cuda")


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, neurocodec; "
        "print(sorted(m for m in ('torch', 'safetensors', 'neurocodec.codecs.base') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
