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

struct Range {
  int64_t lo, hi;
};

// Outputs o in [0, O) whose tap k reads inside the input: 0 <= o*S - P + k < I.
Range tap_range(int64_t O, int64_t I, int64_t S, int64_t P, int64_t k) {
  const int64_t lo = std::min(O, P - k > 0 ? ceil_div(P - k, S) : int64_t{0});
  const int64_t last = I - 1 + P - k;
  const int64_t hi = last < 0 ? 0 : std::min(O, last / S + 1);
  return {lo, std::max(lo, hi)};
}

// Outputs o whose whole window of K taps lies inside the input (no padding read): the interior.
Range interior(int64_t O, int64_t I, int64_t K, int64_t S, int64_t P) {
  const Range first = tap_range(O, I, S, P, 0), last = tap_range(O, I, S, P, K - 1);
  const int64_t lo = std::max(first.lo, last.lo), hi = std::min(first.hi, last.hi);
  return {lo, std::max(lo, hi)};
}

// sum_i a[i] * b[i * sb] with 8 float lanes (vectorizable without -ffast-math), in double.
double dot_lanes(const float* __restrict a, const float* __restrict b, int64_t n, int64_t sb) {
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  if (sb == 1) {
    for (; i + 8 <= n; i += 8)
      for (int k = 0; k < 8; ++k) lane[k] += a[i + k] * b[i + k];
  } else {
    for (; i + 8 <= n; i += 8)
      for (int k = 0; k < 8; ++k) lane[k] += a[i + k] * b[(i + k) * sb];
  }
  double s = 0.0;
  for (int k = 0; k < 8; ++k) s += lane[k];
  for (; i < n; ++i) s += static_cast<double>(a[i]) * b[i * sb];
  return s;
}

// ---- forward ----

// Rows [oh0, oh1) of one plane, any kernel: each output row accumulates, tap by tap, a shifted
// input row times one weight; taps that would read padding are skipped by the ranges.
// Terms are added in (kh, kw) order, then the bias: the same order as the reference.
void forward_rows_general(const Conv2dGeom& g, const float* __restrict x, const float* __restrict w,
                          float b, float* __restrict y, int64_t oh0, int64_t oh1) {
  const int64_t H = g.H, W = g.W, OW = g.OW(), KH = g.KH, KW = g.KW, SH = g.SH, SW = g.SW;
  const int64_t PH = g.PH, PW = g.PW;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    float* __restrict o = y + oh * OW;
    std::fill(o, o + OW, 0.f);
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t ih = oh * SH - PH + kh;
      if (ih < 0 || ih >= H) continue;
      const float* __restrict xr = x + ih * W;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const float wv = w[kh * KW + kw];
        const Range r = tap_range(OW, W, SW, PW, kw);
        if (SW == 1) {
          const int64_t shift = kw - PW;
          for (int64_t ow = r.lo; ow < r.hi; ++ow) o[ow] += wv * xr[ow + shift];
        } else {
          for (int64_t ow = r.lo; ow < r.hi; ++ow) o[ow] += wv * xr[ow * SW - PW + kw];
        }
      }
    }
    for (int64_t ow = 0; ow < OW; ++ow) o[ow] += b;
  }
}

// One output element with bounds checks (the border columns of the 3x3 path).
float forward_point(const Conv2dGeom& g, const float* x, const float* w, float b, int64_t oh, int64_t ow) {
  float acc = 0.f;
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    const int64_t ih = oh * g.SH - g.PH + kh;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t kw = 0; kw < g.KW; ++kw) {
      const int64_t iw = ow * g.SW - g.PW + kw;
      if (iw < 0 || iw >= g.W) continue;
      acc += w[kh * g.KW + kw] * x[ih * g.W + iw];
    }
  }
  return acc + b;
}

// One plane, 3x3 kernel, stride S (1 or 2), any padding. Interior rows and columns: nine
// multiply-adds per output from three input rows held in registers, no bounds checks.
template <int S>
void forward_plane_3x3(const Conv2dGeom& g, const float* __restrict x, const float* __restrict w,
                       float b, float* __restrict y) {
  const int64_t W = g.W, OH = g.OH(), OW = g.OW(), PH = g.PH, PW = g.PW;
  const Range rows = interior(OH, g.H, 3, S, PH), cols = interior(OW, W, 3, S, PW);
  forward_rows_general(g, x, w, b, y, 0, rows.lo);
  const float w00 = w[0], w01 = w[1], w02 = w[2], w10 = w[3], w11 = w[4], w12 = w[5], w20 = w[6],
              w21 = w[7], w22 = w[8];
  for (int64_t oh = rows.lo; oh < rows.hi; ++oh) {
    const float* __restrict r0 = x + (oh * S - PH) * W;
    const float* __restrict r1 = r0 + W;
    const float* __restrict r2 = r1 + W;
    float* __restrict o = y + oh * OW;
    for (int64_t ow = 0; ow < cols.lo; ++ow) o[ow] = forward_point(g, x, w, b, oh, ow);
    for (int64_t ow = cols.lo; ow < cols.hi; ++ow) {
      const int64_t i = ow * S - PW;
      float acc = w00 * r0[i];
      acc += w01 * r0[i + 1];
      acc += w02 * r0[i + 2];
      acc += w10 * r1[i];
      acc += w11 * r1[i + 1];
      acc += w12 * r1[i + 2];
      acc += w20 * r2[i];
      acc += w21 * r2[i + 1];
      acc += w22 * r2[i + 2];
      o[ow] = acc + b;
    }
    for (int64_t ow = cols.hi; ow < OW; ++ow) o[ow] = forward_point(g, x, w, b, oh, ow);
  }
  forward_rows_general(g, x, w, b, y, rows.hi, OH);
}

