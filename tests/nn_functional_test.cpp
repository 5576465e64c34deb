// nn_functional_test.cpp: every layer op of nn/functional.h through the shared gradient checker
// (tests/gradcheck.h: loss = sum(y * R) with a fixed random R, central differences), plus value
// checks against plain loops and the error messages for bad shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "nn/functional.h"
#include "tests/gradcheck.h"

namespace sleepnet {
namespace {

using testing::gradcheck;
using testing::GradCheckOptions;
using testing::random_input;
namespace Fn = nn::functional;

// Naive convolution (double accumulation) for value checks.
std::vector<float> conv_naive(const Tensor& x, const Tensor& w, const Tensor& b, int64_t s, int64_t p, int64_t groups) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OC = w.size(0), KH = w.size(2), KW = w.size(3), Cg = C / groups, OCg = OC / groups;
  const int64_t OH = (H + 2 * p - KH) / s + 1, OW = (W + 2 * p - KW) / s + 1;
  std::vector<float> y(N * OC * OH * OW);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < OC; ++oc)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double acc = b.defined() ? b.at({oc}) : 0.0;
          const int64_t g = oc / OCg;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = oh * s - p + kh, iw = ow * s - p + kw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                acc += static_cast<double>(x.at({n, g * Cg + c, ih, iw})) * w.at({oc, c, kh, kw});
              }
          y[((n * OC + oc) * OH + oh) * OW + ow] = static_cast<float>(acc);
        }
  return y;
}

void expect_near_vec(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << "at " << i;
}

// ---------------------------------------------------------------- conv2d

struct ConvCase {
  const char* name;
  Shape x, w;
  bool bias;
  int64_t stride, padding, groups;
};

class Conv2dGrad : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Conv2dGrad, ValuesAndGradients) {
  const ConvCase& c = GetParam();
  Generator gen(11);
  Tensor x = random_input(c.x, gen), w = random_input(c.w, gen);
  Tensor b = c.bias ? random_input({c.w[0]}, gen) : Tensor();
  Tensor y = Fn::conv2d(x, w, b, c.stride, c.padding, c.groups);
  expect_near_vec(y.to_vector(), conv_naive(x, w, b, c.stride, c.padding, c.groups), 1e-5f);
  std::vector<Tensor> in{x, w};
  if (c.bias) in.push_back(b);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& v) {
        return Fn::conv2d(v[0], v[1], v.size() > 2 ? v[2] : Tensor(), c.stride, c.padding, c.groups);
      },
      in));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Conv2dGrad,
    ::testing::Values(ConvCase{"k3s1p1_bias", {2, 3, 5, 6}, {4, 3, 3, 3}, true, 1, 1, 1},
                      ConvCase{"k3s2p1", {2, 3, 7, 7}, {5, 3, 3, 3}, false, 2, 1, 1},
                      ConvCase{"pointwise", {2, 6, 4, 3}, {5, 6, 1, 1}, true, 1, 0, 1},
                      ConvCase{"pointwise_stride2", {1, 4, 5, 5}, {3, 4, 1, 1}, false, 2, 0, 1},
                      ConvCase{"grouped", {2, 4, 5, 5}, {6, 2, 3, 3}, true, 1, 1, 2},
                      ConvCase{"depthwise_s1", {2, 5, 6, 6}, {5, 1, 3, 3}, false, 1, 1, 5},
                      ConvCase{"depthwise_s2_odd", {3, 4, 7, 9}, {4, 1, 3, 3}, true, 2, 1, 4},
                      ConvCase{"depthwise_k5", {1, 3, 8, 7}, {3, 1, 5, 5}, false, 1, 2, 3},
                      ConvCase{"k2_nopad", {2, 2, 5, 4}, {3, 2, 2, 2}, false, 1, 0, 1}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Conv2d, NonContiguousInput) {
  Generator gen(3);
  Tensor base = Tensor::uniform({2, 3, 6, 5}, -1, 1, gen);
  Tensor x = base.transpose(2, 3);  // [2, 3, 5, 6], not contiguous
  Tensor w = Tensor::uniform({4, 3, 3, 3}, -1, 1, gen);
  Tensor y = Fn::conv2d(x, w, Tensor(), 1, 1, 1);
  expect_near_vec(y.to_vector(), conv_naive(x.contiguous(), w, Tensor(), 1, 1, 1), 1e-5f);
}

