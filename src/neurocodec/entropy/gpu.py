"""GPU rANS coder: Triton kernels that write and read exactly the bytes of docs/bitstream.md.

The streams are byte-identical to the C++ core's (:mod:`neurocodec.entropy.coder`): a stream
encoded here decodes there and the other way round. One Triton program codes one chunk (chunks
are independent), with a block of 32 lanes of which the stream's ``K`` are used; the whole
round loop of a chunk runs inside the kernel, so there is no host round trip per round:

- **encode** walks the rounds backwards. In each round the lanes that flush a word are a mask;
  a lane's word goes to ``front - count + (flushing lanes below it)`` (an exclusive prefix sum
  over the mask, the warp ``ballot`` + ``popc`` idiom), so a round's words land in ascending
  lane order in front of the later rounds' words, in a scratch region of ``n_q`` words per
  chunk that is filled from its end.
- **decode** walks the rounds forwards: lookup (a bucket table then a fixed-length binary
  search over the bucket's entries, so it always terminates), state update, and the refilling
  lanes read consecutive words in ascending lane order, again by an exclusive prefix sum.

Escapes are rare, so their values stay out of the kernels: both kernels flag the escape
symbols; the encoder's LEB128 bypass bytes and their CRC-32 are then written on the host from
the flagged symbols alone, and the decoder's escaped values are filled in from each chunk's
bypass bytes (parsed on the host, vectorized per chunk) in symbol order. Headers are built and parsed on the host, with
every check of docs/bitstream.md §3. Only compressed bytes (and per-chunk counts) cross
between host and device.

Under ``TRITON_INTERPRET=1`` (set before this module is imported) the same kernels run on the
CPU with CPU tensors (slowly), which is how the tests check them against the C++ core; without
it, the tables and symbols must be on a CUDA device.

    gtables = GpuTableSet(tables, device="cuda")   # tables: coder.TableSet, uploaded once
    data = encode(values, indexes, gtables)        # int32 tensors on the device -> bytes
    values = decode(data, indexes, gtables)        # -> int32 tensor on the device

Multi-step decoding (context schedules) uses :class:`StreamDecoder`: the decode kernel takes a
range ``[begin, end)`` of each chunk and carries the lane states and word positions in device
memory from one ``pull`` to the next, so each step is one kernel launch with no host round
trip; the checks that need the host are deferred to ``finish()``.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from neurocodec.entropy.coder import DEFAULT_CHUNK_BITS, DEFAULT_LANES, FORMAT_VERSION, MAX_LANES, TableSet
from neurocodec.errors import BitstreamError, TableMismatchError

__all__ = [
    "GpuTableSet",
    "StreamDecoder",
    "StreamEncoder",
    "decode",
    "decode_batch",
    "encode",
    "encode_batch",
]

MIN_CHUNK_BITS, MAX_CHUNK_BITS = 5, 30
MAX_SYMBOLS = (1 << 32) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
# Default decode-lookup budget: the bucket table holds at most this many int32 entries (16 MiB),
# a full slot -> entry map (no search) for up to 64 tables.
_LUT_ENTRIES = 1 << 22

# Kernel status bits of a decoded chunk (see _decode_kernel).
_ERR_STATE = 1
_ERR_OUT_OF_WORDS = 2
_ERR_UNREAD_WORDS = 4
_ERR_FINAL_STATE = 8
_ERROR_TEXT = {
    _ERR_STATE: "lane state out of range",
    _ERR_OUT_OF_WORDS: "a chunk ran out of words",
    _ERR_UNREAD_WORDS: "unread data at the end of a chunk",
    _ERR_FINAL_STATE: "final-state check failed",
}


# ---------------------------------------------------------------------------------------------
# Tables on the device


class GpuTableSet:
    """A :class:`~neurocodec.entropy.coder.TableSet` laid out for the kernels, on one device.

    Tensors (all int32):

    - ``info[t] = (base_t, n_t, offset_t)``: table ``t``'s entries are ``entries[base_t + s]``;
    - ``entries[base_t + s] = start | (freq - 1) << 16`` (``freq - 1 < 2^16``, read with masks);
    - ``lut[t << lut_bits | b] = lo | hi << 16``: the first and last entry that meet the slots
      of bucket ``b`` (``2^(16 - lut_bits)`` slots). The decoder finds a slot's entry by a
      binary search over ``[lo, hi]`` in exactly ``16 - lut_bits`` steps (none for a full map).

    ``lut_bits`` defaults to the finest resolution whose table fits in 16 MiB.
    """

    def __init__(
        self, tables: TableSet, device: str | torch.device | None = None, *, lut_bits: int | None = None
    ):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        cdfs = [np.asarray(c, dtype=np.int64) for c in tables.cdfs()]
        sizes = np.asarray(tables.sizes, dtype=np.int64)
        num_tables = len(cdfs)
        if lut_bits is None:
            lut_bits = 16
            while lut_bits > 0 and (num_tables << lut_bits) > _LUT_ENTRIES:
                lut_bits -= 1
        if not 0 <= lut_bits <= 16 or (num_tables << lut_bits) > (1 << 30):
            raise ValueError(f"lut_bits must be in [0, 16] with at most 2^30 buckets in all, got {lut_bits}")
        bases = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        entries = np.concatenate([(cdf[:-1] | ((np.diff(cdf) - 1) << 16)) for cdf in cdfs])
        width = 1 << (16 - lut_bits)
        first_slots = np.arange(1 << lut_bits, dtype=np.int64) * width
        lut = np.concatenate(
            [
                (np.searchsorted(cdf, first_slots, side="right") - 1)
                | ((np.searchsorted(cdf, first_slots + width - 1, side="right") - 1) << 16)
                for cdf in cdfs
            ]
        )
        info = np.stack([bases, sizes, np.asarray(tables.offsets, dtype=np.int64)], axis=1)
        self.num_tables = num_tables
        self.hash = tables.hash
        self.lut_bits = lut_bits
        self.sizes = sizes  # int64 [T], host
        self.offsets = np.asarray(tables.offsets, dtype=np.int64)  # int64 [T], host
        self._host = {
            "info": _wrap_int32(info.reshape(-1)),
            "entries": _wrap_int32(entries),
            "lut": _wrap_int32(lut),
        }
        self._upload(torch.device(device))

    def _upload(self, device: torch.device) -> None:
        if device.type != "cuda" and not _interpreted():
            raise ValueError(
                f"the GPU coder needs a CUDA device, got {device} "
                "(set TRITON_INTERPRET=1 before importing neurocodec.entropy.gpu to run its kernels on the CPU)"
            )
        self.device = device
        self.info, self.entries, self.lut = (self._host[k].to(device) for k in ("info", "entries", "lut"))

    def to(self, device: str | torch.device) -> GpuTableSet:
        """The same tables on another device (a shallow copy; the host arrays are shared)."""
        other = object.__new__(GpuTableSet)
        other.__dict__.update(self.__dict__)
        other._upload(torch.device(device))
        return other

    def __repr__(self) -> str:
        return f"GpuTableSet({self.num_tables} tables, hash={self.hash:#010x}, device={self.device})"


def _wrap_int32(a: np.ndarray) -> torch.Tensor:
    """Integers as int32 bit patterns (modulo 2^32): the kernels read the u32 fields with masks."""
    return torch.from_numpy(a.astype(np.int64).astype(np.uint32).view(np.int32).copy())


# ---------------------------------------------------------------------------------------------
# Kernels
#
# Nothing but the lane states is carried from round to round, so the loads are software-
# pipelined by hand: a round's symbols (values, table indexes) are loaded two rounds ahead and
# their table rows (and, for the encoder, their entries) one round ahead, so that every load has
# a whole round of state arithmetic to arrive in. (The round loops are `while` loops: Triton's
# interpreter cannot take a loaded scalar as a `range` bound under numpy >= 2.4.)


@triton.jit
def _round(begin, end, k, r, lane):
    """Positions in the chunk of round ``r``'s symbols, and which lanes have one in
    ``[begin, end)`` (any ``r``)."""
    p = r * k + lane
    return p, (lane < k) & (p >= begin) & (p < end)


@triton.jit
def _table_row(info_ptr, t):
    """Table ``t``'s (base, escape entry, offset)."""
    return tl.load(info_ptr + t * 3), tl.load(info_ptr + t * 3 + 1) - 1, tl.load(info_ptr + t * 3 + 2)


