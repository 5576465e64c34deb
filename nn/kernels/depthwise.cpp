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
//   forward's 3x3 loops. With stride 2 only every other kh (and kw) reaches a given ih (iw): the
//   parity of ih + PH decides which, so even and odd input rows get different sums.
//
// backward-bias: dL/db = sum_{n, oh, ow} g[oh, ow] (conv2d_backward_bias in conv.cpp).
#include "nn/kernels/depthwise.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "nn/kernels/common.h"

namespace sleepnet::kernels {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Below this many multiply-adds a depthwise pass runs on one thread (waking the team costs more).
constexpr int64_t kMinParallelMacs = 1 << 16;

[[maybe_unused]] bool worth_threads(const Conv2dGeom& g) { return g.N * g.C * g.OH() * g.OW() * g.KH * g.KW >= kMinParallelMacs; }

void check_depthwise(const Conv2dGeom& g, const char* who) {
  g.validate(who);
  require(g.groups == g.C && g.OC == g.C, who,
          "depthwise convolution needs groups == C == OC (channel multiplier 1), got C = " +
              std::to_string(g.C) + ", OC = " + std::to_string(g.OC) +
              ", groups = " + std::to_string(g.groups) + " (nn/kernels/depthwise.h)");
}

// sum_i a[i] * b[i * STEP]: float partial sums in vector lanes (`omp simd` allows exactly this
// reordering), returned in double. Callers keep n to one row, so float partials stay accurate.
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

// ---- the phase plane ------------------------------------------------------------------------------
// All three kernels walk one (n, c) plane through the same index map: tap (kh, kw) of output
// (oh, ow) touches input pixel (oh*SH - PH + kh, ow*SW - PW + kw). Two tricks make every inner loop
// branch-free and contiguous, for any kernel, stride and padding:
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
// the value of its one slot (cropping the padding and merging the phases).

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
// taps read every SW-th float). Measured: the forward and backward-weight passes are faster
// reading stride-2 taps from an unsplit plane (the compiler's strided loads are cheap, and the
// split copy is not); backward-data, which adds into the plane, needs the split to vectorize.
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
  for (int64_t r = 0; r < P.rows; ++r) {
    const int64_t ih = r - PH;
    for (int64_t q = 0; q < S; ++q) {
      float* __restrict o = P.row(r, q);
      if (ih < 0 || ih >= H) {
        std::memset(o, 0, sizeof(float) * len);
        continue;
      }
      // slots j whose input column iw = j*S + q - PW lies in [0, W)
      const int64_t lo = std::min(len, PW - q > 0 ? ceil_div(PW - q, S) : int64_t{0});
      const int64_t last = W - 1 + PW - q;
      const int64_t hi = std::max(lo, last < 0 ? int64_t{0} : std::min(len, last / S + 1));
      const float* __restrict xr = x + ih * W;
      for (int64_t j = 0; j < lo; ++j) o[j] = 0.f;
      if (S == 1) {
        for (int64_t j = lo; j < hi; ++j) o[j] = xr[j - PW];
      } else if (S == 2) {  // constant stride: the compiler vectorizes the de-interleave
        const float* __restrict xq = xr + q - PW;
        for (int64_t j = lo; j < hi; ++j) o[j] = xq[2 * j];
      } else {
        for (int64_t j = lo; j < hi; ++j) o[j] = xr[j * S + q - PW];
      }
      for (int64_t j = hi; j < len; ++j) o[j] = 0.f;
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

// ---- forward ----

// One output row of a 3x3 kernel: nine taps, each a contiguous row of the plane, summed in
// registers in (kh, kw) order, then the bias (the reference's order of operations).
// (Three row pointers rather than nine tap pointers: taps of one row overlap, and the compiler
// shares their loads only when it can see that.)
template <int STEP>
inline void row_3x3(float* __restrict o, const float* __restrict r0, const float* __restrict r1,
             const float* __restrict r2, const float* __restrict w, float b, int64_t n) {
  const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7],
              w8 = w[8];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = i * STEP;
    float acc = w0 * r0[j];
    acc += w1 * r0[j + 1];
    acc += w2 * r0[j + 2];
    acc += w3 * r1[j];
    acc += w4 * r1[j + 1];
    acc += w5 * r1[j + 2];
    acc += w6 * r2[j];
    acc += w7 * r2[j + 1];
    acc += w8 * r2[j + 2];
    o[i] = acc + b;
  }
}

SLEEPNET_MULTIVERSION void row_3x3_s1(float* o, const float* r0, const float* r1, const float* r2,
                                      const float* w, float b, int64_t n) {
  row_3x3<1>(o, r0, r1, r2, w, b, n);
}
SLEEPNET_MULTIVERSION void row_3x3_s2(float* o, const float* r0, const float* r1, const float* r2,
                                      const float* w, float b, int64_t n) {
  row_3x3<2>(o, r0, r1, r2, w, b, n);
}

// The nine dot products of one dy row g with the taps of three plane rows (tap kw of output i at
// r[i*STEP + kw]), added to acc[9] in double; one pass over g, float partials in vector lanes.
template <int STEP>
inline void dw_row_3x3(const float* __restrict g, const float* __restrict r0, const float* __restrict r1,
                       const float* __restrict r2, int64_t n, double* acc) {
  simd_acc a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0, a8 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3, a4, a5, a6, a7, a8)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = i * STEP;
    const float gi = g[i];
    a0 += gi * r0[j], a1 += gi * r0[j + 1], a2 += gi * r0[j + 2];
    a3 += gi * r1[j], a4 += gi * r1[j + 1], a5 += gi * r1[j + 2];
    a6 += gi * r2[j], a7 += gi * r2[j + 1], a8 += gi * r2[j + 2];
  }
  acc[0] += a0, acc[1] += a1, acc[2] += a2, acc[3] += a3, acc[4] += a4;
  acc[5] += a5, acc[6] += a6, acc[7] += a7, acc[8] += a8;
}
SLEEPNET_MULTIVERSION void dw_row_3x3_s1(const float* g, const float* r0, const float* r1, const float* r2,
                                         int64_t n, double* acc) {
  dw_row_3x3<1>(g, r0, r1, r2, n, acc);
}
SLEEPNET_MULTIVERSION void dw_row_3x3_s2(const float* g, const float* r0, const float* r1, const float* r2,
                                         int64_t n, double* acc) {
  dw_row_3x3<2>(g, r0, r1, r2, n, acc);
}

