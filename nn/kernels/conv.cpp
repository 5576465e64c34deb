// nn/kernels/conv.cpp: im2col/col2im and convolution forward/backward through sgemm.
// The method and the threading strategy are described at the top of conv.h.
#include "nn/kernels/conv.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "nn/kernels/common.h"
#include "nn/kernels/gemm.h"

namespace sleepnet::kernels {

namespace {

std::string field(const char* name, int64_t v) { return std::string(name) + " = " + std::to_string(v); }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The output columns ow whose input column iw = ow*SW - PW + kw lies inside [0, W):
// ow in [lo, hi). Left of lo and right of hi the receptive field reads padding.
struct Span {
  int64_t lo, hi;
};
Span valid_span(int64_t OW, int64_t W, int64_t SW, int64_t PW, int64_t kw) {
  const int64_t lo = std::min(OW, PW - kw > 0 ? ceil_div(PW - kw, SW) : int64_t{0});
  const int64_t last = W - 1 + PW - kw;  // ow*SW <= last
  int64_t hi = last < 0 ? 0 : std::min(OW, last / SW + 1);
  return {lo, std::max(lo, hi)};
}

// im2col for the rows r in [r0, r1) of one group's column matrix (row r = (c*KH + kh)*KW + kw).
void im2col_rows(const Conv2dGeom& g, const float* __restrict x, float* __restrict col, int64_t r0,
                 int64_t r1) {
  const int64_t H = g.H, W = g.W, OH = g.OH(), OW = g.OW();
  const int64_t KH = g.KH, KW = g.KW, SH = g.SH, SW = g.SW, PH = g.PH, PW = g.PW;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t c = r / (KH * KW), kh = (r / KW) % KH, kw = r % KW;
    const float* xc = x + c * H * W;
    float* out = col + r * OH * OW;
    const Span s = valid_span(OW, W, SW, PW, kw);
    for (int64_t oh = 0; oh < OH; ++oh) {
      float* __restrict o = out + oh * OW;
      const int64_t ih = oh * SH - PH + kh;
      if (ih < 0 || ih >= H) {
        std::memset(o, 0, sizeof(float) * OW);
        continue;
      }
      const float* __restrict xr = xc + ih * W;
      for (int64_t ow = 0; ow < s.lo; ++ow) o[ow] = 0.f;
      if (SW == 1) {
        const int64_t shift = kw - PW;  // iw = ow + shift
        for (int64_t ow = s.lo; ow < s.hi; ++ow) o[ow] = xr[ow + shift];
      } else {
        for (int64_t ow = s.lo; ow < s.hi; ++ow) o[ow] = xr[ow * SW - PW + kw];
      }
      for (int64_t ow = s.hi; ow < OW; ++ow) o[ow] = 0.f;
    }
  }
}

// col2im for the channels c in [c0, c1): dx[c] is overwritten with the sum of its rows' entries.
void col2im_channels(const Conv2dGeom& g, const float* __restrict col, float* __restrict dx,
                     int64_t c0, int64_t c1) {
  const int64_t H = g.H, W = g.W, OH = g.OH(), OW = g.OW();
  const int64_t KH = g.KH, KW = g.KW, SH = g.SH, SW = g.SW, PH = g.PH, PW = g.PW;
  for (int64_t c = c0; c < c1; ++c) {
    float* dxc = dx + c * H * W;
    std::memset(dxc, 0, sizeof(float) * H * W);
    for (int64_t kh = 0; kh < KH; ++kh) {
      for (int64_t kw = 0; kw < KW; ++kw) {
        const float* in = col + ((c * KH + kh) * KW + kw) * OH * OW;
        const Span s = valid_span(OW, W, SW, PW, kw);
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t ih = oh * SH - PH + kh;
          if (ih < 0 || ih >= H) continue;
          float* __restrict d = dxc + ih * W;
          const float* __restrict i = in + oh * OW;
          if (SW == 1) {
            const int64_t shift = kw - PW;
            for (int64_t ow = s.lo; ow < s.hi; ++ow) d[ow + shift] += i[ow];
          } else {
            for (int64_t ow = s.lo; ow < s.hi; ++ow) d[ow * SW - PW + kw] += i[ow];
          }
        }
      }
    }
  }
}

