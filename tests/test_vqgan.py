"""vqgan: the codebook (VQGAN-LC fill, k-means reduction), the model, its GAN training in the harness, the codec."""

from __future__ import annotations

import math

import pytest
import torch

from neurocodec.entropy.latent_codecs import VectorQuantizedLatentCodec
from neurocodec.entropy.latent_codecs.vector import Codebook, kmeans
from neurocodec.errors import BitstreamError
from neurocodec.models.vqgan import VQGAN
from neurocodec.train.trainer import TrainConfig, Trainer
from test_trainer import make_images

TINY = {"width": 8, "embed_dim": 8, "codebook_size": 16, "disc_width": 8, "disc_start": 1}


pytestmark = pytest.mark.usefixtures("one_thread")


def config(tmp_path, data, out, steps, arch=TINY, **options):
    return TrainConfig(
        model="vqgan", arch=dict(arch), data=str(data), out=str(tmp_path / out), steps=steps, batch_size=2,
        crop=64, lr=1e-3, lmbda=0.01, log_every=1, checkpoint_every=2, seed=5, **options,
    )  # fmt: skip


def test_the_codebook_fills_from_the_latents_then_stops():
    book = Codebook(6, 2)
    first = torch.arange(8.0).reshape(4, 2)
    book.fill(first)
    assert int(book.filled) == 4
    assert {tuple(r) for r in book.frozen[:4].tolist()} == {tuple(r) for r in first.tolist()}
    book.fill(100 + torch.arange(8.0).reshape(4, 2))  # two rows were left
    assert int(book.filled) == 6 and book.frozen[4:].min() >= 100
    before = book.frozen.clone()
    book.fill(torch.zeros(3, 2))
    assert torch.equal(book.frozen, before)


def test_nearest_picks_the_closest_unit_codeword_and_usage_follows():
    book = Codebook(3, 2)
    book.fill(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))  # rows in a random order
    row = {tuple(r): i for i, r in enumerate(book.frozen.tolist())}
    assert torch.allclose(book.codes().norm(dim=1), torch.ones(3))
    picked = book.nearest(torch.tensor([[0.9, 0.1], [0.1, 0.9], [-0.8, 0.3], [0.95, -0.2]]))
    assert picked.tolist() == [row[1.0, 0.0], row[0.0, 1.0], row[-1.0, 0.0], row[1.0, 0.0]]
    for _ in range(500):
        book.observe(torch.tensor([0, 0, 0, 1]))
    assert book.usage[0] > 0.7 and book.usage[2] < 0.01
    assert book.utilization() == pytest.approx(2 / 3)


def test_kmeans_finds_separated_clusters_and_is_deterministic():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]], dtype=torch.float64)
    points = (centres[:, None] + torch.randn(3, 50, 2, generator=gen, dtype=torch.float64)).reshape(-1, 2)
    found = kmeans(points, 3, seed=1)
    assert torch.equal(found, kmeans(points, 3, seed=1))
    for got, want in zip(sorted(found.tolist()), sorted(centres.tolist()), strict=True):
        assert math.dist(got, want) < 0.5
    with pytest.raises(ValueError, match="k-means needs"):
        kmeans(points, 151)


def test_weighted_kmeans_follows_the_heavy_points():
    points = torch.tensor([[0.0], [1.0], [10.0]], dtype=torch.float64)
    (centre,) = kmeans(points, 1, weights=torch.tensor([1.0, 1.0, 8.0], dtype=torch.float64))
    assert centre.item() == pytest.approx(8.1)


