// nn/kernels/depthwise.cpp: depthwise convolution forward, backward-data and backward-weight.
//
// ---- Derivation of the backward passes ------------------------------------------------------------
// Fix one image n and one channel c (planes do not interact in a depthwise convolution) and drop
// both indices. The forward pass is
//
//   y[oh, ow] = b + sum_{kh, kw} w[kh, kw] * x[oh*SH - PH + kh, ow*SW - PW + kw]          (1)
//
// with x = 0 outside the image. Given g[oh, ow] = dL/dy[oh, ow], the chain rule sums, over every
// output that an input or a weight took part in, g times the partial derivative of (1):
//
// backward-weight. w[kh, kw] multiplies exactly one input in each output's sum, so
//
//   dL/dw[kh, kw] = sum_{n, oh, ow} g[oh, ow] * x[oh*SH - PH + kh, ow*SW - PW + kw]       (2)
//
//   a correlation of the input with the output gradient, summed over the batch (the padding
//   terms are zero and are skipped). For each (oh, kh, kw) this is a dot product of a row of g
//   with a (strided) row of x: that is how the kernel computes it.
//
// backward-data. x[ih, iw] appears in output (oh, ow) with weight w[kh, kw] exactly when
// ih = oh*SH - PH + kh and iw = ow*SW - PW + kw, so
//
//   dL/dx[ih, iw] = sum over (kh, kw) with (ih + PH - kh) and (iw + PW - kw) divisible by the
//                   strides, and quotients oh = (ih + PH - kh)/SH, ow = (iw + PW - kw)/SW
//                   inside the output, of w[kh, kw] * g[oh, ow]                              (3)
//
//   Read the other way round ("scatter"), (3) says: every output gradient g[oh, ow] is spread
//   back over the window it came from, weighted by w. That is the general kernel below.
//   With stride 1, (3) simplifies: substituting kh' = KH-1-kh, kw' = KW-1-kw,
//
//   dL/dx[ih, iw] = sum_{kh', kw'} w[KH-1-kh', KW-1-kw'] * g[ih - (KH-1-PH) + kh', iw - (KW-1-PW) + kw']
//
//   which is the forward pass (1) applied to g, with the kernel rotated by 180 degrees and
//   padding KH-1-PH: the stride-1 backward-data pass IS a depthwise convolution, and reuses the
//   forward's loops. With stride 2 only every other kh (and kw) reaches a given ih (iw): the
//   parity of ih + PH decides which, so even and odd input rows get different sums.
//
// backward-bias: dL/db = sum_{n, oh, ow} g[oh, ow] (conv2d_backward_bias in conv.cpp).
//
// ---- Three ways through a plane ----------------------------------------------------------------
// Each (n, c) plane is independent, so every pass is a loop over planes (forward, backward-data:
// N*C of them, split across threads; backward-weight: per channel, over the batch). How one plane
// is computed depends on its size (measured on MobileNetV2's layers, bench_kernels_depthwise):
//
//   tiny planes   (at most 64 pixels in and out, 1024 pairs: 4x4, 2x2, 1x1, 8x8 -> 4x4): the plane
//                 as a small dense matrix, built once per channel (the weight gradient only up
//                 to 256 pairs: 8x8 -> 4x4 goes through the 3x3 path);
//   3x3, stride 1 or 2 (every other MobileNetV2 layer): "flat polyphase" planes, the whole plane
//                 one branch-free loop of nine shifted loads; on AVX-512 CPUs, for padding 1
//                 (forward; backward-data with stride 1, and with stride 2 on rows of 32 and
//                 more), straight from the input instead, four output rows at a time, with the
//                 same bits (below, "straight from the input"); there also the 4x4 and 2x2
//                 stride-1 planes, which otherwise take the tiny path, as permuted vectors;
//   anything else (5x5, stride 3, mixed strides): the general phase-plane path, any kernel,
//                 stride and padding.
//
// Every path sums in float with the reference's order of terms where it can (forward: (kh, kw)
// order, then the bias) and is checked against the `_ref` twins at the bottom of this file.
//
// Measured (bench_kernels_depthwise, one thread, CPU time, 64x64 input at batch 32, sum over the
// distinct layers; forward / backward-data / backward-weight): the previous version (padded
// plane per row with a per-pixel border for stride 2, channel-last blocks with scalar transposes
// for planes up to 64-256 pixels) 9.0 / 11.0 / 10.6 ms, this one 4.6 / 4.4 / 6.0 ms. What the
// profiles said on the way: per-pixel border code and per-row calls dominated the wide planes;
// transposes, not arithmetic, dominated the channel-last blocks; a horizontal sum per row of dy
// dominated the weight gradient; and an integer division per row cost more than a small row.
#include "nn/kernels/depthwise.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "nn/kernels/common.h"

namespace sleepnet::kernels {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Threads for a pass: one more thread per 32k multiply-adds (below 64k a pass runs on one thread:
// waking the team costs more; see common.h).
int pass_threads(const Conv2dGeom& g) { return threads_for(g.N * g.C * g.OH() * g.OW() * g.KH * g.KW, 1 << 15); }

void check_depthwise(const Conv2dGeom& g, const char* who) {
  g.validate(who);
  require(g.groups == g.C && g.OC == g.C, who, [&] {
    return "depthwise convolution needs groups == C == OC (channel multiplier 1), got C = " + std::to_string(g.C) +
           ", OC = " + std::to_string(g.OC) + ", groups = " + std::to_string(g.groups) + " (nn/kernels/depthwise.h)";
  });
}

// ---- fixed-width blocks ------------------------------------------------------------------------------
// Rows here are short (7 to 112 floats), and a loop over a runtime number of floats compiles to a
// vector body plus a scalar remainder loop that, on rows of 7 to 28 outputs, cost as much as the
// body. So the loops over a row run in whole blocks of B = 16, 8 or 4 floats: a loop of
// compile-time length 16 is exactly one AVX-512 register (two AVX2 ones, four SSE2 ones), with no
// remainder. When B does not divide n, the last block overlaps the one before it: those outputs
// are computed twice from the same inputs in the same order, so they get the same values. That
// is only allowed where a block's outputs do not feed its own inputs (copies, and outputs computed
// from a separate input): every user below is of that kind.
//
// The helpers take the block as a lambda marked SLEEPNET_INLINE (always_inline): inside a
// multiversioned function, a lambda the compiler chose not to inline would be a separate function
// compiled for baseline x86-64 (SSE2), and would be called once per block.
#define SLEEPNET_INLINE __attribute__((always_inline))
template <int64_t B>
using Width = std::integral_constant<int64_t, B>;
constexpr int64_t kLanes = 16;  // floats per block, and per group of the weight gradient's sums

// f(Width<B>{}) with B the widest of 16, 8, 4 not above n; f(Width<1>{}) below 4. Choosing the
// width once per plane keeps the branch out of the row loops.
template <class F>
[[gnu::always_inline]] inline void with_width(int64_t n, F&& f) {
  if (n >= 16) f(Width<16>{});
  else if (n >= 8) f(Width<8>{});
  else if (n >= 4) f(Width<4>{});
  else f(Width<1>{});
}

// block(i, Width<B>{}) for blocks of B floats covering [0, n) (n >= B), the last one overlapping.
template <int64_t B, class Block>
[[gnu::always_inline]] inline void blocks_of(Width<B> w, int64_t n, Block&& block) {
  int64_t i = 0;
  for (; i + B <= n; i += B) block(i, w);
  if (i < n) block(n - B, w);
}

// The same with the width chosen from n.
template <class Block>
[[gnu::always_inline]] inline void for_blocks(int64_t n, Block&& block) {
  with_width(n, [&](auto w) SLEEPNET_INLINE { blocks_of(w, n, block); });
}

template <int64_t B>
[[gnu::always_inline]] inline void move_block(float* __restrict d, const float* __restrict s, Width<B>) {
#pragma omp simd
  for (int64_t i = 0; i < B; ++i) d[i] = s[i];
}

// d[0, n) = s[0, n): a few vector moves and no library call.
[[gnu::always_inline]] inline void copy_floats(float* d, const float* s, int64_t n) {
  for_blocks(n, [&](int64_t i, auto w) SLEEPNET_INLINE { move_block(d + i, s + i, w); });
}

// rows x n floats: row r from s + r*ss to d + r*ds (the block width chosen once for all rows).
[[gnu::always_inline]] inline void copy_rows(float* d, int64_t ds, const float* s, int64_t ss, int64_t rows,
                                             int64_t n) {
  if (n <= 0) return;
  with_width(n, [&](auto w) SLEEPNET_INLINE {
    for (int64_t r = 0; r < rows; ++r)
      blocks_of(w, n, [&](int64_t i, auto w2) SLEEPNET_INLINE { move_block(d + r * ds + i, s + r * ss + i, w2); });
  });
}

// d[0, n) = 0: the few padding floats of a row without a library call.
[[gnu::always_inline]] inline void zero_floats(float* d, int64_t n) {
  if (n > 4) std::memset(d, 0, sizeof(float) * static_cast<size_t>(n));
  else
    for (int64_t i = 0; i < n; ++i) d[i] = 0.f;
}

// ---- the general path: phase planes ------------------------------------------------------------------
// Any kernel, stride and padding (5x5, stride 3, mixed strides; MobileNetV2 never comes here). Tap
// (kh, kw) of output (oh, ow) touches input pixel (oh*SH - PH + kh, ow*SW - PW + kw). Two tricks
// make every inner loop branch-free and contiguous:
//
//   1. Copy the plane once into a zero-padded buffer (padded row r = ih + PH, column c = iw + PW):
//      taps that fall in the padding read zeros, so no loop needs a bounds check and the border
//      needs no code of its own.
//   2. Split each padded row into SW "phases", plane[r][q][j] = padded[r][j*SW + q] (for stride 2:
//      the even columns, then the odd ones). Then
//
//        tap (kh, kw) of output (oh, ow) = plane[oh*SH + kh][kw % SW][ow + kw / SW]
//
//      is contiguous in ow: a stride-2 convolution reads memory like a stride-1 one.
//
// The plane has Hp = (OH-1)*SH + KH rows and covers Wp = (OW-1)*SW + KW columns: exactly what the
// taps read (trailing input rows or columns no output reaches are left out).
// Forward and backward-weight read the plane; backward-data, being the transpose of the forward,
// adds into a zeroed plane and then applies the transpose of the copy: each input pixel takes
// the value of its one slot (cropping the padding and merging the phases). (The 3x3 fast path
// above generalises the same idea to rows: its phases split the rows by the stride too.)

struct PhasePlane {
  int64_t rows = 0, S = 1, len = 0;  // Hp rows, S phases per row, each `len` floats
  int64_t step = 1;                  // distance between the taps of consecutive outputs: SW / S
  float* data = nullptr;
  int64_t size() const { return rows * S * len; }
  float* row(int64_t r, int64_t q) const { return data + (r * S + q) * len; }
  // The plane row that tap (kh, kw) of output row oh reads; output ow is at [ow * step].
  float* tap(int64_t SH, int64_t oh, int64_t kh, int64_t kw) const { return row(oh * SH + kh, kw % S) + kw / S; }
};

// split: one phase per stride step (contiguous taps), or the padded rows as they are (S = 1,
// taps read every SW-th float).
PhasePlane phase_plane(const Conv2dGeom& g, bool split) {
  const int64_t Wp = (g.OW() - 1) * g.SW + g.KW;
  const int64_t S = split ? g.SW : 1;
  PhasePlane P{(g.OH() - 1) * g.SH + g.KH, S, ceil_div(Wp, S), g.SW / S, nullptr};
  P.data = scratch(0, P.size());
  return P;
}

// plane <- padded, phase-split copy of the input plane x [H, W].
void fill_plane(const Conv2dGeom& g, const float* __restrict x, const PhasePlane& P) {
  const int64_t H = g.H, W = g.W, PH = g.PH, PW = g.PW, S = P.S, len = P.len;
  for (int64_t q = 0; q < S; ++q) {
    // slots j whose input column iw = j*S + q - PW lies in [0, W): [lo, hi)
    const int64_t lo = std::min(len, PW - q > 0 ? ceil_div(PW - q, S) : int64_t{0});
    const int64_t last = W - 1 + PW - q;
    const int64_t hi = std::max(lo, last < 0 ? int64_t{0} : std::min(len, last / S + 1));
    for (int64_t r = 0; r < P.rows; ++r) {
      const int64_t ih = r - PH;
      float* __restrict o = P.row(r, q);
      if (ih < 0 || ih >= H) {
        for (int64_t j = 0; j < len; ++j) o[j] = 0.f;
        continue;
      }
      const float* __restrict xr = x + ih * W;
      zero_floats(o, lo);
      if (S == 1) {
        copy_floats(o + lo, xr + lo - PW, hi - lo);
      } else if (S == 2) {  // constant stride: the compiler vectorizes the de-interleave
        const float* __restrict xq = xr + q - PW;
        for (int64_t j = lo; j < hi; ++j) o[j] = xq[2 * j];
      } else {
        for (int64_t j = lo; j < hi; ++j) o[j] = xr[j * S + q - PW];
      }
      zero_floats(o + hi, len - hi);
    }
  }
}

// dx [H, W] <- the transpose of fill_plane applied to P: each pixel's slot (0 if none).
void unfill_plane(const Conv2dGeom& g, const PhasePlane& P, float* __restrict dx) {
  const int64_t H = g.H, W = g.W, PH = g.PH, PW = g.PW, S = P.S, len = P.len;
  for (int64_t ih = 0; ih < H; ++ih) {
    float* __restrict d = dx + ih * W;
    const int64_t r = ih + PH;
    if (r >= P.rows) {
      std::memset(d, 0, sizeof(float) * W);
      continue;
    }
    if (S == 1) {
      const float* __restrict src = P.row(r, 0);
      const int64_t n = std::min(W, len - PW);  // columns covered by the plane
      for (int64_t iw = 0; iw < n; ++iw) d[iw] = src[iw + PW];
      for (int64_t iw = std::max<int64_t>(n, 0); iw < W; ++iw) d[iw] = 0.f;
    } else if (S == 2) {  // merge the even and odd phases back into one row
      const float* __restrict ev = P.row(r, 0);
      const float* __restrict od = P.row(r, 1);
      int64_t iw = 0;
      if (PW % 2 == 1 && W > 0) d[iw++] = od[PW / 2];  // start on an even padded column
      const int64_t pairs = std::max<int64_t>(0, std::min((W - iw) / 2, len - (iw + PW) / 2));
      const int64_t j0 = (iw + PW) / 2;
      for (int64_t k = 0; k < pairs; ++k) {
        d[iw + 2 * k] = ev[j0 + k];
        d[iw + 2 * k + 1] = od[j0 + k];
      }
      for (iw += 2 * pairs; iw < W; ++iw) {
        const int64_t c = iw + PW, j = c / 2;
        d[iw] = j < len ? P.row(r, c % 2)[j] : 0.f;
      }
    } else {
      for (int64_t iw = 0; iw < W; ++iw) {
        const int64_t c = iw + PW, j = c / S;
        d[iw] = j < len ? P.row(r, c % S)[j] : 0.f;
      }
    }
  }
}

// sum_i a[i] * b[i * step] in double (float partial sums in vector lanes for steps 1 and 2, which
// `omp simd` allows; callers keep n to one row, so the float partials stay accurate).
template <int STEP>
double dot_lanes(const float* __restrict a, const float* __restrict b, int64_t n) {
  simd_acc s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i * STEP];
  return s;
}

SLEEPNET_MULTIVERSION double dot_lanes_1(const float* a, const float* b, int64_t n) { return dot_lanes<1>(a, b, n); }
SLEEPNET_MULTIVERSION double dot_lanes_2(const float* a, const float* b, int64_t n) { return dot_lanes<2>(a, b, n); }

double dot_lanes(const float* a, const float* b, int64_t n, int64_t step) {
  if (step == 1) return dot_lanes_1(a, b, n);
  if (step == 2) return dot_lanes_2(a, b, n);
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i * step];
  return s;
}

