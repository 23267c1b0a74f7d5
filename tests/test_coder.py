"""The C++ rANS coder (neurocodec.entropy.coder): round trips, edge cases, errors, threads."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurocodec.entropy import reference
from neurocodec.entropy.coder import (
    StreamDecoder,
    StreamEncoder,
    TableSet,
    decode,
    encode,
    stream_info,
)
from neurocodec.errors import BitstreamError, TableMismatchError

I32 = np.iinfo(np.int32)


def random_cdf(rng: np.random.Generator, n: int, *, spiky: bool = False) -> np.ndarray:
    """A valid 16-bit CDF with n entries (the last is the escape), every frequency >= 1."""
    assert 2 <= n <= 65536
    weights = rng.pareto(0.7, n) if spiky else rng.random(n)
    freqs = 1 + np.floor(weights / weights.sum() * (65536 - n)).astype(np.int64)
    freqs[np.argmax(freqs)] += 65536 - freqs.sum()
    return np.concatenate([[0], np.cumsum(freqs)]).astype(np.int32)


def random_tables(rng: np.random.Generator, count: int, max_size: int = 300) -> TableSet:
    cdfs = [
        random_cdf(rng, int(rng.integers(2, max_size + 1)), spiky=bool(rng.integers(2))) for _ in range(count)
    ]
    offsets = rng.integers(-200, 200, size=count)
    return TableSet(cdfs, offsets)


def random_symbols(rng: np.random.Generator, tables: TableSet, n: int, escape_rate: float = 0.02):
    """Values drawn from the tables' own distributions, plus escapes below and above every range."""
    indexes = rng.integers(0, tables.num_tables, size=n).astype(np.int32)
    cdfs = tables.cdfs()
    values = np.empty(n, np.int64)
    for i, k in enumerate(indexes):
        pmf = np.diff(cdfs[k]) / 65536.0
        s = rng.choice(len(pmf) - 1, p=pmf[:-1] / pmf[:-1].sum())
        values[i] = tables.offsets[k] + s
    escapes = rng.random(n) < escape_rate
    far = rng.choice([I32.min, I32.max, -1_000_000, 1_000_000, -1, 0], size=n)
    near = values + rng.choice([-3, -1, 300, 70000], size=n)
    values = np.where(escapes, np.where(rng.random(n) < 0.5, far, near), values)
    return np.clip(values, I32.min, I32.max).astype(np.int32), indexes


def roundtrip(values, indexes, tables, **kw) -> bytes:
    data = encode(values, indexes, tables, **kw)
    out = decode(data, indexes, tables, threads=kw.get("threads", 1))
    np.testing.assert_array_equal(out, values)
    return data


# ------------------------------------------------------------------------------------------------
# Round trips


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 3000),
    num_tables=st.integers(1, 6),
    chunk_bits=st.integers(5, 9),
    lanes=st.integers(1, 32),
    threads=st.integers(1, 3),
)
def test_roundtrip_random(seed, n, num_tables, chunk_bits, lanes, threads):
    rng = np.random.default_rng(seed)
    tables = random_tables(rng, num_tables)
    values, indexes = random_symbols(rng, tables, n)
    data = roundtrip(values, indexes, tables, chunk_bits=chunk_bits, lanes=lanes, threads=threads)
    info = stream_info(data)
    assert info["num_symbols"] == n
    assert info["lanes"] == lanes and info["chunk_bits"] == chunk_bits
    assert info["num_chunks"] == -(-n // 2**chunk_bits)
    assert info["table_hash"] == tables.hash


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 2000), data=st.data())
def test_incremental_same_bytes_any_split(seed, n, data):
    rng = np.random.default_rng(seed)
    tables = random_tables(rng, 3)
    values, indexes = random_symbols(rng, tables, n)
    chunk_bits = data.draw(st.integers(5, 8))
    lanes = data.draw(st.integers(1, 32))
    one_shot = encode(values, indexes, tables, chunk_bits=chunk_bits, lanes=lanes)

    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=8)))
    bounds = [0, *cuts, n]
    enc = StreamEncoder(tables, chunk_bits=chunk_bits, lanes=lanes)
    for a, b in itertools.pairwise(bounds):
        enc.push(values[a:b], indexes[a:b])
    assert enc.num_symbols == n
    assert enc.finish() == one_shot

    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=8)))
    bounds = [0, *cuts, n]
    dec = StreamDecoder(one_shot, tables)
    parts = [dec.pull(indexes[a:b]) for a, b in itertools.pairwise(bounds)]
    dec.finish()
    np.testing.assert_array_equal(np.concatenate([np.zeros(0, np.int32), *parts]), values)


