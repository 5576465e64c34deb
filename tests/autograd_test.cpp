// autograd_test.cpp: every differentiable op of autograd/ops.h through the numerical gradient
// checker, and the engine's behaviour (accumulation, retain_graph, no_grad, detach, errors).
#include <gtest/gtest.h>

#include "autograd/ops.h"
#include "gradcheck.h"
#include "tensor/ops.h"

using namespace sleepnet;
using sleepnet::testing::gradcheck;
using sleepnet::testing::random_input;

namespace {
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
Generator& gen() {
  static Generator g(2024);
  return g;
}
}  // namespace

TEST(GradCheck, ElementwiseBinaryWithBroadcasting) {
  Tensor a = random_input({3, 4}, gen()), b = random_input({4}, gen()), c = random_input({3, 1}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0] + x[1]; }, {a, b}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0] - x[1]; }, {a, c}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0] * x[1]; }, {a, b}));
  Tensor pos = random_input({4}, gen(), 0.5f, 2.f);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0] / x[1]; }, {a, pos}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0] * 3.f - x[1] / 2.f + 1.f; }, {a, c}));
}

TEST(GradCheck, ElementwiseUnary) {
  Tensor a = random_input({2, 5}, gen());
  Tensor pos = random_input({2, 5}, gen(), 0.5f, 2.f);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return -x[0]; }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return exp(x[0]); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return log(x[0]); }, {pos}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return sqrt(x[0]); }, {pos}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return pow(x[0], 3.f); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return pow(x[0], -1.5f); }, {pos}));
  Tensor e = random_input({5}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return pow(x[0], x[1]); }, {pos, e}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return sigmoid(x[0]); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return tanh(x[0]); }, {a}));
}

TEST(GradCheck, KinkedOpsAwayFromKinks) {
  // values at least 0.05 from every kink, so the finite difference (h = 0.01) never straddles one
  Tensor a = Tensor::from_vector({-1.5f, -0.3f, 0.2f, 0.7f, 1.3f, 2.2f, -0.8f, 0.45f}, {8});
  a.set_requires_grad(true);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return clamp(x[0], -1.f, 1.f); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return abs(x[0]); }, {a}));
  Tensor b = Tensor::from_vector({0.1f, 0.f, 0.5f, 0.9f, 1.f, 2.f, -1.f, 0.2f}, {8});
  b.set_requires_grad(true);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return maximum(x[0], x[1]); }, {a, b}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return minimum(x[0], x[1]); }, {a, b}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& x) { return where(gt(x[0], Tensor::scalar(0.f)), x[0] * x[1], x[1]); }, {a, b}));
  Tensor m = random_input({3, 4}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return max(x[0], {1}); }, {m}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return max(x[0]); }, {m}));
}

TEST(GradCheck, Reductions) {
  Tensor a = random_input({2, 3, 4}, gen());
  for (std::vector<int64_t> dims : {std::vector<int64_t>{}, {0}, {1, 2}, {-1}}) {
    for (bool keep : {false, true}) {
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return sum(x[0], dims, keep); }, {a}));
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return mean(x[0], dims, keep); }, {a}));
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return var(x[0], dims, 1, keep); }, {a}));
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& x) { return var(x[0], dims, 0, keep); }, {a}));
    }
  }
}

TEST(GradCheck, Matmul) {
  Tensor a = random_input({3, 4}, gen()), b = random_input({4, 2}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, {a, b}));
  Tensor ba = random_input({2, 3, 4}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, {ba, b}));
  Tensor bb = random_input({2, 4, 5}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, {ba, bb}));
  Tensor v = random_input({4}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, {a, v}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[1], x[0]); }, {b, v}));
  Tensor w = random_input({4}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); }, {v, w}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return matmul(x[0].transpose(0, 1), x[0]); }, {a}));
}

