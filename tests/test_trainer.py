"""The training harness: it learns, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from neurocodec.train.trainer import TrainConfig, Trainer

TINY = {"N": 8, "M": 12}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train faster on one thread; two threads fighting for a shared 2-core CPU ran
    these tests 10-20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_images(folder, count=3, size=(80, 72)):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
        noise = rng.normal(0, 20, base.shape)
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def config(tmp_path, data, out, steps, **options):
    return TrainConfig(
        arch=TINY, data=str(data), out=str(tmp_path / out), steps=steps, batch_size=2, crop=64,
        lr=1e-3, log_every=1, checkpoint_every=2, seed=3, **options,
    )  # fmt: skip


@pytest.mark.parametrize("bf16", [None, True], ids=["float32", "bf16-autocast"])
def test_resume_equals_uninterrupted(tmp_path, bf16):
    data = make_images(tmp_path / "data")
    whole = Trainer(config(tmp_path, data, "whole", 4, bf16=bf16))
    whole.run(progress=False)

    first = Trainer(config(tmp_path, data, "split", 4, bf16=bf16))
    first.run(progress=False, until=3)  # interrupted after step 3 (checkpointed)
    resumed = Trainer(
        config(tmp_path, data, "split", 4, bf16=bf16)
    )  # same folder: resumes from the checkpoint
    resumed.run(progress=False)
    assert resumed.step == 4
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_overfits_a_tiny_image_to_high_psnr(tmp_path):
    """300 CPU steps on crops of one smooth 80x72 image: from under 12 dB to over 24 dB."""
    (tmp_path / "data").mkdir()
    y, x = np.mgrid[0:72, 0:80]
    smooth = np.stack(
        [128 + 100 * np.sin(x / 9), 128 + 100 * np.cos(y / 7), 128 + 60 * np.sin((x + y) / 11)], -1
    )
    Image.fromarray(smooth.clip(0, 255).astype(np.uint8)).save(tmp_path / "data" / "smooth.png")
    cfg = config(tmp_path, tmp_path / "data", "learn", 300)
    cfg.lmbda, cfg.lr, cfg.log_every, cfg.checkpoint_every = 0.5, 3e-3, 10, 1000
    Trainer(cfg).run(progress=False)
    logs = [json.loads(line) for line in (tmp_path / "learn" / "log.jsonl").read_text().splitlines()]
    assert logs[0]["psnr"] < 12
    assert np.mean([r["psnr"] for r in logs[-3:]]) > 24
    assert logs[-1]["loss"] < 0.2 * logs[0]["loss"]


def test_export_then_load_through_the_registry(tmp_path, monkeypatch):
    """train -> export (tables built once, hashed safetensors, model card) -> nc.load -> a real file."""
    import neurocodec as nc
    from neurocodec.train.export import export_weights

    data = make_images(tmp_path / "data", count=2)
    trainer = Trainer(config(tmp_path, data, "run", 2))
    trainer.run(progress=False)
    card = export_weights(tmp_path / "run" / "checkpoint", 4, out_dir=tmp_path / "weights", kodak=data)
    entry = json.loads(card.read_text())
    assert entry["model_card"]["steps"] == 2 and len(entry["model_card"]["rd_kodak"]) == 1

    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(tmp_path / "weights"))
    codec = nc.load("hyperprior", quality=4)
    x = torch.rand(3, 40, 70)
    file = codec.encode(x)
    assert nc.decode(file).shape == (3, 40, 70)
    assert [c.name for c in nc.list_codecs()] == ["hyperprior"]


def test_audio_export_measures_music_and_loads(tmp_path, monkeypatch):
    """An audio codec's card records clip samples (not a crop) and kbit/s, SNR, SI-SDR on music."""
    import neurocodec as nc
    from neurocodec.io.audio import write_audio
    from neurocodec.train.export import export_weights

    (tmp_path / "music").mkdir()
    t = torch.arange(12000) / 44100
    write_audio(
        tmp_path / "music" / "a.wav", 0.3 * torch.stack([torch.sin(2 * torch.pi * 440 * t)] * 2), 44100
    )
    arch = {"levels": 4, "latent_dim": 8, "decoder_width": 8}
    cfg = TrainConfig(
        model="walloc-audio", arch=arch, data=str(tmp_path / "music"), out=str(tmp_path / "run"), steps=2,
        batch_size=2, samples=1024, log_every=1, seed=3,
    )  # fmt: skip
    Trainer(cfg).run(progress=False)
    card = export_weights(
        tmp_path / "run" / "checkpoint", 1, out_dir=tmp_path / "w", music=tmp_path / "music"
    )
    model_card = json.loads(card.read_text())["model_card"]
    assert model_card["samples"] == 1024 and "crop" not in model_card
    assert set(model_card["rd_music"]) == {"kbps", "snr", "si_sdr"} and model_card["rd_music"]["kbps"] > 0
    assert model_card["rd_music_files"] == "music (1 audio files)"

    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(tmp_path / "w"))
    x = 0.1 * torch.randn(2, 3000)
    assert nc.decode(nc.load("walloc-audio", quality=1).encode(x, 44100)).shape == (2, 3000)