def test_threads_give_identical_bytes():
    rng = np.random.default_rng(1)
    tables = random_tables(rng, 8)
    values, indexes = random_symbols(rng, tables, 20_000, escape_rate=0.001)
    reference = encode(values, indexes, tables, chunk_bits=8)
    for threads in (2, 3, 4, 16, 200):
        assert encode(values, indexes, tables, chunk_bits=8, threads=threads) == reference
        np.testing.assert_array_equal(decode(reference, indexes, tables, threads=threads), values)


def test_empty_stream():
    tables = TableSet([np.array([0, 65535, 65536])], [0])
    data = roundtrip(np.zeros(0, np.int32), np.zeros(0, np.int32), tables)
    assert len(data) == 8  # version, chunk bits, lanes, 4-byte hash, LEB128(0)
    assert stream_info(data)["num_chunks"] == 0


def test_one_symbol():
    tables = TableSet([np.array([0, 65535, 65536])], [7])
    for value in (7, 8, 6, I32.min, I32.max):
        data = roundtrip(np.array([value]), np.array([0]), tables)
        assert len(data) >= 8 + 2 + 4  # header, counts, one lane state


def test_one_symbol_table_costs_almost_nothing():
    """A table whose only ordinary symbol has probability 65535/65536."""
    tables = TableSet([np.array([0, 65535, 65536])], [0])
    n = 100_000
    data = roundtrip(np.zeros(n, np.int32), np.zeros(n, np.int32), tables)
    assert len(data) < 200  # ideal: n * -log2(65535/65536) = 2.2 bits


def test_probability_one_in_65536():
    """Entries of frequency 1 code at 16 bits each, in both directions of the tail."""
    freqs = np.ones(300, np.int64)
    freqs[150] = 65536 - 299
    cdf = np.concatenate([[0], np.cumsum(freqs)]).astype(np.int32)
    tables = TableSet([cdf], [-150])
    rng = np.random.default_rng(2)
    values = rng.choice([-150, -149, 0, 148], size=5000).astype(np.int32)
    data = roundtrip(values, np.zeros(5000, np.int32), tables)
    ideal_bits = 16 * np.sum(values != 0) + np.sum(values == 0) * -np.log2((65536 - 299) / 65536)
    assert len(data) * 8 < ideal_bits * 1.01 + 32 * 32 + 200


def test_full_width_table():
    """65536 entries: every frequency is 1 (65535 ordinary symbols plus the escape)."""
    cdf = np.arange(65537, dtype=np.int32)
    tables = TableSet([cdf], [-30000])
    rng = np.random.default_rng(3)
    values = rng.integers(-40000, 40000, size=4000).astype(np.int32)
    roundtrip(values, np.zeros(4000, np.int32), tables)


def test_escapes_both_directions_and_int32_extremes():
    tables = TableSet(
        [np.array([0, 20000, 40000, 65000, 65536]), np.array([0, 65535, 65536])], [I32.max - 2, I32.min]
    )
    values = np.array(
        [I32.max, I32.max - 1, I32.max - 2, I32.max - 3, I32.min, 0, I32.min, I32.min + 1, I32.max, 0]
    )
    indexes = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    for lanes in (1, 2, 32):
        roundtrip(values, indexes, tables, lanes=lanes, chunk_bits=5)


