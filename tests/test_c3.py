"""The overfitted ``c3`` codec: roundtrip, exact integer ARM, determinism, rate gap, bad files."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import neurocodec as nc
from neurocodec import container
from neurocodec.codecs import c3, c3_fit
from neurocodec.entropy import _rans
from neurocodec.errors import BitstreamError, LimitError, NeurocodecError
from neurocodec.models import c3 as models_c3
from neurocodec.models.c3 import (
    ACT_BITS,
    ACT_MAX,
    LATENT_MAX,
    LOG_SCALE_0,
    LOG_SCALE_STEP,
    MEAN_BITS,
    SCALES,
    ContextModel,
    ImageModel,
    raster_mask,
)
from neurocodec.train.checkpoint import load_checkpoint

EFFORT = 150
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CODEC = c3.C3Codec(
    quality=3
)  # decodes every quality-3 file (the registry's packaged configs are hidden in tests)


def image(h: int = 40, w: int = 52, seed: int = 0) -> torch.Tensor:
    """A smooth test picture with some texture, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + 3 * c) * torch.cos(4 * yy) for c in range(3)])
    return (base + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def coded() -> tuple[torch.Tensor, bytes, dict]:
    """An image, its file (EFFORT iterations) and what the encoder measured."""
    codec = c3.C3Codec(quality=3)
    x = image()
    data = codec.encode(x, effort=EFFORT)
    return x, data, dict(codec.last_fit)


def random_model(h: int = 64, w: int = 128, seed: int = 0, **arch) -> tuple[ImageModel, dict[str, int]]:
    """A model with random integer latents and a random ARM, quantized to the given steps."""
    torch.manual_seed(seed)
    m = ImageModel(h, w, **arch)
    steps = {
        "arm.weight": 6,
        "arm.bias": 5,
        "upsampler.weight": 8,
        "synthesis.weight": 8,
        "synthesis.bias": 7,
    }
    with torch.no_grad():
        for y in m.latents:
            y.copy_(torch.round(torch.randn_like(y) * 3))
        # first layers small enough that no latent falls to the float Laplace's likelihood floor
        # (its bits would overstate what the tables' escapes cost)
        m.arm.same.mul_(0.25)
        m.arm.coarse.mul_(0.25)
        m.arm.head.weight.normal_(0, 0.3)
        m.arm.head.bias.copy_(torch.tensor([0.2, 0.5]))
        for name, tensors in c3_fit.groups(m):
            for t in tensors:
                t.copy_(torch.round(t * 2.0 ** steps[name]) * 2.0 ** -steps[name])
    return m, steps


def test_load_lists_every_quality(shipped) -> None:
    info = {i.name: i for i in nc.list_codecs()}["c3"]
    assert info.qualities == tuple(c3.LAMBDAS)
    for q, lmbda in c3.LAMBDAS.items():
        codec = nc.load("c3", quality=q)
        assert codec.lmbda == lmbda and codec.adaptive


def test_roundtrip_decodes_what_the_encoder_fitted(coded) -> None:
    x, data, fit = coded
    header, sections = container.unpack(data)
    assert header.codec == "c3" and set(sections) == {"networks", "latents"}
    y = CODEC.decode(data)
    assert y.shape == x.shape
    psnr = -10 * math.log10(float(torch.mean((y - x) ** 2)))
    flat = -10 * math.log10(float(torch.mean((x - x.mean((1, 2), keepdim=True)) ** 2)))
    # the decoder reconstructs exactly the fitted, quantized model (clamping can only help)
    assert psnr >= fit["psnr_fit"] - 0.01
    assert psnr > flat + 3  # better than the best flat colour


def test_decoding_is_bit_exact_across_threads(coded) -> None:
    _, data, _ = coded
    header, sections = container.unpack(data)
    g = header.geometry
    h, w = (-(-n // c3.PADDING) * c3.PADDING for n in (g.height, g.width))
    model, steps = c3.unpack_networks(sections["networks"])
    arm = c3.integer_arm(model, steps)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = c3.decode_latents(sections["latents"], c3.grid_sizes(h, w), arm)
        torch.set_num_threads(2)
        two = c3.decode_latents(sections["latents"], c3.grid_sizes(h, w), arm)
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    assert torch.equal(CODEC.decode(data), CODEC.decode(data))


def _int64_reference(
    arm, grid: torch.Tensor, coarse: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer part of the mean, table index) of every latent of ``grid``, by int64 arithmetic,
    position by position through explicit windows (the mapping written out from the module doc)."""
    k, ck = arm.same.shape[-1], arm.coarse.shape[-1]
    r, cr = k // 2, ck // 2
    h, w = grid.shape
    g = F.pad(grid[None, None], (r, r, r, r))[0, 0].to(torch.int64) << ACT_BITS
    c = (
        torch.zeros((h + 1) // 2, (w + 1) // 2, dtype=torch.int64)
        if coarse is None
        else coarse.to(torch.int64)
    )
    cp = F.pad(c[None, None], (cr, cr, cr, cr))[0, 0] << ACT_BITS
    same, coarse_w = (arm.same * raster_mask(k)).to(torch.int64), arm.coarse.to(torch.int64)
    shift = ACT_BITS + arm.kw - arm.kb
    bias = [b.to(torch.int64) << shift for b in (arm.bias, arm.hidden_b, arm.head_b)]
    wholes, indexes = [], []
    for y in range(h):
        for x in range(w):
            window = g[y : y + k, x : x + k]
            cwin = cp[y // 2 : y // 2 + ck, x // 2 : x // 2 + ck]
            acc = (same * window).sum((1, 2)) + (coarse_w * cwin).sum((1, 2)) + bias[0]
            a = (acc >> arm.kw).clamp(0, int(ACT_MAX))
            a = ((arm.hidden_w.to(torch.int64) @ a + bias[1]) >> arm.kw).clamp(0, int(ACT_MAX))
            mean, log_scale = ((arm.head_w.to(torch.int64) @ a + bias[2]) >> arm.kw).tolist()
            t = (mean + (1 << (ACT_BITS - MEAN_BITS - 1))) >> (ACT_BITS - MEAN_BITS)
            s = min(max((log_scale - LOG_SCALE_0 + LOG_SCALE_STEP // 2) // LOG_SCALE_STEP, 0), SCALES - 1)
            wholes.append(min(max(t >> MEAN_BITS, -LATENT_MAX), LATENT_MAX))
            indexes.append((s << MEAN_BITS) + (t & ((1 << MEAN_BITS) - 1)))
    return torch.tensor(wholes), torch.tensor(indexes)


ARCHS = [
    {},
    {"arm_hidden": 16},
    {"arm_coarse_kernel": 5},
    {"arm_kernel": 7, "arm_hidden": 12},
    {"arm_kernel": 7, "arm_hidden": 24, "synthesis_width": 48},  # the native ARM's 24-wide path
]


@pytest.mark.parametrize("arch", ARCHS)
def test_native_integer_arm_equals_an_int64_reference(arch: dict) -> None:
    """The native ARM (what encoder and decoder use) predicts every latent of every grid as the
    int64 reference does: values (latent - integer mean) and table indexes."""
    model, steps = random_model(64, 128, **arch)
    arm = c3.integer_arm(model, steps)
    with torch.no_grad():  # a strong mean, so that integer parts and clamping are exercised
        arm.head_b[0] = 3 * 2**arm.kb
    grids = [y.detach()[0, 0].double() for y in model.latents]
    coarse_first = grids[::-1]
    flat = [g.to(torch.int32).reshape(-1).numpy() for g in coarse_first]
    n = sum(f.size for f in flat)
    values, indexes = torch.empty(n, dtype=torch.int32), torch.empty(n, dtype=torch.int32)
    _rans.arm_symbols(
        arm.native(), [tuple(g.shape) for g in coarse_first], flat, values.numpy(), indexes.numpy()
    )
    position = 0
    for level, g in enumerate(coarse_first):
        whole, index = _int64_reference(arm, g, coarse_first[level - 1] if level else None)
        count = g.numel()
        assert torch.equal(indexes[position : position + count].to(torch.int64), index), level
        assert torch.equal(
            values[position : position + count].to(torch.int64), g.reshape(-1).to(torch.int64) - whole
        )
        position += count


@pytest.mark.parametrize("coarse_kernel", [3, 5])
def test_float_arm_is_the_causal_window_mlp(coarse_kernel: int) -> None:
    """The convolutional float ARM equals the MLP over each latent's causal window and coarse
    window, position by position (what the integer ARM computes in fixed point)."""
    torch.manual_seed(1)
    arm = ContextModel(8, 5, coarse_kernel)
    with torch.no_grad():
        arm.head.weight.normal_()
        arm.bias.normal_()
        arm.same.normal_()  # including outside the mask: the mask must hide it
    grid, coarse = torch.randn(1, 1, 8, 12), torch.randn(1, 1, 4, 6)
    mean, log_scale = arm(grid, coarse)
    cr = coarse_kernel // 2
    g = F.pad(grid, (2, 2, 2, 2))[0, 0]
    c = F.pad(coarse, (cr, cr, cr, cr))[0, 0]
    for y in range(8):
        for x in range(12):
            pre = (arm.same * raster_mask(5) * g[y : y + 5, x : x + 5]).sum((1, 2))
            window = c[y // 2 : y // 2 + coarse_kernel, x // 2 : x // 2 + coarse_kernel]
            pre = pre + (arm.coarse * window).sum((1, 2)) + arm.bias
            out = arm.head(torch.relu(arm.hidden(torch.relu(pre))))
            assert torch.allclose(out, torch.stack([mean[0, 0, y, x], log_scale[0, 0, y, x]]), atol=1e-5)
    # a latent never sees itself or anything after it in raster order
    assert raster_mask(5).sum() == 12 and not raster_mask(5)[2, 2:].any() and not raster_mask(5)[3:].any()


@pytest.mark.parametrize("relu_residual", [False, True])
def test_synthesis_and_coarsest_arm_equal_their_plain_definitions(relu_residual: bool) -> None:
    """The tiled synthesis equals 1x1 convolutions on the concatenated upsampled grids, then the
    residual 3x3 convolutions (values and gradients, up to float summation order), and the
    coarsest grid's ARM is the window MLP without a coarse window."""
    torch.manual_seed(2)
    model = ImageModel(64, 128, synthesis_width=8, synthesis_relu_residual=relu_residual)
    syn = model.synthesis
    with torch.no_grad():
        for p in [*model.latents, *syn.parameters()]:
            p.normal_()

    def plain(grids):
        x = torch.cat([grids[0], model.upsampler(grids)], 1)
        x = syn.out(torch.relu(syn.mix(x)))
        if relu_residual:
            x = x + torch.relu(syn.res1(F.pad(x, (1, 1, 1, 1), mode="replicate")))
        return x + syn.res2(F.pad(x, (1, 1, 1, 1), mode="replicate"))

    results = []
    for f in (plain, model.reconstruct):
        model.zero_grad()
        out = f(list(model.latents))
        weights = torch.rand(out.shape, generator=torch.Generator().manual_seed(0))  # no cancellation
        (out * weights).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-4)
    for a, b in zip(results[1][1], results[0][1], strict=True):  # float32 sums in another order
        assert (a - b).norm() <= 1e-4 * b.norm() + 1e-6

    arm = model.arm
    with torch.no_grad():
        arm.head.weight.normal_()
        arm.same.normal_()
    grid = torch.randn(1, 1, 3, 4)
    mean, log_scale = arm(grid, None)
    g = F.pad(grid, (2, 2, 2, 2))[0, 0]
    for y in range(3):
        for x in range(4):
            pre = (arm.same * raster_mask(5) * g[y : y + 5, x : x + 5]).sum((1, 2)) + arm.bias
            out = arm.head(torch.relu(arm.hidden(torch.relu(pre))))
            assert torch.allclose(out, torch.stack([mean[0, 0, y, x], log_scale[0, 0, y, x]]), atol=1e-5)


def test_hand_written_backward_passes_match_autograd() -> None:
    """The upsampler's and the ARM's windows' hand-written backward passes (training only) have
    autograd's gradients (float64 gradcheck, odd and even sizes, every phase), and their forward
    values are the decoder's exactly."""
    torch.manual_seed(3)
    for shape in [(1, 1, 3, 1), (1, 3, 4, 5)]:
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        taps = torch.randn(4, dtype=torch.float64, requires_grad=True)
        for dim in (-1, -2):
            assert torch.autograd.gradcheck(models_c3._upsample_axis, (x, taps, dim))
            with torch.no_grad():
                values = models_c3._upsample_axis_values(x, taps, dim)
                assert torch.equal(models_c3._upsample_axis(x, taps, dim), values)
        with torch.no_grad():  # along columns: the same floats as along the rows of the transpose
            along_rows = models_c3._upsample_axis_values(x.transpose(2, 3), taps, -1).transpose(2, 3)
            assert torch.equal(models_c3._upsample_axis_values(x, taps, -2), along_rows)
    arm = ContextModel(4, 5, 3).double()
    for h, w in [(4, 6), (2, 2)]:
        grid = torch.randn(1, 1, h, w, dtype=torch.float64, requires_grad=True)
        coarse = torch.randn(1, 1, h // 2, w // 2, dtype=torch.float64, requires_grad=True)
        for views in (
            arm.windows,
            lambda g: arm.windows(g, (1, 0)),
            lambda g: arm.windows(g, (0, 1)),
            arm.parents,
        ):
            assert torch.autograd.gradcheck(views, (grid,))
            with torch.no_grad():
                plain = views(grid)
            assert torch.equal(views(grid), plain)
        assert torch.autograd.gradcheck(lambda g, c: torch.cat(arm(g, c)), (grid, coarse))


def test_files_with_the_relu_residual_decode_as_they_did(coded) -> None:
    """A file of the synthesis with its ReLU residual 3x3 (layout byte 1, written before the
    layer was dropped, tests/fixtures/) decodes to what it decoded to then; new files lack the
    layer (layout byte 0x11) and their networks section round-trips without it."""
    old = FIXTURES / "c3-relu-residual-q3.ncd"
    data = old.read_bytes()
    networks = container.unpack(data)[1]["networks"]
    assert networks[3] == c3.RASTER
    model, _ = c3.unpack_networks(networks)
    assert model.synthesis.res1 is not None
    expected = np.load(FIXTURES / "c3-relu-residual-q3.npy")
    np.testing.assert_allclose(CODEC.decode(data).numpy(), expected, rtol=0, atol=1e-5)
    _, new, _ = coded
    networks = container.unpack(new)[1]["networks"]
    assert networks[3] == c3.RASTER | c3.NO_RELU_RESIDUAL
    model, steps = c3.unpack_networks(networks)
    assert model.synthesis.res1 is None
    assert c3.pack_networks(model, steps) == networks


@pytest.mark.parametrize("arch", ARCHS)
def test_latents_and_networks_roundtrip_and_rate_matches_the_model(arch: dict) -> None:
    model, steps = random_model(**arch)
    arm = c3.integer_arm(model, steps)
    grids = [y.detach()[0, 0].double() for y in model.latents]
    data = c3.encode_latents(grids, arm)
    assert all(
        torch.equal(a, b)
        for a, b in zip(c3.decode_latents(data, [tuple(g.shape) for g in grids], arm), grids, strict=True)
    )
    with torch.no_grad():
        predicted = float(c3_fit.latent_bits(model, [y.detach() for y in model.latents]))
        coded = float(c3_fit.latent_bits(model, [y.detach() for y in model.latents], coded=True))
    assert abs(len(data) * 8 / predicted - 1) < 0.02
    # at the tables' resolution, what is left is the stream's framing and the escapes
    assert abs(len(data) * 8 / coded - 1) < abs(len(data) * 8 / predicted - 1) + 1e-3
    assert abs(len(data) * 8 / coded - 1) < 0.01
    net = c3.pack_networks(model, steps)
    again, steps2 = c3.unpack_networks(net)
    assert steps2 == steps
    assert torch.equal(c3.integer_arm(again, steps).same, arm.same)
    for (name, a), b in zip(model.named_parameters(), again.parameters(), strict=True):
        if name.startswith(("synthesis", "upsampler")):
            assert torch.equal(a, b), name


def test_coded_rate_prices_tails_and_escapes_as_the_tables_do() -> None:
    """Small scales and wide latents put many latents far in the tails and past the tables'
    range (escapes): the coded rate (what the fit's hard phase and its best-parameter rule read)
    is the tables' code length, where the plain Laplace's floor overstates it."""
    model, steps = random_model(seed=3)
    with torch.no_grad():
        model.arm.head.bias.copy_(torch.tensor([0.0, -2.5]))  # scales about 0.08: K = 1
        for name, tensors in c3_fit.groups(model):
            for t in tensors:
                t.copy_(torch.round(t * 2.0 ** steps[name]) * 2.0 ** -steps[name])
    grids = [y.detach() for y in model.latents]
    exact = c3.latent_table_bits([y[0, 0].double() for y in grids], c3.integer_arm(model, steps))
    with torch.no_grad():
        coded = float(c3_fit.latent_bits(model, grids, coded=True))
        plain = 0.0  # the Laplace's masses at the tables' resolution, floored at 1e-9 only
        for level in range(len(grids)):
            mean, scale = model.grid_rate(grids, level, coded=True)
            plain -= float(torch.log2(c3_fit._LAPLACE.likelihood(grids[level], scale, mean)).sum())
    assert plain > 1.1 * exact  # the case is one of tails and escapes
    assert abs(coded / exact - 1) < 0.005
    stream = c3.encode_latents([y[0, 0].double() for y in grids], c3.integer_arm(model, steps))
    assert 0 <= len(stream) * 8 - exact < 8 * 64  # the stream's framing: header, state, CRC


def test_file_size_is_close_to_the_predicted_rate(coded) -> None:
    _, data, fit = coded
    _, sections = container.unpack(data)
    latent_bits = len(sections["latents"]) * 8
    # a tiny image: a 1 % gap is out of reach (stream header, lanes); it is measured on Kodak
    assert latent_bits <= fit["predicted_latent_bits"] * 1.1 + 200
    # without the stream's framing, what is left is the tables' quantization and rANS's final state
    payload = latent_bits - 8 * fit["latent_framing_bytes"]
    assert abs(payload - fit["predicted_latent_bits"]) < 0.02 * fit["predicted_latent_bits"] + 32


@pytest.mark.parametrize("cut", [1, 10, 50])
def test_truncated_or_corrupt_files_raise_clear_errors(coded, cut: int) -> None:
    _, data, _ = coded
    with pytest.raises(NeurocodecError):
        CODEC.decode(data[:-cut])
    header, sections = container.unpack(data)
    for name in sections:
        for damaged in (sections[name][: len(sections[name]) // 2], bytes(len(sections[name])), b""):
            broken = container.pack(header, {**sections, name: damaged})
            try:
                CODEC.decode(broken)
            except NeurocodecError:
                pass  # a clear error; decoding garbage without one is also allowed for networks


def test_a_forged_huge_geometry_is_refused_before_allocating(coded) -> None:
    _, data, _ = coded
    header, sections = container.unpack(data)
    huge = dataclasses.replace(
        header, geometry=dataclasses.replace(header.geometry, height=20000, width=30000)
    )
    with pytest.raises(LimitError):  # beyond the decoder's resource policy: refused from the header
        CODEC.decode(container.pack(huge, sections))
    # within the policy, but not the size the coded latents were fitted at: c3's own check
    large = dataclasses.replace(
        header, geometry=dataclasses.replace(header.geometry, height=4000, width=4000)
    )
    with pytest.raises(BitstreamError, match="latents"):
        CODEC.decode(container.pack(large, sections))


def test_bad_quality_and_effort_are_refused(shipped) -> None:
    with pytest.raises(NeurocodecError):
        nc.load("c3", quality=9)
    with pytest.raises(NeurocodecError):
        nc.load("c3", quality=3).encode(image(), effort=-1)


def test_cli_encode_decode(tmp_path: Path, shipped) -> None:
    from PIL import Image

    x = image(24, 30)
    Image.fromarray((x.permute(1, 2, 0) * 255).round().byte().numpy()).save(tmp_path / "a.png")
    run = [sys.executable, "-m", "neurocodec"]
    src = str(Path(__file__).resolve().parents[1] / "src")  # this checkout's package, whatever the cwd
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]),
    }
    enc = subprocess.run(
        [*run, "encode", "a.png", "--codec", "c3", "-q", "2", "--effort", "10"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=env,
    )
    assert enc.returncode == 0, enc.stderr
    out = next(tmp_path.glob("a.*nc*"))
    dec = subprocess.run(
        [*run, "decode", out.name, "-o", "b.png"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=env,
    )
    assert dec.returncode == 0, dec.stderr
    assert Image.open(tmp_path / "b.png").size == (30, 24)
    bad = subprocess.run(
        [*run, "encode", "a.png", "--codec", "c3", "--effort", "turbo", "-o", "c.ncd"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=env,
    )
    assert bad.returncode != 0 and "fast, medium, slow" in bad.stderr and "Traceback" not in bad.stderr


def test_fit_ends_on_its_best_checked_parameters() -> None:
    """The fit goes back to the parameters with the lowest coded loss it checked (here a learning
    rate far too high for the hard phase makes its last steps the worst ones)."""
    x = image()[None]
    schedule = c3_fit.Schedule(60, candidates=1, hard=0.5, hard_lr=0.5, check=5)
    coded_losses = []

    def trace(phase, model, loss, bpp, mse) -> None:
        if len(coded_losses) < 60:
            with torch.no_grad():
                coded_losses.append(
                    c3_fit.model_loss(model, x, 0.01, c3_fit.hard_round, coded=True)[0].item()
                )

    model = c3_fit.fit(x, (64, 64), 0.01, schedule, dict(c3.ARCH), trace=trace)
    final = c3_fit.model_loss(model, x, 0.01, c3_fit.hard_round, coded=True)[0].item()
    checked = coded_losses[4::5]
    assert coded_losses[-1] > min(checked)  # the hard phase did drift
    assert final == pytest.approx(min(checked), rel=1e-6)


@pytest.mark.parametrize(("freeze", "gaussian"), [(False, (0.22, 0.15)), (True, (0.22, 0.15)), (True, None)])
def test_noise_and_held_latents(freeze: bool, gaussian) -> None:
    """The fit runs with Gaussian noise (Cool-chic's, the default) or Kumaraswamy noise (C3's,
    ``gaussian=None``), and ``freeze_latents_hard`` holds the latents through the hard phase while
    the networks still move (without it both move)."""
    x = image()[None]
    schedule = c3_fit.Schedule(
        40, candidates=2, warmup=0.2, hard=0.5, hard_lr=1e-2, gaussian=gaussian, warmup_gaussian=0.19,
        freeze_latents_hard=freeze,
    )  # fmt: skip
    seen: list[tuple[list[torch.Tensor], torch.Tensor]] = []

    def trace(phase, model, loss, bpp, mse) -> None:
        assert math.isfinite(loss)
        if phase == "hard":
            seen.append(
                ([y.detach().clone() for y in model.latents], model.synthesis.mix.weight.detach().clone())
            )

    c3_fit.fit(x, (64, 64), 0.01, schedule, dict(c3.ARCH), trace=trace)
    (first, w_first), (last, w_last) = seen[0], seen[-1]
    assert len(seen) == 20
    assert not torch.equal(w_first, w_last)
    held = all(torch.equal(a, b) for a, b in zip(first, last, strict=True))
    assert held == freeze


class _Stop(Exception):
    pass


def test_a_stopped_fit_resumes_from_its_checkpoint_to_the_same_parameters(tmp_path) -> None:
    """A fit stopped in its main phase and again in its hard phase, resumed each time from its
    checkpoint, ends on the parameters of a fit never stopped; the folder is gone at the end, and a
    checkpoint of another fit (another lambda) is not taken up."""
    x = image()[None]
    schedule = c3_fit.Schedule(60, candidates=2, hard=0.3, check=5)
    arch = dict(c3.ARCH)
    whole = c3_fit.fit(x, (64, 64), 0.01, schedule, arch).state_dict()
    folder = tmp_path / "fit"
    steps = [0]

    def stop_at(n):
        def trace(phase, model, loss, bpp, mse) -> None:
            steps[0] += 1
            if steps[0] == n:
                raise _Stop

        return trace

    for stop, phase in ((25, "main"), (50, "hard")):
        with pytest.raises(_Stop):
            c3_fit.fit(
                x, (64, 64), 0.01, schedule, arch, trace=stop_at(stop), checkpoint=folder, checkpoint_every=7
            )
        assert load_checkpoint(folder)[1]["phase"] == phase
        steps[0] = load_checkpoint(folder)[1]["steps"]  # the resumed fit goes on from there
    resumed = c3_fit.fit(
        x, (64, 64), 0.01, schedule, arch, checkpoint=folder, checkpoint_every=7
    ).state_dict()
    assert not folder.exists()
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)

    with pytest.raises(_Stop):
        c3_fit.fit(x, (64, 64), 0.01, schedule, arch, trace=stop_at(25 + steps[0]), checkpoint=folder)
    other = c3_fit.fit(x, (64, 64), 0.02, schedule, arch, checkpoint=folder).state_dict()
    fresh = c3_fit.fit(x, (64, 64), 0.02, schedule, arch).state_dict()
    assert all(torch.equal(other[k], fresh[k]) for k in fresh)


def test_the_architecture_follows_the_quality_or_target() -> None:
    """Below quality RICH_QUALITY (or a target of RICH_BPP) the base networks, from it the richer
    ARM; overrides win, and the file records what was used."""
    low, high = c3.C3Codec(quality=c3.RICH_QUALITY - 1), c3.C3Codec(quality=c3.RICH_QUALITY)
    assert low.arch == c3.ARCH and high.arch == {**c3.ARCH, **c3.RICH_ARCH} != c3.ARCH
    high.target_bpp = c3.RICH_BPP / 2
    assert high.arch == c3.ARCH
    low.target_bpp = c3.RICH_BPP
    assert low.arch["arm_hidden"] == c3.RICH_ARCH["arm_hidden"]
    assert c3.C3Codec(quality=5, arm_hidden=4).arch["arm_hidden"] == 4
    data = c3.C3Codec(quality=5, synthesis_width=8).encode(image(16, 16), effort=20)
    model, _ = c3.unpack_networks(container.unpack(data)[1]["networks"])
    assert model.arm.hidden_size == c3.RICH_ARCH["arm_hidden"] and model.synthesis.mix.out_channels == 8


def test_refinement_of_the_quantized_networks_lowers_the_coded_loss() -> None:
    """RDOQ of the networks: parameters stay on their steps, the coded loss (the parameters' bits
    included) does not rise, and on a quick fit some parameters move."""
    x = image(64, 64)[None]
    model = c3_fit.fit(x, (64, 64), c3.LAMBDAS[3], c3_fit.Schedule(60, candidates=1), dict(c3.ARCH))
    with torch.no_grad():
        for y in model.latents:
            y.copy_(torch.round(y))
        steps = c3_fit.choose_steps(model, x, c3.LAMBDAS[3], c3.WEIGHT_MAX)

    def loss() -> float:
        bits = sum(
            c3_fit.parameter_cost(torch.cat([c3_fit.coded_values(model, t) * 2.0 ** steps[n] for t in ts]))[1]
            for n, ts in c3_fit.groups(model)
        )
        return c3_fit.coded_loss(model, x, c3.LAMBDAS[3])[0] + bits / x[0, 0].numel()

    before = loss()
    moved = c3_fit.refine_parameters(model, x, c3.LAMBDAS[3], steps, c3.WEIGHT_MAX)
    assert moved > 0 and loss() < before
    for name, tensors in c3_fit.groups(model):
        for t in tensors:
            assert torch.equal(t * 2.0 ** steps[name], torch.round(t * 2.0 ** steps[name])), name
    assert c3_fit.Schedule(1000).refine_share() == 0.25 and c3_fit.Schedule(3000).refine_share() == 1.0


def test_refitting_the_arm_on_the_rounded_latents_lowers_their_coded_bits() -> None:
    """After a quick fit, the ARM fitted alone to the rounded latents codes them in fewer bits,
    and nothing but the ARM changes; a refit that would not help keeps the ARM it started from."""
    x = image(64, 64)[None]
    model = c3_fit.fit(x, (64, 64), c3.LAMBDAS[1], c3_fit.Schedule(60, candidates=1), dict(c3.ARCH))
    with torch.no_grad():
        for y in model.latents:
            y.copy_(torch.round(y))
    grids = [y.detach().clone() for y in model.latents]
    others = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("arm.")}

    def coded_bits() -> float:
        with torch.no_grad():
            return float(c3_fit.latent_bits(model, grids, coded=True))

    before = coded_bits()
    saved = c3_fit.refit_arm(model, 100)
    assert saved > 0 and coded_bits() == pytest.approx(before - saved)
    assert all(torch.equal(p, others[n]) for n, p in model.named_parameters() if n in others)
    arm = [p.detach().clone() for p in model.arm.parameters()]
    assert c3_fit.refit_arm(model, 100, lr=0.0) == 0.0  # no step can lower the bits: the ARM stays
    assert all(torch.equal(a, b) for a, b in zip(arm, model.arm.parameters(), strict=True))
    assert [c3_fit.Schedule(n).arm_refit_steps() for n in (150, 1000, 10000)] == [150, 300, 1000]


def test_start_lambda_interpolates_the_measured_rates() -> None:
    for lmbda, bpp in c3_fit.LAMBDA_BPP:
        assert c3_fit.start_lambda(bpp) == pytest.approx(lmbda, rel=1e-9)
    rates = [0.02, 0.1, 0.3, 1.0, 4.0]
    lambdas = [c3_fit.start_lambda(b) for b in rates]
    assert lambdas == sorted(lambdas) and all(lm > 0 for lm in lambdas)


def test_a_rate_target_steers_lambda_to_it() -> None:
    """Started at a lambda whose fit codes 1.5x the wanted rate of latents, the steered fit lands
    near the target. (On this 64x64 image 300 iterations of Cool-chic's recipe code no less than
    about 63 % of the free rate however low lambda goes: a target of half the free rate ends 1.26x
    above it; with C3's recipe, latents at 4x the learning rate, a third was reachable.)"""
    x = image(64, 64)[None]
    schedule = c3_fit.Schedule(300, candidates=1)

    def coded_bpp(model) -> float:
        with torch.no_grad():
            return c3_fit.model_loss(model, x, 1.0, c3_fit.hard_round, coded=True)[1].item()

    start = 0.05
    free = coded_bpp(c3_fit.fit(x, (64, 64), start, schedule, dict(c3.ARCH)))
    target = c3_fit.RateTarget(free / 1.5, network_bytes=0)
    steered = c3_fit.fit(x, (64, 64), start, schedule, dict(c3.ARCH), target=target)
    assert target.lmbda < start
    # within a factor 1.25 of the target, from 1.5x (0.95x on an Intel Xeon of these machines)
    ratio = coded_bpp(steered) / target.bpp
    assert 1 / 1.25 < ratio < 1.25, (free, coded_bpp(steered))


def test_cli_bpp_is_checked(tmp_path: Path, capsys, shipped) -> None:
    from PIL import Image

    from neurocodec.cli import main

    Image.fromarray((image(24, 30).permute(1, 2, 0) * 255).round().byte().numpy()).save(tmp_path / "a.png")
    assert (
        main(["encode", str(tmp_path / "a.png"), "-c", "c3", "--bpp", "0", "-o", str(tmp_path / "b.ncd")])
        == 2
    )
    assert "--bpp" in capsys.readouterr().err
    assert (
        main(
            [
                "encode",
                str(tmp_path / "a.png"),
                "-c",
                "hyperprior",
                "--bpp",
                "1",
                "-o",
                str(tmp_path / "c.ncd"),
            ]
        )
        == 2
    )
    assert "no target-rate mode" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.ncd"))
