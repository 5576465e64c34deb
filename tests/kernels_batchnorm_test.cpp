// tests/kernels_batchnorm_test.cpp: BatchNorm2d kernels (nn/kernels/batchnorm.h).
//
//   - running statistics and outputs against values computed by hand (unbiased running variance);
//   - the backward ref against central differences of a double-precision forward, with the loss
//     L = sum(y * proj) for a random proj (sum(y) alone would be blind: its gradient through
//     batch-norm is zero whatever the code does);
//   - optimized kernels against their refs (train, eval, fused eval + ReLU6, backward, eval
//     backward), with and without affine parameters and running stats, on odd sizes, on every
//     MobileNetV2 batch-norm shape, and on a large channel with a large mean (accuracy of sums).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "nn/kernels/batchnorm.h"
#include "nn/kernels/mobilenet_shapes.h"
#include "tensor/tensor.h"
#include "tests/kernels_test_util.h"

namespace sleepnet::kernels {
namespace {

using testing::expect_close;
using testing::max_abs;
using testing::random_floats;

BatchNormGeom bn(int64_t N, int64_t C, int64_t HW) {
  BatchNormGeom g;
  g.N = N, g.C = C, g.HW = HW;
  return g;
}

std::string label(const BatchNormGeom& g) {
  return "N" + std::to_string(g.N) + " C" + std::to_string(g.C) + " HW" + std::to_string(g.HW);
}

// Input with a different mean and spread per channel.
std::vector<float> make_x(const BatchNormGeom& g, uint64_t seed, float offset = 3.f) {
  std::vector<float> x = random_floats(g.N * g.C * g.HW, seed);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t i = 0; i < g.HW; ++i) {
        float& v = x[static_cast<size_t>((n * g.C + c) * g.HW + i)];
        v = v * (0.5f + 0.1f * static_cast<float>(c % 7)) + offset * std::sin(static_cast<float>(c + 1));
      }
  return x;
}

TEST(KernelsBatchNorm, TrainForwardMatchesHandComputedValues) {
  // One channel, values 1, 2, 3, 4 (N = 2, HW = 2): mean 2.5, biased var 1.25, unbiased 5/3.
  const BatchNormGeom g = bn(2, 1, 2);
  const std::vector<float> x = {1, 2, 3, 4};
  const float weight = 2.f, bias = 0.5f;
  for (int impl = 0; impl < 2; ++impl) {
    std::vector<float> y(4);
    float mean = 0, invstd = 0, rm = 0.f, rv = 1.f;
    (impl ? batchnorm_forward_train : batchnorm_forward_train_ref)(g, x.data(), &weight, &bias, y.data(),
                                                                    &mean, &invstd, &rm, &rv);
    EXPECT_FLOAT_EQ(mean, 2.5f);
    EXPECT_FLOAT_EQ(invstd, static_cast<float>(1.0 / std::sqrt(1.25 + 1e-5)));
    EXPECT_FLOAT_EQ(rm, 0.25f);                                 // 0.9 * 0 + 0.1 * 2.5
    EXPECT_FLOAT_EQ(rv, static_cast<float>(0.9 + 0.1 * 5.0 / 3.0));  // unbiased variance
    for (int i = 0; i < 4; ++i)
      EXPECT_NEAR(y[static_cast<size_t>(i)], (x[static_cast<size_t>(i)] - 2.5) / std::sqrt(1.25 + 1e-5) * 2 + 0.5, 1e-6);
  }
  // A second step keeps blending: momentum 0.1 again on the same data.
  float mean, invstd, rm = 0.25f, rv = static_cast<float>(0.9 + 0.1 * 5.0 / 3.0);
  std::vector<float> y(4);
  batchnorm_forward_train(g, x.data(), nullptr, nullptr, y.data(), &mean, &invstd, &rm, &rv);
  EXPECT_FLOAT_EQ(rm, static_cast<float>(0.9 * 0.25 + 0.25));
  EXPECT_FLOAT_EQ(rv, static_cast<float>(0.9 * (0.9 + 0.1 * 5.0 / 3.0) + 0.1 * 5.0 / 3.0));
}

TEST(KernelsBatchNorm, EvalForwardMatchesHandComputedValues) {
  const BatchNormGeom g = bn(1, 2, 3);
  const std::vector<float> x = {-1, 0, 8, 1, 2, 3};
  const float weight[2] = {2, -1}, bias[2] = {1, 0}, rm[2] = {0, 2}, rv[2] = {4, 0.25f};
  std::vector<float> y(6), yr(6);
  batchnorm_forward_eval(g, x.data(), weight, bias, rm, rv, y.data());
  batchnorm_relu6_eval(g, x.data(), weight, bias, rm, rv, yr.data());
  const double s0 = 2 / std::sqrt(4 + 1e-5), s1 = -1 / std::sqrt(0.25 + 1e-5);
  const double want[6] = {-s0 + 1, 1, 8 * s0 + 1, -s1, 0, s1};
  for (int i = 0; i < 6; ++i) {
    EXPECT_NEAR(y[static_cast<size_t>(i)], want[i], 1e-6);
    EXPECT_NEAR(yr[static_cast<size_t>(i)], std::min(std::max(want[i], 0.0), 6.0), 1e-6);
  }
}

// Double-precision train-mode forward, for finite differences: L = sum(y * proj).
double loss(const BatchNormGeom& g, const std::vector<double>& x, const std::vector<double>& w,
            const std::vector<double>& b, const std::vector<float>& proj) {
  const int64_t M = g.N * g.HW;
  double L = 0.0;
  for (int64_t c = 0; c < g.C; ++c) {
    double s = 0.0, ss = 0.0;
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t i = 0; i < g.HW; ++i) s += x[static_cast<size_t>((n * g.C + c) * g.HW + i)];
    const double mean = s / M;
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t i = 0; i < g.HW; ++i) {
        const double d = x[static_cast<size_t>((n * g.C + c) * g.HW + i)] - mean;
        ss += d * d;
      }
    const double r = 1.0 / std::sqrt(ss / M + g.eps);
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t i = 0; i < g.HW; ++i) {
        const size_t j = static_cast<size_t>((n * g.C + c) * g.HW + i);
        L += proj[j] * ((x[j] - mean) * r * w[static_cast<size_t>(c)] + b[static_cast<size_t>(c)]);
      }
  }
  return L;
}

