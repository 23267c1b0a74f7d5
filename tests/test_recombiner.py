"""``recombiner-image``: round trip through the codec API, the decoder regenerating exactly the
samples the encoder chose, determinism across threads, damaged files, posterior fitting."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from neurocodec import container
from neurocodec.codecs import recombiner
from neurocodec.errors import BitstreamError, NeurocodecError
from neurocodec.models.recombiner import (
    BetaController,
    Posterior,
    Recombiner,
    elbo_loss,
    from_patches,
    posterior_optimizer,
    to_patches,
)

EFFORT = 30


def image(h: int = 40, w: int = 52, seed: int = 0) -> torch.Tensor:
    """A smooth test picture with some texture, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + 3 * c) * torch.cos(4 * yy) for c in range(3)])
    return (base + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


def codec() -> recombiner.RecombinerImageCodec:
    """A codec with an untrained prior (N(0, 1), even KL profile) and the same random upsampler
    each time: no weight file needed."""
    torch.manual_seed(0)
    c = recombiner.RecombinerImageCodec()
    c.block_bits = 8  # an untrained prior's KL is large: fewer samples a block keeps the test fast
    return c


@pytest.fixture(scope="module")
def coded() -> tuple[torch.Tensor, bytes, dict]:
    x = image()
    c = codec()
    data = c.encode(x, effort=EFFORT)
    return x, data, dict(c.last_fit)


def test_roundtrip_regenerates_the_chosen_parameters_exactly(coded) -> None:
    x, data, fit = coded
    header, sections = container.unpack(data)
    assert header.codec == "recombiner-image" and set(sections) == {"patches", "indexes"}
    c = codec()
    bits, seed, shares = recombiner.unpack_patches(sections["patches"], 64, 1)
    count = sum(len(recombiner.Layout(c.model).blocks(s)) for s in shares)
    assert count == fit["blocks"]
    indexes = recombiner.unpack_indexes(sections["indexes"], bits, count)
    theta = c.parameters_of(shares, indexes, bits, seed).numpy()
    assert theta.tobytes() == fit["parameters"].tobytes()
    x_hat = c.decode(data)
    assert x_hat.shape == x.shape and x_hat.dtype == torch.float32
    assert torch.equal(torch.round(x_hat * 255) / 255, x_hat)  # on the 8-bit grid
    assert torch.equal(x_hat, c.decode(data))  # the same output twice


def test_decoding_is_identical_on_1_and_2_threads(coded) -> None:
    _, data, _ = coded
    previous = torch.get_num_threads()
    try:
        outputs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outputs.append(codec().decode(data))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(outputs[0], outputs[1])


def test_encoding_is_deterministic(coded) -> None:
    x, data, _ = coded
    assert codec().encode(x, effort=EFFORT) == data


def test_indexes_pack_and_unpack() -> None:
    rng = np.random.default_rng(0)
    for bits in (1, 7, 10, 16, 24):
        values = rng.integers(0, 1 << bits, 37)
        packed = recombiner.pack_indexes(values.tolist(), bits)
        assert len(packed) == -(-37 * bits // 8)
        assert np.array_equal(recombiner.unpack_indexes(packed, bits, 37), values)


def test_blocks_cover_every_parameter_once() -> None:
    model = Recombiner()
    model.kl_profile.copy_(torch.rand(model.size) * 3)
    layout = recombiner.Layout(model)
    assert sorted(layout.order.tolist()) == list(range(model.size))
    for shares in (1, 7, 120):
        blocks = layout.blocks(shares)
        assert shares <= len(blocks) <= 1.1 * shares + 1  # greedy: blocks end a little under budget
        assert blocks[0][0] == 0 and blocks[-1][1] == model.size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))


@pytest.mark.parametrize("cut", [1, 10, 50])
def test_truncated_files_raise_clear_errors(coded, cut: int) -> None:
    _, data, _ = coded
    with pytest.raises(NeurocodecError):
        codec().decode(data[:-cut])


def test_damaged_sections_raise_clear_errors(coded) -> None:
    _, data, _ = coded
    header, sections = container.unpack(data)
    c = codec()
    for name in sections:
        for damaged in (sections[name][: len(sections[name]) // 2], sections[name] + b"\0", b""):
            with pytest.raises(BitstreamError):
                c.decode(container.pack(header, {**sections, name: damaged}))
    head = bytearray(sections["patches"])
    # version, k = 0 and 30, another patch side, another patch count, shares 0 and over the limit,
    # shares that change the block count (the indexes no longer fit)
    for offset, value in ((0, 2), (1, 0), (1, 30), (2, 32), (8, 5), (12, b"\0\0"), (13, 255), (12, b"\1\0")):
        forged = bytearray(head)
        if isinstance(value, bytes):
            forged[offset : offset + 2] = value
        else:
            forged[offset] = value
        with pytest.raises(BitstreamError):
            c.decode(container.pack(header, {**sections, "patches": bytes(forged)}))
    large = dataclasses.replace(
        header, geometry=dataclasses.replace(header.geometry, height=4000, width=4000)
    )
    with pytest.raises(BitstreamError, match="patches"):  # not the size it was coded at: refused first
        c.decode(container.pack(large, sections))


def test_random_byte_flips_decode_or_raise(coded) -> None:
    x, data, _ = coded
    header, sections = container.unpack(data)
    rng = np.random.default_rng(1)
    c = codec()
    for _ in range(30):
        name = sorted(sections)[rng.integers(2)]
        body = bytearray(sections[name])
        body[rng.integers(len(body))] ^= 1 << int(rng.integers(8))
        try:
            x_hat = c.decode(container.pack(header, {**sections, name: bytes(body)}))
        except NeurocodecError:
            continue
        assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()


def test_beta_controller_holds_while_the_kl_moves_its_way() -> None:
    control = BetaController(budget=1.0, band=0.2, beta=1.0)
    assert control.update(5.0) == 1.5  # over the budget: up
    assert control.update(4.0) == 1.5  # still over, but falling by 20 %: hold
    assert control.update(3.9) == 2.25  # over and settled: up
    assert control.update(0.9) == 2.25  # inside the band
    assert control.update(0.1) == 1.5  # under it: down
    assert control.update(0.5) == 1.5  # under it, but rising by 400 %: hold
    assert control.update(0.5) == 1.0  # under it and settled: down


def test_a_short_fit_reduces_the_loss() -> None:
    torch.manual_seed(0)
    model = Recombiner()
    patches = to_patches(image(64, 128)[None], 64)
    assert torch.equal(from_patches(patches, 1, 2), image(64, 128)[None])
    posterior = Posterior(model, len(patches), init_noise=1.0)
    opt = posterior_optimizer(posterior, recombiner.LR)
    losses = []
    for _ in range(40):
        loss, _, _ = elbo_loss(model, posterior, patches, 1e-3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_encoding_steers_beta_towards_the_kl_budget() -> None:
    x = image(32, 32)
    c = codec()
    start = float(c.model.beta)
    c.kl_budget, c.kl_band = 0.5, 0.1  # far under an untrained prior's KL: beta must rise
    c.encode(x, effort=EFFORT)
    assert c.last_fit["beta"] > start
    c.kl_budget = 50.0  # far over it: beta must fall
    c.encode(x, effort=EFFORT)
    assert c.last_fit["beta"] < start
