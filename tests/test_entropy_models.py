"""Entropy models (neurocodec.entropy.models): training likelihoods, tables, coding, state_dicts."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from neurocodec.entropy import tables
from neurocodec.entropy.coder import DEFAULT_LANES, stream_info
from neurocodec.entropy.models import (
    AdaptiveCategorical,
    Categorical,
    FactorizedPrior,
    GaussianConditional,
    GaussianMixtureConditional,
    LaplaceConditional,
    laplace_tables,
    lower_bound,
)
from neurocodec.entropy.models.mixture import MEAN_LIMIT

N = 100_000  # symbols of the size-vs-likelihood checks


def assert_size_matches(data: bytes, likelihoods: torch.Tensor, rel: float = 0.01) -> None:
    """The stream, less its fixed overhead (header, lane states), is within ``rel`` of -sum(log2 p)."""
    info = stream_info(data)
    overhead = info["header_bytes"] + 4 * DEFAULT_LANES * info["num_chunks"]
    ideal = -likelihoods.double().log2().sum().item() / 8
    gap = (len(data) - overhead) / ideal - 1
    assert abs(gap) < rel, f"coded {len(data)} B (overhead {overhead} B) vs ideal {ideal:.0f} B: {gap:+.3%}"


def reload(model: torch.nn.Module, fresh: torch.nn.Module) -> torch.nn.Module:
    """``fresh`` with ``model``'s state, through safetensors bytes (no update_tables)."""
    state = load_safetensors(save_safetensors(model.state_dict()))
    fresh.load_state_dict(state)
    return fresh


def grid_total(likelihood) -> torch.Tensor:
    """Sum of a likelihood function over a wide integer grid (should be ~1)."""
    v = torch.arange(-3000, 3001, dtype=torch.float64)
    return likelihood(v).sum()


# ------------------------------------------------------------------------------------------------
# Shared pieces


def test_quantize_modes():
    m = GaussianConditional()
    y = (torch.randn(1000, dtype=torch.float64) * 3).requires_grad_()
    means = torch.randn(1000, dtype=torch.float64)
    noisy = m.quantize(y, "noise")
    assert (noisy - y).abs().max() <= 0.5
    ste = m.quantize(y, "ste", means)
    assert torch.equal(ste, torch.round(y - means) + means)
    ste.sum().backward()
    assert torch.equal(y.grad, torch.ones_like(y))
    symbols = m.quantize(y, "symbols", means)
    assert symbols.dtype == torch.int32
    assert torch.equal(symbols, torch.round(y - means).int())
    assert torch.equal(
        m.quantize(torch.tensor([0.5, 1.5, -0.5]), "symbols"), torch.tensor([0, 2, 0], dtype=torch.int32)
    )
    with pytest.raises(ValueError, match="mode"):
        m.quantize(y, "dequantize")
    for bad in (float("nan"), float("inf"), 2.0**31, -(2.0**31) - 1):
        with pytest.raises(ValueError, match="int32"):
            m.quantize(torch.tensor([0.0, bad], dtype=torch.float64), "symbols")


def test_lower_bound_gradient():
    x = torch.tensor([1e-12, 1e-12, 0.5], requires_grad=True)
    out = lower_bound(x, 1e-9)
    assert torch.equal(out.detach(), torch.tensor([1e-9, 1e-9, 0.5]))
    (out * torch.tensor([-1.0, 1.0, 1.0])).sum().backward()  # descent raises x[0], lowers x[1]
    assert x.grad.tolist() == [-1.0, 0.0, 1.0]


def test_no_tables_is_an_error():
    for model, call in [
        (FactorizedPrior(2), lambda m: m.compress(torch.zeros(1, 2, 3))),
        (GaussianConditional(), lambda m: m.compress(torch.zeros(3), torch.zeros(3, dtype=torch.int32))),
        (Categorical(4), lambda m: m.compress(torch.zeros(3, dtype=torch.long))),
    ]:
        with pytest.raises(RuntimeError, match="update_tables"):
            call(model)
    g = GaussianMixtureConditional(2)
    with pytest.raises(RuntimeError, match="update_tables"):
        g.compress(
            torch.zeros(3), *g.quantize_parameters(torch.ones(3, 2), torch.zeros(3, 2), torch.zeros(3, 2))
        )


