// tests/kernels_activation_test.cpp: ReLU6, global average pooling, linear and dropout kernels
// (nn/kernels/activation.h): hand-computed values (ReLU6's gradient at the kinks, PyTorch's
// dropout scaling), the optimized kernels against their refs, and adjoint identities for the
// linear maps (pooling, linear). Also the threading helpers of nn/kernels/common.h these
// element-wise kernels split their arrays with (threads_for, parallel_for).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "nn/kernels/activation.h"
#include "nn/kernels/common.h"
#include "tensor/tensor.h"
#include "tests/kernels_test_util.h"

namespace sleepnet::kernels {
namespace {

using testing::abs_of;
using testing::dot;
using testing::expect_close;
using testing::expect_equal;
using testing::random_floats;

TEST(KernelsThreads, ThreadsForGivesOneThreadPerGrainUpToTheBudget) {
  const int most = max_threads();
  EXPECT_EQ(threads_for(0, 100), 1);
  EXPECT_EQ(threads_for(199, 100), 1);
  EXPECT_EQ(threads_for(250, 100), std::min(2, most));
  EXPECT_EQ(threads_for(int64_t{1} << 40, 100), most);
  EXPECT_EQ(threads_for(10, 0), most);  // no grain: every thread
}

TEST(KernelsThreads, ParallelForCoversEveryIndexOnceInAlignedChunks) {
  for (int threads : {1, 2, 3, 7})
    for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{100}, int64_t{1001}})
      for (int64_t align : {int64_t{1}, int64_t{16}}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::vector<std::pair<int64_t, int64_t>> chunks;
        std::mutex m;
        parallel_for(n, threads, [&](int64_t b, int64_t e) {
          {
            std::lock_guard<std::mutex> lock(m);
            chunks.emplace_back(b, e);
          }
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
        }, align);
        const std::string tag = "threads " + std::to_string(threads) + " n " + std::to_string(n) + " align " +
                                std::to_string(align);
        for (int64_t i = 0; i < n; ++i)
          EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i << ", " << tag;
        EXPECT_LE(chunks.size(), static_cast<size_t>(std::max(threads, 1))) << tag;
        for (const auto& [b, e] : chunks) {
          EXPECT_LT(b, e) << "empty chunks are not called, " << tag;
          EXPECT_EQ(b % align, 0) << "chunk starts on a multiple of align, " << tag;
        }
      }
}

TEST(KernelsActivation, Relu6ValuesAndGradientAtTheKinks) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x = {-1.f, 0.f, 1e-7f, 0.5f, 5.999f, 6.f, 7.f, nan};
  const std::vector<float> dy = {10, 20, 30, 40, 50, 60, 70, 80};
  const std::vector<float> want_y = {0, 0, 1e-7f, 0.5f, 5.999f, 6, 6};
  const std::vector<float> want_dx = {0, 0, 30, 40, 50, 0, 0, 80};  // NaN passes, as in PyTorch
  for (int impl = 0; impl < 2; ++impl) {
    std::vector<float> y(x.size()), dx(x.size());
    (impl ? relu6_forward : relu6_forward_ref)(8, x.data(), y.data());
    (impl ? relu6_backward : relu6_backward_ref)(8, x.data(), dy.data(), dx.data());
    for (size_t i = 0; i < 7; ++i) EXPECT_EQ(y[i], want_y[i]) << "y " << i << " impl " << impl;
    EXPECT_TRUE(std::isnan(y[7]));
    expect_equal(dx, want_dx, "relu6 dx impl " + std::to_string(impl));
    // The output gives the same mask as the input.
    (impl ? relu6_backward : relu6_backward_ref)(7, y.data(), dy.data(), dx.data());
    for (size_t i = 0; i < 7; ++i) EXPECT_EQ(dx[i], want_dx[i]) << "from output, " << i;
  }
}

