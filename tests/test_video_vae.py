"""The video VAE (``video-vae``): shapes (4x8x8), causality in time, the image path that bypasses
the temporal layers, group-by-group decoding, round trips from the file alone (API and CLI),
damaged and wrong inputs, decoding on 1 and 2 threads, text guidance, joint training in the
harness (its fuzz target runs in tests/test_fuzz.py). Tiny architectures with seeded weights: nothing here needs shipped ones."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import neurocodec as nc
from neurocodec import cli, container
from neurocodec.codecs.video_vae import VideoVAECodec, rgb_to_ycbcr, ycbcr_to_rgb
from neurocodec.errors import BitstreamError, ConfigError, ContainerError, UnsupportedMediaError
from neurocodec.models.video_vae import GROUP, VideoVAE, streaming

TINY = {"width": 8, "latent": 8, "hidden": 8, "hyper": 8}
CARPHONE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "video"
    / ("carphone_qcif_176x144_30000-1001fps_i420_120f.y4m")
)

pytestmark = pytest.mark.usefixtures("one_thread")


def awaken(model: torch.nn.Module, seed: int = 1) -> None:
    """Give the zero-initialised layers (temporal convolutions, text attention outputs) random
    weights, so that tests of what they may and may not see can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if (".time." in name or ".text.out." in name) and name.endswith("weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        if isinstance(model, VideoVAE):
            model.decoder.up[-1].bias.fill_(0.5)  # frames around mid-grey, not clamped to black
            model.motion_encoder.out.weight.mul_(40)  # latents of several quantization steps
            model.encoder.out.weight.mul_(10)
            model.decoder.inp.weight.mul_(0.1)


def make_codec(
    text_dim: int = 0,
    quality: int = 1,
    weights_hash: bytes = b"\x01\x02\x03\x04",
    temporal: bool = False,
    text_model: str = "",
) -> VideoVAECodec:
    torch.manual_seed(0)
    codec = VideoVAECodec(
        **TINY, text_dim=text_dim, temporal=temporal, text_model=text_model, quality=quality,
        weights_hash=weights_hash,
    ).eval()  # fmt: skip
    awaken(codec.model)
    codec.model.update_tables()
    return codec


@pytest.fixture(scope="module", params=[False, True], ids=["hyperprior", "temporal"])
def codec(request) -> VideoVAECodec:
    """The codec with each latent codec: the plain hyperprior and the temporal context."""
    return make_codec(temporal=request.param)


def clip(frames: int = 9, h: int = 40, w: int = 56, seed: int = 0) -> torch.Tensor:
    """A moving smooth clip with some noise ``(3, frames, h, w)`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames).view(-1, 1, 1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = torch.stack(
        [0.5 + 0.3 * torch.sin(6 * xx + 0.4 * t + c) * torch.cos(4 * yy - 0.2 * t) for c in range(3)]
    )
    return (x + 0.05 * torch.rand(x.shape, generator=g)).clamp(0, 1)


# -- the network ------------------------------------------------------------------------------------


def test_shapes_are_4x8x8_and_images_take_the_image_path():
    torch.manual_seed(0)
    model = VideoVAE(**TINY)
    video = torch.rand(2, 3, 8, 64, 32)
    out = model(video)
    assert out["x_hat"].shape == video.shape
    assert out["likelihoods"]["y"].shape == (2 * 8 // GROUP, TINY["latent"], 8, 4)  # 4x8x8
    assert out["likelihoods"]["z"].shape == (4, TINY["hyper"], 2, 1)
    image = torch.rand(3, 3, 64, 32)
    out = model(image)
    assert out["x_hat"].shape == image.shape and out["likelihoods"]["y"].shape == (3, TINY["latent"], 8, 4)
    with pytest.raises(ValueError, match="groups of 4"):
        model.analysis(torch.rand(1, 3, 6, 32, 32))


def test_the_temporal_layers_are_causal_and_decode_group_by_group():
    torch.manual_seed(0)
    model = VideoVAE(**TINY).eval()
    awaken(model)
    x = torch.rand(1, 3, 12, 32, 32)
    later = x.clone()
    later[:, :, 9] = torch.rand(3, 32, 32)  # a frame of the third group
    with torch.no_grad():
        s, s_later = model.encoder(x), model.encoder(later)
        assert torch.equal(s[:, :, :9], s_later[:, :, :9]) and not torch.equal(s[:, :, 9], s_later[:, :, 9])
        y, y_later = model.analysis(x), model.analysis(later)
        assert torch.equal(y[:2], y_later[:2]) and not torch.equal(y[2], y_later[2])
        # the encoder streams too: group by group, the latent of one pass over the whole video
        assert torch.allclose(model.analysis_groups(x), y, atol=1e-5)
        frames, frames_later = model.synthesis(y, 1), model.synthesis(y_later, 1)
        assert torch.equal(frames[:, :, :8], frames_later[:, :, :8])
        assert not torch.allclose(frames[:, :, 8:], frames_later[:, :, 8:])
        # streaming, one group at a time, gives the frames of one pass over the whole video
        groups = list(model.decode_groups(y))
        assert len(groups) == 3 and all(g.shape == (1, 3, 4, 32, 32) for g in groups)
        assert torch.allclose(torch.cat(groups, dim=2), frames, atol=1e-5)
    with streaming(model.decoder):  # the carried state is dropped on the way out
        pass
    assert all(getattr(m, "carried", None) is None for m in model.modules())


def test_the_temporal_prior_sees_the_latent_frame_before_and_never_a_later_one():
    from neurocodec.entropy.latent_codecs.temporal import fold, stack

    codec = make_codec(temporal=True)
    lc = codec.model.latent_codec
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # the prior's layers awake: random integer weights
        for p in lc.prior.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    m, groups = TINY["latent"], 3
    y_hat = torch.round(torch.randn(1, m * groups, 4, 4, generator=g) * 4, decimals=0).double()
    hyper = stack(torch.randint(0, 20, (groups, 2 * m, 4, 4), generator=g).double(), 1)
    schedule = lc.prior.schedule(groups)
    assert len(schedule.steps) == 2 * groups  # each latent frame: its anchors, then the rest

    def parameters(y_hat: torch.Tensor) -> list[torch.Tensor]:
        return [torch.cat(lc.prior(step, y_hat, hyper)) for step in schedule.steps]

    before = parameters(y_hat)
    changed = y_hat.clone()
    changed[:, m : 2 * m] += 3  # latent frame 1
    after = parameters(changed)
    assert all(
        torch.equal(a, b) for a, b in zip(before[:3], after[:3], strict=True)
    )  # frame 0, frame 1's anchors
    assert not torch.equal(before[3], after[3])  # frame 1's non-anchors see its anchors
    assert not torch.equal(before[4], after[4])  # frame 2 sees frame 1
    integer = [torch.cat(lc.prior.forward_integer(step, y_hat, hyper)) for step in schedule.steps]
    assert all(torch.equal(a.double(), b.double()) for a, b in zip(before, integer, strict=True))
    assert fold(torch.zeros(2, m, groups, 4, 4)).shape == (2 * groups, m, 4, 4)


def test_the_temporal_training_pass_quantizes_as_the_file_and_predicts_its_rate():
    codec = make_codec(temporal=True)
    lc = codec.model.latent_codec
    y = codec.model.codec_layout(codec.model.analysis(clip(8, 32, 32)[None] * 1.0), 1).detach()
    with torch.no_grad():
        y_hat, likelihoods = lc(y, None, "ste")
    decoded = lc.decompress(lc.compress(y), y.shape)
    assert torch.equal(y_hat.double(), decoded)
    bits = float(-torch.log2(likelihoods["y"]).sum())
    assert len(lc.compress(y)["y"]) * 8 == pytest.approx(bits, rel=0.05, abs=8 * 20)  # + framing


# -- the codec --------------------------------------------------------------------------------------


def test_round_trip_of_odd_sizes_is_deterministic_and_on_the_8_bit_grid(codec):
    x = clip(9, 37, 53)
    data = codec.encode(x, frame_rate=(30000, 1001))
    header, sections = container.unpack(data)
    assert list(sections) == ["header", "z", "y"] and sections["header"] == bytes([1, 0])
    assert header.geometry.frames == 9 and header.geometry.rate_num == 30000
    y = codec.decode(data)
    assert y.shape == x.shape
    assert torch.equal(y, torch.round(y * 255) / 255)
    assert codec.encode(x, frame_rate=(30000, 1001)) == data
    assert torch.equal(codec.decode(data), y)


def test_causal_in_the_file_a_later_frame_changes_no_earlier_group(codec):
    x = clip(12, 32, 32)
    later = x.clone()
    later[:, 10] = 1 - later[:, 10]
    a, b = codec.decode(codec.encode(x)), codec.decode(codec.encode(later))
    assert torch.equal(a[:, :8], b[:, :8])
    assert not torch.equal(a[:, 8:], b[:, 8:])


def test_a_one_frame_video_bypasses_every_temporal_layer():
    x = clip(1, 40, 48)
    codec = make_codec()
    data = codec.encode(x)
    z_shape = (1, TINY["hyper"], 2, 2)  # one latent frame of 64x64 padded pixels
    assert codec.model.latent_codec.hyper_shape((1, TINY["latent"], 8, 8)) == z_shape
    y = codec.decode(data)
    assert y.shape == x.shape
    with torch.no_grad():  # other temporal and motion weights: the same file and frame
        for name, p in codec.model.named_parameters():
            if ".time." in name or name.startswith("motion_"):
                p.add_(0.3)
    assert codec.encode(x) == data
    assert torch.equal(codec.decode(data), y)


def test_decoding_is_the_same_on_1_and_2_threads(codec):
    data = codec.encode(clip(8, 64, 96, seed=3))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.decode(data)
        torch.set_num_threads(2)
        two = codec.decode(data)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_yuv_planes_are_coded_through_rgb_and_come_back_as_planes(codec):
    rgb = torch.rand(1, 3, 2, 4, 5, dtype=torch.float64)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)
    ycbcr = rgb_to_ycbcr(clip(5, 32, 32)[None])[0].clamp(0, 1)
    data = codec.encode(ycbcr, colour="yuv420")
    assert container.unpack(data)[0].geometry.colour == "yuv420"
    y = codec.decode(data)
    assert y.shape == ycbcr.shape
    assert float((y - ycbcr).abs().mean()) < float((y - ycbcr_to_rgb(ycbcr[None])[0]).abs().mean())


def test_damaged_truncated_and_wrong_inputs_are_refused(codec):
    data = codec.encode(clip(5, 32, 32))
    header, sections = container.unpack(data)
    with pytest.raises(ContainerError):
        codec.decode(data[:-7])
    bad = {
        "version": {**sections, "header": bytes([2, 0])},
        "flags": {**sections, "header": bytes([1, 4])},
        "text without flag": {**sections, "text": b"a caption"},
        "flag without text": {**sections, "header": bytes([1, 1])},
        "no y": {k: v for k, v in sections.items() if k != "y"},
        "no header": {k: v for k, v in sections.items() if k != "header"},
    }
    for case, damaged in bad.items():
        with pytest.raises(BitstreamError):
            codec.decode(container.pack(header, damaged))
        assert case
    refused = 0
    for cut in (1, 5, len(sections["y"]) // 2):
        try:
            codec.decode(container.pack(header, {**sections, "y": sections["y"][:-cut]}))
        except BitstreamError:
            refused += 1
    assert refused == 3
    with pytest.raises(UnsupportedMediaError):
        codec.encode(torch.rand(3, 32, 32))  # an image tensor: this codec codes video
    with pytest.raises(ContainerError):
        codec.decode(container.pack(container.Header("video-vae", 1, b"\x01\x02\x03\x04",
                                                     container.ImageGeometry(32, 32, 3, 8)), sections))  # fmt: skip


def test_text_guidance_travels_in_the_file():
    codec = make_codec(text_dim=6, weights_hash=b"\x07\x07\x07\x07")

    def encoder(text: str) -> torch.Tensor:  # a fixed random embedding per caption
        g = torch.Generator().manual_seed(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
        return torch.randn(len(text.split()), 6, generator=g)

    x = clip(8, 32, 32)
    plain = codec.encode(x)
    codec.text = "a man talks on a phone in a moving car"
    with pytest.raises(ConfigError, match="text encoder"):
        codec.encode(x)
    codec.text_encoder = encoder
    guided = codec.encode(x)
    _, sections = container.unpack(guided)
    assert sections["header"] == bytes([1, 1]) and sections["text"].decode() == codec.text
    assert torch.equal(codec.decode(guided), codec.decode(guided))
    assert not torch.equal(codec.decode(guided), codec.decode(plain))  # the text changed the frames
    assert container.unpack(codec.encode(x[:, :1]))[1]["header"] == bytes([1, 0])  # images: no text
    codec.text_encoder = None
    with pytest.raises(ConfigError, match="text encoder"):
        codec.decode(guided)
    codec.text = None
    assert codec.encode(x) == plain
    with pytest.raises(ConfigError, match="no text guidance"):
        untexted = make_codec()
        untexted.text = "a caption"
        untexted.text_encoder = encoder
        untexted.encode(x)


def test_weights_that_name_their_text_model_embed_the_caption_with_it():
    pytest.importorskip("static_model")  # the text extra (in dev)
    from neurocodec.text import STATIC_TEXT_DIM

    x = clip(8, 32, 32)
    codec = make_codec(text_dim=STATIC_TEXT_DIM, text_model="static", temporal=True)
    codec.text = "a man talks on a phone in a moving car"
    guided = codec.encode(x)
    decoder = make_codec(text_dim=STATIC_TEXT_DIM, text_model="static", temporal=True)
    assert decoder.text_encoder is None
    assert torch.equal(decoder.decode(guided), codec.decode(guided))
    codec.text = "a rabbit in a meadow"
    assert codec.encode(x) != guided
    with pytest.raises(ValueError, match="text model"):
        VideoVAE(**TINY, text_dim=6, text_model="static")
    with pytest.raises(ConfigError, match="unknown text model"):
        from neurocodec.text import text_encoder

        text_encoder("flan-t5")


# -- from the file alone: registry, CLI, harness ------------------------------------------------------


def seeded_weights(folder: Path, quality: int = 1) -> Path:
    """``video-vae-q<quality>`` weights of the tiny architecture with a model card, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model = make_codec().model
    path = folder / f"video-vae-q{quality}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    card = {
        "codec": "video-vae", "quality": quality, "media": "video", "filename": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "arch": TINY,
        "model_card": {"training_data": "none: seeded test weights", "lambda": None},
    }  # fmt: skip
    path.with_suffix(".json").write_text(json.dumps(card))
    return folder


