// tests/kernels_conv_test.cpp: im2col/col2im and the im2col+GEMM convolution (nn/kernels/conv.h).
//
// Three layers of checks:
//   1. the `_ref` kernels against a brute-force direct convolution computed here in double
//      (forward), and against the forward through adjoint identities (backward):
//        <dy, conv(x, w)> == <conv_backward_data(dy, w), x> == <conv_backward_weight(x, dy), w>
//      which hold exactly in real arithmetic, so in double they agree to ~1e-12 relative;
//   2. every optimized kernel, in every threading mode, against its `_ref` twin on many geometries
//      (odd sizes, stride 2 with odd and even inputs, padding 0/1/2, kernels 1/3/5, groups);
//   3. the same on every distinct convolution shape of MobileNetV2 at a small batch, and with 1, 2
//      and 3 threads on batches that do not divide evenly among them (the per-thread partial
//      weight gradients and their reduction after the one barrier).
// Error bounds are per element: rtol * (the same computation on |inputs|), i.e. relative to the
// sum of |terms| that rounding acts on.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "nn/kernels/conv.h"
#include "nn/kernels/gemm.h"
#include "nn/kernels/mobilenet_shapes.h"
#include "tensor/tensor.h"
#include "tests/kernels_test_util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace sleepnet::kernels {
namespace {

using testing::abs_of;
using testing::dot;
using testing::expect_close;
using testing::expect_equal;
using testing::random_floats;

// Float-path tolerance (OpenBLAS sums in another order than the double-accumulating refs).
constexpr double kRtol = 1e-5;

std::string label(const Conv2dGeom& g) {
  std::ostringstream s;
  s << "N" << g.N << " C" << g.C << " " << g.H << "x" << g.W << " OC" << g.OC << " k" << g.KH << "x"
    << g.KW << " s" << g.SH << "," << g.SW << " p" << g.PH << "," << g.PW << " g" << g.groups;
  return s.str();
}

// y[n, oc, oh, ow] = bias[oc] + sum over c in the group, kh, kw of w * x, straight from the
// definition of PyTorch's Conv2d, in double.
std::vector<double> direct_conv(const Conv2dGeom& g, const std::vector<float>& x,
                                const std::vector<float>& w, const float* bias) {
  const int64_t OH = g.OH(), OW = g.OW(), Cg = g.Cg(), OCg = g.OCg();
  std::vector<double> y(static_cast<size_t>(g.y_numel()));
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t oc = 0; oc < g.OC; ++oc) {
      const int64_t grp = oc / OCg;
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double s = bias ? bias[oc] : 0.0;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t kh = 0; kh < g.KH; ++kh)
              for (int64_t kw = 0; kw < g.KW; ++kw) {
                const int64_t ih = oh * g.SH - g.PH + kh, iw = ow * g.SW - g.PW + kw;
                if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                s += static_cast<double>(w[((oc * Cg + c) * g.KH + kh) * g.KW + kw]) *
                     x[((n * g.C + grp * Cg + c) * g.H + ih) * g.W + iw];
              }
          y[((n * g.OC + oc) * OH + oh) * OW + ow] = s;
        }
    }
  return y;
}

Conv2dGeom geom(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC, int64_t k, int64_t s,
                int64_t p, int64_t groups) {
  return conv2d_geom(N, C, H, W, OC, k, s, p, groups);
}

std::vector<Conv2dGeom> geometries() {
  std::vector<Conv2dGeom> gs = {
      geom(1, 1, 5, 5, 1, 3, 1, 1, 1),     geom(2, 3, 7, 6, 4, 3, 1, 0, 1),
      geom(2, 3, 7, 7, 5, 3, 2, 1, 1),     geom(2, 4, 8, 8, 6, 3, 2, 1, 2),
      geom(3, 6, 9, 5, 6, 5, 1, 2, 3),     geom(2, 6, 10, 11, 4, 5, 2, 2, 2),
      geom(2, 8, 6, 6, 12, 1, 1, 0, 1),    geom(1, 8, 5, 7, 4, 1, 1, 0, 2),
      geom(2, 5, 6, 6, 3, 1, 2, 0, 1),     geom(2, 3, 4, 4, 2, 1, 1, 1, 1),
      geom(1, 2, 3, 3, 2, 3, 1, 2, 1),     geom(3, 4, 13, 13, 8, 3, 2, 0, 4),
      geom(5, 16, 4, 4, 32, 3, 1, 1, 1),   geom(2, 6, 9, 9, 6, 3, 2, 1, 6),
      geom(1, 3, 17, 17, 16, 3, 2, 1, 1),  geom(1, 24, 9, 9, 40, 1, 1, 0, 1),
      geom(3, 2, 1, 1, 3, 1, 1, 0, 1),     geom(2, 4, 2, 3, 4, 5, 3, 2, 2),
  };
  Conv2dGeom rect = geom(2, 4, 9, 8, 6, 1, 1, 0, 2);  // non-square kernel, stride and padding
  rect.KH = 3, rect.KW = 2, rect.SH = 2, rect.SW = 1, rect.PH = 1, rect.PW = 0;
  gs.push_back(rect);
  Conv2dGeom rect2 = geom(1, 3, 6, 11, 2, 1, 1, 0, 1);
  rect2.KH = 1, rect2.KW = 5, rect2.SH = 1, rect2.SW = 3, rect2.PH = 2, rect2.PW = 1;
  gs.push_back(rect2);
  return gs;
}

