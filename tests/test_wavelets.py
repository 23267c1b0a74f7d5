"""Wavelet packet transforms: exact inverses, PyWavelets' coefficients and channel order, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from neurocodec.errors import GeometryError
from neurocodec.transforms import WAVELETS, iwpt1d, iwpt2d, packet_frequencies, wpt1d, wpt2d

# PyWavelets' own bior4.4 and sym4 taps reconstruct to ~3e-12 per level in float64 (their
# filters are printed to 16 digits, not exact): our float64 bound is that, not rounding.
FLOAT64_BOUND = {"bior4.4": 1e-10, "sym4": 1e-10}


def rand(*shape: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("wavelet", ["haar", "bior4.4"])
@pytest.mark.parametrize("levels", [1, 2, 3, 4])  # 4: a 3-level step, then a 1-level one
def test_2d_matches_pywavelets_packets(wavelet: str, levels: int) -> None:
    x = rand(2, 3, 32, 48, dtype=torch.float64, seed=levels)
    X = wpt2d(x, levels, wavelet)
    assert X.shape == (2, 3 * 4**levels, 32 >> levels, 48 >> levels)
    for n in range(2):
        for c in range(3):
            packet = pywt.WaveletPacket2D(x[n, c].numpy(), wavelet, mode="periodization", maxlevel=levels)
            nodes = packet.get_level(levels, order="natural")
            expected = np.stack([node.data for node in nodes])
            ours = X[n, c * 4**levels : (c + 1) * 4**levels].numpy()
            np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
    # the first level is pywt's dwt2 in the documented band order a, h, v, d
    cA, (cH, cV, cD) = pywt.dwt2(x[0, 0].numpy(), wavelet, mode="periodization")
    one = wpt2d(x, 1, wavelet)[0, :4].numpy()
    np.testing.assert_allclose(one, np.stack([cA, cH, cV, cD]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("wavelet", ["haar", "bior4.4"])
@pytest.mark.parametrize("levels", [1, 2, 3, 5, 8])  # 5 and 8: several steps of up to 3 levels
def test_1d_matches_pywavelets_packets(wavelet: str, levels: int) -> None:
    x = rand(3, 2, 768, dtype=torch.float64, seed=levels)
    X = wpt1d(x, levels, wavelet)
    assert X.shape == (3, 2 * 2**levels, 768 >> levels)
    for n in range(3):
        for c in range(2):
            packet = pywt.WaveletPacket(x[n, c].numpy(), wavelet, mode="periodization", maxlevel=levels)
            expected = np.stack([node.data for node in packet.get_level(levels, order="natural")])
            np.testing.assert_allclose(X[n, c * 2**levels : (c + 1) * 2**levels].numpy(), expected, atol=1e-5)
    cA, cD = pywt.dwt(x[1, 1].numpy(), wavelet, mode="periodization")
    np.testing.assert_allclose(wpt1d(x, 1, wavelet)[1, 2:].numpy(), np.stack([cA, cD]), atol=1e-12)


def test_float32_input_agrees_with_pywavelets() -> None:
    x = rand(1, 1, 32, 32)
    X = wpt2d(x, 3)
    packet = pywt.WaveletPacket2D(x[0, 0].double().numpy(), "bior4.4", mode="periodization", maxlevel=3)
    expected = np.stack([node.data for node in packet.get_level(3, order="natural")])
    assert X.dtype == torch.float32
    np.testing.assert_allclose(X[0].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("levels", [1, 3, 5])
def test_perfect_reconstruction(wavelet: str, levels: int) -> None:
    size = 2**levels
    image = rand(2, 3, 2 * size, 3 * size, seed=levels)
    audio = rand(2, 2, 5 * size, seed=levels + 1)
    assert (iwpt2d(wpt2d(image, levels, wavelet), levels, wavelet) - image).abs().max() < 1e-5
    assert (iwpt1d(wpt1d(audio, levels, wavelet), levels, wavelet) - audio).abs().max() < 1e-5
    bound = FLOAT64_BOUND.get(wavelet, 1e-12)
    image64, audio64 = image.double(), audio.double()
    assert (iwpt2d(wpt2d(image64, levels, wavelet), levels, wavelet) - image64).abs().max() < bound
    assert (iwpt1d(wpt1d(audio64, levels, wavelet), levels, wavelet) - audio64).abs().max() < bound


def test_one_sample_per_band_and_many_levels() -> None:
    """Bands of a single sample wrap around many times (the periodic extension of tiny inputs)."""
    x = rand(1, 1, 8, 8, dtype=torch.float64)
    X = wpt2d(x, 3)
    assert X.shape == (1, 64, 1, 1)
    assert (iwpt2d(X, 3) - x).abs().max() < 1e-10
    a = rand(1, 2, 256)
    assert (iwpt1d(wpt1d(a, 8), 8) - a).abs().max() < 1e-5


def test_analysis_is_linear_and_near_orthogonal() -> None:
    """bior4.4 is close to energy preserving: a packet-domain MSE is a pixel-domain MSE."""
    x, y = rand(1, 3, 32, 32, seed=1), rand(1, 3, 32, 32, seed=2)
    assert torch.allclose(wpt2d(2 * x + y, 2), 2 * wpt2d(x, 2) + wpt2d(y, 2), atol=1e-5)
    ratio = float(wpt2d(x, 3).square().sum() / x.square().sum())
    assert 0.9 < ratio < 1.1


def test_dtype_and_batch_independence() -> None:
    x = rand(3, 2, 16, 16)
    batched = wpt2d(x, 2)
    assert torch.equal(batched[1:2], wpt2d(x[1:2], 2))
    assert wpt2d(x.double(), 2).dtype == torch.float64
    assert wpt1d(x[:, :, 0].to(torch.bfloat16), 2).dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("call", "shape"),
    [
        (lambda x: wpt2d(x, 3), (1, 3, 30, 32)),  # 30 is not a multiple of 8
        (lambda x: wpt2d(x, 1), (1, 3, 7, 8)),
        (lambda x: wpt1d(x, 2), (1, 2, 6)),
        (lambda x: wpt1d(x, 1), (1, 2, 0)),
        (lambda x: wpt2d(x, 1), (3, 8, 8)),  # no channel dimension
        (lambda x: wpt1d(x, 1), (1, 2, 2, 8)),
        (lambda x: iwpt2d(x, 2), (1, 12, 4, 4)),  # 12 channels are not whole packets of 16
        (lambda x: iwpt1d(x, 3), (1, 4, 4)),
    ],
)
def test_bad_sizes_are_clear_errors(call, shape: tuple[int, ...]) -> None:
    with pytest.raises(GeometryError, match=r"multiple|shaped"):
        call(torch.zeros(shape))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown wavelet"):
        wpt2d(torch.zeros(1, 1, 8, 8), 1, "nope")
    with pytest.raises(ValueError, match="levels"):
        wpt1d(torch.zeros(1, 1, 8), 0)
    with pytest.raises(TypeError, match="floating"):
        wpt1d(torch.zeros(1, 1, 8, dtype=torch.int32), 1)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_packet_frequencies_are_pywavelets_frequency_order(levels: int) -> None:
    one = pywt.WaveletPacket(np.zeros(64), "haar", mode="periodization", maxlevel=levels)
    natural = [node.path for node in one.get_level(levels, order="natural")]
    by_frequency = [node.path for node in one.get_level(levels, order="freq")]
    assert packet_frequencies(levels, 1)[:, 0].tolist() == [by_frequency.index(p) for p in natural]
    two = pywt.WaveletPacket2D(np.zeros((16, 16)), "haar", mode="periodization", maxlevel=levels)
    grid = two.get_level(levels, order="freq")  # rows: bands along H, columns: along W
    where = {node.path: [i, j] for i, row in enumerate(grid) for j, node in enumerate(row)}
    natural = [node.path for node in two.get_level(levels, order="natural")]
    assert packet_frequencies(levels, 2).tolist() == [where[p] for p in natural]