// t[i] += w * g[i]: one tap of the backward-data scatter.
SLEEPNET_MULTIVERSION void axpy(float* __restrict t, const float* __restrict g, float w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) t[i] += w * g[i];
}

// y [OH, OW] = formula (1) for one plane: the plane filled, then every tap a (strided) plane row.
void forward_plane(const Conv2dGeom& g, const float* x, const float* w, float b, float* y) {
  const PhasePlane P = phase_plane(g, false);
  fill_plane(g, x, P);
  const int64_t OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW, step = P.step;
  for (int64_t oh = 0; oh < OH; ++oh) {
    float* __restrict o = y + oh * OW;
    std::fill(o, o + OW, 0.f);
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) {
        const float wv = w[kh * KW + kw];
        const float* __restrict t = P.tap(g.SH, oh, kh, kw);
        for (int64_t ow = 0; ow < OW; ++ow) o[ow] += wv * t[ow * step];
      }
    for (int64_t ow = 0; ow < OW; ++ow) o[ow] += b;
  }
}

// dx [H, W] = formula (3) for one plane. Stride 1 with padding <= K - 1: the forward on dy with the
// kernel rotated by 180 degrees and padding K - 1 - P (see the derivation at the top); otherwise
// the scatter: every dy row is added, times each weight, to the plane rows its taps read, and the
// plane is folded back onto the input.
void backward_data_plane(const Conv2dGeom& g, const float* dy, const float* w, float* dx) {
  const int64_t KH = g.KH, KW = g.KW, OW = g.OW();
  if (g.SH == 1 && g.SW == 1 && g.PH <= KH - 1 && g.PW <= KW - 1) {
    Conv2dGeom t = g;
    t.H = g.OH(), t.W = g.OW(), t.PH = KH - 1 - g.PH, t.PW = KW - 1 - g.PW;  // t.OH() == H, t.OW() == W
    float* rot = scratch(1, KH * KW);
    for (int64_t k = 0; k < KH * KW; ++k) rot[k] = w[KH * KW - 1 - k];
    forward_plane(t, dy, rot, 0.f, dx);
    return;
  }
  const PhasePlane P = phase_plane(g, true);  // split: step 1
  std::fill(P.data, P.data + P.size(), 0.f);
  for (int64_t oh = 0; oh < g.OH(); ++oh) {
    const float* __restrict gr = dy + oh * OW;
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) axpy(P.tap(g.SH, oh, kh, kw), gr, w[kh * KW + kw], OW);
  }
  unfill_plane(g, P, dx);
}

// acc[kh*KW + kw] += formula (2) for one plane: for each output row and tap, a dot product of the
// dy row with the tap's plane row (padding contributes zeros).
void backward_weight_plane(const Conv2dGeom& g, const PhasePlane& P, const float* x, const float* dy, double* acc) {
  fill_plane(g, x, P);
  const int64_t OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW;
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw)
        acc[kh * KW + kw] += dot_lanes(dy + oh * OW, P.tap(g.SH, oh, kh, kw), OW, P.step);
}

// ---- tiny planes: a plane as a small matrix -------------------------------------------------------
// Late MobileNetV2 layers have tiny planes (4x4 and 2x2 at a 64x64 input, down to 1x1 at 32x32)
// and hundreds of channels. A row of 2 or 4 pixels leaves a vector register mostly empty, and the
// padded plane of the flat path is mostly padding, so for planes with at most 64 pixels in and out
// and at most 1024 (input, output) pairs (4x4, 2x2, 1x1, and 8x8 -> 4x4 with stride 2) the
// convolution of one channel is written as the matrix it is:
//
//   y_plane [OHW] = M_c [OHW, HW] x_plane [HW],   M_c[o][q] = w_c[kh, kw] when tap (kh, kw) of
//                                                 output o reads pixel q, else 0
//
// (the taps of one output read different pixels, so an entry holds at most one weight; padding is
// the zero entries; any kernel size, stride and padding). M_c is built once per channel and used
// for all N images. Per image the product is HW multiply-adds of a vector of OHW outputs by a
// broadcast input pixel: for a 4x4 plane 16 vector operations for 16 outputs, with no copies, no
// shuffles and no border code. The backward passes use the same matrix:
//
//   backward-data:   dx_plane = M_c^T dy_plane
//   backward-weight: D = sum over images of x_plane dy_plane^T  [HW, OHW]; dw[k] = the sum of the
//                    entries (q, o) of D where tap k of output o reads pixel q (formula (2))
//
// Summation order: y sums its terms in pixel order, which for one output is the reference's (kh, kw)
// order; zero entries add w * 0 = 0.

bool tiny_planes(const Conv2dGeom& g, int64_t max_pairs = 1024) {
  const int64_t HW = g.H * g.W, OHW = g.OH() * g.OW();
  return HW <= 64 && OHW <= 64 && HW * OHW <= max_pairs;
}
// The weight gradient's tiny path builds the whole [HW, OHW] outer product per image: at 1024 pairs
// (8x8 -> 4x4, stride 2) that is 1024 sums in memory for ~120 useful products, and the stacked 3x3
// path was 1.7x faster (192x8x8 stride 2 at batch 32: 285 -> 170 us, one thread). At 256 pairs
// (4x4 stride 1) the sums fit in registers and the tiny path stays 2.5x faster.
constexpr int64_t kTinyPairsWeight = 256;

// The (input pixel q, output o) pairs a tap links, once per call: tap k = kh*KW + kw of output o
// reads pixel q.
struct TinyLinks {
  int64_t HW = 0, OHW = 0;
  std::vector<int32_t> q, o, k;
  explicit TinyLinks(const Conv2dGeom& g) : HW(g.H * g.W), OHW(g.OH() * g.OW()) {
    const int64_t OH = g.OH(), OW = g.OW();
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t kh = 0; kh < g.KH; ++kh)
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            const int64_t ih = oh * g.SH - g.PH + kh, iw = ow * g.SW - g.PW + kw;
            if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
            q.push_back(static_cast<int32_t>(ih * g.W + iw));
            o.push_back(static_cast<int32_t>(oh * OW + ow));
            k.push_back(static_cast<int32_t>(kh * g.KW + kw));
          }
  }
  // A = M_c^T as [HW][OHW] (transposed = false: row q holds pixel q's weight in every output, what
  // the forward multiplies by x[q]) or M_c as [OHW][HW] (transposed = true, for backward-data).
  void matrix(const float* wc, bool transposed, float* A) const {
    std::fill(A, A + HW * OHW, 0.f);
    for (size_t i = 0; i < q.size(); ++i)
      A[transposed ? o[i] * HW + q[i] : q[i] * OHW + o[i]] = wc[k[i]];
  }
};

// y_p[o] = sum_q A[q][o] * x_p[q] (+ bias) for `count` planes (x_p = x + p*xs, y_p = y + p*ys).
// Four planes at a time: four independent accumulator chains share each loaded row of A.
template <int IN, int OUT, bool BIAS>
[[gnu::always_inline]] inline void matvec_planes(int64_t in_, int64_t out_, const float* __restrict A,
                                                 const float* __restrict x, int64_t xs, float* __restrict y,
                                                 int64_t ys, int64_t count, float bias) {
  const int64_t in = IN > 0 ? IN : in_, out = OUT > 0 ? OUT : out_;
  constexpr int kMax = OUT > 0 ? OUT : 64;
  int64_t p = 0;
  for (; p + 4 <= count; p += 4) {
    float a0[kMax], a1[kMax], a2[kMax], a3[kMax];
    for (int64_t o = 0; o < out; ++o) a0[o] = a1[o] = a2[o] = a3[o] = 0.f;
    const float *__restrict x0 = x + p * xs, *__restrict x1 = x0 + xs;
    const float *__restrict x2 = x1 + xs, *__restrict x3 = x2 + xs;
    for (int64_t q = 0; q < in; ++q) {
      const float v0 = x0[q], v1 = x1[q], v2 = x2[q], v3 = x3[q];
      const float* __restrict aq = A + q * out;
#pragma omp simd
      for (int64_t o = 0; o < out; ++o) {
        a0[o] += aq[o] * v0;
        a1[o] += aq[o] * v1;
        a2[o] += aq[o] * v2;
        a3[o] += aq[o] * v3;
      }
    }
    float *__restrict y0 = y + p * ys, *__restrict y1 = y0 + ys, *__restrict y2 = y1 + ys, *__restrict y3 = y2 + ys;
#pragma omp simd
    for (int64_t o = 0; o < out; ++o) {
      y0[o] = BIAS ? a0[o] + bias : a0[o];
      y1[o] = BIAS ? a1[o] + bias : a1[o];
      y2[o] = BIAS ? a2[o] + bias : a2[o];
      y3[o] = BIAS ? a3[o] + bias : a3[o];
    }
  }
  for (; p < count; ++p) {
    float a0[kMax];
    for (int64_t o = 0; o < out; ++o) a0[o] = 0.f;
    const float* __restrict x0 = x + p * xs;
    for (int64_t q = 0; q < in; ++q) {
      const float v0 = x0[q];
      const float* __restrict aq = A + q * out;
#pragma omp simd
      for (int64_t o = 0; o < out; ++o) a0[o] += aq[o] * v0;
    }
    float* __restrict y0 = y + p * ys;
#pragma omp simd
    for (int64_t o = 0; o < out; ++o) y0[o] = BIAS ? a0[o] + bias : a0[o];
  }
}