# ------------------------------------------------------------------------------------------------
# Factorized prior


def sample_channels(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3, 1) latents: N(0, 4), Laplace(2, 1.5), and a two-mode mixture."""
    g = generator
    a = torch.randn(n, generator=g) * 4
    b = 2 + 1.5 * torch.log(torch.rand(n, generator=g)) * torch.where(torch.rand(n, generator=g) < 0.5, -1, 1)
    mode = torch.rand(n, generator=g) < 0.5
    c = torch.where(mode, torch.randn(n, generator=g) - 3, 0.5 * torch.randn(n, generator=g) + 4)
    return torch.stack([a, b, c], 1).unsqueeze(-1)


@pytest.fixture(scope="module")
def trained_prior():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    data = sample_channels(N, g)
    model = FactorizedPrior(3)
    main = [p for name, p in model.named_parameters() if name != "quantiles"]
    opt = torch.optim.Adam(main, lr=1e-2)
    aux_opt = torch.optim.Adam([model.quantiles], lr=5e-2)
    aux_losses = []
    for _ in range(300):
        batch = data[torch.randint(0, N, (1024,), generator=g)]
        _, lik = model(batch, mode="noise")
        loss = -lik.log2().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        aux = model.aux_loss()
        aux_opt.zero_grad()
        aux.backward()
        aux_opt.step()
        aux_losses.append(aux.item())
    model.eval()
    model.update_tables()
    return model, data, aux_losses


def test_factorized_fits(trained_prior):
    model, data, aux_losses = trained_prior
    assert np.mean(aux_losses[-20:]) < 0.2 * np.mean(aux_losses[:20])
    q = model.quantiles.detach()[:, 0, :]
    for c in range(3):
        x = data[:, c, 0]
        inside = ((x > q[c, 0]) & (x < q[c, 2])).double().mean().item()
        assert inside > 0.999, (c, q[c], inside)
        below_median = (x < q[c, 1]).double().mean().item()
        assert 0.35 < below_median < 0.65, (c, q[c], below_median)


def test_factorized_tables_cover_the_density_when_the_quantiles_lag():
    """Wide latents (a WaLLoC low-pass channel spans +-100) outrun the aux loss's Adam steps; the
    tables are built from quantiles solved exactly instead, so few values escape."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    data = (torch.randn(20000, generator=g) * 60).reshape(1, 1, -1)
    model = FactorizedPrior(1)
    opt = torch.optim.Adam([p for name, p in model.named_parameters() if name != "quantiles"], lr=3e-2)
    for _ in range(300):  # the density only: the quantiles stay at their initial +-10
        _, lik = model(data[..., torch.randint(0, data.shape[-1], (2048,), generator=g)], mode="noise")
        loss = -lik.log2().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.quantiles.detach().abs().max() <= 10
    model.eval()
    model.update_tables()
    assert model.aux_loss().item() < 1e-4  # the quantiles sit on their targets (to float32)
    q = model.quantiles.detach()[0, 0]
    assert -1000 < q[0] < -150 and 150 < q[2] < 1000  # 2.5 sigma and more: the tails hold 2^-16
    _, lik = model(data, mode="ste")
    ideal_bytes = float(-lik.detach().double().log2().sum()) / 8
    assert len(model.compress(data)) < 1.01 * ideal_bytes


