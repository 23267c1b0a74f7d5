"""The hyperprior codec: real files, any size, and decoding that does not depend on the float path."""

from __future__ import annotations

import copy

import pytest
import torch

from neurocodec import container
from neurocodec.codecs.base import blocks
from neurocodec.codecs.hyperprior import HyperpriorCodec
from neurocodec.errors import BitstreamError, WrongCodecError


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    c = HyperpriorCodec(N=16, M=24, quality=2, weights_hash=b"\x01\x02\x03\x04").eval()
    c.model.update_tables()
    return c


def image(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0, 1, w).expand(3, h, w)
    return (0.7 * base + 0.3 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


@pytest.mark.parametrize(("h", "w"), [(64, 64), (37, 53), (130, 65)])
def test_roundtrip_any_size(codec, h, w):
    x = image(h, w)
    data = codec.encode(x)
    header, sections = container.unpack(data)
    assert (header.geometry.height, header.geometry.width) == (h, w)
    assert set(sections) == {"z", "y"}
    x_hat = codec.decode(data)
    assert x_hat.shape == (3, h, w)
    assert torch.equal(codec.decode(data), x_hat)  # deterministic


def _symbols(codec, data, **kw):
    """The decoded latent y_hat (what the entropy decoding yields), via the codec's own prior path."""
    header, sections = container.unpack(data)
    g = header.geometry
    zh, zw = blocks((g.height, g.width), codec.model.downsampling)
    m = codec.model
    z_hat = m.latent_codec.entropy_bottleneck.decompress(sections["z"], (1, m.N, zh, zw))
    if kw.get("batch"):  # batch composition: the prior of z_hat computed inside a batch of 3
        z_hat = torch.cat([torch.zeros_like(z_hat), z_hat, 3 * z_hat])
        index, means = m.latent_codec.coding_parameters(z_hat)
        index, means = index[1:2], means[1:2]
    else:
        index, means = m.latent_codec.coding_parameters(z_hat)
    return m.latent_codec.gaussian_conditional.decompress(sections["y"], index, means)


def test_decoding_is_independent_of_threads_batches_tf32_and_float_noise(codec):
    data = codec.encode(image(96, 80, seed=1))
    reference = _symbols(codec, data)
    threads = torch.get_num_threads()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.set_num_threads(1)
        one = _symbols(codec, data)
        torch.set_num_threads(2)
        two = _symbols(codec, data)
        batched = _symbols(codec, data, batch=True)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not tf32[0]
        flipped = _symbols(codec, data)
    finally:
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    # A float path perturbed by one ulp (the synthesis transform) changes nothing entropy-decoded.
    with torch.no_grad():
        w = codec.model.g_s[0].weight
        saved = w.clone()
        w.copy_(torch.nextafter(w, torch.full_like(w, 2.0)))
        perturbed = _symbols(codec, data)
        w.copy_(saved)
    for other in (one, two, batched, flipped, perturbed):
        assert torch.equal(other, reference)


def test_file_checks(codec):
    data = codec.encode(image(64, 64))
    header, sections = container.unpack(data)
    with pytest.raises(BitstreamError, match="lacks"):
        codec.decode(container.pack(header, {"z": sections["z"]}))
    other = container.Header("hyperprior", 3, header.weights_hash, header.geometry)
    with pytest.raises(WrongCodecError):
        codec.decode(container.pack(other, sections))


def _with_trained_looking_h_s(codec):
    """A copy of ``codec`` whose integer h_s has a trained model's weight statistics: the first
    layer's integer weights span the full +-511 range (two int8 digits), the others +-127."""
    other = copy.deepcopy(codec)
    torch.manual_seed(5)
    h_s = other.model.latent_codec.h_s
    with torch.no_grad():
        h_s.up1.weight.normal_(0, 150 / 256)
        h_s.up2.weight.normal_(0, 20 / 256)
        h_s.out.weight.normal_(0, 8 / 256)
    return other


@pytest.mark.parametrize("weights", ["initial", "trained-looking"])
def test_int8_prior_path_codes_the_reference_files(codec, weights, monkeypatch):
    """Files coded with the fast int8 h_s and with the float64 reference h_s are byte-identical,
    and decode to identical tensors either way."""
    if weights == "trained-looking":
        codec = _with_trained_looking_h_s(codec)
    x = image(130, 97, seed=3)
    fast = codec.encode(x)
    fast_decoded = codec.decode(fast)
    m = codec.model
    lc = m.latent_codec
    monkeypatch.setattr(
        lc, "coding_parameters", lambda z_hat: type(lc).coding_parameters(lc, z_hat, reference=True)
    )
    reference = codec.encode(x)
    assert fast == reference
    assert torch.equal(codec.decode(fast), fast_decoded)
