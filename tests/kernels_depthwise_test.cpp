// tests/kernels_depthwise_test.cpp: depthwise convolution kernels (nn/kernels/depthwise.h).
//
//   1. depthwise_forward_ref against the general grouped convolution (conv2d_forward_ref with
//      groups == C, itself checked against a brute-force convolution in kernels_conv_test);
//   2. the backward refs against the forward through the adjoint identities
//        <dy, conv(x, w)> == <backward_data(dy, w), x> == <backward_weight(x, dy), w>;
//   3. the optimized kernels against the refs on many geometries and on every distinct MobileNetV2
//      depthwise layer. The kernels take one of three paths by geometry (nn/kernels/depthwise.cpp):
//      tiny planes as dense matrices (at most 64 pixels in and out, 1024 pairs; 256 for the weight
//      gradient, whose 8x8 -> 4x4 layers take the 3x3 path), 3x3 stride 1/2 as flat polyphase
//      planes (rows of at least 16 outputs written row by row, two at a time with stride 1;
//      narrower ones as one loop and a copy out; the weight gradient over stacks of
//      planes), and the general path for everything else (5x5, stride 3, mixed strides in
//      backward-data). The geometry list below names which cases it is there for, and every
//      geometry runs again with a larger plane, so each case meets more than one path;
//      On AVX-512 CPUs the 3x3 padding-1 cases run straight from the input instead of through the
//      phases (depthwise_set_direct); DepthwiseDirect compares the two byte for byte;
//   4. larger batches (the tiny path's blocks of 4 and 64 images, the weight gradient's stacks,
//      with remainders), and results that do not depend on the thread count (every output or
//      weight gradient is summed by one thread, in a fixed order).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "nn/kernels/conv.h"
#include "nn/kernels/depthwise.h"
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
using testing::random_floats;

std::string label(const Conv2dGeom& g) {
  std::ostringstream s;
  s << "N" << g.N << " C" << g.C << " " << g.H << "x" << g.W << " k" << g.KH << "x" << g.KW << " s"
    << g.SH << "," << g.SW << " p" << g.PH << "," << g.PW;
  return s.str();
}

Conv2dGeom dw(int64_t N, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s, int64_t p) {
  return conv2d_geom(N, C, H, W, C, k, s, p, C);
}

std::vector<Conv2dGeom> geometries() {
  std::vector<Conv2dGeom> gs = {
      // tiny planes (dense matrices): square, odd, 1x1, 2x2, 4x4 with stride 2, padding 0 to 3
      dw(2, 3, 8, 8, 3, 2, 1), dw(2, 3, 7, 7, 3, 2, 1), dw(1, 2, 4, 4, 3, 1, 3), dw(1, 2, 1, 1, 3, 1, 1),
      dw(1, 2, 2, 3, 3, 2, 1), dw(3, 5, 3, 3, 3, 1, 1), dw(5, 3, 2, 2, 3, 1, 1), dw(5, 3, 4, 4, 3, 2, 1),
      dw(2, 2, 5, 6, 5, 1, 2), dw(1, 2, 6, 6, 1, 1, 0), dw(1, 2, 5, 5, 3, 3, 1),
      // 3x3 stride 1, flat loop (rows narrower than 16): odd sizes, padding 0, 1, 2
      dw(2, 3, 9, 10, 3, 1, 1), dw(2, 3, 11, 9, 3, 1, 1), dw(2, 2, 12, 13, 3, 1, 0), dw(1, 3, 9, 11, 3, 1, 2),
      // 3x3 stride 1, rows of 16 or more: an odd number of rows (the last one alone), padding 0
      dw(1, 1, 33, 31, 3, 1, 1), dw(2, 2, 17, 16, 3, 1, 1), dw(1, 2, 10, 18, 3, 1, 0),
      // 3x3 stride 2: even and odd sizes, padding 0, 1, 2; narrow and wide output rows
      dw(1, 4, 13, 10, 3, 2, 1), dw(2, 2, 12, 13, 3, 2, 0), dw(1, 3, 11, 12, 3, 2, 2),
      dw(1, 1, 33, 31, 3, 2, 1), dw(2, 3, 12, 40, 3, 2, 1), dw(1, 2, 9, 34, 3, 2, 0),
      // the general path: 5x5, stride 3
      dw(2, 2, 9, 9, 5, 1, 2), dw(2, 2, 10, 9, 5, 2, 2), dw(1, 2, 7, 7, 1, 2, 0), dw(1, 2, 11, 10, 3, 3, 1),
  };
  Conv2dGeom rect = dw(2, 3, 9, 11, 3, 1, 1);
  rect.KW = 5, rect.SW = 2, rect.PW = 2;  // 3x5 kernel, strides (1, 2): the general path
  gs.push_back(rect);
  Conv2dGeom mixed = dw(2, 2, 11, 10, 3, 1, 1);
  mixed.SH = 2;  // 3x3, strides (2, 1): fast forward and weight gradient, general backward-data
  gs.push_back(mixed);
  // Every geometry again with a larger plane, so each case also meets the next path up (tiny ->
  // flat, narrow -> wide rows).
  const size_t n = gs.size();
  for (size_t i = 0; i < n; ++i) {
    Conv2dGeom big = gs[i];
    big.H += 9, big.W += 8;
    gs.push_back(big);
  }
  return gs;
}