template <bool BIAS>
[[gnu::always_inline]] inline void matvec_any(int64_t in, int64_t out, const float* A, const float* x, int64_t xs,
                                              float* y, int64_t ys, int64_t count, float bias) {
  // The shapes MobileNetV2 has, unrolled at compile time; any other through the runtime loops.
  if (in == 16 && out == 16) return matvec_planes<16, 16, BIAS>(in, out, A, x, xs, y, ys, count, bias);
  if (in == 4 && out == 4) return matvec_planes<4, 4, BIAS>(in, out, A, x, xs, y, ys, count, bias);
  if (in == 16 && out == 4) return matvec_planes<16, 4, BIAS>(in, out, A, x, xs, y, ys, count, bias);
  if (in == 4 && out == 16) return matvec_planes<4, 16, BIAS>(in, out, A, x, xs, y, ys, count, bias);
  if (in == 64 && out == 16) return matvec_planes<64, 16, BIAS>(in, out, A, x, xs, y, ys, count, bias);
  if (in == 16 && out == 64) return matvec_planes<16, 64, BIAS>(in, out, A, x, xs, y, ys, count, bias);
  matvec_planes<0, 0, BIAS>(in, out, A, x, xs, y, ys, count, bias);
}

SLEEPNET_MULTIVERSION void tiny_matvec(int64_t in, int64_t out, const float* A, const float* x, int64_t xs, float* y,
                                       int64_t ys, int64_t count, const float* bias) {
  if (bias) matvec_any<true>(in, out, A, x, xs, y, ys, count, *bias);
  else matvec_any<false>(in, out, A, x, xs, y, ys, count, 0.f);
}

// D[q][o] = sum over `count` planes of x_p[q] * dy_p[o]   (D: [in][out] floats, overwritten).
// The sums stay in a local array (registers, for the shapes unrolled below) while the planes
// stream by, vectorised along the longer of the two sides: along o (one broadcast x_p[q] times
// the dy_p vector per pixel) or along q (one broadcast dy_p[o] times the x_p vector per output).
template <int IN, int OUT>
[[gnu::always_inline]] inline void outer_planes(const float* __restrict x, int64_t xs, const float* __restrict dy,
                                                int64_t ys, int64_t count, float* __restrict D) {
  float acc[IN * OUT];
  for (int i = 0; i < IN * OUT; ++i) acc[i] = 0.f;
  for (int64_t p = 0; p < count; ++p) {
    const float *__restrict xp = x + p * xs, *__restrict gp = dy + p * ys;
    if (OUT >= IN) {
      for (int q = 0; q < IN; ++q) {
        const float v = xp[q];
#pragma omp simd
        for (int o = 0; o < OUT; ++o) acc[q * OUT + o] += v * gp[o];
      }
    } else {
      for (int o = 0; o < OUT; ++o) {
        const float v = gp[o];
#pragma omp simd
        for (int q = 0; q < IN; ++q) acc[o * IN + q] += v * xp[q];
      }
    }
  }
  for (int q = 0; q < IN; ++q)
    for (int o = 0; o < OUT; ++o) D[q * OUT + o] = OUT >= IN ? acc[q * OUT + o] : acc[o * IN + q];
}

SLEEPNET_MULTIVERSION void tiny_outer(int64_t in, int64_t out, const float* x, int64_t xs, const float* dy, int64_t ys,
                                      int64_t count, float* D) {
  if (in == 16 && out == 16) return outer_planes<16, 16>(x, xs, dy, ys, count, D);
  if (in == 16 && out == 4) return outer_planes<16, 4>(x, xs, dy, ys, count, D);
  if (in == 4 && out == 4) return outer_planes<4, 4>(x, xs, dy, ys, count, D);
  if (in == 64 && out == 16) return outer_planes<64, 16>(x, xs, dy, ys, count, D);
  if (in == 4 && out == 1) return outer_planes<4, 1>(x, xs, dy, ys, count, D);
  if (in == 1 && out == 1) return outer_planes<1, 1>(x, xs, dy, ys, count, D);
  std::fill(D, D + in * out, 0.f);  // any other shape: the same sums, runtime loops
  for (int64_t p = 0; p < count; ++p) {
    const float *__restrict xp = x + p * xs, *__restrict gp = dy + p * ys;
    for (int64_t q = 0; q < in; ++q) {
      const float v = xp[q];
      float* __restrict d = D + q * out;
#pragma omp simd
      for (int64_t o = 0; o < out; ++o) d[o] += v * gp[o];
    }
  }
}

// The forward and backward-data passes over tiny planes: out plane (n, c) = A_c in plane (n, c),
// with A_c built from channel c's weights (transposed for backward-data). Blocking: a thread's
// channels go in blocks of kTinyChannels, whose matrices are built once; then for each group of
// kTinyImages images, every channel of the block in turn. So consecutive calls read neighbouring
// planes (plane (n, c + 1) follows (n, c) in memory) instead of one channel's planes C*H*W floats
// apart across the whole batch (a 64-byte plane per 36 KB jump at 576x4x4, batch 32), and each
// output is computed exactly as before (same matrix, same order of terms).
constexpr int64_t kTinyChannels = 16, kTinyImages = 8;

void tiny_pass(const Conv2dGeom& g, const TinyLinks& links, bool transposed, const float* in, const float* w,
               const float* bias, float* out) {
  const int64_t C = g.C, KK = g.KH * g.KW, HW = g.H * g.W, OHW = g.OH() * g.OW();
  const int64_t n_in = transposed ? OHW : HW, n_out = transposed ? HW : OHW;  // floats per plane
  parallel_for(C, pass_threads(g), [&](int64_t c0, int64_t c1) {
    float* A = scratch(0, kTinyChannels * HW * OHW);  // the block's matrices, one after the other
    for (int64_t cb = c0; cb < c1; cb += kTinyChannels) {
      const int64_t ce = std::min(c1, cb + kTinyChannels);
      for (int64_t c = cb; c < ce; ++c) links.matrix(w + c * KK, transposed, A + (c - cb) * HW * OHW);
      for (int64_t n = 0; n < g.N; n += kTinyImages)
        for (int64_t c = cb; c < ce; ++c)
          tiny_matvec(n_in, n_out, A + (c - cb) * HW * OHW, in + (n * C + c) * n_in, C * n_in,
                      out + (n * C + c) * n_out, C * n_out, std::min(kTinyImages, g.N - n), bias ? bias + c : nullptr);
    }
  });
}

void forward_tiny(const Conv2dGeom& g, const float* x, const float* w, const float* bias, float* y) {
  tiny_pass(g, TinyLinks(g), false, x, w, bias, y);
}

void backward_data_tiny(const Conv2dGeom& g, const float* dy, const float* w, float* dx) {
  tiny_pass(g, TinyLinks(g), true, dy, w, nullptr, dx);
}

void backward_weight_tiny(const Conv2dGeom& g, const float* x, const float* dy, float* dw) {
  const int64_t C = g.C, HW = g.H * g.W, OHW = g.OH() * g.OW(), KK = g.KH * g.KW;
  const TinyLinks links(g);
  constexpr int64_t kImages = 64;  // images summed in float before the sums go to double
  parallel_for(C, pass_threads(g), [&](int64_t c0, int64_t c1) {
    std::vector<double> acc(static_cast<size_t>(KK));
    float* D = scratch(0, HW * OHW);
    for (int64_t c = c0; c < c1; ++c) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t n0 = 0; n0 < g.N; n0 += kImages) {
        const int64_t cnt = std::min(kImages, g.N - n0);
        tiny_outer(HW, OHW, x + (n0 * C + c) * HW, C * HW, dy + (n0 * C + c) * OHW, C * OHW, cnt, D);
        for (size_t i = 0; i < links.q.size(); ++i)
          acc[static_cast<size_t>(links.k[i])] += D[links.q[i] * OHW + links.o[i]];
      }
      for (int64_t k = 0; k < KK; ++k) dw[c * KK + k] = static_cast<float>(acc[static_cast<size_t>(k)]);
    }
  });
}

// ---- 3x3 fast path: flat polyphase planes --------------------------------------------------------
// Every MobileNetV2 depthwise layer is 3x3 (padding 1, stride 1 or 2). For 3x3 kernels with stride
// 1 or 2 in both directions (any padding) each plane goes through ONE multiversioned function
// (copy in, arithmetic, copy out), so there is no call or CPU dispatch per row and every loop is
// compiled for the machine's instruction set.
//
// Phases. The zero-padded plane is split by the strides into SH x SW phase planes,
//
//   phase (a, b), row i, slot j  =  padded pixel (i*SH + a, j*SW + b)  =  x[i*SH + a - PH, j*SW + b - PW]
//
// each RH rows of `len` floats, one phase after the other in memory (stride 1: one phase, the
// padded plane itself; stride 2: even rows/even columns, even/odd, odd/even, odd/odd). Tap
// (kh, kw) of output (oh, ow) is padded pixel (oh*SH + kh, ow*SW + kw): phase (kh % SH, kw % SW),
// row oh + kh / SH, slot ow + kw / SW. Number the outputs u = oh * len + ow (output rows padded to
// `len` too) and every tap is a constant offset from u:
//
//   tap (kh, kw) of output u  =  data[off(kh, kw) + u],   off = phase start + (kh / SH) * len + kw / SW
//
// so a plane is nine shifted, contiguous, branch-free loads per vector of outputs, for either
// stride: no border code (the border's taps read the padding's zeros) and no strided loads. The
// columns ow in [OW, len) are computed too and thrown away (2 of 34 at 32x32).
//
// Per plane: the input's pixels are copied into this thread's phases (the padding is zeroed once
// per call and never written; stride 2 splits each row into even and odd columns in one pass
// that reads x once), the arithmetic runs, and the outputs are copied out without the padding.
// Wide rows (OW >= 16) skip that last copy: each output row is one loop over ow, written
// straight into y; with stride 1 two output rows at a time (register blocking):
//
//      plane row  r0  ──┐
//                 r1  ──┼── output row oh     = taps of r0, r1, r2
//                 r2  ──┼── output row oh + 1 = taps of r1, r2, r3
//                 r3  ──┘
//
//   rows r1 and r2 are loaded once for both outputs: 12 vector loads per 18 multiply-adds
//   instead of 18.
//
// Every output is summed in the reference's order ((kh, kw) order, then the bias); padding taps
// add w * 0 = 0. Only FMA contraction in the AVX-512/AVX2 clones makes them differ (last bit).

// K planes can be stacked: each phase then holds K planes' rows one after the other (plane k at
// k * RH * len), so output u of plane k is U = k * RH * len + u and the taps keep their constant
// offsets: one loop over U covers K planes (the backward-weight pass stacks the small planes of
// one channel that way, to reduce its sums once per stack instead of once per plane).
// (Strides are 1 or 2 here, so the per-row arithmetic uses shifts: an integer division costs tens
// of cycles, more than a whole row of a small plane.)
struct Phases {
  int64_t SH = 1, SW = 1, RH = 0, len = 0, OH = 0, OW = 0, K = 1;
  int64_t off[9] = {};  // tap k = kh*3 + kw of output u is data[off[k] + u]
  float* data = nullptr;
  int64_t plane() const { return RH * len; }  // floats of one plane in one phase
  int64_t size() const { return SH * SW * K * plane(); }
  float* row(int64_t a, int64_t b, int64_t i, int64_t k = 0) const {
    return data + ((a * SW + b) * K + k) * plane() + i * len;
  }
  int64_t n() const { return (OH - 1) * len + OW; }  // u in [0, n) covers every real output
};

// This thread's phases for g with K stacked planes (scratch slot 0), padding zeroed.
Phases make_phases(const Conv2dGeom& g, int64_t K = 1) {
  Phases P;
  P.SH = g.SH, P.SW = g.SW, P.OH = g.OH(), P.OW = g.OW(), P.K = K;
  P.RH = P.OH + (g.KH - 1) / g.SH;  // rows oh + kh / SH, kh <= KH - 1
  P.len = P.OW + (g.KW - 1) / g.SW;
  for (int64_t kh = 0; kh < 3; ++kh)
    for (int64_t kw = 0; kw < 3; ++kw)
      P.off[kh * 3 + kw] = ((kh % P.SH) * P.SW + kw % P.SW) * K * P.plane() + (kh / P.SH) * P.len + kw / P.SW;
  P.data = scratch(0, P.size() + kLanes);  // + slack: the weight gradient reads whole groups of 16
  std::memset(P.data, 0, sizeof(float) * static_cast<size_t>(P.size() + kLanes));
  return P;
}