def test_round_trip_from_the_file_alone_and_through_the_cli(tmp_path, monkeypatch):
    weights = seeded_weights(tmp_path / "weights")
    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(weights))
    x = clip(6, 36, 44)
    data = nc.load("video-vae", 1).encode(x)
    y = nc.decode(data)  # the codec and weights named by the file
    assert y.shape == x.shape

    from neurocodec.io.video import read_video, write_y4m

    source = tmp_path / "clip.y4m"
    write_y4m(source, x, (25, 1))
    env = {"PYTHONPATH": ":".join(sys.path), "NEUROCODEC_WEIGHTS_PATH": str(weights),
           "NEUROCODEC_PACKAGE_WEIGHTS": "0", "OMP_NUM_THREADS": "1"}  # fmt: skip
    run = [sys.executable, "-m", "neurocodec"]
    out = subprocess.run([*run, "encode", str(source), "-c", "video-vae", "-q", "1", "-o",
                          str(tmp_path / "clip.ncd")], capture_output=True, text=True, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    out = subprocess.run([*run, "decode", str(tmp_path / "clip.ncd"), "-o", str(tmp_path / "out.y4m")],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    video, _ = read_video(tmp_path / "out.y4m")
    assert video.shape == x.shape
    bad = tmp_path / "bad.ncd"
    bad.write_bytes((tmp_path / "clip.ncd").read_bytes()[:-9])
    out = subprocess.run([*run, "decode", str(bad), "-o", str(tmp_path / "bad.y4m")],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr


@pytest.mark.parametrize("temporal", [False, True], ids=["hyperprior", "temporal"])
def test_joint_training_in_the_harness(tmp_path, temporal):
    from neurocodec.io.video import write_y4m
    from test_trainer import make_images

    videos = tmp_path / "videos"
    videos.mkdir()
    write_y4m(videos / "a.y4m", clip(10, 48, 64), (25, 1))
    images = make_images(tmp_path / "images", count=2, size=(40, 40))
    run = tmp_path / "run"
    arch = ",".join(f"{k}={v}" for k, v in {**TINY, "temporal": int(temporal)}.items())
    args = ["train", "video-vae", "--data", str(videos), "--image-data", str(images), "--image-every", "2",
            "--out", str(run), "--arch", arch, "--lmbda", "0.01", "--steps", "4", "--crop", "32",
            "--frames", "8", "--batch-size", "2", "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"] == 4
    no_period = [a for a in args if a != "--image-every"]
    no_period.remove("2")
    assert cli.main(no_period) != 0  # --image-data without --image-every: refused
    assert cli.main(["export", str(run), "-q", "1", "--out-dir", str(tmp_path / "weights")]) == 0


def test_text_guided_training_with_captions_in_the_harness(tmp_path, capsys):
    pytest.importorskip("static_model")  # the text extra (in dev)
    from neurocodec.io.video import write_y4m

    videos = tmp_path / "videos"
    videos.mkdir()
    write_y4m(videos / "a.y4m", clip(10, 48, 64), (25, 1))
    write_y4m(videos / "b.y4m", clip(9, 40, 40, seed=1), (25, 1))
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"a.y4m": "waves of colour drifting", "b.y4m": "a slow sweep"}))
    arch = ",".join(f"{k}={v}" for k, v in {**TINY, "text_dim": 64, "text_model": "static"}.items())
    run = tmp_path / "run"
    args = ["train", "video-vae", "--data", str(videos), "--captions", str(captions), "--out", str(run),
            "--arch", arch, "--lmbda", "0.01", "--steps", "3", "--crop", "32", "--frames", "8",
            "--batch-size", "2", "--val-split", "1", "--val-every", "3", "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3 and rows[-1].get("split") == "val"
    assert cli.main(["export", str(run), "-q", "1", "--out-dir", str(tmp_path / "weights")]) == 0
    card = json.loads((tmp_path / "weights" / "video-vae-q1.json").read_text())
    assert card["arch"]["text_model"] == "static"
    capsys.readouterr()
    captions.write_text(json.dumps({"a.y4m": "only one"}))
    assert cli.main([*args[:-1], "--out", str(tmp_path / "run2"), "--quiet"]) != 0
    assert "no caption for b.y4m" in capsys.readouterr().err
    plain = ",".join(f"{k}={v}" for k, v in TINY.items())
    assert args[8] == "--arch"
    assert cli.main([*args[:9], plain, *args[10:-1], "--out", str(tmp_path / "run3"), "--quiet"]) != 0
    assert "names a text_model" in capsys.readouterr().err