TEST(Conv2d, OnlyRequestedGradientsAreComputed) {
  Generator gen(4);
  Tensor x = Tensor::uniform({1, 2, 4, 4}, -1, 1, gen);  // no grad: backward-data is skipped
  Tensor w = random_input({3, 2, 3, 3}, gen);
  sum(Fn::conv2d(x, w, Tensor(), 1, 1, 1) * 2.f).backward();
  EXPECT_TRUE(w.grad().defined());
  EXPECT_FALSE(x.grad().defined());
}

TEST(Conv2d, BadShapesAreClearErrors) {
  Tensor x = Tensor::zeros({1, 4, 5, 5});
  EXPECT_THROW(Fn::conv2d(x, Tensor::zeros({3, 3, 3, 3})), Error);        // C mismatch
  EXPECT_THROW(Fn::conv2d(x, Tensor::zeros({3, 2, 3, 3}), Tensor(), 1, 1, 3), Error);  // groups
  EXPECT_THROW(Fn::conv2d(x, Tensor::zeros({3, 4, 3, 3}), Tensor::zeros({2})), Error);  // bias
  EXPECT_THROW(Fn::conv2d(Tensor::zeros({4, 5, 5}), Tensor::zeros({3, 4, 3, 3})), Error);  // 3-d input
  EXPECT_THROW(Fn::conv2d(x, Tensor::zeros({3, 4, 7, 7})), Error);  // kernel larger than input
  try {
    Fn::conv2d(x, Tensor::zeros({3, 3, 3, 3}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv2d"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- batch_norm

TEST(BatchNorm, TrainGradients) {
  Generator gen(21);
  Tensor x = random_input({3, 4, 3, 2}, gen, -2.f, 2.f);
  Tensor w = random_input({4}, gen, 0.5f, 1.5f), b = random_input({4}, gen);
  // No running statistics: the function is then a pure function of its inputs.
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& v) { return Fn::batch_norm(v[0], v[1], v[2], Tensor(), Tensor(), true); },
      {x, w, b}));
}

TEST(BatchNorm, TrainWithoutAffine) {
  Generator gen(22);
  Tensor x = random_input({2, 3, 4, 3}, gen, -1.f, 3.f);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) {
    return Fn::batch_norm(v[0], Tensor(), Tensor(), Tensor(), Tensor(), true);
  }, {x}));
}

TEST(BatchNorm, EvalGradients) {
  Generator gen(23);
  Tensor x = random_input({2, 3, 3, 3}, gen), w = random_input({3}, gen, 0.5f, 1.5f), b = random_input({3}, gen);
  Tensor rm = Tensor::uniform({3}, -0.5f, 0.5f, gen), rv = Tensor::uniform({3}, 0.5f, 2.f, gen);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& v) { return Fn::batch_norm(v[0], v[1], v[2], rm, rv, false); }, {x, w, b}));
}

