// neurocodec rANS core: header-only, the one C++ implementation of docs/bitstream.md.
//
// u32 state, u16 words, 16-bit CDFs, K <= 32 interleaved lanes, independent chunks of 2^c
// symbols, escapes coded as LEB128 bypass bytes, final-state check. No Python here: the
// bindings (bindings.cpp) wrap this; any other binding (a C API, a WASM build) can too.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "neurocodec's rANS core assumes a little-endian host"
#endif

namespace neurocodec::rans {

constexpr uint32_t kProbBits = 16;
constexpr uint32_t kProbScale = 1u << kProbBits;  // M
constexpr uint32_t kStateLow = 1u << 16;          // L: states live in [L, 2^32)
constexpr uint8_t kVersion = 1;
constexpr int kMaxLanes = 32;
constexpr int kMinChunkBits = 5;
constexpr int kMaxChunkBits = 30;

// A stream is corrupt, truncated or inconsistent (Python: neurocodec.errors.BitstreamError).
struct StreamError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A stream was written with other tables (Python: neurocodec.errors.TableMismatchError).
struct TableMismatch : StreamError {
  using StreamError::StreamError;
};
// The caller passed something invalid (Python: ValueError).
struct ArgumentError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// ---------------------------------------------------------------------------------------------
// Small helpers: CRC-32 (zlib polynomial), LEB128, little-endian loads and stores.

inline uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

inline void put_leb128(std::vector<uint8_t>& out, uint64_t v) {
  do {
    uint8_t b = v & 0x7F;
    v >>= 7;
    out.push_back(v ? (b | 0x80) : b);
  } while (v);
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Reads a minimal header LEB128 value of at most 5 bytes and at most `limit`.
inline uint64_t read_header_leb128(const uint8_t*& p, const uint8_t* end, uint64_t limit,
                                   const char* what) {
  uint64_t v = 0;
  for (int i = 0; i < 5; ++i) {
    if (p >= end) throw StreamError(std::string("truncated stream header (") + what + ")");
    uint8_t b = *p++;
    v |= uint64_t(b & 0x7F) << (7 * i);
    if (!(b & 0x80)) {
      if (b == 0 && i > 0) throw StreamError(std::string("corrupt stream header (") + what + " is not minimal)");
      if (v > limit) throw StreamError(std::string("corrupt stream header (") + what + " too large)");
      return v;
    }
  }
  throw StreamError(std::string("corrupt stream header (") + what + " is not a valid LEB128)");
}

// ---------------------------------------------------------------------------------------------
// Table set: CDF tables uploaded once, with what the encoder and the decoder need.

class TableSet {
 public:
  struct Table {
    uint32_t base;      // first entry in `entries_`
    uint32_t n;         // entries, escape included (n - 1 is the escape)
    int32_t offset;     // value of entry 0
    uint32_t lut_base;  // first bucket in `lut_`
    uint32_t lut_shift; // slot >> lut_shift is the bucket
  };

  // cdf_flat: the tables' CDFs concatenated (table t has sizes[t] + 1 values); sizes[t] = n_t.
  TableSet(const int32_t* cdf_flat, size_t cdf_len, const int32_t* sizes, const int32_t* offsets,
           size_t num_tables) {
    if (num_tables == 0) throw ArgumentError("a table set needs at least one table");
    if (num_tables > (1u << 24)) throw ArgumentError("too many tables (at most 2^24)");
    tables_.resize(num_tables);
    size_t total = 0;
    for (size_t t = 0; t < num_tables; ++t) {
      int32_t n = sizes[t];
      if (n < 2 || n > int32_t(kProbScale))
        throw ArgumentError("table " + std::to_string(t) + ": size must be in [2, 65536], got " +
                            std::to_string(n));
      if (int64_t(offsets[t]) + n - 2 > INT32_MAX)
        throw ArgumentError("table " + std::to_string(t) + ": its values exceed int32");
      total += size_t(n) + 1;
    }
    if (total != cdf_len)
      throw ArgumentError("CDF array length " + std::to_string(cdf_len) +
                          " does not match the table sizes (expected " + std::to_string(total) + ")");
    const std::vector<int> lut_bits = choose_lut_bits(sizes, num_tables);
    size_t lut_total = 0;
    for (int b : lut_bits) lut_total += size_t(1) << b;
    entries_.resize(total - num_tables);
    lut_.resize(lut_total);

    // Canonical serialization for the hash: u32 T, then per table u32 n, i32 offset, u16 cdf[1..n-1].
    std::vector<uint8_t> ser;
    ser.reserve(4 + num_tables * 8 + total * 2);
    auto put32 = [&](uint32_t v) {
      for (int k = 0; k < 4; ++k) ser.push_back(uint8_t(v >> (8 * k)));
    };
    put32(uint32_t(num_tables));

    const int32_t* cdf = cdf_flat;
    uint32_t base = 0, lut_base = 0;
    for (size_t t = 0; t < num_tables; ++t) {
      const uint32_t n = uint32_t(sizes[t]);
      if (cdf[0] != 0 || cdf[n] != int32_t(kProbScale))
        throw ArgumentError("table " + std::to_string(t) + ": a CDF must start at 0 and end at 65536");
      put32(n);
      put32(uint32_t(offsets[t]));
      for (uint32_t s = 0; s < n; ++s) {
        if (cdf[s + 1] <= cdf[s])
          throw ArgumentError("table " + std::to_string(t) +
                              ": the CDF must be strictly increasing (every frequency >= 1)");
        const uint32_t start = uint32_t(cdf[s]), freq = uint32_t(cdf[s + 1] - cdf[s]);
        entries_[base + s] = start | ((freq - 1) << 16);
        if (s > 0) {
          ser.push_back(uint8_t(start));
          ser.push_back(uint8_t(start >> 8));
        }
      }
      Table& tb = tables_[t];
      tb.base = base;
      tb.n = n;
      tb.offset = offsets[t];
      tb.lut_base = lut_base;
      tb.lut_shift = kProbBits - uint32_t(lut_bits[t]);
      const uint32_t buckets = 1u << lut_bits[t], shift = tb.lut_shift;
      lut_base += buckets;
      // lut[b] = the entry holding the first slot of bucket b.
      uint32_t s = 0;
      for (uint32_t b = 0; b < buckets; ++b) {
        const uint32_t slot = b << shift;
        while (uint32_t(cdf[s + 1]) <= slot) ++s;
        lut_[tb.lut_base + b] = uint16_t(s);
      }
      base += n;
      cdf += n + 1;
    }
    hash_ = crc32(ser.data(), ser.size());
  }

  size_t num_tables() const { return tables_.size(); }
  uint32_t hash() const { return hash_; }
  size_t lut_bytes() const { return lut_.size() * sizeof(uint16_t); }
  const Table& table(size_t t) const { return tables_[t]; }
  uint32_t entry(const Table& tb, uint32_t s) const { return entries_[tb.base + s]; }
  const uint32_t* entries() const { return entries_.data(); }

  // The entry s of table tb with start(s) <= slot < start(s) + freq(s).
  uint32_t find(const Table& tb, uint32_t slot, uint32_t& packed) const {
    uint32_t s = lut_[tb.lut_base + (slot >> tb.lut_shift)];
    const uint32_t* e = entries_.data() + tb.base;
    uint32_t p = e[s];
    while ((p & 0xFFFF) + (p >> 16) + 1 <= slot) p = e[++s];
    packed = p;
    return s;
  }

 private:
  // Buckets per table: 2^(ceil(log2 n) + extra), at most 2^16 (a full slot->entry map), with the
  // largest `extra` that keeps the whole lookup within 512 KiB. A bucket then rarely holds more
  // than one entry boundary, so the forward scan after the bucket lookup almost never iterates
  // (a mispredicted branch costs more than the rest of a decode step).
  static std::vector<int> choose_lut_bits(const int32_t* sizes, size_t num_tables) {
    constexpr size_t kBudget = size_t(1) << 18;  // entries of 2 bytes
    std::vector<int> bits(num_tables);
    for (int extra = 16; extra >= 0; --extra) {
      size_t total = 0;
      for (size_t t = 0; t < num_tables; ++t) {
        int log2n = 0;
        while ((1 << log2n) < sizes[t]) ++log2n;
        bits[t] = std::min(16, log2n + extra);
        total += size_t(1) << bits[t];
      }
      if (total <= kBudget) break;
    }
    return bits;
  }

  std::vector<Table> tables_;
  std::vector<uint32_t> entries_;  // start | (freq - 1) << 16
  std::vector<uint16_t> lut_;
  uint32_t hash_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Encoding one chunk.

struct EncodedChunk {
  uint32_t lanes = 0;               // m_q
  uint32_t states[kMaxLanes] = {};  // decoder's initial states
  std::unique_ptr<uint16_t[]> buffer;
  const uint16_t* words = nullptr;  // the chunk's words, in decoder order, inside `buffer`
  size_t num_words = 0;
  std::vector<uint8_t> bypass;      // escape values, LEB128, in symbol order
};

// The escape's zig-zag distance to the table's range (docs/bitstream.md §1).
inline uint64_t escape_distance(int64_t s, uint32_t escape) {
  return s < 0 ? uint64_t(-s) * 2 - 1 : uint64_t(s - escape) * 2;
}

// Encodes symbols [0, n) of one chunk. Returns false (and codes nothing useful) if a table
// index is out of range; the caller reports it.
inline bool encode_chunk(const TableSet& ts, const int32_t* values, const int32_t* indexes, size_t n,
                         int lanes, EncodedChunk& out) {
  uint32_t x[kMaxLanes];
  const uint32_t m = uint32_t(std::min<size_t>(n, size_t(lanes)));
  for (uint32_t j = 0; j < m; ++j) x[j] = kStateLow;
  // At most one word per symbol, written backwards from the end. Slot 0 is a spare: the loop
  // stores every step's low word at p[-1] and moves p only when the word is really emitted,
  // which keeps the unpredictable renormalization branch-free.
  out.buffer.reset(new uint16_t[n + 1]);
  uint16_t* const end = out.buffer.get() + n + 1;
  uint16_t* p = end;
  std::vector<std::pair<size_t, uint64_t>> escapes;  // collected backwards

  const TableSet::Table* tables = &ts.table(0);
  const uint32_t* entries = ts.entries();
  const uint32_t T = uint32_t(ts.num_tables());
  bool bad_index = false;
  uint32_t j = n ? uint32_t((n - 1) % size_t(lanes)) : 0;
  for (size_t i = n; i-- > 0;) {
    uint32_t k = uint32_t(indexes[i]);
    if (k >= T) [[unlikely]] {
      bad_index = true;
      k = 0;
    }
    const TableSet::Table& tb = tables[k];
    const int64_t s = int64_t(values[i]) - tb.offset;
    const uint32_t esc = tb.n - 1;
    uint32_t e = uint32_t(s);
    if (uint64_t(s) >= esc) [[unlikely]] {
      e = esc;
      escapes.emplace_back(i, escape_distance(s, esc));
    }
    const uint32_t packed = entries[tb.base + e];
    const uint32_t start = packed & 0xFFFF, freq = (packed >> 16) + 1;
    uint32_t xs = x[j];
    const bool flush = xs >= (freq << 16);
    p[-1] = uint16_t(xs);
    p -= flush;
    xs = flush ? xs >> 16 : xs;
    x[j] = ((xs / freq) << 16) + (xs % freq) + start;
    j = j ? j - 1 : uint32_t(lanes - 1);
  }
  out.lanes = m;
  std::copy(x, x + m, out.states);
  out.words = p;
  out.num_words = size_t(end - p);
  out.bypass.clear();
  for (auto it = escapes.rbegin(); it != escapes.rend(); ++it) put_leb128(out.bypass, it->second);
  return !bad_index;
}

// ---------------------------------------------------------------------------------------------
// Stream header and assembly.

struct StreamLayout {
  int chunk_bits = 18;
  int lanes = kMaxLanes;
  uint32_t hash = 0;
  uint64_t num_symbols = 0;
  size_t header_size = 0;
  std::vector<size_t> chunk_offset;  // byte offset of each chunk's data
  std::vector<uint32_t> chunk_words, chunk_bypass;

  size_t num_chunks() const { return chunk_words.size(); }
  size_t chunk_symbols(size_t q) const {
    const uint64_t c = uint64_t(1) << chunk_bits;
    return size_t(std::min<uint64_t>(c, num_symbols - q * c));
  }
  uint32_t chunk_lanes(size_t q) const {
    return uint32_t(std::min<size_t>(chunk_symbols(q), size_t(lanes)));
  }
};

inline void check_stream_params(int chunk_bits, int lanes) {
  if (chunk_bits < kMinChunkBits || chunk_bits > kMaxChunkBits)
    throw ArgumentError("chunk_bits must be in [5, 30], got " + std::to_string(chunk_bits));
  if (lanes < 1 || lanes > kMaxLanes)
    throw ArgumentError("lanes must be in [1, 32], got " + std::to_string(lanes));
}

// Header bytes followed by every chunk's data.
inline std::vector<uint8_t> stream_header(const std::vector<EncodedChunk>& chunks, int chunk_bits,
                                          int lanes, uint32_t hash, uint64_t n) {
  std::vector<uint8_t> h = {kVersion, uint8_t(chunk_bits), uint8_t(lanes)};
  for (int k = 0; k < 4; ++k) h.push_back(uint8_t(hash >> (8 * k)));
  put_leb128(h, n);
  for (const auto& c : chunks) {
    put_leb128(h, c.num_words);
    put_leb128(h, c.bypass.size());
  }
  return h;
}

// Bytes after the bypass values: a CRC-32 of them, only when there are any.
inline size_t bypass_crc_size(size_t bypass_bytes) { return bypass_bytes ? 4 : 0; }

inline size_t chunk_data_size(const EncodedChunk& c) {
  return 4 * size_t(c.lanes) + 2 * c.num_words + c.bypass.size() + bypass_crc_size(c.bypass.size());
}

inline size_t stream_size(const std::vector<uint8_t>& header, const std::vector<EncodedChunk>& chunks) {
  size_t total = header.size();
  for (const auto& c : chunks) total += chunk_data_size(c);
  return total;
}

inline void write_stream(const std::vector<uint8_t>& header, const std::vector<EncodedChunk>& chunks,
                         uint8_t* dst) {
  std::memcpy(dst, header.data(), header.size());
  dst += header.size();
  for (const auto& c : chunks) {
    std::memcpy(dst, c.states, 4 * size_t(c.lanes));
    dst += 4 * size_t(c.lanes);
    if (c.num_words) std::memcpy(dst, c.words, 2 * c.num_words);
    dst += 2 * c.num_words;
    if (!c.bypass.empty()) {
      std::memcpy(dst, c.bypass.data(), c.bypass.size());
      dst += c.bypass.size();
      const uint32_t crc = crc32(c.bypass.data(), c.bypass.size());
      std::memcpy(dst, &crc, 4);
      dst += 4;
    }
  }
}

inline StreamLayout parse_stream(const uint8_t* data, size_t size, const TableSet* ts) {
  StreamLayout L;
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  if (size < 8) throw StreamError("truncated stream (" + std::to_string(size) + " bytes, the header alone needs 8)");
  if (p[0] != kVersion)
    throw StreamError("unsupported stream version " + std::to_string(p[0]) + " (this build reads version " +
                      std::to_string(kVersion) + ")");
  L.chunk_bits = p[1];
  L.lanes = p[2];
  if (L.chunk_bits < kMinChunkBits || L.chunk_bits > kMaxChunkBits)
    throw StreamError("corrupt stream header (chunk size 2^" + std::to_string(L.chunk_bits) + ")");
  if (L.lanes < 1 || L.lanes > kMaxLanes)
    throw StreamError("corrupt stream header (" + std::to_string(L.lanes) + " lanes)");
  L.hash = load_u32(p + 3);
  if (ts && L.hash != ts->hash())
    throw TableMismatch("the stream was written with other CDF tables (table hash differs)");
  p += 7;
  L.num_symbols = read_header_leb128(p, end, 0xFFFFFFFFull, "symbol count");
  const uint64_t c = uint64_t(1) << L.chunk_bits;
  const uint64_t q_count = (L.num_symbols + c - 1) / c;
  // Every chunk needs at least 2 header bytes and 4 bytes of state: bound before allocating.
  if (q_count * 6 > size) throw StreamError("truncated stream (fewer bytes than its chunks need)");
  L.chunk_words.resize(q_count);
  L.chunk_bypass.resize(q_count);
  for (size_t q = 0; q < q_count; ++q) {
    const uint64_t nq = L.chunk_symbols(q);
    L.chunk_words[q] = uint32_t(read_header_leb128(p, end, nq, "word count"));
    L.chunk_bypass[q] = uint32_t(read_header_leb128(p, end, 5 * nq, "bypass size"));
  }
  L.header_size = size_t(p - data);
  L.chunk_offset.resize(q_count);
  uint64_t off = L.header_size;
  for (size_t q = 0; q < q_count; ++q) {
    L.chunk_offset[q] = size_t(off);
    off += 4 * uint64_t(L.chunk_lanes(q)) + 2 * uint64_t(L.chunk_words[q]) + L.chunk_bypass[q] +
           bypass_crc_size(L.chunk_bypass[q]);
  }
  if (off != size) {
    if (off > size)
      throw StreamError("truncated stream (" + std::to_string(size) + " bytes, header says " +
                        std::to_string(off) + ")");
    throw StreamError("corrupt stream (" + std::to_string(size - off) + " trailing bytes)");
  }
  return L;
}

// ---------------------------------------------------------------------------------------------
// Decoding: a cursor over one chunk, resumable after any symbol.

class ChunkDecoder {
 public:
  ChunkDecoder() = default;
  ChunkDecoder(const uint8_t* data, const StreamLayout& L, size_t q) {
    n_ = L.chunk_symbols(q);
    lanes_ = uint32_t(L.lanes);
    m_ = L.chunk_lanes(q);
    const uint8_t* p = data + L.chunk_offset[q];
    for (uint32_t j = 0; j < m_; ++j) {
      x_[j] = load_u32(p + 4 * j);
      if (x_[j] < kStateLow) throw StreamError("corrupt stream (lane state out of range)");
    }
    p += 4 * size_t(m_);
    w_ = p;
    w_end_ = p + 2 * size_t(L.chunk_words[q]);
    b_ = w_end_;
    b_end_ = b_ + L.chunk_bypass[q];
    if (b_end_ > b_ && crc32(b_, size_t(b_end_ - b_)) != load_u32(b_end_))
      throw StreamError("corrupt stream (escape values fail their CRC)");
  }

  size_t remaining() const { return n_ - pos_; }

  // Decodes the next `count` symbols (count <= remaining()) with the given table indexes.
  void decode(const TableSet& ts, const int32_t* indexes, int32_t* out, size_t count) {
    // Work on locals: `out` is int32 and may alias uint32 members as far as the compiler knows.
    uint32_t x[kMaxLanes];
    std::copy(x_, x_ + m_, x);
    const uint32_t T = uint32_t(ts.num_tables()), lanes = lanes_;
    const TableSet::Table* tables = &ts.table(0);
    const uint8_t* w = w_;
    const uint8_t* const w_end = w_end_;
    static const uint8_t zeros[2] = {0, 0};
    uint32_t j = lane_;
    for (size_t i = 0; i < count; ++i) {
      const uint32_t k = uint32_t(indexes[i]);
      if (k >= T) [[unlikely]]
        throw ArgumentError("table index " + std::to_string(indexes[i]) + " out of range [0, " +
                            std::to_string(T) + ")");
      const TableSet::Table& tb = tables[k];
      uint32_t xs = x[j];
      const uint32_t slot = xs & 0xFFFF;
      uint32_t packed;
      const uint32_t s = ts.find(tb, slot, packed);
      const uint32_t start = packed & 0xFFFF, freq = (packed >> 16) + 1;
      xs = freq * (xs >> 16) + slot - start;
      // Branch-free refill (taken about a third of the time, unpredictably).
      const bool refill = xs < kStateLow;
      const bool have = w < w_end;
      if (refill && !have) [[unlikely]]
        throw StreamError("corrupt stream (a chunk ran out of words)");
      const uint32_t word = load_u16(have ? w : zeros);
      xs = refill ? (xs << 16) | word : xs;
      w += 2 * refill;
      x[j] = xs;
      if (s == tb.n - 1) [[unlikely]] {
        out[i] = read_escape(tb);
      } else {
        out[i] = int32_t(tb.offset + int32_t(s));
      }
      j = (j + 1 == lanes) ? 0 : j + 1;
    }
    std::copy(x, x + m_, x_);
    w_ = w;
    lane_ = j;
    pos_ += count;
    if (pos_ == n_) final_check();
  }

 private:
  int32_t read_escape(const TableSet::Table& tb) {
    uint64_t e = 0;
    for (int k = 0;; ++k) {
      if (b_ >= b_end_) throw StreamError("corrupt stream (a chunk ran out of bypass bytes)");
      const uint8_t b = *b_++;
      e |= uint64_t(b & 0x7F) << (7 * k);
      if (!(b & 0x80)) {
        if (b == 0 && k > 0) throw StreamError("corrupt stream (non-minimal escape value)");
        break;
      }
      if (k == 4) throw StreamError("corrupt stream (escape value longer than 5 bytes)");
    }
    if (e >> 34) throw StreamError("corrupt stream (escape value out of range)");
    const int64_t esc = int64_t(tb.n - 1);
    const int64_t s = (e & 1) ? -int64_t((e + 1) / 2) : esc + int64_t(e / 2);
    const int64_t v = int64_t(tb.offset) + s;
    if (v < INT32_MIN || v > INT32_MAX) throw StreamError("corrupt stream (escaped value exceeds int32)");
    return int32_t(v);
  }

  void final_check() const {
    for (uint32_t j = 0; j < m_; ++j)
      if (x_[j] != kStateLow) throw StreamError("corrupt stream (final-state check failed)");
    if (w_ != w_end_ || b_ != b_end_) throw StreamError("corrupt stream (unread data at the end of a chunk)");
  }

  uint32_t x_[kMaxLanes] = {};
  size_t n_ = 0, pos_ = 0;
  uint32_t lanes_ = 1, m_ = 0, lane_ = 0;
  const uint8_t *w_ = nullptr, *w_end_ = nullptr, *b_ = nullptr, *b_end_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// Parallel helpers over chunks. Exceptions in workers are re-thrown on the calling thread.

template <class F>
void parallel_chunks(size_t num_chunks, int threads, F&& work) {
  const size_t t = std::min<size_t>(num_chunks, size_t(std::max(threads, 1)));
  if (t <= 1) {
    for (size_t q = 0; q < num_chunks; ++q) work(q);
    return;
  }
  std::vector<std::exception_ptr> errors(t);
  auto share = [&](size_t w) {
    try {
      for (size_t q = w; q < num_chunks; q += t) work(q);
    } catch (...) {
      errors[w] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(t);
  size_t started = 0;
  try {
    for (; started < t; ++started) pool.emplace_back(share, started);
  } catch (const std::system_error&) {
    // the system refused another thread: the calling thread does the shares left
  }
  for (size_t w = started; w < t; ++w) share(w);
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

inline void check_indexes(const int32_t* indexes, size_t n, size_t num_tables, size_t first = 0) {
  uint32_t worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, uint32_t(indexes[i]));
  if (worst >= num_tables) {
    for (size_t i = 0; i < n; ++i)
      if (uint32_t(indexes[i]) >= num_tables)
        throw ArgumentError("table index " + std::to_string(indexes[i]) + " at position " + std::to_string(first + i) +
                            " out of range [0, " + std::to_string(num_tables) + ")");
  }
}

// One-shot encode: chunks coded in parallel; returns the chunks and the header.
inline std::vector<EncodedChunk> encode_chunks(const TableSet& ts, const int32_t* values, const int32_t* indexes,
                                               size_t n, int chunk_bits, int lanes, int threads) {
  check_stream_params(chunk_bits, lanes);
  if (uint64_t(n) > 0xFFFFFFFFull) throw ArgumentError("at most 2^32 - 1 symbols per stream");
  const size_t c = size_t(1) << chunk_bits;
  std::vector<EncodedChunk> chunks((n + c - 1) / c);
  parallel_chunks(chunks.size(), threads, [&](size_t q) {
    const size_t begin = q * c, count = std::min(c, n - begin);
    if (!encode_chunk(ts, values + begin, indexes + begin, count, lanes, chunks[q]))
      check_indexes(indexes + begin, count, ts.num_tables(), begin);  // throws, naming the index
  });
  return chunks;
}

// One-shot decode into out[0, n).
inline void decode_stream(const TableSet& ts, const uint8_t* data, size_t size, const int32_t* indexes, size_t n,
                          int32_t* out, int threads) {
  const StreamLayout L = parse_stream(data, size, &ts);
  if (L.num_symbols != n)
    throw StreamError("the stream holds " + std::to_string(L.num_symbols) + " symbols but " + std::to_string(n) +
                      " table indexes were given");
  const size_t c = size_t(1) << L.chunk_bits;
  parallel_chunks(L.num_chunks(), threads, [&](size_t q) {
    ChunkDecoder dec(data, L, q);
    dec.decode(ts, indexes + q * c, out + q * c, L.chunk_symbols(q));
  });
}

// ---------------------------------------------------------------------------------------------
// Incremental API: symbols pushed / pulled in batches of any size, same bytes as one shot.

class StreamEncoder {
 public:
  StreamEncoder(std::shared_ptr<const TableSet> ts, int chunk_bits, int lanes)
      : ts_(std::move(ts)), chunk_bits_(chunk_bits), lanes_(lanes) {
    check_stream_params(chunk_bits, lanes);
  }
  StreamEncoder(const StreamEncoder&) = delete;
  StreamEncoder& operator=(const StreamEncoder&) = delete;

  void push(const int32_t* values, const int32_t* indexes, size_t n) {
    check_indexes(indexes, n, ts_->num_tables());
    if (total_ + n > 0xFFFFFFFFull) throw ArgumentError("at most 2^32 - 1 symbols per stream");
    const size_t c = size_t(1) << chunk_bits_;
    while (n > 0) {
      const size_t take = std::min(n, c - pending_values_.size());
      pending_values_.insert(pending_values_.end(), values, values + take);
      pending_indexes_.insert(pending_indexes_.end(), indexes, indexes + take);
      values += take;
      indexes += take;
      n -= take;
      total_ += take;
      if (pending_values_.size() == c) flush_chunk();
    }
  }

  uint64_t num_symbols() const { return total_; }

  // Encodes what is pending; the caller turns header() + chunks() into bytes.
  void finish() {
    if (!pending_values_.empty()) flush_chunk();
    finished_ = true;
  }
  bool finished() const { return finished_; }
  std::vector<uint8_t> header() const { return stream_header(chunks_, chunk_bits_, lanes_, ts_->hash(), total_); }
  const std::vector<EncodedChunk>& chunks() const { return chunks_; }

 private:
  void flush_chunk() {
    chunks_.emplace_back();
    encode_chunk(*ts_, pending_values_.data(), pending_indexes_.data(), pending_values_.size(), lanes_,
                 chunks_.back());  // indexes were checked by push()
    pending_values_.clear();
    pending_indexes_.clear();
  }

  std::shared_ptr<const TableSet> ts_;
  int chunk_bits_, lanes_;
  uint64_t total_ = 0;
  bool finished_ = false;
  std::vector<int32_t> pending_values_, pending_indexes_;
  std::vector<EncodedChunk> chunks_;
};

class StreamDecoder {
 public:
  // `data` must outlive the decoder (the binding keeps a reference to the Python bytes).
  StreamDecoder(std::shared_ptr<const TableSet> ts, const uint8_t* data, size_t size)
      : ts_(std::move(ts)), data_(data), layout_(parse_stream(data, size, ts_.get())) {}

  uint64_t num_symbols() const { return layout_.num_symbols; }
  uint64_t position() const { return position_; }

  void pull(const int32_t* indexes, int32_t* out, size_t n) {
    if (n > layout_.num_symbols - position_)
      throw StreamError("asked for " + std::to_string(n) + " symbols but the stream has only " +
                        std::to_string(layout_.num_symbols - position_) + " left");
    while (n > 0) {
      if (!open_ || chunk_.remaining() == 0) {
        chunk_ = ChunkDecoder(data_, layout_, next_chunk_++);
        open_ = true;
      }
      const size_t take = std::min(n, chunk_.remaining());
      chunk_.decode(*ts_, indexes, out, take);
      indexes += take;
      out += take;
      n -= take;
      position_ += take;
    }
  }

  // Every symbol must have been pulled (each chunk's final-state check ran when it completed).
  void finish() const {
    if (position_ != layout_.num_symbols)
      throw StreamError("stream finished after " + std::to_string(position_) + " of " +
                        std::to_string(layout_.num_symbols) + " symbols");
  }

 private:
  std::shared_ptr<const TableSet> ts_;
  const uint8_t* data_;
  StreamLayout layout_;
  ChunkDecoder chunk_;
  bool open_ = false;
  size_t next_chunk_ = 0;
  uint64_t position_ = 0;
};

}  // namespace neurocodec::rans
