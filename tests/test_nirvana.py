"""The ``nirvana`` video codec: round trips from the bytes alone, effort, corrupt files, determinism."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import neurocodec
from neurocodec import container
from neurocodec.codecs import nirvana, nirvana_fit
from neurocodec.codecs.nirvana import NirvanaCodec
from neurocodec.entropy import coder
from neurocodec.errors import BitstreamError, ConfigError, ContainerError

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMALL = {"hidden": 16, "width0": 8, "width1": 4, "width2": 4, "patch": 8, "group": 2, "freqs": 3}


def smooth_clip(frames: int = 6, height: int = 32, width: int = 48) -> torch.Tensor:
    """A smooth moving pattern (3, T, H, W) in [0, 1]."""
    t = torch.linspace(0, 1, frames)[:, None, None]
    y = torch.linspace(0, 1, height)[None, :, None]
    x = torch.linspace(0, 1, width)[None, None, :]
    return (
        torch.stack(
            [
                0.5 + 0.4 * torch.sin(4 * x + 2 * t + 1.5 * y),
                0.5 + 0.3 * torch.cos(3 * y - 2 * t + x),
                0.5 + 0.2 * torch.sin(3 * (x + y) + t),
            ]
        )
        .expand(3, frames, height, width)
        .contiguous()
    )


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(float((a - b).square().mean()))


@pytest.fixture(scope="module")
def encoded() -> tuple[torch.Tensor, bytes, dict]:
    x = smooth_clip(5, 20, 30)  # 5 frames: not a multiple of G = 2; 20 x 30: not of P = 8
    codec = NirvanaCodec(quality=5, **SMALL)
    data = codec.encode(x, effort=10)
    return x, data, codec.last_fit


def decode(data: bytes) -> torch.Tensor:
    """Decode with a fresh codec of the file's quality (the architecture comes from the file)."""
    return NirvanaCodec(quality=container.unpack(data)[0].quality).decode(data)


def test_round_trip_from_bytes(encoded, shipped):
    x, data, fit = encoded
    y = neurocodec.decode(data)  # the file names its codec
    assert y.shape == x.shape
    header, sections = container.unpack(data)
    assert header.codec == "nirvana" and set(sections) == {"header", "params"}
    sizes = fit["group_sizes"]
    assert fit["groups"] == len(sizes) and sum(sizes) == 5 and sizes[0] == 2 and max(sizes) <= 2
    assert fit["header_bytes"] == len(sections["header"])
    # no code of the values beats their own histogram's entropy (Gibbs), the Laplace tables included
    assert 0 < fit["zero_order_bits"] <= sum(fit["group_bits"])
    assert abs(psnr(x, y) - fit["psnr_fit"]) < 1e-3  # the encoder measured what the decoder gives
    # the 8-bit grid
    assert torch.equal(y, (y * 255).round() / 255)


def test_registered(shipped):
    assert "nirvana" in {info.name for info in neurocodec.list_codecs()}
    codec = neurocodec.load("nirvana", quality=2)
    assert isinstance(codec, NirvanaCodec) and codec.lmbda == nirvana.LAMBDAS[2]
    assert set(NirvanaCodec.presets) == {"fast", "medium", "slow"}


def test_effort_improves_psnr():
    x = smooth_clip(4, 16, 16)
    codec = NirvanaCodec(quality=6, **SMALL)
    low = psnr(x, codec.decode(codec.encode(x, effort=2)))
    high = psnr(x, codec.decode(codec.encode(x, effort=40)))
    assert high > low + 1.0, (low, high)


