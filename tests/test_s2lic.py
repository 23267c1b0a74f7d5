"""S2LIC (``s2lic``): SwinV2 blocks, the ACGC prior's causality and exactness, exact round trips
through real files on 1 and 2 threads, damaged files, training through the harness, the presets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from neurocodec import cli, container, registry
from neurocodec.codecs.base import blocks
from neurocodec.codecs.s2lic import S2LICCodec
from neurocodec.entropy.models.schedules import ANCHOR, checkerboard_mask
from neurocodec.errors import BitstreamError, ContainerError
from neurocodec.io.image import read_image
from neurocodec.models.s2lic import PRESETS, S2LIC, SwinV2Block, log_spaced_offsets, window_mask
from test_trainer import make_images

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"
TINY = dict(
    N=16, M=24, depths=(1, 2, 1), heads=(1, 2, 2), window=4, mlp_ratio=2.0, cpb_hidden=16, enhance=(4, 4),
    num_slices=3, channel_context=(16, 8), attention=8, heads_ctx=1, head_dim=8, head_hidden=(32, 16),
    lrp=(16, 8),
)  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=[True, False], ids=["anchor-context", "reuse"])
def codec(request):
    torch.manual_seed(0)
    c = S2LICCodec(quality=1, weights_hash=b"\x05\x06\x07\x09", anchor_context=request.param, **TINY).eval()
    c.model.update_tables()
    return c


def kodak_crop(h: int, w: int, top: int = 100, left: int = 200) -> torch.Tensor:
    image, _ = read_image(KODAK)
    return image[:, top : top + h, left : left + w].contiguous()


def random_hyper_and_latent(codec, seed: int, h: int = 8, w: int = 12):
    """Exact integer hyper features of a random ``z`` and a random latent on the means' grid."""
    m = codec.model
    g = torch.Generator().manual_seed(seed)
    z = torch.round(3 * torch.randn(1, m.N, h // 4, w // 4, generator=g)).to(torch.float64)
    hyper, _ = m.latent_codec.hyper(z)
    y_hat = torch.round(16 * 4 * torch.randn(1, m.M, h, w, generator=g, dtype=torch.float64)) / 16
    return hyper, y_hat, g


# -- SwinV2 blocks -------------------------------------------------------------------------------


def test_swinv2_attention_is_scaled_cosine_with_a_clamped_logit_scale():
    torch.manual_seed(0)
    block = SwinV2Block(8, 2, 4, shifted=False, mlp_ratio=2.0, cpb_hidden=16, drop=0.0).eval()
    attention = block.attention
    x = torch.randn(3, 16, 8)
    with torch.no_grad():
        reference = attention(x, None)
        # cosine attention: scaling the tokens' q/k projections changes nothing
        attention.qkv.weight[:16].mul_(7.0)
        attention.q_bias.mul_(7.0)
        assert torch.allclose(attention(x, None), reference, atol=1e-5)
        # the learnable scale is clamped at 100: beyond log(100) it no longer matters
        attention.logit_scale.fill_(math.log(100.0))
        at_limit = attention(x, None)
        attention.logit_scale.fill_(math.log(1000.0))
        assert torch.equal(attention(x, None), at_limit)
        assert not torch.allclose(at_limit, reference, atol=1e-3)
    bias = attention.position_bias()
    assert bias.shape == (2, 16, 16) and bool(((bias > 0) & (bias < 16)).all())
    offsets = log_spaced_offsets(4)  # log-spaced, odd in the offset, ~1 at the window's edge
    assert torch.allclose(offsets, -offsets.flip(0))
    assert math.isclose(float(offsets.max()), math.log2(9) / 3, rel_tol=1e-6)


def test_shifted_windows_do_not_mix_wrapped_regions():
    """A shifted block rolls the map by half a window; tokens that only meet because of the
    wrap-around must not see each other (and neighbours across the old window border must)."""
    torch.manual_seed(1)
    block = SwinV2Block(8, 2, 4, shifted=True, mlp_ratio=2.0, cpb_hidden=16, drop=0.0).eval()
    x = torch.randn(1, 8, 8, 8)
    changed = x.clone()
    changed[0, 0, 0] += 5.0
    with torch.no_grad():
        diff = (block(changed) - block(x)).abs().sum(-1)[0]
    assert float(diff[7, 7]) == 0.0  # wraps into the same window, masked
    assert float(diff[1, 1]) > 0.0  # shares the shifted window with (0, 0)


def test_padding_tokens_are_masked_out():
    mask = window_mask(6, 5, 8, 8, 4, 0, torch.device("cpu"))
    windows = torch.zeros(8, 8, dtype=torch.bool)
    windows[6:, :] = windows[:, 5:] = True  # the padding
    pad = windows.view(2, 4, 2, 4).transpose(1, 2).reshape(4, 16)
    expected = pad[:, :, None] != pad[:, None, :]
    assert torch.equal(mask < 0, expected)
    assert window_mask(8, 8, 8, 8, 4, 0, torch.device("cpu")) is None


# -- architecture ------------------------------------------------------------------------------------


@pytest.mark.parametrize("anchor_context", [True, False])
def test_forward_shapes_and_gradients(anchor_context):
    torch.manual_seed(0)
    model = S2LIC(anchor_context=anchor_context, **TINY).train()
    x = torch.rand(2, 3, 64, 128)
    out = model(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 24, 4, 8)
    assert out["likelihoods"]["z"].shape == (2, 16, 1, 2)
    for lik in out["likelihoods"].values():
        assert bool(((lik > 0) & (lik <= 1)).all())
    rate = -sum(lik.log2().sum() for lik in out["likelihoods"].values())
    (rate + out["x_hat"].square().sum()).backward()
    # the rate reaches every part of the prior path through straight-through rounding (the channel
    # map is mlic's IntegerChannelReweight: an identity gate at initialization, whose tiny squeeze
    # may start at zero for a small input, as here)
    names = [
        "g_a.0.body.0.convs.0",  # the enhancement module
        "g_a.2.blocks.0.attention.cpb.0",  # the continuous position bias
        "latent_codec.h_s.out",
        "latent_codec.context_model.channel_contexts.1.gates.spatial_map.excite",
        "latent_codec.context_model.global_contexts.1.attention.query",
        "latent_codec.context_model.non_anchor_heads.2.params.out",
    ]
    for name in names:
        grad = model.get_submodule(name).weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.g_a[2].blocks[0].attention.logit_scale.grad.abs().sum() > 0
    prior = model.latent_codec.context_model
    assert ("0" in prior.channel_contexts) == anchor_context  # slice 0 has a context only from its anchors


def test_reference_preset_is_the_papers_size():
    ref = PRESETS["reference"]
    assert (ref.N, ref.M, ref.num_slices, ref.window) == (192, 320, 10, 8)
    assert (ref.depths, ref.heads, ref.mlp_ratio, ref.drop_path) == ((1, 2, 3), (4, 8, 16), 4.0, 0.1)
    torch.manual_seed(0)
    model = S2LIC("reference").eval()
    prior = model.latent_codec.context_model
    # g_ep's input: 2M hyper channels + ACCTX (64) + AGCTX (32) = 736, as the paper's
    assert prior.anchor_heads[3].trunk[0].in_channels == 736
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = model.g_a(x)
        z = model.latent_codec.h_a(y)
        assert y.shape == (1, 320, 4, 4) and z.shape == (1, 192, 1, 1)
        assert model.g_s(y).shape == x.shape
    # the paper states no parameter count; ours is recorded in eval/s2lic_speed.json
    params = sum(p.numel() for p in model.parameters())
    assert params > 5 * sum(p.numel() for p in S2LIC("small").parameters())


def test_small_preset_is_at_mlic_tinys_width():
    from neurocodec.models.mlic import PRESETS as MLIC_PRESETS

    small, tiny = PRESETS["small"], MLIC_PRESETS["tiny"]
    assert (small.N, small.M, small.num_slices) == (tiny.N, tiny.M, tiny.num_slices) == (64, 96, 4)
    assert small.slice_sizes == (24,) * 4
    with pytest.raises(ValueError, match="unknown S2LIC preset"):
        S2LIC("huge")
    with pytest.raises(ValueError, match="equal slices"):
        S2LIC(M=25, num_slices=4)
    with pytest.raises(ValueError, match="anchor_context is a flag"):
        S2LIC(anchor_context=2)


# -- the integer ACGC prior ---------------------------------------------------------------------------


def test_prior_is_causal(codec):
    """A step's parameters never change when elements of this or later steps change, and do
    change with the elements of earlier steps (so the check is not vacuous)."""
    m = codec.model
    prior = m.latent_codec.context_model
    schedule = m.latent_codec.schedule
    hyper, base, g = random_hyper_and_latent(codec, 4)
    _, _, h, w = base.shape
    for s, step in enumerate(schedule.steps):
        later = torch.stack([t.mask(m.M, h, w) for t in schedule.steps[s:]]).any(0)
        garbage = torch.where(
            later, torch.round(16 * 40 * torch.randn(base.shape, generator=g, dtype=torch.float64)) / 16, base
        )
        index, mean = prior(step, base, hyper)
        index2, mean2 = prior(step, garbage, hyper)
        assert torch.equal(step.select(index), step.select(index2)), step
        assert torch.equal(step.select(mean), step.select(mean2)), step
        if step.start > 0:  # the earlier slices do matter
            changed = torch.where(~later, base + 3, base)
            i3, m3 = prior(step, changed, hyper)
            assert not (
                torch.equal(step.select(i3), step.select(index))
                and torch.equal(step.select(m3), step.select(mean))
            ), step


def test_non_anchors_see_their_slices_anchors_only_with_anchor_context(codec):
    """The decision measured in eval/s2lic_budget.json: with ``anchor_context`` a non-anchor's
    parameters depend on the freshly decoded anchors of its slice; without it they do not."""
    m = codec.model
    prior = m.latent_codec.context_model
    hyper, y_hat, _ = random_hyper_and_latent(codec, 7)
    _, _, h, w = y_hat.shape
    anchors = checkerboard_mask(h, w, m.latent_codec.schedule.anchor_parity)
    for step in m.latent_codec.schedule.steps:
        if step.part == ANCHOR:
            continue
        moved = y_hat.clone()
        moved[:, step.start : step.stop] += 2.0 * anchors
        same = all(
            torch.equal(step.select(a), step.select(b))
            for a, b in zip(prior(step, y_hat, hyper), prior(step, moved, hyper), strict=True)
        )
        assert same != prior.anchor_context, step


def test_int8_path_and_memo_give_the_reference_integers(codec):
    """Coding runs the context layers on their int8 path where the CPU has one (and reuses a
    slice's contexts between its two steps when they read the same input): the same integers as
    the float64 reference path with gradients on (no int8, no memo)."""
    m = codec.model
    prior = m.latent_codec.context_model
    hyper, y_hat, _ = random_hyper_and_latent(codec, 5)
    for step in m.latent_codec.schedule.steps:
        with torch.no_grad():
            fast = prior(step, y_hat, hyper)
            again = prior(step, y_hat, hyper)  # the memo, if any
        with torch.enable_grad():
            reference = prior(step, y_hat, hyper)
        for a, b, r in zip(fast, again, reference, strict=True):
            assert torch.equal(a, r) and torch.equal(b, r), step


def test_integer_prior_ignores_float_noise(codec):
    """The CDF indexes and means of every step are the same integers whatever float noise the
    encoder-side float path adds below the rounding: y and y plus tiny noise give the same
    symbols and parameters (same stream), as the hyper features of round(z) are exact."""
    m = codec.model
    x = kodak_crop(64, 128)[None]
    with torch.no_grad():
        y = m.g_a(x)
        z = torch.round(m.latent_codec.h_a(y))
        y = torch.round(y * 4) / 4 + 0.01  # away from the rounding boundaries of every symbol
        noisy = y + 1e-4 * torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
        hyper, _ = m.latent_codec.coding_hyper(z)
        hyper_ref, _ = m.latent_codec.hyper(z.to(torch.float64))  # the float64 reference path
    assert torch.equal(hyper, hyper_ref)
    lc = m.latent_codec

    def parameters(latent):
        out = lc.schedule.likelihoods(
            latent.to(torch.float64), lc.context_model, hyper, lc.gaussian_conditional, "ste"
        )
        return out.indexes, out.means, out.y_hat

    for a, b in zip(parameters(y), parameters(noisy), strict=True):
        assert torch.equal(a, b)


# -- coding -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), [(128, 96), (37, 53)])
def test_roundtrip_through_the_file_on_one_and_two_threads(codec, h, w):
    """The file, and the latent the decoder reads from it, are exact on 1 and 2 threads; the pixels
    the float synthesis makes of that latent agree to float rounding (the module docstring's
    promise: in CI, on an AMD EPYC, 2 threads changed their last bits; on an Intel Xeon they did not)."""
    x = kodak_crop(h, w)
    data = codec.encode(x)
    header, sections = container.unpack(data)
    assert header.codec == "s2lic" and (header.geometry.height, header.geometry.width) == (h, w)
    assert set(sections) == {"z", "y"}
    x_hat = codec.decode(data)
    assert x_hat.shape == (3, h, w)
    m = codec.model
    lc = m.latent_codec
    padded = torch.nn.functional.pad(x[None], (0, (-w) % 64, 0, (-h) % 64), mode="replicate")
    with torch.no_grad():
        y = m.g_a(padded.contiguous(memory_format=torch.channels_last)).contiguous()
        hyper, _ = lc.hyper(torch.round(lc.h_a(y)).to(torch.float64))
        encoder_side = lc.schedule.likelihoods(
            y.to(torch.float64), lc.context_model, hyper, lc.gaussian_conditional, "ste"
        ).y_hat

    def decoded_latent() -> torch.Tensor:
        z_hat = lc.entropy_bottleneck.decompress(sections["z"], (1, m.N, *blocks((h, w), m.downsampling)))
        decoder_hyper, _ = lc.coding_hyper(z_hat)
        assert torch.equal(decoder_hyper, hyper)
        return lc.schedule.decompress_streams(
            [sections["y"]], lc.context_model, decoder_hyper, lc.gaussian_conditional, tuple(y.shape[2:])
        )

    # the decoded latent is exactly the encoder's quantized latent (float64 training path)
    assert torch.equal(decoded_latent(), encoder_side)
    torch.set_num_threads(2)
    try:
        assert codec.encode(x) == data
        assert torch.equal(decoded_latent(), encoder_side)
        torch.testing.assert_close(codec.decode(data), x_hat, rtol=0, atol=1e-4)
    finally:
        torch.set_num_threads(1)


def test_damaged_files_raise_the_projects_errors(codec):
    """A truncated file is a ContainerError; damaged sections inside a valid container are a
    BitstreamError or decode to an image of the right shape; never another exception."""
    data = codec.encode(kodak_crop(64, 128))
    for cut in (0, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(ContainerError):
            codec.decode(data[:cut])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    with pytest.raises(ContainerError):  # the CRC
        codec.decode(bytes(flipped))
    header, sections = container.unpack(data)
    with pytest.raises(BitstreamError, match="lacks its y section"):
        codec.decode(container.pack(header, {"z": sections["z"]}))
    g = torch.Generator().manual_seed(6)
    errors = 0
    for trial in range(10):
        name = "y" if trial % 3 else "z"
        damaged = bytearray(sections[name])
        for _ in range(1 + trial % 4):
            i = int(torch.randint(len(damaged), (1,), generator=g))
            damaged[i] ^= 1 << int(torch.randint(8, (1,), generator=g))
        if trial % 5 == 4:
            damaged = damaged[: len(damaged) // 2]
        file = container.pack(header, {**sections, name: bytes(damaged)})
        try:
            assert codec.decode(file).shape == (3, 64, 128)
        except BitstreamError:
            errors += 1
    assert errors >= 5  # the coder's final-state check catches most damage


# -- training through the harness ---------------------------------------------------------------------------


def test_trains_exports_and_codes_through_the_harness(tmp_path, monkeypatch, capsys):
    data = make_images(tmp_path / "data", count=2, size=(80, 72))
    arch = "preset=small,N=16,M=24,num_slices=3,window=4,cpb_hidden=16,heads_ctx=1,anchor_context=0"
    run = tmp_path / "run"
    args = ["train", "s2lic", "--data", str(data), "--out", str(run), "--arch", arch, "--lmbda", "0.01"]
    assert cli.main([*args, "--steps", "2", "--crop", "64", "--batch-size", "2", "--quiet"]) == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2
    weights = tmp_path / "weights"
    assert cli.main(["export", str(run), "-q", "2", "--out-dir", str(weights)]) == 0
    monkeypatch.setenv("NEUROCODEC_WEIGHTS_PATH", str(weights))
    codec = registry.load("s2lic", 2)
    assert codec.model.config.anchor_context is False and codec.model.M == 24
    x = kodak_crop(64, 64)
    data_bytes = codec.encode(x)
    assert torch.equal(codec.decode(data_bytes), codec.decode(data_bytes))
    assert codec.decode(data_bytes).shape == x.shape


@pytest.mark.slow
def test_reference_preset_codes_a_kodak_image():
    torch.manual_seed(0)
    c = S2LICCodec("reference").eval()
    c.model.update_tables()
    x, _ = read_image(KODAK)
    data = c.encode(x)
    x_hat = c.decode(data)
    assert x_hat.shape == x.shape
    assert torch.equal(c.decode(data), x_hat)
