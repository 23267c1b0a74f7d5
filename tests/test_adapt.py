"""Encoder-side adaptation (``effort``, :mod:`neurocodec.codecs.adapt`): effort 0 is the plain
encoder, effort N > 0 writes files the unchanged decoder reads, deterministically, and with the
shipped weights at a rate-distortion loss (of the real file) no worse than effort 0's."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import neurocodec as nc
import neurocodec.codecs.image_transform as image_transform_module
import neurocodec.codecs.walloc as walloc_module
from neurocodec.codecs.adapt import sga_round, temperature
from neurocodec.codecs.hyperprior import HyperpriorCodec
from neurocodec.codecs.mlic import MLICCodec
from neurocodec.codecs.walloc import WaLLoCAudioCodec, WaLLoCImageCodec
from neurocodec.errors import ConfigError
from neurocodec.evaluation.metrics import psnr
from neurocodec.io.image import read_image
from neurocodec.registry import WEIGHTS_DIR

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
SHIPPED = sorted(WEIGHTS_DIR.glob("hyperprior-q*.json"))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    c = HyperpriorCodec(N=16, M=24, quality=2, weights_hash=b"\x01\x02\x03\x04").eval()
    c.model.update_tables()
    c.lmbda = 0.0067
    return c


def image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0, 1, w).expand(3, h, w)
    return (0.7 * base + 0.3 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


def rd_loss_of_file(codec, x: torch.Tensor, data: bytes) -> float:
    """lambda * 255^2 * MSE + bpp of a real file: its size, and the 8-bit image it decodes to."""
    bpp = 8 * len(data) / (x.shape[1] * x.shape[2])
    return codec.lmbda * 255**2 * 10 ** (-psnr(x, nc.decode(data)) / 10) + bpp


# -- the relaxed rounding ----------------------------------------------------------------------


def test_sga_round_lies_between_floor_and_ceil_and_hardens_as_tau_falls():
    v = torch.linspace(-3, 3, 1001, dtype=torch.float64).requires_grad_()
    g = torch.Generator().manual_seed(0)
    soft = sga_round(v, 0.5, g)
    assert bool((soft >= torch.floor(v)).all() and (soft <= torch.ceil(v)).all())
    soft.sum().backward()
    assert v.grad is not None and bool(torch.isfinite(v.grad).all()) and float(v.grad.abs().sum()) > 0
    hard = sga_round(v.detach(), 1e-3, g)
    near = (v.detach() - torch.round(v.detach())).abs() < 0.4
    assert torch.allclose(hard[near], torch.round(v.detach())[near], atol=1e-6)
    assert torch.equal(sga_round(torch.tensor([2.0, -1.0]), 0.5, g), torch.tensor([2.0, -1.0]))


def test_temperature_schedule():
    taus = [temperature(t, 100) for t in range(100)]
    assert taus[0] == taus[35] == 0.5 and taus[-1] < 0.15
    assert all(a >= b for a, b in itertools.pairwise(taus))


def test_latent_forward_is_the_eval_forward(codec):
    x = image(64, 64)[None]
    m = codec.model
    with torch.no_grad():
        y = m.g_a(x)
        a, b = m(x), m.latent_forward(y, m.latent_codec.side_latents(y), "ste")
    assert torch.equal(a["x_hat"], b["x_hat"])
    for key in ("y", "z"):
        assert torch.equal(a["likelihoods"][key], b["likelihoods"][key])


# -- the codec -----------------------------------------------------------------------------------


def test_effort_zero_is_the_plain_encoder(codec, monkeypatch):
    x = image(70, 90)
    plain = codec.encode(x)

    def refuse(*args, **kwargs):
        raise AssertionError("effort 0 must not adapt")

    monkeypatch.setattr(image_transform_module, "refine", refuse)
    assert codec.encode(x, effort=0) == plain
    assert codec.encode_batch([x], effort=0) == [plain]


def test_effort_writes_files_the_decoder_reads_and_is_deterministic(codec):
    x = image(70, 90, seed=1)
    data = codec.encode(x, effort=6)
    assert codec.encode(x, effort=6) == data  # same input, weights and effort: same bytes
    x_hat = codec.decode(data)
    assert x_hat.shape == x.shape and bool(torch.isfinite(x_hat).all())
    assert codec.encode(x, effort=0) != data  # it did adapt (random weights leave much to gain)


def test_mlic_effort_roundtrip():
    torch.manual_seed(0)
    c = MLICCodec(quality=1, weights_hash=b"\x05\x06\x07\x08", N=16, M=24, num_slices=3, channel_context=(16, 8),
                  attention=8, heads=1, head_dim=8, head_hidden=(32, 16), lrp=(16, 8)).eval()  # fmt: skip
    c.model.update_tables()
    c.lmbda = 0.0067
    x = image(64, 64, seed=2)
    data = c.encode(x, effort=3)
    assert c.encode(x, effort=3) == data
    x_hat = c.decode(data)
    assert x_hat.shape == x.shape and bool(torch.isfinite(x_hat).all())


@pytest.fixture(scope="module", params=[8, 0], ids=["hyperprior", "factorized"])
def walloc(request):
    """A small, untrained ``walloc-image`` with a hyperprior (``z`` of 8 channels) or a factorized prior."""
    torch.manual_seed(0)
    c = WaLLoCImageCodec(quality=1, weights_hash=b"\x09\x0a\x0b\x0c", latent_dim=12, decoder_width=16,
                         decoder_blocks=0, hyper_channels=request.param).eval()  # fmt: skip
    c.model.update_tables()
    c.lmbda = 0.0067
    return c


def test_walloc_latent_forward_is_the_eval_forward(walloc):
    m = walloc.model
    x = image(64, 96)[None]
    with torch.no_grad():
        y = m.encode_latent(m.analysis(x))
        a, b = m(x), m.latent_forward(y, m.latent_codec.side_latents(y), "ste")
    assert torch.equal(a["x_hat"], b["x_hat"])
    assert a["likelihoods"].keys() == b["likelihoods"].keys() == ({"y", "z"} if m.hyper_channels else {"y"})
    for key, likelihoods in a["likelihoods"].items():
        assert torch.equal(likelihoods, b["likelihoods"][key])


def test_walloc_effort_roundtrip(walloc, monkeypatch):
    x = image(70, 90, seed=3)
    data = walloc.encode(x, effort=4)
    assert walloc.encode(x, effort=4) == data
    x_hat = walloc.decode(data)
    assert x_hat.shape == x.shape and bool(torch.isfinite(x_hat).all())
    assert walloc.encode(x) != data  # it did adapt

    def refuse(*args, **kwargs):
        raise AssertionError("effort 0 must not adapt")

    monkeypatch.setattr(walloc_module, "refine", refuse)
    walloc.encode(x, effort=0)


def test_walloc_audio_has_no_effort():
    c = WaLLoCAudioCodec(latent_dim=8, decoder_width=16, decoder_blocks=0)
    c.lmbda = 0.1
    with pytest.raises(ConfigError, match="no encoder-side adaptation"):
        c.encode(torch.zeros(2, 4096), sample_rate=44100, effort=2)


def test_effort_errors(codec):
    x = image(32, 32)
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="effort"):
            codec.encode(x, effort=bad)
    lmbda, codec.lmbda = codec.lmbda, None
    try:
        with pytest.raises(ConfigError, match="lambda"):
            codec.encode(x, effort=2)
    finally:
        codec.lmbda = lmbda


# -- the shipped weights -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "quality", "lmbda", "effort", "top", "left"),
    [("hyperprior", 1, 0.0018, 20, 100, 200), ("walloc-image", 2, 0.0025, 10, 96, 192)],
)
def test_shipped_effort_is_better_in_real_rate_distortion(shipped, name, quality, lmbda, effort, top, left):
    """With the shipped weights, adapted files have a lower R-D loss (real size, 8-bit output)."""
    if not (WEIGHTS_DIR / f"{name}-q{quality}.json").exists() or not KODAK.is_dir():
        pytest.skip(f"needs the shipped {name} weights and Kodak")
    codec = nc.load(name, quality=quality)
    assert codec.lmbda == lmbda  # from the model card
    x = read_image(KODAK / "kodim23.png")[0][:, top : top + 128, left : left + 192].contiguous()  # 128x192
    plain = rd_loss_of_file(codec, x, codec.encode(x))
    data = codec.encode(x, effort=effort)
    assert data == codec.encode(x, effort=effort)
    assert rd_loss_of_file(codec, x, data) < plain


def layouts(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``x`` (C, H, W, contiguous) in other memory layouts, with the same pixels."""
    wide = torch.cat([x, x], 2)
    return {
        "channels-last": x.unsqueeze(0).contiguous(memory_format=torch.channels_last)[0],
        "hwc-array": x.permute(1, 2, 0).contiguous().permute(2, 0, 1),  # as torch.from_numpy(hwc).permute
        "slice": wide[:, :, : x.shape[2]],
        "batched-channels-last": x.unsqueeze(0).contiguous(memory_format=torch.channels_last),
    }