struct Data {
  std::vector<float> x, w, bias, dy;
};
Data make_data(const Conv2dGeom& g, uint64_t seed) {
  return {random_floats(g.x_numel(), seed), random_floats(g.w_numel(), seed + 1),
          random_floats(g.OC, seed + 2), random_floats(g.y_numel(), seed + 3)};
}

// ---- im2col / col2im -----------------------------------------------------------------------------

TEST(KernelsConv, Im2colMatchesRefExactly) {
  for (const Conv2dGeom& g : geometries()) {
    const std::vector<float> x = random_floats(g.Cg() * g.H * g.W, 7);
    std::vector<float> a(static_cast<size_t>(g.col_rows() * g.OH() * g.OW()), -9.f), b(a.size(), 7.f);
    im2col(g, x.data(), a.data());
    im2col_ref(g, x.data(), b.data());
    expect_equal(a, b, "im2col " + label(g));
  }
}

TEST(KernelsConv, Col2imMatchesRefExactlyAndIsAdjointOfIm2col) {
  for (const Conv2dGeom& g : geometries()) {
    const int64_t ncol = g.col_rows() * g.OH() * g.OW(), nx = g.Cg() * g.H * g.W;
    const std::vector<float> col = random_floats(ncol, 8), x = random_floats(nx, 9);
    std::vector<float> a(static_cast<size_t>(nx), -9.f), b(a.size(), 7.f), xc(static_cast<size_t>(ncol));
    col2im(g, col.data(), a.data());
    col2im_ref(g, col.data(), b.data());
    expect_equal(a, b, "col2im " + label(g));  // same summation order: bit-identical
    im2col_ref(g, x.data(), xc.data());
    // col2im sums in float: allow float rounding of the sum of |terms|.
    const double lhs = dot(col, xc), rhs = dot(b, x), mag = dot(abs_of(col), abs_of(xc));
    EXPECT_NEAR(lhs, rhs, 1e-6 * (mag + 1e-3)) << "<col, im2col(x)> vs <col2im(col), x> " << label(g);
  }
}

// ---- the refs against the definition ----------------------------------------------------------

TEST(KernelsConv, ForwardRefMatchesDirectConvolution) {
  for (const Conv2dGeom& g : geometries()) {
    const Data d = make_data(g, 11);
    for (bool with_bias : {false, true}) {
      const float* b = with_bias ? d.bias.data() : nullptr;
      std::vector<float> y(static_cast<size_t>(g.y_numel()), -9.f);
      conv2d_forward_ref(g, d.x.data(), d.w.data(), b, y.data());
      const std::vector<double> want = direct_conv(g, d.x, d.w, b);
      const std::vector<double> scale = direct_conv(g, abs_of(d.x), abs_of(d.w), nullptr);
      for (size_t i = 0; i < y.size(); ++i) {
        const double allowed = 2e-7 * (scale[i] + std::fabs(want[i])) + 1e-30;
        ASSERT_LE(std::fabs(y[i] - want[i]), allowed) << label(g) << " element " << i;
      }
    }
  }
}