def test_all_escapes_long_tail():
    """Every symbol escapes, with magnitudes spread over every LEB128 length."""
    tables = TableSet([np.array([0, 60000, 65536])], [0])
    rng = np.random.default_rng(4)
    mags = (2.0 ** rng.uniform(0, 31, size=3000)).astype(np.int64)
    values = np.where(rng.random(3000) < 0.5, -mags, mags + 1).clip(I32.min, I32.max).astype(np.int32)
    roundtrip(values, np.zeros(3000, np.int32), tables, chunk_bits=6, lanes=5)


def test_torch_tensors_in():
    rng = np.random.default_rng(5)
    tables = random_tables(rng, 2)
    values, indexes = random_symbols(rng, tables, 500)
    data = encode(torch.from_numpy(values), torch.from_numpy(indexes), tables)
    assert data == encode(values, indexes, tables)
    np.testing.assert_array_equal(decode(data, torch.from_numpy(indexes), tables), values)
    # Other integer dtypes are converted, non-integers refused.
    assert encode(values.astype(np.int64), indexes.astype(np.int16), tables) == data
    with pytest.raises(ValueError, match="integers"):
        encode(values.astype(np.float32), indexes, tables)


def test_size_near_entropy_static():
    """A 256-symbol static source: coded size within 0.3 % of the information content."""
    rng = np.random.default_rng(6)
    pmf = np.exp(-np.abs(np.arange(256) - 40) / 12.0)
    pmf /= pmf.sum()
    freqs = np.maximum(1, np.round(pmf * 65536)).astype(np.int64)
    freqs = np.append(freqs, 1)  # escape
    freqs[np.argmax(freqs)] += 65536 - freqs.sum()
    cdf = np.concatenate([[0], np.cumsum(freqs)]).astype(np.int32)
    tables = TableSet([cdf], [0])
    n = 1 << 20
    values = rng.choice(256, size=n, p=pmf).astype(np.int32)
    data = roundtrip(values, np.zeros(n, np.int32), tables)
    info_bits = -np.log2(pmf[values]).sum()
    assert len(data) * 8 / info_bits - 1 < 0.003


# ------------------------------------------------------------------------------------------------
# Errors: clear exceptions, never a crash, hang or garbage


@pytest.fixture(scope="module")
def small_stream():
    rng = np.random.default_rng(7)
    tables = random_tables(rng, 3, max_size=40)
    values, indexes = random_symbols(rng, tables, 300, escape_rate=0.05)
    data = encode(values, indexes, tables, chunk_bits=6, lanes=7)
    return data, values, indexes, tables


def test_wrong_tables(small_stream):
    data, _, indexes, tables = small_stream
    other = TableSet([*tables.cdfs()[:2], np.array([0, 1000, 65536])], tables.offsets)
    with pytest.raises(TableMismatchError, match="other CDF tables"):
        decode(data, indexes, other)
    with pytest.raises(TableMismatchError):
        StreamDecoder(data, other)
    # Same CDFs, different offsets: a different model, so a different hash.
    assert TableSet(tables.cdfs(), tables.offsets + 1).hash != tables.hash


def test_every_truncation(small_stream):
    data, _, indexes, tables = small_stream
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            decode(data[:cut], indexes, tables)


def test_trailing_bytes(small_stream):
    data, _, indexes, tables = small_stream
    with pytest.raises(BitstreamError, match="trailing"):
        decode(data + b"\0", indexes, tables)


def test_random_byte_flips(small_stream):
    """A flipped byte is an error; it never decodes silently to other values."""
    data, values, indexes, tables = small_stream
    rng = np.random.default_rng(8)
    silent = 0
    for _ in range(400):
        corrupt = bytearray(data)
        pos = int(rng.integers(len(data)))
        corrupt[pos] ^= int(rng.integers(1, 256))
        try:
            out = decode(bytes(corrupt), indexes, tables)
        except BitstreamError:
            continue
        silent += 1
        assert not np.array_equal(out, values), f"flip at {pos} decoded to the original values"
    assert silent == 0


