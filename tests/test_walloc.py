"""WaLLoC: the image and audio codecs through real files, their rates, and the training contract.

The models are small and untrained (or trained for a few seconds here): these tests check the
codec machinery, not the shipped quality.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import neurocodec as nc
from neurocodec import container
from neurocodec.codecs.walloc import WaLLoCAudioCodec, WaLLoCImageCodec
from neurocodec.errors import BitstreamError, UnsupportedMediaError
from neurocodec.io.image import read_image
from neurocodec.models.walloc import WaLLoCAudio, WaLLoCImage, lowest_frequency_packets

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim01.png"
SMALL = {"decoder_width": 16, "decoder_blocks": 0}


def photo(height: int = 64, width: int = 96) -> torch.Tensor:
    """A crop of a Kodak photo (a smooth synthetic image when the data is not there)."""
    if KODAK.exists():
        x, _ = read_image(KODAK)
        return x[:, 200 : 200 + height, 300 : 300 + width].contiguous()
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, width).expand(3, height, width)
    return (0.6 * ramp + 0.4 * torch.rand(3, height, width, generator=g)).clamp(0, 1)


def music(samples: int, seed: int = 0) -> torch.Tensor:
    """Two detuned chords with a little noise, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 44100
    left = sum(torch.sin(2 * math.pi * f * t) for f in (220.0, 277.2, 329.6)) / 4
    right = sum(torch.sin(2 * math.pi * f * t) for f in (221.0, 277.0, 330.5)) / 4
    return (torch.stack([left, right]) + 0.02 * torch.randn(2, samples, generator=g)).clamp(-1, 1)


def small_codec(cls, seed: int = 0, **arch):
    torch.manual_seed(seed)
    codec = cls(**{**SMALL, **arch}).eval()
    codec.model.update_tables()
    return codec


def write_weights(directory: Path, cls, quality: int, **arch) -> None:
    """Safetensors + model card of a small untrained model, the way export writes them."""
    codec = small_codec(cls, seed=quality, **arch)
    path = directory / f"{cls.name}-q{quality}.safetensors"
    save_file({k: v.contiguous() for k, v in codec.model.state_dict().items()}, str(path))
    card = {
        "codec": cls.name,
        "quality": quality,
        "media": cls.media,
        "filename": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "arch": {**SMALL, **arch},
        "model_card": {"training_data": "none (untrained, for tests)", "steps": 0, "lambda": None},
    }
    (directory / f"{cls.name}-q{quality}.json").write_text(json.dumps(card))


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(tmp_path))
    write_weights(tmp_path, WaLLoCImageCodec, 1)
    write_weights(tmp_path, WaLLoCImageCodec, 2, latent_dim=6, bits=6, levels=2)
    write_weights(tmp_path, WaLLoCImageCodec, 3, hyper_channels=8)
    write_weights(tmp_path, WaLLoCAudioCodec, 1, levels=4, latent_dim=8)
    write_weights(tmp_path, WaLLoCAudioCodec, 2, levels=4, latent_dim=8, hyper_channels=8)
    return tmp_path


def test_codecs_are_registered(weights: Path) -> None:
    infos = {info.name: info for info in nc.list_codecs()}
    assert infos["walloc-image"].media == "image" and infos["walloc-image"].qualities == (1, 2, 3)
    assert infos["walloc-audio"].media == "audio"


@pytest.mark.parametrize("quality", [1, 2, 3])  # 3: with a hyperprior
@pytest.mark.parametrize(("height", "width"), [(64, 96), (37, 53), (1, 1), (9, 130)])
def test_image_round_trip_through_the_file(weights: Path, quality: int, height: int, width: int) -> None:
    codec = nc.load("walloc-image", quality=quality)
    x = photo(64, 130)[:, :height, :width]
    data = codec.encode(x)
    header, sections = container.unpack(data)
    assert (header.codec, header.quality) == ("walloc-image", quality)
    assert (header.geometry.height, header.geometry.width) == (height, width)
    assert set(sections) == ({"z", "y"} if quality == 3 else {"y"})
    x_hat = nc.decode(data)  # the file names its codec, quality and weights
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    assert torch.equal(codec.decode(data), x_hat)