struct Data {
  std::vector<float> x, w, bias, dy;
};
Data make_data(const Conv2dGeom& g, uint64_t seed) {
  return {random_floats(g.x_numel(), seed), random_floats(g.w_numel(), seed + 1),
          random_floats(g.C, seed + 2), random_floats(g.y_numel(), seed + 3)};
}

TEST(KernelsDepthwise, ForwardRefMatchesGroupedConvolution) {
  for (const Conv2dGeom& g : geometries()) {
    const Data d = make_data(g, 3);
    std::vector<float> y(static_cast<size_t>(g.y_numel())), yc(y.size()), scale(y.size());
    depthwise_forward_ref(g, d.x.data(), d.w.data(), d.bias.data(), y.data());
    conv2d_forward_ref(g, d.x.data(), d.w.data(), d.bias.data(), yc.data());
    conv2d_forward_ref(g, abs_of(d.x).data(), abs_of(d.w).data(), abs_of(d.bias).data(), scale.data());
    expect_close(y, yc, scale, 1e-6, "forward_ref vs grouped conv " + label(g));
  }
}

TEST(KernelsDepthwise, BackwardRefsAreAdjointsOfForward) {
  for (const Conv2dGeom& g : geometries()) {
    const Data d = make_data(g, 4);
    std::vector<float> y(static_cast<size_t>(g.y_numel())), ya(y.size());
    depthwise_forward_ref(g, d.x.data(), d.w.data(), nullptr, y.data());
    depthwise_forward_ref(g, abs_of(d.x).data(), abs_of(d.w).data(), nullptr, ya.data());
    const double lhs = dot(d.dy, y), mag = dot(abs_of(d.dy), ya);
    std::vector<float> dx(static_cast<size_t>(g.x_numel())), dwt(static_cast<size_t>(g.w_numel()));
    depthwise_backward_data_ref(g, d.dy.data(), d.w.data(), dx.data());
    depthwise_backward_weight_ref(g, d.x.data(), d.dy.data(), dwt.data());
    EXPECT_NEAR(dot(dx, d.x), lhs, 1e-6 * (mag + 1e-3)) << "backward_data_ref " << label(g);
    EXPECT_NEAR(dot(dwt, d.w), lhs, 1e-6 * (mag + 1e-3)) << "backward_weight_ref " << label(g);
  }
}

