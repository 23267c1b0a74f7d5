"""The GPU rANS kernels (neurocodec.entropy.gpu): byte-identical to the C++ core, same checks.

Without a GPU the kernels run in Triton's interpreter on the CPU (TRITON_INTERPRET=1, set here
before Triton is imported), which is slow: the cases are small, and every one is compared
byte for byte with the C++ core (neurocodec.entropy.coder) and decoded by both decoders. With
a GPU the same tests run the compiled kernels on it.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import zlib

# TRITON_INTERPRET=1 is set by conftest.py when there is no GPU, before anything imports Triton.
import numpy as np
import pytest
import torch

from neurocodec.entropy import coder, gpu
from neurocodec.errors import BitstreamError, TableMismatchError
from test_coder import I32, random_symbols, random_tables

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.int32), device=DEVICE)


def check(values, indexes, tables: coder.TableSet, gtables: gpu.GpuTableSet, **kw) -> bytes:
    """GPU bytes == C++ bytes, and each decoder reads them back."""
    values, indexes = np.asarray(values, np.int32), np.asarray(indexes, np.int32)
    expected = coder.encode(values, indexes, tables, **kw)
    data = gpu.encode(tensor(values), tensor(indexes), gtables, **kw)
    assert data == expected
    out = gpu.decode(expected, tensor(indexes), gtables)
    assert out.dtype == torch.int32 and out.device.type == DEVICE
    np.testing.assert_array_equal(out.cpu().numpy(), values)
    np.testing.assert_array_equal(coder.decode(data, indexes, tables), values)
    return data


@pytest.fixture(scope="module")
def random_set():
    rng = np.random.default_rng(11)
    tables = random_tables(rng, 4)
    return rng, tables, gpu.GpuTableSet(tables, DEVICE)


# ------------------------------------------------------------------------------------------------
# Same bytes as the C++ core


@pytest.mark.parametrize(
    ("n", "chunk_bits", "lanes"),
    [(300, 18, 32), (300, 5, 32), (300, 6, 7), (250, 7, 13), (40, 5, 1)],
)
def test_same_bytes_random(random_set, n, chunk_bits, lanes):
    rng, tables, gtables = random_set
    values, indexes = random_symbols(rng, tables, n, escape_rate=0.05)
    check(values, indexes, tables, gtables, chunk_bits=chunk_bits, lanes=lanes)


@pytest.mark.parametrize("seed", range(8))
def test_same_bytes_sweep(seed):
    """Random table sets, lane counts, chunk sizes, escape rates and lookup resolutions."""
    rng = np.random.default_rng(100 + seed)
    tables = random_tables(rng, int(rng.integers(1, 7)))
    gtables = gpu.GpuTableSet(tables, DEVICE, lut_bits=int(rng.choice([16, 12, 4])))
    lanes = int(rng.integers(1, 33))
    n = int(rng.integers(0, 12 * lanes + 40))
    values, indexes = random_symbols(rng, tables, n, escape_rate=float(rng.choice([0.0, 0.02, 0.2])))
    check(values, indexes, tables, gtables, chunk_bits=int(rng.integers(5, 10)), lanes=lanes)


@pytest.mark.parametrize("lut_bits", [11, 3, 0])
def test_coarse_lookup(random_set, lut_bits):
    """Coarser decode buckets (a binary search of 16 - lut_bits steps) decode the same values."""
    rng, tables, _ = random_set
    gtables = gpu.GpuTableSet(tables, DEVICE, lut_bits=lut_bits)
    values, indexes = random_symbols(rng, tables, 200, escape_rate=0.05)
    check(values, indexes, tables, gtables, chunk_bits=6, lanes=16)


def test_empty_and_one_symbol():
    tables = coder.TableSet([np.array([0, 65535, 65536])], [7])
    gtables = gpu.GpuTableSet(tables, DEVICE)
    assert len(check([], [], tables, gtables)) == 8
    for value in (7, 8, 6, I32.min, I32.max):
        check([value], [0], tables, gtables)


def test_escapes_both_directions_and_int32_extremes():
    tables = coder.TableSet(
        [np.array([0, 20000, 40000, 65000, 65536]), np.array([0, 65535, 65536])], [I32.max - 2, I32.min]
    )
    gtables = gpu.GpuTableSet(tables, DEVICE)
    values = [I32.max, I32.max - 1, I32.max - 2, I32.max - 3, I32.min, 0, I32.min, I32.min + 1, I32.max, 0]
    indexes = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    for lanes in (1, 2, 32):
        check(values, indexes, tables, gtables, lanes=lanes, chunk_bits=5)


def test_all_escapes_every_leb128_length():
    tables = coder.TableSet([np.array([0, 60000, 65536])], [0])
    gtables = gpu.GpuTableSet(tables, DEVICE)
    rng = np.random.default_rng(4)
    mags = (2.0 ** rng.uniform(0, 31, size=200)).astype(np.int64)
    values = np.where(rng.random(200) < 0.5, -mags, mags + 1).clip(I32.min, I32.max)
    check(values, np.zeros(200), tables, gtables, chunk_bits=6, lanes=5)


def test_frequency_one_entries():
    """Entries of frequency 1 (16-bit codes) on both tails, and the 65536-entry table."""
    freqs = np.ones(300, np.int64)
    freqs[150] = 65536 - 299
    tail = coder.TableSet([np.concatenate([[0], np.cumsum(freqs)])], [-150])
    full = coder.TableSet([np.arange(65537)], [-30000])
    rng = np.random.default_rng(2)
    values = rng.choice([-150, -149, 0, 148], size=300)
    check(values, np.zeros(300), tail, gpu.GpuTableSet(tail, DEVICE), lanes=32)
    values = rng.integers(-40000, 40000, size=200)
    for lut_bits in (16, 0):
        check(values, np.zeros(200), full, gpu.GpuTableSet(full, DEVICE, lut_bits=lut_bits), lanes=32)


def test_two_entry_table():
    """One ordinary symbol plus the escape: almost no words, escapes in both directions."""
    tables = coder.TableSet([np.array([0, 65535, 65536])], [0])
    values = np.zeros(300, np.int32)
    values[[5, 77, 299]] = [1, -1, 123456]
    check(values, np.zeros(300), tables, gpu.GpuTableSet(tables, DEVICE), chunk_bits=7, lanes=32)


def test_batches(random_set):
    """One kernel for several streams: same bytes as one stream at a time, either decoder."""
    rng, tables, gtables = random_set
    items = [random_symbols(rng, tables, n, escape_rate=0.05) for n in (0, 1, 300, 70)]
    streams = gpu.encode_batch([(tensor(v), tensor(k)) for v, k in items], gtables, chunk_bits=6, lanes=9)
    assert streams == [coder.encode(v, k, tables, chunk_bits=6, lanes=9) for v, k in items]
    # Streams of different chunk sizes and lane counts decode together.
    mixed = [coder.encode(v, k, tables, chunk_bits=5 + i, lanes=3 + 9 * i) for i, (v, k) in enumerate(items)]
    outs = gpu.decode_batch(mixed, [tensor(k) for _, k in items], gtables)
    for out, (v, _) in zip(outs, items, strict=True):
        np.testing.assert_array_equal(out.cpu().numpy(), v)
    assert gpu.encode_batch([], gtables) == [] and gpu.decode_batch([], [], gtables) == []


def test_table_layout():
    tables = coder.TableSet([np.array([0, 100, 65536]), np.array([0, 1, 2, 65536])], [-5, 9])
    gtables = gpu.GpuTableSet(tables, "cpu", lut_bits=4)
    assert gtables.hash == tables.hash and gtables.num_tables == 2
    np.testing.assert_array_equal(gtables.info.numpy(), [0, 2, -5, 2, 3, 9])
    # start | (freq - 1) << 16, as int32 bit patterns
    expected = np.array([0 | 99 << 16, 100 | 65435 << 16, 0, 1, 2 | 65533 << 16], np.int64)
    np.testing.assert_array_equal(gtables.entries.numpy().view(np.uint32), expected)
    lut = gtables.lut.numpy().view(np.uint32).reshape(2, 16)
    assert lut[0, 0] == 0 | 1 << 16 and lut[0, 1] == 1 | 1 << 16 and lut[1, 0] == 0 | 2 << 16
    moved = gtables.to(DEVICE)
    assert moved.device.type == DEVICE and moved.lut.device.type == DEVICE and moved.hash == tables.hash


# The interpreter accepts some code that Triton's compiler refuses: compile the kernels for a
# Hopper GPU (sm_90; no GPU needed, Triton ships ptxas) in a process without TRITON_INTERPRET.
COMPILE_SCRIPT = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from neurocodec.entropy import gpu

target = GPUTarget("cuda", 90, 32)
kernels = [
    (gpu._encode_kernel, "*i32 *i32 *i64 *i32 *i32 *i16 *i8 *i32 *i32", {"LANES": 32}),
    *((gpu._decode_kernel, "*u8 *i64 *i32 *i32 *i32 *i32 *i32 *i8 *i32 *i32 *i32", {"LANES": 32, "LUT_BITS": b})
      for b in (16, 9, 0)),
]
for kernel, types, constexprs in kernels:
    names = kernel.arg_names
    signature = dict(zip(names, types.split() + ["constexpr"] * len(constexprs)))
    triton.compile(ASTSource(kernel, signature, constexprs), target=target, options={"num_warps": 1})
print("compiled")
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the other tests run the compiled kernels")
def test_kernels_compile_for_the_gpu():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT], env=env, capture_output=True, text=True)
    assert run.returncode == 0 and "compiled" in run.stdout, run.stderr[-3000:]


# ------------------------------------------------------------------------------------------------
# Errors: the same streams are refused, with BitstreamError


@pytest.fixture(scope="module")
def small_stream():
    rng = np.random.default_rng(7)
    tables = random_tables(rng, 3, max_size=40)
    values, indexes = random_symbols(rng, tables, 64, escape_rate=0.1)
    data = coder.encode(values, indexes, tables, chunk_bits=5, lanes=16)
    return data, values, indexes, tables, gpu.GpuTableSet(tables, DEVICE)


def test_wrong_tables_and_counts(small_stream):
    data, _, indexes, tables, gtables = small_stream
    other = coder.TableSet([*tables.cdfs()[:2], np.array([0, 1000, 65536])], tables.offsets)
    with pytest.raises(TableMismatchError, match="other CDF tables"):
        gpu.decode(data, tensor(indexes), gpu.GpuTableSet(other, DEVICE))
    for k in (indexes[:-1], np.concatenate([indexes, [0]])):
        with pytest.raises(BitstreamError, match="symbols"):
            gpu.decode(data, tensor(k), gtables)


def test_truncations_and_trailing_bytes(small_stream):
    data, _, indexes, _, gtables = small_stream
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            gpu.decode(data[:cut], tensor(indexes), gtables)
    with pytest.raises(BitstreamError, match="trailing"):
        gpu.decode(data + b"\0", tensor(indexes), gtables)


def test_byte_flips_match_the_cpp_decoder(small_stream):
    """Every flipped byte that the C++ decoder refuses, the GPU decoder refuses too (and vice versa)."""
    data, values, indexes, tables, gtables = small_stream
    rng = np.random.default_rng(8)
    for _ in range(200):
        corrupt = bytearray(data)
        corrupt[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))
        try:
            expected = coder.decode(bytes(corrupt), indexes, tables)
        except BitstreamError:
            with pytest.raises(BitstreamError):
                gpu.decode(bytes(corrupt), tensor(indexes), gtables)
        else:
            assert not np.array_equal(expected, values)
            np.testing.assert_array_equal(
                gpu.decode(bytes(corrupt), tensor(indexes), gtables).cpu().numpy(), expected
            )


def test_hostile_headers():
    tables = coder.TableSet([np.array([0, 65535, 65536])], [0])
    gtables = gpu.GpuTableSet(tables, DEVICE)
    h = tables.hash.to_bytes(4, "little")
    cases = [
        bytes([2, 18, 32]) + h + b"\0",  # version
        bytes([1, 4, 32]) + h + b"\0",  # chunk bits
        bytes([1, 18, 33]) + h + b"\0",  # lanes
        bytes([1, 18, 0]) + h + b"\0",  # zero lanes
        bytes([1, 5, 32]) + h + bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) + b"\0" * 64,  # huge n
        bytes([1, 18, 32]) + h + b"\x80" * 6,  # long LEB128
        bytes([1, 18, 32]) + h + b"\x01\x05\x00" + b"\0" * 14,  # more words than symbols
    ]
    for data in cases:
        with pytest.raises(BitstreamError):
            gpu.decode(data, tensor([0]), gtables)


def test_bad_state_and_final_state():
    tables = coder.TableSet([np.array([0, 30000, 65536])], [0])
    gtables = gpu.GpuTableSet(tables, DEVICE)
    data = bytearray(coder.encode(np.zeros(5, np.int32), np.zeros(5, np.int32), tables, lanes=1))
    state_at = 8 + 2  # header (8) + word and bypass counts
    good = bytes(data[state_at : state_at + 4])
    data[state_at : state_at + 4] = (5).to_bytes(4, "little")
    with pytest.raises(BitstreamError, match="state"):
        gpu.decode(bytes(data), tensor(np.zeros(5)), gtables)
    data[state_at : state_at + 4] = (int.from_bytes(good, "little") + 1).to_bytes(4, "little")
    with pytest.raises(BitstreamError):
        gpu.decode(bytes(data), tensor(np.zeros(5)), gtables)


def test_batch_errors_name_the_stream(small_stream):
    data, _, indexes, tables, gtables = small_stream
    k = tensor(indexes)
    with pytest.raises(BitstreamError, match=r"^stream 1: truncated"):
        gpu.decode_batch([data, data[:-1]], [k, k], gtables)
    one = np.zeros(1, np.int32)
    bad_state = bytearray(coder.encode(one, one, tables))
    bad_state[10:14] = (5).to_bytes(4, "little")  # header (8), counts (2), the lane state
    with pytest.raises(
        BitstreamError, match=r"^stream 2: corrupt stream \(lane state out of range, chunk 0\)"
    ):
        gpu.decode_batch([data, data, bytes(bad_state)], [k, k, tensor(one)], gtables)


def with_bypass(data: bytes, bypass: bytes) -> bytes:
    """A one-chunk stream whose bypass bytes are replaced (by as many bytes), with a valid CRC."""
    return data[: -4 - len(bypass)] + bypass + zlib.crc32(bypass).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("values", "bypass", "match"),
    [
        ([65], b"\x80\x00", "non-minimal"),  # e = 128 rewritten as a 2-byte 0
        ([65], b"\x01\x01", "unread"),  # two values for one escape
        ([5, 5], b"\x88\x01", "ran out"),  # one value for two escapes
        ([5, 5], b"\x08\x88", "ran out"),  # the last value runs off the chunk
        ([I32.max], b"\xfe\xff\xff\xff\x0f", "int32"),  # e = 2^32 - 2: v = 2^31
        ([I32.max], b"\xfc\xff\xff\xff\x7f", "out of range"),  # e >= 2^34
        ([I32.max], b"\xfc\xff\xff\xff\x8f", "ran out"),  # a sixth byte would follow
        ([65, 65, 65], b"\x80\x80\x80\x80\x80\x01", "longer than 5"),
    ],
)
def test_bad_escape_values(values, bypass, match):
    tables = coder.TableSet([np.array([0, 65535, 65536])], [0])
    gtables = gpu.GpuTableSet(tables, DEVICE)
    indexes = np.zeros(len(values), np.int32)
    data = with_bypass(coder.encode(np.array(values, np.int32), indexes, tables, lanes=2), bypass)
    with pytest.raises(BitstreamError):
        coder.decode(data, indexes, tables)
    with pytest.raises(BitstreamError, match=match):
        gpu.decode(data, tensor(indexes), gtables)
    corrupt = bytearray(data)
    corrupt[-1] ^= 1
    with pytest.raises(BitstreamError, match="CRC"):
        gpu.decode(bytes(corrupt), tensor(indexes), gtables)


def test_bad_arguments():
    tables = coder.TableSet([np.array([0, 30000, 65536])], [0])
    gtables = gpu.GpuTableSet(tables, DEVICE)
    zeros = tensor(np.zeros(3))
    with pytest.raises(ValueError, match="out of range"):
        gpu.encode(zeros, tensor([0, 1, 0]), gtables)
    with pytest.raises(ValueError, match="out of range"):
        gpu.encode(zeros, tensor([0, -1, 0]), gtables)
    data = coder.encode(np.zeros(3, np.int32), np.zeros(3, np.int32), tables)
    with pytest.raises(ValueError, match="out of range"):
        gpu.decode(data, tensor([0, 5, 0]), gtables)
    with pytest.raises(ValueError, match="length"):
        gpu.encode(zeros, zeros[:2], gtables)
    with pytest.raises(ValueError, match="chunk_bits"):
        gpu.encode(zeros, zeros, gtables, chunk_bits=4)
    with pytest.raises(ValueError, match="lanes"):
        gpu.encode(zeros, zeros, gtables, lanes=33)
    with pytest.raises(ValueError, match="int32"):
        gpu.encode(torch.tensor([2**40], device=DEVICE), tensor([0]), gtables)
    with pytest.raises(ValueError, match="integers"):
        gpu.encode(zeros.float(), zeros, gtables)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU: entropy models code on the device of their tensors"
)
def test_entropy_models_code_on_the_gpu_with_the_cpu_bytes():
    """A model on a GPU writes the C++ core's bytes and decodes to tensors that stay on the GPU."""
    from neurocodec.entropy.models import FactorizedPrior, GaussianConditional

    g = torch.Generator().manual_seed(0)
    prior = FactorizedPrior(4)
    prior.update_tables()
    z = torch.randn(2, 4, 5, 7, generator=g) * 3
    data = prior.compress(z)
    prior.cuda()
    assert prior.compress(z.cuda()) == data
    z_hat = prior.decompress(data, z.shape)
    assert z_hat.is_cuda and torch.equal(z_hat.cpu(), torch.round(z))

    conditional = GaussianConditional()
    conditional.update_tables()
    y = torch.randn(2, 3, 6, 5, generator=g) * 8
    indexes = torch.randint(0, conditional.scale_table.size, y.shape, generator=g, dtype=torch.int32)
    means = torch.round(torch.randn(y.shape, generator=g) * 16) / 16
    data = conditional.compress(y, indexes, means)
    conditional.cuda()
    assert conditional.compress(y.cuda(), indexes.cuda(), means.cuda()) == data
    y_hat = conditional.decompress(data, indexes.cuda(), means.cuda())
    assert y_hat.is_cuda and torch.equal(y_hat.cpu(), conditional.decompress(data, indexes, means))