// t[i] += w * g[i]: one tap of the backward-data scatter.
SLEEPNET_MULTIVERSION void axpy(float* __restrict t, const float* __restrict g, float w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) t[i] += w * g[i];
}

// y [OH, OW] from a filled plane: formula (1) with every tap a contiguous plane row.
void forward_from_plane(const Conv2dGeom& g, const PhasePlane& P, const float* w, float b, float* y) {
  const int64_t OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW, SH = g.SH, step = P.step;
  auto tap = [&](int64_t oh, int64_t kh, int64_t kw) { return P.tap(SH, oh, kh, kw); };
  for (int64_t oh = 0; oh < OH; ++oh) {
    float* __restrict o = y + oh * OW;
    if (KH == 3 && KW == 3 && P.S == 1 && (step == 1 || step == 2)) {  // unsplit rows: tap kw at +kw
      (step == 1 ? row_3x3_s1 : row_3x3_s2)(o, tap(oh, 0, 0), tap(oh, 1, 0), tap(oh, 2, 0), w, b, OW);
      continue;
    }
    std::fill(o, o + OW, 0.f);
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) {
        const float wv = w[kh * KW + kw];
        const float* __restrict t = tap(oh, kh, kw);
        for (int64_t ow = 0; ow < OW; ++ow) o[ow] += wv * t[ow * step];
      }
    for (int64_t ow = 0; ow < OW; ++ow) o[ow] += b;
  }
}

// One output with bounds checks, terms in the reference's order (the border of the direct path).
float forward_point(const Conv2dGeom& g, const float* x, const float* w, float b, int64_t oh, int64_t ow) {
  float acc = 0.f;
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    const int64_t ih = oh * g.SH - g.PH + kh;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t iw = ow * g.SW - g.PW + kw;
      if (iw >= 0 && iw < g.W) acc += w[kh * g.KW + kw] * x[ih * g.W + iw];
    }
  }
  return acc + b;
}