// Below this many flops a convolution runs on one thread: waking a thread team costs more than
// it saves (and far more when the machine is oversubscribed).
constexpr double kMinParallelFlops = 1e6;

int conv_threads(const Conv2dGeom& g) { return g.flops() >= kMinParallelFlops ? max_threads() : 1; }

// Auto: whole images per thread when there are enough (one parallel region per call, no
// synchronisation inside); otherwise (batch 1) each product is split across the OpenMP threads by
// hand (Columns), each calling single-threaded OpenBLAS on its share. Handing the product to
// OpenBLAS's own threads (Blas) puts two thread pools on the cores: after an OpenMP region (im2col,
// col2im, the neighbouring layers) the idle OpenMP threads spin while OpenBLAS's threads want the
// same cores, and the im2col layer then ran up to 24x slower than its GEMM alone (bench/README.md).
ConvThreading resolve(ConvThreading mode, int64_t items, int threads) {
  if (mode != ConvThreading::Auto && mode != ConvThreading::Chunks) return mode;
  if (threads <= 1 || items >= threads) return ConvThreading::Images;
  return ConvThreading::Columns;
}

// Images n0 .. n0+m-1 of a [N][rows][P] tensor side by side, dst [rows][m * P]; and back.
void gather_images(const float* src, int64_t n0, int64_t m, int64_t rows, int64_t P, float* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < m; ++i) std::memcpy(dst + (r * m + i) * P, src + ((n0 + i) * rows + r) * P, sizeof(float) * P);
}
void scatter_images(const float* src, int64_t n0, int64_t m, int64_t rows, int64_t P, float* dst) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + ((n0 + i) * rows + r) * P, src + (r * m + i) * P, sizeof(float) * P);
}

// body(item) for item in [0, items): one parallel region with dynamic scheduling (per-image work is
// uneven) on T threads, or a plain loop when T == 1 (no OpenMP runtime call; common.h).
template <class F>
void for_items(int64_t items, int T, F&& body) {
  if (T <= 1 || items <= 1) {
    for (int64_t item = 0; item < items; ++item) body(item);
    return;
  }
#pragma omp parallel for schedule(dynamic) num_threads(T)
  for (int64_t item = 0; item < items; ++item) body(item);
}

// im2col of one (image, group) for the Blas mode: its rows split across threads when there are
// enough of them (one region per image; the GEMM that follows is OpenBLAS's to thread).
void im2col_threads(const Conv2dGeom& g, const float* x, float* col, int T) {
  const int64_t K = g.col_rows();
  parallel_for(K, std::min(T, threads_for(K * g.OH() * g.OW(), 1 << 15)),
               [&](int64_t r0, int64_t r1) { im2col_rows(g, x, col, r0, r1); });
}

// [begin, end) of chunk t when n items are split into `parts` chunks whose starts are multiples
// of `align` (so each thread's GEMM columns start on a cache line).
std::pair<int64_t, int64_t> chunk(int64_t n, int64_t parts, int64_t t, int64_t align) {
  int64_t size = ceil_div(ceil_div(n, parts), align) * align;
  const int64_t b = std::min(n, t * size), e = std::min(n, b + size);
  return {b, e};
}

}  // namespace

