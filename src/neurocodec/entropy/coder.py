"""The rANS entropy coder: the Python face of the C++ core (``entropy/native/rans.hpp``).

The byte format is docs/bitstream.md. Symbols are int32 *values* with int32 *table indexes*
into a :class:`TableSet` of 16-bit CDF tables, uploaded once. Every value can be coded with
any table (values outside a table's range are escaped), so encoding never fails; decoding
checks everything it reads and raises :class:`~neurocodec.errors.BitstreamError` on a
corrupt or truncated stream and :class:`~neurocodec.errors.TableMismatchError` when the
stream was written with other tables.

Buffers cross into C++ without copies: int32 C-contiguous numpy arrays or CPU torch tensors
are used as they are (anything else is converted once). The GIL is released while coding;
``threads`` spreads independent chunks over cores.

    tables = TableSet(cdfs, offsets)
    data = encode(values, indexes, tables)
    values = decode(data, indexes, tables)

For autoregressive and multi-pass context models, :class:`StreamEncoder` and
:class:`StreamDecoder` code a stream in batches of any size (same bytes as one call).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from neurocodec.entropy import _rans

DEFAULT_CHUNK_BITS = 18  # 2^18 symbols per chunk: lanes + chunks cost ~0.1 % on 1M Gaussian symbols
DEFAULT_LANES = 32
MAX_LANES = _rans.MAX_LANES
FORMAT_VERSION = _rans.VERSION

__all__ = [
    "DEFAULT_CHUNK_BITS",
    "DEFAULT_LANES",
    "FORMAT_VERSION",
    "StreamDecoder",
    "StreamEncoder",
    "TableSet",
    "decode",
    "encode",
    "fit_lanes",
    "lanes_for",
    "stream_info",
]


SYMBOLS_PER_LANE = 16384
BYTES_PER_LANE = 4096


def lanes_for(num_symbols: int, num_bytes: int | None = None) -> int:
    """The lane count codecs use for a stream of ``num_symbols``: one lane per 16 Ki symbols,
    1 to 32, and -- given ``num_bytes``, the stream's size -- at most one lane per 4 KiB.

    Lanes are what a GPU decodes in parallel within one stream (a stream of 512 Ki symbols or
    more gets all 32, a warp), but every lane costs a 4-byte state (about 2.5 bytes net); the
    byte cap keeps the states at most ~0.1 % of a short, low-rate stream, where they used to
    be 0.5 % (9 lanes for an 8-KB Kodak latent). On the CPU the decode speed is flat from 3
    lanes up (``eval/bench_lanes.py``). Decoders read K from the header, so this is a policy of the encoder, never a
    format parameter to agree on. :func:`fit_lanes` applies it.
    """
    lanes = max(1, min(MAX_LANES, -(-num_symbols // SYMBOLS_PER_LANE)))
    if num_bytes is not None:
        lanes = max(1, min(lanes, num_bytes // BYTES_PER_LANE))
    return lanes


def fit_lanes(encode: Callable[[int], bytes], num_symbols: int) -> bytes:
    """``encode(lanes)`` with :func:`lanes_for` lanes, coded again with fewer lanes when the
    stream turns out too short for them (only short streams, so the second pass is cheap)."""
    lanes = lanes_for(num_symbols)
    data = encode(lanes)
    fitted = lanes_for(num_symbols, len(data))
    return data if fitted == lanes else encode(fitted)


def _int32_array(x: Any, name: str) -> np.ndarray:
    """A 1-D int32 C-contiguous view of ``x`` (zero-copy when it already is one)."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # torch.Tensor
        if x.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU for the C++ coder (got {x.device})")
        x = x.detach().numpy()
    a = np.asarray(x)
    if a.dtype != np.int32:
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be integers, got dtype {a.dtype}")
        if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
            raise ValueError(f"{name} must fit in int32")
        a = a.astype(np.int32)
    return np.ascontiguousarray(a.reshape(-1))


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes, got {type(data).__name__}")


