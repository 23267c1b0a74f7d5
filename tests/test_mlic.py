"""MLICv2 (``mlic``): shapes, causality of the multi-reference prior, exact round trips through real
files, determinism of the integer prior path, rate agreement, a short overfit, the paper preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurocodec import container
from neurocodec.codecs.base import blocks
from neurocodec.codecs.mlic import MLICCodec
from neurocodec.entropy.models.schedules import checkerboard_mask
from neurocodec.errors import BitstreamError
from neurocodec.io.image import read_image
from neurocodec.models.mlic import PRESETS, IntegerLinearAttention, IntegerRoPE2d, MLICv2, floor_divide

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"
TINY = dict(
    N=16, M=24, num_slices=3, channel_context=(16, 8), attention=8, heads=1, head_dim=8, head_hidden=(32, 16), lrp=(16, 8)
)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    c = MLICCodec(quality=1, weights_hash=b"\x05\x06\x07\x08", **TINY).eval()
    c.model.update_tables()
    return c


def kodak_crop(h: int, w: int, top: int = 100, left: int = 200) -> torch.Tensor:
    image, _ = read_image(KODAK)
    return image[:, top : top + h, left : left + w].contiguous()


def latent_and_hyper(codec, x: torch.Tensor):
    """What the encoder codes: ``y`` and the exact integer hyper features of ``round(z)``."""
    m = codec.model
    with torch.no_grad():
        y = m.g_a(x)
        hyper, means = m.latent_codec.hyper(torch.round(m.latent_codec.h_a(y)).to(torch.float64))
    return y, hyper, means


def exact_latent(codec, y, hyper):
    """The encoder's quantized latent and likelihoods by the exact (float64) training path."""
    m = codec.model
    with torch.no_grad():
        return m.latent_codec.schedule.likelihoods(
            y.to(torch.float64),
            m.latent_codec.context_model,
            hyper,
            m.latent_codec.gaussian_conditional,
            mode="ste",
        )


# -- architecture -------------------------------------------------------------------------------