// chunk_images (conv.h): images per product of a 1x1 layer in the Chunks mode. One product per
// image packs the whole weight matrix (OC x C) for a plane of OH*OW columns: on the late layers of a 64x64
// input (4x4 and 2x2 planes, up to 960 x 160 weights) the packing costs more than the
// multiply-adds. Chunks put images side by side, [C][m * OH*OW] (a copy of the small planes), for
// products of about kPointwiseColumns columns, at least one chunk per thread (inference at width
// 1.0, 64x64, batch 32: 1.5x the samples per second, bench/README.md). Only for inference (the
// functional layer asks for it when it records no graph): OpenBLAS may sum a wider product in
// another order, and training keeps the bits the parity fixtures were checked with (their later
// steps amplify rounding; tests/golden/README.md).
//
// Worth it when packing the weights (OC x C floats per image) costs more than the copies in and out
// (C + OC floats per pixel): planes below OC*C / (OC + C) pixels. Measured (bench_kernels_conv
// --modes, 64x64 at batch 32, width 1.0, AMD EPYC, OpenBLAS Haswell kernels): 2x2 planes
// 2.4-2.7x faster, 4x4 planes 1.03-1.16x, 8x8 planes of 144 -> 32 or 32 -> 192 channels (64
// pixels, above the bound's 26-28) 6-12 % slower, so those keep one image per product.
namespace {
constexpr int64_t kPointwiseColumns = 256;
}  // namespace

int64_t chunk_images(const Conv2dGeom& g, int threads) {
  const int64_t ohw = g.OH() * g.OW();
  if (!g.is_pointwise() || g.groups != 1) return 1;
  if (ohw >= kPointwiseColumns || ohw * (g.OC + g.C) >= g.OC * g.C) return 1;
  const int64_t per_thread = (g.N + threads - 1) / std::max(threads, 1);
  return std::max<int64_t>(1, std::min((kPointwiseColumns + ohw - 1) / ohw, per_thread));
}

// ---- geometry ------------------------------------------------------------------------------------

void Conv2dGeom::validate(const char* who) const {
  // Every convolution and depthwise call runs this, so the messages are built only on failure.
  auto fail = [&](const std::string& what) {
    throw Error(std::string(who) + " (nn/kernels/conv.h Conv2dGeom): " + what);
  };
  const std::pair<const char*, int64_t> positive[] = {{"N", N},   {"C", C},   {"H", H},   {"W", W},
                                                      {"OC", OC}, {"KH", KH}, {"KW", KW}, {"SH", SH},
                                                      {"SW", SW}, {"groups", groups}};
  for (const auto& [name, v] : positive)
    if (v < 1) fail(field(name, v) + ", expected >= 1");
  if (PH < 0) fail(field("PH", PH) + ", expected >= 0");
  if (PW < 0) fail(field("PW", PW) + ", expected >= 0");
  if (C % groups != 0 || OC % groups != 0)
    fail(field("groups", groups) + " must divide C = " + std::to_string(C) + " and OC = " + std::to_string(OC));
  if (H + 2 * PH < KH) fail(field("KH", KH) + " exceeds the padded height H + 2*PH = " + std::to_string(H + 2 * PH));
  if (W + 2 * PW < KW) fail(field("KW", KW) + " exceeds the padded width W + 2*PW = " + std::to_string(W + 2 * PW));
}

Conv2dGeom conv2d_geom(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC, int64_t k,
                       int64_t stride, int64_t padding, int64_t groups) {
  Conv2dGeom g;
  g.N = N, g.C = C, g.H = H, g.W = W, g.OC = OC;
  g.KH = g.KW = k;
  g.SH = g.SW = stride;
  g.PH = g.PW = padding;
  g.groups = groups;
  return g;
}

// ---- im2col / col2im -------------------------------------------------------------------------------

void im2col(const Conv2dGeom& g, const float* x, float* col) {
  g.validate("im2col");
  im2col_rows(g, x, col, 0, g.col_rows());
}

void col2im(const Conv2dGeom& g, const float* col, float* dx) {
  g.validate("col2im");
  col2im_channels(g, col, dx, 0, g.Cg());
}

void im2col_ref(const Conv2dGeom& g, const float* x, float* col) {
  g.validate("im2col_ref");
  const int64_t OH = g.OH(), OW = g.OW();
  for (int64_t c = 0; c < g.Cg(); ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t ih = oh * g.SH - g.PH + kh, iw = ow * g.SW - g.PW + kw;
            const bool inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
            col[((c * g.KH + kh) * g.KW + kw) * OH * OW + oh * OW + ow] =
                inside ? x[(c * g.H + ih) * g.W + iw] : 0.f;
          }
}