TEST(BatchNorm, TrainValuesAndRunningStatistics) {
  Generator gen(24);
  const int64_t N = 3, C = 2, H = 2, W = 3, M = N * H * W;
  Tensor x = Tensor::uniform({N, C, H, W}, -1.f, 3.f, gen);
  Tensor w = Tensor::from_vector({1.5f, 0.5f}, {C}), b = Tensor::from_vector({0.1f, -0.2f}, {C});
  Tensor rm = Tensor::from_vector({0.2f, -0.1f}, {C}), rv = Tensor::from_vector({1.f, 2.f}, {C});
  Tensor y = Fn::batch_norm(x, w, b, rm, rv, true, 0.1f, 1e-5f);
  for (int64_t c = 0; c < C; ++c) {
    double mean = 0, var = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < H * W; ++i) mean += x.at({n, c, i / W, i % W});
    mean /= M;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < H * W; ++i) var += std::pow(x.at({n, c, i / W, i % W}) - mean, 2);
    const double biased = var / M, unbiased = var / (M - 1);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < H * W; ++i) {
        const double want = (x.at({n, c, i / W, i % W}) - mean) / std::sqrt(biased + 1e-5) * w.at({c}) + b.at({c});
        EXPECT_NEAR(y.at({n, c, i / W, i % W}), want, 1e-5);
      }
    const double rm0 = c == 0 ? 0.2 : -0.1, rv0 = c == 0 ? 1.0 : 2.0;
    EXPECT_NEAR(rm.at({c}), 0.9 * rm0 + 0.1 * mean, 1e-6);
    EXPECT_NEAR(rv.at({c}), 0.9 * rv0 + 0.1 * unbiased, 1e-6);  // unbiased, as PyTorch
  }
  // Eval mode uses the running statistics and leaves them alone.
  Tensor rm_before = rm.clone();
  Tensor ye = Fn::batch_norm(x, w, b, rm, rv, false);
  EXPECT_EQ(rm.to_vector(), rm_before.to_vector());
  EXPECT_NEAR(ye.at({0, 1, 0, 0}),
              (x.at({0, 1, 0, 0}) - rm.at({1})) / std::sqrt(rv.at({1}) + 1e-5) * 0.5 - 0.2, 1e-5);
}

TEST(BatchNorm, BadInputs) {
  Tensor x = Tensor::zeros({2, 3, 2, 2});
  EXPECT_THROW(Fn::batch_norm(x, Tensor::ones({4}), Tensor(), Tensor(), Tensor(), true), Error);
  EXPECT_THROW(Fn::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false), Error);  // eval needs stats
  EXPECT_THROW(Fn::batch_norm(Tensor::zeros({1, 3, 1, 1}), Tensor(), Tensor(), Tensor(), Tensor(), true), Error);
  EXPECT_THROW(Fn::batch_norm(Tensor::zeros({2, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true), Error);
}

// ---------------------------------------------------------------- batch_norm_relu6 (fused)

// Distance of the closest training-mode BN output to a ReLU6 kink (0 or 6), computed in double
// from the inputs (x [N, C, H, W], weight and bias [C]).
double kink_margin(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3), M = N * HW;
  const std::vector<float> xv = x.contiguous().to_vector();
  double margin = 1e30;
  for (int64_t c = 0; c < C; ++c) {
    double mean = 0, var = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) mean += xv[static_cast<size_t>((n * C + c) * HW + i)];
    mean /= M;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) var += std::pow(xv[static_cast<size_t>((n * C + c) * HW + i)] - mean, 2);
    const double r = 1.0 / std::sqrt(var / M + 1e-5);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const double y = (xv[static_cast<size_t>((n * C + c) * HW + i)] - mean) * r * w.at({c}) + b.at({c});
        margin = std::min({margin, std::fabs(y), std::fabs(y - 6.0)});
      }
  }
  return margin;
}

// Per channel, the bias (on a grid) that keeps every training-mode BN output farthest from both
// kinks, with weight 3.5 spreading xhat (about +-1.7) past both of them. Returns {weight, bias}.
std::pair<Tensor, Tensor> affine_away_from_kinks(const Tensor& x) {
  const int64_t C = x.size(1);
  std::vector<float> wv(static_cast<size_t>(C), 3.5f), bv(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    Tensor xc = x.detach().narrow(1, c, 1).contiguous();
    double best = -1;
    for (int k = 0; k <= 200; ++k) {
      const float bias = 1.f + 0.02f * static_cast<float>(k);  // 1 .. 5
      const double m = kink_margin(xc, Tensor::from_vector({wv[static_cast<size_t>(c)]}, {1}),
                                   Tensor::from_vector({bias}, {1}));
      if (m > best) best = m, bv[static_cast<size_t>(c)] = bias;
    }
  }
  Tensor w = Tensor::from_vector(wv, {C}), b = Tensor::from_vector(bv, {C});
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  return {w, b};
}

