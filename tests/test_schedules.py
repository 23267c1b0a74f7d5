"""Context schedules (single step, channel slices, checkerboard, slices x checkerboard) with
integer context networks: exact round trips, training = coding, determinism, wrong-order
errors, incremental decoding."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

from neurocodec.entropy import coder
from neurocodec.entropy.models import GaussianConditional, schedules
from neurocodec.entropy.models.schedules import ANCHOR, ANCHOR_PARITY, NON_ANCHOR, ContextSchedule
from neurocodec.errors import BitstreamError
from neurocodec.models.context import (
    LATENT_BOUND,
    CheckerboardConv2d,
    ContextPrior,
    hyper_features,
    latent_integers,
)
from neurocodec.models.hyperprior import HyperSynthesis

B, M, H, W = 2, 8, 12, 16
N = 4  # hyper-latent channels
SLICES = (2, 2, 4)  # uneven, as ELIC's


def make_schedule(name: str, anchor_parity: int = ANCHOR_PARITY) -> ContextSchedule:
    return {
        "single_step": lambda: ContextSchedule.single_step(M),
        "channel_slices": lambda: ContextSchedule.channel_slices(SLICES),
        "checkerboard": lambda: ContextSchedule.checkerboard(M, anchor_parity),
        "sliced_checkerboard": lambda: ContextSchedule.sliced_checkerboard(SLICES, anchor_parity),
    }[name]()


SCHEDULES = ("single_step", "channel_slices", "checkerboard", "sliced_checkerboard")


# Tiny tensors: intra-op threads only add synchronization (on a busy 2-core machine, 100x);
# the determinism test sets its own thread counts.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def conditional():
    g = GaussianConditional()
    g.update_tables()
    return g


def hyper_for(height: int, width: int, batch: int = B, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A real integer HyperSynthesis on random integer z: (index, mean) at the latent's size."""
    torch.manual_seed(100)
    h_s = HyperSynthesis(N, M, num_scales=64)
    g = torch.Generator().manual_seed(seed)
    z = torch.round(3 * torch.randn(batch, N, height // 4, width // 4, generator=g))
    with torch.no_grad():
        return h_s(z.to(torch.float64))


@pytest.fixture(scope="module")
def hyper():
    return hyper_features(*hyper_for(H, W))


def make_prior(schedule: ContextSchedule, seed: int = 1) -> ContextPrior:
    torch.manual_seed(seed)
    return ContextPrior(schedule, 2 * M, 64, context_channels=8, hidden_channels=16).eval()


def latent(schedule, prior, hyper, conditional, seed: int = 2) -> torch.Tensor:
    shape = (hyper.shape[0], M, hyper.shape[2], hyper.shape[3])
    return schedule.sample(prior, hyper, conditional, shape, torch.Generator().manual_seed(seed)).float()


class Recorder:
    """Wraps a parameter function and records, per call, its inputs and outputs."""

    def __init__(self, params):
        self.params, self.calls = params, []

    def __call__(self, step, y_hat, hyper):
        index, mean = self.params(step, y_hat, hyper)
        self.calls.append((step, y_hat.clone(), index.clone(), mean.clone()))
        return index, mean


# -- steps and element order -------------------------------------------------------------------


def test_steps_of_each_schedule():
    assert [(s.start, s.stop, s.part) for s in make_schedule("single_step").steps] == [(0, M, "all")]
    assert [(s.start, s.stop) for s in make_schedule("channel_slices").steps] == [(0, 2), (2, 4), (4, 8)]
    assert [s.part for s in make_schedule("checkerboard").steps] == [ANCHOR, NON_ANCHOR]
    steps = make_schedule("sliced_checkerboard").steps
    assert [(s.slice, s.part) for s in steps] == [(k, p) for k in range(3) for p in (ANCHOR, NON_ANCHOR)]
    assert [s.index for s in steps] == list(range(6))


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize(("h", "w"), [(4, 6), (5, 7)])
def test_steps_partition_the_latent(name, h, w):
    masks = [step.mask(M, h, w) for step in make_schedule(name).steps]
    assert torch.equal(torch.stack(masks).sum(0), torch.ones(M, h, w, dtype=torch.long))
    assert sum(step.num_elements(h, w) for step in make_schedule(name).steps) == M * h * w


def test_element_order_is_row_major_over_channel_row_column():
    t = torch.arange(2 * 2 * 3).view(1, 2, 2, 3)  # values = flat (c, y, x) position
    anchor, non_anchor = ContextSchedule.checkerboard(2).steps
    # anchors: (i + j) even -> (0,0), (0,2), (1,1) in each channel
    assert anchor.gather(t).tolist() == [[0, 2, 4, 6, 8, 10]]
    assert non_anchor.gather(t).tolist() == [[1, 3, 5, 7, 9, 11]]
    assert ANCHOR_PARITY == 0 and bool(anchor.positions(2, 3)[0, 0])
    top_left_other = ContextSchedule.checkerboard(2, anchor_parity=1).steps[0]
    assert top_left_other.gather(t).tolist() == [[1, 3, 5, 7, 9, 11]]
    back = torch.zeros_like(t)
    anchor.scatter_(back, anchor.gather(t))
    non_anchor.scatter_(back, non_anchor.gather(t))
    assert torch.equal(back, t)


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEDULES)
def test_roundtrip_exact_and_decoder_sees_what_the_encoder_saw(name, conditional, hyper):
    schedule = make_schedule(name)
    prior = make_prior(schedule)
    y = latent(schedule, prior, hyper, conditional)
    enc, dec = Recorder(prior), Recorder(prior)
    streams = schedule.compress_streams(y, enc, hyper, conditional)
    assert len(streams) == B
    y_hat = schedule.decompress_streams(streams, dec, hyper, conditional, (H, W))
    assert len(enc.calls) == len(dec.calls) == len(schedule.steps)
    for (step_e, seen_e, index_e, mean_e), (step_d, seen_d, index_d, mean_d) in zip(
        enc.calls, dec.calls, strict=True
    ):
        assert step_e == step_d
        assert torch.equal(seen_e, seen_d)  # the same y_hat so far ...
        assert torch.equal(index_e, index_d)  # ... hence the same tables
        assert torch.equal(mean_e, mean_d)  # ... and the same means
    # every element is round(y - mean) + mean with its own step's mean
    mean_full = torch.zeros_like(y_hat)
    for step, _, _, mean in enc.calls:
        step.scatter_(mean_full, step.select(mean))
    assert torch.equal(y_hat, torch.round(y.double() - mean_full) + mean_full)
    # the context really changes the parameters (else the schedule tests would prove little)
    if name != "single_step":
        no_context = schedule.compress_streams(
            y, lambda s, yh, hy: prior(s, torch.zeros_like(yh), hy), hyper, conditional
        )
        assert no_context != streams


@pytest.mark.parametrize(("h", "w"), [(5, 7), (1, 1), (1, 6)])
def test_roundtrip_odd_and_tiny_sizes(h, w, conditional):
    schedule = make_schedule("sliced_checkerboard")
    prior = make_prior(schedule)
    hyper = hyper_features(*hyper_for(8, 8, batch=1))[:, :, :h, :w]
    y = latent(schedule, prior, hyper, conditional)
    y_hat = schedule.decompress_streams(
        schedule.compress_streams(y, prior, hyper, conditional), prior, hyper, conditional, (h, w)
    )
    assert torch.equal(y_hat, schedule.likelihoods(y.double(), prior, hyper, conditional, mode="ste").y_hat)


def test_extreme_values_roundtrip_through_escapes_and_clamped_context(conditional, hyper):
    schedule = make_schedule("sliced_checkerboard")
    prior = make_prior(schedule)
    y = latent(schedule, prior, hyper, conditional)
    y[0, 0, 0, 0] = 3e6  # beyond LATENT_BOUND: escaped by the coder, clamped for the context nets
    y[1, 3, 5, 6] = -2e5
    y_hat = schedule.decompress_streams(
        schedule.compress_streams(y, prior, hyper, conditional), prior, hyper, conditional, (H, W)
    )
    assert abs(float(y_hat[0, 0, 0, 0]) - 3e6) <= 0.5 and abs(float(y_hat[1, 3, 5, 6]) + 2e5) <= 0.5
    big = torch.tensor([1e9, -1e9, 17.0625])
    assert latent_integers(big).tolist() == [LATENT_BOUND * 16, -LATENT_BOUND * 16, 273.0]


def test_hyperprior_schedule_is_the_hyperprior_codec_stream(conditional):
    """The one-step schedule with the hyper-synthesis output as its parameters writes exactly
    the ``y`` stream of ``GaussianConditional.compress`` (what codecs/hyperprior.py does)."""
    index, mean = hyper_for(H, W, batch=1)
    schedule = ContextSchedule.single_step(M)
    y = torch.randn(1, M, H, W, generator=torch.Generator().manual_seed(3)) * 4 + mean.float()
    streams = schedule.compress_streams(y, lambda step, y_hat, hyper: hyper, (index, mean), conditional)
    assert streams == [conditional.compress(y, index.to(torch.int32), mean)]


# -- training path = coding path --------------------------------------------------------------------


def table_probabilities(conditional, symbols: torch.Tensor, indexes: torch.Tensor) -> torch.Tensor:
    """Per-element probability under the integer tables (NaN for escaped values)."""
    cdfs = conditional.tables.cdfs()
    offsets = conditional.tables.offsets
    out = torch.full(symbols.shape, float("nan"), dtype=torch.float64)
    flat_s, flat_k, flat_o = symbols.reshape(-1), indexes.reshape(-1), out.view(-1)
    for i, (s, k) in enumerate(zip(flat_s.tolist(), flat_k.tolist(), strict=True)):
        cdf = cdfs[int(k)]
        e = int(s) - int(offsets[int(k)])
        if 0 <= e < len(cdf) - 2:
            flat_o[i] = (cdf[e + 1] - cdf[e]) / 65536
    return out


@pytest.mark.parametrize("name", SCHEDULES)
def test_training_likelihoods_are_the_coding_probabilities(name, conditional, hyper):
    schedule = make_schedule(name)
    prior = make_prior(schedule)
    y = latent(schedule, prior, hyper, conditional)
    enc = Recorder(prior)
    streams = schedule.compress_streams(y, enc, hyper, conditional)
    out = schedule.likelihoods(y.double(), prior, hyper, conditional, mode="ste")
    # the exact (float64) training pass computes the coding path's indexes and means, element by element
    for step, _, index, mean in enc.calls:
        assert torch.equal(step.gather(out.indexes), step.select(index))
        assert torch.equal(step.gather(out.means), step.select(mean))
    assert torch.equal(out.y_hat, schedule.decompress_streams(streams, prior, hyper, conditional, (H, W)))
    # and its likelihoods are the integer tables' probabilities up to their 16-bit quantization
    symbols = torch.round(y.double() - out.means)
    p_table = table_probabilities(conditional, symbols, out.indexes)
    coded = ~torch.isnan(p_table)
    assert coded.float().mean() > 0.999  # escapes are rare in a latent drawn from the model
    bits_train = -torch.log2(out.likelihoods[coded]).sum()
    bits_table = -torch.log2(p_table[coded]).sum()
    assert abs(float(bits_table / bits_train) - 1) < 0.005
    # the float32 training pass (straight-through integer nets) computes the same parameters here
    out32 = schedule.likelihoods(y, prior, hyper.float(), conditional, mode="ste")
    assert torch.equal(out32.indexes.double(), out.indexes)
    assert torch.equal(out32.means.double(), out.means)


@pytest.mark.parametrize("name", SCHEDULES)
def test_coded_size_within_one_percent_of_the_likelihoods(name, conditional):
    schedule = make_schedule(name)
    prior = make_prior(schedule)
    hyper = hyper_features(*hyper_for(64, 64, batch=1, seed=5))
    y = latent(schedule, prior, hyper, conditional, seed=6)
    streams = schedule.compress_streams(y, prior, hyper, conditional)
    with torch.no_grad():
        likelihoods = schedule.likelihoods(y, prior, hyper, conditional, mode="ste").likelihoods
    ideal_bytes = float(-torch.log2(likelihoods).sum()) / 8
    assert ideal_bytes > 10_000
    assert abs(len(streams[0]) / ideal_bytes - 1) < 0.01, (len(streams[0]), ideal_bytes)


def test_training_pass_is_differentiable(conditional, hyper):
    schedule = make_schedule("sliced_checkerboard")
    prior = make_prior(schedule).train()
    y = latent(schedule, prior, hyper, conditional).requires_grad_(True)
    out = schedule.likelihoods(y, prior, hyper.float(), conditional, mode="noise")
    rate = -torch.log2(out.likelihoods).sum()
    (rate + out.y_hat.square().sum()).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    for name in ("channel_context.1", "spatial_context.0", "heads.2.out"):
        module = prior.get_submodule(name)
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0, name
    # the checkerboard kernel's masked taps get no gradient: they can never become non-zero
    taps = prior.spatial_context["0"].taps
    assert torch.all(prior.spatial_context["0"].weight.grad[..., taps == 0] == 0)


# -- determinism --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEDULES)
def test_same_bytes_across_threads_and_batch_composition(name, conditional, hyper):
    schedule = make_schedule(name)
    prior = make_prior(schedule)
    y = latent(schedule, prior, hyper, conditional)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = schedule.compress_streams(y, prior, hyper, conditional)
        torch.set_num_threads(2)
        two = schedule.compress_streams(y, prior, hyper, conditional)
    finally:
        torch.set_num_threads(threads)
    assert one == two
    alone = schedule.compress_streams(y[1:], prior, hyper[1:], conditional)
    other = hyper_features(*hyper_for(H, W, batch=3, seed=9))
    crowd_hyper = torch.cat([other[:2], hyper[1:], other[2:]])
    crowd_y = torch.cat([latent(schedule, prior, other[:2], conditional, seed=4), y[1:], y[:1] * 3])
    crowd = schedule.compress_streams(crowd_y, prior, crowd_hyper, conditional)
    assert alone[0] == one[1] == crowd[2]
    decoded = schedule.decompress_streams(
        [crowd[0], one[1], crowd[3]], prior, crowd_hyper[[0, 2, 3]], conditional, (H, W)
    )
    assert torch.equal(
        decoded[1], schedule.decompress_streams(alone, prior, hyper[1:], conditional, (H, W))[0]
    )


# -- wrong order at decode: an error, never garbage ------------------------------------------------------


@pytest.mark.parametrize("name", ["checkerboard", "sliced_checkerboard"])
def test_wrong_parity_is_an_error(name, conditional, hyper):
    schedule = make_schedule(name)
    prior = make_prior(schedule)
    y = latent(schedule, prior, hyper, conditional)
    streams = schedule.compress_streams(y, prior, hyper, conditional)
    other = make_schedule(name, anchor_parity=1 - ANCHOR_PARITY)
    with pytest.raises(BitstreamError):
        other.decompress_streams(streams, prior, hyper, conditional, (H, W))


@pytest.mark.parametrize(
    ("coded", "decoded"),
    [
        ("sliced_checkerboard", ContextSchedule.channel_slices(SLICES)),
        ("channel_slices", ContextSchedule.sliced_checkerboard(SLICES)),
        ("checkerboard", ContextSchedule.single_step(M)),
    ],
)
def test_wrong_schedule_is_an_error(coded, decoded, conditional, hyper):
    schedule = make_schedule(coded)
    prior = make_prior(ContextSchedule.sliced_checkerboard(SLICES) if len(schedule.slices) > 1 else schedule)
    y = latent(schedule, prior, hyper, conditional)
    streams = schedule.compress_streams(y, prior, hyper, conditional)
    with pytest.raises(BitstreamError):
        decoded.decompress_streams(streams, prior, hyper, conditional, (H, W))


def test_wrong_size_or_tables_are_errors(conditional, hyper):
    schedule = make_schedule("checkerboard")
    prior = make_prior(schedule)
    streams = schedule.compress_streams(
        latent(schedule, prior, hyper, conditional), prior, hyper, conditional
    )
    with pytest.raises(BitstreamError, match="symbols"):
        schedule.decompress_streams(streams, prior, hyper[:, :, :, :8], conditional, (H, 8))
    other_tables = GaussianConditional(scale_table=np.geomspace(0.2, 50, 64))
    other_tables.update_tables()
    with pytest.raises(BitstreamError):
        schedule.decompress_streams(streams, prior, hyper, other_tables, (H, W))


def test_bad_parameter_functions_are_caller_errors(conditional, hyper):
    schedule = make_schedule("checkerboard")
    prior = make_prior(schedule)
    y = latent(schedule, prior, hyper, conditional)
    with pytest.raises(ValueError, match="expected"):
        schedule.compress_streams(y, lambda s, yh, hy: (hy[:, :1], hy[:, :1]), hyper, conditional)
    with pytest.raises(ValueError, match="in \\[0, 64\\)"):
        schedule.compress_streams(
            y, lambda s, yh, hy: (prior(s, yh, hy)[0] + 64, prior(s, yh, hy)[1]), hyper, conditional
        )
    with pytest.raises(ValueError, match="integers"):
        schedule.compress_streams(
            y, lambda s, yh, hy: (prior(s, yh, hy)[0] + 0.5, prior(s, yh, hy)[1]), hyper, conditional
        )
    with pytest.raises(ValueError, match="slices"):
        ContextSchedule.channel_slices([4, 4]).compress_streams(y, prior, hyper, conditional)
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        schedule.compress_streams(y[:, :4], prior, hyper, conditional)


# -- incremental decoding -----------------------------------------------------------------------------------


class CountingDecoder(coder.StreamDecoder):
    """A StreamDecoder that records the size of every pull and its position after it."""

    log: ClassVar[list[tuple[int, int, int]]] = []  # (decoder id, pulled, position after)

    def pull(self, indexes):
        out = super().pull(indexes)
        CountingDecoder.log.append((id(self), len(out), self.position))
        return out


@pytest.mark.parametrize("name", SCHEDULES)
def test_each_step_pulls_exactly_its_elements_and_decoding_can_stop_anywhere(
    name, conditional, hyper, monkeypatch
):
    schedule = make_schedule(name)
    prior = make_prior(schedule)
    streams = schedule.compress_streams(
        latent(schedule, prior, hyper, conditional), prior, hyper, conditional
    )
    final = schedule.decompress_streams(streams, prior, hyper, conditional, (H, W))
    monkeypatch.setattr(coder, "StreamDecoder", CountingDecoder)
    sizes = [step.num_elements(H, W) for step in schedule.steps]
    for stop in range(len(schedule.steps)):
        CountingDecoder.log = []
        done = torch.zeros(M, H, W, dtype=torch.bool)
        for step, y_hat in schedule.decode_steps(streams, prior, hyper, conditional, (H, W)):
            done |= step.mask(M, H, W)
            # decoded so far: exactly the final values; not yet decoded: still 0
            assert torch.equal(y_hat, torch.where(done, final, torch.zeros_like(final)))
            if step.index == stop:
                break
        pulls = [n for _, n, _ in CountingDecoder.log]
        assert pulls == [n for n in sizes[: stop + 1] for _ in range(B)]  # one pull per stream per step
        positions = [p for _, _, p in CountingDecoder.log[::B]]
        assert positions == np.cumsum(sizes[: stop + 1]).tolist()


# -- the context networks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("parity", [0, 1])
def test_checkerboard_conv_sees_only_the_other_parity(parity):
    torch.manual_seed(7)
    conv = CheckerboardConv2d(3, 4, input_bound=LATENT_BOUND * 16)
    x = torch.round(100 * torch.randn(1, 3, 9, 10, dtype=torch.float64))
    same = torch.from_numpy(np.indices((9, 10)).sum(0) % 2 == parity)
    noise = torch.round(1000 * torch.randn_like(x))
    changed = torch.where(same, x + noise, x)
    with torch.no_grad():
        a, b = conv(x), conv(changed)
    assert torch.equal(a[..., same], b[..., same])
    assert not torch.equal(a[..., ~same], b[..., ~same])


def test_context_prior_step_parameters_ignore_elements_not_yet_decoded(hyper):
    """A parameter depends only on earlier steps: changing any later element changes nothing."""
    schedule = make_schedule("sliced_checkerboard")
    prior = make_prior(schedule)
    g = torch.Generator().manual_seed(8)
    y_hat = torch.round(16 * 5 * torch.randn(B, M, H, W, generator=g, dtype=torch.float64)) / 16
    earlier = torch.zeros(M, H, W, dtype=torch.bool)
    with torch.no_grad():
        for step in schedule.steps:
            known = torch.where(earlier, y_hat, torch.zeros_like(y_hat))
            scrambled = torch.where(earlier, y_hat, 1000 * torch.randn_like(y_hat).round())
            for a, b in zip(prior(step, known, hyper), prior(step, scrambled, hyper), strict=True):
                assert torch.equal(step.select(a), step.select(b)), step
            earlier |= step.mask(M, H, W)


def test_table_scales_are_exact_at_integers_and_differentiable_between(conditional):
    table = torch.from_numpy(conditional.scale_table)
    index = torch.arange(len(table), dtype=torch.float64)
    assert torch.equal(schedules.table_scales(index, table), table)
    x = torch.tensor([10.0, 10.5, 63.0], dtype=torch.float64, requires_grad=True)
    s = schedules.table_scales(x, table)
    assert table[10] < s[1] < table[11]
    s.sum().backward()
    assert bool((x.grad > 0).all())


@pytest.mark.parametrize("name", ["channel_slices", "sliced_checkerboard"])
def test_int8_path_gives_the_reference_parameters_and_bytes(name, conditional, hyper):
    """``ContextPrior.forward_integer`` (the layers' int8 products) computes, bit for bit, the
    float64 reference path's parameters, also at the clamp bounds, hence the same streams."""
    schedule = make_schedule(name)
    prior = make_prior(schedule)
    g = torch.Generator().manual_seed(11)
    y_hat = torch.round(16 * 40 * torch.randn(B, M, H, W, generator=g, dtype=torch.float64)) / 16
    y_hat[0, :, 0, :4] = torch.tensor([LATENT_BOUND, -LATENT_BOUND, 3e6, -3e6], dtype=torch.float64)
    for step in schedule.steps:
        index, mean = prior(step, y_hat, hyper)
        index_int8, mean_int8 = prior.forward_integer(step, y_hat, hyper)
        assert torch.equal(index, index_int8.to(torch.float64)), step
        assert torch.equal(mean, mean_int8), step
    y = latent(schedule, prior, hyper, conditional)
    streams = schedule.compress_streams(y, prior.forward_integer, hyper, conditional)
    assert streams == schedule.compress_streams(y, prior, hyper, conditional)
    y_hat = schedule.decompress_streams(streams, prior.forward_integer, hyper, conditional, (H, W))
    assert torch.equal(y_hat, schedule.decompress_streams(streams, prior, hyper, conditional, (H, W)))