def test_wrong_symbol_count(small_stream):
    data, _, indexes, tables = small_stream
    with pytest.raises(BitstreamError, match="symbols"):
        decode(data, indexes[:-1], tables)
    with pytest.raises(BitstreamError, match="symbols"):
        decode(data, np.concatenate([indexes, [0]]), tables)


def test_hostile_headers():
    """Headers claiming huge streams are refused before anything is allocated."""
    tables = TableSet([np.array([0, 65535, 65536])], [0])
    h = tables.hash.to_bytes(4, "little")
    huge_n = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
    cases = {
        "version": bytes([2, 18, 32]) + h + b"\0",
        "chunk bits": bytes([1, 4, 32]) + h + b"\0",
        "lanes": bytes([1, 18, 33]) + h + b"\0",
        "zero lanes": bytes([1, 18, 0]) + h + b"\0",
        "huge n": bytes([1, 5, 32]) + h + huge_n + b"\0" * 64,
        "long leb": bytes([1, 18, 32]) + h + b"\x80" * 6,
        "too many words": bytes([1, 18, 32]) + h + b"\x01\x05\x00" + b"\0" * 14,
        "non-minimal n": bytes([1, 18, 32]) + h + b"\x81\x00" + b"\x00\x00" + b"\0\0\1\0",
    }
    for name, data in cases.items():
        with pytest.raises(BitstreamError):
            StreamDecoder(data, tables)
        with pytest.raises(BitstreamError):
            decode(data, np.zeros(1, np.int32), tables)
        assert name


def test_bad_state_is_an_error():
    tables = TableSet([np.array([0, 30000, 65536])], [0])
    data = bytearray(encode(np.zeros(5, np.int32), np.zeros(5, np.int32), tables, lanes=1))
    state_at = 8 + 2  # header (8) + word and bypass counts
    data[state_at : state_at + 4] = (5).to_bytes(4, "little")
    with pytest.raises(BitstreamError, match="state"):
        decode(bytes(data), np.zeros(5, np.int32), tables)


def test_stream_decoder_misuse(small_stream):
    data, values, indexes, tables = small_stream
    dec = StreamDecoder(data, tables)
    np.testing.assert_array_equal(dec.pull(indexes[:100]), values[:100])
    assert dec.position == 100 and dec.num_symbols == len(values)
    with pytest.raises(BitstreamError, match="finished after 100"):
        dec.finish()
    with pytest.raises(BitstreamError, match="left"):
        dec.pull(np.zeros(len(values), np.int32))
    enc = StreamEncoder(tables)
    enc.push(values, indexes)
    enc.finish()
    with pytest.raises(ValueError, match="finished"):
        enc.push(values, indexes)


def test_bad_arguments():
    tables = TableSet([np.array([0, 30000, 65536])], [0])
    with pytest.raises(ValueError, match="out of range"):
        encode(np.zeros(3, np.int32), np.array([0, 1, 0]), tables)
    with pytest.raises(ValueError, match="out of range"):
        encode(np.zeros(3, np.int32), np.array([0, -1, 0]), tables)
    data = encode(np.zeros(3, np.int32), np.zeros(3, np.int32), tables)
    with pytest.raises(ValueError, match="out of range"):
        decode(data, np.array([0, 5, 0]), tables)
    with pytest.raises(ValueError, match="length"):
        encode(np.zeros(3, np.int32), np.zeros(2, np.int32), tables)
    with pytest.raises(ValueError, match="chunk_bits"):
        encode(np.zeros(3, np.int32), np.zeros(3, np.int32), tables, chunk_bits=4)
    with pytest.raises(ValueError, match="lanes"):
        encode(np.zeros(3, np.int32), np.zeros(3, np.int32), tables, lanes=33)
    with pytest.raises(ValueError, match="int32"):
        encode(np.array([2**40]), np.zeros(1, np.int32), tables)


