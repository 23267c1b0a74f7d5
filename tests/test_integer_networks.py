"""Integer prior-path layers: exact, identical integers whatever the threads, batch or layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocodec.models import integer
from neurocodec.models.hyperprior import Z_BOUND, HyperSynthesis
from neurocodec.models.integer import (
    MAX_GEMM_DEPTH,
    IntegerConv1d,
    IntegerConv2d,
    IntegerConvTranspose1d,
    IntegerConvTranspose2d,
    int8_digits,
    int8_matmul,
)


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


def int64_conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """The 1-D oracle: integer convolution in int64 numpy (zero padding k//2)."""
    n, _c, t = x.shape
    o, _, k = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p)))
    ot = (t + 2 * p - k) // stride + 1
    out = np.zeros((n, o, ot), np.int64)
    for i in range(k):
        out += np.einsum("nct,oc->not", xp[:, :, i : i + stride * ot : stride], w[:, :, i])
    return out + b[None, :, None]


def for_layer(cls, x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) as the layer's input: a 1-D layer reads its rows one after another."""
    return x.flatten(2) if cls.dims == 1 else x


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


@pytest.mark.parametrize(
    "cls", [IntegerConv2d, IntegerConvTranspose2d, IntegerConv1d, IntegerConvTranspose1d]
)
def test_identical_across_threads_batches_and_layouts(cls):
    layer = random_layer(cls, 1)
    x = for_layer(cls, torch.randint(0, 256, (3, 24, 16, 12)).double())
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = layer(x)
        torch.set_num_threads(max(2, threads))
        multi = layer(x)
    finally:
        torch.set_num_threads(threads)
    one_by_one = torch.cat([layer(x[i : i + 1]) for i in range(3)])
    channels_last = layer(
        x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x.mT.contiguous().mT
    )
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


# -- the int8 path: the same integers as the float64 reference path ----------------------------