// P <- the pixels of the input plane x [H, W] (P's padding stays zero). With SW = 2 the input
// columns pair up: x[2k] and x[2k + 1] land in the two column phases at slots k + PW/2 and
// k + (PW + 1)/2, so one loop reads x once and writes both contiguously.
// `stack`: which of P's K stacked planes to fill.
// Input planes up to this many floats (16 KB) are copied in run by run (see fill_phases_s).
constexpr int64_t kL1Plane = 4096;

template <int64_t SH, int64_t SW>
[[gnu::always_inline]] inline void fill_phases_s(const Conv2dGeom& g, const float* __restrict x, const Phases& P,
                                                 int64_t stack) {
  const int64_t PH = g.PH, PW = g.PW, H = g.H, W = g.W, len = P.len;
  // SW = 2: x[2k] -> column phase qa, slot k + oa; x[2k + 1] -> the other phase, slot k + ob
  const int64_t qa = PW & 1, oa = PW >> 1, ob = (PW + 1) >> 1;
  const int64_t pairs = std::max<int64_t>(0, std::min(W >> 1, len - std::max(oa, ob)));
  // Input row ih = k*SH + t is padded row r = ih + PH: row phase r % SH, phase row r / SH. For each
  // t < SH (one or two "runs"), rows k = 0, 1, ... go to consecutive rows of one row phase, so a
  // run is a base pointer plus k * len.
  float* dst[SH][SW];  // where x[k*SH + t][0] (and, SW = 2, x[...][1]) goes for k = 0
  int64_t rows[SH];    // input rows of run t that some output reaches
  for (int64_t t = 0; t < SH; ++t) {
    const int64_t r = t + PH, a = r % SH, i0 = r / SH;
    rows[t] = std::max<int64_t>(0, std::min((H - t + SH - 1) / SH, P.RH - i0));
    if (SW == 1) dst[t][0] = P.row(a, 0, i0, stack) + PW;
    else dst[t][0] = P.row(a, qa, i0, stack) + oa, dst[t][SW - 1] = P.row(a, 1 - qa, i0, stack) + ob;
  }
  const int64_t n = SW == 1 ? std::min(W, len - PW) : pairs;  // floats (SW = 1) or pairs per row
  const int64_t krows = SH == 1 ? rows[0] : std::max(rows[0], rows[SH - 1]);
  if (n > 0)
    with_width(n, [&](auto w) SLEEPNET_INLINE {  // the block width chosen once per plane
      auto row = [&](int64_t k, int64_t t) SLEEPNET_INLINE {  // input row k*SH + t into its phases
        const float* __restrict xr = x + (k * SH + t) * W;
        if constexpr (SW == 1) {
          float* __restrict o = dst[t][0] + k * len;
          blocks_of(w, n, [&](int64_t j, auto B) SLEEPNET_INLINE { move_block(o + j, xr + j, B); });
        } else {
          float *__restrict ea = dst[t][0] + k * len, *__restrict eb = dst[t][1] + k * len;
          blocks_of(w, n, [&](int64_t j, auto B) SLEEPNET_INLINE {  // de-interleave B pairs of columns
#pragma omp simd
            for (int64_t i = 0; i < B; ++i) {
              ea[j + i] = xr[2 * (j + i)];
              eb[j + i] = xr[2 * (j + i) + 1];
            }
          });
        }
      };
      // Order (measured): a plane that fits in L1 run by run (SH = 2: the even rows, then the odd
      // ones); a larger one in input order, so that x streams through once (run by run was 1.2x
      // slower on the 112x112 stride-2 planes, in input order 1.3x slower on 32x32 ones).
      if (SH == 1 || H * W <= kL1Plane) {
        for (int64_t t = 0; t < SH; ++t)
          for (int64_t k = 0; k < rows[t]; ++k) row(k, t);
      } else {
        for (int64_t k = 0; k < krows; ++k)
          for (int64_t t = 0; t < SH; ++t)
            if (k < rows[t]) row(k, t);
      }
    });
  if (SW == 2 && 2 * pairs < W)  // an odd W's last column (or columns no output reaches)
    for (int64_t ih = 0; ih < H; ++ih) {
      const int64_t r = ih + PH, a = r % SH, i = r / SH;
      if (i >= P.RH) break;
      for (int64_t iw = 2 * pairs; iw < W; ++iw) {
        const int64_t c = iw + PW;
        if ((c >> 1) < len) P.row(a, c & 1, i, stack)[c >> 1] = x[ih * W + iw];
      }
    }
}

[[gnu::always_inline]] inline void fill_phases(const Conv2dGeom& g, const float* __restrict x, const Phases& P,
                                               int64_t stack = 0) {
  if (P.SH == 1 && P.SW == 1) fill_phases_s<1, 1>(g, x, P, stack);
  else if (P.SH == 1) fill_phases_s<1, 2>(g, x, P, stack);
  else if (P.SW == 1) fill_phases_s<2, 1>(g, x, P, stack);
  else fill_phases_s<2, 2>(g, x, P, stack);
}

// The nine tap pointers of output u = 0 (tap k = kh*3 + kw at t[k][u]).
struct Taps9 {
  const float* t[9];
  explicit Taps9(const Phases& P) {
    for (int k = 0; k < 9; ++k) t[k] = P.data + P.off[k];
  }
};

// o[i] = sum_k w[k] * tap_k[u0 + i] (+ bias) for i in [0, n): n outputs of formula (1). Len: a
// Width<B> (compile-time) or int64_t.
template <bool BIAS, class Len>
[[gnu::always_inline]] inline void taps9_run(float* __restrict o, const Taps9& T, int64_t u0, const float* w,
                                             float bias, Len n) {
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
  const float *__restrict t0 = T.t[0] + u0, *__restrict t1 = T.t[1] + u0, *__restrict t2 = T.t[2] + u0;
  const float *__restrict t3 = T.t[3] + u0, *__restrict t4 = T.t[4] + u0, *__restrict t5 = T.t[5] + u0;
  const float *__restrict t6 = T.t[6] + u0, *__restrict t7 = T.t[7] + u0, *__restrict t8 = T.t[8] + u0;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float acc = w0 * t0[i];
    acc += w1 * t1[i];
    acc += w2 * t2[i];
    acc += w3 * t3[i];
    acc += w4 * t4[i];
    acc += w5 * t5[i];
    acc += w6 * t6[i];
    acc += w7 * t7[i];
    acc += w8 * t8[i];
    o[i] = BIAS ? acc + bias : acc;
  }
}

template <bool BIAS>
[[gnu::always_inline]] inline void taps9_forward(float* o, const Taps9& T, int64_t u0, const float* w, float bias,
                                                 int64_t n) {
  for_blocks(n, [&](int64_t i, auto len) SLEEPNET_INLINE { taps9_run<BIAS>(o + i, T, u0 + i, w, bias, len); });
}

// Two output rows at once (stride 1): o0 from plane rows r0..r2, o1 from r1..r3; n outputs each.
template <bool BIAS, class Len>
[[gnu::always_inline]] inline void rows2_run(float* __restrict o0, float* __restrict o1, const float* __restrict r0,
                                             const float* __restrict r1, const float* __restrict r2,
                                             const float* __restrict r3, const float* w, float bias, Len n) {
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float x10 = r1[i], x11 = r1[i + 1], x12 = r1[i + 2];  // the shared rows, loaded once
    const float x20 = r2[i], x21 = r2[i + 1], x22 = r2[i + 2];
    float p = w0 * r0[i];  // output row oh
    p += w1 * r0[i + 1];
    p += w2 * r0[i + 2];
    p += w3 * x10;
    p += w4 * x11;
    p += w5 * x12;
    p += w6 * x20;
    p += w7 * x21;
    p += w8 * x22;
    float q = w0 * x10;  // output row oh + 1
    q += w1 * x11;
    q += w2 * x12;
    q += w3 * x20;
    q += w4 * x21;
    q += w5 * x22;
    q += w6 * r3[i];
    q += w7 * r3[i + 1];
    q += w8 * r3[i + 2];
    o0[i] = BIAS ? p + bias : p;
    o1[i] = BIAS ? q + bias : q;
  }
}

template <bool BIAS>
[[gnu::always_inline]] inline void forward_rows2_3x3(float* o0, float* o1, const float* r0, const float* r1,
                                                     const float* r2, const float* r3, const float* w, float bias,
                                                     int64_t n) {
  for_blocks(n, [&](int64_t i, auto len) SLEEPNET_INLINE {
    rows2_run<BIAS>(o0 + i, o1 + i, r0 + i, r1 + i, r2 + i, r3 + i, w, bias, len);
  });
}

// Output rows at least this wide are written straight into y (no copy out).
constexpr int64_t kWideRow = 16;

// Wide rows (OW >= kWideRow): each output row straight into y.
template <bool BIAS>
[[gnu::always_inline]] inline void forward_phases(const Phases& P, const float* w, float bias, float* y) {
  const int64_t OH = P.OH, OW = P.OW, len = P.len;
  const Taps9 T(P);
  int64_t oh = 0;
  if (P.SH == 1 && P.SW == 1)
    for (; oh + 2 <= OH; oh += 2) {
      const float* r = P.data + oh * len;
      forward_rows2_3x3<BIAS>(y + oh * OW, y + (oh + 1) * OW, r, r + len, r + 2 * len, r + 3 * len, w, bias, OW);
    }
  for (; oh < OH; ++oh) taps9_forward<BIAS>(y + oh * OW, T, oh * len, w, bias, OW);
}

// y_k [OH, OW] = formula (1) for `count` <= P.K planes x_k [H, W] (x_k = x + k*xs, y_k = y + k*ys,
// plane k with the weights w + 9k and the bias b[k], or none if b is null). P: this thread's
// phases for g, K stacked planes; Y: n() floats.
// Wide rows (K = 1): copy in, then each output row straight into y. Narrow rows (OW < kWideRow,
// the 7x7 to 14x14 planes): all `count` planes are copied in first, then each is one loop over
// the whole plane into Y and its rows copied out. Copying a plane in and reading it straight back
// made the loads wait for the copy's stores (a 16-float load spanning several 4- or 8-float
// stores is not forwarded from them); with the copies of the whole stack done first, they are.
SLEEPNET_MULTIVERSION void forward_planes_3x3(const Conv2dGeom& g, const Phases& P, float* Y, const float* x,
                                              int64_t xs, const float* w, const float* b, float* y, int64_t ys,
                                              int64_t count) {
  const int64_t OH = P.OH, OW = P.OW, len = P.len;
  if (OW >= kWideRow) {
    fill_phases(g, x, P);
    if (b) forward_phases<true>(P, w, *b, y);
    else forward_phases<false>(P, w, 0.f, y);
    return;
  }
  for (int64_t k = 0; k < count; ++k) fill_phases(g, x + k * xs, P, k);
  const Taps9 T(P);
  for (int64_t k = 0; k < count; ++k) {
    if (b) taps9_forward<true>(Y, T, k * P.plane(), w + 9 * k, b[k], P.n());
    else taps9_forward<false>(Y, T, k * P.plane(), w + 9 * k, 0.f, P.n());
    copy_rows(y + k * ys, OW, Y, len, OH, OW);
  }
}

// Planes per forward_planes_3x3 call: 1 for wide rows; narrow rows as many as fit in about 16 KB
// of phases, at most kMaxStack.
constexpr int64_t kMaxStack = 8;
int64_t forward_stack(const Conv2dGeom& g) {
  if (g.OW() >= kWideRow) return 1;
  const int64_t size = g.SH * g.SW * (g.OH() + 2 / g.SH) * (g.OW() + 2 / g.SW);  // one plane's phases
  return std::clamp<int64_t>(4096 / size, 1, kMaxStack);
}