TEST(KernelsBatchNorm, BackwardRefMatchesFiniteDifferences) {
  const BatchNormGeom g = bn(3, 2, 5);
  const std::vector<float> xf = make_x(g, 1), wf = random_floats(2, 2, 0.5f, 2.f), bf = random_floats(2, 3);
  const std::vector<float> proj = random_floats(g.N * g.C * g.HW, 4);
  std::vector<double> x(xf.begin(), xf.end()), w(wf.begin(), wf.end()), b(bf.begin(), bf.end());
  // Forward in float to get the saved statistics, then the analytic backward with dy = proj.
  std::vector<float> y(xf.size()), dx(xf.size()), mean(2), invstd(2), dw(2), db(2);
  batchnorm_forward_train_ref(g, xf.data(), wf.data(), bf.data(), y.data(), mean.data(), invstd.data(),
                              nullptr, nullptr);
  batchnorm_backward_ref(g, xf.data(), proj.data(), wf.data(), mean.data(), invstd.data(), dx.data(),
                         dw.data(), db.data());
  const double h = 1e-5;
  auto central = [&](std::vector<double>& v, size_t i) {
    const double keep = v[i];
    v[i] = keep + h;
    const double up = loss(g, x, w, b, proj);
    v[i] = keep - h;
    const double down = loss(g, x, w, b, proj);
    v[i] = keep;
    return (up - down) / (2 * h);
  };
  // Bounds: float rounding of the saved statistics and of dx (~1e-7 relative) dominates.
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(dx[i], central(x, i), 2e-6 * (1 + std::fabs(dx[i]))) << "dx " << i;
  for (size_t c = 0; c < 2; ++c) {
    EXPECT_NEAR(dw[c], central(w, c), 2e-6 * (1 + std::fabs(dw[c]))) << "dweight " << c;
    EXPECT_NEAR(db[c], central(b, c), 2e-6 * (1 + std::fabs(db[c]))) << "dbias " << c;
  }
}

