"""Plain-torch reference implementation of the rANS stream: the readable specification in code.

This module implements docs/bitstream.md §1–§4 literally, and is the oracle the C++ core
(``entropy/native``) and the GPU kernels (``entropy/gpu.py``) are checked against byte for byte.
It is written for clarity, not speed, but it is vectorized the way a GPU warp works: the coder
processes one *round* at a time (up to ``K`` symbols, one per lane) with int64 tensor operations
over all lanes of all chunks at once. The lanes that move a word in a round are found with a
mask, and each lane's place in the word array is the number of such lanes below it -- an
exclusive cumulative sum over the mask, which is what a warp computes with
``popc(ballot(mask) & lanes_below)``.

Summary of the format (the spec is docs/bitstream.md; where this summary and the spec differ,
the spec wins):

* Tables: table ``t`` has a 16-bit CDF ``cdf_t[0..n_t]``; entry ``s`` (``0 <= s < n_t - 1``)
  stands for the value ``offset_t + s``, the last entry ``E_t = n_t - 1`` is the escape. An
  escaped value is written to the chunk's *bypass bytes* as LEB128 of the zig-zag distance
  ``e`` to the table's range.
* Coder: u32 state ``x`` in ``[2^16, 2^32)``, u16 words; one step moves at most one word.
* Symbol ``i`` lies in chunk ``q = i >> c``, position ``p = i - q * 2^c``, lane ``p % K``,
  round ``p // K``. The decoder steps ``p = 0, 1, 2, ...``; so the words of a chunk are stored
  round by round, and within a round in ascending lane order. The encoder runs the same steps
  backwards (``p`` descending) starting every lane at ``x = 2^16`` and pushes words to the
  *front* of the chunk's word array. Bypass bytes, by contrast, are stored in plain symbol
  order (``p`` ascending): the decoder reads an escape's value right after its step.
* Stream: header (version, ``c``, ``K``, table hash, LEB128 ``n``), then the LEB128 counts
  ``W_q``, ``B_q`` of every chunk, then every chunk's data: the ``m_q = min(K, n_q)`` lane
  states (u32), ``W_q`` words (u16), ``B_q`` bypass bytes and, when ``B_q > 0``, a CRC-32 of
  them. All chunks' counts come first, then all chunks' data. All integers little-endian.
* Every LEB128 of the stream (``n``, ``W_q``, ``B_q``, bypass values) is minimal and at most 5
  bytes long, so decoding is canonical: a stream the decoder accepts is exactly ``encode`` of
  what it decoded.
* Table indices outside ``[0, T)`` are the caller's mistake: ValueError, not BitstreamError.

Integrity: the bypass CRC covers escape values; the final-state check finds a corrupted lane
state or word with high probability, not certainty (a handful of single-byte flips in 10^5 can
yield another valid stream). The file container's CRC-32 makes detection certain for files.

Public API: :func:`table_hash`, :func:`encode`, :func:`decode`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from neurocodec.errors import BitstreamError, TableMismatchError

__all__ = ["decode", "encode", "table_hash"]

FORMAT_VERSION = 1
PRECISION = 16
M = 1 << PRECISION  # CDF total: cdf_t[n_t] == M
L = 1 << 16  # lower bound of the state: x in [L, 2^32)
STATE_END = 1 << 32
WORD_BITS = 16
WORD_MASK = (1 << WORD_BITS) - 1
MIN_CHUNK_BITS, MAX_CHUNK_BITS = 5, 30
MAX_LANES = 32
MAX_ENTRIES = 1 << 16  # n_t <= 65536
ESCAPE_LIMIT = 1 << 34  # e < 2^34
LEB128_MAX_BYTES = 5
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
# Stride that makes all tables' CDFs one sorted array for a single searchsorted (see _Tables).
_TABLE_STRIDE = 1 << 17


# ----------------------------------------------------------------------------------------------
# Argument conversion and table validation
# ----------------------------------------------------------------------------------------------


def _as_int64(x, name: str) -> torch.Tensor:
    """A 1-D int64 CPU tensor from a torch tensor, numpy array or sequence of integers."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
            raise ValueError(f"{name} must have an integer dtype, got {x.dtype}")
        arr = x.numpy()
    else:
        arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size == 0:
        return torch.zeros(0, dtype=torch.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers (within int64), got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds a value outside int64")
    return torch.from_numpy(arr.astype(np.int64))


def _check_int32(x: torch.Tensor, name: str) -> None:
    if x.numel() and (int(x.min()) < INT32_MIN or int(x.max()) > INT32_MAX):
        raise ValueError(f"{name} must fit in int32, got range [{int(x.min())}, {int(x.max())}]")


@dataclass(frozen=True)
class _Tables:
    """A validated table set, flattened for vectorized lookups.

    ``cdf`` is the concatenation of every table's full CDF ``cdf_t[0..n_t]``; table ``t`` starts
    at ``base[t]``, so entry ``s`` of table ``t`` has start ``cdf[base[t] + s]`` and frequency
    ``cdf[base[t] + s + 1] - cdf[base[t] + s]``. ``keys = cdf + t * 2^17`` is strictly
    increasing over all tables at once, which lets one ``searchsorted`` find the entry of a slot
    in each lane's own table.
    """

    cdf: torch.Tensor  # int64, sum(n_t + 1)
    keys: torch.Tensor  # int64, same length as cdf
    base: torch.Tensor  # int64, (T,)
    escape: torch.Tensor  # int64, (T,): E_t = n_t - 1
    offsets: torch.Tensor  # int64, (T,)
    hash: int

    @property
    def count(self) -> int:
        return int(self.base.numel())


def _prepare_tables(cdfs, offsets) -> _Tables:
    """Validate a table set (§1) and flatten it; raise ValueError on a malformed table."""
    if isinstance(cdfs, (str, bytes)) or not isinstance(cdfs, (Sequence, torch.Tensor, np.ndarray)):
        raise ValueError("cdfs must be a sequence of 1-D integer CDFs")
    tables = [_as_int64(cdf, f"cdfs[{t}]") for t, cdf in enumerate(cdfs)]
    offs = _as_int64(offsets, "offsets")
    if offs.numel() != len(tables):
        raise ValueError(f"got {len(tables)} CDF tables but {offs.numel()} offsets")
    _check_int32(offs, "offsets")

    # Canonical serialization for the hash: u32 T, then per table u32 n_t, i32 offset_t,
    # u16 cdf_t[1 .. n_t-1] (cdf_t[0] = 0 and cdf_t[n_t] = 65536 are implied).
    crc = zlib.crc32(struct.pack("<I", len(tables)))
    for t, cdf in enumerate(tables):
        n_t = cdf.numel() - 1
        if not 2 <= n_t <= MAX_ENTRIES:
            raise ValueError(f"table {t}: a CDF needs n_t + 1 entries with 2 <= n_t <= 65536, got {n_t + 1}")
        if int(cdf[0]) != 0 or int(cdf[-1]) != M:
            raise ValueError(
                f"table {t}: the CDF must start at 0 and end at {M}, got {int(cdf[0])} … {int(cdf[-1])}"
            )
        step = cdf[1:] - cdf[:-1]
        if bool((step <= 0).any()):
            s = int(torch.nonzero(step <= 0)[0])
            raise ValueError(
                f"table {t}: the CDF must be strictly increasing (entry {s} has frequency {int(step[s])})"
            )
        crc = zlib.crc32(struct.pack("<Ii", n_t, int(offs[t])), crc)
        crc = zlib.crc32(cdf[1:n_t].numpy().astype("<u2").tobytes(), crc)

    sizes = torch.tensor([cdf.numel() for cdf in tables], dtype=torch.int64)
    base = torch.cumsum(sizes, 0) - sizes
    flat = torch.cat(tables) if tables else torch.zeros(0, dtype=torch.int64)
    table_of = torch.repeat_interleave(torch.arange(len(tables), dtype=torch.int64), sizes)
    return _Tables(
        cdf=flat,
        keys=flat + table_of * _TABLE_STRIDE,
        base=base,
        escape=sizes - 2,
        offsets=offs,
        hash=crc & 0xFFFFFFFF,
    )


def table_hash(cdfs, offsets) -> int:
    """CRC-32 (zlib) of the canonical serialization of a table set (§1)."""
    return _prepare_tables(cdfs, offsets).hash


# ----------------------------------------------------------------------------------------------
# Small helpers: LEB128, zig-zag escapes, the (chunk, round, lane) grid
# ----------------------------------------------------------------------------------------------


def _leb128(value: int) -> bytes:
    """Minimal unsigned LEB128: 7 bits per byte, low bits first, high bit = more bytes follow."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_leb128(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """Read one minimal LEB128 of at most 5 bytes from ``data[pos:end]``; return (value, new pos).

    Every LEB128 of the stream is held to the same rules (see the module docstring): it must
    end before ``end``, take at most 5 bytes, and be minimal (no trailing 0x00 byte except as
    the single byte of 0).
    """
    value = 0
    for i in range(LEB128_MAX_BYTES):
        if pos + i >= end:
            raise BitstreamError(f"truncated stream: {what} runs past its end")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise BitstreamError(f"corrupt stream: {what} is a non-minimal LEB128")
            return value, pos + i + 1
    raise BitstreamError(f"corrupt stream: {what} is a LEB128 longer than {LEB128_MAX_BYTES} bytes")


def _escape_distance(s: int, escape: int) -> int:
    """Zig-zag distance ``e`` of an out-of-range ``s = v - offset`` to the range ``[0, E_t)``."""
    if s < 0:
        return 2 * (-s) - 1  # s = -1 -> 1, s = -2 -> 3, ...
    return 2 * (s - escape)  # s = E_t -> 0, E_t + 1 -> 2, ...


def _escape_offset(e: int, escape: int) -> int:
    """Inverse of :func:`_escape_distance`: odd ``e`` lie below the range, even ``e`` above it."""
    if e & 1:
        return -((e + 1) >> 1)
    return escape + (e >> 1)


@dataclass(frozen=True)
class _Grid:
    """Symbols laid out as (chunk q, round r, lane l): symbol ``q*C + r*K + l``.

    ``index`` holds the symbol index of each cell (0 where inactive); ``active`` marks the
    cells that hold a symbol (``p = r*K + l < C`` and ``i < n``). ``R`` is the number of rounds
    of the longest chunk.
    """

    n: int
    chunk_bits: int
    lanes: int
    index: torch.Tensor  # int64 (Q, R, K)
    active: torch.Tensor  # bool (Q, R, K)

    @staticmethod
    def build(n: int, chunk_bits: int, lanes: int) -> _Grid:
        size = 1 << chunk_bits
        chunks = -(-n // size)
        rounds = -(-min(n, size) // lanes)
        q = torch.arange(chunks, dtype=torch.int64)[:, None, None]
        r = torch.arange(rounds, dtype=torch.int64)[None, :, None]
        lane = torch.arange(lanes, dtype=torch.int64)[None, None, :]
        p = r * lanes + lane
        index = q * size + p
        active = (p < size) & (index < n)
        return _Grid(n, chunk_bits, lanes, torch.where(active, index, 0), active)

    @property
    def chunks(self) -> int:
        return self.index.shape[0]

    @property
    def rounds(self) -> int:
        return self.index.shape[1]

    def symbols_in(self, q: int) -> int:
        """``n_q``: symbols in chunk ``q``."""
        size = 1 << self.chunk_bits
        return min(size, self.n - q * size)

    def lanes_in(self, q: int) -> int:
        """``m_q = min(K, n_q)``: lanes of chunk ``q`` that get a symbol (and store a state)."""
        return min(self.lanes, self.symbols_in(q))


def _exclusive_rank(mask: torch.Tensor) -> torch.Tensor:
    """Per lane, how many lanes below it (same chunk) have ``mask`` set: popc(ballot & below)."""
    m = mask.to(torch.int64)
    return torch.cumsum(m, dim=-1) - m


# ----------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------


def _check_option(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {int(value)}")
    return int(value)


def encode(values, indexes, cdfs, offsets, *, chunk_bits: int = 18, lanes: int = 32) -> bytes:
    """Encode int32 ``values`` with the tables selected by ``indexes`` into one rANS stream (§3).

    ``cdfs[t]`` is table ``t``'s CDF (``n_t + 1`` integers, 0 … 65536, strictly increasing, last
    entry the escape); ``offsets[t]`` its int32 offset. Chunks hold ``2**chunk_bits`` symbols,
    coded by ``lanes`` interleaved rANS states. Raises ValueError on invalid arguments; any
    int32 value can be coded with any table.
    """
    tables = _prepare_tables(cdfs, offsets)
    chunk_bits = _check_option(chunk_bits, "chunk_bits", MIN_CHUNK_BITS, MAX_CHUNK_BITS)
    lanes = _check_option(lanes, "lanes", 1, MAX_LANES)
    vals = _as_int64(values, "values")
    idx = _as_int64(indexes, "indexes")
    if vals.numel() != idx.numel():
        raise ValueError(f"values and indexes differ in length: {vals.numel()} != {idx.numel()}")
    _check_int32(vals, "values")
    n = vals.numel()
    if n and (int(idx.min()) < 0 or int(idx.max()) >= tables.count):
        raise ValueError(
            f"indexes must be in [0, {tables.count}), got range [{int(idx.min())}, {int(idx.max())}]"
        )
    if n >= 1 << 32:
        raise ValueError(f"a stream holds fewer than 2^32 symbols, got {n}")

    header = bytes([FORMAT_VERSION, chunk_bits, lanes]) + struct.pack("<I", tables.hash) + _leb128(n)
    if n == 0:
        return header

    # §1, coding a value: s = v - offset (64-bit); in range -> entry s, else the escape entry.
    s = vals - tables.offsets[idx]
    esc = tables.escape[idx]
    is_escape = (s < 0) | (s >= esc)
    entry = torch.where(is_escape, esc, s)
    at = tables.base[idx] + entry
    start = tables.cdf[at]
    freq = tables.cdf[at + 1] - start

    grid = _Grid.build(n, chunk_bits, lanes)
    chunks, rounds = grid.chunks, grid.rounds

    # §2: every lane starts at x = L; rounds run backwards, lanes "descending" within a round.
    # Words are pushed to the front of each chunk's word buffer: the buffer is filled from its
    # end, `front[q]` being the index of the first word written so far.
    x = torch.full((chunks, lanes), L, dtype=torch.int64)
    capacity = rounds * lanes  # a chunk pushes at most one word per symbol
    words = torch.zeros((chunks, capacity), dtype=torch.int64)
    front = torch.full((chunks,), capacity, dtype=torch.int64)
    chunk_of = torch.arange(chunks, dtype=torch.int64)[:, None].expand(chunks, lanes)
    for r in reversed(range(rounds)):
        active = grid.active[:, r]
        sym = grid.index[:, r]
        f = torch.where(active, freq[sym], 1)
        c = torch.where(active, start[sym], 0)

        # Renormalize: a lane whose state would leave [L, 2^32) after the step pushes its low
        # word first. The decoder reads this round's words in ascending lane order, so the
        # round's block goes in front of everything pushed so far, lane order kept inside it
        # (the same as lanes K-1, K-2, ..., 0 each pushing one word to the front in turn).
        flush = active & (x >= (f << 16))
        count = flush.sum(dim=1)
        slot = front[:, None] - count[:, None] + _exclusive_rank(flush)
        words[chunk_of[flush], slot[flush]] = x[flush] & WORD_MASK
        front -= count
        x = torch.where(flush, x >> WORD_BITS, x)

        # The rANS step: x = (x // f) << 16 | (x % f) + c   ((x % f) + c < 2^16, so | is +).
        x = torch.where(active, ((x // f) << PRECISION) + x % f + c, x)

    # Bypass bytes: escaped values in plain symbol order (p ascending) within each chunk.
    bypass = [bytearray() for _ in range(chunks)]
    for i in torch.nonzero(is_escape).flatten().tolist():
        e = _escape_distance(int(s[i]), int(esc[i]))
        bypass[i >> chunk_bits] += _leb128(e)

    # §3: header, all chunks' counts, then all chunks' data.
    out = bytearray(header)
    word_lists = [words[q, int(front[q]) :] for q in range(chunks)]
    for q in range(chunks):
        out += _leb128(word_lists[q].numel()) + _leb128(len(bypass[q]))
    for q in range(chunks):
        out += x[q, : grid.lanes_in(q)].numpy().astype("<u4").tobytes()  # only lanes with symbols
        out += word_lists[q].numpy().astype("<u2").tobytes()
        out += bypass[q]
        if bypass[q]:
            out += struct.pack("<I", zlib.crc32(bypass[q]))  # §3: escape values are CRC-checked
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# Decoder
# ----------------------------------------------------------------------------------------------


def _as_bytes(data) -> bytes:
    if isinstance(data, torch.Tensor):
        if data.dtype != torch.uint8:
            raise ValueError(f"a stream given as a tensor must be uint8, got {data.dtype}")
        return data.detach().cpu().contiguous().numpy().tobytes()
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ValueError(f"a stream given as an array must be uint8, got {data.dtype}")
        return data.tobytes()
    try:
        return bytes(memoryview(data))
    except TypeError:
        raise ValueError(f"data must be bytes-like, got {type(data).__name__}") from None


def decode(data, indexes, cdfs, offsets) -> torch.Tensor:
    """Decode a stream written by :func:`encode`; return the int32 values, one per table index.

    Raises :class:`~neurocodec.errors.TableMismatchError` when the stream was written with other
    tables, and :class:`~neurocodec.errors.BitstreamError` on any other corrupt, truncated or
    inconsistent stream (including a wrong number of table indices).
    """
    tables = _prepare_tables(cdfs, offsets)
    idx = _as_int64(indexes, "indexes")
    data = _as_bytes(data)
    size = len(data)

    # --- header ---------------------------------------------------------------------------
    if size < 8:
        raise BitstreamError(f"truncated stream: {size} bytes, the header alone takes at least 8")
    version, chunk_bits, lanes = data[0], data[1], data[2]
    if version != FORMAT_VERSION:
        raise BitstreamError(
            f"unsupported stream format version {version} (this decoder reads {FORMAT_VERSION})"
        )
    if not MIN_CHUNK_BITS <= chunk_bits <= MAX_CHUNK_BITS:
        raise BitstreamError(f"corrupt stream: chunk size 2^{chunk_bits} outside [2^5, 2^30]")
    if not 1 <= lanes <= MAX_LANES:
        raise BitstreamError(f"corrupt stream: {lanes} lanes outside [1, 32]")
    (stored_hash,) = struct.unpack_from("<I", data, 3)
    if stored_hash != tables.hash:
        raise TableMismatchError(
            f"the stream was written with other CDF tables (hash {stored_hash:08x}, given tables {tables.hash:08x})"
        )
    n, pos = _read_leb128(data, 7, size, "the symbol count")
    if n >= 1 << 32:
        raise BitstreamError(f"corrupt stream: symbol count {n} is not below 2^32")
    if n != idx.numel():
        raise BitstreamError(f"the stream holds {n} symbols but {idx.numel()} table indices were given")
    if n and (int(idx.min()) < 0 or int(idx.max()) >= tables.count):
        raise ValueError(
            f"table indices must be in [0, {tables.count}), got range [{int(idx.min())}, {int(idx.max())}]"
        )
    if n == 0:
        if pos != size:
            raise BitstreamError(f"stream length {size} differs from the {pos} bytes its header implies")
        return torch.zeros(0, dtype=torch.int32)

    # --- chunk counts, then the exact length check (catches truncation before decoding) ----
    grid = _Grid.build(n, chunk_bits, lanes)
    chunks = grid.chunks
    n_words, n_bypass = [], []
    for q in range(chunks):
        w, pos = _read_leb128(data, pos, size, f"the word count of chunk {q}")
        b, pos = _read_leb128(data, pos, size, f"the bypass byte count of chunk {q}")
        n_words.append(w)
        n_bypass.append(b)
    expected = pos + sum(
        4 * grid.lanes_in(q) + 2 * n_words[q] + n_bypass[q] + (4 if n_bypass[q] else 0) for q in range(chunks)
    )
    if expected != size:
        raise BitstreamError(f"stream length {size} differs from the {expected} bytes its header implies")

    # --- chunk data: lane states, words, bypass bytes ---------------------------------------
    x = torch.full((chunks, lanes), L, dtype=torch.int64)  # lanes without a symbol stay at L
    word_arrays, bypass_at = [], []
    for q in range(chunks):
        m = grid.lanes_in(q)
        states = np.frombuffer(data, dtype="<u4", count=m, offset=pos).astype(np.int64)
        pos += 4 * m
        if (states < L).any():
            raise BitstreamError(f"corrupt stream: chunk {q} has a lane state below 2^16")
        x[q, :m] = torch.from_numpy(states)
        word_arrays.append(
            torch.from_numpy(np.frombuffer(data, dtype="<u2", count=n_words[q], offset=pos).astype(np.int64))
        )
        pos += 2 * n_words[q]
        bypass_at.append(pos)
        pos += n_bypass[q]
        if n_bypass[q]:
            (crc,) = struct.unpack_from("<I", data, pos)
            if crc != zlib.crc32(data[pos - n_bypass[q] : pos]):
                raise BitstreamError(f"corrupt stream: the escape values of chunk {q} fail their CRC")
            pos += 4
    word_count = torch.tensor(n_words, dtype=torch.int64)
    word_base = torch.cumsum(word_count, 0) - word_count
    all_words = torch.cat(word_arrays)
    word_next = torch.zeros(chunks, dtype=torch.int64)  # words consumed per chunk
    bypass_next = list(bypass_at)  # read position per chunk
    bypass_end = [bypass_at[q] + n_bypass[q] for q in range(chunks)]

    sym_table = idx
    values = torch.zeros(n, dtype=torch.int64)

    # --- §2: rounds in order, all lanes of all chunks at once ------------------------------
    for r in range(grid.rounds):
        active = grid.active[:, r]
        sym = grid.index[:, r]
        t = sym_table[sym]

        # Find the entry s with cdf[s] <= slot < cdf[s+1] in each lane's table.
        slot = x & WORD_MASK
        at = torch.searchsorted(tables.keys, t * _TABLE_STRIDE + slot, right=True) - 1
        entry = at - tables.base[t]
        c = tables.cdf[at]
        f = tables.cdf[at + 1] - c
        x = torch.where(active, f * (x >> PRECISION) + slot - c, x)

        # Refill: lanes that fell below L read the next word; the round's words lie in
        # ascending lane order, so a lane's word is `word_next + (refilling lanes below it)`.
        refill = active & (x < L)
        where = word_next[:, None] + _exclusive_rank(refill)
        overrun = refill & (where >= word_count[:, None])
        if bool(overrun.any()):
            q = int(torch.nonzero(overrun)[0, 0])
            raise BitstreamError(f"corrupt stream: chunk {q} reads past its {n_words[q]} words")
        word = all_words[(word_base[:, None] + where)[refill]]
        x[refill] = (x[refill] << WORD_BITS) | word
        word_next += refill.sum(dim=1)

        # Values: ordinary entries directly; escapes from the chunk's bypass bytes, in symbol
        # order (chunk by chunk, ascending lane within this round), right after their step.
        values[sym[active]] = (tables.offsets[t] + entry)[active]
        is_escape = active & (entry == tables.escape[t])
        for q, lane in torch.nonzero(is_escape).tolist():
            i = int(sym[q, lane])
            what = f"the escaped value of symbol {i}"
            e, bypass_next[q] = _read_leb128(data, bypass_next[q], bypass_end[q], what)
            if e >= ESCAPE_LIMIT:
                raise BitstreamError(f"corrupt stream: {what} has distance {e} >= 2^34")
            v = int(tables.offsets[int(t[q, lane])]) + _escape_offset(e, int(tables.escape[int(t[q, lane])]))
            if not INT32_MIN <= v <= INT32_MAX:
                raise BitstreamError(f"corrupt stream: {what} decodes to {v}, outside int32")
            values[i] = v

    # --- final-state check -----------------------------------------------------------------
    for q in range(chunks):
        m = grid.lanes_in(q)
        if bool((x[q, :m] != L).any()) or int(word_next[q]) != n_words[q] or bypass_next[q] != bypass_end[q]:
            raise BitstreamError(
                f"corrupt stream: chunk {q} fails the final-state check (lanes not back at 2^16, "
                "or words or bypass bytes left over)"
            )
    return values.to(torch.int32)