// Stride 2 backward-data as a gather (formula (3) read from the input's side). Padded pixel
// (r, c) = (2i + a, 2j + b) receives tap (kh, kw) from output (oh, ow) when 2*oh + kh = r and
// 2*ow + kw = c: kh = a + 2m, oh = i - m (m = 0, or 1 when a = 0), and likewise kw = b + 2m',
// ow = j - m'. So, with Q(a, b) the value of the pixels of row phase a and column phase b,
//
//   Q(a, b)[i][j] = sum over m, m' of w[a + 2m][b + 2m'] * dy[i - m][j - m']
//
// With dy copied into G with a zero row above and a zero column before each row (G row oh + 1,
// slot ow + 1; G rows `len` floats), dy[i - m][j - m'] is G[u + len + 1 - m*len - m'] for
// u = i*len + j, and the four phases are short sums of shifted loads of G:
//
//   Q00 = w00 G[u+len+1] + w02 G[u+len] + w20 G[u+1] + w22 G[u]     Q01 = w01 G[u+len+1] + w21 G[u+1]
//   Q10 = w10 G[u+len+1] + w12 G[u+len]                              Q11 = w11 G[u+len+1]
//
// A dx row is one row phase a; its even and odd columns alternate between the two column phases
// (dx[ih][2k] from column phase qa = PW % 2, slot k + PW/2; dx[ih][2k + 1] from the other one,
// slot k + (PW+1)/2). So each dx row is one loop over pixel pairs k that evaluates both sums from
// G (which stays in L1) and stores them interleaved straight into dx: no phase planes are written
// and read back (that round trip, 4 x 13 K floats for a 112x112 plane, spilled out of L1).
// qsum<A, B>(g) = Q(A, B) at g = G + u, terms in the order above (the reference's (kh, kw) order).
template <int A, int B>
[[gnu::always_inline]] inline float qsum(const float* __restrict g, int64_t len, const float* w) {
  float s = w[A * 3 + B] * g[len + 1];
  if constexpr (B == 0) s += w[A * 3 + 2] * g[len];
  if constexpr (A == 0) s += w[6 + B] * g[1];
  if constexpr (A == 0 && B == 0) s += w[8] * g[0];
  return s;
}

inline float qsum_any(int64_t a, int64_t b, const float* g, int64_t len, const float* w) {
  if (a == 0) return b == 0 ? qsum<0, 0>(g, len, w) : qsum<0, 1>(g, len, w);
  return b == 0 ? qsum<1, 0>(g, len, w) : qsum<1, 1>(g, len, w);
}

// d[2k] = Q(A, QA) at ge + k, d[2k + 1] = Q(A, 1 - QA) at go + k, for k in [0, n).
template <int A, int QA, class Len>
[[gnu::always_inline]] inline void gather_pairs(float* __restrict d, const float* __restrict ge,
                                                const float* __restrict go, int64_t len, const float* w, Len n) {
  float wl[9];
  for (int k = 0; k < 9; ++k) wl[k] = w[k];
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) {
    d[2 * k] = qsum<A, QA>(ge + k, len, wl);
    d[2 * k + 1] = qsum<A, 1 - QA>(go + k, len, wl);
  }
}

// One dx row of row phase A from G row i: blocks of B pairs (the last one overlapping).
template <int A, int QA, int64_t B>
[[gnu::always_inline]] inline void gather_row(float* d, const float* Gi, int64_t oa, int64_t ob, int64_t len,
                                              const float* w, Width<B> wd, int64_t pairs) {
  blocks_of(wd, pairs, [&](int64_t k, auto n) SLEEPNET_INLINE {
    gather_pairs<A, QA>(d + 2 * k, Gi + oa + k, Gi + ob + k, len, w, n);
  });
}

SLEEPNET_MULTIVERSION void backward_data_plane_3x3_s2(const Conv2dGeom& g, int64_t RH, int64_t len, float* G,
                                                      const float* dy, const float* w, float* dx) {
  const int64_t OH = g.OH(), OW = g.OW(), H = g.H, W = g.W, PH = g.PH, PW = g.PW;
  // G: OH + 2 rows of len floats (+1), zeroed by the caller once; only dy's rows are copied here.
  copy_rows(G + len + 1, len, dy, OW, OH, OW);
  const int64_t qa = PW % 2, oa = PW / 2, ob = (PW + 1) / 2;
  const int64_t pairs = std::max<int64_t>(0, std::min(W / 2, len - std::max(oa, ob)));
  with_width(pairs, [&](auto wd) SLEEPNET_INLINE {  // the block width chosen once per plane
    for (int64_t ih = 0; ih < H; ++ih) {
      float* __restrict d = dx + ih * W;
      const int64_t r = ih + PH, a = r % 2, i = r / 2;
      if (i >= RH) {  // no output reaches this row
        std::memset(d, 0, sizeof(float) * static_cast<size_t>(W));
        continue;
      }
      const float* Gi = G + i * len;
      if (a == 0) {
        if (qa == 0) gather_row<0, 0>(d, Gi, oa, ob, len, w, wd, pairs);
        else gather_row<0, 1>(d, Gi, oa, ob, len, w, wd, pairs);
      } else {
        if (qa == 0) gather_row<1, 0>(d, Gi, oa, ob, len, w, wd, pairs);
        else gather_row<1, 1>(d, Gi, oa, ob, len, w, wd, pairs);
      }
      for (int64_t iw = 2 * pairs; iw < W; ++iw) {  // an odd W's last column, columns no output reaches
        const int64_t c = iw + PW;
        d[iw] = c / 2 < len ? qsum_any(a, c % 2, Gi + c / 2, len, w) : 0.f;
      }
    }
  });
}

// acc[k] += formula (2) for `count` <= P.K planes of one channel (x planes xs floats apart, dy
// planes ys): the nine dot products of dy with the taps it read, as one loop over U for the whole
// stack. dy is copied into G with the phases' layout (K planes of RH * len; the slots that are no
// output stay zero, so the thrown-away positions add nothing, and so do the up to 15 positions
// past the end that round the loop up to whole groups of 16: G and the phases have 16 zeros of
// slack). The nine sums are kept in explicit vector lanes (F16: 16 floats, one AVX-512 register,
// two AVX2 or four SSE2 ones; `omp simd reduction` ended every block with 9 x 16 scalar adds through
// memory, which dominated small planes): float partial sums per lane over blocks of kDwBlock
// positions (64 terms per lane), each lane then added into double, pairwise.
typedef float F16 __attribute__((vector_size(64)));
constexpr int64_t kDwBlock = 1024;

[[gnu::always_inline]] inline void load16(F16& v, const float* p) { std::memcpy(&v, p, sizeof v); }

// acc += the 16 lanes of v, widened to double and added pairwise (a fixed order).
[[gnu::always_inline]] inline void add_lanes(double& acc, const F16& v) {
  float t[kLanes];
  std::memcpy(t, &v, sizeof t);
  double d[kLanes / 2];
  for (int64_t l = 0; l < kLanes / 2; ++l) d[l] = static_cast<double>(t[l]) + t[l + kLanes / 2];
  for (int64_t w = kLanes / 4; w >= 1; w /= 2)
    for (int64_t l = 0; l < w; ++l) d[l] += d[l + w];
  acc += d[0];
}

SLEEPNET_MULTIVERSION void backward_weight_stack_3x3(const Conv2dGeom& g, const Phases& P, float* G, const float* x,
                                                     int64_t xs, const float* dy, int64_t ys, int64_t count,
                                                     double* acc) {
  const int64_t OH = P.OH, OW = P.OW, len = P.len;
  for (int64_t k = 0; k < count; ++k) {
    fill_phases(g, x + k * xs, P, k);
    copy_rows(G + k * P.plane(), len, dy + k * ys, OW, OH, OW);
  }
  // A short last stack (count < K): the loop's round-up to 16 may reach up to 15 floats into plane
  // `count`, whose G slots still hold the previous stack's dy: zero them (the phases there hold
  // finite x values, so they then add 0).
  if (count < P.K) std::memset(G + count * P.plane(), 0, sizeof(float) * kLanes);
  const int64_t n = ceil_div((count - 1) * P.plane() + P.n(), kLanes) * kLanes;
  const Taps9 T(P);
  for (int64_t b = 0; b < n; b += kDwBlock) {
    const int64_t e = std::min(n, b + kDwBlock);
    F16 s[9] = {};
    for (int64_t u = b; u < e; u += kLanes) {
      F16 p, t;
      load16(p, G + u);
      for (int k = 0; k < 9; ++k) {
        load16(t, T.t[k] + u);
        s[k] += p * t;
      }
    }
    for (int k = 0; k < 9; ++k) add_lanes(acc[k], s[k]);
  }
}

// Planes stacked per backward-weight pass: as many as fit in about 16 KB of phases.
int64_t weight_stack(const Conv2dGeom& g) {
  Phases P;
  P.SH = g.SH, P.SW = g.SW, P.RH = g.OH() + (g.KH - 1) / g.SH, P.len = g.OW() + (g.KW - 1) / g.SW;
  return std::clamp<int64_t>(4096 / std::max<int64_t>(P.size(), 1), 1, g.N);
}

bool is_3x3_fast(const Conv2dGeom& g) {
  return g.KH == 3 && g.KW == 3 && (g.SH == 1 || g.SH == 2) && (g.SW == 1 || g.SW == 2);
}

// ---- 3x3, padding 1, straight from the input (AVX-512) ----------------------------------------
// The phases above cost a copy of every plane, and one output row at a time leaves the nine
// multiply-adds of an output as one chain of dependent instructions. Where the CPU has AVX-512,
// MobileNetV2's own geometry (3x3, padding 1, stride 1 or 2; also the stride-1 backward-data pass,
// whose rotated kernel has padding 1 too) is computed from x itself:
//
//   - a tap row of 16 outputs is one masked load of the input row at column offset -1, 0 or +1
//     (stride 1), or, for stride 2, the even and odd columns of two loads pulled apart by one
//     permute each (x[2ow - 1] from two loads starting one float earlier): the masks read zeros
//     where the padding is, so no plane is copied and the border needs no code of its own;
//   - each input row loaded serves every output row of the group that reads it (stride 1: six
//     rows for four outputs rows, 18 loads per 36 multiply-adds), and the four chains of nine
//     multiply-adds run interleaved, one step of each in turn;
//   - rows of at most 8 outputs go two to a vector (direct_plane_pairs), and the planes the tiny
//     path takes as matrices (4x4 and 2x2 stride 1, 8x8 and 4x4 stride 2) as permuted vectors,
//     four images at a time in blocks of channels; the stride-2 backward-data gathers from dy.
//
// Same bits as the code each routine replaces, in its AVX-512 clone, which is what runs on such a
// CPU: every output is the same chain in the same order. GCC contracts the phases' `a = w0*t0;
// a += w1*t1; ...` into fma(w0, t0, w1*t1) and then one FMA per tap (the first product fused, the
// second rounded); the code below writes exactly that. Some of the replaced loops come out of GCC
// with no FMA at all (the tiny path's 2x2 products, the gather's narrow blocks); for those the
// code below rounds every product and sum (mul_rounded, add_rounded). DepthwiseDirect checks all of
// it byte for byte, so a compiler that contracted otherwise would fail that test, not move results.
// Only under GCC, only where the clones are built (not under sanitizers or
// SLEEPNET_NO_MULTIVERSION, whose loops have no FMA at all), and only for the default x86-64
// baseline: under -march=native or -march=skylake-avx512 GCC vectorises the replaced loops
// otherwise (the tiny path's 2x2 product gains FMAs there; the test caught it), so those builds
// keep the replaced code only.
//
// Measured (bench_kernels_depthwise, 64x64 input at batch 32, one thread, sum over the distinct
// layers; bench/README.md, "Depthwise straight from the input"): forward 2.12 -> 1.25 ms,
// backward-data 1.91 -> 0.98 ms; per layer 1.3-3.7x.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(SLEEPNET_NO_MULTIVERSION)
#define SLEEPNET_DW_DIRECT 1
#pragma GCC push_options
#pragma GCC target("avx512f")  // everything up to pop_options
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's false alarm inside the *_round_ps intrinsics

constexpr int kDirectRows = 4;  // output rows per group

// Lanes [0, n) of a 16-lane mask (n may be <= 0 or >= 16).
inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// One tap row's three vectors (kw = 0, 1, 2) for 16 outputs.
struct TapRow {
  __m512 l, c, r;
};

// acc[r] for the output rows of a group: feed input row j of the group (kh = j - S*r for each r
// it serves), in the phases' order of terms: fma(w0, t0, w1 * t1), then one FMA per tap.
template <int S>
[[gnu::always_inline]] inline void feed(__m512 (&acc)[kDirectRows], const __m512 (&wv)[9], const TapRow& t, int j) {
#pragma GCC unroll 4
  for (int r = 0; r < kDirectRows; ++r) {
    const int kh = j - S * r;
    if (kh < 0 || kh > 2) continue;
    if (kh == 0) {
      acc[r] = _mm512_fmadd_ps(wv[0], t.l, _mm512_mul_ps(wv[1], t.c));
    } else {
      acc[r] = _mm512_fmadd_ps(wv[3 * kh], t.l, acc[r]);
      acc[r] = _mm512_fmadd_ps(wv[3 * kh + 1], t.c, acc[r]);
    }
    acc[r] = _mm512_fmadd_ps(wv[3 * kh + 2], t.r, acc[r]);
  }
}