void check_against_ref(const Conv2dGeom& g, uint64_t seed, const std::string& what) {
  const Data d = make_data(g, seed);
  const std::vector<float> ax = abs_of(d.x), aw = abs_of(d.w), ady = abs_of(d.dy), ab = abs_of(d.bias);
  const std::string tag = what + " " + label(g);
  for (bool with_bias : {true, false}) {
    const float* b = with_bias ? d.bias.data() : nullptr;
    std::vector<float> y(static_cast<size_t>(g.y_numel()), -9.f), yr(y.size()), scale(y.size());
    depthwise_forward(g, d.x.data(), d.w.data(), b, y.data());
    depthwise_forward_ref(g, d.x.data(), d.w.data(), b, yr.data());
    depthwise_forward_ref(g, ax.data(), aw.data(), ab.data(), scale.data());
    // Same order of operations as the ref: only contraction into FMA (with -march) may differ.
    expect_close(y, yr, scale, 1e-6, "forward " + tag);
  }
  {
    std::vector<float> dx(static_cast<size_t>(g.x_numel()), -9.f), dxr(dx.size()), scale(dx.size());
    depthwise_backward_data(g, d.dy.data(), d.w.data(), dx.data());
    depthwise_backward_data_ref(g, d.dy.data(), d.w.data(), dxr.data());
    depthwise_backward_data_ref(g, ady.data(), aw.data(), scale.data());
    expect_close(dx, dxr, scale, 2e-6, "backward_data " + tag);
  }
  {
    std::vector<float> dwt(static_cast<size_t>(g.w_numel()), -9.f), dwr(dwt.size()), scale(dwt.size());
    depthwise_backward_weight(g, d.x.data(), d.dy.data(), dwt.data());
    depthwise_backward_weight_ref(g, d.x.data(), d.dy.data(), dwr.data());
    depthwise_backward_weight_ref(g, ax.data(), ady.data(), scale.data());
    expect_close(dwt, dwr, scale, 1e-5, "backward_weight " + tag);
  }
}

TEST(KernelsDepthwise, OptimizedMatchesRefOnManyGeometries) {
  uint64_t seed = 100;
  for (const Conv2dGeom& g : geometries()) check_against_ref(g, seed += 4, "geometry");
}

TEST(KernelsDepthwise, MobileNetV2ShapesMatchRef) {
  struct Config {
    double width;
    int64_t in_channels, size, batch;
  };
  uint64_t seed = 1000;
  for (const Config& c : {Config{1.0, 1, 64, 2}, Config{0.35, 3, 33, 3}, Config{1.0, 3, 224, 1}}) {
    const MobileNetV2Shapes net = mobilenet_v2_shapes(c.width, c.in_channels, c.size, c.size, c.batch);
    for (const LayerShape& l : distinct_layers(net.convs))
      if (l.kind == LayerKind::Depthwise) check_against_ref(l.geom, seed += 4, l.name);
  }
}

// The tiny path multiplies four images at a time and sums the weight gradient in float over blocks
// of 64 images; the fast weight gradient stacks up to ~16 KB of planes per loop. Batches that
// leave remainders in all of them.
TEST(KernelsDepthwise, LargerBatchesWithRemainders) {
  uint64_t seed = 5000;
  for (const Conv2dGeom& g : {dw(70, 3, 4, 4, 3, 1, 1), dw(67, 2, 2, 2, 3, 1, 1), dw(66, 3, 8, 8, 3, 2, 1),
                              dw(13, 2, 16, 16, 3, 1, 1), dw(9, 2, 18, 17, 3, 2, 1), dw(45, 2, 8, 8, 3, 1, 1)})
    check_against_ref(g, seed += 4, "batch");
}

#ifdef _OPENMP
// Each output plane and each channel's weight gradient is computed by one thread in a fixed order,
// so the thread count changes nothing, not even the rounding.
TEST(KernelsDepthwise, ResultsDoNotDependOnTheThreadCount) {
  const int saved = omp_get_max_threads();
  for (const Conv2dGeom& g : {dw(8, 16, 16, 16, 3, 1, 1), dw(8, 16, 16, 16, 3, 2, 1), dw(16, 32, 4, 4, 3, 1, 1),
                              dw(4, 8, 20, 21, 5, 1, 2)}) {
    const Data d = make_data(g, 77);
    std::vector<std::vector<float>> out[2];
    for (int t : {1, 3}) {
      omp_set_num_threads(t);
      std::vector<float> y(static_cast<size_t>(g.y_numel())), dx(static_cast<size_t>(g.x_numel())),
          dwt(static_cast<size_t>(g.w_numel()));
      depthwise_forward(g, d.x.data(), d.w.data(), d.bias.data(), y.data());
      depthwise_backward_data(g, d.dy.data(), d.w.data(), dx.data());
      depthwise_backward_weight(g, d.x.data(), d.dy.data(), dwt.data());
      out[t == 1 ? 0 : 1] = {y, dx, dwt};
    }
    omp_set_num_threads(saved);
    for (size_t i = 0; i < 3; ++i)
      EXPECT_EQ(out[0][i], out[1][i]) << "pass " << i << " differs between 1 and 3 threads, " << label(g);
  }
}
#endif

