"""Image-transform layers: the inference routes compute the training formulas (same parameters)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurocodec.models.hyperprior import MeanScaleHyperprior
from neurocodec.models.layers import GDN, Deconv2d, deconv


@pytest.mark.parametrize(
    ("cin", "cout", "k", "stride"), [(8, 3, 5, 2), (8, 3, 3, 2), (6, 5, 5, 3), (6, 4, 7, 2)]
)
def test_sub_pixel_deconv_is_the_transposed_convolution(cin, cout, k, stride):
    torch.manual_seed(0)
    layer = Deconv2d(cin, cout, k, stride, padding=k // 2, output_padding=stride - 1)
    x = torch.randn(2, cin, 5, 7)
    plain = F.conv_transpose2d(x, layer.weight, layer.bias, stride, k // 2, stride - 1)
    assert torch.equal(layer(x), plain)  # autograd on: the plain operator
    with torch.no_grad():
        assert layer._sub_pixel_applies()
        fast = layer(x)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_wide_deconv_keeps_the_plain_operator():
    layer = deconv(8, 32)
    with torch.no_grad():
        assert not layer._sub_pixel_applies()


def _plain_gdn(gdn, x, inverse):
    c = x.shape[1]
    norm = F.conv2d(x * x, gdn.gamma().view(c, c, 1, 1), gdn.beta())
    return x * (torch.sqrt(norm) if inverse else torch.rsqrt(norm))


@pytest.mark.parametrize("inverse", [False, True])
def test_blocked_gdn_is_gdn(inverse):
    torch.manual_seed(1)
    gdn = GDN(16, inverse=inverse)
    gdn.block_pixels = gdn.block_pixels_threaded = 64  # several blocks and a partial one
    with torch.no_grad():
        gdn.gamma.value.add_(0.1 * torch.rand(16, 16))
    x = torch.randn(2, 16, 16, 12)  # several blocks of 64 pixels and a partial one, per image
    plain = _plain_gdn(gdn, x, inverse)
    assert torch.equal(gdn(x), plain)  # autograd on: the plain formula
    with torch.inference_mode():
        # contiguous (the encoder's g_a), on any thread count: bit for bit, so files do not change
        threads = torch.get_num_threads()
        try:
            for n in (1, 2):
                torch.set_num_threads(n)
                assert torch.equal(gdn(x), plain if n == threads else _plain_gdn(gdn, x, inverse))
        finally:
            torch.set_num_threads(threads)
        fast = gdn(x.contiguous(memory_format=torch.channels_last))  # the blocked route
        assert fast.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)


def test_single_threaded_gdn_keeps_the_bits_at_codec_sizes():
    """The encoder's GDN at the sizes of g_a's layers (128 channels, 2048-pixel blocks)."""
    torch.manual_seed(2)
    gdn = GDN(128)
    with torch.no_grad():
        gdn.gamma.value.add_(0.02 * torch.rand(128, 128))
    x = torch.randn(1, 128, 64, 96)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.inference_mode():
            assert torch.equal(gdn(x), _plain_gdn(gdn, x, False))
    finally:
        torch.set_num_threads(threads)


def test_state_dict_is_unchanged():
    """Checkpoints trained before the inference routes existed still load: same keys and shapes."""
    model = MeanScaleHyperprior(N=16, M=24)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["g_s.0.weight"] == (24, 16, 5, 5) and shapes["g_s.6.bias"] == (3,)
    assert shapes["g_s.1.gamma.value"] == (16, 16) and shapes["latent_codec.h_s.up1.weight"] == (16, 24, 5, 5)
    assert not any("_plan" in k or "sub_pixel" in k for k in shapes)
    MeanScaleHyperprior(N=16, M=24).load_state_dict(model.state_dict())