void check_against_ref(const BatchNormGeom& g, uint64_t seed, const std::string& what, bool affine = true,
                       bool track = true, float offset = 3.f) {
  const std::vector<float> x = make_x(g, seed, offset), dy = random_floats(g.N * g.C * g.HW, seed + 1);
  const std::vector<float> w = random_floats(g.C, seed + 2, 0.5f, 1.5f), b = random_floats(g.C, seed + 3);
  const float* wp = affine ? w.data() : nullptr;
  const float* bp = affine ? b.data() : nullptr;
  const std::string tag = what + " " + label(g) + (affine ? "" : " no-affine") + (track ? "" : " no-running");
  const size_t n = x.size(), C = static_cast<size_t>(g.C);

  // train forward
  std::vector<float> y(n, -9), yr(n), mean(C), meanr(C), inv(C), invr(C);
  std::vector<float> rm = random_floats(g.C, seed + 4), rv = random_floats(g.C, seed + 5, 0.5f, 2.f);
  std::vector<float> rmr = rm, rvr = rv;
  batchnorm_forward_train(g, x.data(), wp, bp, y.data(), mean.data(), inv.data(), track ? rm.data() : nullptr,
                          track ? rv.data() : nullptr);
  batchnorm_forward_train_ref(g, x.data(), wp, bp, yr.data(), meanr.data(), invr.data(),
                              track ? rmr.data() : nullptr, track ? rvr.data() : nullptr);
  expect_close(y, yr, max_abs(yr), 1e-6 * (1 + std::fabs(offset)), "train y " + tag);
  expect_close(mean, meanr, max_abs(x), 1e-6, "save_mean " + tag);  // error scale of an average: |x|
  expect_close(inv, invr, testing::abs_of(invr), 1e-6, "save_invstd " + tag);
  expect_close(rm, rmr, max_abs(rmr), 1e-6, "running_mean " + tag);
  expect_close(rv, rvr, testing::abs_of(rvr), 1e-6, "running_var " + tag);

  // backward from the ref's saved statistics (identical inputs for both)
  std::vector<float> dx(n, -9), dxr(n), dw(C, -9), dwr(C), db(C, -9), dbr(C);
  batchnorm_backward(g, x.data(), dy.data(), wp, meanr.data(), invr.data(), dx.data(), dw.data(), db.data());
  batchnorm_backward_ref(g, x.data(), dy.data(), wp, meanr.data(), invr.data(), dxr.data(), dwr.data(), dbr.data());
  const double sum_scale = std::sqrt(static_cast<double>(g.N * g.HW));  // sums of M terms of size ~1
  // dx_j = gamma r (dy_j - dbias/M - xhat_j dweight/M) cancels (exactly, for M = 2): the error
  // scale is the size of its terms.
  std::vector<float> dx_scale(n);
  const double M = static_cast<double>(g.N * g.HW);
  for (int64_t nn = 0; nn < g.N; ++nn)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t i = 0; i < g.HW; ++i) {
        const size_t j = static_cast<size_t>((nn * g.C + c) * g.HW + i), cc = static_cast<size_t>(c);
        const double r = invr[cc], xhat = std::fabs((x[j] - meanr[cc]) * r);
        dx_scale[j] = static_cast<float>((wp ? std::fabs(wp[c]) : 1.0) * r *
                                         (std::fabs(dy[j]) + std::fabs(dbr[cc]) / M + xhat * std::fabs(dwr[cc]) / M));
      }
  expect_close(dx, dxr, dx_scale, 1e-5, "dx " + tag);
  expect_close(dw, dwr, sum_scale, 1e-5, "dweight " + tag);
  expect_close(db, dbr, sum_scale, 1e-5, "dbias " + tag);

  // eval forward, fused eval + ReLU6 (inputs scaled so that both clamps are hit)
  std::vector<float> x6(x);
  for (float& v : x6) v *= 4.f;
  std::vector<float> ye(n, -9), yer(n);
  batchnorm_forward_eval(g, x6.data(), wp, bp, rmr.data(), rvr.data(), ye.data());
  batchnorm_forward_eval_ref(g, x6.data(), wp, bp, rmr.data(), rvr.data(), yer.data());
  expect_close(ye, yer, max_abs(yer), 1e-6, "eval y " + tag);
  batchnorm_relu6_eval(g, x6.data(), wp, bp, rmr.data(), rvr.data(), ye.data());
  batchnorm_relu6_eval_ref(g, x6.data(), wp, bp, rmr.data(), rvr.data(), yer.data());
  expect_close(ye, yer, 6.0, 1e-6, "eval relu6 y " + tag);

  // eval backward
  batchnorm_backward_eval(g, x.data(), dy.data(), wp, rmr.data(), rvr.data(), dx.data(), dw.data(), db.data());
  batchnorm_backward_eval_ref(g, x.data(), dy.data(), wp, rmr.data(), rvr.data(), dxr.data(), dwr.data(), dbr.data());
  expect_close(dx, dxr, max_abs(dxr), 1e-6, "eval dx " + tag);
  expect_close(dw, dwr, sum_scale * (1 + std::fabs(offset)), 1e-5, "eval dweight " + tag);
  expect_close(db, dbr, sum_scale, 1e-5, "eval dbias " + tag);
}