// The AVX-512 path straight from the input (3x3, padding 1, stride 1 or 2: forward, and the
// stride-1 backward-data pass) against the padded phases it replaces, byte for byte: every plane
// size from 1 to 40 (both parities, non-square, one row of outputs to several blocks of 16 columns
// with every remainder of 16 and of the four-row groups), 56 and 112, with and without a bias.
TEST(DepthwiseDirect, SameBitsAsThePhases) {
  if (!depthwise_direct_available()) GTEST_SKIP() << "no AVX-512 here, or a build without the clones: one path only";
  std::vector<Conv2dGeom> shapes;
  for (int64_t s : {1, 2}) {
    for (int64_t h = 1; h <= 40; ++h) shapes.push_back(dw(2, 3, h, h + (h % 3), 3, s, 1));
    for (int64_t w = 1; w <= 40; ++w) shapes.push_back(dw(1, 2, 5 + w % 4, w, 3, s, 1));
    shapes.push_back(dw(2, 3, 56, 56, 3, s, 1)), shapes.push_back(dw(1, 2, 112, 112, 3, s, 1));
    for (int64_t h : {1, 2, 4, 8, 16})  // the small planes (16 pixels) and their neighbours
      for (int64_t w : {1, 2, 4, 8, 16}) shapes.push_back(dw(5, 37, h, w, 3, s, 1));
  }
  uint64_t seed = 4100;
  for (const Conv2dGeom& g : shapes) {
    SCOPED_TRACE(label(g));
    const Data d = make_data(g, seed += 4);
    auto run = [&](bool direct) {
      depthwise_set_direct(direct);
      std::vector<std::vector<float>> o = {std::vector<float>(static_cast<size_t>(g.y_numel())),
                                           std::vector<float>(static_cast<size_t>(g.y_numel())),
                                           std::vector<float>(static_cast<size_t>(g.x_numel()))};
      depthwise_forward(g, d.x.data(), d.w.data(), d.bias.data(), o[0].data());
      depthwise_forward(g, d.x.data(), d.w.data(), nullptr, o[1].data());
      depthwise_backward_data(g, d.dy.data(), d.w.data(), o[2].data());
      return o;
    };
    const auto phases = run(false), direct = run(true);
    depthwise_set_direct(true);
    const char* what[] = {"y (bias)", "y (no bias)", "dx"};
    for (size_t k = 0; k < 3; ++k)
      for (size_t i = 0; i < phases[k].size(); ++i)
        ASSERT_EQ(std::memcmp(&phases[k][i], &direct[k][i], sizeof(float)), 0)
            << what[k] << "[" << i << "]: " << phases[k][i] << " (phases) against " << direct[k][i]
            << " (direct): the direct path no longer sums in the phases' order (nn/kernels/depthwise.cpp)";
  }
}

TEST(KernelsDepthwise, RejectsNonDepthwiseGeometry) {
  std::vector<float> buf(1024);
  const Conv2dGeom g = conv2d_geom(1, 4, 5, 5, 8, 3, 1, 1, 4);  // channel multiplier 2
  try {
    depthwise_forward(g, buf.data(), buf.data(), nullptr, buf.data());
    ADD_FAILURE() << "no exception";
  } catch (const sleepnet::Error& e) {
    EXPECT_NE(std::string(e.what()).find("groups == C == OC"), std::string::npos) << e.what();
  }
  EXPECT_THROW(depthwise_backward_weight(conv2d_geom(1, 4, 5, 5, 4, 3, 1, 1, 1), buf.data(),
                                         buf.data(), buf.data()),
               sleepnet::Error);
}

}  // namespace
}  // namespace sleepnet::kernels