# ------------------------------------------------------------------------------------------------
# Incremental coding on the device (what a multi-step context schedule uses)


@pytest.mark.parametrize("seed", range(4))
def test_stream_decoder_any_split_matches_one_shot(seed):
    """Pulls of any sizes (inside rounds, across chunks, empty) give the stream's values, and
    the step-by-step encoder writes the one-shot bytes."""
    rng = np.random.default_rng(100 + seed)
    tables = random_tables(rng, 4, max_size=60)
    gtables = gpu.GpuTableSet(tables, DEVICE)
    n = int(rng.integers(1, 400))
    values, indexes = random_symbols(rng, tables, n, escape_rate=0.05)
    lanes = int(rng.integers(1, 33))
    data = coder.encode(values, indexes, tables, chunk_bits=6, lanes=lanes)
    bounds = [0, *sorted(rng.integers(0, n + 1, size=6).tolist()), n]

    enc = gpu.StreamEncoder(gtables, chunk_bits=6, lanes=lanes)
    for a, b in itertools.pairwise(bounds):
        enc.push(tensor(values[a:b]), tensor(indexes[a:b]))
    assert enc.num_symbols == n
    assert enc.finish() == data

    dec = gpu.StreamDecoder(data, gtables)
    parts = [dec.pull(tensor(indexes[a:b])) for a, b in itertools.pairwise(bounds)]
    assert all(p.device.type == DEVICE for p in parts)
    dec.finish()
    np.testing.assert_array_equal(torch.cat(parts).cpu().numpy(), values)