class TableSet:
    """A set of 16-bit CDF tables, validated, hashed and uploaded to the coder once.

    ``cdfs[t]`` is table t's CDF: ``n_t + 1`` integers from 0 to 65536, strictly increasing,
    whose last entry (``n_t - 1``) is the escape symbol. Entry ``s`` stands for the value
    ``offsets[t] + s``.
    """

    def __init__(self, cdfs: Sequence[Any], offsets: Any):
        cdf_list = [_int32_array(c, "cdf") for c in cdfs]
        offsets_arr = _int32_array(offsets, "offsets")
        if len(cdf_list) != len(offsets_arr):
            raise ValueError(f"{len(cdf_list)} CDFs but {len(offsets_arr)} offsets")
        sizes = np.array([len(c) - 1 for c in cdf_list], dtype=np.int32)
        flat = np.concatenate(cdf_list) if cdf_list else np.zeros(0, np.int32)
        self._native = _rans.TableSet(flat, sizes, offsets_arr)
        self.sizes = sizes
        self.offsets = offsets_arr
        self._cdf_flat = flat

    @property
    def num_tables(self) -> int:
        return self._native.num_tables

    @property
    def hash(self) -> int:
        """CRC-32 of the canonical serialization (docs/bitstream.md §1); stored in every stream."""
        return self._native.hash

    def cdfs(self) -> list[np.ndarray]:
        """The tables' CDFs, as given."""
        bounds = np.concatenate([[0], np.cumsum(self.sizes + 1)])
        return [self._cdf_flat[a:b] for a, b in itertools.pairwise(bounds)]

    def __repr__(self) -> str:
        return f"TableSet({self.num_tables} tables, hash={self.hash:#010x})"


def encode(
    values: Any,
    indexes: Any,
    tables: TableSet,
    *,
    chunk_bits: int = DEFAULT_CHUNK_BITS,
    lanes: int = DEFAULT_LANES,
    threads: int = 1,
) -> bytes:
    """Encodes ``values[i]`` with table ``indexes[i]`` into one rANS stream."""
    v = _int32_array(values, "values")
    k = _int32_array(indexes, "indexes")
    return _rans.encode(tables._native, v, k, chunk_bits, lanes, threads)


def decode(data: bytes, indexes: Any, tables: TableSet, *, threads: int = 1, out: Any = None) -> np.ndarray:
    """Decodes a stream written by :func:`encode` (or a :class:`StreamEncoder`): int32 values."""
    k = _int32_array(indexes, "indexes")
    if out is None:
        out = np.empty(len(k), dtype=np.int32)
    elif not (isinstance(out, np.ndarray) and out.dtype == np.int32 and out.flags.c_contiguous):
        raise ValueError("out must be a C-contiguous int32 numpy array")
    _rans.decode(tables._native, _as_bytes(data), k, out, threads)
    return out


def stream_info(data: bytes) -> dict[str, int]:
    """The header of a stream: version, chunk_bits, lanes, table_hash, num_symbols, num_chunks, header_bytes."""
    return _rans.stream_info(_as_bytes(data))


class StreamEncoder:
    """Encodes a stream in batches: ``push`` any number of times, then ``finish`` for the bytes.

    rANS codes in reverse, so symbols are buffered until their chunk is full; memory stays
    bounded by one chunk plus the output.
    """

    def __init__(self, tables: TableSet, *, chunk_bits: int = DEFAULT_CHUNK_BITS, lanes: int = DEFAULT_LANES):
        self.tables = tables
        self._native = _rans.StreamEncoder(tables._native, chunk_bits, lanes)

    def push(self, values: Any, indexes: Any) -> None:
        self._native.push(_int32_array(values, "values"), _int32_array(indexes, "indexes"))

    @property
    def num_symbols(self) -> int:
        return self._native.num_symbols

    def finish(self) -> bytes:
        return self._native.finish()


class StreamDecoder:
    """Decodes a stream in batches: ``pull(indexes)`` returns the next ``len(indexes)`` values.

    Each chunk's final-state check runs when its last symbol is pulled; :meth:`finish` checks
    that the whole stream was read.
    """

    def __init__(self, data: bytes, tables: TableSet):
        self.tables = tables
        self._native = _rans.StreamDecoder(tables._native, _as_bytes(data))

    @property
    def num_symbols(self) -> int:
        return self._native.num_symbols

    @property
    def position(self) -> int:
        return self._native.position

    def pull(self, indexes: Any) -> np.ndarray:
        k = _int32_array(indexes, "indexes")
        out = np.empty(len(k), dtype=np.int32)
        self._native.pull(k, out)
        return out

    def finish(self) -> None:
        self._native.finish()