TEST(BatchNormRelu6, TrainGradientsAwayFromKinks) {
  // Two shapes: the kernels' slab path (H*W < 64) and their per-plane path.
  for (const Shape& shape : {Shape{3, 4, 3, 2}, Shape{2, 2, 8, 9}}) {
    Generator gen(25);
    Tensor x = random_input(shape, gen, -2.f, 2.f);
    auto [w, b] = affine_away_from_kinks(x);
    const double margin = kink_margin(x, w, b);
    // A step h = 1e-2 in one input moves an output by at most about 3.5 * invstd * h ~ 0.06.
    ASSERT_GT(margin, 0.08) << shape_str(shape);
    Tensor y = Fn::batch_norm_relu6(x, w, b, Tensor(), Tensor(), true);
    int low = 0, high = 0;
    for (float v : y.to_vector()) low += v == 0.f, high += v == 6.f;
    EXPECT_GT(low, 0) << "some outputs clamped at 0";
    EXPECT_GT(high, 0) << "some outputs clamped at 6";
    EXPECT_TRUE(gradcheck(
        [](const std::vector<Tensor>& v) {
          return Fn::batch_norm_relu6(v[0], v[1], v[2], Tensor(), Tensor(), true);
        },
        {x, w, b}))
        << shape_str(shape);
  }
}

TEST(BatchNormRelu6, EvalGradientsAwayFromKinks) {
  Generator gen(26);
  const int64_t C = 3;
  Tensor w = random_input({C}, gen, 1.5f, 3.f), b = random_input({C}, gen, 2.f, 4.f);
  Tensor rm = Tensor::uniform({C}, -0.5f, 0.5f, gen), rv = Tensor::uniform({C}, 0.5f, 2.f, gen);
  // Eval mode is per element: move every x whose output lies within 0.15 of a kink by 0.3 / alpha.
  Tensor x = Tensor::uniform({2, C, 4, 4}, -2.f, 3.f, gen);
  float* xp = x.data();
  int low = 0, high = 0;
  for (int64_t j = 0; j < x.numel(); ++j) {
    const int64_t c = (j / 16) % C;
    const double alpha = w.at({c}) / std::sqrt(rv.at({c}) + 1e-5), beta = b.at({c}) - rm.at({c}) * alpha;
    double y = xp[j] * alpha + beta;
    if (std::fabs(y) < 0.15 || std::fabs(y - 6) < 0.15) xp[j] += static_cast<float>(0.3 / alpha);
    y = xp[j] * alpha + beta;
    ASSERT_GT(std::min(std::fabs(y), std::fabs(y - 6)), 0.1);
    low += y < 0, high += y > 6;
  }
  ASSERT_GT(low, 0);
  ASSERT_GT(high, 0);
  x.set_requires_grad(true);
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& v) { return Fn::batch_norm_relu6(v[0], v[1], v[2], rm, rv, false); }, {x, w, b}));
}

void expect_same(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  ASSERT_EQ(a.shape(), b.shape()) << what;
  const std::vector<float> av = a.to_vector(), bv = b.to_vector();
  float scale = 0;
  for (float v : bv) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < av.size(); ++i) ASSERT_NEAR(av[i], bv[i], 1e-6f * (1 + scale)) << what << " at " << i;
}

