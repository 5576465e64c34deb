// tests/kernels_batchnorm_test.cpp: BatchNorm2d kernels (nn/kernels/batchnorm.h).
//
//   - running statistics and outputs against values computed by hand (unbiased running variance);
//   - the backward ref against central differences of a double-precision forward, with the loss
//     L = sum(y * proj) for a random proj (sum(y) alone would be blind: its gradient through
//     batch-norm is zero whatever the code does);
//   - optimized kernels against their refs (train, eval, fused eval + ReLU6, backward, eval
//     backward), with and without affine parameters and running stats, on odd sizes, on every
//     MobileNetV2 batch-norm shape, and on a large channel with a large mean (accuracy of sums);
//   - the fused BN + ReLU6 kernels (train forward, train and eval backward) against their refs on
//     the same shapes, and against the unfused kernels run in sequence (batchnorm_* then
//     relu6_forward / relu6_backward of nn/kernels/activation.h), with outputs exactly at the
//     kinks 0 and 6 (gradient zero there, as PyTorch).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "nn/kernels/activation.h"
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

// The fused BN + ReLU6 kernels against their refs. The input is scaled (x * 4, spread over several
// standard deviations) and the bias shifted so that the clamp is hit on both sides.
void check_fused_against_ref(const BatchNormGeom& g, const std::vector<float>& x0, const std::vector<float>& dy,
                             const float* wp, const float* bp, bool track, uint64_t seed, const std::string& tag) {
  const size_t n = x0.size(), C = static_cast<size_t>(g.C);
  std::vector<float> x(x0);
  for (float& v : x) v *= 4.f;
  std::vector<float> b6(C);  // bias 3 +- 1: BN outputs in about [-3, 9] hit both 0 and 6
  for (size_t c = 0; c < C; ++c) b6[c] = 3.f + (bp ? bp[c] : 0.f);
  std::vector<float> w6(C);  // weight 2-6 spreads xhat (about +-1.7) past both kinks
  for (size_t c = 0; c < C; ++c) w6[c] = 4.f * (wp ? wp[c] : 1.f);
  const float* w = wp ? w6.data() : nullptr;  // no affine: outputs in about [-2, 2], only 0 is hit
  const float* b = bp ? b6.data() : nullptr;

  std::vector<float> y(n, -9), yr(n), mean(C), meanr(C), inv(C), invr(C);
  std::vector<float> rm = random_floats(g.C, seed + 6), rv = random_floats(g.C, seed + 7, 0.5f, 2.f);
  std::vector<float> rmr = rm, rvr = rv;
  batchnorm_relu6_forward_train(g, x.data(), w, b, y.data(), mean.data(), inv.data(), track ? rm.data() : nullptr,
                                track ? rv.data() : nullptr);
  batchnorm_relu6_forward_train_ref(g, x.data(), w, b, yr.data(), meanr.data(), invr.data(),
                                    track ? rmr.data() : nullptr, track ? rvr.data() : nullptr);
  // y = x * alpha + beta in float: its rounding error scales with |x * alpha| + |beta| (large
  // when the mean is large), not with |y|; plus alpha times the error allowed in the mean
  // (1e-6 max|x|, below), since the kernel normalises with its own statistics.
  std::vector<float> y_scale(n);
  const double xmax = max_abs(x);
  for (int64_t nn = 0; nn < g.N; ++nn)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t i = 0; i < g.HW; ++i) {
        const size_t j = static_cast<size_t>((nn * g.C + c) * g.HW + i), cc = static_cast<size_t>(c);
        const double alpha = (w ? w[c] : 1.0) * invr[cc];
        y_scale[j] = static_cast<float>(std::fabs(alpha) * (std::fabs(x[j]) + xmax) +
                                        std::fabs((b ? b[c] : 0.0) - alpha * meanr[cc]) + 1);
      }
  expect_close(y, yr, y_scale, 1e-6, "fused train y " + tag);
  expect_close(mean, meanr, max_abs(x), 1e-6, "fused save_mean " + tag);
  expect_close(inv, invr, testing::abs_of(invr), 1e-6, "fused save_invstd " + tag);
  expect_close(rm, rmr, max_abs(rmr), 1e-6, "fused running_mean " + tag);
  expect_close(rv, rvr, testing::abs_of(rvr), 1e-6, "fused running_var " + tag);

  // Backward from the ref's output and statistics. Error scale of dx: as in check_against_ref,
  // the size of the terms of formula (3), with the masked gradient.
  std::vector<float> dx(n, -9), dxr(n), dw(C, -9), dwr(C), db(C, -9), dbr(C);
  batchnorm_relu6_backward(g, x.data(), yr.data(), dy.data(), w, meanr.data(), invr.data(), dx.data(), dw.data(),
                           db.data());
  batchnorm_relu6_backward_ref(g, x.data(), yr.data(), dy.data(), w, meanr.data(), invr.data(), dxr.data(),
                               dwr.data(), dbr.data());
  const double M = static_cast<double>(g.N * g.HW), sum_scale = std::sqrt(M);
  std::vector<float> dx_scale(n);
  for (int64_t nn = 0; nn < g.N; ++nn)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t i = 0; i < g.HW; ++i) {
        const size_t j = static_cast<size_t>((nn * g.C + c) * g.HW + i), cc = static_cast<size_t>(c);
        const double r = invr[cc], xhat = std::fabs((x[j] - meanr[cc]) * r);
        dx_scale[j] = static_cast<float>((w ? std::fabs(w[c]) : 1.0) * r *
                                         (std::fabs(dy[j]) + std::fabs(dbr[cc]) / M + xhat * std::fabs(dwr[cc]) / M));
      }
  expect_close(dx, dxr, dx_scale, 1e-5, "fused dx " + tag);
  expect_close(dw, dwr, sum_scale * 4, 1e-5, "fused dweight " + tag);
  expect_close(db, dbr, sum_scale, 1e-5, "fused dbias " + tag);

  // Eval mode: forward already covered (batchnorm_relu6_eval above); backward from its output.
  std::vector<float> ye(n);
  batchnorm_relu6_eval_ref(g, x.data(), w, b, rmr.data(), rvr.data(), ye.data());
  batchnorm_relu6_backward_eval(g, x.data(), ye.data(), dy.data(), w, rmr.data(), rvr.data(), dx.data(), dw.data(),
                                db.data());
  batchnorm_relu6_backward_eval_ref(g, x.data(), ye.data(), dy.data(), w, rmr.data(), rvr.data(), dxr.data(),
                                    dwr.data(), dbr.data());
  expect_close(dx, dxr, max_abs(dxr), 1e-6, "fused eval dx " + tag);
  expect_close(dw, dwr, sum_scale * 4 * max_abs(x), 1e-5, "fused eval dweight " + tag);
  expect_close(db, dbr, sum_scale, 1e-5, "fused eval dbias " + tag);

  // Both clamps are exercised (with affine parameters the outputs reach past 6 as well).
  size_t low = 0, high = 0, inside = 0;
  for (float v : yr) low += v == 0.f, high += v == 6.f, inside += v > 0.f && v < 6.f;
  if (n >= 64) {
    EXPECT_GT(low, 0u) << tag;
    EXPECT_GT(inside, 0u) << tag;
    if (w) {
      EXPECT_GT(high, 0u) << tag;
    }
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

  check_fused_against_ref(g, x, dy, wp, bp, track, seed, tag);
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

TEST(KernelsBatchNorm, FusedRelu6EqualsUnfusedKernelsInSequence) {
  // batchnorm_forward_train + relu6_forward, and relu6_backward + batchnorm_backward (the unfused
  // path of nn/functional), against the fused kernels: the same arithmetic in the same order, so
  // the results agree to float rounding (in practice bit for bit). Slab path (HW < 64) and plane path.
  uint64_t seed = 900;
  for (const BatchNormGeom& g : {bn(4, 6, 25), bn(20, 70, 4), bn(3, 5, 130), bn(8, 16, 1024)}) {
    const std::string tag = label(g);
    const size_t n = static_cast<size_t>(g.N * g.C * g.HW), C = static_cast<size_t>(g.C);
    std::vector<float> x = make_x(g, seed += 8);
    for (float& v : x) v *= 4.f;
    std::vector<float> w = random_floats(g.C, seed + 1, 1.5f, 3.f), b = random_floats(g.C, seed + 2, 2.f, 4.f);
    const std::vector<float> dy = random_floats(static_cast<int64_t>(n), seed + 3);
    std::vector<float> rm1 = random_floats(g.C, seed + 4), rv1 = random_floats(g.C, seed + 5, 0.5f, 2.f);
    std::vector<float> rm2 = rm1, rv2 = rv1;

    std::vector<float> t(n), z1(n), m1(C), i1(C), z2(n), m2(C), i2(C);
    batchnorm_forward_train(g, x.data(), w.data(), b.data(), t.data(), m1.data(), i1.data(), rm1.data(), rv1.data());
    relu6_forward(static_cast<int64_t>(n), t.data(), z1.data());
    batchnorm_relu6_forward_train(g, x.data(), w.data(), b.data(), z2.data(), m2.data(), i2.data(), rm2.data(),
                                  rv2.data());
    expect_close(z2, z1, 6.0, 1e-7, "y " + tag);
    expect_close(m2, m1, max_abs(x), 1e-7, "mean " + tag);
    expect_close(i2, i1, testing::abs_of(i1), 1e-7, "invstd " + tag);
    expect_close(rm2, rm1, max_abs(rm1), 1e-7, "running_mean " + tag);
    expect_close(rv2, rv1, testing::abs_of(rv1), 1e-7, "running_var " + tag);

    std::vector<float> gm(n), dx1(n), dw1(C), db1(C), dx2(n), dw2(C), db2(C);
    relu6_backward(static_cast<int64_t>(n), t.data(), dy.data(), gm.data());
    batchnorm_backward(g, x.data(), gm.data(), w.data(), m1.data(), i1.data(), dx1.data(), dw1.data(), db1.data());
    batchnorm_relu6_backward(g, x.data(), z1.data(), dy.data(), w.data(), m1.data(), i1.data(), dx2.data(), dw2.data(),
                             db2.data());
    const double sum_scale = std::sqrt(static_cast<double>(g.N * g.HW));
    expect_close(dx2, dx1, max_abs(dx1), 1e-6, "dx " + tag);
    expect_close(dw2, dw1, sum_scale, 1e-6, "dweight " + tag);
    expect_close(db2, db1, sum_scale, 1e-6, "dbias " + tag);

    batchnorm_forward_eval(g, x.data(), w.data(), b.data(), rm1.data(), rv1.data(), t.data());
    relu6_forward(static_cast<int64_t>(n), t.data(), z1.data());
    batchnorm_relu6_eval(g, x.data(), w.data(), b.data(), rm1.data(), rv1.data(), z2.data());
    expect_close(z2, z1, 6.0, 1e-7, "eval y " + tag);
    relu6_backward(static_cast<int64_t>(n), t.data(), dy.data(), gm.data());
    batchnorm_backward_eval(g, x.data(), gm.data(), w.data(), rm1.data(), rv1.data(), dx1.data(), dw1.data(),
                            db1.data());
    batchnorm_relu6_backward_eval(g, x.data(), z1.data(), dy.data(), w.data(), rm1.data(), rv1.data(), dx2.data(),
                                  dw2.data(), db2.data());
    expect_close(dx2, dx1, max_abs(dx1), 1e-7, "eval dx " + tag);
    expect_close(dw2, dw1, sum_scale * max_abs(x), 1e-6, "eval dweight " + tag);
    expect_close(db2, db1, sum_scale, 1e-6, "eval dbias " + tag);
  }
}

TEST(KernelsBatchNorm, FusedBackwardMaskIsZeroAtBothKinks) {
  // The backward takes the fused output z as given, so z can hold the kinks exactly (and the
  // nearest floats inside them, and -0). Eval mode: dx = a * dy * [0 < z < 6], a = 1/sqrt(1 + eps).
  const BatchNormGeom g = bn(1, 1, 8);
  const std::vector<float> z = {-0.f, 0.f, std::nextafter(0.f, 1.f), 3.f, std::nextafter(6.f, 0.f), 6.f, 0.f, 6.f};
  const std::vector<float> x = {-1.f, 0.f, 1e-6f, 3.f, 5.9999995f, 6.f, -2.f, 9.f};
  const std::vector<float> dy = {1, 1, 1, 1, 1, 1, 1, 1};
  const float rm = 0.f, rv = 1.f;
  for (int impl = 0; impl < 2; ++impl) {
    std::vector<float> dx(8), dw(1), db(1);
    (impl ? batchnorm_relu6_backward_eval : batchnorm_relu6_backward_eval_ref)(g, x.data(), z.data(), dy.data(),
                                                                               nullptr, &rm, &rv, dx.data(),
                                                                               dw.data(), db.data());
    const float a = static_cast<float>(1.0 / std::sqrt(1.0 + 1e-5));
    const std::vector<float> want = {0, 0, a, a, a, 0, 0, 0};
    for (size_t i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(dx[i], want[i]) << "impl " << impl << " element " << i;
    EXPECT_FLOAT_EQ(db[0], 3.f) << impl;  // dbias sums the masked gradient only
  }
  // Train mode: masked elements still get a gradient through the mean and variance (formula (3)),
  // but dbias is the sum of the masked gradient: the three elements strictly inside (0, 6).
  std::vector<float> mean = {1.f}, invstd = {1.f}, dx(8), dw(1), db(1);
  batchnorm_relu6_backward(g, x.data(), z.data(), dy.data(), nullptr, mean.data(), invstd.data(), dx.data(),
                           dw.data(), db.data());
  EXPECT_FLOAT_EQ(db[0], 3.f);
}

// Every output of the four train kernels on one input (weight, bias and running statistics
// given), and y0 / dx0: forward and backward without weight, bias or running statistics.
// mask_edges: the fused backward reads a copy of the fused output with the mask's edge cases
// (exactly 0, exactly 6, NaN).
struct TrainOutputs {
  std::vector<float> y, z, mean, invstd, rm, rv, dx, dxr, dw, db, dwr, dbr, y0, dx0;
};
TrainOutputs run_train_kernels(const BatchNormGeom& g, const float* x, const float* w, const float* b,
                               const float* dy, bool mask_edges) {
  const size_t n = static_cast<size_t>(g.N * g.C * g.HW), c = static_cast<size_t>(g.C);
  TrainOutputs o{std::vector<float>(n), std::vector<float>(n), std::vector<float>(c), std::vector<float>(c),
                 std::vector<float>(c, 0.5f), std::vector<float>(c, 2.f), std::vector<float>(n), std::vector<float>(n),
                 std::vector<float>(c), std::vector<float>(c), std::vector<float>(c), std::vector<float>(c),
                 std::vector<float>(n), std::vector<float>(n)};
  std::vector<float> m0(c), s0(c);
  batchnorm_forward_train(g, x, nullptr, nullptr, o.y0.data(), m0.data(), s0.data(), nullptr, nullptr);
  batchnorm_backward(g, x, dy, nullptr, m0.data(), s0.data(), o.dx0.data(), nullptr, nullptr);
  batchnorm_forward_train(g, x, w, b, o.y.data(), o.mean.data(), o.invstd.data(), o.rm.data(), o.rv.data());
  std::vector<float> m2(c), s2(c);
  batchnorm_relu6_forward_train(g, x, w, b, o.z.data(), m2.data(), s2.data(), nullptr, nullptr);
  std::vector<float> z = o.z;
  if (mask_edges) z[0] = 0.f, z[n / 2] = 6.f, z[n - 1] = std::nanf("");
  batchnorm_backward(g, x, dy, w, o.mean.data(), o.invstd.data(), o.dx.data(), o.dw.data(), o.db.data());
  batchnorm_relu6_backward(g, x, z.data(), dy, w, o.mean.data(), o.invstd.data(), o.dxr.data(), o.dwr.data(),
                           o.dbr.data());
  return o;
}

// The train-mode sums' two implementations (batchnorm.h: batchnorm_set_lanes16) must give the same
// bits, so that switching between them moves no result: every output of the four train kernels,
// on block lengths of every remainder (16..63 values at batch 1, 64..131, the MobileNetV2 planes;
// the slabs of planes below 64 values at batches 3 and 37),
// with ReLU6 outputs exactly at 0 and 6 and a NaN among them.
TEST(BatchNormLanes16, SameBitsAsTheLoops) {
  if (!batchnorm_lanes16_available()) GTEST_SKIP() << "no AVX-512 here, or not an OpenMP build: one implementation only";
  std::vector<BatchNormGeom> shapes;
  for (int64_t hw = 16; hw < 64; ++hw) shapes.push_back(bn(1, 3, hw));
  for (int64_t hw = 64; hw <= 131; ++hw) shapes.push_back(bn(2, 3, hw));
  for (int64_t hw : {196, 784, 1024, 3136}) shapes.push_back(bn(3, 5, hw));
  shapes.push_back(bn(1, 40, 12544));
  for (int64_t hw = 1; hw < 64; ++hw) shapes.push_back(bn(3, 7, hw));  // slabs: HW < 64 and N > 1
  for (int64_t hw : {4, 16, 49}) shapes.push_back(bn(37, 40, hw));     // 16 images per float sum, then 5 more
  uint64_t seed = 900;
  for (const BatchNormGeom& g : shapes) {
    SCOPED_TRACE(label(g));
    const size_t n = static_cast<size_t>(g.N * g.C * g.HW);
    const std::vector<float> x = make_x(g, seed += 4, 50.f), w = random_floats(g.C, seed + 1),
                             b = random_floats(g.C, seed + 2);
    std::vector<float> dy = random_floats(static_cast<int64_t>(n), seed + 3);
    auto run = [&](bool lanes16) {
      batchnorm_set_lanes16(lanes16);
      return run_train_kernels(g, x.data(), w.data(), b.data(), dy.data(), true);
    };
    const TrainOutputs loops = run(false), lanes = run(true);
    batchnorm_set_lanes16(true);
    auto same = [](const std::vector<float>& a, const std::vector<float>& b, const char* what) {
      ASSERT_EQ(a.size(), b.size());
      for (size_t i = 0; i < a.size(); ++i)
        ASSERT_EQ(std::memcmp(&a[i], &b[i], sizeof(float)), 0)
            << what << "[" << i << "]: " << a[i] << " (loops) against " << b[i]
            << " (lanes16): the sixteen-block sums no longer add in this compiler's order (nn/kernels/batchnorm.cpp)";
    };
    same(loops.y, lanes.y, "y"), same(loops.z, lanes.z, "relu6 y"), same(loops.mean, lanes.mean, "save_mean");
    same(loops.invstd, lanes.invstd, "save_invstd"), same(loops.rm, lanes.rm, "running_mean");
    same(loops.rv, lanes.rv, "running_var"), same(loops.dx, lanes.dx, "dx"), same(loops.dxr, lanes.dxr, "relu6 dx");
    same(loops.dw, lanes.dw, "dweight"), same(loops.db, lanes.db, "dbias"), same(loops.dwr, lanes.dwr, "relu6 dweight");
    same(loops.dbr, lanes.dbr, "relu6 dbias");
    same(loops.y0, lanes.y0, "y (no weight, bias)"), same(loops.dx0, lanes.dx0, "dx (no weight)");
  }
}

// Tensors of 8 MB and more whose blocks would read short runs per image run in one block of
// channels per thread (nn/kernels/batchnorm.cpp, kStreamBytes, kShortRun), others in blocks of
// about 256 KB: each channel's sums must come out the same either way, bit for bit. Every channel
// of a large tensor against the same channel run alone (a tensor of one channel, below the
// threshold): all outputs of the four train kernels, on planes of 4096 values (runs of 16 KB: one
// block per thread), on slabs (2x2 planes, 4096 images: likewise) and on planes of 90000 values
// (runs of 360 KB: blocks).
TEST(KernelsBatchNorm, LargeTensorsGiveEachChannelTheSameBits) {
  uint64_t seed = 1300;
  for (const BatchNormGeom& g : {bn(64, 8, 4096), bn(4096, 40, 16), bn(4, 6, 90000)}) {
    SCOPED_TRACE(label(g));
    ASSERT_GE(g.N * g.C * g.HW * 4, int64_t{8} << 20) << "the test needs a tensor above the threshold";
    const std::vector<float> x = make_x(g, seed += 4, 20.f), w = random_floats(g.C, seed + 1),
                             b = random_floats(g.C, seed + 2), dy = random_floats(g.N * g.C * g.HW, seed + 3);
    // The four kernels on channels [c0, c0 + C) of x, dy (all of them when C == g.C).
    auto run = [&](int64_t c0, int64_t C) {
      const size_t n = static_cast<size_t>(g.N * C * g.HW);
      std::vector<float> xs(n), dys(n);
      for (int64_t i = 0; i < g.N; ++i)
        for (int64_t k = 0; k < C * g.HW; ++k) {
          xs[static_cast<size_t>(i * C * g.HW + k)] = x[static_cast<size_t>((i * g.C + c0) * g.HW + k)];
          dys[static_cast<size_t>(i * C * g.HW + k)] = dy[static_cast<size_t>((i * g.C + c0) * g.HW + k)];
        }
      return run_train_kernels(bn(g.N, C, g.HW), xs.data(), w.data() + c0, b.data() + c0, dys.data(), false);
    };
    const TrainOutputs all = run(0, g.C);
    for (int64_t c = 0; c < g.C; ++c) {
      const TrainOutputs one = run(c, 1);
      auto same_values = [&](const std::vector<float>& a, const std::vector<float>& v, const char* what) {
        for (int64_t i = 0; i < g.N; ++i)
          for (int64_t k = 0; k < g.HW; ++k) {
            const float p = a[static_cast<size_t>((i * g.C + c) * g.HW + k)], q = v[static_cast<size_t>(i * g.HW + k)];
            ASSERT_EQ(std::memcmp(&p, &q, sizeof(float)), 0) << what << " of channel " << c << ", image " << i
                                                             << ", value " << k << ": " << p << " against " << q;
          }
      };
      auto same_channel = [&](const std::vector<float>& a, const std::vector<float>& v, const char* what) {
        ASSERT_EQ(std::memcmp(&a[static_cast<size_t>(c)], &v[0], sizeof(float)), 0)
            << what << " of channel " << c << ": " << a[static_cast<size_t>(c)] << " against " << v[0];
      };
      same_values(all.y, one.y, "y"), same_values(all.z, one.z, "relu6 y"), same_values(all.dx, one.dx, "dx");
      same_values(all.dxr, one.dxr, "relu6 dx"), same_values(all.y0, one.y0, "y (no weight, bias)");
      same_values(all.dx0, one.dx0, "dx (no weight)");
      same_channel(all.mean, one.mean, "save_mean"), same_channel(all.invstd, one.invstd, "save_invstd");
      same_channel(all.rm, one.rm, "running_mean"), same_channel(all.rv, one.rv, "running_var");
      same_channel(all.dw, one.dw, "dweight"), same_channel(all.db, one.db, "dbias");
      same_channel(all.dwr, one.dwr, "relu6 dweight"), same_channel(all.dbr, one.dbr, "relu6 dbias");
    }
  }
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
  // The fused kernels check the same things, and need the output for their mask.
  EXPECT_THROW(batchnorm_relu6_forward_train(one, a.data(), nullptr, nullptr, b.data(), c.data(), d.data(), nullptr,
                                             nullptr),
               sleepnet::Error);
  try {
    batchnorm_relu6_backward(bn(2, 2, 2), a.data(), nullptr, b.data(), nullptr, c.data(), d.data(), a.data(), nullptr,
                             nullptr);
    ADD_FAILURE() << "no exception";
  } catch (const sleepnet::Error& e) {
    EXPECT_NE(std::string(e.what()).find("batchnorm_relu6_backward"), std::string::npos) << e.what();
  }
  EXPECT_THROW(batchnorm_relu6_backward_eval(bn(2, 2, 2), a.data(), nullptr, b.data(), nullptr, c.data(), d.data(),
                                             a.data(), nullptr, nullptr),
               sleepnet::Error);
  EXPECT_THROW(batchnorm_relu6_backward_ref(bn(2, 2, 2), a.data(), nullptr, b.data(), nullptr, c.data(), d.data(),
                                            a.data(), nullptr, nullptr),
               sleepnet::Error);
}

}  // namespace
}  // namespace sleepnet::kernels