TEST(GradCheck, ViewsAndCopies) {
  Tensor a = random_input({2, 3, 4}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0].view({6, 4}); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0].reshape({4, -1}); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0].permute({2, 0, 1}); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0].transpose(0, 2).reshape({-1}); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0].narrow(2, 1, 2); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0].select(1, 2); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0].unsqueeze(1).squeeze(1); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0].flatten(1); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0].permute({1, 0, 2}).contiguous(); }, {a}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0].clone() * x[0]; }, {a}));
  Tensor r = random_input({3, 1}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return x[0].expand({2, 3, 5}); }, {r}));
  Tensor b = random_input({2, 2, 4}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return cat({x[0], x[1]}, 1); }, {a, b}));
  Tensor c = random_input({2, 3, 4}, gen());
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return stack({x[0], x[1]}, 2); }, {a, c}));
}

TEST(GradCheck, CheckerCatchesWrongGradients) {
  // An op whose backward is deliberately wrong must fail the checker: the checker itself can fail.
  auto wrong_sign = [](const std::vector<Tensor>& x) {
    Tensor out = x[0].detach() * 2.f;
    return record("wrong", out, {x[0]}, [](const Tensor& g) { return grads{g * -2.f}; });
  };
  auto missing_term = [](const std::vector<Tensor>& x) {  // d(x^2)/dx claimed to be x
    Tensor out = x[0].detach() * x[0].detach();
    return record("wrong", out, {x[0]}, [a = x[0].detach()](const Tensor& g) { return grads{g * a}; });
  };
  Tensor a = random_input({5}, gen());
  EXPECT_FALSE(gradcheck(wrong_sign, {a}));
  EXPECT_FALSE(gradcheck(missing_term, {a}));
}

TEST(Autograd, AccumulatesWhereATensorIsUsedTwice) {
  Tensor x = Tensor::from_vector({2.f, 3.f}, {2}).set_requires_grad();
  Tensor y = sum(x * x + x);  // dy/dx = 2x + 1
  y.backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{5.f, 7.f}));
  // a second backward on a new graph accumulates into .grad
  sum(x * 2.f).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{7.f, 9.f}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, RetainGraph) {
  Tensor x = Tensor::from_vector({1.f, 2.f}, {2}).set_requires_grad();
  Tensor y = sum(exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  EXPECT_NEAR(x.grad().to_vector()[1], 2 * std::exp(2.f), 1e-4);
  try {
    y.backward();
    FAIL() << "second backward through a freed graph must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("retain_graph"), std::string::npos);
  }
}

TEST(Autograd, NoGradAndDetach) {
  Tensor x = Tensor::ones({3}).set_requires_grad();
  {
    NoGradGuard guard;
    Tensor y = x * 2.f;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(grad_enabled());
  }
  EXPECT_TRUE(grad_enabled());
  Tensor d = (x * 2.f).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  Tensor y = sum(x * d);  // d is a constant
  y.backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{2.f, 2.f, 2.f}));
  EXPECT_THROW(sum(d).backward(), Error);  // nothing requires grad
}

TEST(Autograd, GradientOfNonScalarNeedsExplicitGrad) {
  Tensor x = Tensor::ones({2, 2}).set_requires_grad();
  Tensor y = x * 3.f;
  EXPECT_THROW(y.backward(), Error);
  EXPECT_THROW(y.backward(Tensor::ones({3})), Error);
  y.backward(Tensor::full({2, 2}, 2.f));
  EXPECT_EQ(x.grad().to_vector(), std::vector<float>(4, 6.f));
  EXPECT_THROW((x * 2.f).set_requires_grad(false), Error);  // not a leaf
}

TEST(Autograd, DeepChainDoesNotOverflowTheStack) {
  Tensor x = Tensor::ones({1}).set_requires_grad();
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = y * 1.0f;
  sum(y).backward();
  EXPECT_FLOAT_EQ(x.grad().item(), 1.f);
}

TEST(Autograd, ViewOfALeafDoesNotChangeTheLeaf) {
  Tensor x = Tensor::arange(6).reshape({2, 3}).detach().set_requires_grad();
  Tensor c = x.contiguous();  // already contiguous: still a distinct node
  EXPECT_TRUE(x.is_leaf());
  sum(c * c).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<float>{0, 2, 4, 6, 8, 10}));
}