// Narrow planes (at most 8 outputs a row, input rows of at most 16 floats: 7x7 and 8x8 with stride
// 1, 14x14 and 16x16 with stride 2): two output rows per vector, oh in lanes 0-7 and oh + 1 in lanes
// 8-15, so no half-empty vectors. Tap (kh, kw) of the pair is one permute of the two input rows
// it reads (each one masked load): lanes i < 8 take row S oh - 1 + kh at column S i - 1 + kw,
// lanes 8 + i row S (oh + 1) - 1 + kh; the left taps of column 0 are zeroed by the permute's mask.
// Same chains as the rows above (fma(w0, t0, w1 * t1), then one FMA per tap); eight output rows
// (four chains) at a time.
template <int S>
void direct_plane_pairs(const float* x, int64_t H, int64_t W, const __m512 (&wv)[9], const float* bias, float* y) {
  const int64_t OH = (H - 1) / S + 1, OW = (W - 1) / S + 1;
  const __mmask16 mw = lanes(W), mo = lanes(OW), left = __mmask16(0xFEFE);
  alignas(64) int32_t id[3][16];
  for (int kw = 0; kw < 3; ++kw)
    for (int i = 0; i < 8; ++i) {
      const int col = std::max(0, S * i - 1 + kw);  // column -1 is masked off
      id[kw][i] = col, id[kw][8 + i] = 16 + col;
    }
  const __m512i il = _mm512_load_si512(id[0]), ic = _mm512_load_si512(id[1]), ir = _mm512_load_si512(id[2]);
  const __m512 zero = _mm512_setzero_ps();
  auto row = [&](int64_t ih) SLEEPNET_INLINE {
    return ih < 0 || ih >= H ? zero : _mm512_maskz_loadu_ps(mw, x + ih * W);
  };
  for (int64_t oh = 0; oh < OH; oh += 8) {
    __m512 acc[4];
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; ++kh)
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        const int64_t r = oh + 2 * v;  // output rows r (lanes 0-7) and r + 1 (lanes 8-15)
        const __m512 a = row(S * r - 1 + kh), b = row(S * (r + 1) - 1 + kh);
        const __m512 l = _mm512_maskz_permutex2var_ps(left, a, il, b);
        const __m512 c = _mm512_permutex2var_ps(a, ic, b), t = _mm512_permutex2var_ps(a, ir, b);
        if (kh == 0) {
          acc[v] = _mm512_fmadd_ps(wv[0], l, _mm512_mul_ps(wv[1], c));
        } else {
          acc[v] = _mm512_fmadd_ps(wv[3 * kh], l, acc[v]);
          acc[v] = _mm512_fmadd_ps(wv[3 * kh + 1], c, acc[v]);
        }
        acc[v] = _mm512_fmadd_ps(wv[3 * kh + 2], t, acc[v]);
      }
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const int64_t r = oh + 2 * v;
      if (r >= OH) break;
      const __m512 o = bias ? _mm512_add_ps(acc[v], _mm512_set1_ps(*bias)) : acc[v];
      _mm512_mask_storeu_ps(y + r * OW, mo, o);
      if (r + 1 < OH) _mm512_mask_storeu_ps(y + (r + 1) * OW - 8, __mmask16(mo << 8), o);
    }
  }
}

// y [OH, OW] = formula (1) for one plane x [H, W]; 3x3, padding 1, stride S in both directions.
template <int S>
void direct_plane(const float* x, int64_t H, int64_t W, const float* w, const float* bias, float* y) {
  const int64_t OH = (H - 1) / S + 1, OW = (W - 1) / S + 1;
  __m512 wv[9];
  for (int k = 0; k < 9; ++k) wv[k] = _mm512_set1_ps(w[k]);
  if (OW <= 8 && W <= 16) return direct_plane_pairs<S>(x, H, W, wv, bias, y);
  const __m512 zero = _mm512_setzero_ps();
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  for (int64_t ow0 = 0; ow0 < OW; ow0 += 16) {
    const __mmask16 mo = lanes(OW - ow0);  // the outputs of this block
    const int64_t c0 = S * ow0;            // input column of output ow0's middle tap
    // Masks of the loads: the lanes inside the row (the padding reads as zeros).
    __mmask16 ml, mc, mr, ma, mb, la, lb;
    if constexpr (S == 1) {
      mc = mo;
      ml = ow0 == 0 ? __mmask16(mc & 0xFFFE) : mc;  // x[c0 - 1 + i]
      mr = lanes(W - c0 - 1) & mc;                  // x[c0 + 1 + i]
      ma = mb = la = lb = 0;
    } else {
      ma = lanes(W - c0), mb = lanes(W - c0 - 16);  // x[c0 + i], x[c0 + 16 + i]
      la = lanes(W - c0 + 1), lb = lanes(W - c0 - 15);  // x[c0 - 1 + i], x[c0 + 15 + i]
      if (ow0 == 0) la &= 0xFFFE;
      ml = mc = mr = 0;
    }
    auto tap_row = [&](int64_t ih) SLEEPNET_INLINE {
      TapRow t;
      if (ih < 0 || ih >= H) {
        t.l = t.c = t.r = zero;
      } else if constexpr (S == 1) {
        const float* xr = x + ih * W + c0;
        t.l = _mm512_maskz_loadu_ps(ml, xr - 1);
        t.c = _mm512_maskz_loadu_ps(mc, xr);
        t.r = _mm512_maskz_loadu_ps(mr, xr + 1);
      } else {
        const float* xr = x + ih * W + c0;
        const __m512 a = _mm512_maskz_loadu_ps(ma, xr), b = _mm512_maskz_loadu_ps(mb, xr + 16);
        const __m512 a1 = _mm512_maskz_loadu_ps(la, xr - 1), b1 = _mm512_maskz_loadu_ps(lb, xr + 15);
        t.c = _mm512_permutex2var_ps(a, even, b);  // x[c0 + 2i]
        t.r = _mm512_permutex2var_ps(a, odd, b);   // x[c0 + 2i + 1]
        t.l = _mm512_permutex2var_ps(a1, even, b1);  // x[c0 + 2i - 1]
      }
      return t;
    };
    for (int64_t oh = 0; oh < OH; oh += kDirectRows) {
      __m512 acc[kDirectRows];
#pragma GCC unroll 9
      for (int j = 0; j < S * (kDirectRows - 1) + 3; ++j) feed<S>(acc, wv, tap_row(S * oh - 1 + j), j);
#pragma GCC unroll 4
      for (int r = 0; r < kDirectRows; ++r) {
        if (oh + r >= OH) break;
        const __m512 v = bias ? _mm512_add_ps(acc[r], _mm512_set1_ps(*bias)) : acc[r];
        _mm512_mask_storeu_ps(y + (oh + r) * OW + ow0, mo, v);
      }
    }
  }
}

// a * b and a + b, each rounded: GCC's _mm512_mul_ps and _mm512_add_ps are plain vector operators,
// which it would contract into one FMA; these are not.
inline __m512 mul_rounded(__m512 a, __m512 b) { return _mm512_mul_round_ps(a, b, _MM_FROUND_CUR_DIRECTION); }
inline __m512 add_rounded(__m512 a, __m512 b) { return _mm512_add_round_ps(a, b, _MM_FROUND_CUR_DIRECTION); }

// dx [H, W] = formula (3) for one plane dy [OH, OW]; 3x3, padding 1, stride 2: the gather of
// backward_data_plane_3x3_s2 straight from dy. An even dx row 2m takes kh = 1 from dy row m; an odd
// row 2m + 1 takes kh = 0 from dy row m + 1 and kh = 2 from row m. Likewise in columns: dx column 2n
// takes kw = 1 from dy column n (the "even" vector e), dx column 2n + 1 takes kw = 0 from column
// n + 1 and kw = 2 from column n (the "odd" vector o). Terms in the gather's order (qsum, the
// same contraction: the first product fused with the second); e and o are then interleaved.
//
// kFma: the gather's 16-float blocks (rows of 32 and more) come out of GCC with FMAs as written
// below; its 4- and 8-float blocks (rows of 8 to 31) without (read off the AVX-512 build: every
// product rounded, then added in qsum's order), so for those rows every fma(a, b, c) here is a
// rounded product added to c. (Its scalar tail, for the last column of an odd width, has FMAs:
// odd widths below 32 keep the gather.)
template <bool kFma>
[[gnu::always_inline]] inline __m512 madd(__m512 a, __m512 b, __m512 c) {
  if constexpr (kFma) return _mm512_fmadd_ps(a, b, c);
  else return add_rounded(mul_rounded(a, b), c);
}

template <bool kFma>
void direct_plane_bwd_s2(const float* dy, int64_t H, int64_t W, const float* w, float* dx) {
  const int64_t OH = (H - 1) / 2 + 1, OW = (W - 1) / 2 + 1;
  __m512 wv[9];
  for (int k = 0; k < 9; ++k) wv[k] = _mm512_set1_ps(w[k]);
  const __m512 zero = _mm512_setzero_ps();
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  for (int64_t n0 = 0; 2 * n0 < W; n0 += 16) {
    const __mmask16 m0 = lanes(OW - n0), m1 = lanes(OW - n0 - 1);  // dy columns n0 + i, n0 + 1 + i
    const __mmask16 s0 = lanes(W - 2 * n0), s1 = lanes(W - 2 * n0 - 16);  // dx columns 2 n0 + [0, 32)
    auto load = [&](int64_t oh, __m512& d0, __m512& d1) SLEEPNET_INLINE {
      if (oh >= OH) {
        d0 = d1 = zero;
      } else {
        d0 = _mm512_maskz_loadu_ps(m0, dy + oh * OW + n0);
        d1 = _mm512_maskz_loadu_ps(m1, dy + oh * OW + n0 + 1);
      }
    };
    auto store = [&](int64_t ih, __m512 e, __m512 o) SLEEPNET_INLINE {
      float* d = dx + ih * W + 2 * n0;
      _mm512_mask_storeu_ps(d, s0, _mm512_permutex2var_ps(e, lo, o));
      _mm512_mask_storeu_ps(d + 16, s1, _mm512_permutex2var_ps(e, hi, o));
    };
    __m512 c0, c1, n0v, n1v;  // dy row m (c) and m + 1 (n) at columns n0 + i and n0 + 1 + i
    load(0, c0, c1);
    for (int64_t m = 0; 2 * m < H; ++m) {
      // row 2m: e = w11 c0, o = w10 c1 + w12 c0
      store(2 * m, mul_rounded(wv[4], c0), madd<kFma>(wv[3], c1, mul_rounded(wv[5], c0)));
      load(m + 1, n0v, n1v);
      if (2 * m + 1 < H) {
        // row 2m + 1: e = w01 n0 + w21 c0; o = w00 n1 + w02 n0 + w20 c1 + w22 c0
        const __m512 e = madd<kFma>(wv[1], n0v, mul_rounded(wv[7], c0));
        __m512 o = madd<kFma>(wv[0], n1v, mul_rounded(wv[2], n0v));
        o = madd<kFma>(wv[6], c1, o);
        o = madd<kFma>(wv[8], c0, o);
        store(2 * m + 1, e, o);
      }
      c0 = n0v, c1 = n1v;
    }
  }
}

// ---- the tiny path's planes (4x4 and 2x2 stride 1, 8x8 and 4x4 stride 2) as permuted vectors ----
// A plane of at most 64 pixels is one or four vectors; tap k of 16 outputs is those vectors
// permuted (lane l takes the pixel its output reads through tap k), zero where the tap falls in the
// padding. The tiny path these routines replace sums every output over all the pixels of its matrix
// row, in pixel order, from 0, the unlinked pixels adding w * 0 = 0 (the linked ones come in
// (kh, kw) order): here each output starts from 0 too and adds its nine taps in (kh, kw) order,
// the taps outside adding 0 the same way, so the bits are the same (for finite inputs: the matrix
// also multiplies unlinked infinities by 0). GCC compiles the tiny path's 16-pixel products
// (4x4, 8x8 -> 4x4) with FMAs and its 2x2 and 4x4 -> 2x2 ones without (read off the AVX-512
// build); the routines below do the same (kFma).

// Tap k of 16 outputs from one vector (pixel(l, k): which of its 16 floats feeds lane l, -1 for
// the padding): one masked permute.
struct Permute16 {
  __m512i idx[9];
  __mmask16 in[9];
  template <class Pixel>
  explicit Permute16(Pixel pixel) {
    for (int k = 0; k < 9; ++k) {
      alignas(64) int32_t id[16];
      unsigned m = 0;
      for (int l = 0; l < 16; ++l) {
        const int q = pixel(l, k);
        id[l] = q >= 0 ? q : 0;
        if (q >= 0) m |= 1u << l;
      }
      idx[k] = _mm512_load_si512(id);
      in[k] = static_cast<__mmask16>(m);
    }
  }
  __m512 tap(const __m512 (&v)[1], int k) const { return _mm512_maskz_permutexvar_ps(in[k], idx[k], v[0]); }
};