TEST(KernelsActivation, Relu6MatchesRefOnLargeArraysAndInPlace) {
  for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{100003}}) {
    const std::vector<float> x = random_floats(n, 3, -3.f, 9.f), dy = random_floats(n, 4);
    std::vector<float> y(x.size()), yr(x.size()), dx(x.size()), dxr(x.size());
    relu6_forward(n, x.data(), y.data());
    relu6_forward_ref(n, x.data(), yr.data());
    expect_equal(y, yr, "relu6 forward n=" + std::to_string(n));
    relu6_backward(n, x.data(), dy.data(), dx.data());
    relu6_backward_ref(n, x.data(), dy.data(), dxr.data());
    expect_equal(dx, dxr, "relu6 backward n=" + std::to_string(n));
    std::vector<float> inplace = x;
    relu6_forward(n, inplace.data(), inplace.data());
    expect_equal(inplace, yr, "relu6 in place");
  }
}

TEST(KernelsActivation, GlobalAvgPool) {
  // Hand values: one image, two channels of 2x2.
  const std::vector<float> x = {1, 2, 3, 4, -1, -1, -1, 5};
  std::vector<float> y(2), dx(8);
  global_avg_pool_forward(1, 2, 4, x.data(), y.data());
  EXPECT_FLOAT_EQ(y[0], 2.5f);
  EXPECT_FLOAT_EQ(y[1], 0.5f);
  const std::vector<float> dy = {4, -8};
  global_avg_pool_backward(1, 2, 4, dy.data(), dx.data());
  expect_equal(dx, {1, 1, 1, 1, -2, -2, -2, -2}, "pool backward");

  struct Shape {
    int64_t N, C, HW;
  };
  for (const Shape& s : {Shape{2, 3, 5}, Shape{32, 1280, 4}, Shape{3, 7, 1}, Shape{1, 2, 12544}}) {
    const std::string tag = std::to_string(s.N) + "x" + std::to_string(s.C) + "x" + std::to_string(s.HW);
    const auto xs = random_floats(s.N * s.C * s.HW, 5), dys = random_floats(s.N * s.C, 6);
    std::vector<float> ys(static_cast<size_t>(s.N * s.C)), ysr(ys.size()), scale(ys.size());
    global_avg_pool_forward(s.N, s.C, s.HW, xs.data(), ys.data());
    global_avg_pool_forward_ref(s.N, s.C, s.HW, xs.data(), ysr.data());
    global_avg_pool_forward_ref(s.N, s.C, s.HW, abs_of(xs).data(), scale.data());
    expect_close(ys, ysr, scale, 1e-6, "pool forward " + tag);
    std::vector<float> dxs(xs.size()), dxsr(xs.size());
    global_avg_pool_backward(s.N, s.C, s.HW, dys.data(), dxs.data());
    global_avg_pool_backward_ref(s.N, s.C, s.HW, dys.data(), dxsr.data());
    expect_equal(dxs, dxsr, "pool backward " + tag);
    // adjoint: <dy, pool(x)> == <pool_backward(dy), x>
    EXPECT_NEAR(dot(dys, ysr), dot(dxsr, xs), 1e-5 * (1 + dot(abs_of(dys), scale))) << tag;
  }
}