@pytest.mark.parametrize("quality", [1, 2])  # 2: with a hyperprior
@pytest.mark.parametrize("samples", [1, 15, 16, 1001])
def test_audio_round_trip_through_the_file(weights: Path, quality: int, samples: int) -> None:
    codec = nc.load("walloc-audio", quality=quality)
    x = music(samples)
    data = codec.encode(x)
    header, sections = container.unpack(data)
    g = header.geometry
    assert (g.sample_rate, g.channels, g.samples) == (44100, 2, samples)
    assert set(sections) == ({"z", "y"} if quality == 2 else {"y"})
    x_hat = nc.decode(data)
    assert x_hat.shape == (2, samples) and x_hat.abs().max() <= 1
    assert torch.equal(codec.decode(data), x_hat)
    assert container.unpack(codec.encode(x, sample_rate=48000))[0].geometry.sample_rate == 48000


def decode_on_1_and_2_threads(codec, data: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.decode(data)
        torch.set_num_threads(2)
        return one, codec.decode(data)
    finally:
        torch.set_num_threads(threads)


def test_decoding_is_deterministic_across_threads_and_batches() -> None:
    codec = small_codec(WaLLoCImageCodec)
    data = codec.encode(photo())
    header, sections = container.unpack(data)
    shape = codec._latent_shape((header.geometry.height, header.geometry.width))
    reference = codec.model.latent_codec.entropy_bottleneck.decompress(sections["y"], shape)
    assert torch.equal(reference, codec.latent(photo().unsqueeze(0)))  # the file holds latent()
    one, two = decode_on_1_and_2_threads(codec, data)
    assert torch.equal(one, two)
    # a batch of inputs gives each one the latent it gets alone (what a latent dataset relies on)
    batch = torch.stack([photo(), photo().flip(-1)])
    assert torch.equal(codec.latent(batch)[:1], reference)


def test_hyperprior_files_decode_the_same_everywhere() -> None:
    codec = small_codec(WaLLoCImageCodec, hyper_channels=8)
    assert codec.model.pad_step == 32 and codec.model.hyper_channels
    x = photo(70, 100)
    data = codec.encode(x)
    header, sections = container.unpack(data)
    assert set(sections) == {"z", "y"}
    y_hat = codec.model.latent_codec.decompress(sections, codec._latent_shape((70, 100)))
    assert y_hat.shape == (1, 12, 12, 16)  # 70x100 padded to 96x128, at 1/8
    assert torch.equal(y_hat.float(), codec.latent(x.unsqueeze(0)))  # the file holds latent()
    means = y_hat - torch.round(y_hat)
    assert bool((means != 0).any())  # rounded around the predicted means, on their 1/16 grid
    assert torch.equal(torch.round(y_hat * 16), y_hat * 16)
    one, two = decode_on_1_and_2_threads(codec, data)
    assert torch.equal(one, two) and one.shape == x.shape
    truncated = container.pack(header, {"y": sections["y"]})
    with pytest.raises(nc.BitstreamError, match="lacks its z section"):
        codec.decode(truncated)


def test_audio_hyperprior_files_decode_the_same_everywhere() -> None:
    """The 1-D hyperprior: y rounded around the integer h_s's means, the same on any thread count."""
    codec = small_codec(WaLLoCAudioCodec, levels=4, latent_dim=8, hyper_channels=8)
    assert codec.model.pad_step == 64 and codec.model.hyper_channels
    x = music(1000)
    data = codec.encode(x)
    _, sections = container.unpack(data)
    y_hat = codec.model.latent_codec.decompress(sections, codec._latent_shape((1000,)))
    assert y_hat.shape == (1, 8, 64)  # 1000 samples padded to 1024, at 1/16
    assert torch.equal(y_hat.float(), codec.latent(x.unsqueeze(0)))
    assert bool((y_hat != torch.round(y_hat)).any()) and torch.equal(torch.round(y_hat * 16), y_hat * 16)
    m = codec.model
    z = torch.round(m.latent_codec.side_latents(codec._latent(x.unsqueeze(0)))["z"])
    index, means = m.latent_codec.h_s.forward_integer(z)  # the int8 path
    reference = m.latent_codec.h_s(z.double())  # the float64 reference path
    assert torch.equal(index, reference[0].to(torch.int32)) and torch.equal(means, reference[1])
    one, two = decode_on_1_and_2_threads(codec, data)
    assert torch.equal(one, two) and one.shape == x.shape


def _fit_prior(model, y: torch.Tensor, steps: int = 200) -> None:
    """Fit only the factorized prior (density and quantiles) to fixed latents ``y``."""
    prior = model.latent_codec.entropy_bottleneck
    density = [p for n, p in prior.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam(density, lr=3e-2)
    aux_opt = torch.optim.Adam([prior.quantiles], lr=1.0)  # latents span about +-100
    prior.train()
    for _ in range(steps):
        _, lik = prior(y)
        loss = -torch.log2(lik).sum() / y.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        aux = prior.aux_loss()
        aux_opt.zero_grad()
        aux.backward()
        aux_opt.step()
    prior.eval()
    prior.update_tables()


def test_file_bytes_match_the_likelihoods() -> None:
    """The real rANS bytes of y are within 3 % of -log2 of its likelihoods (the training rate)."""
    codec = small_codec(WaLLoCImageCodec)
    x = photo(128, 192)
    with torch.no_grad():
        y = codec.model.encode_latent(codec.model.analysis(x.unsqueeze(0)))
    _fit_prior(codec.model, y)
    with torch.no_grad():
        ideal_bits = float(
            -torch.log2(codec.model.latent_codec.entropy_bottleneck.likelihood(torch.round(y))).sum()
        )
    _, sections = container.unpack(codec.encode(x))
    real_bits = 8 * len(sections["y"])
    assert ideal_bits > 8 * 1000  # a non-trivial latent, not a few bytes of overhead
    assert abs(real_bits / ideal_bits - 1) < 0.03, (real_bits, ideal_bits)


def test_compander_bounds_the_latent() -> None:
    codec = small_codec(WaLLoCImageCodec, bits=4, latent_scale=1000.0)
    y = codec.latent(photo().unsqueeze(0))
    assert 6 <= y.abs().max() <= 7  # saturates at 2**(4-1) - 1: at most 15 values
    assert codec.decode(codec.encode(photo())).shape == photo().shape


def test_training_contract() -> None:
    torch.manual_seed(0)
    model = WaLLoCImage(**SMALL, wavelet_weight=2.0).train()
    x = photo().unsqueeze(0)
    out = model(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (1, 12, 8, 12)
    with torch.no_grad():
        X = model.analysis(x)
        X_hat = model.decode_latent(torch.round(model.encode_latent(X)))
        expected = 2.0 * torch.mean((X_hat - X) ** 2)
    model.eval()
    assert torch.allclose(model(x)["loss_terms"]["wavelet_mse"], expected)
    assert model.aux_loss().requires_grad
    with torch.autocast("cpu", dtype=torch.bfloat16):  # only the decoder network in bf16
        mixed = model(x)
    assert mixed["likelihoods"]["y"].dtype == mixed["x_hat"].dtype == torch.float32
    assert torch.equal(mixed["likelihoods"]["y"], model(x)["likelihoods"]["y"])
    assert sum(p.numel() for p in model.encoder.parameters()) == 192 * 12 + 12  # the paper's 2,316
    audio = WaLLoCAudio(**SMALL)
    assert audio(music(1024).unsqueeze(0))["likelihoods"]["y"].shape == (1, 64, 4)
    audio_hyper = WaLLoCAudio(**SMALL, hyper_channels=8).train()  # a 1-D hyperprior
    out = audio_hyper(music(4096).unsqueeze(0))
    assert out["likelihoods"]["y"].shape == (1, 64, 16) and out["likelihoods"]["z"].shape == (1, 8, 4)
    hyper = WaLLoCImage(**SMALL, hyper_channels=8).train()
    out = hyper(photo(64, 128).unsqueeze(0))
    assert out["likelihoods"]["y"].shape == (1, 12, 8, 16) and out["likelihoods"]["z"].shape == (1, 8, 2, 4)
    assert hyper.aux_loss().requires_grad


def test_untrained_model_keeps_the_lowest_frequency_packets() -> None:
    """At initialization the linear encoder/decoder pair is the codec that keeps the
    ``latent_dim`` lowest-frequency packets (the LL band and its neighbours) and drops the rest."""
    assert lowest_frequency_packets(3, 3, 2)[:6].tolist() == [0, 64, 128, 1, 65, 129]
    model = WaLLoCImage(**SMALL, latent_scale=1e6).eval()  # a step too fine to matter
    x = photo().unsqueeze(0)
    with torch.no_grad():
        X = model.analysis(x)
        X_hat = model.decode_latent(torch.round(model.encode_latent(X)))
    kept = torch.zeros(model.packets, dtype=torch.bool)
    kept[lowest_frequency_packets(3, 3, 2)[:12]] = True
    assert torch.allclose(X_hat[:, kept], X[:, kept], atol=1e-5)
    assert torch.equal(X_hat[:, ~kept], torch.zeros_like(X_hat[:, ~kept]))


def test_overfit_one_image_raises_psnr() -> None:
    """200 CPU steps of the R-D loss on one crop: the coded PSNR rises (the model learns)."""
    torch.manual_seed(0)
    x = photo(64, 64)
    codec = WaLLoCImageCodec(decoder_width=16, decoder_blocks=0)
    model = codec.model

    def coded_psnr() -> float:
        codec.eval()
        model.update_tables()
        x_hat = codec.decode(codec.encode(x))
        return -10 * math.log10(float(torch.mean((x_hat - x) ** 2)))

    before = coded_psnr()
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    opt, aux_opt = torch.optim.Adam(main, lr=1e-3), torch.optim.Adam(aux, lr=1e-2)
    model.train()
    for _ in range(200):
        out = model(x.unsqueeze(0))
        bpp = -torch.log2(out["likelihoods"]["y"]).sum() / x[0].numel()
        loss = 0.01 * 255**2 * torch.mean((out["x_hat"] - x) ** 2) + bpp + out["loss_terms"]["wavelet_mse"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        aux_opt.zero_grad()
        model.aux_loss().backward()
        aux_opt.step()
    after = coded_psnr()
    assert after > before + 3, (before, after)


def test_bad_input() -> None:
    image, audio = small_codec(WaLLoCImageCodec), small_codec(WaLLoCAudioCodec, levels=3, latent_dim=8)
    with pytest.raises(UnsupportedMediaError, match="2 channels"):
        audio.encode(music(64)[:1])  # mono
    with pytest.raises(UnsupportedMediaError, match="no sample_rate"):
        image.encode(photo(), sample_rate=44100)
    with pytest.raises(nc.NeurocodecError, match="sample rate"):
        audio.encode(music(64), sample_rate=0)
    header, _ = container.unpack(image.encode(photo()))
    with pytest.raises(BitstreamError, match="lacks its y section"):
        image.decode(container.pack(header, {"z": b"\x00"}))


@pytest.mark.parametrize("media", ["image", "audio"])
def test_train_export_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, media: str) -> None:
    """``neurocodec train walloc-*`` for two steps, ``export``, then the registry loads the weights."""
    import soundfile as sf
    from PIL import Image

    from neurocodec.train.export import export_weights
    from neurocodec.train.trainer import TrainConfig, Trainer

    data = tmp_path / "data"
    data.mkdir()
    if media == "image":
        Image.fromarray((photo(64, 96) * 255).round().byte().permute(1, 2, 0).numpy()).save(data / "a.png")
        x, extra = photo(40, 50), {"crop": 64}
    else:
        sf.write(data / "a.wav", music(4096).T.numpy(), 44100)
        x, extra = music(1000), {"samples": 1024}
    arch = {**SMALL, **({} if media == "image" else {"levels": 4, "latent_dim": 8})}
    config = TrainConfig(
        model=f"walloc-{media}",
        arch=arch,
        data=str(data),
        out=str(tmp_path / "run"),
        steps=2,
        batch_size=2,
        **extra,
    )
    Trainer(config).run(progress=False)
    card = export_weights(tmp_path / "run" / "checkpoint", 3, out_dir=tmp_path / "weights")
    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(card.parent))
    codec = nc.load(f"walloc-{media}", quality=3)
    assert nc.decode(codec.encode(x)).shape == x.shape


@pytest.mark.parametrize(
    ("dims", "shape", "window"), [(1, (2, 8, 37), 16), (2, (2, 8, 9, 13), 4), (2, (1, 8, 5, 3), 8)]
)
def test_attention_is_global_within_each_window_only(dims: int, shape: tuple, window: int) -> None:
    """Windowed attention equals plain attention run on each (edge-cropped) window by itself, so
    decoder memory stays bounded for any input length (global attention on a 2048x2048 image or
    ten minutes of audio needs tens of GB)."""
    import torch.nn.functional as F

    from neurocodec.models.walloc import AttentionBlock

    torch.manual_seed(0)
    block = AttentionBlock(dims, 8, window=window)
    torch.nn.init.normal_(block.out.weight)
    x = torch.randn(shape)
    qkv = block.qkv(block.norm(x))
    expected = torch.empty_like(x)
    starts = [range(0, s, window) for s in shape[2:]]
    for corner in itertools.product(*starts):
        region = (..., *(slice(c, c + window) for c in corner))
        q, k, v = (t.flatten(2).transpose(1, 2)[:, None] for t in qkv[region].chunk(3, 1))
        out = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2)
        expected[region] = out.reshape(expected[region].shape)
    torch.testing.assert_close(block(x), x + block.out(expected), atol=1e-5, rtol=1e-5)

    long = AttentionBlock(1, 4, window=64)(torch.randn(1, 4, 100_000))  # global: 40 GB of scores
    assert long.shape == (1, 4, 100_000)