def test_deterministic_across_threads():
    # the default architecture on 8 frames of 64 x 96: operations large enough to be split over threads
    data = NirvanaCodec(quality=3).encode(smooth_clip(8, 64, 96), effort=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = decode(data)
        torch.set_num_threads(2)
        two = decode(data)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_same_file_twice():
    x = smooth_clip(2, 8, 8)
    a = NirvanaCodec(quality=3, **SMALL).encode(x, effort=3)
    b = NirvanaCodec(quality=3, **SMALL).encode(x, effort=3)
    assert a == b


def _repack(data: bytes, **changes: bytes) -> bytes:
    header, sections = container.unpack(data)
    return container.pack(header, {**sections, **changes})


def _header_with(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    section = bytearray(container.unpack(data)[1]["header"])
    struct.pack_into(fmt, section, offset % len(section), value)
    return _repack(data, header=bytes(section))


@pytest.mark.parametrize(
    "offset, fmt, value",
    [
        (0, "<B", 3),  # version
        (1, "<B", 0),  # G
        (1, "<B", 1),  # G: groups of 2 frames no longer fit
        (2, "<B", 12),  # P
        (3, "<B", 40),  # frequencies
        (4, "<H", 0),  # hidden
        (6, "<H", 60000),  # width0
        (12, "<B", 1),  # channels
        (13, "<H", 9),  # groups
        (15, "<B", 11),  # tensors
        (16, "<b", -3),  # a step exponent
        (26, "<B", 0),  # a group of no frames
        (26, "<B", 3),  # a group of more than G frames
        (27, "<B", 2),  # groups that do not sum to the frames
        (-1, "<B", 200),  # a scale index
    ],
)
def test_bad_header_fields(encoded, offset, fmt, value):
    _, data, _ = encoded
    with pytest.raises(BitstreamError):
        decode(_header_with(data, offset, fmt, value))


def test_corrupt_sections(encoded):
    _, data, _ = encoded
    _, sections = container.unpack(data)
    header, params = sections["header"], sections["params"]
    bad = [
        {"header": header[:10]},
        {"header": header + b"\0"},
        {"params": params[: len(params) // 2]},
        {"params": params[:3]},
        {"params": b""},
        {"params": params + b"\0\0\0\0"},
    ]
    for i in range(0, len(params), max(1, len(params) // 12)):
        flipped = bytearray(params)
        flipped[i] ^= 0x5A
        bad.append({"params": bytes(flipped)})
    refused = 0
    for change in bad:
        try:
            y = decode(_repack(data, **change))
        except BitstreamError:
            refused += 1
        else:  # a flip the coder cannot see still decodes to a valid video
            assert y.shape == (3, 5, 20, 30) and torch.isfinite(y).all()
    assert refused >= 6  # every truncation and size change at least
    header_, sections_ = container.unpack(data)
    with pytest.raises(BitstreamError):
        decode(container.pack(header_, {"header": sections_["header"]}))


def test_damaged_file(encoded):
    _, data, _ = encoded
    with pytest.raises(ContainerError):
        decode(data[: len(data) - 7])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    with pytest.raises(ContainerError):
        decode(bytes(flipped))


def test_bad_config():
    with pytest.raises(ConfigError):
        NirvanaCodec(quality=1, patch=12)
    with pytest.raises(ConfigError):
        NirvanaCodec(quality=1, depth=3)
    with pytest.raises(ConfigError):
        NirvanaCodec(quality=99).encode(smooth_clip(2, 8, 8), effort=1)


def test_header_round_trip():
    arch = nirvana.Arch(**SMALL)
    steps = list(range(3, 13))
    sizes = [2, 1, 2, 2]
    scales = [[i + j for j in range(10)] for i in range(4)]
    data = nirvana.pack_header(arch, sizes, steps, scales)
    assert len(data) == 16 + 10 + 4 + 40
    assert nirvana.unpack_header(data, 7, 3) == (arch, sizes, steps, scales)
    with pytest.raises(BitstreamError):  # the groups hold 7 frames
        nirvana.unpack_header(data, 8, 3)


def test_a_version_1_file_decodes_as_it_did():
    """Written before groups adapted to motion (every group G frames, the last one padded): the
    decoder reads version-1 headers and gives the frames it gave then."""
    data = (FIXTURES / "nirvana-v1.ncd").read_bytes()
    assert container.unpack(data)[1]["header"][0] == 1
    expected = torch.from_numpy(np.load(FIXTURES / "nirvana-v1.npy"))
    assert torch.equal(decode(data), expected)


def test_group_sizes_follow_motion():
    still = torch.full((1, 12, 4, 4), 0.5)
    assert nirvana_fit.group_sizes(still, 4, 10.0) == [4, 4, 4]
    assert nirvana_fit.group_sizes(still[:, :6], 4, None) == [4, 2]
    moving = still + torch.arange(12.0)[None, :, None, None] * 3 / 255  # 3 levels a frame
    assert nirvana_fit.group_sizes(moving, 4, 7.0) == [4, 3, 3, 2]  # two changes of 3 fit in 7
    cut = still.clone()
    cut[:, 6:] = 0.9  # a scene cut before frame 6
    assert nirvana_fit.group_sizes(cut, 4, 10.0) == [4, 2, 4, 2]
    assert nirvana_fit.group_sizes(still[:, :2], 4, 10.0) == [2]


def test_frames_a_short_group_lacks_cost_nothing():
    """A group of fewer than G frames codes only its frames' heads (the rest keep the previous
    group's values): groups of one frame on a fast-moving clip code fewer integers, and decode."""
    x = smooth_clip(6, 16, 16)
    codec = NirvanaCodec(quality=4, **{**SMALL, "group": 3})
    codec.motion_budget = 0.0  # every group after the first has one frame
    data = codec.encode(x, effort=3)
    assert codec.last_fit["group_sizes"] == [3, 1, 1, 1]
    arch = nirvana.Arch(**{**SMALL, "group": 3})
    _, sections = container.unpack(data)
    assert coder.stream_info(sections["params"])["num_symbols"] == sum(
        nirvana.coded_sizes(arch, 3)
    ) + 3 * sum(nirvana.coded_sizes(arch, 1))
    y = decode(data)
    assert y.shape == x.shape
    assert abs(psnr(x, y) - codec.last_fit["psnr_fit"]) < 1e-3


def test_yuv_planes():
    x = smooth_clip(2, 8, 16)
    codec = NirvanaCodec(quality=4, **SMALL)
    data = codec.encode(x, effort=3, colour="yuv420")
    assert container.unpack(data)[0].geometry.colour == "yuv420"
    assert codec.last_fit["colour"] == "yuv420"
    assert decode(data).shape == x.shape


def test_preset_names():
    codec = NirvanaCodec(quality=4, **SMALL)
    codec.presets = {"fast": 2}  # an instance's own budget table, so that the test stays fast
    assert decode(codec.encode(smooth_clip(2, 8, 8), effort="fast")).shape == (3, 2, 8, 8)
