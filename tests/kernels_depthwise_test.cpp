// tests/kernels_depthwise_test.cpp: depthwise convolution kernels (nn/kernels/depthwise.h).
//
//   1. depthwise_forward_ref against the general grouped convolution (conv2d_forward_ref with
//      groups == C, itself checked against a brute-force convolution in kernels_conv_test);
//   2. the backward refs against the forward through the adjoint identities
//        <dy, conv(x, w)> == <backward_data(dy, w), x> == <backward_weight(x, dy), w>;
//   3. the optimized kernels (3x3 specialised paths and the general path, small planes through
//      the channel-last path, larger ones plane by plane) against the refs on many geometries and
//      on every distinct MobileNetV2 depthwise layer.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "nn/kernels/conv.h"
#include "nn/kernels/depthwise.h"
#include "nn/kernels/mobilenet_shapes.h"
#include "tensor/tensor.h"
#include "tests/kernels_test_util.h"

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
      dw(2, 3, 8, 8, 3, 1, 1),    dw(2, 3, 7, 9, 3, 1, 1),   dw(2, 3, 8, 8, 3, 2, 1),
      dw(2, 3, 7, 7, 3, 2, 1),    dw(1, 4, 9, 6, 3, 2, 1),   dw(2, 2, 7, 8, 3, 1, 0),
      dw(2, 2, 9, 8, 3, 2, 0),    dw(1, 3, 6, 7, 3, 1, 2),   dw(1, 3, 7, 6, 3, 2, 2),
      dw(2, 2, 9, 9, 5, 1, 2),    dw(2, 2, 10, 9, 5, 2, 2),  dw(1, 2, 6, 6, 1, 1, 0),
      dw(1, 2, 7, 7, 1, 2, 0),    dw(1, 2, 4, 4, 3, 1, 3),   dw(1, 2, 1, 1, 3, 1, 1),
      dw(1, 2, 2, 3, 3, 2, 1),    dw(3, 5, 3, 3, 3, 1, 1),   dw(1, 1, 33, 31, 3, 1, 1),
      dw(1, 1, 33, 31, 3, 2, 1),  dw(2, 3, 12, 40, 3, 2, 1), dw(1, 2, 5, 5, 3, 3, 1),
  };
  Conv2dGeom rect = dw(2, 3, 9, 11, 3, 1, 1);
  rect.KW = 5, rect.SW = 2, rect.PW = 2;  // 3x5 kernel, strides (1, 2)
  gs.push_back(rect);
  // The kernels take a channel-last path for planes of at most 64 pixels and a plane-by-plane
  // path above: every geometry again with a larger plane, so both paths see every case.
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