TEST(KernelsActivation, LinearHandValues) {
  // x [2, 3], w [2, 3] (OUT = 2), b [2]
  const std::vector<float> x = {1, 2, 3, -1, 0, 2}, w = {1, 0, -1, 2, 1, 1}, b = {0.5f, -1};
  const LinearGeom g{2, 3, 2};
  std::vector<float> y(4);
  linear_forward(g, x.data(), w.data(), b.data(), y.data());
  expect_equal(y, {1 - 3 + 0.5f, 2 + 2 + 3 - 1, -1 - 2 + 0.5f, -2 + 2 - 1}, "linear forward");
  const std::vector<float> dy = {1, 2, -1, 1};
  std::vector<float> dx(6), dw(6), db(2);
  linear_backward(g, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
  expect_equal(dx, {1 + 4, 0 + 2, -1 + 2, -1 + 2, 0 + 1, 1 + 1}, "linear dx = dy w");
  expect_equal(dw, {1 + 1, 2 + 0, 3 - 2, 2 - 1, 4 + 0, 6 + 2}, "linear dw = dy^T x");
  expect_equal(db, {0, 3}, "linear db");
}

TEST(KernelsActivation, LinearMatchesRefAndIsAdjoint) {
  for (const LinearGeom& g : {LinearGeom{32, 1280, 1}, LinearGeom{7, 13, 5}, LinearGeom{1, 64, 10},
                              LinearGeom{64, 640, 3}}) {
    const std::string tag = std::to_string(g.N) + "x" + std::to_string(g.IN) + "->" + std::to_string(g.OUT);
    const auto x = random_floats(g.N * g.IN, 1), w = random_floats(g.OUT * g.IN, 2), b = random_floats(g.OUT, 3);
    const auto dy = random_floats(g.N * g.OUT, 4);
    std::vector<float> y(static_cast<size_t>(g.N * g.OUT)), yr(y.size()), ys(y.size());
    linear_forward(g, x.data(), w.data(), b.data(), y.data());
    linear_forward_ref(g, x.data(), w.data(), b.data(), yr.data());
    linear_forward_ref(g, abs_of(x).data(), abs_of(w).data(), abs_of(b).data(), ys.data());
    expect_close(y, yr, ys, 1e-5, "linear forward " + tag);
    std::vector<float> dx(x.size()), dxr(x.size()), dxs(x.size()), dw(w.size()), dwr(w.size()), dws(w.size()),
        db(b.size()), dbr(b.size()), dbs(b.size());
    linear_backward(g, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
    linear_backward_ref(g, x.data(), w.data(), dy.data(), dxr.data(), dwr.data(), dbr.data());
    linear_backward_ref(g, abs_of(x).data(), abs_of(w).data(), abs_of(dy).data(), dxs.data(), dws.data(), dbs.data());
    expect_close(dx, dxr, dxs, 1e-5, "linear dx " + tag);
    expect_close(dw, dwr, dws, 1e-5, "linear dw " + tag);
    expect_close(db, dbr, dbs, 1e-5, "linear db " + tag);
    // adjoints of y = x w^T (no bias): <dy, y> == <dx, x> == <dw, w>
    linear_forward_ref(g, x.data(), w.data(), nullptr, yr.data());
    const double lhs = dot(dy, yr), mag = dot(abs_of(dy), ys);
    EXPECT_NEAR(dot(dxr, x), lhs, 1e-6 * (mag + 1)) << tag;
    EXPECT_NEAR(dot(dwr, w), lhs, 1e-6 * (mag + 1)) << tag;
    // outputs may be skipped
    linear_backward(g, x.data(), w.data(), dy.data(), nullptr, dw.data(), nullptr);
    expect_close(dw, dwr, dws, 1e-5, "linear dw alone " + tag);
  }
}

TEST(KernelsActivation, DropoutMaskScalesLikePyTorch) {
  const int64_t n = 1000;
  std::vector<float> u(n);
  for (int64_t i = 0; i < n; ++i) u[static_cast<size_t>(i)] = static_cast<float>(i) / n;  // 0, 0.001, ...
  for (float p : {0.f, 0.2f, 0.5f, 1.f}) {
    std::vector<float> m(n), mr(n);
    dropout_mask(n, p, u.data(), m.data());
    dropout_mask_ref(n, p, u.data(), mr.data());
    expect_equal(m, mr, "mask p=" + std::to_string(p));
    int kept = 0;
    for (float v : m) {
      if (v != 0.f) {
        ++kept;
        EXPECT_EQ(v, 1.f / static_cast<float>(1.0 - p));
      }
    }
    // u < 1 - p holds for exactly round(n * (1 - p)) of the evenly spaced values
    EXPECT_EQ(kept, static_cast<int>(std::lround(n * (1.0 - p)))) << "p=" << p;
    const auto x = random_floats(n, 9);
    std::vector<float> y(n), yr(n), dx(n);
    dropout_forward(n, x.data(), m.data(), y.data());
    dropout_apply_ref(n, x.data(), mr.data(), yr.data());
    expect_equal(y, yr, "dropout forward");
    dropout_backward(n, x.data(), m.data(), dx.data());  // same product
    expect_equal(dx, yr, "dropout backward");
  }
  EXPECT_THROW(dropout_mask(n, 1.5f, u.data(), u.data()), sleepnet::Error);
  EXPECT_THROW(dropout_mask(n, -0.1f, u.data(), u.data()), sleepnet::Error);
  EXPECT_THROW(global_avg_pool_forward(0, 1, 1, u.data(), u.data()), sleepnet::Error);
  EXPECT_THROW(linear_forward(LinearGeom{1, 0, 1}, u.data(), u.data(), nullptr, u.data()), sleepnet::Error);
}

}  // namespace
}  // namespace sleepnet::kernels
