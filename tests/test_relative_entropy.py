"""The relative-entropy coder (neurocodec.entropy.relative_entropy): shared counter-based prior
samples, the index the encoder chooses and the sample the decoder regenerates from it."""

from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np
import torch

from neurocodec.entropy import relative_entropy as rec

# The standard normals of samples 0..3 of block 3 under seed 7, 3 coordinates each (float.hex):
# any change of the hash, the counter layout or the table changes them, and every file with them.
GOLDEN = [
    "-0x1.2de4ad8fae8f8p-1", "0x1.0baaed37f909ap+1", "-0x1.3f59da4cd5902p-2",
    "0x1.4fe9ac969ba10p+1", "-0x1.8692bbe600e90p+0", "-0x1.980d46ce9b608p+0",
    "0x1.b6080e120d05ep-1", "-0x1.748b60261b3bep-1", "-0x1.50d50d14309f8p-2",
    "-0x1.92fd952256564p-1", "0x1.e7fc2a547ee86p+0", "0x1.c56149a4b2c62p-2",
]  # fmt: skip
TABLE_SHA256 = "91dfeb8c2044bfd13e7ada45de13365e66616ca59dca76cbfaaf1525de4f9144"


def posterior(dim: int, seed: int, shift: float, width: float):
    rng = np.random.default_rng(seed)
    mu_q = rng.normal(0, shift, dim)
    sigma_q = np.full(dim, width)
    return mu_q, sigma_q, np.zeros(dim), np.ones(dim)


def test_sample_streams_match_golden_values():
    normals = rec.standard_normals(7, 3, np.arange(4), 3)
    assert [float(v).hex() for v in normals.reshape(-1)] == GOLDEN
    assert hashlib.sha256(rec.normal_table().tobytes()).hexdigest() == TABLE_SHA256


def test_the_shipped_table_is_the_computed_one():
    assert rec.TABLE_FILE.is_file() and rec.TABLE_SHA256 == TABLE_SHA256
    assert np.array_equal(rec.computed_normal_table(), rec.normal_table())


def test_sample_is_a_function_of_seed_block_and_index_only():
    all_at_once = rec.standard_normals(11, 5, np.arange(1000), 6)
    one = rec.standard_normals(11, 5, np.array([737]), 6)[0]
    assert np.array_equal(all_at_once[737], one)
    assert not np.array_equal(rec.standard_normals(11, 6, np.array([737]), 6)[0], one)
    assert not np.array_equal(rec.standard_normals(12, 5, np.array([737]), 6)[0], one)


def test_table_is_a_standard_normal():
    table = rec.normal_table()
    assert np.array_equal(table, -table[::-1])
    assert np.all(np.diff(table) > 0)
    assert abs(table.mean()) < 1e-12 and abs(table.var() - 1) < 1e-3
    normals = rec.standard_normals(1, 2, np.arange(200_000), 1)
    assert abs(normals.mean()) < 0.01 and abs(normals.std() - 1) < 0.01


def code_and_decode_block() -> tuple[int, bytes, bytes]:
    """(index, chosen sample, decoded sample) of one 40-parameter block under a float prior."""
    mu_q, sigma_q, mu_p, sigma_p = posterior(40, 0, 0.4, 0.7)
    mu_p, sigma_p = mu_p + 0.25, sigma_p * 0.03
    choice = rec.encode_block(
        mu_p + sigma_p * mu_q, sigma_p * sigma_q, mu_p, sigma_p, seed=99, block=12345, bits=10
    )
    decoded = rec.decode_block(mu_p, sigma_p, seed=99, block=12345, index=choice.index)
    return choice.index, choice.sample.tobytes(), decoded.tobytes()


def test_decoded_sample_is_the_chosen_one_on_1_and_2_threads():
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(code_and_decode_block())
    finally:
        torch.set_num_threads(previous)
    index, chosen, decoded = results[0]
    assert 0 <= index < 1024
    assert decoded == chosen
    assert results[1] == results[0]


def test_decode_blocks_equals_block_by_block_decoding():
    rng = np.random.default_rng(2)
    sizes = [5, 1, 17, 3]
    mu_p, sigma_p = rng.normal(size=26), rng.uniform(0.1, 2, 26)
    blocks, indexes = [9, 1 << 40, 3, 77], [0, 1023, 5, 600]
    together = rec.decode_blocks(mu_p, sigma_p, 4, blocks, indexes, sizes)
    starts = np.cumsum([0] + sizes)
    one_by_one = np.concatenate(
        [
            rec.decode_block(mu_p[a:b], sigma_p[a:b], 4, block, index)
            for a, b, block, index in zip(starts[:-1], starts[1:], blocks, indexes, strict=True)
        ]
    )
    assert together.tobytes() == one_by_one.tobytes()


def chosen_samples(bits: int, trials: int, mu_q, sigma_q, mu_p, sigma_p) -> tuple[np.ndarray, np.ndarray]:
    choices = [
        rec.encode_block(mu_q, sigma_q, mu_p, sigma_p, seed=3, block=b, bits=bits) for b in range(trials)
    ]
    return np.stack([c.sample for c in choices]), np.array([c.log_weight for c in choices]) / math.log(2)


def test_chosen_sample_is_close_to_a_posterior_sample_when_kl_fits():
    mu_q, sigma_q, mu_p, sigma_p = posterior(6, 1, 1.2, 0.5)
    kl = rec.gaussian_kl_bits(mu_q, sigma_q, mu_p, sigma_p).sum()
    assert 5 < kl < 8  # a block of about 6 bits of KL, coded with 10-bit indexes
    samples, log_weights = chosen_samples(10, 400, mu_q, sigma_q, mu_p, sigma_p)
    # mean and spread of the chosen samples are those of q (400 trials: standard error 0.03)
    assert np.abs(samples.mean(0) - mu_q).max() < 0.12
    assert np.abs(samples.std(0) - sigma_q).max() < 0.12
    # the cost: the chosen samples' log q/p is the KL within a few bits
    assert abs(log_weights.mean() - kl) < 2
    # with far fewer samples than 2^KL, the chosen samples stay near the prior: the test can fail
    few, _ = chosen_samples(2, 400, mu_q, sigma_q, mu_p, sigma_p)
    assert np.abs(few.mean(0) - mu_q).max() > 0.2


def test_group_blocks_keeps_each_block_within_the_budget():
    rng = np.random.default_rng(0)
    kl = rng.exponential(0.3, 5000)
    kl[17] = 25.0  # one parameter alone over the budget
    blocks = rec.group_blocks(kl, 12)
    assert blocks[0][0] == 0 and blocks[-1][1] == kl.size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))  # consecutive, every parameter once
    sums = [kl[a:b].sum() for a, b in blocks]
    assert all(s <= 12 or b - a == 1 for s, (a, b) in zip(sums, blocks, strict=True))
    assert np.mean(sums) > 10  # greedy: nearly full blocks
    assert rec.group_blocks(np.zeros(0), 12) == []


def test_kl_bits():
    assert rec.gaussian_kl_bits(0, 1, 0, 1) == 0
    # KL(N(1, 1) || N(0, 1)) = 1/2 nat
    assert math.isclose(float(rec.gaussian_kl_bits(1, 1, 0, 1)), 0.5 / math.log(2))
