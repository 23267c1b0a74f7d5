"""Compressed learning: a folder -> latents equal to ``codec.latent(x)``, batched or not, saved and
reloaded identically; bad files raise or are skipped; the CLI and the notebook run.

The WaLLoC models are small and untrained: these tests check the pipeline, not the latents' use.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import neurocodec as nc
from neurocodec.cli import main
from neurocodec.codecs.walloc import WaLLoCAudioCodec, WaLLoCImageCodec
from neurocodec.errors import ConfigError, MediaReadError, OutputExistsError, UnsupportedMediaError
from neurocodec.io.audio import read_audio, write_audio
from neurocodec.io.image import read_image, write_image
from neurocodec.latents import LatentDataset, SkippedFileWarning, encode_latents, save_latents
from test_walloc import music, photo, small_codec, write_weights

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"

# sizes chosen so that runs of equal sizes, size changes and sizes off the 2**levels grid all occur
IMAGE_SIZES = [(24, 40), (24, 40), (24, 40), (17, 33), (24, 40), (1, 1)]
AUDIO_LENGTHS = [300, 300, 77, 300]


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    source = photo(64, 96)
    for i, (h, w) in enumerate(IMAGE_SIZES):
        write_image(folder / f"{i}.png", source[:, i : i + h, 2 * i : 2 * i + w])
    write_image(folder / "grey.png", source[:1, :24, :40])
    return folder


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "audio"
    folder.mkdir()
    for i, length in enumerate(AUDIO_LENGTHS):
        write_audio(folder / f"{i}.wav", music(length, seed=i), 44100)
    write_audio(folder / "mono.wav", music(300, seed=9)[:1], 16000)
    return folder


def image_codec(hyper_channels: int = 0) -> WaLLoCImageCodec:
    return small_codec(WaLLoCImageCodec, levels=2, latent_dim=6, hyper_channels=hyper_channels)


def audio_codec() -> WaLLoCAudioCodec:
    return small_codec(WaLLoCAudioCodec, levels=4, latent_dim=8)


def one_by_one(codec, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return codec.latent(x[None])[0]


def test_image_latents_equal_the_codecs_item_by_item(image_dir: Path) -> None:
    codec = image_codec()
    items = list(encode_latents(codec, image_dir, batch_size=4, progress=False))
    files = sorted(image_dir.glob("*.png"))
    assert [item.path for item in items] == [str(f) for f in files]
    for item, path in zip(items, files, strict=True):
        x, _ = read_image(path)
        assert item.shape == (3, *x.shape[1:])  # grey is repeated into RGB
        expected = one_by_one(codec, x.expand(3, -1, -1).contiguous())
        assert item.latent.dtype == torch.float32 and torch.equal(item.latent, expected), path
        assert torch.equal(item.latent, item.latent.round())
        h, w = x.shape[1:]
        assert item.latent.shape == (6, -(-h // 4), -(-w // 4))
    assert items[0].latent.abs().max() > 0


def test_audio_latents_equal_the_codecs_item_by_item(audio_dir: Path) -> None:
    codec = audio_codec()
    items = list(encode_latents(codec, audio_dir, batch_size=2, progress=False))
    for item in items:
        x, info = read_audio(item.path)
        assert item.sample_rate == info.sample_rate and item.shape == (2, x.shape[1])
        assert torch.equal(item.latent, one_by_one(codec, x.expand(2, -1).contiguous()))
        assert item.latent.shape == (8, -(-x.shape[1] // 16))
    assert [item.sample_rate for item in items] == [44100] * 4 + [16000]


@pytest.mark.parametrize("batch_size", [2, 3, 64])
def test_batching_gives_the_latents_of_one_by_one(image_dir: Path, batch_size: int) -> None:
    codec = image_codec()
    single = list(encode_latents(codec, image_dir, batch_size=1, progress=False))
    batched = list(encode_latents(codec, image_dir, batch_size=batch_size, progress=False))
    assert [a.path for a in single] == [b.path for b in batched]
    assert all(torch.equal(a.latent, b.latent) for a, b in zip(single, batched, strict=True))


def test_centre_crop_gives_one_shape(image_dir: Path, audio_dir: Path) -> None:
    codec = image_codec()
    files = sorted(image_dir.glob("*.png"))
    big = [f for f in files if read_image(f)[0].shape[1:] == (24, 40)]
    items = list(encode_latents(codec, big, crop=(16, 20), progress=False))
    for item, path in zip(items, big, strict=True):
        x, _ = read_image(path)
        crop = x.expand(3, -1, -1)[:, 4:20, 10:30].contiguous()
        assert item.latent.shape == (6, 4, 5) and item.shape == (3, 24, 40)
        assert torch.equal(item.latent, one_by_one(codec, crop))
    clips = list(encode_latents(audio_codec(), audio_dir, crop=64, progress=False, skip_bad=True))
    assert {tuple(c.latent.shape) for c in clips} == {(8, 4)}


def test_bad_files_raise_by_default_and_are_skipped_on_request(image_dir: Path) -> None:
    (image_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (image_dir / "notes.png").write_text("a text file with an image's name")
    codec = image_codec()
    with pytest.raises((MediaReadError, UnsupportedMediaError), match=r"broken\.png"):
        list(encode_latents(codec, image_dir, progress=False))
    with pytest.warns(SkippedFileWarning) as caught:
        items = list(encode_latents(codec, image_dir, progress=False, skip_bad=True))
    assert len(items) == len(IMAGE_SIZES) + 1
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and "broken.png" in messages[0] and "notes.png" in messages[1]
    with pytest.raises(UnsupportedMediaError, match="smaller than the crop"):
        list(encode_latents(codec, [image_dir / "5.png"], crop=(8, 8), progress=False))


def test_refusals(image_dir: Path, tmp_path: Path) -> None:
    from neurocodec.codecs.hyperprior import HyperpriorCodec

    with pytest.raises(ConfigError, match="exposes no latent"):
        list(encode_latents(HyperpriorCodec(N=8, M=8), image_dir, progress=False))
    with pytest.raises(ConfigError, match="crop"):
        list(encode_latents(image_codec(), image_dir, crop=16, progress=False))
    with pytest.raises(ConfigError, match="batch_size"):
        list(encode_latents(image_codec(), image_dir, batch_size=0, progress=False))
    with pytest.raises(MediaReadError, match="no images"):
        list(encode_latents(image_codec(), tmp_path / "empty", progress=False))


@pytest.mark.parametrize(("shard_size", "hyperprior"), [(1, 0), (3, 0), (100, 0), (3, 8)])
def test_saved_shards_reload_identically(
    image_dir: Path, tmp_path: Path, shard_size: int, hyperprior: int
) -> None:
    codec = image_codec(hyperprior)
    items = list(encode_latents(codec, image_dir, progress=False))
    # a hyperprior's latents are the rounded residuals plus its means, off the integers
    assert any(not torch.equal(item.latent, item.latent.round()) for item in items) == bool(hyperprior)
    out = tmp_path / "latents"
    index = save_latents(iter(items), out, shard_size, codec=codec)
    shards = sorted(out.glob("shard-*.safetensors"))
    assert len(shards) == -(-len(items) // shard_size) and index == out / "index.json"
    assert not list(out.glob(".*"))  # no temporary files left
    dataset = LatentDataset(out)
    assert len(dataset) == len(items) and dataset.paths == [item.path for item in items]
    assert dataset.codec == {"name": "walloc-image", "quality": 0, "weights_hash": codec.weights_hash.hex()}
    for i, item in enumerate(items):
        assert dataset[i].dtype == torch.float32 and torch.equal(dataset[i], item.latent)
        assert dataset.items[i]["shape"] == list(item.shape)
    with pytest.raises(OutputExistsError):
        save_latents(items, out, shard_size)
    save_latents(items[:2], out, shard_size, overwrite=True)
    assert len(LatentDataset(out)) == 2


def test_a_damaged_dataset_is_a_clear_error(image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "latents"
    with pytest.raises(MediaReadError, match="no latent dataset"):
        LatentDataset(out)
    save_latents(encode_latents(image_codec(), image_dir, progress=False), out, 4)
    (out / "shard-00001.safetensors").write_bytes(b"garbage")
    dataset = LatentDataset(out)
    assert dataset[0].shape[0] == 6
    with pytest.raises(MediaReadError, match="shard-00001"):
        dataset[len(dataset) - 1]
    (out / "index.json").write_text(json.dumps({"format": "neurocodec-latents", "version": 99}))
    with pytest.raises(MediaReadError, match="version 99"):
        LatentDataset(out)


def test_cli_writes_a_dataset(
    image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(tmp_path))
    write_weights(tmp_path, WaLLoCImageCodec, 1, levels=2, latent_dim=6)
    out = tmp_path / "latents"
    argv = ["latents", "walloc-image", "--data", str(image_dir), "--out", str(out), "--quiet"]
    assert main([*argv, "--shard-size", "3"]) == 0
    dataset = LatentDataset(out)
    codec = nc.load("walloc-image", quality=1)
    expected = list(encode_latents(codec, image_dir, progress=False))
    assert len(dataset) == len(expected) and dataset.codec["quality"] == 1
    assert all(torch.equal(dataset[i], item.latent) for i, item in enumerate(expected))
    assert main(argv) == 1  # exists: needs -f
    assert "already holds a latent dataset" in capsys.readouterr().err
    assert main([*argv, "-f", "--crop", "16x20"]) == 1  # 5.png is smaller
    assert "5.png is 1x1, smaller than the crop" in capsys.readouterr().err
    assert main([*argv, "-f", "--crop", "16x20", "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped") == 1 and "skipped: " in err and "5.png is 1x1" in err
    cropped = LatentDataset(out)
    assert len(cropped) == len(IMAGE_SIZES) and {cropped[i].shape for i in range(len(cropped))} == {(6, 4, 5)}
    assert main([*argv, "--crop", "x"]) == 2
    assert "--crop must look like" in capsys.readouterr().err


@pytest.mark.skipif(not (TRAIN / "urban100").is_dir(), reason="shared training images not present")
def test_notebook_runs_on_a_tiny_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(NOTEBOOKS))
    from run import execute

    from test_notebooks import outputs

    monkeypatch.setenv("NEUROCODEC_TRAIN", str(TRAIN))
    monkeypatch.setenv("NEUROCODEC_NB_PER_CLASS", "6")
    monkeypatch.setenv("NEUROCODEC_NB_EPOCHS", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    text = outputs(execute("compressed_learning.ipynb"))
    assert "18 images, 3 classes" in text
    assert text.count("test accuracy") == 2 and "latents vs pixels" in text