void col2im_ref(const Conv2dGeom& g, const float* col, float* dx) {
  g.validate("col2im_ref");
  const int64_t OH = g.OH(), OW = g.OW();
  std::fill(dx, dx + g.Cg() * g.H * g.W, 0.f);
  for (int64_t c = 0; c < g.Cg(); ++c)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t ih = oh * g.SH - g.PH + kh, iw = ow * g.SW - g.PW + kw;
            if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W)
              dx[(c * g.H + ih) * g.W + iw] +=
                  col[((c * g.KH + kh) * g.KW + kw) * OH * OW + oh * OW + ow];
          }
}

// ---- forward -----------------------------------------------------------------------------------------

void conv2d_forward(const Conv2dGeom& g, const float* x, const float* w, const float* bias,
                    float* y, ConvThreading mode) {
  g.validate("conv2d_forward");
  const int64_t G = g.groups, Cg = g.Cg(), OCg = g.OCg(), K = g.col_rows();
  const int64_t HW = g.H * g.W, OHW = g.OH() * g.OW(), items = g.N * G;
  const bool pointwise = g.is_pointwise();
  const int T = conv_threads(g);
  const int64_t nb = mode == ConvThreading::Chunks ? chunk_images(g, T) : 1;  // images per product
  mode = resolve(mode, items, T);

  // y_g[:, j0:j1] = w_g * col[:, j0:j1] (+ bias) for one (image n, group gi).
  auto product = [&](int64_t n, int64_t gi, const float* col, int64_t j0, int64_t j1) {
    if (j1 <= j0) return;
    float* yg = y + (n * g.OC + gi * OCg) * OHW;
    sgemm(false, false, OCg, j1 - j0, K, 1.f, w + gi * OCg * K, K, col + j0, OHW, 0.f, yg + j0, OHW);
    if (bias)
      for (int64_t oc = 0; oc < OCg; ++oc) {
        const float b = bias[gi * OCg + oc];
        float* __restrict row = yg + oc * OHW;
        for (int64_t j = j0; j < j1; ++j) row[j] += b;
      }
  };
  auto image = [&](int64_t n, int64_t gi) { return x + (n * g.C + gi * Cg) * HW; };

  if (nb > 1) {  // small planes: a chunk of images per product (see chunk_images)
    BlasThreads blas(1);
    const int64_t C = g.C, OC = g.OC;
    for_items(ceil_div(g.N, nb), T, [&](int64_t chunk) {
      const int64_t n0 = chunk * nb, m = std::min(nb, g.N - n0), L = m * OHW;
      float* X = scratch(0, C * L);
      float* Y = scratch(1, OC * L);
      gather_images(x, n0, m, C, OHW, X);
      sgemm(false, false, OC, L, C, 1.f, w, C, X, L, 0.f, Y, L);
      if (bias)  // row oc of the chunk's product holds output channel oc of all m images
        for (int64_t oc = 0; oc < OC; ++oc) {
          float* __restrict row = Y + oc * L;
          for (int64_t j = 0; j < L; ++j) row[j] += bias[oc];
        }
      scatter_images(Y, n0, m, OC, OHW, y);
    });
  } else if (mode == ConvThreading::Images) {
    BlasThreads blas(1);
    for_items(items, T, [&](int64_t item) {
      const int64_t n = item / G, gi = item % G;
      const float* col = image(n, gi);
      if (!pointwise) {
        float* buf = scratch(0, K * OHW);
        im2col_rows(g, image(n, gi), buf, 0, K);
        col = buf;
      }
      product(n, gi, col, 0, OHW);
    });
  } else if (mode == ConvThreading::Columns) {
    BlasThreads blas(1);
    float* buf = pointwise ? nullptr : scratch(0, K * OHW);  // shared by the team
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / G, gi = item % G;
      const float* col = pointwise ? image(n, gi) : buf;
#pragma omp parallel num_threads(T)
      {
        if (!pointwise) {
#pragma omp for schedule(static)
          for (int64_t r = 0; r < K; ++r) im2col_rows(g, image(n, gi), buf, r, r + 1);
        }
        const int parts = team_size();
#pragma omp for schedule(static)
        for (int t = 0; t < parts; ++t) {
          const auto [j0, j1] = chunk(OHW, parts, t, 16);
          product(n, gi, col, j0, j1);
        }
      }
    }
  } else {  // Blas
    BlasThreads blas(T);
    float* buf = pointwise ? nullptr : scratch(0, K * OHW);
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / G, gi = item % G;
      const float* col = pointwise ? image(n, gi) : buf;
      if (!pointwise) im2col_threads(g, image(n, gi), buf, T);
      product(n, gi, col, 0, OHW);
    }
  }
}

