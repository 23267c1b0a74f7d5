"""Integer prior-path layers: exact, identical integers whatever the threads, batch or layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocodec.models.integer import IntegerConv2d, IntegerConvTranspose2d


def int64_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """An independent exact oracle: integer convolution in int64 numpy (zero padding k//2)."""
    n, _c, h, wd = x.shape
    o, _, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
    out = np.zeros((n, o, oh, ow), np.int64)
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b[None, :, None, None]


def random_layer(cls, seed, cin=24, cout=16, k=5, stride=2, **kw):
    torch.manual_seed(seed)
    layer = cls(cin, cout, k, stride, **kw)
    with torch.no_grad():
        layer.weight.mul_(8.0)  # exercise the full integer weight range, clipping included
        layer.bias.normal_(0, 20)
    return layer


def test_matches_int64_oracle():
    layer = random_layer(IntegerConv2d, 0, act_bits=None, input_bound=2**15)
    rng = np.random.default_rng(0)
    x = rng.integers(-(2**15), 2**15, size=(2, 24, 13, 9))
    got = layer(torch.from_numpy(x).double()).numpy()
    w = layer.integer_weight().detach().numpy().astype(np.int64)
    b = layer.integer_bias().detach().numpy().astype(np.int64)
    acc = int64_conv2d(x, w, b, stride=2)
    np.testing.assert_array_equal(got, np.floor_divide(acc, 2**layer.shift))


@pytest.mark.parametrize("cls", [IntegerConv2d, IntegerConvTranspose2d])
def test_identical_across_threads_batches_and_layouts(cls):
    layer = random_layer(cls, 1)
    x = torch.randint(0, 256, (3, 24, 16, 12)).double()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = layer(x)
        torch.set_num_threads(max(2, threads))
        multi = layer(x)
    finally:
        torch.set_num_threads(threads)
    one_by_one = torch.cat([layer(x[i : i + 1]) for i in range(3)])
    channels_last = layer(x.contiguous(memory_format=torch.channels_last))
    for other in (multi, one_by_one, channels_last):
        assert torch.equal(single, other)
    assert torch.equal(single, torch.floor(single))  # integers
    assert single.min() >= 0 and single.max() <= 255  # QReLU range


def test_training_path_matches_coding_path():
    """float32 with straight-through rounding computes the integers the coder will use."""
    layer = random_layer(IntegerConv2d, 2, cin=8, cout=8, k=3, stride=1)
    x = torch.randint(0, 256, (1, 8, 10, 10))
    train = layer(x.float())
    code = layer(x.double())
    assert torch.equal(train.double(), code)
    train.sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_refuses_layers_that_cannot_be_exact():
    with pytest.raises(ValueError, match="2\\^53"):
        IntegerConv2d(4096, 8, 5, weight_bits=24, input_bound=2**31)