def test_forward_shapes_and_gradients():
    torch.manual_seed(0)
    model = MLICv2(**TINY).train()
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 24, 4, 4)
    assert out["likelihoods"]["z"].shape == (2, 16, 1, 1)
    for lik in out["likelihoods"].values():
        assert bool(((lik > 0) & (lik <= 1)).all())
    rate = -sum(lik.log2().sum() for lik in out["likelihoods"].values())
    (rate + out["x_hat"].square().sum()).backward()
    # the rate reaches every part of the prior path through straight-through rounding
    for name in (
        "g_a.0.body.0",
        "latent_codec.h_s.out",
        "latent_codec.context_model.anchor_heads.1.params.out",
        "latent_codec.context_model.intra_context.0.query",
    ):
        grad = model.get_submodule(name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.aux_loss().ndim == 0


def test_presets_keep_every_feature():
    small, paper = PRESETS["small"], PRESETS["paper"]
    assert (paper.N, paper.M, paper.num_slices) == (192, 320, 10)
    assert small.N < paper.N and small.M < paper.M and small.num_slices < paper.num_slices
    torch.manual_seed(0)
    model = MLICv2("small")
    prior = model.latent_codec.context_model
    # every slice has local and intra contexts (slice 0's intra context is HGCP: guided by the 2M hyper channels)
    assert len(prior.local_context) == len(prior.intra_context) == small.num_slices
    assert prior.intra_context[0].query.in_channels == 2 * small.M
    assert (
        set(prior.channel_context) == set(prior.inter_context) == {str(k) for k in range(1, small.num_slices)}
    )
    assert sum(1 for name in model.state_dict() if name.endswith("rope.table")) == 2 * small.num_slices - 1


def test_tiny_preset_is_the_small_design_narrower():
    tiny, small = PRESETS["tiny"], PRESETS["small"]
    assert (tiny.N, tiny.M, tiny.num_slices) == (64, 96, 4)
    for field in ("channel_context", "head_hidden", "lrp"):
        assert all(t < s for t, s in zip(getattr(tiny, field), getattr(small, field), strict=True)), field
    model = MLICv2("tiny")
    # the same modules as the small preset, only narrower
    assert [name for name, _ in model.named_modules()] == [
        name for name, _ in MLICv2("small").named_modules()
    ]
    with pytest.raises(ValueError, match="unknown MLICv2 preset"):
        MLICv2("huge")
    with pytest.raises(ValueError, match="equal slices"):
        MLICv2(M=25, num_slices=4)


def test_integer_rope_tables_are_periodic_integers():
    rope = IntegerRoPE2d(8)
    assert rope.periods == (4, 16)
    table = rope.table
    assert table.dtype == torch.int32 and int(table.abs().max()) == 128
    assert torch.equal(table[0, :4], table[0, 4:8])  # period 4 repeats
    # position 0 is the identity rotation: features pass unchanged
    x = torch.randint(0, 256, (1, 1, 8, 1, 1)).to(torch.float64)
    assert torch.equal(rope(x), x)


def test_linear_attention_is_exact_integer_arithmetic():
    """float64 outputs equal an int64 evaluation of the same formula (no float rounding anywhere)."""
    torch.manual_seed(3)
    attention = IntegerLinearAttention(6, 5, 4, heads=2, head_dim=8).eval()
    guide = torch.randint(-300, 300, (2, 6, 5, 7)).to(torch.float64)
    source = torch.randint(-300, 300, (2, 5, 5, 7)).to(torch.float64)
    mask = checkerboard_mask(5, 7, 0)
    with torch.no_grad():
        out = attention(guide, source, mask)
        shape = (2, 2, 8, 5 * 7)
        q = attention.query(guide).reshape(shape).long()
        k = (attention.key(guide) * mask).reshape(shape).long()
        v = (attention.value(source) * mask).reshape(shape).long()
        qr = attention.rope(q.double().reshape(2, 2, 8, 5, 7)).reshape(shape).long()
        kr = attention.rope(k.double().reshape(2, 2, 8, 5, 7)).reshape(shape).long()
    numerator = (kr @ v.transpose(2, 3)).transpose(2, 3) @ qr
    normalizer = (k.sum(3, keepdim=True) * q).sum(2, keepdim=True).clamp(min=1)
    attended = torch.div(numerator, normalizer, rounding_mode="floor").clamp(-255, 255)
    with torch.no_grad():
        expected = attention.out(attended.reshape(2, 16, 5, 7).double())
    assert torch.equal(out, expected)
    assert bool((out == torch.round(out)).all())
    with pytest.raises(ValueError, match="tokens exceed"):
        attention.check_tokens(attention.token_limit() + 1)


def test_floor_divide_exact_beyond_float_precision():
    a = torch.tensor([2.0**52 + 1, -(2.0**52) - 1, 7.0], dtype=torch.float64)
    b = torch.tensor([3.0, 3.0, -2.0], dtype=torch.float64)
    expected = torch.div(a.long(), b.long(), rounding_mode="floor").double()
    assert torch.equal(floor_divide(a, b), expected)


def test_prior_is_causal(codec):
    """A step's parameters never change when elements of this or later steps change, and do
    change with the elements of earlier steps (so the check is not vacuous)."""
    m = codec.model
    schedule = m.latent_codec.schedule
    g = torch.Generator().manual_seed(4)
    b, h, w = 1, 8, 12
    hyper, _ = m.latent_codec.hyper(
        torch.round(3 * torch.randn(b, m.N, h // 4, w // 4, generator=g)).to(torch.float64)
    )
    base = torch.round(16 * 4 * torch.randn(b, m.M, h, w, generator=g, dtype=torch.float64)) / 16
    for s, step in enumerate(schedule.steps):
        later = torch.stack([t.mask(m.M, h, w) for t in schedule.steps[s:]]).any(0)
        garbage = torch.where(
            later, torch.round(16 * 40 * torch.randn(base.shape, generator=g, dtype=torch.float64)) / 16, base
        )
        index, mean = m.latent_codec.context_model(step, base, hyper)
        index2, mean2 = m.latent_codec.context_model(step, garbage, hyper)
        assert torch.equal(step.select(index), step.select(index2)), step
        assert torch.equal(step.select(mean), step.select(mean2)), step
        if s > 0:  # the earlier steps do matter
            earlier = ~later
            changed = torch.where(earlier, base + 3, base)
            i3, m3 = m.latent_codec.context_model(step, changed, hyper)
            assert not (
                torch.equal(step.select(i3), step.select(index))
                and torch.equal(step.select(m3), step.select(mean))
            ), step


def test_int8_path_and_memo_give_the_reference_integers(codec):
    """Coding runs the context layers on their int8 path (and reuses a slice's channel/inter
    contexts between its two steps): the same integers as the float64 reference path."""
    m = codec.model
    g = torch.Generator().manual_seed(5)
    hyper, _ = m.latent_codec.hyper(torch.round(3 * torch.randn(1, m.N, 2, 3, generator=g)).to(torch.float64))
    y_hat = torch.round(16 * 6 * torch.randn(1, m.M, 8, 12, generator=g, dtype=torch.float64)) / 16
    for step in m.latent_codec.schedule.steps:
        with torch.no_grad():
            fast = m.latent_codec.context_model(step, y_hat, hyper)
            again = m.latent_codec.context_model(step, y_hat, hyper)  # the memo, if any
        with torch.enable_grad():  # gradients on: the float64 reference path, no memo
            reference = m.latent_codec.context_model(step, y_hat, hyper)
        for a, b, r in zip(fast, again, reference, strict=True):
            assert torch.equal(a, r) and torch.equal(b, r), step


# -- coding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), [(128, 96), (37, 53)])
def test_roundtrip_through_the_file_is_exact(codec, h, w):
    x = kodak_crop(h, w)
    data = codec.encode(x)
    header, sections = container.unpack(data)
    assert header.codec == "mlic" and (header.geometry.height, header.geometry.width) == (h, w)
    assert set(sections) == {"z", "y"}
    x_hat = codec.decode(data)
    assert x_hat.shape == (3, h, w)
    assert torch.equal(codec.decode(data), x_hat)
    # the decoded latent is exactly the encoder's quantized latent
    m = codec.model
    padded = torch.nn.functional.pad(x[None], (0, (-w) % 64, 0, (-h) % 64), mode="replicate")
    y, hyper, _ = latent_and_hyper(codec, padded)
    encoder_side = exact_latent(codec, y, hyper).y_hat
    z_hat = m.latent_codec.entropy_bottleneck.decompress(
        sections["z"], (1, m.N, *blocks((h, w), m.downsampling))
    )
    decoder_hyper, _ = m.latent_codec.coding_hyper(z_hat)  # the int8 path of h_s, as the codec runs it
    assert torch.equal(decoder_hyper, hyper)  # = the float64 reference path
    decoded = m.latent_codec.schedule.decompress_streams(
        [sections["y"]],
        m.latent_codec.context_model,
        decoder_hyper,
        m.latent_codec.gaussian_conditional,
        tuple(y.shape[2:]),
    )
    assert torch.equal(decoded, encoder_side)


def test_decoding_needs_both_sections(codec):
    header, sections = container.unpack(codec.encode(kodak_crop(64, 64)))
    with pytest.raises(BitstreamError, match="lacks its y section"):
        codec.decode(container.pack(header, {"z": sections["z"]}))
    with pytest.raises(BitstreamError):  # a y stream of another latent
        other = container.unpack(codec.encode(kodak_crop(64, 128)))[1]
        codec.decode(container.pack(header, {"z": sections["z"], "y": other["y"]}))


def test_corrupt_sections_raise_bitstream_errors(codec):
    """Damaged z or y streams (in a container with a valid CRC) are a BitstreamError or decode
    to some image of the right shape; never another exception."""
    header, sections = container.unpack(codec.encode(kodak_crop(64, 128)))
    g = torch.Generator().manual_seed(6)
    errors = 0
    for trial in range(12):
        name = "y" if trial % 3 else "z"
        data = bytearray(sections[name])
        for _ in range(1 + trial % 4):
            i = int(torch.randint(len(data), (1,), generator=g))
            data[i] ^= 1 << int(torch.randint(8, (1,), generator=g))
        if trial % 5 == 4:
            data = data[: len(data) // 2]
        damaged = container.pack(header, {**sections, name: bytes(data)})
        try:
            assert codec.decode(damaged).shape == (3, 64, 128)
        except BitstreamError:
            errors += 1
    assert errors >= 6  # the coder's final-state check catches most damage


def test_prior_path_is_deterministic_across_threads_and_batches(codec):
    """The same bytes with 1 or 2 threads, alone or inside a batch with another image."""
    m = codec.model
    a, b = kodak_crop(128, 128)[None], kodak_crop(128, 128, top=300, left=20)[None]
    y, _, _ = latent_and_hyper(codec, a)
    with torch.no_grad():
        z = torch.round(m.latent_codec.h_a(y))
        z_other = torch.round(m.latent_codec.h_a(m.g_a(b)))
        y_other = m.g_a(b)

    def streams(batch_z, batch_y, threads):
        torch.set_num_threads(threads)
        try:
            hyper, _ = m.latent_codec.coding_hyper(batch_z)
            return m.latent_codec.schedule.compress_streams(
                batch_y, m.latent_codec.context_model, hyper, m.latent_codec.gaussian_conditional
            )
        finally:
            torch.set_num_threads(1)

    alone = streams(z, y, 1)[0]
    assert streams(z, y, 2)[0] == alone
    assert streams(torch.cat([z_other, z]), torch.cat([y_other, y]), 2)[1] == alone
    assert streams(torch.cat([z, z_other]), torch.cat([y, y_other]), 1)[0] == alone


def test_rate_matches_the_likelihoods(codec):
    """File section sizes are within a few % of -log2 of the exact coding-time likelihoods."""
    x = kodak_crop(256, 256)
    _, sections = container.unpack(codec.encode(x))
    y, hyper, _ = latent_and_hyper(codec, x[None])
    ideal_y = float(-exact_latent(codec, y, hyper).likelihoods.log2().sum()) / 8
    assert ideal_y > 2000  # a non-trivial latent
    assert abs(len(sections["y"]) - ideal_y) / ideal_y < 0.03
    # the rate the trainer sees (float32, straight-through, eval mode) is the rate of the file
    with torch.no_grad():
        likelihoods = codec.model(x[None])["likelihoods"]
    trained = sum(float(-lik.log2().sum()) for lik in likelihoods.values()) / 8
    coded = len(sections["y"]) + len(sections["z"])
    assert abs(coded - trained) / trained < 0.03


def test_short_overfit_reduces_the_loss():
    torch.manual_seed(1)
    model = MLICv2(**TINY).train()
    x = kodak_crop(64, 64)[None]
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if not n.endswith("quantiles")], lr=2e-3)
    losses = []
    for _ in range(30):
        out = model(x)
        bpp = -sum(lik.log2().sum() for lik in out["likelihoods"].values()) / (64 * 64)
        loss = 0.01 * 255**2 * (out["x_hat"] - x).square().mean() + bpp
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


@pytest.mark.slow
def test_paper_preset_codes_a_kodak_image():
    torch.manual_seed(0)
    c = MLICCodec("paper").eval()
    c.model.update_tables()
    x, _ = read_image(KODAK)
    data = c.encode(x)
    x_hat = c.decode(data)
    assert x_hat.shape == x.shape
    assert torch.equal(c.decode(data), x_hat)