// Outputs o in [0, O) whose whole window [o*S - P, o*S - P + K) lies inside [0, I).
std::pair<int64_t, int64_t> interior(int64_t O, int64_t I, int64_t K, int64_t S, int64_t P) {
  const int64_t lo = std::min(O, ceil_div(P, S));
  const int64_t last = I - K + P;  // o*S <= last
  const int64_t hi = last < 0 ? lo : std::max(lo, std::min(O, last / S + 1));
  return {lo, hi};
}

// 3x3 stride 2 straight from x: a stride-2 plane is 4x its output, and copying it into a padded
// plane costs more than the convolution (measured). Interior outputs read x directly (no bounds
// checks), the one-pixel border goes through forward_point.
void forward_plane_direct_s2(const Conv2dGeom& g, const float* x, const float* w, float b, float* y) {
  const int64_t W = g.W, OH = g.OH(), OW = g.OW(), PH = g.PH, PW = g.PW;
  const auto [rlo, rhi] = interior(OH, g.H, 3, 2, PH);
  const auto [clo, chi] = interior(OW, W, 3, 2, PW);
  for (int64_t oh = 0; oh < OH; ++oh) {
    float* o = y + oh * OW;
    if (oh < rlo || oh >= rhi || chi <= clo) {
      for (int64_t ow = 0; ow < OW; ++ow) o[ow] = forward_point(g, x, w, b, oh, ow);
      continue;
    }
    for (int64_t ow = 0; ow < clo; ++ow) o[ow] = forward_point(g, x, w, b, oh, ow);
    const float* r0 = x + (oh * 2 - PH) * W + clo * 2 - PW;
    row_3x3_s2(o + clo, r0, r0 + W, r0 + 2 * W, w, b, chi - clo);
    for (int64_t ow = chi; ow < OW; ++ow) o[ow] = forward_point(g, x, w, b, oh, ow);
  }
}

void forward_plane(const Conv2dGeom& g, const float* x, const float* w, float b, float* y) {
  if (g.KH == 3 && g.KW == 3 && g.SH == 2 && g.SW == 2) return forward_plane_direct_s2(g, x, w, b, y);
  const PhasePlane P = phase_plane(g, false);
  fill_plane(g, x, P);
  forward_from_plane(g, P, w, b, y);
}

// ---- backward-data ----

// Stride 1 with padding <= K - 1: the forward pass on dy with the kernel rotated by 180 degrees
// and padding K - 1 - P (see the derivation at the top); 3x3 gets the fused row loop.
bool backward_data_is_rotated_forward(const Conv2dGeom& g) {
  return g.SH == 1 && g.SW == 1 && g.PH <= g.KH - 1 && g.PW <= g.KW - 1;
}

void backward_data_plane(const Conv2dGeom& g, const float* dy, const float* w, float* dx) {
  const int64_t KH = g.KH, KW = g.KW, OW = g.OW();
  if (backward_data_is_rotated_forward(g)) {
    Conv2dGeom t = g;
    t.H = g.OH(), t.W = g.OW(), t.PH = KH - 1 - g.PH, t.PW = KW - 1 - g.PW;  // t.OH() == H, t.OW() == W
    float* rot = scratch(1, KH * KW);
    for (int64_t k = 0; k < KH * KW; ++k) rot[k] = w[KH * KW - 1 - k];
    forward_plane(t, dy, rot, 0.f, dx);
    return;
  }
  // Scatter form of (3) on the plane: every output gradient row is added, times each weight, to
  // the plane rows its taps read; then the plane is folded back onto the input.
  const PhasePlane P = phase_plane(g, true);  // split: step 1
  std::fill(P.data, P.data + P.size(), 0.f);
  for (int64_t oh = 0; oh < g.OH(); ++oh) {
    const float* __restrict gr = dy + oh * OW;
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) {
        axpy(P.tap(g.SH, oh, kh, kw), gr, w[kh * KW + kw], OW);
      }
  }
  unfill_plane(g, P, dx);
}

// ---- small planes: channels innermost ------------------------------------------------------------
// Late MobileNetV2 layers have tiny planes (7x7 down to 2x2) and many channels. Walking them plane
// by plane spends more time on loop overhead than on arithmetic, so for planes of at most
// a few hundred pixels (small_planes) a block of kCB channels of one image is transposed to channel-last order
// (padded, in scratch memory), computed with every inner loop running over the block's channels
// (contiguous, vectorized), and transposed back. Same formulas, same order of terms.