def test_the_encoder_sees_one_layout_whatever_the_input(codec, monkeypatch):
    """Every layout reaches ``_encode`` as the same contiguous tensor, so it codes the same file."""
    x = image(40, 56, seed=3)
    seen = []
    original = type(codec)._encode

    def spy(self, x, **options):
        seen.append((x.stride(), x.clone()))
        return original(self, x, **options)

    monkeypatch.setattr(type(codec), "_encode", spy)
    data = codec.encode(x, effort=2)
    for name, v in layouts(x).items():
        assert not v.is_contiguous(), name
        assert codec.encode(v, effort=2) == data, name
    assert all(stride == seen[0][0] and torch.equal(t, seen[0][1]) for stride, t in seen)


@pytest.mark.skipif(
    not SHIPPED or not KODAK.is_dir(), reason="needs the shipped hyperprior weights and Kodak"
)
def test_shipped_effort_is_independent_of_memory_layout(shipped):
    """Issue 33: a channels-last kodim05 gave another file than the contiguous one at effort 20 (the
    analysis ran in another layout, whose float rounding differs); the crop reproduced it."""
    codec = nc.load("hyperprior", quality=3)
    x = read_image(KODAK / "kodim05.png")[0][:, :128, :192].contiguous()
    data = codec.encode(x, effort=20)
    for name in ("channels-last", "hwc-array"):
        assert codec.encode(layouts(x)[name], effort=20) == data, name


@pytest.mark.skipif(
    not SHIPPED or not KODAK.is_dir(), reason="needs the shipped hyperprior weights and Kodak"
)
def test_cli_effort(tmp_path: Path, shipped) -> None:
    x = read_image(KODAK / "kodim23.png")[0][:, 100:164, 200:296]
    png = tmp_path / "crop.png"
    from neurocodec.io.image import write_image

    write_image(png, x)
    cli = [sys.executable, "-m", "neurocodec"]
    done = subprocess.run([*cli, "encode", str(png), "--effort", "3", "-q", "1"], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert nc.decode((tmp_path / "crop.ncd").read_bytes()).shape == x.shape
    bad = subprocess.run([*cli, "encode", str(png), "--effort", "-2", "-f"], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "--effort" in bad.stderr and "Traceback" not in bad.stderr