TEST(BatchNormRelu6, EqualsBatchNormThenRelu6) {
  // The fused op against the composition it replaces: outputs, every gradient and the running
  // statistics after the call, in training (with and without running stats and affine) and eval.
  // Inputs cover both clamps and the kernels' slab (H*W < 64) and per-plane paths.
  int k = 0;
  for (const Shape& shape : {Shape{4, 5, 3, 3}, Shape{2, 3, 9, 10}})
    for (bool training : {true, false})
      for (bool affine : {true, false})
        for (bool track : {true, false}) {
          if (!training && !track) continue;  // eval needs running statistics
          const std::string tag = shape_str(shape) + (training ? " train" : " eval") + (affine ? "" : " no-affine") +
                                  (track ? "" : " no-running");
          Generator gen(300 + k++);
          const int64_t C = shape[1];
          Tensor x0 = Tensor::uniform(shape, -4.f, 8.f, gen);
          Tensor w0 = Tensor::uniform({C}, 1.f, 4.f, gen), b0 = Tensor::uniform({C}, 1.f, 5.f, gen);
          Tensor rm0 = Tensor::uniform({C}, -1.f, 1.f, gen), rv0 = Tensor::uniform({C}, 0.5f, 2.f, gen);
          Tensor r = Tensor::normal(shape, 0.f, 1.f, gen);
          struct Run {
            Tensor y, x, w, b, rm, rv;
          };
          auto run = [&](bool fused) {
            Run o;
            o.x = x0.clone(), o.w = w0.clone(), o.b = b0.clone(), o.rm = rm0.clone(), o.rv = rv0.clone();
            o.x.set_requires_grad(true), o.w.set_requires_grad(true), o.b.set_requires_grad(true);
            const Tensor w = affine ? o.w : Tensor(), b = affine ? o.b : Tensor();
            const Tensor rm = track ? o.rm : Tensor(), rv = track ? o.rv : Tensor();
            o.y = fused ? Fn::batch_norm_relu6(o.x, w, b, rm, rv, training, 0.1f, 1e-5f)
                        : Fn::relu6(Fn::batch_norm(o.x, w, b, rm, rv, training, 0.1f, 1e-5f));
            sum(o.y * r).backward();
            return o;
          };
          const Run f = run(true), u = run(false);
          int low = 0, high = 0;
          for (float v : u.y.to_vector()) low += v == 0.f, high += v == 6.f;
          EXPECT_GT(low, 0) << tag;
          if (affine) {
            EXPECT_GT(high, 0) << tag;
          }
          expect_same(f.y, u.y, "y " + tag);
          expect_same(f.x.grad(), u.x.grad(), "dx " + tag);
          if (affine) {
            expect_same(f.w.grad(), u.w.grad(), "dweight " + tag);
            expect_same(f.b.grad(), u.b.grad(), "dbias " + tag);
          }
          expect_same(f.rm, u.rm, "running_mean " + tag);
          expect_same(f.rv, u.rv, "running_var " + tag);
          if (training && track) {
            EXPECT_NE(f.rm.to_vector(), rm0.to_vector()) << tag;  // it was updated
          }
        }
}

TEST(BatchNormRelu6, PyTorchGradientAtTheKinks) {
  // Eval mode with running_mean 0 and running_var 1 - eps (float): alpha rounds to exactly 1 and
  // beta is 0, so the BN output equals x and can sit exactly on the kinks.
  Tensor x = Tensor::from_vector({-1.f, 0.f, 3.f, 6.f, 7.f, 0.5f}, {1, 6, 1, 1});
  x.set_requires_grad(true);
  Tensor rm = Tensor::zeros({6}), rv = Tensor::full({6}, 1.f - 1e-5f);
  Tensor y = Fn::batch_norm_relu6(x, Tensor(), Tensor(), rm, rv, false);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{0.f, 0.f, 3.f, 6.f, 6.f, 0.5f}));
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{0.f, 0.f, 1.f, 0.f, 0.f, 1.f}));  // 0 at both kinks
}