TEST(KernelsConv, BackwardRefsAreAdjointsOfForward) {
  for (const Conv2dGeom& g : geometries()) {
    const Data d = make_data(g, 21);
    // <dy, conv(x, w)> computed exactly (direct_conv in double) ...
    const std::vector<double> y = direct_conv(g, d.x, d.w, nullptr);
    double lhs = 0.0, mag = 0.0;
    for (size_t i = 0; i < y.size(); ++i) lhs += d.dy[i] * y[i], mag += std::fabs(d.dy[i] * y[i]);
    // ... equals <dx, x> and <dw, w>, up to the float rounding of each dx, dw element.
    std::vector<float> dx(static_cast<size_t>(g.x_numel())), dw(static_cast<size_t>(g.w_numel()));
    conv2d_backward_data_ref(g, d.dy.data(), d.w.data(), dx.data());
    conv2d_backward_weight_ref(g, d.x.data(), d.dy.data(), dw.data());
    const double tol = 1e-6 * (mag + 1e-3);
    EXPECT_NEAR(dot(dx, d.x), lhs, tol) << "backward_data_ref " << label(g);
    EXPECT_NEAR(dot(dw, d.w), lhs, tol) << "backward_weight_ref " << label(g);
    // The bias gradient is the adjoint of adding a bias: <dy, bias broadcast> == <db, bias>.
    std::vector<float> db(static_cast<size_t>(g.OC));
    conv2d_backward_bias_ref(g.N, g.OC, g.OH() * g.OW(), d.dy.data(), db.data());
    double lb = 0.0, mb = 0.0;
    const int64_t P = g.OH() * g.OW();
    for (int64_t i = 0; i < g.y_numel(); ++i) {
      lb += static_cast<double>(d.dy[i]) * d.bias[(i / P) % g.OC];
      mb += std::fabs(d.dy[i] * d.bias[(i / P) % g.OC]);
    }
    EXPECT_NEAR(dot(db, d.bias), lb, 1e-6 * (mb + 1e-3)) << "backward_bias_ref " << label(g);
  }
}

// ---- optimized kernels against the refs ------------------------------------------------------

void check_against_ref(const Conv2dGeom& g, ConvThreading mode, uint64_t seed, const std::string& what) {
  const Data d = make_data(g, seed);
  const std::vector<float> ax = abs_of(d.x), aw = abs_of(d.w), ady = abs_of(d.dy), ab = abs_of(d.bias);
  const std::string tag = what + " " + label(g) + " mode " + std::to_string(static_cast<int>(mode));
  {
    std::vector<float> y(static_cast<size_t>(g.y_numel()), -9.f), yr(y.size()), scale(y.size());
    conv2d_forward(g, d.x.data(), d.w.data(), d.bias.data(), y.data(), mode);
    conv2d_forward_ref(g, d.x.data(), d.w.data(), d.bias.data(), yr.data());
    conv2d_forward_ref(g, ax.data(), aw.data(), ab.data(), scale.data());
    expect_close(y, yr, scale, kRtol, "forward " + tag);
    conv2d_forward(g, d.x.data(), d.w.data(), nullptr, y.data(), mode);
    conv2d_forward_ref(g, d.x.data(), d.w.data(), nullptr, yr.data());
    expect_close(y, yr, scale, kRtol, "forward (no bias) " + tag);
  }
  {
    std::vector<float> dx(static_cast<size_t>(g.x_numel()), -9.f), dxr(dx.size()), scale(dx.size());
    conv2d_backward_data(g, d.dy.data(), d.w.data(), dx.data(), mode);
    conv2d_backward_data_ref(g, d.dy.data(), d.w.data(), dxr.data());
    conv2d_backward_data_ref(g, ady.data(), aw.data(), scale.data());
    expect_close(dx, dxr, scale, kRtol, "backward_data " + tag);
  }
  {
    std::vector<float> dw(static_cast<size_t>(g.w_numel()), -9.f), dwr(dw.size()), scale(dw.size());
    conv2d_backward_weight(g, d.x.data(), d.dy.data(), dw.data(), mode);
    conv2d_backward_weight_ref(g, d.x.data(), d.dy.data(), dwr.data());
    conv2d_backward_weight_ref(g, ax.data(), ady.data(), scale.data());
    expect_close(dw, dwr, scale, kRtol, "backward_weight " + tag);
  }
  {
    const int64_t P = g.OH() * g.OW();
    std::vector<float> db(static_cast<size_t>(g.OC), -9.f), dbr(db.size()), scale(db.size());
    conv2d_backward_bias(g.N, g.OC, P, d.dy.data(), db.data());
    conv2d_backward_bias_ref(g.N, g.OC, P, d.dy.data(), dbr.data());
    conv2d_backward_bias_ref(g.N, g.OC, P, ady.data(), scale.data());
    expect_close(db, dbr, scale, kRtol, "backward_bias " + tag);
  }
}