void conv2d_forward_ref(const Conv2dGeom& g, const float* x, const float* w, const float* bias,
                        float* y) {
  g.validate("conv2d_forward_ref");
  const int64_t Cg = g.Cg(), OCg = g.OCg(), K = g.col_rows(), OHW = g.OH() * g.OW();
  std::vector<float> col(static_cast<size_t>(K * OHW));
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      im2col_ref(g, x + (n * g.C + gi * Cg) * g.H * g.W, col.data());
      float* yg = y + (n * g.OC + gi * OCg) * OHW;
      sgemm_ref(false, false, OCg, OHW, K, 1.f, w + gi * OCg * K, K, col.data(), OHW, 0.f, yg, OHW);
      if (bias)
        for (int64_t oc = 0; oc < OCg; ++oc)
          for (int64_t j = 0; j < OHW; ++j) yg[oc * OHW + j] += bias[gi * OCg + oc];
    }
}

// ---- backward-data ---------------------------------------------------------------------------------

void conv2d_backward_data(const Conv2dGeom& g, const float* dy, const float* w, float* dx,
                          ConvThreading mode) {
  g.validate("conv2d_backward_data");
  const int64_t G = g.groups, Cg = g.Cg(), OCg = g.OCg(), K = g.col_rows();
  const int64_t HW = g.H * g.W, OHW = g.OH() * g.OW(), items = g.N * G;
  const bool pointwise = g.is_pointwise();
  const int T = conv_threads(g);
  mode = resolve(mode, items, T);

  // dcol[:, j0:j1] = w_g^T * dy_g[:, j0:j1] for one (image n, group gi).
  auto product = [&](int64_t n, int64_t gi, float* dcol, int64_t j0, int64_t j1) {
    if (j1 <= j0) return;
    const float* dyg = dy + (n * g.OC + gi * OCg) * OHW;
    sgemm(true, false, K, j1 - j0, OCg, 1.f, w + gi * OCg * K, K, dyg + j0, OHW, 0.f, dcol + j0, OHW);
  };
  auto image = [&](int64_t n, int64_t gi) { return dx + (n * g.C + gi * Cg) * HW; };

  if (mode == ConvThreading::Images) {
    BlasThreads blas(1);
    for_items(items, T, [&](int64_t item) {
      const int64_t n = item / G, gi = item % G;
      float* dcol = pointwise ? image(n, gi) : scratch(0, K * OHW);
      product(n, gi, dcol, 0, OHW);
      if (!pointwise) col2im_channels(g, dcol, image(n, gi), 0, Cg);
    });
  } else if (mode == ConvThreading::Columns) {
    BlasThreads blas(1);
    float* buf = pointwise ? nullptr : scratch(0, K * OHW);
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / G, gi = item % G;
      float* dcol = pointwise ? image(n, gi) : buf;
#pragma omp parallel num_threads(T)
      {
        const int parts = team_size();
#pragma omp for schedule(static)
        for (int t = 0; t < parts; ++t) {
          const auto [j0, j1] = chunk(OHW, parts, t, 16);
          product(n, gi, dcol, j0, j1);
        }
        if (!pointwise) {
#pragma omp for schedule(static)
          for (int64_t c = 0; c < Cg; ++c) col2im_channels(g, buf, image(n, gi), c, c + 1);
        }
      }
    }
  } else {  // Blas
    BlasThreads blas(T);
    float* buf = pointwise ? nullptr : scratch(0, K * OHW);
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / G, gi = item % G;
      float* dcol = pointwise ? image(n, gi) : buf;
      product(n, gi, dcol, 0, OHW);
      if (!pointwise)
        parallel_for(Cg, std::min(T, threads_for(K * OHW, 1 << 15)),
                     [&](int64_t c0, int64_t c1) { col2im_channels(g, buf, image(n, gi), c0, c1); });
    }
  }
}