def test_the_model_is_f16_with_the_vq_and_l1_terms_and_a_rate_from_the_usage():
    torch.manual_seed(0)
    model = VQGAN(**TINY)
    x = torch.rand(2, 3, 64, 96)
    out = model(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["indices"].shape == (2, 4, 6)
    assert {"codebook", "commitment", "l1"} <= out["loss_terms"].keys()
    assert "adversarial" not in out["loss_terms"]  # disc_start = 1: the first step has none
    assert "adversarial" in model(x)["loss_terms"]
    out["x_hat"].sum().backward()
    assert model.g_a[0][0].weight.grad is not None  # straight through the quantizer

    lc = model.latent_codec
    with torch.no_grad():
        lc.codebook.usage.copy_(torch.tensor([0.5] + [0.5 / 15] * 15))
    model.eval()
    indices = lc.quantize(model.g_a(x))[1]
    bits = -torch.log2(model(x)["likelihoods"]["indices"]).sum().item()
    expected = sum(1.0 if i == 0 else -math.log2(0.5 / 15) for i in indices.flatten().tolist())
    assert bits == pytest.approx(expected, rel=1e-5)  # the marginal is the usage
    lc.update_tables()
    assert torch.allclose(lc.index_prior.probabilities(), lc.marginal())  # and codes with it


def test_ch_mult_must_give_four_halvings():
    with pytest.raises(ValueError, match="5 levels"):
        VQGAN(width=8, ch_mult=(1, 2, 4))


def test_the_harness_trains_the_discriminator_and_resumes_exactly(tmp_path):
    data = make_images(tmp_path / "data", count=2)
    whole = Trainer(config(tmp_path, data, "whole", 4))
    assert whole.disc_opt is not None
    assert not any(p is q for p in whole.main_params for q in whole.disc_params)
    whole.run(progress=False)
    log = [line for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert '"discriminator": 0.0' in log[0] and '"discriminator": 0.0' not in log[-1]
    assert '"adversarial"' in log[-1]

    first = Trainer(config(tmp_path, data, "split", 4))
    first.run(progress=False, until=3)
    resumed = Trainer(config(tmp_path, data, "split", 4))
    resumed.run(progress=False)
    assert resumed.disc_opt.state_dict()["state"]  # the discriminator's Adam came back
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_smaller_codebook_starts_from_the_kmeans_of_a_trained_one(tmp_path):
    data = make_images(tmp_path / "data", count=2)
    Trainer(config(tmp_path, data, "big", 2)).run(progress=False)
    small = Trainer(
        config(tmp_path, data, "small", 1, arch={**TINY, "codebook_size": 4}, init=str(tmp_path / "big"))
    )
    taken, total = small.init_weights(tmp_path / "big")
    assert taken == total - 4  # all but the index prior (its logits and its three table buffers)
    book = small.model.latent_codec.codebook
    assert int(book.filled) == 4 and torch.equal(book.projection.weight, torch.eye(8))
    big = Trainer(config(tmp_path, data, "big", 2))
    big.try_resume()
    assert torch.allclose(book.codes(), big.model.latent_codec.codebook.reduced(4).float(), atol=1e-6)


@pytest.fixture(scope="module")
def codec():
    from neurocodec.codecs.vqgan import VQGANCodec

    torch.manual_seed(0)
    c = VQGANCodec(**TINY)
    c.model.train()
    c.model(torch.rand(4, 3, 64, 64))  # fills the codebook from the encoder's features
    c.model.eval()
    c.model.update_tables()
    return c


def test_the_codec_round_trips_what_the_model_reconstructs(codec):
    x = torch.rand(3, 40, 70)
    data = codec.encode(x)
    y = codec.decode(data)
    assert y.shape == x.shape
    assert torch.equal(y, codec.decode(data))
    model = codec.model
    with torch.no_grad():
        padded = torch.nn.functional.pad(x[None], (0, 10, 0, 8), mode="replicate")
        expected = model.g_s(model.latent_codec.coded_latent(model.g_a(padded)))[0, :, :40, :70]
    assert (y - expected.clamp(0, 1)).abs().max() <= 0.5 / 255 + 1e-6


def test_corrupt_and_truncated_files_are_refused(codec):
    from neurocodec.errors import NeurocodecError

    data = bytearray(codec.encode(torch.rand(3, 64, 64)))
    with pytest.raises(NeurocodecError):
        codec.decode(bytes(data[:-3]))
    for i in range(len(data) - 12, len(data)):
        broken = bytearray(data)
        broken[i] ^= 0xFF
        try:
            codec.decode(bytes(broken))
        except NeurocodecError:
            pass


def test_out_of_range_indices_are_a_bitstream_error():
    lc = VectorQuantizedLatentCodec(4, 2)
    lc.update_tables()
    data = lc.index_prior._encode(torch.tensor([0, 9], dtype=torch.int32), torch.zeros(2, dtype=torch.int32))
    with pytest.raises(BitstreamError, match="outside the codebook"):
        lc.decompress({"indices": data}, (1, 2, 1, 2))


# -- loss-resilient packets ------------------------------------------------------------------


def test_packets_decode_to_the_same_image_and_survive_losses(codec):
    import warnings

    from neurocodec.codecs.vqgan import drop_packets
    from neurocodec.errors import ConfigError, PacketLossWarning

    x = torch.rand(3, 128, 160)
    whole = codec.decode(codec.encode(x))
    codec.packets = 16
    try:
        data = codec.encode(x)
    finally:
        codec.packets = 0
    _, sections = __import__("neurocodec").container.unpack(data)
    assert sorted(sections) == sorted(f"pk{p}" for p in range(16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(codec.decode(data), whole)  # nothing lost: no warning, the same image
    with pytest.warns(PacketLossWarning, match="3 of 16 index packets were lost"):
        restored = codec.decode(drop_packets(data, [0, 5, 11]))
    assert restored.shape == x.shape
    with pytest.raises(BitstreamError, match="lacks its indices section"):
        codec.decode(drop_packets(data, range(16)))  # nothing left that says it had packets
    with pytest.raises(ConfigError, match="packets must be"):
        codec.packets = 1


def test_a_damaged_packet_counts_as_lost(codec):
    from neurocodec import container

    codec.packets = 8
    try:
        header, sections = container.unpack(codec.encode(torch.rand(3, 64, 96)))
    finally:
        codec.packets = 0
    damaged = bytearray(sections["pk2"])
    damaged[-1] ^= 0x40
    sections["pk2"] = bytes(damaged)
    with pytest.warns(UserWarning, match="1 of 8 index packets"):
        codec.decode(container.pack(header, sections))


def test_lost_positions_get_the_mean_of_their_neighbours():
    """A lost position's latent is the mean of its known neighbours' codewords: inside a region of
    one codeword, exactly that codeword."""
    import warnings

    from neurocodec.entropy.latent_codecs.vector import packet_of, restored

    lc = VectorQuantizedLatentCodec(8, 4).eval()
    lc.update_tables()
    with torch.no_grad():
        lc.codebook.frozen.copy_(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)))
    codes = lc.codebook.codes().detach()
    indices = torch.full((1, 6, 9), 3)
    indices[0, :, 6:] = 5
    lc.packets = 16
    y = codes[indices].permute(0, 3, 1, 2)
    sections = lc.compress(y)
    del sections["pk4"]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        decoded = lc.decompress(sections, (1, 4, 6, 9))
    lost = packet_of(6, 9, 16)[None] == 4
    assert lost.any()
    inside = lost.clone()
    inside[0, :, 5:8] = False  # next to the border between the two regions: a blend
    assert torch.allclose(decoded.permute(0, 2, 3, 1)[inside], codes[indices[inside]], atol=1e-6)
    assert torch.equal(decoded.permute(0, 2, 3, 1)[~lost], codes[indices[~lost]])
    # a lost block with no known neighbour is filled from further out
    hole = torch.zeros(1, 6, 9, dtype=torch.bool)
    hole[0, 1:5, 1:5] = True
    filled = restored(y, hole)
    assert torch.allclose(filled.permute(0, 2, 3, 1)[hole], codes[3].expand(16, 4), atol=1e-6)


def test_the_command_line_writes_packets_and_says_what_was_lost(tmp_path):
    import os
    import subprocess
    import sys

    from neurocodec.codecs.vqgan import drop_packets
    from neurocodec.train.export import export_weights

    data = make_images(tmp_path / "data", count=2)
    Trainer(config(tmp_path, data, "run", 2)).run(progress=False)
    export_weights(tmp_path / "run" / "checkpoint", 4, out_dir=tmp_path / "weights", kodak=data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROCODEC_")}
    env |= {"NEUROCODEC_PACKAGE_WEIGHTS": "0", "NEUROCODEC_WEIGHTS_PATH": str(tmp_path / "weights")}

    def neurocodec(*args):
        return subprocess.run(
            [sys.executable, "-m", "neurocodec", *map(str, args)], capture_output=True, text=True, env=env,
            cwd=tmp_path, timeout=300,
        )  # fmt: skip

    done = neurocodec("encode", data / "im0.png", "-c", "vqgan", "-q", "4", "--packets", "16", "-o", "a.ncd")
    assert done.returncode == 0, done.stderr
    (tmp_path / "b.ncd").write_bytes(drop_packets((tmp_path / "a.ncd").read_bytes(), [1, 2]))
    done = neurocodec("decode", "b.ncd", "-o", "b.png")
    assert done.returncode == 0, done.stderr
    assert "2 of 16 index packets were lost; their indices were restored" in done.stdout + done.stderr
    refused = neurocodec(
        "encode", data / "im0.png", "-c", "vqgan", "-q", "4", "--packets", "99", "-o", "c.ncd"
    )
    assert refused.returncode == 2 and "--packets: packets must be 2 ... 48" in refused.stderr


def test_the_codec_keeps_no_discriminator(tmp_path):
    from safetensors.torch import load_file

    from neurocodec.train.export import export_weights

    data = make_images(tmp_path / "data", count=2)
    Trainer(config(tmp_path, data, "run", 2)).run(progress=False)
    card = export_weights(tmp_path / "run" / "checkpoint", 3, out_dir=tmp_path / "weights")
    weights = load_file(str(card.with_suffix(".safetensors")))
    assert weights and not any(k.startswith("discriminator.") for k in weights)