const ConvThreading kModes[] = {ConvThreading::Auto, ConvThreading::Images, ConvThreading::Columns,
                                ConvThreading::Blas, ConvThreading::Chunks};

TEST(KernelsConv, OptimizedMatchesRefOnManyGeometries) {
  uint64_t seed = 100;
  for (const Conv2dGeom& g : geometries())
    for (ConvThreading mode : kModes) check_against_ref(g, mode, seed++, "geometry");
}

TEST(KernelsConv, OptimizedIsAdjointToo) {
  // The adjoint identity on the optimized kernels themselves, on a grouped strided case.
  const Conv2dGeom g = geom(3, 6, 11, 10, 9, 3, 2, 1, 3);
  const Data d = make_data(g, 5);
  std::vector<float> y(static_cast<size_t>(g.y_numel())), dx(static_cast<size_t>(g.x_numel())),
      dw(static_cast<size_t>(g.w_numel()));
  conv2d_forward(g, d.x.data(), d.w.data(), nullptr, y.data());
  conv2d_backward_data(g, d.dy.data(), d.w.data(), dx.data());
  conv2d_backward_weight(g, d.x.data(), d.dy.data(), dw.data());
  const double lhs = dot(d.dy, y);
  EXPECT_NEAR(dot(dx, d.x), lhs, 1e-5 * (1 + std::fabs(lhs)));
  EXPECT_NEAR(dot(dw, d.w), lhs, 1e-5 * (1 + std::fabs(lhs)));
}

// Every distinct non-depthwise MobileNetV2 convolution, plus the depthwise ones run through the
// general grouped path (groups == C), at a small batch; two input sizes (one odd, so the stride-2
// layers see odd inputs) and two widths.
TEST(KernelsConv, MobileNetV2ShapesMatchRef) {
  struct Config {
    double width;
    int64_t in_channels, size, batch;
  };
  uint64_t seed = 1000;
  for (const Config& c : {Config{1.0, 1, 64, 2}, Config{0.35, 3, 33, 3}}) {
    const MobileNetV2Shapes net = mobilenet_v2_shapes(c.width, c.in_channels, c.size, c.size, c.batch);
    for (const LayerShape& l : distinct_layers(net.convs))
      check_against_ref(l.geom, ConvThreading::Auto, seed++, l.name);
  }
}

TEST(KernelsConv, SingleImageUsesEveryModeCorrectly) {
  // Batch 1 exercises the column split (forward, backward-data) and row split (backward-weight).
  const MobileNetV2Shapes net = mobilenet_v2_shapes(1.0, 3, 32, 32, 1);
  uint64_t seed = 2000;
  for (const LayerShape& l : distinct_layers(net.convs))
    if (l.kind != LayerKind::Depthwise)
      for (ConvThreading mode : kModes) check_against_ref(l.geom, mode, seed++, l.name);
}

#ifdef _OPENMP
TEST(KernelsConv, EveryThreadCountMatchesRef) {
  const int saved = omp_get_max_threads();
  uint64_t seed = 3000;
  // Large enough (> 1 MFLOP) to use the threads; 5 and 7 images split unevenly over 2 and 3 threads.
  for (const Conv2dGeom& g : {geom(5, 24, 16, 16, 40, 1, 1, 0, 1), geom(7, 8, 17, 15, 12, 3, 2, 1, 1),
                              geom(5, 12, 12, 12, 12, 3, 1, 1, 3)})
    for (int t : {1, 2, 3}) {
      omp_set_num_threads(t);
      for (ConvThreading mode : {ConvThreading::Auto, ConvThreading::Images})
        check_against_ref(g, mode, seed++, "threads " + std::to_string(t));
    }
  omp_set_num_threads(saved);
}