void conv2d_backward_data_ref(const Conv2dGeom& g, const float* dy, const float* w, float* dx) {
  g.validate("conv2d_backward_data_ref");
  const int64_t Cg = g.Cg(), OCg = g.OCg(), K = g.col_rows(), OHW = g.OH() * g.OW();
  std::vector<float> dcol(static_cast<size_t>(K * OHW));
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const float* dyg = dy + (n * g.OC + gi * OCg) * OHW;
      sgemm_ref(true, false, K, OHW, OCg, 1.f, w + gi * OCg * K, K, dyg, OHW, 0.f, dcol.data(), OHW);
      col2im_ref(g, dcol.data(), dx + (n * g.C + gi * Cg) * g.H * g.W);
    }
}

// ---- backward-weight -------------------------------------------------------------------------------

void conv2d_backward_weight(const Conv2dGeom& g, const float* x, const float* dy, float* dw,
                            ConvThreading mode) {
  g.validate("conv2d_backward_weight");
  const int64_t G = g.groups, Cg = g.Cg(), OCg = g.OCg(), K = g.col_rows();
  const int64_t HW = g.H * g.W, OHW = g.OH() * g.OW(), items = g.N * G, wn = g.w_numel();
  const bool pointwise = g.is_pointwise();
  const int T = conv_threads(g);
  mode = resolve(mode, items, T);

  auto image = [&](int64_t n, int64_t gi) { return x + (n * g.C + gi * Cg) * HW; };
  // acc_g[r0:r1, :] (+)= dy_g[r0:r1, :] * col^T for one (image n, group gi).
  auto product = [&](int64_t n, int64_t gi, const float* col, float* acc, float beta, int64_t r0,
                     int64_t r1) {
    if (r1 <= r0) return;
    const float* dyg = dy + (n * g.OC + gi * OCg + r0) * OHW;
    sgemm(false, true, r1 - r0, K, OHW, 1.f, dyg, OHW, col, OHW, beta, acc + (gi * OCg + r0) * K, K);
  };

  if (mode == ConvThreading::Images) {
    BlasThreads blas(1);
    auto im2col_of = [&](int64_t n, int64_t gi) {
      if (pointwise) return image(n, gi);
      float* buf = scratch(0, K * OHW);
      im2col_rows(g, image(n, gi), buf, 0, K);
      return static_cast<const float*>(buf);
    };
    if (T <= 1 || items <= 1) {  // one thread: the products accumulate straight into dw
      for (int64_t item = 0; item < items; ++item) {
        const int64_t n = item / G, gi = item % G;
        product(n, gi, im2col_of(n, gi), dw, n == 0 ? 0.f : 1.f, 0, OCg);
      }
      return;
    }
    // Each thread sums its share of the images (a static split: thread t takes the t-th block)
    // into a private copy of dw; after the one barrier the copies are added in thread order, each
    // thread a slice of dw (so the result depends on the thread count only through rounding).
    std::vector<float*> partial(static_cast<size_t>(T), nullptr);
#pragma omp parallel num_threads(T)
    {
      const int t = thread_num(), used = team_size();
      float* acc = scratch(1, wn);
      std::fill(acc, acc + wn, 0.f);
      partial[static_cast<size_t>(t)] = acc;
      for (int64_t item = items * t / used; item < items * (t + 1) / used; ++item) {
        const int64_t n = item / G, gi = item % G;
        product(n, gi, im2col_of(n, gi), acc, 1.f, 0, OCg);
      }
#pragma omp barrier
      for (int64_t i = wn * t / used; i < wn * (t + 1) / used; ++i) {
        float sum = 0.f;
        for (int u = 0; u < used; ++u) sum += partial[static_cast<size_t>(u)][i];
        dw[i] = sum;
      }
    }
  } else if (mode == ConvThreading::Columns) {
    // Few products: split each one by rows of dw (output channels); no reduction needed.
    BlasThreads blas(1);
    float* buf = pointwise ? nullptr : scratch(0, K * OHW);
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / G, gi = item % G;
      const float* col = pointwise ? image(n, gi) : buf;
      const float beta = n == 0 ? 0.f : 1.f;
#pragma omp parallel num_threads(T)
      {
        if (!pointwise) {
#pragma omp for schedule(static)
          for (int64_t r = 0; r < K; ++r) im2col_rows(g, image(n, gi), buf, r, r + 1);
        }
        const int parts = team_size();
#pragma omp for schedule(static)
        for (int t = 0; t < parts; ++t) {
          const auto [r0, r1] = chunk(OCg, parts, t, 1);
          product(n, gi, col, dw, beta, r0, r1);
        }
      }
    }
  } else {  // Blas
    BlasThreads blas(T);
    float* buf = pointwise ? nullptr : scratch(0, K * OHW);
    for (int64_t item = 0; item < items; ++item) {
      const int64_t n = item / G, gi = item % G;
      const float* col = pointwise ? image(n, gi) : buf;
      if (!pointwise) im2col_threads(g, image(n, gi), buf, T);
      product(n, gi, col, dw, n == 0 ? 0.f : 1.f, 0, OCg);
    }
  }
}