@pytest.mark.parametrize("mode", ["noise", "ste"])
def test_factorized_likelihoods_valid_and_differentiable(mode):
    torch.manual_seed(0)
    model = FactorizedPrior(3, init_scale=4)
    y = (torch.randn(4, 3, 8, 8) * 3).requires_grad_()
    y_hat, lik = model(y, mode=mode)
    assert lik.shape == y.shape and bool(((lik > 0) & (lik <= 1)).all())
    (-lik.log2().sum()).backward()
    assert y.grad is not None and bool(torch.isfinite(y.grad).all())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.matrices)
    assert model.quantiles.grad is None  # only the aux loss trains the quantiles
    if mode == "ste":
        assert torch.equal(y_hat, torch.round(y.detach()))
    totals = grid_total(
        lambda v: model.likelihood(v.float().reshape(1, 1, -1).expand(1, 3, -1))[0].sum(0) / 3
    )
    assert abs(totals.item() - 1) < 1e-4


def test_factorized_roundtrip_and_size(trained_prior):
    model, y, _ = trained_prior  # (N, 3, 1)
    stream = model.compress(y)
    assert torch.equal(model.decompress(stream, y.shape), torch.round(y))
    _, lik = model(y, mode="ste")
    assert_size_matches(stream, lik)


def test_factorized_escapes_and_state_dict(trained_prior):
    model, data, _ = trained_prior
    y = data[:2000].reshape(20, 100, 3).transpose(1, 2).contiguous()
    y[0, 0, :5] = torch.tensor([1e6, -1e6, 300.0, -300.0, 2.0**30])
    y[3, 2, 7] = -(2.0**31)
    stream = model.compress(y)
    expected = torch.round(y)
    assert torch.equal(model.decompress(stream, y.shape), expected)
    fresh = reload(model, FactorizedPrior(3))
    assert fresh.tables.hash == model.tables.hash
    assert torch.equal(fresh.decompress(stream, y.shape), expected)
    assert fresh.compress(y) == stream


# ------------------------------------------------------------------------------------------------
# Gaussian and Laplace conditionals


CONDITIONALS = [
    (GaussianConditional, lambda mu, s, g: mu + s * torch.randn(mu.shape, generator=g, dtype=torch.float64)),
    (
        LaplaceConditional,
        lambda mu, s, g: (
            mu
            - s
            * torch.sign(torch.rand(mu.shape, generator=g, dtype=torch.float64) - 0.5)
            * torch.log(torch.rand(mu.shape, generator=g, dtype=torch.float64))
        ),
    ),
]


@pytest.fixture(scope="module", params=CONDITIONALS, ids=["gaussian", "laplace"])
def conditional(request):
    cls, sampler = request.param
    model = cls()
    model.update_tables()
    return model, sampler


@pytest.mark.parametrize("mode", ["noise", "ste"])
def test_conditional_likelihoods_valid_and_differentiable(conditional, mode):
    model, _ = conditional
    torch.manual_seed(0)
    y = (torch.randn(1000) * 5).requires_grad_()
    scales = torch.exp(torch.randn(1000)).requires_grad_()
    means = torch.randn(1000).requires_grad_()
    y_hat, lik = model(y, scales, means, mode=mode)
    assert bool(((lik > 0) & (lik <= 1)).all())
    if mode == "ste":
        assert torch.equal(y_hat, torch.round(y - means) + means)
    (-lik.log2().sum()).backward()
    for t in (y, scales, means):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())
    for s in (0.05, 0.11, 0.7, 5.0, 60.0):
        for mu in (0.0, 0.3, -2.5):
            total = grid_total(
                lambda v, s=s, mu=mu: model.likelihood(v, torch.full_like(v, s), torch.full_like(v, mu))
            )
            assert abs(total.item() - 1) < 1e-5, (s, mu)


def test_conditional_roundtrip_and_size(conditional):
    model, sampler = conditional
    g = torch.Generator().manual_seed(2)
    scales = torch.exp(
        torch.empty(N, dtype=torch.float64).uniform_(math.log(0.11), math.log(20), generator=g)
    )
    means = torch.empty(N, dtype=torch.float64).uniform_(-5, 5, generator=g)
    y = sampler(means, scales, g)
    indexes = model.indexes_from_scales(scales)
    stream = model.compress(y, indexes, means)
    assert torch.equal(model.decompress(stream, indexes, means), torch.round(y - means) + means)
    _, lik = model(y, scales, means, mode="ste")
    assert_size_matches(stream, lik)