TEST(KernelsBatchNorm, OptimizedMatchesRef) {
  uint64_t seed = 10;
  // HW < 64 takes the slab path (many images: its float partial sums are flushed every 16 images),
  // larger planes the per-plane path.
  for (const BatchNormGeom& g : {bn(2, 1, 1), bn(1, 3, 2), bn(4, 6, 25), bn(3, 5, 7), bn(2, 16, 33),
                                 bn(37, 5, 9), bn(20, 70, 4), bn(5, 3, 1030), bn(1, 8, 4096)}) {
    check_against_ref(g, seed += 8, "geometry");
    check_against_ref(g, seed += 8, "geometry", false, false);
  }
}

TEST(KernelsBatchNorm, LargeChannelWithLargeMeanKeepsFullAccuracy) {
  // 2 x 65536 values per channel around 100 with spread ~0.3: a naive float sum of squares
  // would lose most digits of the variance.
  const BatchNormGeom g = bn(2, 2, 65536);
  check_against_ref(g, 77, "large", true, true, 100.f);
  check_against_ref(bn(300, 3, 49), 78, "large, slab path", true, true, 100.f);
}

TEST(KernelsBatchNorm, MobileNetV2ShapesMatchRef) {
  uint64_t seed = 500;
  const MobileNetV2Shapes net = mobilenet_v2_shapes(1.0, 1, 64, 64, 2);
  std::vector<BatchNormGeom> seen;
  for (const LayerShape& l : net.convs) {
    const BatchNormGeom g = bn(l.geom.N, l.geom.OC, l.geom.OH() * l.geom.OW());
    bool dup = false;
    for (const BatchNormGeom& s : seen) dup = dup || (s.C == g.C && s.HW == g.HW);
    if (dup) continue;
    seen.push_back(g);
    check_against_ref(g, seed += 8, l.name);
  }
  EXPECT_GE(seen.size(), 15u);
}

TEST(KernelsBatchNorm, BadInputThrows) {
  std::vector<float> a(8), b(8), c(8), d(8);
  BatchNormGeom one = bn(1, 2, 1);  // one value per channel cannot be normalised in train mode
  try {
    batchnorm_forward_train(one, a.data(), nullptr, nullptr, b.data(), c.data(), d.data(), nullptr, nullptr);
    ADD_FAILURE() << "no exception";
  } catch (const sleepnet::Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than 1 value per channel"), std::string::npos) << e.what();
  }
  BatchNormGeom m = bn(2, 2, 2);
  m.momentum = 1.5f;
  EXPECT_THROW(batchnorm_forward_eval(m, a.data(), nullptr, nullptr, c.data(), d.data(), b.data()), sleepnet::Error);
  EXPECT_THROW(batchnorm_forward_train(bn(2, 2, 2), a.data(), nullptr, nullptr, b.data(), c.data(), d.data(),
                                       c.data(), nullptr),
               sleepnet::Error);
  EXPECT_THROW(batchnorm_backward(bn(2, 2, 2), a.data(), b.data(), nullptr, nullptr, d.data(), c.data(), nullptr, nullptr),
               sleepnet::Error);
}

}  // namespace
}  // namespace sleepnet::kernels