@triton.jit
def _encode_entry(info_ptr, entries_ptr, v, t):
    """(is_escape, start, freq) of coding value ``v`` with table ``t``."""
    base, escape, offset = _table_row(info_ptr, t)
    s = v.to(tl.int64) - offset.to(tl.int64)
    is_escape = (s < 0) | (s >= escape)
    packed = tl.load(entries_ptr + base + tl.where(is_escape, escape, s))
    start = (packed & 0xFFFF).to(tl.uint32)
    freq = ((packed >> 16) & 0xFFFF).to(tl.uint32) + 1
    return is_escape, start, freq


@triton.jit
def _encode_kernel(
    values_ptr,  # int32 [N]: the symbols of all streams, back to back
    indexes_ptr,  # int32 [N]
    chunks_ptr,  # int64 [Q, 3]: first symbol, n_q, K
    info_ptr,  # int32 [T, 3]: base, n, offset
    entries_ptr,  # int32: start | (freq - 1) << 16
    words_ptr,  # int16 [N] out: chunk q's W_q words end where its symbols end
    escapes_ptr,  # int8 [N] out: 1 where the symbol is an escape
    states_ptr,  # int32 [Q, LANES] out: final states (u32 bit patterns)
    counts_ptr,  # int32 [Q, 2] out: W_q, number of escapes
    LANES: tl.constexpr,
):
    q = tl.program_id(0)
    first = tl.load(chunks_ptr + q * 3)
    n = tl.load(chunks_ptr + q * 3 + 1).to(tl.int32)
    k = tl.load(chunks_ptr + q * 3 + 2).to(tl.int32)
    lane = tl.arange(0, LANES)
    x = tl.full([LANES], 1 << 16, tl.uint32)
    front = n  # words are pushed to the front of [first, first + n)
    escapes = tl.zeros([LANES], tl.int32)
    r = (n + k - 1) // k - 1  # rounds backwards
    p, active = _round(0, n, k, r, lane)
    v = tl.load(values_ptr + first + p, mask=active, other=0)
    t = tl.load(indexes_ptr + first + p, mask=active, other=0)
    is_escape, start, freq = _encode_entry(info_ptr, entries_ptr, v, t)
    p_1, active_1 = _round(0, n, k, r - 1, lane)
    v_1 = tl.load(values_ptr + first + p_1, mask=active_1, other=0)
    t_1 = tl.load(indexes_ptr + first + p_1, mask=active_1, other=0)
    while r >= 0:
        # In flight: round r - 2's symbols, round r - 1's entries.
        p_2, active_2 = _round(0, n, k, r - 2, lane)
        v_2 = tl.load(values_ptr + first + p_2, mask=active_2, other=0)
        t_2 = tl.load(indexes_ptr + first + p_2, mask=active_2, other=0)
        is_escape_1, start_1, freq_1 = _encode_entry(info_ptr, entries_ptr, v_1, t_1)
        # Flushing lanes push their low words, in ascending lane order, in front of the later rounds'.
        flush = active & (x >= (freq << 16))
        f = flush.to(tl.int32)
        count = tl.sum(f, axis=0)
        slot = front - count + tl.cumsum(f, axis=0) - f
        tl.store(words_ptr + first + slot, (x & 0xFFFF).to(tl.int16), mask=flush)
        front -= count
        x_low = tl.where(flush, x >> 16, x)
        x = tl.where(active, ((x_low // freq) << 16) + (x_low % freq) + start, x)
        tl.store(escapes_ptr + first + p, is_escape.to(tl.int8), mask=active)
        escapes += (active & is_escape).to(tl.int32)
        p, active, is_escape, start, freq = p_1, active_1, is_escape_1, start_1, freq_1
        p_1, active_1, v_1, t_1 = p_2, active_2, v_2, t_2
        r -= 1
    tl.store(states_ptr + q * LANES + lane, x.to(tl.int32, bitcast=True), mask=lane < k)
    tl.store(counts_ptr + q * 2, n - front)
    tl.store(counts_ptr + q * 2 + 1, tl.sum(escapes, axis=0))


@triton.jit
def _load_words(data_ptr, words_at, read, num_words, lane):
    """Words ``read + lane`` of a chunk (0 past its end): all that one round can consume."""
    w = read + lane
    ok = w < num_words
    lo = tl.load(data_ptr + words_at + 2 * w, mask=ok, other=0).to(tl.uint32)
    hi = tl.load(data_ptr + words_at + 2 * w + 1, mask=ok, other=0).to(tl.uint32)
    return lo | (hi << 8)


@triton.jit
def _decode_kernel(
    data_ptr,  # uint8: the streams, back to back
    chunks_ptr,  # int64 [Q, 8]: symbol 0's position in out, n_q, K, byte offset of the words, W_q,
    #              begin, end (positions of the chunk to decode now), row of the chunk's carried state
    indexes_ptr,  # int32: the table indexes of the symbols being decoded (same positions as out)
    info_ptr,  # int32 [T, 3]: base, n, offset
    entries_ptr,  # int32: start | (freq - 1) << 16
    lut_ptr,  # int32 [T << LUT_BITS]: lo | hi << 16
    out_ptr,  # int32 out: the values (escapes: filled in afterwards)
    escapes_ptr,  # int8 out: 1 where the symbol is an escape
    states_ptr,  # int32 [rows, LANES] in/out: lane states (u32 bit patterns; unused lanes 2^16)
    reads_ptr,  # int32 [rows] in/out: words consumed
    status_ptr,  # int32 [rows, 2] in/out: error bits (or-ed), number of escapes (added)
    LANES: tl.constexpr,
    LUT_BITS: tl.constexpr,
):
    """Decodes positions ``[begin, end)`` of each listed chunk, from and back to its carried
    state: the whole chunk in one call (``decode_batch``) or step by step (``StreamDecoder``).
    A range may start and end inside a round: a round's refilling lanes read their words in
    ascending lane order, so splitting it between calls reads the same words."""
    q = tl.program_id(0)
    first = tl.load(chunks_ptr + q * 8)
    n = tl.load(chunks_ptr + q * 8 + 1).to(tl.int32)
    k = tl.load(chunks_ptr + q * 8 + 2).to(tl.int32)
    words_at = tl.load(chunks_ptr + q * 8 + 3)
    num_words = tl.load(chunks_ptr + q * 8 + 4).to(tl.int32)
    begin = tl.load(chunks_ptr + q * 8 + 5).to(tl.int32)
    end = tl.load(chunks_ptr + q * 8 + 6).to(tl.int32)
    row = tl.load(chunks_ptr + q * 8 + 7)
    lane = tl.arange(0, LANES)

    x = tl.load(states_ptr + row * LANES + lane).to(tl.uint32, bitcast=True)
    # A stream's initial states must be >= 2^16 (unused lanes are set to 2^16 by the host).
    errors = tl.max((x < (1 << 16)).to(tl.int32), axis=0) * (begin == 0).to(tl.int32) * 1  # _ERR_STATE

    read = tl.load(reads_ptr + row)  # words consumed
    window = _load_words(data_ptr, words_at, read, num_words, lane)
    escapes = tl.zeros([LANES], tl.int32)
    r = begin // k
    rounds = (end + k - 1) // k
    p, active = _round(begin, end, k, r, lane)
    t = tl.load(indexes_ptr + first + p, mask=active, other=0)
    base, escape, offset = _table_row(info_ptr, t)
    p_1, active_1 = _round(begin, end, k, r + 1, lane)
    t_1 = tl.load(indexes_ptr + first + p_1, mask=active_1, other=0)
    while r < rounds:
        # In flight: round r + 2's table indexes, round r + 1's table row, the next words.
        p_2, active_2 = _round(begin, end, k, r + 2, lane)
        t_2 = tl.load(indexes_ptr + first + p_2, mask=active_2, other=0)
        base_1, escape_1, offset_1 = _table_row(info_ptr, t_1)
        slot = (x & 0xFFFF).to(tl.int32)
        bucket = tl.load(lut_ptr + (t << LUT_BITS) + (slot >> (16 - LUT_BITS)))
        lo = bucket & 0xFFFF
        hi = (bucket >> 16) & 0xFFFF
        # The last entry in [lo, hi] whose start is <= slot; the bucket spans 2^(16 - LUT_BITS)
        # slots, so hi - lo < 2^(16 - LUT_BITS) and this many halvings always suffice.
        for _step in tl.static_range(16 - LUT_BITS):
            mid = (lo + hi + 1) >> 1
            below = (tl.load(entries_ptr + base + mid) & 0xFFFF) <= slot
            lo = tl.where(below, mid, lo)
            hi = tl.where(below, hi, mid - 1)
        packed = tl.load(entries_ptr + base + lo)
        start = (packed & 0xFFFF).to(tl.uint32)
        freq = ((packed >> 16) & 0xFFFF).to(tl.uint32) + 1
        x_new = freq * (x >> 16) + slot.to(tl.uint32) - start
        # Refilling lanes take the next words in ascending lane order, from the prefetched window.
        refill = active & (x_new < (1 << 16))
        f = refill.to(tl.int32)
        word = tl.gather(window, tl.cumsum(f, axis=0) - f, 0)
        x = tl.where(refill, (x_new << 16) | word, tl.where(active, x_new, x))
        read += tl.sum(f, axis=0)
        window = _load_words(data_ptr, words_at, read, num_words, lane)
        is_escape = lo == escape
        tl.store(out_ptr + first + p, offset + lo, mask=active & ~is_escape)
        tl.store(escapes_ptr + first + p, is_escape.to(tl.int8), mask=active)
        escapes += (active & is_escape).to(tl.int32)
        p, active, t, base, escape, offset = p_1, active_1, t_1, base_1, escape_1, offset_1
        p_1, active_1, t_1 = p_2, active_2, t_2
        r += 1

    # A refill past the chunk's words read zeros; `read` then ends above num_words.
    errors |= (read > num_words).to(tl.int32) * 2  # _ERR_OUT_OF_WORDS
    done = (end == n).to(tl.int32)  # the chunk's last symbol was decoded: its end checks apply
    errors |= (read < num_words).to(tl.int32) * done * 4  # _ERR_UNREAD_WORDS
    errors |= tl.max((x != (1 << 16)).to(tl.int32), axis=0) * done * 8  # _ERR_FINAL_STATE
    tl.store(states_ptr + row * LANES + lane, x.to(tl.int32, bitcast=True))
    tl.store(reads_ptr + row, read)
    tl.store(status_ptr + row * 2, tl.load(status_ptr + row * 2) | errors)
    tl.store(status_ptr + row * 2 + 1, tl.load(status_ptr + row * 2 + 1) + tl.sum(escapes, axis=0))


def _interpreted() -> bool:
    """Whether the kernels were built for Triton's interpreter (TRITON_INTERPRET=1 at import)."""
    return not isinstance(_encode_kernel, triton.runtime.JITFunction)


# ---------------------------------------------------------------------------------------------
# Host helpers: LEB128, escapes, headers


def _put_leb128(out: bytearray, value: int) -> None:
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return
        out.append(byte | 0x80)


def _leb128_bytes(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimal LEB128 of each ``e`` (uint64, < 2^35): (all bytes in order, bytes per value)."""
    length = np.ones(len(e), dtype=np.int64)
    for k in range(1, 5):
        length += (e >> np.uint64(7 * k)) > 0
    shifts = np.arange(5, dtype=np.uint64) * np.uint64(7)
    groups = ((e[:, None] >> shifts[None, :]) & np.uint64(0x7F)).astype(np.uint8)
    more = np.arange(5)[None, :] < (length[:, None] - 1)
    groups |= more.astype(np.uint8) << 7
    return groups[np.arange(5)[None, :] < length[:, None]], length


def _parse_bypass(raw: bytes, q: int) -> np.ndarray:
    """The escape distances ``e`` in a chunk's bypass bytes, with every check of §1 and §3."""
    b = np.frombuffer(raw, dtype=np.uint8)
    if b[-1] & 0x80:
        raise BitstreamError(f"corrupt stream (a chunk ran out of bypass bytes, chunk {q})")
    ends = np.flatnonzero(b < 0x80)
    starts = np.concatenate([[0], ends[:-1] + 1])
    length = ends - starts + 1
    if length.max() > 5:
        raise BitstreamError(f"corrupt stream (escape value longer than 5 bytes, chunk {q})")
    if np.any((b[ends] == 0) & (length > 1)):
        raise BitstreamError(f"corrupt stream (non-minimal escape value, chunk {q})")
    position = np.arange(len(b)) - np.repeat(starts, length)
    terms = (b & 0x7F).astype(np.uint64) << (position.astype(np.uint64) * np.uint64(7))
    e = np.add.reduceat(terms, starts)
    if np.any(e >> np.uint64(34)):
        raise BitstreamError(f"corrupt stream (escape value out of range, chunk {q})")
    return e


def _read_header_leb128(data: bytes, pos: int, limit: int, what: str) -> tuple[int, int]:
    """A minimal header LEB128 of at most 5 bytes, at most ``limit`` (as the C++ core reads it)."""
    value = 0
    for i in range(5):
        if pos >= len(data):
            raise BitstreamError(f"truncated stream header ({what})")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise BitstreamError(f"corrupt stream header ({what} is not minimal)")
            if value > limit:
                raise BitstreamError(f"corrupt stream header ({what} too large)")
            return value, pos
    raise BitstreamError(f"corrupt stream header ({what} is not a valid LEB128)")


@dataclass
class _Layout:
    """A parsed stream header: the chunks' symbol counts, lanes, counts and data offsets."""

    chunk_bits: int
    lanes: int
    num_symbols: int
    symbols: np.ndarray  # int64 [Q]: n_q
    words: np.ndarray  # int64 [Q]: W_q
    bypass: np.ndarray  # int64 [Q]: B_q
    offsets: np.ndarray  # int64 [Q]: byte offset of each chunk's data

    def state_lanes(self) -> np.ndarray:
        return np.minimum(self.symbols, self.lanes)


def _chunk_symbols(n: int, chunk_bits: int) -> np.ndarray:
    size = 1 << chunk_bits
    q = -(-n // size)
    sym = np.full(q, size, dtype=np.int64)
    if q:
        sym[-1] = n - (q - 1) * size
    return sym


def _parse_header(data: bytes, table_hash: int) -> _Layout:
    """Parses and checks a stream's header and its length (docs/bitstream.md §3)."""
    size = len(data)
    if size < 8:
        raise BitstreamError(f"truncated stream ({size} bytes, the header alone needs 8)")
    if data[0] != FORMAT_VERSION:
        raise BitstreamError(
            f"unsupported stream version {data[0]} (this build reads version {FORMAT_VERSION})"
        )
    chunk_bits, lanes = data[1], data[2]
    if not MIN_CHUNK_BITS <= chunk_bits <= MAX_CHUNK_BITS:
        raise BitstreamError(f"corrupt stream header (chunk size 2^{chunk_bits})")
    if not 1 <= lanes <= MAX_LANES:
        raise BitstreamError(f"corrupt stream header ({lanes} lanes)")
    if int.from_bytes(data[3:7], "little") != table_hash:
        raise TableMismatchError("the stream was written with other CDF tables (table hash differs)")
    n, pos = _read_header_leb128(data, 7, MAX_SYMBOLS, "symbol count")
    num_chunks = -(-n // (1 << chunk_bits))
    if num_chunks * 6 > size:  # each chunk needs >= 2 count bytes and a 4-byte state
        raise BitstreamError("truncated stream (fewer bytes than its chunks need)")
    symbols = _chunk_symbols(n, chunk_bits)
    words = np.empty(num_chunks, dtype=np.int64)
    bypass = np.empty(num_chunks, dtype=np.int64)
    for q, nq in enumerate(symbols.tolist()):
        words[q], pos = _read_header_leb128(data, pos, nq, "word count")
        bypass[q], pos = _read_header_leb128(data, pos, 5 * nq, "bypass size")
    sizes = 4 * np.minimum(symbols, lanes) + 2 * words + bypass + 4 * (bypass > 0)
    ends = pos + np.cumsum(sizes)
    total = int(ends[-1]) if num_chunks else pos
    if total > size:
        raise BitstreamError(f"truncated stream ({size} bytes, header says {total})")
    if total < size:
        raise BitstreamError(f"corrupt stream ({size - total} trailing bytes)")
    return _Layout(chunk_bits, lanes, n, symbols, words, bypass, ends - sizes)


# ---------------------------------------------------------------------------------------------
# Public API


def _as_symbols(x, name: str, device: torch.device) -> torch.Tensor:
    """A flat int32 tensor on ``device`` (no copy when ``x`` already is one)."""
    t = torch.as_tensor(x, device=device).reshape(-1)
    if t.dtype != torch.int32:
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"{name} must be integers, got dtype {t.dtype}")
        if t.numel() and (t.min() < INT32_MIN or t.max() > INT32_MAX):
            raise ValueError(f"{name} must fit in int32")
        t = t.to(torch.int32)
    return t.contiguous()


def _on(device: torch.device):
    """Makes ``device`` current for a kernel launch (Triton launches on the current CUDA device)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _check_indexes(indexes: torch.Tensor, tables: GpuTableSet) -> None:
    if indexes.numel():
        lo, hi = torch.stack(torch.aminmax(indexes)).tolist()
        if lo < 0 or hi >= tables.num_tables:
            bad = lo if lo < 0 else hi
            raise ValueError(f"table index {bad} out of range [0, {tables.num_tables})")


def encode(
    values, indexes, tables: GpuTableSet, *, chunk_bits: int = DEFAULT_CHUNK_BITS, lanes: int = DEFAULT_LANES
) -> bytes:
    """Encodes ``values[i]`` with table ``indexes[i]`` into one stream (same bytes as the C++ core)."""
    return encode_batch([(values, indexes)], tables, chunk_bits=chunk_bits, lanes=lanes)[0]


def encode_batch(
    items: Sequence[tuple[torch.Tensor, torch.Tensor]],
    tables: GpuTableSet,
    *,
    chunk_bits: int = DEFAULT_CHUNK_BITS,
    lanes: int = DEFAULT_LANES,
) -> list[bytes]:
    """Encodes each ``(values, indexes)`` pair into its own stream, with one kernel for all chunks."""
    if not MIN_CHUNK_BITS <= chunk_bits <= MAX_CHUNK_BITS:
        raise ValueError(f"chunk_bits must be in [5, 30], got {chunk_bits}")
    if not 1 <= lanes <= MAX_LANES:
        raise ValueError(f"lanes must be in [1, 32], got {lanes}")
    device = tables.device
    values, indexes, counts = [], [], []
    for v, k in items:
        v, k = _as_symbols(v, "values", device), _as_symbols(k, "indexes", device)
        if v.numel() != k.numel():
            raise ValueError(f"values and indexes differ in length ({v.numel()} != {k.numel()})")
        if v.numel() > MAX_SYMBOLS:
            raise ValueError("at most 2^32 - 1 symbols per stream")
        values.append(v)
        indexes.append(k)
        counts.append(v.numel())
    if not counts:
        return []
    values, indexes = _cat(values), _cat(indexes)
    _check_indexes(indexes, tables)

    # Chunks of all streams, back to back in symbol order.
    symbols = [_chunk_symbols(n, chunk_bits) for n in counts]
    chunk_symbols = np.concatenate(symbols)
    num_chunks = len(chunk_symbols)
    first = np.cumsum(chunk_symbols) - chunk_symbols
    state_lanes = np.minimum(chunk_symbols, lanes)
    word_counts = bypass_sizes = np.zeros(num_chunks, dtype=np.int64)
    word_bytes = state_bytes = bypass_raw = memoryview(b"")
    if num_chunks:
        words = torch.empty(values.numel(), dtype=torch.int16, device=device)
        flags = torch.empty(values.numel(), dtype=torch.int8, device=device)
        states = torch.empty((num_chunks, MAX_LANES), dtype=torch.int32, device=device)
        chunk_counts = torch.empty((num_chunks, 2), dtype=torch.int32, device=device)
        chunks = np.stack([first, chunk_symbols, np.full(num_chunks, lanes)], axis=1)
        with _on(device):
            _encode_kernel[(num_chunks,)](
                values, indexes, torch.from_numpy(chunks).to(device),
                tables.info, tables.entries, words, flags, states, chunk_counts,
                LANES=MAX_LANES, num_warps=1,
            )  # fmt: skip
        chunk_counts = chunk_counts.cpu().numpy().astype(np.int64)
        word_counts = chunk_counts[:, 0]
        # Words: the last W_q scratch positions of each chunk, gathered on the device.
        word_starts = np.cumsum(word_counts) - word_counts
        shift = torch.from_numpy(first + chunk_symbols - word_counts - word_starts).to(device)
        total_words = int(word_counts.sum())
        where = torch.arange(total_words, device=device) + torch.repeat_interleave(
            shift, torch.from_numpy(word_counts).to(device), output_size=total_words
        )
        word_bytes = _byte_view(words[where])
        lane_mask = torch.arange(MAX_LANES, device=device) < torch.from_numpy(state_lanes).to(device)[:, None]
        state_bytes = _byte_view(states[lane_mask])
        if chunk_counts[:, 1].any():
            bypass_raw, bypass_sizes = _bypass_bytes(values, indexes, flags, tables, first)

    # Each stream: its header, then views of its chunks' pieces, joined with one copy.
    streams = []
    q = w = st = b = 0
    for i, n in enumerate(counts):
        header = bytearray([FORMAT_VERSION, chunk_bits, lanes])
        header += tables.hash.to_bytes(4, "little")
        _put_leb128(header, n)
        body = [header]  # the header grows below, by each chunk's counts
        for _ in range(len(symbols[i])):
            _put_leb128(header, int(word_counts[q]))
            _put_leb128(header, int(bypass_sizes[q]))
            st_end, w_end, b_end = (
                st + 4 * int(state_lanes[q]),
                w + 2 * int(word_counts[q]),
                b + int(bypass_sizes[q]),
            )
            body += [state_bytes[st:st_end], word_bytes[w:w_end]]
            if b_end > b:
                body += [bypass_raw[b:b_end], zlib.crc32(bypass_raw[b:b_end]).to_bytes(4, "little")]
            q, st, w, b = q + 1, st_end, w_end, b_end
        streams.append(b"".join(body))
    return streams


def _byte_view(t: torch.Tensor) -> memoryview:
    """The bytes of a device tensor, on the host (little-endian, as the format)."""
    return memoryview(t.cpu().numpy()).cast("B")


def _bypass_bytes(
    values: torch.Tensor, indexes: torch.Tensor, flags: torch.Tensor, tables: GpuTableSet, first: np.ndarray
) -> tuple[memoryview, np.ndarray]:
    """The bypass bytes of the escapes the encoder flagged: (all chunks' bytes in order, B_q)."""
    where = torch.nonzero(flags).reshape(-1)
    v = values[where].cpu().numpy().astype(np.int64)
    t = indexes[where].cpu().numpy()
    where = where.cpu().numpy()
    s = v - tables.offsets[t]
    escape = tables.sizes[t] - 1
    e = np.where(s < 0, -2 * s - 1, 2 * (s - escape)).astype(np.uint64)
    raw, lengths = _leb128_bytes(e)
    chunk_of = np.searchsorted(first, where, side="right") - 1
    return memoryview(raw), np.bincount(chunk_of, weights=lengths, minlength=len(first)).astype(np.int64)


def decode(data: bytes, indexes, tables: GpuTableSet) -> torch.Tensor:
    """Decodes one stream written by :func:`encode` or the C++ core: int32 values on the tables' device."""
    return decode_batch([data], [indexes], tables)[0]


def decode_batch(streams: Sequence[bytes], indexes: Sequence, tables: GpuTableSet) -> list[torch.Tensor]:
    """Decodes several streams with one kernel for all their chunks.

    Raises :class:`~neurocodec.errors.BitstreamError` (:class:`~neurocodec.errors.TableMismatchError`
    for other tables) on any failed check of docs/bitstream.md §3, before returning anything;
    with several streams, the message starts with the failing stream's position.
    """
    if len(streams) != len(indexes):
        raise ValueError(f"{len(streams)} streams but {len(indexes)} index tensors")
    if not streams:
        return []
    device = tables.device
    blobs, layouts, index_list, chunk_rows, initial_states, escape_values = [], [], [], [], [], []
    chunk_base = np.zeros(len(streams), dtype=np.int64)  # global number of each stream's chunk 0
    at = first = num_chunks = 0
    for i, (data, k) in enumerate(zip(streams, indexes, strict=True)):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        k = _as_symbols(k, "indexes", device)
        try:
            layout = _parse_header(data, tables.hash)
            if layout.num_symbols != k.numel():
                raise BitstreamError(
                    f"the stream holds {layout.num_symbols} symbols but {k.numel()} table indexes were given"
                )
            escape_values += [(num_chunks + q, e) for q, e in _read_bypass(data, layout)]
        except BitstreamError as err:
            if len(streams) == 1:
                raise
            raise type(err)(f"stream {i}: {err}") from None
        chunk_rows.append(_chunk_rows(layout, at, first, num_chunks))
        initial_states.append(_initial_states(data, layout))
        blobs.append(data)
        layouts.append(layout)
        index_list.append(k)
        chunk_base[i] = num_chunks
        at += len(data)
        first += layout.num_symbols
        num_chunks += len(layout.symbols)

    def error(q: int, what: str) -> BitstreamError:
        """The error for (global) chunk ``q``."""
        i = int(np.searchsorted(chunk_base, q, side="right")) - 1
        prefix = f"stream {i}: " if len(streams) > 1 else ""
        return BitstreamError(f"{prefix}corrupt stream ({what}, chunk {q - chunk_base[i]})")

    all_indexes = _cat(index_list)
    _check_indexes(all_indexes, tables)
    out = torch.empty(first, dtype=torch.int32, device=device)
    if num_chunks:
        blob = torch.empty(at, dtype=torch.uint8, pin_memory=device.type == "cuda")
        np.concatenate([np.frombuffer(d, dtype=np.uint8) for d in blobs], out=blob.numpy())
        blob = blob.to(device, non_blocking=True)
        flags = torch.empty(first, dtype=torch.int8, device=device)
        states = torch.from_numpy(np.concatenate(initial_states)).to(device)
        reads = torch.zeros(num_chunks, dtype=torch.int32, device=device)
        status = torch.zeros((num_chunks, 2), dtype=torch.int32, device=device)
        with _on(device):
            _decode_kernel[(num_chunks,)](
                blob, torch.from_numpy(np.concatenate(chunk_rows)).to(device), all_indexes,
                tables.info, tables.entries, tables.lut, out, flags, states, reads, status,
                LANES=MAX_LANES, LUT_BITS=tables.lut_bits, num_warps=1,
            )  # fmt: skip
        status = status.cpu().numpy()
        bad = np.flatnonzero(status[:, 0])
        if len(bad):
            errors = int(status[bad[0], 0])
            raise error(int(bad[0]), _ERROR_TEXT[errors & -errors])
        _fill_escapes(out, flags, all_indexes, status[:, 1], escape_values, error, tables)
    result, a = [], 0
    for layout in layouts:
        result.append(out[a : a + layout.num_symbols])
        a += layout.num_symbols
    return result


def _chunk_rows(layout: _Layout, at: int, first: int, row: int) -> np.ndarray:
    """The decode kernel's rows for a whole stream: its chunks (from state row ``row`` on) decoded
    entirely, the stream's bytes at ``at`` in the data and its symbols at ``first`` in the output."""
    q = len(layout.symbols)
    return np.stack(
        [
            first + np.cumsum(layout.symbols) - layout.symbols,
            layout.symbols,
            np.full(q, layout.lanes),
            at + layout.offsets + 4 * layout.state_lanes(),  # the words follow the lane states
            layout.words,
            np.zeros(q, dtype=np.int64),
            layout.symbols,
            row + np.arange(q),
        ],
        axis=1,
    ).astype(np.int64)


def _initial_states(data: bytes, layout: _Layout) -> np.ndarray:
    """Each chunk's initial lane states, int32 [Q, MAX_LANES] (u32 bit patterns; unused lanes 2^16)."""
    states = np.full((len(layout.symbols), MAX_LANES), 1 << 16, dtype=np.uint32)
    raw = np.frombuffer(data, dtype=np.uint8)
    for q, (at, m) in enumerate(zip(layout.offsets.tolist(), layout.state_lanes().tolist(), strict=True)):
        states[q, :m] = raw[at : at + 4 * m].view("<u4")
    return states.view(np.int32)


class StreamEncoder:
    """The GPU twin of :class:`neurocodec.entropy.coder.StreamEncoder`: ``push`` device tensors step
    by step, then ``finish`` for the bytes of one :func:`encode` call over everything pushed.

    rANS codes in reverse, so the symbols stay on the device until ``finish``; nothing crosses
    to the host before it.
    """

    def __init__(
        self, tables: GpuTableSet, *, chunk_bits: int = DEFAULT_CHUNK_BITS, lanes: int = DEFAULT_LANES
    ):
        self.tables, self.chunk_bits, self.lanes = tables, chunk_bits, lanes
        self._values: list[torch.Tensor] = []
        self._indexes: list[torch.Tensor] = []
        self._finished = False

    def push(self, values, indexes) -> None:
        if self._finished:
            raise ValueError("this encoder is finished")
        v = _as_symbols(values, "values", self.tables.device)
        k = _as_symbols(indexes, "indexes", self.tables.device)
        if v.numel() != k.numel():
            raise ValueError(f"values and indexes differ in length ({v.numel()} != {k.numel()})")
        self._values.append(v)
        self._indexes.append(k)

    @property
    def num_symbols(self) -> int:
        return sum(v.numel() for v in self._values)

    def finish(self) -> bytes:
        if self._finished:
            raise ValueError("this encoder is finished")
        self._finished = True
        empty = torch.empty(0, dtype=torch.int32, device=self.tables.device)
        values, indexes = _cat(self._values or [empty]), _cat(self._indexes or [empty])
        self._values, self._indexes = [], []
        return encode(values, indexes, self.tables, chunk_bits=self.chunk_bits, lanes=self.lanes)


class StreamDecoder:
    """The GPU twin of :class:`neurocodec.entropy.coder.StreamDecoder`: ``pull(indexes)`` decodes the
    next ``len(indexes)`` values on the device, from lane states kept on the device between pulls.

    The bytes are uploaded once; a pull launches one kernel over the chunks it touches and fills
    its escapes from the (host-parsed, CRC-checked, uploaded) bypass values with device ops, so a
    multi-step decode never waits for the host. Hence the checks that need a value on the host
    (a corrupt word, final states, escape counts, table indexes out of range) are collected on the
    device and raised by :meth:`finish`, which a caller must call before trusting the values.
    """

    def __init__(self, data: bytes, tables: GpuTableSet):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        self.tables = tables
        device = tables.device
        self._layout = layout = _parse_header(data, tables.hash)
        escape_values = _read_bypass(data, layout)
        self._available = np.zeros(len(layout.symbols), dtype=np.int64)
        for q, e in escape_values:
            self._available[q] = len(e)
        parts = [e.astype(np.int64) for _, e in escape_values]
        distances = np.concatenate(parts) if parts else np.zeros(1, np.int64)  # never empty: gathered from
        self._distances = torch.from_numpy(distances).to(device)
        self._num_escapes = int(self._available.sum())
        self._sizes = torch.from_numpy(tables.sizes).to(device)
        self._offsets = torch.from_numpy(tables.offsets).to(device)
        self._rows = _chunk_rows(layout, 0, 0, 0)  # column 0: each chunk's first position in the stream
        self._blob = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy()).to(device)
        self._states = torch.from_numpy(_initial_states(data, layout)).to(device)
        self._reads = torch.zeros(len(layout.symbols), dtype=torch.int32, device=device)
        self._status = torch.zeros((len(layout.symbols), 2), dtype=torch.int32, device=device)
        self._escapes_seen = torch.zeros((), dtype=torch.int64, device=device)
        self._bad_escape = torch.zeros((), dtype=torch.bool, device=device)
        self._bad_index = torch.zeros((), dtype=torch.bool, device=device)
        self._position = 0

    @property
    def num_symbols(self) -> int:
        return self._layout.num_symbols

    @property
    def position(self) -> int:
        return self._position

    def pull(self, indexes) -> torch.Tensor:
        """The next ``len(indexes)`` values (int32, on the device)."""
        device = self.tables.device
        k = _as_symbols(indexes, "indexes", device)
        n, at = k.numel(), self._position
        if at + n > self.num_symbols:
            raise BitstreamError(
                f"asked for {n} symbols but the stream has only {self.num_symbols - at} left"
            )
        out = torch.empty(n, dtype=torch.int32, device=device)
        if n == 0:
            return out
        bad = (k < 0) | (k >= self.tables.num_tables)
        self._bad_index |= bad.any()
        k = torch.where(bad, 0, k)  # out-of-range indexes must not reach the kernel; finish() raises
        shift = self._layout.chunk_bits
        rows = self._rows[at >> shift : ((at + n - 1) >> shift) + 1].copy()
        chunk_first = rows[:, 0].copy()
        rows[:, 0] = chunk_first - at  # chunk positions -> positions in this pull's out and indexes
        rows[:, 5] = np.maximum(at - chunk_first, 0)
        rows[:, 6] = np.minimum(at + n - chunk_first, rows[:, 1])
        flags = torch.empty(n, dtype=torch.int8, device=device)
        with _on(device):
            _decode_kernel[(len(rows),)](
                self._blob, torch.from_numpy(rows).to(device), k,
                self.tables.info, self.tables.entries, self.tables.lut, out, flags,
                self._states, self._reads, self._status,
                LANES=MAX_LANES, LUT_BITS=self.tables.lut_bits, num_warps=1,
            )  # fmt: skip
        self._fill_escapes(out, flags.bool(), k)
        self._position += n
        return out

    def _fill_escapes(self, out: torch.Tensor, escaped: torch.Tensor, indexes: torch.Tensor) -> None:
        """Escaped values, in symbol order, from the bypass values, with device ops only."""
        rank = self._escapes_seen + torch.cumsum(escaped, 0) - 1
        self._escapes_seen += escaped.sum()
        self._bad_escape |= (escaped & (rank >= self._num_escapes)).any()
        e = self._distances[rank.clamp(0, max(self._num_escapes - 1, 0))]
        t = indexes.long()
        escape = self._sizes[t] - 1
        s = torch.where((e & 1) == 1, -((e + 1) >> 1), escape + (e >> 1))
        v = self._offsets[t] + s
        self._bad_escape |= (escaped & ((v < INT32_MIN) | (v > INT32_MAX))).any()
        out.copy_(torch.where(escaped, v.clamp(INT32_MIN, INT32_MAX).to(torch.int32), out))

    def finish(self) -> None:
        """Raises :class:`~neurocodec.errors.BitstreamError` unless the whole stream was read and every
        check passed (this is where a pull's deferred checks surface)."""
        if self._position != self.num_symbols:
            raise BitstreamError(f"stream finished after {self._position} of {self.num_symbols} symbols")
        if bool(self._bad_index):
            raise ValueError(f"a table index was out of range [0, {self.tables.num_tables})")
        status = self._status.cpu().numpy()
        bad = np.flatnonzero(status[:, 0])
        if len(bad):
            errors = int(status[bad[0], 0])
            raise BitstreamError(f"corrupt stream ({_ERROR_TEXT[errors & -errors]}, chunk {bad[0]})")
        mismatch = np.flatnonzero(status[:, 1] != self._available)
        if len(mismatch):
            q = int(mismatch[0])
            what = (
                "ran out of bypass bytes" if status[q, 1] > self._available[q] else "left unread bypass bytes"
            )
            raise BitstreamError(f"corrupt stream (a chunk {what}, chunk {q})")
        if bool(self._bad_escape):
            raise BitstreamError("corrupt stream (escaped value exceeds int32)")


def _read_bypass(data: bytes, layout: _Layout) -> list[tuple[int, np.ndarray]]:
    """Each chunk's bypass bytes, CRC-checked and parsed: [(chunk, escape distances)]."""
    found = []
    bypass_at = layout.offsets + 4 * layout.state_lanes() + 2 * layout.words
    for q in np.flatnonzero(layout.bypass).tolist():
        a, b = int(bypass_at[q]), int(bypass_at[q] + layout.bypass[q])
        if zlib.crc32(data[a:b]) != int.from_bytes(data[b : b + 4], "little"):
            raise BitstreamError(f"corrupt stream (escape values fail their CRC, chunk {q})")
        found.append((q, _parse_bypass(data[a:b], q)))
    return found


def _fill_escapes(
    out: torch.Tensor,
    flags: torch.Tensor,
    indexes: torch.Tensor,
    escapes_per_chunk: np.ndarray,
    escape_values: list[tuple[int, np.ndarray]],
    error: Callable[[int, str], BitstreamError],
    tables: GpuTableSet,
) -> None:
    """Writes the escaped values (from the chunks' bypass bytes) where the kernel flagged escapes."""
    available = np.zeros(len(escapes_per_chunk), dtype=np.int64)
    for q, e in escape_values:
        available[q] = len(e)
    short = np.flatnonzero(escapes_per_chunk > available)
    if len(short):
        raise error(int(short[0]), "a chunk ran out of bypass bytes")
    extra = np.flatnonzero(escapes_per_chunk < available)
    if len(extra):
        raise error(int(extra[0]), "unread bypass bytes at the end of a chunk")
    if not escape_values:
        return
    positions = torch.nonzero(flags).reshape(-1)  # in symbol order, i.e. chunk by chunk
    t = indexes[positions].cpu().numpy()
    e = np.concatenate([values for _, values in escape_values]).astype(np.int64)
    escape = tables.sizes[t] - 1
    s = np.where(e & 1, -((e + 1) >> 1), escape + (e >> 1))
    v = tables.offsets[t] + s
    bad = np.flatnonzero((v < INT32_MIN) | (v > INT32_MAX))
    if len(bad):
        chunk_of = np.concatenate([np.full(len(values), q) for q, values in escape_values])
        raise error(int(chunk_of[bad[0]]), "escaped value exceeds int32")
    out[positions] = torch.from_numpy(v.astype(np.int32)).to(out.device)