def test_conditional_escapes_and_state_dict(conditional):
    model, _ = conditional
    y = torch.tensor([[0.2, 1e6, -1e6, 70.0], [-(2.0**31), 2.0**30, 3.0, -4.4]])
    indexes = torch.tensor([[0, 0, 63, 10], [5, 0, 0, 63]], dtype=torch.int32)
    stream = model.compress(y, indexes)
    assert torch.equal(model.decompress(stream, indexes), torch.round(y))
    fresh = reload(model, type(model)(scale_table=[1.0, 2.0]))  # the buffers take the loaded sizes
    np.testing.assert_array_equal(fresh.scale_table, model.scale_table)
    assert fresh.tables.hash == model.tables.hash
    assert torch.equal(fresh.decompress(stream, indexes), torch.round(y))
    cast = copy.deepcopy(model).half()  # dtype casts leave the scale table and the tables alone
    np.testing.assert_array_equal(cast.scale_table, model.scale_table)
    assert cast.tables.hash == model.tables.hash


def test_indexes_from_scales_agree_with_scale_index():
    model = GaussianConditional()
    t = model.scale_table
    rng = np.random.default_rng(3)
    s64 = np.exp(rng.uniform(np.log(0.01), np.log(200), 5000))
    for s in (torch.from_numpy(s64), torch.from_numpy(s64).float(), torch.from_numpy(s64).reshape(50, 100)):
        idx = model.indexes_from_scales(s)
        assert idx.dtype == torch.int32 and idx.shape == s.shape
        np.testing.assert_array_equal(idx.numpy(), tables.scale_index(s.numpy(), t))


def test_scale_on_a_table_boundary_takes_the_larger_table():
    model = GaussianConditional()
    b = tables.scale_boundaries(model.scale_table)
    on = torch.from_numpy(b)
    below = torch.from_numpy(np.nextafter(b, 0))
    np.testing.assert_array_equal(model.indexes_from_scales(on).numpy(), np.arange(1, len(b) + 1))
    np.testing.assert_array_equal(model.indexes_from_scales(below).numpy(), np.arange(len(b)))
    # float32 scales are compared as their exact float64 values
    f32 = on.float()
    expected = np.searchsorted(b, f32.double().numpy(), side="right")
    np.testing.assert_array_equal(model.indexes_from_scales(f32).numpy(), expected)
    # ends: below the first table scale (zero included) -> 0, above the last -> last
    ends = model.indexes_from_scales(torch.tensor([0.0, 1e-3, 1e4]))
    assert ends.tolist() == [0, 0, len(b)]


def test_laplace_tables_symmetric_and_close_to_the_pmf():
    scales = tables.gaussian_scale_table()
    cdfs, offsets = laplace_tables(scales)
    for s, cdf, off in zip(scales, cdfs, offsets, strict=True):
        f = np.diff(cdf)[:-1]  # ordinary entries -K … K
        np.testing.assert_array_equal(f, f[::-1])
        assert off == -(len(f) // 2)
        v = np.arange(len(f)) + off
        p = np.exp(-np.maximum(np.abs(v) - 0.5, 0) / s) * np.where(v == 0, 1, 0.5 * (1 - np.exp(-1 / s)))
        p[v == 0] = 1 - np.exp(-0.5 / s)
        assert np.abs(f / 65536 - p).max() < 2e-4


# ------------------------------------------------------------------------------------------------
# Gaussian mixture


@pytest.fixture(scope="module")
def mixture():
    model = GaussianMixtureConditional(3)
    model.update_tables()
    return model


def sample_mixture(n: int, g: torch.Generator, scale_range=(0.11, 10.0), spread=3.0):
    logits = torch.randn(n, 3, generator=g, dtype=torch.float64)
    means = spread * torch.randn(n, 3, generator=g, dtype=torch.float64)
    lo, hi = map(math.log, scale_range)
    scales = torch.exp(torch.empty(n, 3, dtype=torch.float64).uniform_(lo, hi, generator=g))
    k = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)[:, 0]
    pick = torch.arange(n)
    y = means[pick, k] + scales[pick, k] * torch.randn(n, generator=g, dtype=torch.float64)
    return y, scales, means, logits