constexpr int64_t kCB = 32;  // channels per block

// Input planes of at most this many pixels take the channel-last path, per pass (measured with
// bench_kernels_depthwise on MobileNetV2's shapes: the weight gradient gains 2-3.7x on 14x14 and
// 16x16 planes that way, stride-2 backward-data 1.5-2.4x, the forward only below 8x8).
enum class Pass { Forward, BackwardData, BackwardWeight };
bool small_planes(const Conv2dGeom& g, Pass pass) {
  const int64_t limit = pass == Pass::Forward ? 64 : pass == Pass::BackwardWeight ? 256 : (g.SW == 2 ? 256 : 64);
  return g.H * g.W <= limit;
}

struct SmallGeom {
  int64_t Hp, Wp;  // padded rows and columns that taps reach
  explicit SmallGeom(const Conv2dGeom& g)
      : Hp((g.OH() - 1) * g.SH + g.KH), Wp((g.OW() - 1) * g.SW + g.KW) {}
  // padded pixel read by tap (kh, kw) of output (oh, ow)
  int64_t pix(const Conv2dGeom& g, int64_t oh, int64_t ow, int64_t kh, int64_t kw) const {
    return (oh * g.SH + kh) * Wp + ow * g.SW + kw;
  }
};

// xt[Hp*Wp][kCB] <- channels [c0, c0+nb) of image plane block `x` (zero padding).
void to_channel_last(const Conv2dGeom& g, const SmallGeom& s, const float* x, int64_t nb, float* xt) {
  std::fill(xt, xt + s.Hp * s.Wp * kCB, 0.f);
  for (int64_t c = 0; c < nb; ++c)
    for (int64_t ih = 0; ih < g.H && ih + g.PH < s.Hp; ++ih)
      for (int64_t iw = 0; iw < g.W && iw + g.PW < s.Wp; ++iw)
        xt[((ih + g.PH) * s.Wp + iw + g.PW) * kCB + c] = x[(c * g.H + ih) * g.W + iw];
}

// Weights of channels [c0, c0+nb) as wt[KK][kCB].
void weights_channel_last(const Conv2dGeom& g, const float* w, int64_t c0, int64_t nb, float* wt) {
  const int64_t KK = g.KH * g.KW;
  std::fill(wt, wt + KK * kCB, 0.f);
  for (int64_t c = 0; c < nb; ++c)
    for (int64_t k = 0; k < KK; ++k) wt[k * kCB + c] = w[(c0 + c) * KK + k];
}

// The arithmetic of one block, every inner loop over the block's kCB channels.
// yt[OH*OW][kCB] = formula (1): taps in (kh, kw) order, then the bias.
SLEEPNET_MULTIVERSION void forward_small_block(const Conv2dGeom& g, const SmallGeom& s, const float* xt,
                                               const float* wt, const float* bt, float* yt) {
  const int64_t OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW;
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow) {
      float* __restrict acc = yt + (oh * OW + ow) * kCB;
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw) {
          const float* __restrict xv = xt + s.pix(g, oh, ow, kh, kw) * kCB;
          const float* __restrict wv = wt + (kh * KW + kw) * kCB;
          if (kh == 0 && kw == 0)
            for (int64_t c = 0; c < kCB; ++c) acc[c] = wv[c] * xv[c];
          else
            for (int64_t c = 0; c < kCB; ++c) acc[c] += wv[c] * xv[c];
        }
      for (int64_t c = 0; c < kCB; ++c) acc[c] += bt[c];
    }
}

// dxt[Hp*Wp][kCB] += scatter form of (3).
SLEEPNET_MULTIVERSION void backward_data_small_block(const Conv2dGeom& g, const SmallGeom& s, const float* dyt,
                                                     const float* wt, float* dxt) {
  const int64_t OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW;
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow) {
      const float* __restrict gv = dyt + (oh * OW + ow) * kCB;
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw) {
          float* __restrict d = dxt + s.pix(g, oh, ow, kh, kw) * kCB;
          const float* __restrict wv = wt + (kh * KW + kw) * kCB;
          for (int64_t c = 0; c < kCB; ++c) d[c] += wv[c] * gv[c];
        }
    }
}