// The same from 64 floats in four vectors: two two-vector permutes (floats 0-31, 32-63) and a blend.
struct Gather64 {
  __m512i lo[9], hi[9];
  __mmask16 in[9], upper[9];  // lanes with a pixel; those of them in floats 32-63
  template <class Pixel>
  explicit Gather64(Pixel pixel) {
    for (int k = 0; k < 9; ++k) {
      alignas(64) int32_t a[16], b[16];
      unsigned m = 0, u = 0;
      for (int l = 0; l < 16; ++l) {
        const int q = pixel(l, k);
        a[l] = q >= 0 && q < 32 ? q : 0, b[l] = q >= 32 ? q - 32 : 0;
        if (q >= 0) m |= 1u << l;
        if (q >= 32) u |= 1u << l;
      }
      lo[k] = _mm512_load_si512(a), hi[k] = _mm512_load_si512(b);
      in[k] = static_cast<__mmask16>(m), upper[k] = static_cast<__mmask16>(u);
    }
  }
  __m512 tap(const __m512 (&v)[4], int k) const {
    const __m512 a = _mm512_permutex2var_ps(v[0], lo[k], v[1]), b = _mm512_permutex2var_ps(v[2], hi[k], v[3]);
    return _mm512_maskz_mov_ps(in[k], _mm512_mask_mov_ps(a, upper[k], b));
  }
};

// 3x3, padding 1: the pixel of an h x h plane (row-major) that output o reads through tap k with
// stride s, or -1.
inline int tap_pixel(int h, int s, int o, int k) {
  const int ow_n = (h - 1) / s + 1, ih = s * (o / ow_n) - 1 + k / 3, iw = s * (o % ow_n) - 1 + k % 3;
  return ih >= 0 && ih < h && iw >= 0 && iw < h ? ih * h + iw : -1;
}

// Channels [c0, c1) of x [N, C, H, W] into y, kG channels' planes per group of vectors (kIn input
// floats per plane, kOut outputs: kG kIn / 16 input vectors, one output vector), with the kernel
// turned by 180 degrees if `rotate` (backward-data). Blocked like the tiny path: channel blocks of
// kTinyChannels, and for each group of four images every plane group of the block in turn
// (neighbouring planes in memory), four chains interleaved; one channel over the whole batch
// (planes C*H*W floats apart) was 4x slower. One channel per group: its weights broadcast; four:
// weights lane by lane. (The plane sizes are template arguments: with them at run time the
// routines ran 1.2-1.4x slower.)
template <int kIn, int kOut, int kG, bool kFma, class Table>
void small_planes(const Conv2dGeom& g, const float* x, const float* w, const float* bias, bool rotate, float* y,
                  int64_t c0, int64_t c1, const Table& T) {
  constexpr int kVecs = kG * kIn / 16, kLanesPerChannel = 16 / kG;
  const int64_t C = g.C;
  alignas(64) float wl[kTinyChannels / kG][9][16], bl[kTinyChannels / kG][16];
  for (int64_t cb = c0; cb < c1; cb += kTinyChannels) {
    const int64_t ce = std::min(c1, cb + kTinyChannels), groups = (ce - cb + kG - 1) / kG;
    if constexpr (kG > 1)
      for (int64_t q = 0; q < groups; ++q)  // lane l: channel cb + q kG + l / (16 / kG), at most ce - 1
        for (int l = 0; l < 16; ++l) {      // (lanes past ce: their outputs are not stored)
          const int64_t c = std::min(cb + q * kG + l / kLanesPerChannel, ce - 1);
          for (int k = 0; k < 9; ++k) wl[q][k][l] = w[c * 9 + (rotate ? 8 - k : k)];
          bl[q][l] = bias ? bias[c] : 0.f;
        }
    for (int64_t n0 = 0; n0 < g.N; n0 += 4) {
      const int64_t cnt = std::min<int64_t>(4, g.N - n0);
      for (int64_t q = 0; q < groups; ++q) {
        const int64_t c = cb + q * kG, nch = kG == 1 ? 1 : std::min<int64_t>(kG, ce - c);
        __m512 v[4][kVecs], acc[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          const float* p = x + ((n0 + (j < cnt ? j : 0)) * C + c) * kIn;  // past cnt: image n0 again, not stored
          for (int r = 0; r < kVecs; ++r)  // a whole group: plain loads; the block's last one: masked
            v[j][r] = nch == kG ? _mm512_loadu_ps(p + 16 * r)
                                : _mm512_maskz_loadu_ps(lanes(nch * kIn - 16 * r), p + 16 * r);
          acc[j] = _mm512_setzero_ps();
        }
        __m512 wv[9];
        for (int k = 0; k < 9; ++k)
          wv[k] = kG == 1 ? _mm512_set1_ps(w[c * 9 + (rotate ? 8 - k : k)]) : _mm512_load_ps(wl[q][k]);
#pragma GCC unroll 9
        for (int k = 0; k < 9; ++k)
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) acc[j] = madd<kFma>(wv[k], T.tap(v[j], k), acc[j]);
        const __mmask16 m = lanes(nch * kOut);
        const __m512 b = !bias ? _mm512_setzero_ps() : kG == 1 ? _mm512_set1_ps(bias[c]) : _mm512_load_ps(bl[q]);
        for (int64_t j = 0; j < cnt; ++j) {
          float* d = y + ((n0 + j) * C + c) * kOut;
          const __m512 r = bias ? _mm512_add_ps(acc[j], b) : acc[j];
          if (m == 0xFFFF) _mm512_storeu_ps(d, r);
          else _mm512_mask_storeu_ps(d, m, r);
        }
      }
    }
  }
}

// The four shapes: 4x4 and 8x8 -> 4x4, one channel per vector (16 outputs); 2x2 and 4x4 -> 2x2,
// four channels per vector (lane l: channel l / 4, output l % 4).
void small_planes_any(const Conv2dGeom& g, const float* x, const float* w, const float* bias, bool rotate, float* y,
                      int64_t c0, int64_t c1) {
  if (g.SH == 1 && g.H == 4) {
    const Permute16 T([](int l, int k) { return tap_pixel(4, 1, l, k); });
    small_planes<16, 16, 1, true>(g, x, w, bias, rotate, y, c0, c1, T);
  } else if (g.SH == 2 && g.H == 8) {
    const Gather64 T([](int l, int k) { return tap_pixel(8, 2, l, k); });
    small_planes<64, 16, 1, true>(g, x, w, bias, rotate, y, c0, c1, T);
  } else if (g.SH == 1 && g.H == 2) {
    const Permute16 T([](int l, int k) {
      const int q = tap_pixel(2, 1, l % 4, k);
      return q < 0 ? -1 : l / 4 * 4 + q;
    });
    small_planes<4, 4, 4, false>(g, x, w, bias, rotate, y, c0, c1, T);
  } else {
    const Gather64 T([](int l, int k) {
      const int q = tap_pixel(4, 2, l % 4, k);
      return q < 0 ? -1 : l / 4 * 16 + q;
    });
    small_planes<16, 4, 4, false>(g, x, w, bias, rotate, y, c0, c1, T);
  }
}

// Backward-data of the 8x8 and 4x4 stride-2 planes (dy 4x4, dx 8x8; dy 2x2, dx 4x4): dx pixel q
// sums, over the outputs o whose window holds it, w[tap] * dy[o], from 0 in increasing o, as the
// tiny path's transposed product does (unlinked outputs add 0). A pixel has at most four such outputs: (rows oh_lo <=
// oh_hi) x (columns ow_lo <= ow_hi), taken in that order as four "slots"; slot s of the 16 pixels
// of dx vector r is one permute of dy (the output's lane) times one permute of the kernel (the
// tap's weight), zero where the pixel has no such output. `kFma` as GCC compiles that product.
// The same table serves the 4x4 planes (dy 2x2, dx 4x4: one dx vector, H = 4).
template <int H>
struct Stride2ToHxH {
  static constexpr int kVectors = H * H / 16, OH = H / 2;
  __m512i out[kVectors][4], tap[kVectors][4];  // [dx vector][slot]
  __mmask16 has[kVectors][4];
  Stride2ToHxH() {
    for (int r = 0; r < kVectors; ++r)
      for (int sl = 0; sl < 4; ++sl) {
        alignas(64) int32_t o[16], t[16];
        unsigned m = 0;
        for (int l = 0; l < 16; ++l) {
          const int ih = (16 * r + l) / H, iw = l % H;
          // rows oh with 2 oh - 1 + kh = ih: even ih: oh = ih / 2; odd: (ih - 1) / 2 and (ih + 1) / 2
          const int ohs[2] = {ih % 2 ? (ih - 1) / 2 : ih / 2, ih % 2 ? (ih + 1) / 2 : -1};
          const int ows[2] = {iw % 2 ? (iw - 1) / 2 : iw / 2, iw % 2 ? (iw + 1) / 2 : -1};
          const int oh = ohs[sl / 2], ow = ows[sl % 2];
          const bool ok = oh >= 0 && oh < OH && ow >= 0 && ow < OH;
          o[l] = ok ? oh * OH + ow : 0;
          t[l] = ok ? (ih + 1 - 2 * oh) * 3 + (iw + 1 - 2 * ow) : 0;
          if (ok) m |= 1u << l;
        }
        out[r][sl] = _mm512_load_si512(o), tap[r][sl] = _mm512_load_si512(t);
        has[r][sl] = static_cast<__mmask16>(m);
      }
  }
};

template <int H, bool kFma>
void direct_channels_s2_bwd(const Conv2dGeom& g, const float* dy, const float* w, float* dx, int64_t c0, int64_t c1) {
  const Stride2ToHxH<H> T;
  constexpr int64_t kIn = H * H / 4, kOut = H * H;  // floats of a dy plane and of a dx plane
  const int64_t C = g.C;
  for (int64_t cb = c0; cb < c1; cb += kTinyChannels) {
    const int64_t ce = std::min(c1, cb + kTinyChannels);
    for (int64_t n0 = 0; n0 < g.N; n0 += 4) {
      const int64_t cnt = std::min<int64_t>(4, g.N - n0);
      for (int64_t c = cb; c < ce; ++c) {
        const __m512 w9 = _mm512_maskz_loadu_ps(0x1FF, w + c * 9);
        __m512 d[4];
        for (int j = 0; j < 4; ++j)
          d[j] = _mm512_maskz_loadu_ps(lanes(kIn), dy + ((n0 + (j < cnt ? j : 0)) * C + c) * kIn);
#pragma GCC unroll 4
        for (int r = 0; r < T.kVectors; ++r) {
          __m512 wr[4];
          for (int sl = 0; sl < 4; ++sl) wr[sl] = _mm512_permutexvar_ps(T.tap[r][sl], w9);
          __m512 acc[4];
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) acc[j] = _mm512_setzero_ps();
#pragma GCC unroll 4
          for (int sl = 0; sl < 4; ++sl)
#pragma GCC unroll 4
            for (int j = 0; j < 4; ++j)
              acc[j] = madd<kFma>(wr[sl], _mm512_maskz_permutexvar_ps(T.has[r][sl], T.out[r][sl], d[j]), acc[j]);
          for (int64_t j = 0; j < cnt; ++j) _mm512_storeu_ps(dx + ((n0 + j) * C + c) * kOut + 16 * r, acc[j]);
        }
      }
    }
  }
}

// Planes [p0, p1) of a pass (plane p uses channel p % C's kernel, rotated by 180 degrees for the
// backward-data pass, and bias, if any).
void direct_planes(const Conv2dGeom& g, const float* x, const float* w, const float* bias, bool rotate, float* y,
                   int64_t p0, int64_t p1) {
  const int64_t C = g.C, HW = g.H * g.W, OHW = g.OH() * g.OW();
  float wk[9];
  for (int64_t p = p0, c = p0 % C; p < p1; ++p, c = c + 1 == C ? 0 : c + 1) {
    for (int j = 0; j < 9; ++j) wk[j] = w[c * 9 + (rotate ? 8 - j : j)];
    if (g.SH == 1) direct_plane<1>(x + p * HW, g.H, g.W, wk, bias ? bias + c : nullptr, y + p * OHW);
    else direct_plane<2>(x + p * HW, g.H, g.W, wk, bias ? bias + c : nullptr, y + p * OHW);
  }
}

#pragma GCC diagnostic pop
#pragma GCC pop_options

const bool direct_available = cpu_has_avx512f();
#else
const bool direct_available = false;
#endif
bool direct_on = direct_available;