TEST(BatchNormRelu6, InferenceRecordsNothingAndBadInputsAreErrors) {
  Generator gen(27);
  Tensor x = Tensor::uniform({2, 3, 4, 4}, -1.f, 1.f, gen);
  Tensor w = random_input({3}, gen), rm = Tensor::zeros({3}), rv = Tensor::ones({3});
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(Fn::batch_norm_relu6(x, w, Tensor(), rm, rv, false).requires_grad());
  }
  EXPECT_TRUE(Fn::batch_norm_relu6(x, w, Tensor(), rm, rv, false).requires_grad());
  EXPECT_THROW(Fn::batch_norm_relu6(x, Tensor::ones({4}), Tensor(), Tensor(), Tensor(), true), Error);
  EXPECT_THROW(Fn::batch_norm_relu6(x, Tensor(), Tensor(), Tensor(), Tensor(), false), Error);
  EXPECT_THROW(Fn::batch_norm_relu6(Tensor::zeros({1, 3, 1, 1}), Tensor(), Tensor(), Tensor(), Tensor(), true), Error);
  try {
    Fn::batch_norm_relu6(Tensor::zeros({2, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch_norm_relu6"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- relu6, pooling, linear, dropout

TEST(ReLU6, GradientsAwayFromKinks) {
  // Values on both sides of both kinks, each at least 0.1 away from 0 and 6 (h = 1e-2).
  std::vector<float> v;
  Generator gen(31);
  for (int i = 0; i < 40; ++i) {
    float u = -2.f + 10.f * gen.uniform();
    if (std::fabs(u) < 0.1f || std::fabs(u - 6.f) < 0.1f) u += 0.3f;
    v.push_back(u);
  }
  Tensor x = Tensor::from_vector(v, {2, 5, 2, 2});
  x.set_requires_grad(true);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return Fn::relu6(in[0]); }, {x}));
}

TEST(ReLU6, ValuesAndPyTorchGradientAtKinks) {
  Tensor x = Tensor::from_vector({-1.f, 0.f, 3.f, 6.f, 7.f}, {5});
  x.set_requires_grad(true);
  Tensor y = Fn::relu6(x);
  EXPECT_EQ(y.to_vector(), (std::vector<float>{0.f, 0.f, 3.f, 6.f, 6.f}));
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{0.f, 0.f, 1.f, 0.f, 0.f}));  // 0 at the kinks
}

TEST(AdaptiveAvgPool2d, ValuesAndGradients) {
  Generator gen(41);
  Tensor x = random_input({2, 3, 4, 5}, gen);
  Tensor y = Fn::adaptive_avg_pool2d(x);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 1, 1}));
  double s = 0;
  for (int64_t i = 0; i < 20; ++i) s += x.at({1, 2, i / 5, i % 5});
  EXPECT_NEAR(y.at({1, 2, 0, 0}), s / 20, 1e-6);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return Fn::adaptive_avg_pool2d(v[0]); }, {x}));
  EXPECT_THROW(Fn::adaptive_avg_pool2d(x, 2), Error);
}

TEST(Linear, ValuesAndGradients) {
  Generator gen(51);
  Tensor x = random_input({4, 6}, gen), w = random_input({3, 6}, gen), b = random_input({3}, gen);
  Tensor y = Fn::linear(x, w, b);
  double want = b.at({2});
  for (int64_t i = 0; i < 6; ++i) want += static_cast<double>(x.at({1, i})) * w.at({2, i});
  EXPECT_NEAR(y.at({1, 2}), want, 1e-5);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return Fn::linear(v[0], v[1], v[2]); }, {x, w, b}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return Fn::linear(v[0], v[1]); }, {x, w}));
  EXPECT_THROW(Fn::linear(x, Tensor::zeros({3, 5})), Error);
}

TEST(Dropout, GradientsWithAFixedMask) {
  Generator gen(61);
  Tensor x = random_input({3, 8}, gen);
  // The same seed on every call: the same mask, so finite differences see one function.
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& v) {
        Generator g(7);
        return Fn::dropout(v[0], 0.3f, true, g);
      },
      {x}));
}