// part[KK][kCB] += formula (2) for one image.
SLEEPNET_MULTIVERSION void backward_weight_small_block(const Conv2dGeom& g, const SmallGeom& s, const float* gt,
                                                       const float* xt, float* part) {
  const int64_t OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW;
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow) {
      const float* __restrict gv = gt + (oh * OW + ow) * kCB;
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw) {
          const float* __restrict xv = xt + s.pix(g, oh, ow, kh, kw) * kCB;
          float* __restrict pv = part + (kh * KW + kw) * kCB;
          for (int64_t c = 0; c < kCB; ++c) pv[c] += gv[c] * xv[c];
        }
    }
}

void forward_small(const Conv2dGeom& g, const float* x, const float* w, const float* bias, float* y) {
  const SmallGeom s(g);
  const int64_t C = g.C, OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW, blocks = ceil_div(C, kCB);
#pragma omp parallel for schedule(static) if (worth_threads(g))
  for (int64_t item = 0; item < g.N * blocks; ++item) {
    const int64_t n = item / blocks, c0 = (item % blocks) * kCB, nb = std::min(kCB, C - c0);
    float* xt = scratch(0, s.Hp * s.Wp * kCB + (OH * OW + KH * KW + 1) * kCB);
    float* yt = xt + s.Hp * s.Wp * kCB;
    float* wt = yt + OH * OW * kCB;
    float* bt = wt + KH * KW * kCB;
    to_channel_last(g, s, x + (n * C + c0) * g.H * g.W, nb, xt);
    weights_channel_last(g, w, c0, nb, wt);
    for (int64_t c = 0; c < kCB; ++c) bt[c] = bias && c < nb ? bias[c0 + c] : 0.f;
    forward_small_block(g, s, xt, wt, bt, yt);
    for (int64_t c = 0; c < nb; ++c)
      for (int64_t p = 0; p < OH * OW; ++p) y[((n * C + c0 + c) * OH * OW) + p] = yt[p * kCB + c];
  }
}

void backward_data_small(const Conv2dGeom& g, const float* dy, const float* w, float* dx) {
  const SmallGeom s(g);
  const int64_t C = g.C, H = g.H, W = g.W, OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW;
  const int64_t blocks = ceil_div(C, kCB);
#pragma omp parallel for schedule(static) if (worth_threads(g))
  for (int64_t item = 0; item < g.N * blocks; ++item) {
    const int64_t n = item / blocks, c0 = (item % blocks) * kCB, nb = std::min(kCB, C - c0);
    float* dxt = scratch(0, s.Hp * s.Wp * kCB + (OH * OW + KH * KW) * kCB);
    float* dyt = dxt + s.Hp * s.Wp * kCB;
    float* wt = dyt + OH * OW * kCB;
    std::fill(dxt, dxt + s.Hp * s.Wp * kCB, 0.f);
    std::fill(dyt, dyt + OH * OW * kCB, 0.f);
    for (int64_t c = 0; c < nb; ++c)
      for (int64_t p = 0; p < OH * OW; ++p) dyt[p * kCB + c] = dy[(n * C + c0 + c) * OH * OW + p];
    weights_channel_last(g, w, c0, nb, wt);
    backward_data_small_block(g, s, dyt, wt, dxt);
    for (int64_t c = 0; c < nb; ++c)
      for (int64_t ih = 0; ih < H; ++ih)
        for (int64_t iw = 0; iw < W; ++iw) {
          const int64_t r = ih + g.PH, q = iw + g.PW;
          dx[((n * C + c0 + c) * H + ih) * W + iw] = r < s.Hp && q < s.Wp ? dxt[(r * s.Wp + q) * kCB + c] : 0.f;
        }
  }
}

