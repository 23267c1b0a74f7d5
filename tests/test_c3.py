"""The overfitted ``c3`` codec: roundtrip, exact integer ARM, determinism, rate gap, bad files."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import neurocodec as nc
from neurocodec import container
from neurocodec.codecs import c3, c3_fit
from neurocodec.errors import BitstreamError, LimitError, NeurocodecError
from neurocodec.models.c3 import (
    ACT_BITS,
    ACT_MAX,
    ContextModel,
    ImageModel,
    integer_phase,
    lattice_phases,
    phase_masks,
    table_of,
)

EFFORT = 150
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
    arm, grid: torch.Tensor, coarse: torch.Tensor, phase: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer ARM by int64 arithmetic, position by position through explicit windows."""
    k, ck, n = arm.same.shape[-1], arm.coarse.shape[-1], arm.lattice
    r, cr = k // 2, ck // 2
    py, px = lattice_phases(n)[phase]
    g = F.pad(grid[None, None], (r, r, r, r))[0, 0].to(torch.int64) << ACT_BITS
    cp = F.pad(coarse[None, None], (cr, cr, cr, cr))[0, 0].to(torch.int64) << ACT_BITS
    same, coarse_w = arm.same[phase].to(torch.int64), arm.coarse[phase].to(torch.int64)
    shift = ACT_BITS + arm.kw - arm.kb
    bias = [b.to(torch.int64) << shift for b in (arm.bias[phase], arm.hidden_b, arm.head_b)]
    means, scales = [], []
    for i in range(grid.shape[0] // n):
        for j in range(grid.shape[1] // n):
            y, x = n * i + py, n * j + px
            window = g[y : y + k, x : x + k]
            cwin = cp[y // 2 : y // 2 + ck, x // 2 : x // 2 + ck]
            acc = (same * window).sum((1, 2)) + (coarse_w * cwin).sum((1, 2)) + bias[0]
            a = (acc >> arm.kw).clamp(0, int(ACT_MAX))
            a = ((arm.hidden_w.to(torch.int64) @ a + bias[1]) >> arm.kw).clamp(0, int(ACT_MAX))
            out = (arm.head_w.to(torch.int64) @ a + bias[2]) >> arm.kw
            means.append(out[0])
            scales.append(out[1])
    return torch.stack(means), torch.stack(scales)


ARCHS = [{}, {"arm_lattice": 4}, {"arm_coarse_kernel": 5}, {"arm_lattice": 4, "arm_coarse_kernel": 5}]


@pytest.mark.parametrize("arch", ARCHS)
def test_integer_arm_equals_an_int64_reference(arch: dict) -> None:
    model, steps = random_model(16, 20, **arch)
    arm = c3.integer_arm(model, steps)
    grid = model.latents[0].detach()[0, 0].double()
    coarse = model.latents[1].detach()[0, 0].double()
    phases = lattice_phases(arm.lattice)
    for phase in range(len(phases)):
        got = integer_phase(arm, grid, coarse, phase)
        want = _int64_reference(arm, grid, coarse, phase)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        # only earlier phases are read: the later ones may hold anything
        noisy = grid.clone()
        for p in range(phase, len(phases)):
            py, px = phases[p]
            noisy[py :: arm.lattice, px :: arm.lattice] = 99
        assert all(
            torch.equal(a, b) for a, b in zip(integer_phase(arm, noisy, coarse, phase), got, strict=True)
        )


@pytest.mark.parametrize(("lattice", "coarse_kernel"), [(2, 3), (4, 3), (2, 5), (4, 5)])
def test_float_arm_is_the_masked_window_mlp(lattice: int, coarse_kernel: int) -> None:
    """The one-convolution float ARM (sub-grids as channels) equals the MLP over each phase's
    masked window, position by position."""
    torch.manual_seed(1)
    arm = ContextModel(8, 5, coarse_kernel, lattice=lattice)
    with torch.no_grad():
        arm.head.weight.normal_()
        arm.bias.normal_()
    grid, coarse = torch.randn(1, 1, 8, 12), torch.randn(1, 1, 4, 6)
    mean, log_scale = arm(grid, coarse)
    cr = coarse_kernel // 2
    g = F.pad(grid, (2, 2, 2, 2))[0, 0]
    c = F.pad(coarse, (cr, cr, cr, cr))[0, 0]
    phases = lattice_phases(lattice)
    for y in range(8):
        for x in range(12):
            p = phases.index((y % lattice, x % lattice))
            pre = (arm.same[p] * arm.masks[p] * g[y : y + 5, x : x + 5]).sum((1, 2))
            window = c[y // 2 : y // 2 + coarse_kernel, x // 2 : x // 2 + coarse_kernel]
            pre = pre + (arm.coarse[p] * window).sum((1, 2)) + arm.bias[p]
            out = arm.head(torch.relu(arm.hidden(torch.relu(pre))))
            assert torch.allclose(out, torch.stack([mean[0, 0, y, x], log_scale[0, 0, y, x]]), atol=1e-5)


def test_phase_masks_only_see_earlier_passes() -> None:
    masks = phase_masks(5)
    assert not masks[0].any()  # the first pass has only the coarser grid
    assert masks[1].sum() == 4 and masks[2].sum() == 12 and masks[3].sum() == 16
    masks = phase_masks(5, 4)
    assert masks.sum((1, 2)).tolist() == [0, 4, 4, 8, 4, 8, 8, 12, 12, 16, 16, 20, 16, 20, 20, 24]
    for lattice in (2, 4):  # a pass never sees itself or a later pass
        phases = lattice_phases(lattice)
        for p, (py, px) in enumerate(phases):
            for i, j in phase_masks(5, lattice)[p].nonzero().tolist():
                assert phases.index(((py + i - 2) % lattice, (px + j - 2) % lattice)) < p


def test_table_mapping_is_integer_and_nearest() -> None:
    mean = torch.tensor([0, 31, 32, 255, -1, -33, 1000], dtype=torch.int64)  # units 1/256
    whole, index = table_of(mean, torch.zeros_like(mean))
    approx = whole + (index % 8) / 8
    assert torch.all((approx - mean / 256).abs() <= 1 / 16 + 1e-12)


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
    assert abs(len(data) * 8 / predicted - 1) < 0.02
    net = c3.pack_networks(model, steps)
    again, steps2 = c3.unpack_networks(net)
    assert steps2 == steps
    assert torch.equal(c3.integer_arm(again, steps).same, arm.same)
    for (name, a), b in zip(model.named_parameters(), again.parameters(), strict=True):
        if name.startswith(("synthesis", "upsampler")):
            assert torch.equal(a, b), name


def test_file_size_is_close_to_the_predicted_rate(coded) -> None:
    _, data, fit = coded
    _, sections = container.unpack(data)
    latent_bits = len(sections["latents"]) * 8
    # a tiny image: a 1 % gap is out of reach (stream header, lanes); it is measured on Kodak
    assert latent_bits <= fit["predicted_latent_bits"] * 1.1 + 200


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
    large = dataclasses.replace(header, geometry=dataclasses.replace(header.geometry, height=4000, width=4000))
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