TEST(Dropout, MaskStatisticsAndModes) {
  Generator gen(62);
  Tensor x = Tensor::ones({100, 100});
  Generator g(9);
  std::vector<float> y = Fn::dropout(x, 0.25f, true, g).to_vector();
  int64_t kept = 0;
  for (float v : y) {
    ASSERT_TRUE(v == 0.f || std::fabs(v - 1.f / 0.75f) < 1e-6f) << v;
    kept += v != 0.f;
  }
  EXPECT_NEAR(kept / 10000.0, 0.75, 0.02);
  Generator g2(9);
  EXPECT_EQ(Fn::dropout(x, 0.25f, true, g2).to_vector(), y);  // same seed, same mask
  EXPECT_TRUE(Fn::dropout(x, 0.25f, false, g).same(x));       // eval: identity
  EXPECT_TRUE(Fn::dropout(x, 0.f, true, g).same(x));
  for (float v : Fn::dropout(x, 1.f, true, g).to_vector()) ASSERT_EQ(v, 0.f);
  EXPECT_THROW(Fn::dropout(x, 1.5f, true, g), Error);
}

TEST(Flatten, ShapesAndGradient) {
  Generator gen(71);
  Tensor x = random_input({2, 3, 1, 1}, gen);
  EXPECT_EQ(Fn::flatten(x).shape(), (Shape{2, 3}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& v) { return Fn::flatten(v[0]); }, {x}));
}

// ---------------------------------------------------------------- losses

TEST(MseLoss, ValuesAndGradients) {
  Generator gen(81);
  Tensor a = random_input({3, 4}, gen), b = random_input({3, 4}, gen);
  double s = 0;
  std::vector<float> av = a.to_vector(), bv = b.to_vector();
  for (size_t i = 0; i < av.size(); ++i) s += std::pow(static_cast<double>(av[i]) - bv[i], 2);
  EXPECT_NEAR(Fn::mse_loss(a, b).item(), s / 12, 1e-6);
  EXPECT_NEAR(Fn::mse_loss(a, b, Fn::Reduction::Sum).item(), s, 1e-5);
  for (auto r : {Fn::Reduction::Mean, Fn::Reduction::Sum})
    EXPECT_TRUE(gradcheck([r](const std::vector<Tensor>& v) { return Fn::mse_loss(v[0], v[1], r); }, {a, b}));
  EXPECT_THROW(Fn::mse_loss(a, Tensor::zeros({4, 3})), Error);
}

TEST(BceWithLogits, ValuesAndGradients) {
  Generator gen(91);
  Tensor x = random_input({2, 5}, gen, -4.f, 4.f), t = random_input({2, 5}, gen, 0.f, 1.f);
  std::vector<float> xv = x.to_vector(), tv = t.to_vector();
  double s = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    const double p = 1.0 / (1.0 + std::exp(-static_cast<double>(xv[i])));
    s += -(tv[i] * std::log(p) + (1 - tv[i]) * std::log(1 - p));
  }
  EXPECT_NEAR(Fn::binary_cross_entropy_with_logits(x, t).item(), s / 10, 1e-6);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& v) { return Fn::binary_cross_entropy_with_logits(v[0], v[1]); }, {x, t}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& v) {
        return Fn::binary_cross_entropy_with_logits(v[0], v[1], Fn::Reduction::Sum);
      },
      {x, t}));
}

TEST(BceWithLogits, StableForLargeLogits) {
  Tensor x = Tensor::from_vector({100.f, -100.f, 100.f, -100.f}, {4});
  Tensor t = Tensor::from_vector({1.f, 0.f, 0.f, 1.f}, {4});
  x.set_requires_grad(true);
  Tensor l = Fn::binary_cross_entropy_with_logits(x, t);
  EXPECT_NEAR(l.item(), 50.0, 1e-4);  // (0 + 0 + 100 + 100) / 4
  l.backward();
  std::vector<float> g = x.grad().to_vector();
  EXPECT_NEAR(g[0], 0.f, 1e-7);
  EXPECT_NEAR(g[2], 0.25f, 1e-7);
  EXPECT_NEAR(g[3], -0.25f, 1e-7);
  for (float v : g) EXPECT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace sleepnet
