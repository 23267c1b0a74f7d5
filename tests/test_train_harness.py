"""The harness beyond the hyperprior: registered models of every data kind, codec-supplied loss
terms, MS-SSIM, EMA, validation, schedules and the audio and video datasets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from neurocodec.errors import ConfigError
from neurocodec.io.video import write_y4m
from neurocodec.registry import CodecFamily, register_family, trainable
from neurocodec.train.data import AudioClips, ImageCrops, VideoClips
from neurocodec.train.schedule import cosine_lr
from neurocodec.train.trainer import TrainConfig, Trainer
from test_trainer import TINY, make_images, one_thread  # noqa: F401 (an autouse fixture)


class ToyAudioModel(nn.Module):
    """A 1-D autoencoder with a learned Gaussian prior per channel, a weighted ``loss_terms``
    entry and no auxiliary loss: the smallest model that follows the training contract."""

    def __init__(self, channels: int = 2, latent: int = 4):
        super().__init__()
        self.analysis = nn.Conv1d(channels, latent, 8, stride=4)
        self.synthesis = nn.ConvTranspose1d(latent, channels, 8, stride=4)
        self.log_scale = nn.Parameter(torch.zeros(1, latent, 1))

    def forward(self, x: torch.Tensor) -> dict:
        y = self.analysis(x)
        y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else torch.round(y)
        normal = torch.distributions.Normal(0.0, self.log_scale.exp())
        likelihoods = (normal.cdf(y_tilde + 0.5) - normal.cdf(y_tilde - 0.5)).clamp_min(1e-9)
        x_hat = self.synthesis(y_tilde)
        decay = 1e-4 * sum(p.square().sum() for p in self.synthesis.parameters())
        return {"x_hat": x_hat, "likelihoods": {"y": likelihoods}, "loss_terms": {"weight_decay": decay}}


class ToyVideoModel(nn.Module):
    """A 3-D autoencoder (frames are coded together), same prior as :class:`ToyAudioModel`."""

    def __init__(self, latent: int = 4):
        super().__init__()
        self.analysis = nn.Conv3d(3, latent, (2, 4, 4), stride=(2, 4, 4))
        self.synthesis = nn.ConvTranspose3d(latent, 3, (2, 4, 4), stride=(2, 4, 4))
        self.log_scale = nn.Parameter(torch.zeros(1, latent, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> dict:
        y = self.analysis(x)
        y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        normal = torch.distributions.Normal(0.0, self.log_scale.exp())
        likelihoods = (normal.cdf(y_tilde + 0.5) - normal.cdf(y_tilde - 0.5)).clamp_min(1e-9)
        return {"x_hat": self.synthesis(y_tilde), "likelihoods": {"y": likelihoods}}


# Networks that train before their codec exists: a family without a codec class
register_family(CodecFamily("toy-audio", "audio", model=ToyAudioModel))
register_family(CodecFamily("toy-video", "video", model=ToyVideoModel))


def make_audio(folder, count=2, samples=3000, rate=8000, channels=2):
    folder.mkdir()
    rng = np.random.default_rng(1)
    t = np.arange(samples) / rate
    for i in range(count):
        wave = 0.4 * np.sin(2 * np.pi * (220 + 50 * i) * t)[:, None] * np.linspace(0.5, 1, channels)
        sf.write(folder / f"a{i}.wav", wave + rng.normal(0, 0.01, wave.shape), rate, subtype="PCM_16")
    return folder


def make_video(folder, count=2, frames=6, size=(40, 48)):
    folder.mkdir()
    for i in range(count):
        g = torch.Generator().manual_seed(i)
        video = torch.rand(3, frames, *size, generator=g).mul(0.3).add(torch.linspace(0, 0.6, size[1]))
        write_y4m(folder / f"v{i}.y4m", video, 25)
    return folder


def audio_config(tmp_path, data, out, steps, **changes):
    return TrainConfig(
        model="toy-audio", arch={}, data=str(data), out=str(tmp_path / out), steps=steps, batch_size=2,
        samples=256, lr=1e-2, log_every=1, checkpoint_every=2, seed=5, lmbda=0.01, **changes,
    )  # fmt: skip


def weights_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- the registry and the contract -------------------------------------------------------------


def test_registry_knows_the_hyperprior_and_refuses_unknown_names():
    assert trainable("hyperprior").data == "image"
    assert trainable("hyperprior").codec.name == "hyperprior"
    with pytest.raises(ConfigError, match="no trainable model named 'nope'"):
        Trainer(TrainConfig(model="nope"))
    with pytest.raises(ValueError, match="data must be one of"):
        CodecFamily("bad", "audio", model=ToyAudioModel, data="text")


def test_audio_model_trains_logs_its_loss_terms_and_resumes_exactly(tmp_path):
    data = make_audio(tmp_path / "audio")
    whole = Trainer(audio_config(tmp_path, data, "whole", 30))
    assert whole.aux_opt is None  # no quantiles: no auxiliary optimizer
    whole.run(progress=False)
    logs = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert all("weight_decay" in r and r["weight_decay"] > 0 and "aux" not in r for r in logs)
    first, last = np.mean([r["loss"] for r in logs[:5]]), np.mean([r["loss"] for r in logs[-5:]])
    assert last < 0.7 * first

    split = Trainer(audio_config(tmp_path, data, "split", 30))
    split.run(progress=False, until=13)
    resumed = Trainer(audio_config(tmp_path, data, "split", 30))
    resumed.run(progress=False)
    assert weights_equal(whole.model, resumed.model)


def test_loss_terms_are_added_to_the_loss(tmp_path):
    data = make_audio(tmp_path / "audio")
    trainer = Trainer(audio_config(tmp_path, data, "terms", 1))
    trainer.load_data()
    x = trainer.data.batch(2, trainer.gen)
    torch.manual_seed(0)
    out = trainer.model(x)
    from neurocodec.train.losses import loss_and_stats

    with_terms, stats = loss_and_stats(out, x, 0.01)
    without, _ = loss_and_stats({**out, "loss_terms": {}}, x, 0.01)
    assert float(with_terms.detach()) == pytest.approx(
        float(without.detach()) + stats["weight_decay"], rel=1e-6
    )
    assert float(with_terms.detach()) != float(without.detach())


def test_video_model_trains_on_video_clips(tmp_path):
    data = make_video(tmp_path / "video")
    cfg = TrainConfig(
        model="toy-video", arch={}, data=str(data), out=str(tmp_path / "run"), steps=3, batch_size=2,
        crop=16, frames=4, log_every=1, lmbda=0.01,
    )  # fmt: skip
    trainer = Trainer(cfg)
    trainer.run(progress=False)
    assert trainer.data.batch(2, trainer.gen).shape == (2, 3, 4, 16, 16)
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 3


# -- MS-SSIM -----------------------------------------------------------------------------------


def test_ms_ssim_needs_crops_of_161_pixels_and_images():
    with pytest.raises(ConfigError, match="at least 161 px"):
        Trainer(TrainConfig(arch=TINY, crop=160, distortion="ms-ssim"))
    with pytest.raises(ConfigError, match="MS-SSIM is an image metric"):
        Trainer(TrainConfig(model="toy-audio", arch={}, distortion="ms-ssim"))
    with pytest.raises(ConfigError, match="distortion must be one of"):
        Trainer(TrainConfig(arch=TINY, distortion="l1"))


def test_ms_ssim_loss_follows_compressai(tmp_path):
    """loss = lambda * (1 - MS-SSIM) + bpp, with MS-SSIM from pytorch-msssim on the same tensors."""
    from pytorch_msssim import ms_ssim

    from neurocodec.train.losses import rd_loss

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 170, 170, generator=g)
    x_hat = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    likelihoods = torch.full((2, 4, 10, 10), 0.5)
    loss, stats = rd_loss({"x_hat": x_hat, "likelihoods": {"y": likelihoods}}, x, 8.73, "ms-ssim")
    bpp = 2 * 4 * 10 * 10 / (2 * 170 * 170)
    expected = 8.73 * (1 - float(ms_ssim(x_hat, x, data_range=1.0))) + bpp
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert stats["bpp"] == pytest.approx(bpp) and 0.5 < stats["ms_ssim"] < 1


# -- EMA, validation, schedules ----------------------------------------------------------------


def test_ema_is_checkpointed_resumed_and_validated(tmp_path):
    data = make_audio(tmp_path / "audio", count=3)
    kw = {"ema": 0.9, "val_split": 1, "val_every": 5}
    whole = Trainer(audio_config(tmp_path, data, "whole", 10, **kw))
    whole.run(progress=False)
    assert not weights_equal(whole.model, whole.ema.model)
    assert len(whole.data) == 2 and len(whole.val_data) == 1

    split = Trainer(audio_config(tmp_path, data, "split", 10, **kw))
    split.run(progress=False, until=7)
    resumed = Trainer(audio_config(tmp_path, data, "split", 10, **kw))
    resumed.run(progress=False)
    assert weights_equal(whole.model, resumed.model)
    assert weights_equal(whole.ema.model, resumed.ema.model)

    records = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    val = [r for r in records if r.get("split") == "val"]
    assert [r["step"] for r in val] == [5, 10]
    assert all(math.isfinite(r["bpp"]) and math.isfinite(r["psnr"]) for r in val)
    assert val[-1] == pytest.approx({**resumed.validate(), "split": "val", "step": 10})


def test_validation_does_not_change_the_training_run(tmp_path):
    data = make_audio(tmp_path / "audio", count=2)
    plain = Trainer(audio_config(tmp_path, data, "plain", 6))
    plain.run(progress=False)
    validated = Trainer(audio_config(tmp_path, data, "validated", 6, val=str(data), val_every=2))
    validated.run(progress=False)
    assert weights_equal(plain.model, validated.model)


def test_cosine_schedule_with_warmup(tmp_path):
    assert [cosine_lr(s, 1.0, 10, 2) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert cosine_lr(6, 1.0, 10, 2) == pytest.approx(0.5)
    assert cosine_lr(10, 1.0, 10, 2) == pytest.approx(0.0)
    data = make_audio(tmp_path / "audio")
    trainer = Trainer(audio_config(tmp_path, data, "cos", 4, lr_schedule="cosine", warmup=2))
    rates = []
    trainer.load_data()
    for _ in range(4):
        trainer._set_lr()
        rates.append(trainer.opt.param_groups[0]["lr"])
        trainer.step += 1
    assert rates == pytest.approx([cosine_lr(s, 1e-2, 4, 2) for s in range(4)])
    with pytest.raises(ConfigError, match="warmup"):
        Trainer(audio_config(tmp_path, data, "bad", 4, warmup=4))


def test_step_schedule_drops_tenfold(tmp_path):
    data = make_audio(tmp_path / "audio")
    trainer = Trainer(audio_config(tmp_path, data, "step", 10))
    rates = []
    for _ in range(10):
        trainer._set_lr()
        rates.append(trainer.opt.param_groups[0]["lr"])
        trainer.step += 1
    assert rates == pytest.approx([1e-2] * 9 + [1e-3])


def test_export_uses_the_ema(tmp_path):
    from safetensors.torch import load_file

    from neurocodec.train.export import export_weights

    data = make_images(tmp_path / "data", count=1)
    cfg = TrainConfig(
        arch=TINY, data=str(data), out=str(tmp_path / "run"), steps=2, batch_size=1, crop=64,
        ema=0.5, log_every=1,
    )  # fmt: skip
    trainer = Trainer(cfg)
    trainer.run(progress=False)
    card = export_weights(tmp_path / "run" / "checkpoint", 2, out_dir=tmp_path / "weights")
    entry = json.loads(card.read_text())
    assert entry["model_card"]["ema_decay"] == 0.5
    shipped = load_file(str(card.with_suffix(".safetensors")))
    name = "g_a.0.weight"
    assert torch.equal(shipped[name], trainer.ema.model.state_dict()[name])
    assert not torch.equal(shipped[name], trainer.model.state_dict()[name])


def test_channels_last_trains_the_same_model(tmp_path):
    data = make_images(tmp_path / "data", count=1)
    cfg = TrainConfig(arch=TINY, data=str(data), out=str(tmp_path / "cl"), steps=2, batch_size=1, crop=64)
    cfg.channels_last = True
    trainer = Trainer(cfg)
    trainer.run(progress=False)
    assert trainer.model.g_a[0].weight.is_contiguous(memory_format=torch.channels_last)


# -- datasets ----------------------------------------------------------------------------------


def test_audio_clips_are_seeded_cropped_and_augmented(tmp_path):
    data = make_audio(tmp_path / "audio", count=2)
    sf.write(tmp_path / "audio" / "mono.wav", np.zeros(4000), 8000)  # mono: repeated into both channels
    sf.write(tmp_path / "audio" / "other_rate.wav", np.zeros((4000, 2)), 16000)  # skipped
    sf.write(tmp_path / "audio" / "short.wav", np.zeros((100, 2)), 8000)  # skipped
    clips = AudioClips(data, samples=512)
    assert (len(clips), clips.skipped, clips.sample_rate, clips.channels) == (3, 2, 8000, 2)
    a = clips.batch(16, torch.Generator().manual_seed(1))
    b = clips.batch(16, torch.Generator().manual_seed(1))
    assert a.shape == (16, 2, 512) and torch.equal(a, b)
    assert a.abs().max() <= 1
    # every clip is a gain-scaled (<= 1), maybe channel-swapped window of a file
    sources = [c for c in clips.clips if c.abs().max() > 0]
    for clip in a:
        if clip.abs().max() == 0:
            continue
        found = False
        for src in sources:
            for channels in (clip, clip.flip(0)):
                i = int(torch.argmax(channels[0].abs()))
                for start in range(src.shape[1] - 511):
                    window = src[:, start : start + 512]
                    ratio = float(channels[0, i] / window[0, i]) if window[0, i] != 0 else 0.0
                    if 10 ** (-6 / 20) - 1e-4 <= ratio <= 1 + 1e-4 and torch.allclose(
                        window * ratio, channels, atol=1e-5
                    ):
                        found = True
                        break
                if found:
                    break
            if found:
                break
        assert found
    assert clips.validation_batch().shape == (3, 2, 512)


def test_video_clips_are_seeded_crops_of_consecutive_frames(tmp_path):
    data = make_video(tmp_path / "video", count=1, frames=6, size=(40, 48))
    clips = VideoClips(data, frames=3, crop=16)
    video = clips.videos[0]
    assert video.shape == (3, 6, 40, 48) and video.dtype == torch.uint8
    batch = clips.batch(4, torch.Generator().manual_seed(2))
    assert torch.equal(batch, clips.batch(4, torch.Generator().manual_seed(2)))
    for clip in (batch * 255).round().to(torch.uint8):
        hits = [
            (t, y, x)
            for t in range(4)
            for y in range(25)
            for x in range(33)
            for c in (clip, clip.flip(-1))
            if torch.equal(video[:, t : t + 3, y : y + 16, x : x + 16], c)
        ]
        assert hits
    assert clips.validation_batch().shape == (1, 3, 3, 16, 16)
    with pytest.raises(ValueError, match="has 8 frames"):
        VideoClips(data, frames=8, crop=16)


def test_image_crops_take_a_list_of_files(tmp_path):
    data = make_images(tmp_path / "data", count=3)
    files = sorted(data.iterdir())[:2]
    crops = ImageCrops(files, crop=32)
    assert len(crops) == 2 and crops.validation_batch().shape == (2, 3, 32, 32)


# -- the command line --------------------------------------------------------------------------


def test_train_command_line(tmp_path, capsys):
    from neurocodec import cli

    data = make_images(tmp_path / "data", count=3, size=(200, 180))
    base = ["train", "hyperprior", "--data", str(data), "--lmbda", "0.01", "--steps", "2", "--quiet"]
    assert cli.main([*base, "--out", str(tmp_path / "a"), "--crop", "128", "--distortion", "ms-ssim"]) == 2
    assert "MS-SSIM needs crops of at least 161 px" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "b"), "--val-split", "3"]) == 2
    assert "cannot hold 3 of the 3 files" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "c"), "--arch", "N=x"]) == 2
    assert cli.main([*base, "--out", str(tmp_path / "c"), "--arch", "N=8,M"]) == 2
    assert "--arch must look like N=128,M=192" in capsys.readouterr().err

    args = ["--arch", "N=8,M=12", "--crop", "64", "--batch-size", "1", "--val-split", "1", "--val-every", "1"]
    assert (
        cli.main([*base, "--out", str(tmp_path / "d"), *args, "--ema", "0.9", "--lr-schedule", "cosine"]) == 0
    )
    records = [json.loads(line) for line in (tmp_path / "d" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("split") == "val"] == [1, 2]
    meta = json.loads((tmp_path / "d" / "checkpoint" / "meta.json").read_text())
    assert meta["config"]["arch"] == {"N": 8, "M": 12} and meta["config"]["ema"] == 0.9
    assert meta["config"]["lr_schedule"] == "cosine" and meta["config"]["val_split"] == 1


def test_train_command_line_checkpoints_every_k_steps(tmp_path, monkeypatch, capsys):
    from neurocodec import cli
    from neurocodec.train.trainer import Trainer

    data = make_images(tmp_path / "data", count=2, size=(96, 96))
    base = ["train", "hyperprior", "--data", str(data), "--lmbda", "0.01", "--steps", "5", "--quiet"]
    base += ["--arch", "N=8,M=12", "--crop", "64", "--batch-size", "1"]
    saved: list[int] = []
    real_save = Trainer.save
    monkeypatch.setattr(Trainer, "save", lambda self: (saved.append(self.step), real_save(self))[1])
    assert cli.main([*base, "--out", str(tmp_path / "a"), "--checkpoint-every", "2"]) == 0
    assert saved == [2, 4, 5]  # every 2 steps, and at the end
    meta = json.loads((tmp_path / "a" / "checkpoint" / "meta.json").read_text())
    assert meta["config"]["checkpoint_every"] == 2
    for flag in ("--checkpoint-every", "--val-every"):
        assert cli.main([*base, "--out", str(tmp_path / "b"), flag, "0"]) == 2
        assert f"({flag}) must be at least 1 step, not 0" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_train_command_line_takes_a_named_preset(tmp_path):
    from neurocodec import cli

    data = make_images(tmp_path / "data", count=2, size=(96, 96))
    args = [
        "train",
        "mlic",
        "--data",
        str(data),
        "--lmbda",
        "0.01",
        "--steps",
        "1",
        "--quiet",
        "--crop",
        "64",
    ]
    assert cli.main([*args, "--out", str(tmp_path / "a"), "--batch-size", "1", "--arch", "preset=tiny"]) == 0
    meta = json.loads((tmp_path / "a" / "checkpoint" / "meta.json").read_text())
    assert meta["config"]["arch"] == {"preset": "tiny"}
    assert cli.main([*args, "--out", str(tmp_path / "b"), "--arch", "preset=huge"]) == 2
    assert cli.main([*args, "--out", str(tmp_path / "c"), "--arch", "preset=a b"]) == 2


@pytest.mark.parametrize(
    ("model", "arch"),
    [
        ("hyperprior", TINY),
        ("mlic", {"N": 16, "M": 24, "num_slices": 2}),
        ("walloc-image", {"latent_dim": 6, "hyper_channels": 8, "decoder_width": 16}),
    ],
)
def test_bf16_autocast_trains_every_image_family_on_the_cpu(tmp_path, model, arch):
    """``--bf16`` on the CPU (the path CUDA takes by default): the steps run, the weights stay
    float32 and move, and the rates and the integer prior path stay float32 (in bf16 the
    straight-through integers would not be the coding-time ones)."""
    data = make_images(tmp_path / "data", count=2, size=(128, 128))
    cfg = TrainConfig(
        model=model, arch=arch, data=str(data), out=str(tmp_path / "run"), steps=2, batch_size=2,
        crop=64, lr=1e-3, bf16=True,
    )  # fmt: skip
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with trainer._autocast():
        assert torch.is_autocast_enabled("cpu")
    trainer.run(progress=False)
    after = trainer.model.state_dict()
    assert all(v.dtype != torch.bfloat16 for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in log)
    with trainer._autocast():
        out = trainer.model(torch.rand(1, 3, 64, 64))
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values())


def test_bf16_is_off_on_the_cpu_unless_asked(tmp_path):
    trainer = Trainer(TrainConfig(arch=TINY, out=str(tmp_path / "run")))
    with trainer._autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_a_run_starts_from_the_matching_weights_of_another(tmp_path):
    from neurocodec import cli

    data = make_images(tmp_path / "data", count=2, size=(96, 96))
    base = ["train", "walloc-image", "--data", str(data), "--lmbda", "0.01", "--steps", "2", "--quiet"]
    base += ["--crop", "64", "--batch-size", "1"]
    assert cli.main([*base, "--out", str(tmp_path / "plain"), "--arch", "decoder_width=16"]) == 0
    hyper = ["--arch", "decoder_width=16,hyper_channels=8", "--init", str(tmp_path / "plain")]
    assert cli.main([*base, "--out", str(tmp_path / "hyper"), *hyper]) == 0
    from neurocodec.train.checkpoint import load_checkpoint

    plain, _ = load_checkpoint(tmp_path / "plain" / "checkpoint")
    moved = Trainer(TrainConfig(model="walloc-image", arch={"decoder_width": 16, "hyper_channels": 8}))
    taken, total = moved.init_weights(tmp_path / "plain")
    assert 0 < taken < total  # the factorized prior of y is not in the hyperprior model
    start = moved.model.state_dict()
    assert all(torch.equal(start[k[6:]], v) for k, v in plain.items() if k.startswith("model.encoder"))
    assert cli.main([*base, "--out", str(tmp_path / "c"), "--init", str(tmp_path / "nothing")]) == 2

    # the new hyperprior alone, the rest frozen where --init put it
    only = [*hyper, "--train-only", "latent_codec"]
    assert cli.main([*base, "--out", str(tmp_path / "only"), *only]) == 0
    trained, _ = load_checkpoint(tmp_path / "only" / "checkpoint")
    for name, value in plain.items():
        if name.startswith(("model.encoder", "model.decoder")):
            assert torch.equal(trained[name], value), name
    fresh = Trainer(TrainConfig(model="walloc-image", arch={"decoder_width": 16, "hyper_channels": 8})).model
    assert not torch.equal(
        trained["model.latent_codec.h_a.0.weight"], fresh.state_dict()["latent_codec.h_a.0.weight"]
    )
    assert cli.main([*base, "--out", str(tmp_path / "d"), "--train-only", "nothing"]) == 2


def test_a_run_starts_from_an_exported_weight_file(tmp_path):
    from safetensors.torch import save_file

    from neurocodec import cli

    source = Trainer(TrainConfig(model="walloc-image", arch={"decoder_width": 16})).model
    weights = tmp_path / "walloc-image-q1.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    moved = Trainer(TrainConfig(model="walloc-image", arch={"decoder_width": 16}, seed=7))
    assert moved.init_weights(weights) == (len(source.state_dict()),) * 2
    assert all(torch.equal(moved.model.state_dict()[k], v) for k, v in source.state_dict().items())
    # a weight file of 0.1.0's layout (the factorized prior at the top level) fits the same way
    old_layout = {k.replace("latent_codec.", "", 1): v.contiguous() for k, v in source.state_dict().items()}
    assert "entropy_bottleneck.quantiles" in old_layout
    save_file(old_layout, str(tmp_path / "old.safetensors"))
    again = Trainer(TrainConfig(model="walloc-image", arch={"decoder_width": 16}, seed=8))
    assert again.init_weights(tmp_path / "old.safetensors") == (len(source.state_dict()),) * 2

    data = make_images(tmp_path / "data", count=2, size=(96, 96))
    base = ["train", "walloc-image", "--data", str(data), "--lmbda", "0.01", "--steps", "1", "--quiet"]
    base += ["--crop", "64", "--batch-size", "1", "--arch", "decoder_width=16"]
    assert cli.main([*base, "--out", str(tmp_path / "a"), "--init", str(weights)]) == 0
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a weight file")
    assert cli.main([*base, "--out", str(tmp_path / "b"), "--init", str(garbage)]) == 2


def test_default_architecture_comes_from_the_registry():
    trainer = Trainer(TrainConfig(model="toy-audio"))
    assert trainer.config.arch == {}
    assert Trainer(TrainConfig()).config.arch == {"N": 128, "M": 192}


def test_ema_switched_on_in_a_resumed_run_starts_from_the_weights(tmp_path):
    data = make_audio(tmp_path / "audio")
    Trainer(audio_config(tmp_path, data, "run", 4)).run(progress=False, until=2)
    resumed = Trainer(audio_config(tmp_path, data, "run", 4, ema=0.5))
    assert resumed.try_resume() and resumed.step == 2
    assert weights_equal(resumed.model, resumed.ema.model)