TEST(KernelsConv, PointwiseOnSmallPlanesInChunksOfImagesMatchesRef) {
  // Chunks: 1x1 layers on small planes run a chunk of images per product (chunk_images): 9
  // images in chunks of 9, 5 + 4, 3 + 3 + 3 and 3 x 2 + 1 ... over 1-4 threads; planes of 2x3,
  // 4x4 and 7x7 (chunks of up to 4), with and without bias. The last geometry's weights are too
  // small to be worth it (one image per product), and the backward passes always fall back to Auto.
  const Conv2dGeom chunked[] = {geom(9, 160, 4, 4, 96, 1, 1, 0, 1), geom(9, 96, 2, 3, 200, 1, 1, 0, 1),
                                geom(4, 120, 7, 7, 130, 1, 1, 0, 1)};
  const Conv2dGeom unchunked = geom(3, 8, 2, 2, 5, 1, 1, 0, 1);
  EXPECT_EQ(chunk_images(chunked[0], 1), 9);
  EXPECT_EQ(chunk_images(chunked[0], 2), 5);
  EXPECT_EQ(chunk_images(chunked[0], 4), 3);
  EXPECT_EQ(chunk_images(chunked[1], 3), 3);
  EXPECT_EQ(chunk_images(chunked[2], 1), 4);
  EXPECT_EQ(chunk_images(unchunked, 1), 1);
  EXPECT_EQ(chunk_images(geom(9, 160, 4, 4, 96, 3, 1, 1, 1), 1), 1);  // not 1x1
  EXPECT_EQ(chunk_images(geom(9, 160, 16, 16, 96, 1, 1, 0, 1), 1), 1);  // 256 pixels
  const int saved = omp_get_max_threads();
  uint64_t seed = 3500;
  for (const Conv2dGeom& g : {chunked[0], chunked[1], chunked[2], unchunked})
    for (int t : {1, 2, 3, 4}) {
      omp_set_num_threads(t);
      check_against_ref(g, ConvThreading::Chunks, seed++, "threads " + std::to_string(t));
    }
  omp_set_num_threads(saved);
}
#endif

// ---- bad input ---------------------------------------------------------------------------------

TEST(KernelsConv, BadGeometryThrowsNamingTheField) {
  std::vector<float> x(64), w(64), y(64);
  auto message = [&](Conv2dGeom g) -> std::string {
    try {
      conv2d_forward(g, x.data(), w.data(), nullptr, y.data());
    } catch (const sleepnet::Error& e) {
      return e.what();
    }
    return "no exception";
  };
  EXPECT_NE(message(geom(0, 1, 4, 4, 1, 3, 1, 1, 1)).find("N = 0"), std::string::npos);
  EXPECT_NE(message(geom(1, 3, 4, 4, 4, 3, 1, 1, 2)).find("groups = 2 must divide"), std::string::npos);
  EXPECT_NE(message(geom(1, 1, 2, 2, 1, 5, 1, 1, 1)).find("KH = 5"), std::string::npos);
  EXPECT_NE(message(geom(1, 1, 4, 4, 1, 3, 0, 1, 1)).find("SH = 0"), std::string::npos);
  EXPECT_NE(message(geom(1, 1, 4, 4, 1, 3, 1, -1, 1)).find("PH = -1"), std::string::npos);
  EXPECT_NE(message(geom(1, 1, 4, 4, 1, 3, 1, 1, 1)).find("no exception"), std::string::npos);
}

TEST(KernelsConv, GemmRefMatchesDefinitionAndBlas) {
  // sgemm_ref is what every conv ref stands on: check it once against a hand-computed product,
  // then sgemm against it in all four transpose combinations with padded leading dimensions.
  const float A[6] = {1, 2, 3, 4, 5, 6};      // [2, 3]
  const float B[6] = {7, 8, 9, 10, 11, 12};   // [3, 2]
  float C[4] = {1, 1, 1, 1};
  sgemm_ref(false, false, 2, 2, 3, 1.f, A, 3, B, 2, 2.f, C, 2);
  EXPECT_EQ(C[0], 58 + 2);
  EXPECT_EQ(C[1], 64 + 2);
  EXPECT_EQ(C[2], 139 + 2);
  EXPECT_EQ(C[3], 154 + 2);
  const int64_t M = 13, N = 17, K = 29;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
      const auto a = random_floats((ta ? K : M) * lda, 1), b = random_floats((tb ? N : K) * ldb, 2);
      auto c = random_floats(M * ldc, 3), cr = c;
      sgemm(ta, tb, M, N, K, 0.5f, a.data(), lda, b.data(), ldb, 0.25f, c.data(), ldc);
      sgemm_ref(ta, tb, M, N, K, 0.5f, a.data(), lda, b.data(), ldb, 0.25f, cr.data(), ldc);
      expect_close(c, cr, static_cast<double>(K), 1e-6, "sgemm ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
    }
}

}  // namespace
}  // namespace sleepnet::kernels