void backward_weight_small(const Conv2dGeom& g, const float* x, const float* dy, float* dw) {
  const SmallGeom s(g);
  const int64_t C = g.C, OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW, KK = KH * KW;
  const int64_t blocks = ceil_div(C, kCB);
#pragma omp parallel for schedule(static) if (worth_threads(g))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kCB, nb = std::min(kCB, C - c0);
    float* xt = scratch(0, s.Hp * s.Wp * kCB + (OH * OW + KK) * kCB);
    float* gt = xt + s.Hp * s.Wp * kCB;
    float* part = gt + OH * OW * kCB;
    std::vector<double> acc(static_cast<size_t>(KK * kCB), 0.0);
    for (int64_t n = 0; n < g.N; ++n) {
      to_channel_last(g, s, x + (n * C + c0) * g.H * g.W, nb, xt);
      std::fill(gt, gt + OH * OW * kCB, 0.f);
      for (int64_t c = 0; c < nb; ++c)
        for (int64_t p = 0; p < OH * OW; ++p) gt[p * kCB + c] = dy[(n * C + c0 + c) * OH * OW + p];
      std::fill(part, part + KK * kCB, 0.f);
      backward_weight_small_block(g, s, gt, xt, part);  // one image; images summed in double
      for (int64_t i = 0; i < KK * kCB; ++i) acc[static_cast<size_t>(i)] += part[i];
    }
    for (int64_t c = 0; c < nb; ++c)
      for (int64_t k = 0; k < KK; ++k) dw[(c0 + c) * KK + k] = static_cast<float>(acc[static_cast<size_t>(k * kCB + c)]);
  }
}

}  // namespace

// ---- public kernels ---------------------------------------------------------------------------

void depthwise_forward(const Conv2dGeom& g, const float* x, const float* w, const float* bias, float* y) {
  check_depthwise(g, "depthwise_forward");
  if (small_planes(g, Pass::Forward)) return forward_small(g, x, w, bias, y);
  const int64_t C = g.C, KK = g.KH * g.KW, HW = g.H * g.W, OHW = g.OH() * g.OW();
#pragma omp parallel for schedule(static) if (worth_threads(g))
  for (int64_t p = 0; p < g.N * C; ++p) {
    const int64_t c = p % C;
    forward_plane(g, x + p * HW, w + c * KK, bias ? bias[c] : 0.f, y + p * OHW);
  }
}

void depthwise_backward_data(const Conv2dGeom& g, const float* dy, const float* w, float* dx) {
  check_depthwise(g, "depthwise_backward_data");
  if (small_planes(g, Pass::BackwardData)) return backward_data_small(g, dy, w, dx);
  const int64_t C = g.C, KK = g.KH * g.KW, HW = g.H * g.W, OHW = g.OH() * g.OW();
#pragma omp parallel for schedule(static) if (worth_threads(g))
  for (int64_t p = 0; p < g.N * C; ++p) backward_data_plane(g, dy + p * OHW, w + (p % C) * KK, dx + p * HW);
}

void depthwise_backward_weight(const Conv2dGeom& g, const float* x, const float* dy, float* dw) {
  check_depthwise(g, "depthwise_backward_weight");
  if (small_planes(g, Pass::BackwardWeight)) return backward_weight_small(g, x, dy, dw);
  const int64_t C = g.C, HW = g.H * g.W, OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW;
#pragma omp parallel if (worth_threads(g))
  {
    std::vector<double> acc(static_cast<size_t>(KH * KW));
    const PhasePlane P = phase_plane(g, false);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t n = 0; n < g.N; ++n) {
        fill_plane(g, x + (n * C + c) * HW, P);
        const float* gp = dy + (n * C + c) * OH * OW;
        // Formula (2): for each output row and tap, a dot product of the dy row with the tap's
        // plane row (padding contributes zeros). 3x3: all nine in one pass over the dy row.
        for (int64_t oh = 0; oh < OH; ++oh) {
          if (KH == 3 && KW == 3 && (P.step == 1 || P.step == 2)) {
            (P.step == 1 ? dw_row_3x3_s1 : dw_row_3x3_s2)(gp + oh * OW, P.tap(g.SH, oh, 0, 0), P.tap(g.SH, oh, 1, 0),
                                                          P.tap(g.SH, oh, 2, 0), OW, acc.data());
            continue;
          }
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw)
              acc[static_cast<size_t>(kh * KW + kw)] +=
                  dot_lanes(gp + oh * OW, P.tap(g.SH, oh, kh, kw), OW, P.step);
        }
      }
      for (int64_t k = 0; k < KH * KW; ++k) dw[c * KH * KW + k] = static_cast<float>(acc[static_cast<size_t>(k)]);
    }
  }
}

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
