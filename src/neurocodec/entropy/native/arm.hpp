// The integer autoregressive context model (ARM) of the c3 codec, in exact integer arithmetic,
// and the raster-order coding of its latent grids with the rANS core (rans.hpp).
//
// A grid is coded in raster order, grids coarse to fine. The ARM predicts, for each latent, a
// Laplace (mean, log-scale) from the latents decoded before it in the same grid (a causal
// window, `taps`) and a window of the coarser grid centred on (y / 2, x / 2); positions
// outside a grid read zero. Its layers compute `acc = W x + B` exactly in int64 and output
// `floor(acc / 2^kw)` (hidden layers clamped to [0, act_max]); inputs are latents * 2^act_bits.
// The Python side (neurocodec.models.c3) checks that no partial sum can reach 2^53, so these
// integers equal those of any exact evaluation. The mean (to 1 / 2^mean_bits) and log-scale
// (to the nearest table scale) then select the coding table: see neurocodec.models.c3.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rans.hpp"

namespace neurocodec::arm {

struct Arm {
  int hidden = 0;                // H
  std::vector<int32_t> dy, dx;   // same-grid window offsets (causal), T of them
  int coarse_kernel = 0;         // ck: the coarser grid's window is ck x ck
  std::vector<int64_t> w1, b1;   // (H, T + ck^2), (H,); biases in accumulator units
  std::vector<int64_t> w2, b2;   // (H, H), (H,)
  std::vector<int64_t> w3, b3;   // (2, H), (2,)
  int kw = 0;                    // weights are W * 2^-kw
  int act_bits = 8, mean_bits = 3;
  int64_t act_max = 0;           // hidden activations are clamped to [0, act_max]
  int64_t log_scale0 = 0, log_scale_step = 1;
  int scales = 1;
  int64_t latent_max = 0;        // |latent| bound

  int inputs() const { return int(dy.size()) + coarse_kernel * coarse_kernel; }
  int radius() const {
    int r = coarse_kernel / 2 + 1;
    for (size_t t = 0; t < dy.size(); ++t) r = std::max({r, std::abs(dy[t]), std::abs(dx[t])});
    return r;
  }

  void check() const {
    const size_t H = size_t(hidden), I = size_t(inputs());
    if (hidden < 1 || dy.size() != dx.size() || coarse_kernel < 1 || w1.size() != H * I || b1.size() != H ||
        w2.size() != H * H || b2.size() != H || w3.size() != 2 * H || b3.size() != 2)
      throw rans::ArgumentError("inconsistent ARM parameters");
    for (size_t t = 0; t < dy.size(); ++t)
      if (dy[t] > 0 || (dy[t] == 0 && dx[t] >= 0)) throw rans::ArgumentError("an ARM tap is not causal");
    if (kw < 0 || kw > 40 || act_bits < mean_bits || mean_bits < 1 || scales < 1 || log_scale_step < 1)
      throw rans::ArgumentError("unsupported ARM fixed point");
  }
};

// A grid padded by `pad` zeros on every side (row-major int64).
class Padded {
 public:
  Padded(int h, int w, int pad) : h_(h), w_(w), pad_(pad), stride_(w + 2 * pad), v_(size_t(h + 2 * pad) * stride_, 0) {}
  int64_t at(int y, int x) const { return v_[size_t(y + pad_) * stride_ + size_t(x + pad_)]; }
  void set(int y, int x, int64_t value) { v_[size_t(y + pad_) * stride_ + size_t(x + pad_)] = value; }
  int h() const { return h_; }
  int w() const { return w_; }

 private:
  int h_, w_, pad_;
  size_t stride_;
  std::vector<int64_t> v_;
};

inline int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// (integer part of the mean, table index) of the latent at (y, x) of `grid` (its earlier
// latents known) given the complete coarser grid (`coarse`, nullptr for the coarsest).
struct Prediction {
  int64_t whole;
  int32_t index;
};

// The ARM's three layers: `h = floor((W in + b) / 2^kw)` (the hidden ones clamped to
// [0, act_max]), W transposed (`wt[i * n_out + o]`) so that the inner loops run across outputs
// into accumulators on the stack (`>>` of an int64 is an arithmetic shift, a floor in C++20);
// `H` > 0 fixes the hidden width at compile time. On kodim01 at q3 that took the latents'
// decoding from 0.19 to 0.12 CPU-s (the portable build; an AVX-512 version gave the same), with
// the same integers (docs/codecs.md, "Raster-order context model").
// `w1t`, `w2t`, `w3t`: the ARM's weights transposed. `scratch`: 2 * hidden values, used where
// `H` is 0 (any width).
template <int H>
void mlp(const Arm& arm, const int64_t* w1t, const int64_t* w2t, const int64_t* w3t, const int64_t* in,
         int64_t out[2], int64_t* scratch) {
  const int h = H > 0 ? H : arm.hidden, n_in = arm.inputs();
  int64_t fixed[H > 0 ? 2 * H : 1];
  int64_t* a = H > 0 ? fixed : scratch;
  int64_t* b = a + h;
  for (int o = 0; o < h; ++o) a[o] = arm.b1[size_t(o)];
  for (int i = 0; i < n_in; ++i) {
    const int64_t x = in[i];
    if (x == 0) continue;  // most latents are zero: their columns add nothing
    const int64_t* col = w1t + size_t(i) * size_t(h);
    for (int o = 0; o < h; ++o) a[o] += col[o] * x;
  }
  for (int o = 0; o < h; ++o) a[o] = std::clamp<int64_t>(a[o] >> arm.kw, 0, arm.act_max);
  for (int o = 0; o < h; ++o) b[o] = arm.b2[size_t(o)];
  for (int i = 0; i < h; ++i) {
    const int64_t x = a[i];
    if (x == 0) continue;  // a ReLU's zeros, likewise
    const int64_t* col = w2t + size_t(i) * size_t(h);
    for (int o = 0; o < h; ++o) b[o] += col[o] * x;
  }
  for (int o = 0; o < h; ++o) b[o] = std::clamp<int64_t>(b[o] >> arm.kw, 0, arm.act_max);
  for (int o = 0; o < 2; ++o) {
    int64_t acc = arm.b3[size_t(o)];
    for (int i = 0; i < h; ++i) acc += w3t[size_t(i) * 2 + size_t(o)] * b[i];
    out[o] = acc >> arm.kw;
  }
}

class Predictor {
 public:
  explicit Predictor(const Arm& arm)
      : a_(arm),
        w1t_(transposed(arm.w1, arm.hidden, arm.inputs())),
        w2t_(transposed(arm.w2, arm.hidden, arm.hidden)),
        w3t_(transposed(arm.w3, 2, arm.hidden)),
        in_(size_t(arm.inputs())),
        scratch_(2 * size_t(arm.hidden)) {}