def test_packed_checkpoint_halves_the_moments_and_resumes(tmp_path):
    """A checkpoint packed for a device's file limits (moments in bf16) resumes to a close run."""
    from neurocodec.train.checkpoint import load_checkpoint, pack_checkpoint

    data = make_images(tmp_path / "data", count=1)
    Trainer(config(tmp_path, data, "run", 4)).run(progress=False, until=2)
    files = pack_checkpoint(tmp_path / "run" / "checkpoint", tmp_path / "packed" / "checkpoint")
    assert {f.name for f in files} >= {"meta.json", "state-00000.safetensors"}
    full, _ = load_checkpoint(tmp_path / "run" / "checkpoint")
    packed, _ = load_checkpoint(tmp_path / "packed" / "checkpoint")
    assert full.keys() == packed.keys()
    moments = [k for k in full if k.endswith((".exp_avg", ".exp_avg_sq"))]
    assert moments and all(packed[k].dtype == torch.bfloat16 for k in moments)
    assert all(torch.equal(full[k], packed[k]) for k in full if k not in moments)

    whole = Trainer(config(tmp_path, data, "run", 4))
    whole.run(progress=False)
    resumed = Trainer(config(tmp_path, data, "packed", 4))
    resumed.run(progress=False)
    assert resumed.step == 4
    for k, v in whole.model.state_dict().items():
        assert torch.allclose(v, resumed.model.state_dict()[k], rtol=1e-2, atol=1e-4), k


def test_time_limit_stops_with_a_checkpoint(tmp_path):
    data = make_images(tmp_path / "data", count=1)
    trainer = Trainer(config(tmp_path, data, "timed", 50))
    trainer.run(progress=False, time_limit=0.0)
    assert trainer.step < 50
    assert (tmp_path / "timed" / "checkpoint" / "meta.json").exists()
    again = Trainer(config(tmp_path, data, "timed", 50))
    assert again.try_resume() and again.step == trainer.step


def test_interrupted_checkpoint_swap_still_resumes(tmp_path):
    """A crash between the two renames of a save leaves checkpoint.old, which resume reads."""
    data = make_images(tmp_path / "data", count=1)
    trainer = Trainer(config(tmp_path, data, "swap", 4))
    trainer.run(progress=False, until=2)
    folder = tmp_path / "swap" / "checkpoint"
    folder.rename(folder.with_name("checkpoint.old"))
    again = Trainer(config(tmp_path, data, "swap", 4))
    assert again.try_resume() and again.step == 2


def test_float_twin_trains_its_h_s_in_float_and_is_not_exported(tmp_path):
    """``float_prior=1`` trains ``h_s`` unrounded (continuous table indexes) for measurement; it has
    no exact coding path, so export refuses it with one clear error."""
    from neurocodec.errors import ConfigError
    from neurocodec.train.export import export_weights

    data = make_images(tmp_path / "data", count=2)
    cfg = config(tmp_path, data, "twin", 2)
    cfg.arch = {**TINY, "float_prior": 1}
    trainer = Trainer(cfg)
    before = trainer.model.latent_codec.h_s.out.weight.detach().clone()
    trainer.run(progress=False)
    m = trainer.model
    assert m.float_prior and not torch.equal(before, m.latent_codec.h_s.out.weight)
    index, _ = m.latent_codec.h_s.float_forward(torch.randint(-3, 4, (1, 8, 2, 2)).float())
    assert not torch.equal(index, index.round())  # continuous, where the integer h_s gives integers
    with pytest.raises(ConfigError, match="cannot code the architecture"):
        export_weights(tmp_path / "twin" / "checkpoint", 1, out_dir=tmp_path / "weights")
    assert not (tmp_path / "weights").exists() or not any((tmp_path / "weights").iterdir())