void forward_plane(const Conv2dGeom& g, const float* x, const float* w, float b, float* y) {
  if (g.KH == 3 && g.KW == 3 && g.SH == g.SW && g.SH == 1)
    forward_plane_3x3<1>(g, x, w, b, y);
  else if (g.KH == 3 && g.KW == 3 && g.SH == g.SW && g.SH == 2)
    forward_plane_3x3<2>(g, x, w, b, y);
  else
    forward_rows_general(g, x, w, b, y, 0, g.OH());
}

// ---- backward-data ----

// One plane, any geometry, by scattering each output gradient over its window: formula (3)
// read from the outputs' side.
void backward_data_plane_general(const Conv2dGeom& g, const float* __restrict dy,
                                 const float* __restrict w, float* __restrict dx) {
  const int64_t H = g.H, W = g.W, OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW;
  const int64_t SH = g.SH, SW = g.SW, PH = g.PH, PW = g.PW;
  std::fill(dx, dx + H * W, 0.f);
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* __restrict gr = dy + oh * OW;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t ih = oh * SH - PH + kh;
      if (ih < 0 || ih >= H) continue;
      float* __restrict d = dx + ih * W;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const float wv = w[kh * KW + kw];
        const Range r = tap_range(OW, W, SW, PW, kw);
        if (SW == 1) {
          const int64_t shift = kw - PW;
          for (int64_t ow = r.lo; ow < r.hi; ++ow) d[ow + shift] += wv * gr[ow];
        } else {
          for (int64_t ow = r.lo; ow < r.hi; ++ow) d[ow * SW - PW + kw] += wv * gr[ow];
        }
      }
    }
  }
}

// Stride 1, 3x3, padding <= 2: the forward pass on dy with the kernel rotated by 180 degrees and
// padding 2 - P (see the derivation at the top).
void backward_data_plane_3x3_s1(const Conv2dGeom& g, const float* dy, const float* w, float* dx) {
  Conv2dGeom t = g;
  t.H = g.OH(), t.W = g.OW(), t.PH = 2 - g.PH, t.PW = 2 - g.PW;  // t.OH() == g.H, t.OW() == g.W
  const float rot[9] = {w[8], w[7], w[6], w[5], w[4], w[3], w[2], w[1], w[0]};
  forward_plane_3x3<1>(t, dy, rot, 0.f, dx);
}

void backward_data_plane(const Conv2dGeom& g, const float* dy, const float* w, float* dx) {
  if (g.KH == 3 && g.KW == 3 && g.SH == 1 && g.SW == 1 && g.PH <= 2 && g.PW <= 2)
    backward_data_plane_3x3_s1(g, dy, w, dx);
  else
    backward_data_plane_general(g, dy, w, dx);
}

}  // namespace

// ---- public kernels ---------------------------------------------------------------------------

void depthwise_forward(const Conv2dGeom& g, const float* x, const float* w, const float* bias, float* y) {
  check_depthwise(g, "depthwise_forward");
  const int64_t C = g.C, KK = g.KH * g.KW, HW = g.H * g.W, OHW = g.OH() * g.OW();
#pragma omp parallel for schedule(static) if (worth_threads(g))
  for (int64_t p = 0; p < g.N * C; ++p) {
    const int64_t c = p % C;
    forward_plane(g, x + p * HW, w + c * KK, bias ? bias[c] : 0.f, y + p * OHW);
  }
}

void depthwise_backward_data(const Conv2dGeom& g, const float* dy, const float* w, float* dx) {
  check_depthwise(g, "depthwise_backward_data");
  const int64_t C = g.C, KK = g.KH * g.KW, HW = g.H * g.W, OHW = g.OH() * g.OW();
#pragma omp parallel for schedule(static) if (worth_threads(g))
  for (int64_t p = 0; p < g.N * C; ++p) backward_data_plane(g, dy + p * OHW, w + (p % C) * KK, dx + p * HW);
}

void depthwise_backward_weight(const Conv2dGeom& g, const float* x, const float* dy, float* dw) {
  check_depthwise(g, "depthwise_backward_weight");
  const int64_t C = g.C, H = g.H, W = g.W, OH = g.OH(), OW = g.OW(), KH = g.KH, KW = g.KW;
  const int64_t SH = g.SH, SW = g.SW, PH = g.PH, PW = g.PW;
#pragma omp parallel if (worth_threads(g))
  {
    std::vector<double> acc(static_cast<size_t>(KH * KW));
#pragma omp for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t n = 0; n < g.N; ++n) {
        const float* xp = x + (n * C + c) * H * W;
        const float* gp = dy + (n * C + c) * OH * OW;
        // Formula (2): for each output row and tap, a dot product of a row of dy with a
        // (strided) row of x, over the outputs whose tap reads inside the image.
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t kh = 0; kh < KH; ++kh) {
            const int64_t ih = oh * SH - PH + kh;
            if (ih < 0 || ih >= H) continue;
            for (int64_t kw = 0; kw < KW; ++kw) {
              const Range r = tap_range(OW, W, SW, PW, kw);
              if (r.hi <= r.lo) continue;
              acc[static_cast<size_t>(kh * KW + kw)] +=
                  dot_lanes(gp + oh * OW + r.lo, xp + ih * W + r.lo * SW - PW + kw, r.hi - r.lo, SW);
            }
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