def extreme_layer(cls, k, stride, weights, seed=0, cin=16, cout=8, **kw):
    """A layer whose integer weights are ``weights`` ("max": all +511, "min": all -511, "mixed":
    random in {-511, -256, -129, -128, 127, 128, 511, ...}) and biases at the int32 extremes."""
    torch.manual_seed(seed)
    layer = cls(cin, cout, k, stride, **kw)
    with torch.no_grad():
        if weights == "mixed":
            choices = torch.tensor([-511, -510, -256, -129, -128, -1, 0, 1, 127, 128, 255, 511.0])
            w = choices[torch.randint(len(choices), layer.weight.shape)]
        else:
            w = torch.full_like(layer.weight, 511.0 if weights == "max" else -511.0)
        layer.weight.copy_(w / 2**layer.weight_frac)
        layer.bias.copy_(
            torch.tensor([2**31 - 1, -(2**31)] * (cout // 2), dtype=torch.float64) / 2**layer.shift
        )
    return layer


LAYOUTS = [
    (IntegerConvTranspose2d, 5, 2),  # h_s upsampling
    (IntegerConvTranspose2d, 3, 2),
    (IntegerConvTranspose2d, 4, 2),  # even kernel: the int8 path falls back to the reference
    (IntegerConv2d, 3, 1),  # h_s output layer
    (IntegerConv2d, 5, 2),
    (IntegerConv2d, 1, 1),  # context networks
    (IntegerConv2d, 4, 1),
    (IntegerConvTranspose1d, 5, 2),  # a 1-D h_s (audio)
    (IntegerConvTranspose1d, 3, 2),
    (IntegerConvTranspose1d, 4, 2),
    (IntegerConv1d, 3, 1),
    (IntegerConv1d, 5, 2),
    (IntegerConv1d, 1, 1),
    (IntegerConv1d, 4, 1),
]


@pytest.mark.parametrize(("cls", "k", "stride"), LAYOUTS)
@pytest.mark.parametrize("weights", ["max", "min", "mixed"])
def test_int8_path_matches_reference_for_activations(cls, k, stride, weights):
    """QReLU inputs in [0, 255], at the ends of the range and in between, extreme weights and biases."""
    layer = extreme_layer(cls, k, stride, weights)
    g = torch.Generator().manual_seed(k * 10 + stride)
    x = torch.randint(0, 256, (2, 16, 7, 6), generator=g)
    x[0] = 255  # the largest accumulators (with all-max weights)
    x[1, :, :3] = 0
    x = for_layer(cls, x)
    reference = layer(x.double())
    fast = layer.forward_integer(x)
    assert fast.dtype == torch.uint8  # QReLU outputs in [0, 255]
    assert torch.equal(fast.double(), reference)
    assert torch.equal(layer.forward_integer(x.to(torch.uint8)), fast)  # read without a scan


@pytest.mark.parametrize(("cls", "k", "stride"), [layout for layout in LAYOUTS if layout[1] != 4])
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("fits", [True, False])
def test_one_digit_weights_accumulate_in_int32_only_where_it_cannot_overflow(
    cls, k, stride, sign, fits, monkeypatch
):
    """Weights of one int8 digit (``|W| <= 127``) with QReLU inputs: the deepest phase's constant
    ``128 * sum(W) + B`` is put 1024 inside (int32 path) or outside (int64 path) the bound that
    keeps every int32 sum exact, and the largest accumulators are reached. A transposed layer's
    shallower phases stay inside it, so its plan mixes both paths. The int8 GEMMs run on any CPU
    here (without AVX-512 VNNI torch's is a slow scalar loop, which forward_integer would avoid),
    so that the int32 path is tested on every machine."""
    monkeypatch.setattr(integer, "fast_int8_matmul", lambda device: True)
    layer = cls(16, 8, k, stride, weight_bits=8, act_bits=None)
    with torch.no_grad():
        layer.weight.fill_(sign * 127 / 2**layer.weight_frac)
        deepest = max(layer._plan().phases, key=lambda phase: phase.weights.shape[0])
        limit = 2**31 - 1 - deepest.weights.shape[0] * 128 * 128
        constant = sign * (limit - 1024 if fits else limit + 1024)
        layer.bias.copy_((constant - 128 * deepest.tap_sums.double()) / 2**layer.shift)
    phases = layer._plan().phases
    narrow = [128 in phase.narrow_terms for phase in phases]
    assert narrow[phases.index(max(phases, key=lambda phase: phase.weights.shape[0]))] == fits
    if layer.transposed and not fits:
        assert any(narrow)
    x = torch.randint(0, 256, (2, 16, 7, 6), generator=torch.Generator().manual_seed(k))
    x[0] = 255 if sign > 0 else 0  # |A| at its largest
    x = for_layer(cls, x)
    fast = layer.forward_integer(x)
    assert torch.equal(fast.double(), layer(x.double()))
    # the output stays int32 only when every phase's accumulator provably fits it
    assert fast.dtype == (torch.int32 if all(narrow) else torch.int64)


@pytest.mark.parametrize(("cls", "k", "stride"), LAYOUTS)
def test_int8_path_matches_reference_for_wide_inputs(cls, k, stride):
    """Hyper-latents up to +-2^15 (three int8 digits), the first layer of h_s, unclipped outputs."""
    layer = extreme_layer(cls, k, stride, "mixed", act_bits=None, input_bound=Z_BOUND)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-Z_BOUND, Z_BOUND + 1, (2, 16, 5, 7), generator=g)
    x[0, :, 0] = Z_BOUND
    x[0, :, 1] = -Z_BOUND
    x[1, :, 2] = torch.tensor([127, 128, -128, -129, 255, 256, -32640, 32639])[:7].repeat(16, 1)
    x = for_layer(cls, x)
    reference = layer(x.double())
    assert torch.equal(layer.forward_integer(x).double(), reference)
    small = x.clamp(-128, 127)  # the one-digit case
    assert torch.equal(layer.forward_integer(small).double(), layer(small.double()))


def test_int8_path_matches_int64_oracle():
    layer = extreme_layer(IntegerConv2d, 5, 2, "mixed", act_bits=None, input_bound=Z_BOUND)
    rng = np.random.default_rng(0)
    x = rng.integers(-Z_BOUND, Z_BOUND + 1, size=(2, 16, 13, 9))
    w = layer.integer_weight().detach().numpy().astype(np.int64)
    b = layer.integer_bias().detach().numpy().astype(np.int64)
    acc = int64_conv2d(x, w, b, stride=2)
    got = layer.forward_integer(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, np.floor_divide(acc, 2**layer.shift))


def test_int8_path_matches_int64_oracle_1d():
    layer = extreme_layer(IntegerConv1d, 5, 2, "mixed", act_bits=None, input_bound=Z_BOUND)
    x = np.random.default_rng(1).integers(-Z_BOUND, Z_BOUND + 1, size=(2, 16, 29))
    w = layer.integer_weight().detach().numpy().astype(np.int64)
    b = layer.integer_bias().detach().numpy().astype(np.int64)
    acc = int64_conv1d(x, w, b, stride=2)
    np.testing.assert_array_equal(
        layer.forward_integer(torch.from_numpy(x)).numpy(), np.floor_divide(acc, 2**layer.shift)
    )
    assert torch.equal(
        layer(torch.from_numpy(x).double()), torch.from_numpy(np.floor_divide(acc, 2**layer.shift)).double()
    )


def test_without_fast_int8_gemms_the_reference_path_runs():
    """oneDNN disabled (as on CPUs without AVX-512 VNNI, where torch's int8 GEMM is a scalar
    loop): forward_integer runs the float64 path, with the same result."""
    layer = extreme_layer(IntegerConvTranspose2d, 5, 2, "mixed")
    x = torch.randint(0, 256, (1, 16, 4, 5))
    enabled = torch.backends.mkldnn.enabled
    try:
        torch.backends.mkldnn.enabled = False
        assert not layer.int8_supported(x.device)
        slow = layer.forward_integer(x)
    finally:
        torch.backends.mkldnn.enabled = enabled
    assert torch.equal(slow, layer.forward_integer(x))
    assert torch.equal(slow.double(), layer(x.double()))


def test_int8_digits_reconstruct():
    x = torch.tensor([0, 1, -1, 127, -128, 128, -129, 255, 256, Z_BOUND, -Z_BOUND, 2**40 + 3, -(2**40) - 3])
    digits = int8_digits(x)
    assert all(d.dtype == torch.int8 for d in digits)
    assert torch.equal(sum(d.to(torch.int64) * 256**j for j, d in enumerate(digits)), x)
    assert len(int8_digits(torch.tensor([Z_BOUND, -Z_BOUND]))) == 3
    assert len(int8_digits(torch.tensor([-128, 127]))) == 1


@pytest.mark.parametrize("value", [127, -128])
def test_int8_matmul_is_exact_at_full_depth(value):
    """The deepest allowed product with every operand at an extreme: int32 sums near 2^30 (and near
    2^31 for kernels that shift one operand to unsigned), still exact."""
    a = torch.full((17, MAX_GEMM_DEPTH), value, dtype=torch.int8)
    b = torch.full((MAX_GEMM_DEPTH, 8), value, dtype=torch.int8)
    b[:, 1::2] = -128 if value == 127 else 127
    expected = a[:1].to(torch.int64) @ b.to(torch.int64)
    got = int8_matmul(a, b)
    assert torch.equal(got.to(torch.int64), expected.expand_as(got))
    with pytest.raises(ValueError, match="overflow"):
        int8_matmul(
            torch.zeros(2, MAX_GEMM_DEPTH + 8, dtype=torch.int8),
            torch.zeros(MAX_GEMM_DEPTH + 8, 8, dtype=torch.int8),
        )


def test_int8_plan_follows_weight_updates():
    """The cached int8 weights are rebuilt when the weights change in place (optimizer, load_state_dict)."""
    layer = random_layer(IntegerConv2d, 3, cin=8, cout=8, k=3, stride=1)
    x = torch.randint(0, 256, (1, 8, 6, 6))
    assert torch.equal(layer.forward_integer(x).double(), layer(x.double()))
    with torch.no_grad():
        layer.weight.mul_(-0.5)
        layer.bias.add_(3.0)
    assert torch.equal(layer.forward_integer(x).double(), layer(x.double()))
    layer.load_state_dict(random_layer(IntegerConv2d, 4, cin=8, cout=8, k=3, stride=1).state_dict())
    assert torch.equal(layer.forward_integer(x).double(), layer(x.double()))


def test_int8_plan_of_inference_mode_parameters(monkeypatch):
    """Parameters created under inference_mode have no version counter: the plan is still cached,
    and load_state_dict still replaces it (the int8 path forced, as a CPU without AVX-512 VNNI
    would not take it)."""
    monkeypatch.setattr(integer, "fast_int8_matmul", lambda device: True)
    x = torch.randint(0, 256, (1, 8, 6, 6))
    with torch.inference_mode():
        layer = random_layer(IntegerConv2d, 3, cin=8, cout=8, k=3, stride=1)
        layer.forward_integer(x)
        plan = layer._plan_cache
        layer.forward_integer(x)
        assert layer._plan_cache is plan
        layer.load_state_dict(random_layer(IntegerConv2d, 4, cin=8, cout=8, k=3, stride=1).state_dict())
        assert torch.equal(layer.forward_integer(x).double(), layer(x.double()))
        assert layer._plan_cache is not plan


def trained_looking_h_s(seed=0):
    """An ``h_s`` with the weight statistics of a trained one (N=64, M=96 after 3000 steps: the
    first layer's weights span the full +-511 range, the others within +-127)."""
    torch.manual_seed(seed)
    h_s = HyperSynthesis(16, 24, num_scales=64)
    with torch.no_grad():
        h_s.up1.weight.normal_(0, 150 / 256)  # ~30 % beyond +-127, clipped at +-511
        h_s.up2.weight.normal_(0, 20 / 256)
        h_s.out.weight.normal_(0, 8 / 256)
        for layer in (h_s.up1, h_s.up2, h_s.out):
            layer.bias.normal_(0, 30)
    return h_s


@pytest.mark.parametrize("z_scale", [3.0, 40.0, 3000.0])
def test_hyper_synthesis_int8_path_is_the_reference(z_scale):
    h_s = trained_looking_h_s()
    torch.manual_seed(2)
    z = torch.round(torch.distributions.Laplace(0.0, z_scale).sample((2, 16, 5, 7)))
    z[0, 0, 0, 0] = 10 * Z_BOUND  # clamped to Z_BOUND by both paths
    index_ref, means_ref = h_s(z.double())
    index, means = h_s.forward_integer(z)
    assert index.dtype == torch.int32 and means.dtype == torch.float64
    assert torch.equal(index, index_ref.to(torch.int32))
    assert torch.equal(means, means_ref)
    assert 0 < index.float().std()  # not a degenerate case: the indexes vary