  Prediction operator()(const Padded& grid, const Padded* coarse, int y, int x) {
    const Arm& a = a_;
    const int T = int(a.dy.size()), ck = a.coarse_kernel, cr = ck / 2;
    const int64_t unit = int64_t(1) << a.act_bits;
    for (int t = 0; t < T; ++t) in_[size_t(t)] = grid.at(y + a.dy[size_t(t)], x + a.dx[size_t(t)]) * unit;
    for (int i = 0, t = T; i < ck; ++i)
      for (int j = 0; j < ck; ++j, ++t)
        in_[size_t(t)] = coarse ? coarse->at((y >> 1) + i - cr, (x >> 1) + j - cr) * unit : 0;
    int64_t out[2];
    const int64_t *w1 = w1t_.data(), *w2 = w2t_.data(), *w3 = w3t_.data();
    switch (a.hidden) {  // the widths c3 uses (neurocodec.codecs.c3.ARCH, RICH_ARCH)
      case 8: mlp<8>(a, w1, w2, w3, in_.data(), out, scratch_.data()); break;
      case 16: mlp<16>(a, w1, w2, w3, in_.data(), out, scratch_.data()); break;
      case 24: mlp<24>(a, w1, w2, w3, in_.data(), out, scratch_.data()); break;
      default: mlp<0>(a, w1, w2, w3, in_.data(), out, scratch_.data());
    }
    const int shift = a.act_bits - a.mean_bits;
    const int64_t t = (out[0] + (int64_t(1) << (shift - 1))) >> shift;  // mean in units 2^-mean_bits
    const int64_t whole = std::clamp<int64_t>(t >> a.mean_bits, -a.latent_max, a.latent_max);
    const int64_t fraction = t & ((int64_t(1) << a.mean_bits) - 1);
    const int64_t s = std::clamp<int64_t>(floor_div(out[1] - a.log_scale0 + a.log_scale_step / 2, a.log_scale_step),
                                          0, a.scales - 1);
    return {whole, int32_t((s << a.mean_bits) + fraction)};
  }

 private:
  static std::vector<int64_t> transposed(const std::vector<int64_t>& w, int rows, int cols) {
    std::vector<int64_t> t(w.size());
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) t[size_t(c) * size_t(rows) + size_t(r)] = w[size_t(r) * size_t(cols) + size_t(c)];
    return t;
  }

  const Arm& a_;
  std::vector<int64_t> w1t_, w2t_, w3t_, in_, scratch_;
};

using Size = std::pair<int, int>;

// Visits every latent of the grids `sizes` (coarse to fine, each in raster order) with its
// prediction: `latent(prediction, n)` returns the n-th latent in coding order, which the later
// predictions then read.
template <class Latent>
void scan(const Arm& arm, const std::vector<Size>& sizes, Latent&& latent) {
  arm.check();
  const int pad = arm.radius();
  Predictor predict(arm);
  std::optional<Padded> coarse;  // the grid before, complete
  size_t n = 0;
  for (const auto& [h, w] : sizes) {
    Padded grid(h, w, pad);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x, ++n) grid.set(y, x, latent(predict(grid, coarse ? &*coarse : nullptr, y, x), n));
    coarse.emplace(std::move(grid));
  }
}

// The coded symbols of `grids` (coarse to fine, row-major int32 each): value - whole and the
// table index of every latent, in coding order.
inline void symbols(const Arm& arm, const std::vector<Size>& sizes, const std::vector<const int32_t*>& grids,
                    int32_t* values, int32_t* indexes) {
  std::vector<size_t> starts = {0};  // where each grid begins in coding order
  for (const auto& [h, w] : sizes) starts.push_back(starts.back() + size_t(h) * size_t(w));
  size_t g = 0;
  scan(arm, sizes, [&](const Prediction& p, size_t n) {
    while (n >= starts[g + 1]) ++g;
    const int64_t v = grids[g][n - starts[g]];
    values[n] = int32_t(v - p.whole);
    indexes[n] = p.index;
    return v;
  });
}

// Decodes the grids of a stream written from `symbols` (all latents, coarse to fine) into `out`.
inline void decode(const Arm& arm, rans::StreamDecoder& stream, const std::vector<Size>& sizes, int32_t* out) {
  scan(arm, sizes, [&](const Prediction& p, size_t n) {
    int32_t symbol;
    stream.pull(&p.index, &symbol, 1);
    const int64_t v = p.whole + int64_t(symbol);
    if (v < -arm.latent_max || v > arm.latent_max) throw rans::StreamError("corrupt stream (a c3 latent out of range)");
    out[n] = int32_t(v);
    return v;
  });
  stream.finish();
}

}  // namespace neurocodec::arm