def test_stream_decoder_misuse_and_deferred_errors(small_stream):
    data, values, indexes, tables, gtables = small_stream
    dec = gpu.StreamDecoder(data, gtables)
    np.testing.assert_array_equal(dec.pull(tensor(indexes[:10])).cpu().numpy(), values[:10])
    assert dec.position == 10 and dec.num_symbols == len(values)
    with pytest.raises(BitstreamError, match="finished after 10"):
        dec.finish()
    with pytest.raises(BitstreamError, match="left"):
        dec.pull(tensor(np.zeros(len(values), np.int32)))

    # A corrupt word is only caught when the chunk's checks run: by finish(), never silently.
    words_at = len(data) - 40  # inside the last chunk's words or bypass bytes
    caught = 0
    for flip in range(words_at, len(data)):
        bad = bytearray(data)
        bad[flip] ^= 0x10
        try:
            dec = gpu.StreamDecoder(bytes(bad), gtables)
            out = dec.pull(tensor(indexes))
            dec.finish()
        except BitstreamError:
            caught += 1
            continue
        np.testing.assert_array_equal(out.cpu().numpy(), values)  # no error: then the values are right
    assert caught > 0

    dec = gpu.StreamDecoder(data, gtables)
    dec.pull(tensor(np.full(len(values), tables.num_tables, np.int32)))
    with pytest.raises(ValueError, match="out of range"):
        dec.finish()

    enc = gpu.StreamEncoder(gtables)
    enc.push(tensor(values), tensor(indexes))
    enc.finish()
    with pytest.raises(ValueError, match="finished"):
        enc.push(tensor(values), tensor(indexes))