#ifdef SLEEPNET_DW_DIRECT
// The geometry the direct path computes: 3x3, padding 1, stride 1 or 2 in both directions.
bool direct_fits(const Conv2dGeom& g) {
  return direct_on && g.KH == 3 && g.KW == 3 && g.PH == 1 && g.PW == 1 && g.SH == g.SW && (g.SH == 1 || g.SH == 2);
}
// The planes small_planes_any takes: 4x4 and 2x2 with stride 1, 8x8 and 4x4 with stride 2.
bool direct_small(const Conv2dGeom& g) {
  if (!direct_fits(g) || g.H != g.W) return false;
  return g.SH == 1 ? g.H == 4 || g.H == 2 : g.H == 8 || g.H == 4;
}
bool direct_8x8_s2(const Conv2dGeom& g) { return direct_fits(g) && g.SH == 2 && g.H == 8 && g.W == 8; }
bool direct_4x4_s2(const Conv2dGeom& g) { return direct_fits(g) && g.SH == 2 && g.H == 4 && g.W == 4; }
#endif

}  // namespace

// ---- public kernels ---------------------------------------------------------------------------

void depthwise_forward(const Conv2dGeom& g, const float* x, const float* w, const float* bias, float* y) {
  check_depthwise(g, "depthwise_forward");
#ifdef SLEEPNET_DW_DIRECT
  if (direct_small(g))
    return parallel_for(
        g.C, pass_threads(g), [&](int64_t c0, int64_t c1) { small_planes_any(g, x, w, bias, false, y, c0, c1); },
        g.H == 2 || g.SH == 2 ? 4 : 1);  // four channels per vector: blocks of whole groups
#endif
  if (tiny_planes(g)) return forward_tiny(g, x, w, bias, y);
  const int64_t C = g.C, KK = g.KH * g.KW, HW = g.H * g.W, OHW = g.OH() * g.OW();
  const bool fast = is_3x3_fast(g);
#ifdef SLEEPNET_DW_DIRECT
  if (direct_fits(g))
    return parallel_for(g.N * C, pass_threads(g),
                        [&](int64_t p0, int64_t p1) { direct_planes(g, x, w, bias, false, y, p0, p1); });
#endif
  parallel_for(g.N * C, pass_threads(g), [&](int64_t p0, int64_t p1) {
    if (!fast) {
      for (int64_t p = p0; p < p1; ++p) forward_plane(g, x + p * HW, w + p % C * KK, bias ? bias[p % C] : 0.f, y + p * OHW);
      return;
    }
    const int64_t K = forward_stack(g);
    const Phases P = make_phases(g, K);  // this thread's phases, padding zeroed once per call
    float* Y = scratch(1, P.n());
    float wk[kMaxStack * 9], bk[kMaxStack];  // the stack's weights and biases, plane by plane
    for (int64_t p = p0, c = p0 % C; p < p1; p += K) {  // c = p % C
      const int64_t count = std::min(K, p1 - p);
      for (int64_t k = 0; k < count; ++k, c = c + 1 == C ? 0 : c + 1) {
        std::copy(w + c * 9, w + c * 9 + 9, wk + 9 * k);
        if (bias) bk[k] = bias[c];
      }
      forward_planes_3x3(g, P, Y, x + p * HW, HW, wk, bias ? bk : nullptr, y + p * OHW, OHW, count);
    }
  });
}

void depthwise_backward_data(const Conv2dGeom& g, const float* dy, const float* w, float* dx) {
  check_depthwise(g, "depthwise_backward_data");
#ifdef SLEEPNET_DW_DIRECT
  if (direct_small(g) && g.SH == 1)  // stride 1, padding 1: the forward on dy with the kernel rotated
    return parallel_for(
        g.C, pass_threads(g), [&](int64_t c0, int64_t c1) { small_planes_any(g, dy, w, nullptr, true, dx, c0, c1); },
        g.H == 2 ? 4 : 1);
  if (direct_8x8_s2(g))
    return parallel_for(g.C, pass_threads(g),
                        [&](int64_t c0, int64_t c1) { direct_channels_s2_bwd<8, true>(g, dy, w, dx, c0, c1); });
  if (direct_4x4_s2(g))
    return parallel_for(g.C, pass_threads(g),
                        [&](int64_t c0, int64_t c1) { direct_channels_s2_bwd<4, true>(g, dy, w, dx, c0, c1); });
#endif
  if (tiny_planes(g)) return backward_data_tiny(g, dy, w, dx);
  const int64_t C = g.C, KK = g.KH * g.KW, HW = g.H * g.W, OHW = g.OH() * g.OW();
  // 3x3 stride 1: the forward on dy with the kernel rotated by 180 degrees and padding 2 - P (see
  // the derivation at the top); 3x3 stride 2: the gather straight into dx; otherwise the general path.
  Conv2dGeom t = g;
  t.H = g.OH(), t.W = g.OW(), t.PH = g.KH - 1 - g.PH, t.PW = g.KW - 1 - g.PW;
  const bool rotated = is_3x3_fast(g) && g.SH == 1 && g.SW == 1 && t.PH >= 0 && t.PW >= 0;
  const bool gather = is_3x3_fast(g) && g.SH == 2 && g.SW == 2;
#ifdef SLEEPNET_DW_DIRECT
  if (rotated && direct_fits(t))
    return parallel_for(g.N * C, pass_threads(g),
                        [&](int64_t p0, int64_t p1) { direct_planes(t, dy, w, nullptr, true, dx, p0, p1); });
  if (gather && direct_fits(g) && (g.W >= 32 || (g.W >= 8 && g.W % 2 == 0)))
    return parallel_for(g.N * C, pass_threads(g), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        if (g.W >= 32) direct_plane_bwd_s2<true>(dy + p * OHW, g.H, g.W, w + p % C * 9, dx + p * HW);
        else direct_plane_bwd_s2<false>(dy + p * OHW, g.H, g.W, w + p % C * 9, dx + p * HW);
      }
    });
#endif
  parallel_for(g.N * C, pass_threads(g), [&](int64_t p0, int64_t p1) {
    Phases P;
    float* buf = nullptr;
    const int64_t K = rotated ? forward_stack(t) : 1;
    if (rotated) {
      P = make_phases(t, K), buf = scratch(1, P.n());
    } else if (gather) {  // only the geometry of the phases: the gather writes dx directly
      P.SH = P.SW = 2, P.OH = g.OH(), P.OW = g.OW(), P.RH = P.OH + 1, P.len = P.OW + 1;
      const int64_t gsize = (P.OH + 2) * P.len + 1;
      buf = scratch(1, gsize);
      std::fill(buf, buf + gsize, 0.f);
    }
    if (rotated) {
      float rot[kMaxStack * 9];  // the stack's kernels, rotated by 180 degrees
      for (int64_t p = p0, c = p0 % C; p < p1; p += K) {  // c = p % C
        const int64_t count = std::min(K, p1 - p);
        for (int64_t k = 0; k < count; ++k, c = c + 1 == C ? 0 : c + 1)
          for (int64_t j = 0; j < 9; ++j) rot[9 * k + j] = w[c * 9 + 8 - j];
        forward_planes_3x3(t, P, buf, dy + p * OHW, OHW, rot, nullptr, dx + p * HW, HW, count);
      }
      return;
    }
    for (int64_t p = p0, c = p0 % C; p < p1; ++p, c = c + 1 == C ? 0 : c + 1) {  // c = p % C
      const float* wc = w + c * KK;
      if (gather) {
        backward_data_plane_3x3_s2(g, P.RH, P.len, buf, dy + p * OHW, wc, dx + p * HW);
      } else {
        backward_data_plane(g, dy + p * OHW, wc, dx + p * HW);
      }
    }
  });
}

void depthwise_backward_weight(const Conv2dGeom& g, const float* x, const float* dy, float* dw) {
  check_depthwise(g, "depthwise_backward_weight");
  if (tiny_planes(g, kTinyPairsWeight)) return backward_weight_tiny(g, x, dy, dw);
  const int64_t C = g.C, HW = g.H * g.W, OHW = g.OH() * g.OW(), KK = g.KH * g.KW;
  const bool fast = is_3x3_fast(g);
  // Split over channels: each channel sums its own N planes, so no reduction across threads.
  parallel_for(C, pass_threads(g), [&](int64_t c0, int64_t c1) {
    std::vector<double> sums(static_cast<size_t>((c1 - c0) * KK), 0.0);  // this thread's channels
    if (fast) {
      // Stack-major: each stack of K images runs over all of this thread's channels before the
      // next stack, so consecutive stacks read neighbouring planes (channel c + 1 follows channel
      // c in memory) instead of jumping C*H*W floats per image (3-13 % faster on the 16x16 and
      // 32x32 layers at batch 32). Each channel still adds its stacks in image order into its own
      // sums: the same order, the same bits, as channel by channel.
      const int64_t K = weight_stack(g);  // planes per stack
      const Phases F = make_phases(g, K);
      float* G = scratch(1, K * F.plane() + kLanes);
      std::fill(G, G + K * F.plane() + kLanes, 0.f);
      for (int64_t n = 0; n < g.N; n += K)
        for (int64_t c = c0; c < c1; ++c)
          backward_weight_stack_3x3(g, F, G, x + (n * C + c) * HW, C * HW, dy + (n * C + c) * OHW, C * OHW,
                                    std::min(K, g.N - n), sums.data() + (c - c0) * KK);
    } else {
      const PhasePlane P = phase_plane(g, false);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t n = 0; n < g.N; ++n)
          backward_weight_plane(g, P, x + (n * C + c) * HW, dy + (n * C + c) * OHW, sums.data() + (c - c0) * KK);
    }
    for (int64_t i = 0; i < (c1 - c0) * KK; ++i) dw[c0 * KK + i] = static_cast<float>(sums[static_cast<size_t>(i)]);
  });
}

bool depthwise_direct_available() { return direct_available; }
void depthwise_set_direct(bool on) { direct_on = on && direct_available; }

// ---- references: the formulas, literally ------------------------------------------------------

void depthwise_forward_ref(const Conv2dGeom& g, const float* x, const float* w, const float* bias,
                           float* y) {
  check_depthwise(g, "depthwise_forward_ref");
  const int64_t OH = g.OH(), OW = g.OW();
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          float acc = 0.f;  // (1), terms in (kh, kw) order
          for (int64_t kh = 0; kh < g.KH; ++kh)
            for (int64_t kw = 0; kw < g.KW; ++kw) {
              const int64_t ih = oh * g.SH - g.PH + kh, iw = ow * g.SW - g.PW + kw;
              if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
              acc += w[(c * g.KH + kh) * g.KW + kw] * x[((n * g.C + c) * g.H + ih) * g.W + iw];
            }
          y[((n * g.C + c) * OH + oh) * OW + ow] = acc + (bias ? bias[c] : 0.f);
        }
}

void depthwise_backward_data_ref(const Conv2dGeom& g, const float* dy, const float* w, float* dx) {
  check_depthwise(g, "depthwise_backward_data_ref");
  const int64_t OH = g.OH(), OW = g.OW();
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t ih = 0; ih < g.H; ++ih)
        for (int64_t iw = 0; iw < g.W; ++iw) {
          double s = 0.0;  // (3), gathered from the input's side
          for (int64_t kh = 0; kh < g.KH; ++kh) {
            const int64_t th = ih + g.PH - kh;
            if (th < 0 || th % g.SH != 0 || th / g.SH >= OH) continue;
            for (int64_t kw = 0; kw < g.KW; ++kw) {
              const int64_t tw = iw + g.PW - kw;
              if (tw < 0 || tw % g.SW != 0 || tw / g.SW >= OW) continue;
              s += static_cast<double>(w[(c * g.KH + kh) * g.KW + kw]) *
                   dy[((n * g.C + c) * OH + th / g.SH) * OW + tw / g.SW];
            }
          }
          dx[((n * g.C + c) * g.H + ih) * g.W + iw] = static_cast<float>(s);
        }
}

void depthwise_backward_weight_ref(const Conv2dGeom& g, const float* x, const float* dy, float* dw) {
  check_depthwise(g, "depthwise_backward_weight_ref");
  const int64_t OH = g.OH(), OW = g.OW();
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        double s = 0.0;  // (2)
        for (int64_t n = 0; n < g.N; ++n)
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
              const int64_t ih = oh * g.SH - g.PH + kh, iw = ow * g.SW - g.PW + kw;
              if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
              s += static_cast<double>(dy[((n * g.C + c) * OH + oh) * OW + ow]) *
                   x[((n * g.C + c) * g.H + ih) * g.W + iw];
            }
        dw[(c * g.KH + kh) * g.KW + kw] = static_cast<float>(s);
      }
}

}  // namespace sleepnet::kernels