@pytest.mark.parametrize(
    ("cdf", "offset", "match"),
    [
        ([0, 65536], 0, "size"),
        ([0, 100, 100, 65536], 0, "increasing"),
        ([1, 100, 65536], 0, "start at 0"),
        ([0, 100, 65535], 0, "end at 65536"),
        ([0, 100, 200, 65536], I32.max, "int32"),
    ],
)
def test_bad_tables(cdf, offset, match):
    with pytest.raises(ValueError, match=match):
        TableSet([np.array(cdf)], [offset])


def test_header_leb128_must_be_minimal():
    """Every stream has exactly one encoding: a padded LEB128 in the header is refused."""
    tables = TableSet([np.array([0, 30000, 65536])], [0])
    data = encode(np.zeros(3, np.int32), np.zeros(3, np.int32), tables)
    assert data[7] == 3  # n as a single LEB128 byte
    padded = data[:7] + b"\x83\x00" + data[8:]
    with pytest.raises(BitstreamError, match="not minimal"):
        decode(padded, np.zeros(3, np.int32), tables)


# ------------------------------------------------------------------------------------------------
# The C++ core and the plain-torch reference write the same bytes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 1500),
    chunk_bits=st.integers(5, 8),
    lanes=st.integers(1, 32),
)
def test_same_bytes_as_reference(seed, n, chunk_bits, lanes):
    rng = np.random.default_rng(seed)
    tables = random_tables(rng, int(rng.integers(1, 5)))
    values, indexes = random_symbols(rng, tables, n)
    cdfs, offsets = tables.cdfs(), tables.offsets
    assert reference.table_hash(cdfs, offsets) == tables.hash
    ours = encode(values, indexes, tables, chunk_bits=chunk_bits, lanes=lanes)
    assert ours == reference.encode(values, indexes, cdfs, offsets, chunk_bits=chunk_bits, lanes=lanes)
    np.testing.assert_array_equal(reference.decode(ours, indexes, cdfs, offsets).numpy(), values)


def test_golden_vectors():
    """Streams worked out by hand in tests/test_reference.py, checked against the C++ core."""
    tables = TableSet([np.array([0, 30000, 60000, 65536])], [0])
    data = encode(np.array([0, 1, -5, 100, 1]), np.zeros(5, np.int32), tables, chunk_bits=5, lanes=2)
    bypass = bytes.fromhex("09c401")
    expected = bytes.fromhex("010502ef3a7eb2050003e0404300d08a1a00") + bypass
    assert data == expected + zlib.crc32(bypass).to_bytes(4, "little")


def test_lanes_for_short_and_long_streams():
    from neurocodec.entropy.coder import lanes_for

    assert [lanes_for(n) for n in (0, 1, 16384, 16385, 300_000, 10**7)] == [1, 1, 1, 2, 19, 32]
    # the byte cap: at most one lane per 4 KiB of stream, never fewer than one
    assert [lanes_for(300_000, b) for b in (0, 5000, 8192, 40_000, 10**6)] == [1, 1, 2, 9, 19]


def test_fit_lanes_recodes_short_streams_with_fewer_lanes():
    from neurocodec.entropy.coder import fit_lanes, lanes_for, stream_info

    rng = np.random.default_rng(5)
    tables = TableSet([np.array([0, 40000, 65535, 65536])], [0])  # a skewed binary source (+ escape)
    for n in (40_000, 200_000):
        values = (rng.random(n) > 0.61).astype(np.int32)
        indexes = np.zeros(n, np.int32)
        calls = []

        def encode_at(lanes, values=values, indexes=indexes, calls=calls):
            calls.append(lanes)
            return encode(values, indexes, tables, lanes=lanes)

        data = fit_lanes(encode_at, n)
        lanes = stream_info(data)["lanes"]
        assert calls[0] == lanes_for(n) and lanes == lanes_for(n, len(encode_at(calls[0])))
        assert lanes < lanes_for(n)  # these streams are short for their symbol counts
        assert len(data) < len(encode(values, indexes, tables, lanes=lanes_for(n)))
        assert np.array_equal(decode(data, indexes, tables), values)
