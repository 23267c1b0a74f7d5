"""The masked integer transformer over VQ index maps: exact on any path, trainable, and a real coder's prior."""

from __future__ import annotations

import pytest
import torch

from neurocodec.entropy.latent_codecs import VectorQuantizedLatentCodec
from neurocodec.entropy.tables import PRECISION
from neurocodec.errors import BitstreamError
from neurocodec.models.index_prior import PASSES, IndexTransformer, check_bounds, exp2_table, pass_masks

SMALL = {"dim": 16, "heads": 1, "layers": 2, "window": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


def scrambled(model: IndexTransformer, scale: float = 3.0) -> IndexTransformer:
    """Large random weights: activations reach the clamps, the softmax tables' ends are used."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model


def stripes(n: int, h: int, w: int, k: int) -> torch.Tensor:
    """A learnable index map: each row repeats one index, rows cycle through a few."""
    gen = torch.Generator().manual_seed(2)
    start = torch.randint(0, k, (n, 1, 1), generator=gen)
    return (start + torch.arange(h)[None, :, None] % 3 + 0 * torch.arange(w)) % k


def test_the_passes_cover_every_position_once():
    masks = pass_masks(5, 7)
    assert masks.shape == (PASSES, 5, 7)
    assert torch.equal(masks.sum(0), torch.ones(5, 7, dtype=torch.long))


def test_the_exp2_table_is_fixed():
    table = exp2_table()
    assert table[0] == 2**20 and table[16] == 2**19 and table[-1] == 1
    assert table[:4].tolist() == [1048576, 1004120, 961548, 920782]  # 2^20 * 2^(-t/16), rounded


def test_float64_coding_equals_the_int64_oracle_at_the_extremes():
    model = scrambled(IndexTransformer(50, **SMALL), scale=20.0)
    check_bounds(model)
    indices = torch.randint(0, 50, (2, 9, 11), generator=torch.Generator().manual_seed(0))
    known = pass_masks(9, 11)[:2].any(0).expand(2, 9, 11)
    tokens = model.masked(indices, known)
    with torch.no_grad():
        exact, oracle = model.logits(tokens, torch.float64), model.logits(tokens, torch.int64)
    assert torch.equal(exact.long(), oracle)
    assert exact.abs().max() == 2**15  # the clamps were reached
    where = pass_masks(9, 11)[2].expand(2, 9, 11)
    assert torch.equal(model.frequencies(tokens, where), model.frequencies(tokens, where, torch.int64))


def test_frequencies_are_a_valid_16_bit_table_whatever_the_threads():
    model = scrambled(IndexTransformer(300, **SMALL), scale=1.0)
    indices = torch.randint(0, 300, (1, 8, 8), generator=torch.Generator().manual_seed(0))
    where = pass_masks(8, 8)[1].expand(1, 8, 8)
    tokens = model.masked(indices, pass_masks(8, 8)[0].expand(1, 8, 8))
    one = model.frequencies(tokens, where)
    torch.set_num_threads(2)
    try:
        assert torch.equal(one, model.frequencies(tokens, where))
    finally:
        torch.set_num_threads(1)
    assert one.shape == (16, 301)
    assert (one.sum(-1) == 1 << PRECISION).all() and one.min() >= 1


def test_check_bounds_refuses_a_network_whose_sums_could_round():
    with pytest.raises(ValueError, match="2\\^53"):
        check_bounds(IndexTransformer(2**16, dim=16, heads=1, layers=1, window=4))


def trained(k: int, steps: int) -> tuple[IndexTransformer, float]:
    """A small transformer fitted to striped maps over ``k`` indices, and its last bits an index."""
    torch.manual_seed(0)
    model = IndexTransformer(k, **SMALL)
    data = stripes(8, 8, 8, k)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(steps):
        bits = -torch.log2(model.likelihoods(data)).mean()
        opt.zero_grad()
        bits.backward()
        opt.step()
    return model, bits.item()


def test_it_learns_a_structured_map_and_restores_lost_indices():
    k = 16
    model, bits = trained(k, 60)
    # from log2(16) = 4 bits an index; the first pass sees no index, so it costs its 4 bits
    # (a quarter of the positions: 1 bit an index), the rest is predictable from it
    assert bits < 1.5
    test = stripes(1, 8, 8, k)
    lost = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(3)) < 0.2
    restored = model.restore(torch.where(lost, torch.zeros_like(test), test), lost)
    assert (restored == test).float().mean() > 0.95


def test_the_latent_codec_codes_passes_at_their_trained_rate():
    k = 16
    context, _ = trained(k, 40)
    lc = VectorQuantizedLatentCodec(k, 3, context).eval()
    assert lc.section_names == tuple(f"pass{p}" for p in range(PASSES))
    indices = stripes(1, 32, 40, k)
    with torch.no_grad():
        lc.codebook.frozen.copy_(torch.randn(k, 3))
        y = lc.codebook.codes()[indices].permute(0, 3, 1, 2)
        ideal = -torch.log2(context.likelihoods(indices)).sum().item()
    sections = lc.compress(y)
    decoded, lost = lc.decode_indices(sections, indices.shape)
    assert torch.equal(decoded, indices) and not lost.any()
    coded = 8 * sum(len(s) for s in sections.values())
    assert coded < 1.02 * ideal + PASSES * 16 * 8  # the ideal length, plus a stream header a pass
    assert coded < 0.5 * indices.numel() * 4  # well under the uniform 4 bits an index
    broken = dict(sections, pass2=bytes(len(sections["pass2"])))
    with pytest.raises(BitstreamError):
        lc.decode_indices(broken, indices.shape)