void conv2d_backward_weight_ref(const Conv2dGeom& g, const float* x, const float* dy, float* dw) {
  g.validate("conv2d_backward_weight_ref");
  const int64_t Cg = g.Cg(), OCg = g.OCg(), K = g.col_rows(), OHW = g.OH() * g.OW();
  std::vector<float> col(static_cast<size_t>(K * OHW));
  std::vector<float> one(static_cast<size_t>(OCg * K));
  std::vector<double> sum(static_cast<size_t>(g.w_numel()), 0.0);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      im2col_ref(g, x + (n * g.C + gi * Cg) * g.H * g.W, col.data());
      const float* dyg = dy + (n * g.OC + gi * OCg) * OHW;
      sgemm_ref(false, true, OCg, K, OHW, 1.f, dyg, OHW, col.data(), OHW, 0.f, one.data(), K);
      for (int64_t i = 0; i < OCg * K; ++i) sum[static_cast<size_t>(gi * OCg * K + i)] += one[static_cast<size_t>(i)];
    }
  for (int64_t i = 0; i < g.w_numel(); ++i) dw[i] = static_cast<float>(sum[static_cast<size_t>(i)]);
}

// ---- backward-bias ---------------------------------------------------------------------------------

void conv2d_backward_bias(int64_t N, int64_t OC, int64_t P, const float* dy, float* db) {
  require(N >= 1 && OC >= 1 && P >= 1, "conv2d_backward_bias (nn/kernels/conv.h)", [&] {
    return "N, OC, P must be >= 1, got " + std::to_string(N) + ", " + std::to_string(OC) + ", " + std::to_string(P);
  });
  parallel_for(OC, threads_for(N * OC * P, 1 << 15), [&](int64_t oc0, int64_t oc1) {
    for (int64_t oc = oc0; oc < oc1; ++oc) {
      double s = 0.0;
      for (int64_t n = 0; n < N; ++n) s += sum_lanes(dy + (n * OC + oc) * P, P);
      db[oc] = static_cast<float>(s);
    }
  });
}

void conv2d_backward_bias_ref(int64_t N, int64_t OC, int64_t P, const float* dy, float* db) {
  require(N >= 1 && OC >= 1 && P >= 1, "conv2d_backward_bias_ref (nn/kernels/conv.h)",
          "N, OC, P must be >= 1");
  for (int64_t oc = 0; oc < OC; ++oc) {
    double s = 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t p = 0; p < P; ++p) s += dy[(n * OC + oc) * P + p];
    db[oc] = static_cast<float>(s);
  }
}

}  // namespace sleepnet::kernels