@pytest.mark.parametrize("mode", ["noise", "ste"])
def test_mixture_likelihoods_valid_and_differentiable(mixture, mode):
    g = torch.Generator().manual_seed(4)
    y, scales, means, logits = (t.float().requires_grad_() for t in sample_mixture(500, g))
    _, lik = mixture(y, scales, means, logits, mode=mode)
    assert bool(((lik > 0) & (lik <= 1)).all())
    (-lik.log2().sum()).backward()
    for t in (y, scales, means, logits):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all())
    params = [
        torch.tensor([[0.3, 2.0, 9.0]]),
        torch.tensor([[-4.2, 0.5, 30.0]]),
        torch.tensor([[0.1, -1.0, 2.0]]),
    ]
    total = grid_total(lambda v: mixture.likelihood(v, *(p.double().expand(len(v), 3) for p in params)))
    assert abs(total.item() - 1) < 1e-5


def test_mixture_quantize_parameters(mixture):
    g = torch.Generator().manual_seed(5)
    _, scales, means, logits = sample_mixture(2000, g)
    means[0] = torch.tensor([1e9, -1e9, 0.03125])
    t, m, w = mixture.quantize_parameters(scales, means, logits)
    assert t.dtype == m.dtype == w.dtype == torch.int32 and t.shape == scales.shape
    np.testing.assert_array_equal(t.numpy(), tables.scale_index(scales.numpy(), mixture.scale_table))
    assert m[0].tolist() == [MEAN_LIMIT * 16, -MEAN_LIMIT * 16, 0]  # 0.5 steps round to even
    assert bool((w >= 0).all()) and bool((w.sum(-1) == 4096).all())
    assert (w.double() / 4096 - torch.softmax(logits, -1)).abs().max() < 2 * 3 / 4096


def test_mixture_roundtrip_and_size(mixture):
    g = torch.Generator().manual_seed(6)
    y, scales, means, logits = sample_mixture(N, g)
    params = mixture.quantize_parameters(scales, means, logits)
    stream = mixture.compress(y, *params)
    assert torch.equal(mixture.decompress(stream, *params), torch.round(y).float())
    _, lik = mixture(y, scales, means, logits, mode="ste")
    assert_size_matches(stream, lik)


def test_mixture_escapes_integer_inputs_and_state_dict(mixture):
    g = torch.Generator().manual_seed(7)
    y, scales, means, logits = sample_mixture(3000, g, scale_range=(0.11, 64.0), spread=20.0)
    y[:4] = torch.tensor([1e6, -1e6, 2.0**31 - 1, -(2.0**31)], dtype=torch.float64)
    t, m, w = mixture.quantize_parameters(scales, means, logits)
    w[5] = torch.tensor([4096, 0, 0], dtype=torch.int32)  # idle components are ignored
    m[6] = torch.tensor([MEAN_LIMIT * 16, -MEAN_LIMIT * 16, 0], dtype=torch.int32)  # widest window
    stream = mixture.compress(y, t, m, w)
    expected = torch.round(y).float()
    assert torch.equal(mixture.decompress(stream, t, m, w), expected)
    # numpy integers of another width give the same tables, and the same bytes
    as_numpy = [x.numpy().astype(np.int64) for x in (t, m, w)]
    assert mixture.symbol_tables(*as_numpy).hash == mixture.symbol_tables(t, m, w).hash
    fresh = reload(mixture, GaussianMixtureConditional(3))
    assert torch.equal(fresh.decompress(stream, t, m, w), expected)
    assert fresh.compress(y, t, m, w) == stream
    cast = copy.deepcopy(mixture).half()
    assert torch.equal(cast.decompress(stream, t, m, w), expected)


@pytest.fixture(scope="module")
def small_mixture():
    model = GaussianMixtureConditional(2, scale_table=[0.11, 1.0, 8.0], mean_bits=2, weight_bits=3)
    model.update_tables()
    return model


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    mean_range=st.sampled_from([4, 100, MEAN_LIMIT * 4]),
)
def test_mixture_integer_tables_valid_for_any_parameters(small_mixture, seed, n, mean_range):
    """Any integer parameters give valid 16-bit tables (TableSet checks them) and exact round trips."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 3, (n, 2))
    m = rng.integers(-mean_range, mean_range + 1, (n, 2))
    w0 = rng.integers(0, 9, n)
    w = np.stack([w0, 8 - w0], 1)
    y = torch.from_numpy(m[:, 0] // 4 + rng.integers(-30, 31, n)).double()
    stream = small_mixture.compress(y, torch.from_numpy(t), torch.from_numpy(m), torch.from_numpy(w))
    out = small_mixture.decompress(stream, torch.from_numpy(t), torch.from_numpy(m), torch.from_numpy(w))
    assert torch.equal(out, y.float())


def test_mixture_rejects_bad_integer_parameters(mixture):
    t = torch.zeros(4, 3, dtype=torch.int32)
    m = torch.zeros(4, 3, dtype=torch.int32)
    w = torch.tensor([[4096, 0, 0]] * 4, dtype=torch.int32)
    y = torch.zeros(4)
    for bad in (
        (t + 64, m, w),
        (t, m + MEAN_LIMIT * 16 + 1, w),
        (t, m, w + 1),
        (t, m, -w),
        (t.float(), m, w),
        (t[:, :2], m[:, :2], w[:, :2]),
    ):
        with pytest.raises(ValueError):
            mixture.compress(y, *bad)


# ------------------------------------------------------------------------------------------------
# Categorical models


def test_categorical_learns_and_codes():
    g = torch.Generator().manual_seed(8)
    true = torch.softmax(3 * torch.randn(300, generator=g), 0)
    symbols = torch.multinomial(true, N, replacement=True, generator=g).reshape(100, -1)
    model = Categorical(300)
    lik = model(symbols[:2])
    assert bool(((lik > 0) & (lik <= 1)).all())
    assert abs(model.probabilities().sum().item() - 1) < 1e-6
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    train = symbols[:10]  # 10k symbols
    for _ in range(100):
        loss = model.bits(train) / train.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    entropy = -(true * true.log2()).sum().item()
    assert losses[-1] < losses[0] and losses[-1] < entropy + 0.05, (losses[0], losses[-1], entropy)
    model.update_tables()
    stream = model.compress(symbols)
    assert torch.equal(model.decompress(stream, symbols.shape), symbols)
    assert_size_matches(stream, model(symbols))
    fresh = reload(model, Categorical(300))
    assert torch.equal(fresh.decompress(stream, symbols.shape), symbols)
    for bad in (torch.tensor([300]), torch.tensor([-1]), torch.tensor([1.0])):
        with pytest.raises(ValueError):
            model.compress(bad)


def test_adaptive_categorical_counts_and_codes():
    g = torch.Generator().manual_seed(9)
    true = torch.softmax(2 * torch.randn(1000, generator=g), 0)
    symbols = torch.multinomial(true, N, replacement=True, generator=g)
    model = AdaptiveCategorical(1000)
    model.observe(symbols[: N // 2])
    model.observe(symbols[N // 2 :])
    assert model.counts.sum().item() == N
    p = model.probabilities()
    assert abs(p.sum().item() - 1) < 1e-6 and bool((p > 0).all())
    model.update_tables()
    stream = model.compress(symbols)
    assert torch.equal(model.decompress(stream, symbols.shape), symbols)
    assert_size_matches(stream, model(symbols))
    fresh = reload(model, AdaptiveCategorical(1000))
    assert torch.equal(fresh.counts, model.counts)
    assert torch.equal(fresh.decompress(stream, [N]), symbols)
