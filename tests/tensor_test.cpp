// tensor_test.cpp: creation, views, broadcasting, reductions, matmul, seeding and error paths of
// the tensor library (no gradients here; see autograd_test.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/ops.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

using namespace sleepnet;

namespace {
Tensor T(std::vector<float> v, Shape s) { return Tensor::from_vector(v, s); }
void expect_values(const Tensor& t, const std::vector<float>& v, float tol = 1e-6f) {
  auto got = t.to_vector();
  ASSERT_EQ(got.size(), v.size());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(got[i], v[i], tol) << "at " << i;
}
}  // namespace

TEST(Tensor, CreationAndMetadata) {
  Tensor z = Tensor::zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.strides(), (Shape{3, 1}));
  EXPECT_EQ(z.numel(), 6);
  EXPECT_TRUE(z.is_contiguous());
  expect_values(Tensor::full({2}, 2.5f), {2.5f, 2.5f});
  expect_values(Tensor::arange(4), {0, 1, 2, 3});
  expect_values(Tensor::arange(1.f, 2.f, 0.25f), {1, 1.25f, 1.5f, 1.75f});
  EXPECT_EQ(Tensor::scalar(3.f).dim(), 0);
  EXPECT_FLOAT_EQ(Tensor::scalar(3.f).item(), 3.f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(Tensor::empty({7}).data()) % 64, 0u);
  EXPECT_EQ(z.size(-1), 3);
}

TEST(Tensor, SeededGeneratorIsReproducible) {
  Generator a(42), b(42), c(43);
  Tensor x = Tensor::normal({1000}, 0.f, 1.f, a), y = Tensor::normal({1000}, 0.f, 1.f, b);
  Tensor z = Tensor::normal({1000}, 0.f, 1.f, c);
  EXPECT_EQ(x.to_vector(), y.to_vector());
  EXPECT_NE(x.to_vector(), z.to_vector());
  // moments are those of N(0, 1)
  EXPECT_NEAR(raw::mean(x).item(), 0.f, 0.1f);
  EXPECT_NEAR(raw::var(x).item(), 1.f, 0.1f);
  Tensor u = Tensor::uniform({1000}, 2.f, 3.f, a);
  EXPECT_GE(raw::amax(-u).item(), -3.f);
  EXPECT_LE(raw::amax(u).item(), 3.f);
  // state save/restore continues the same stream
  Generator g(7);
  g.normal();
  auto st = g.state();
  float n1 = g.normal(), n2 = g.normal();
  Generator h(0);
  h.set_state(st);
  EXPECT_EQ(h.normal(), n1);
  EXPECT_EQ(h.normal(), n2);
}

TEST(Tensor, WriteThroughViewIsSeenByBase) {
  Tensor base = Tensor::arange(12).reshape({3, 4});
  Tensor row = base.select(0, 1);  // [4, 5, 6, 7]
  row.fill_(-1.f);
  expect_values(base, {0, 1, 2, 3, -1, -1, -1, -1, 8, 9, 10, 11});
  Tensor col = base.narrow(1, 2, 1);  // column 2
  EXPECT_FALSE(col.is_contiguous());
  col.fill_(5.f);
  EXPECT_FLOAT_EQ(base.at({0, 2}), 5.f);
  EXPECT_FLOAT_EQ(base.at({2, 2}), 5.f);
  Tensor t = base.transpose(0, 1);
  EXPECT_EQ(t.shape(), (Shape{4, 3}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.storage(), base.storage());
  EXPECT_FLOAT_EQ(t.at({3, 0}), 3.f);
  Tensor c = t.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage(), base.storage());
  expect_values(c, {0, -1, 8, 1, -1, 9, 5, 5, 5, 3, -1, 11});
  Tensor cl = base.clone();
  cl.fill_(0.f);
  EXPECT_FLOAT_EQ(base.at({0, 1}), 1.f);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor a = Tensor::arange(24).reshape({2, 3, 4});
  Tensor p = a.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_FLOAT_EQ(p.at({1, 1, 2}), a.at({1, 2, 1}));
  Tensor u = a.unsqueeze(1);
  EXPECT_EQ(u.shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(u.squeeze(1).shape(), a.shape());
  EXPECT_EQ(Tensor::zeros({1, 3, 1}).squeeze().shape(), (Shape{3}));
  Tensor e = Tensor::arange(3).reshape({3, 1}).expand({3, 4});
  EXPECT_EQ(e.strides(), (Shape{1, 0}));
  expect_values(e, {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2});
  // view of a permuted tensor: merging dims that are contiguous together is allowed
  Tensor v = a.permute({1, 0, 2});   // [3, 2, 4], last dim contiguous
  EXPECT_EQ(v.view({3, 2, 2, 2}).storage(), a.storage());
  EXPECT_THROW(v.view({6, 4}), Error);  // dims 0 and 1 are not contiguous together
  Tensor r = v.reshape({6, 4});          // reshape copies instead
  EXPECT_FLOAT_EQ(r.at({1, 0}), a.at({1, 0, 0}));
  EXPECT_EQ(a.view({-1, 4}).shape(), (Shape{6, 4}));
  EXPECT_EQ(a.flatten(1).shape(), (Shape{2, 12}));
  Tensor n = a.narrow(2, 1, 2).narrow(1, 1, 1);
  EXPECT_EQ(n.shape(), (Shape{2, 1, 2}));
  expect_values(n, {5, 6, 17, 18});
}

TEST(Tensor, BroadcastingArithmetic) {
  Tensor a = T({1, 2, 3}, {3});
  Tensor b = T({10, 20}, {2, 1});
  expect_values(a + b, {11, 12, 13, 21, 22, 23});
  expect_values(b - a, {9, 8, 7, 19, 18, 17});
  expect_values(a * b, {10, 20, 30, 20, 40, 60});
  expect_values(b / a, {10, 5, 10.f / 3, 20, 10, 20.f / 3}, 1e-5f);
  expect_values(a * 2.f, {2, 4, 6});
  expect_values(-a, {-1, -2, -3});
  expect_values(pow(a, 2.f), {1, 4, 9});
  expect_values(clamp(T({-1, 0.5f, 7}, {3}), 0.f, 6.f), {0, 0.5f, 6});
  expect_values(exp(T({0, 1}, {2})), {1, std::exp(1.f)}, 1e-6f);
  expect_values(log(T({1, std::exp(2.f)}, {2})), {0, 2}, 1e-6f);
  expect_values(sqrt(T({4, 9}, {2})), {2, 3});
  expect_values(gt(a, T({2}, {1})), {0, 0, 1});
  expect_values(le(a, T({2}, {1})), {1, 1, 0});
  expect_values(eq(a, T({2}, {1})), {0, 1, 0});
  expect_values(where(gt(a, Tensor::scalar(1.5f)), a, Tensor::scalar(0.f)), {0, 2, 3});
  // broadcasting works through non-contiguous operands too
  Tensor m = Tensor::arange(6).reshape({2, 3}).transpose(0, 1);  // [3, 2]
  expect_values(m + T({100, 200}, {2}), {100, 203, 101, 204, 102, 205});
  EXPECT_THROW(a + T({1, 2}, {2}), Error);
}

TEST(Tensor, Reductions) {
  Tensor a = Tensor::arange(24).reshape({2, 3, 4});
  EXPECT_FLOAT_EQ(raw::sum(a).item(), 276.f);
  expect_values(sum(a, {0, 2}), {60, 92, 124});
  EXPECT_EQ(sum(a, {1}, true).shape(), (Shape{2, 1, 4}));
  expect_values(mean(a, {-1}), {1.5f, 5.5f, 9.5f, 13.5f, 17.5f, 21.5f});
  expect_values(max(a, {1}), {8, 9, 10, 11, 20, 21, 22, 23});
  expect_values(argmax(T({1, 5, 2, 7, 0, 3}, {2, 3}), 1), {1, 0});
  expect_values(var(T({1, 2, 3, 4}, {4})), {5.f / 3});
  expect_values(var(T({1, 2, 3, 4}, {4}), {}, 0), {1.25f});
  // reductions over a non-contiguous view
  expect_values(sum(a.permute({2, 1, 0}), {2}), sum(a, {0}).transpose(0, 1).contiguous().to_vector());
  EXPECT_THROW(sum(a, {3}), Error);
  EXPECT_THROW(sum(a, {1, 1}), Error);
  EXPECT_THROW(max(Tensor::zeros({0})), Error);
  EXPECT_EQ(raw::sum_to(Tensor::ones({2, 3, 4}), {3, 1}).to_vector(), std::vector<float>(3, 8.f));
}

TEST(Tensor, Matmul) {
  Tensor a = T({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = T({1, 0, 0, 1, 1, 1}, {3, 2});
  expect_values(matmul(a, b), {4, 5, 10, 11});
  expect_values(matmul(a, T({1, 1, 1}, {3})), {6, 15});
  expect_values(matmul(T({1, 1}, {2}), a), {5, 7, 9});
  EXPECT_FLOAT_EQ(matmul(T({1, 2}, {2}), T({3, 4}, {2})).item(), 11.f);
  // batched with broadcasting of the batch dims, and a transposed operand
  Tensor ba = Tensor::arange(12).reshape({2, 2, 3});
  Tensor out = matmul(ba, b);
  EXPECT_EQ(out.shape(), (Shape{2, 2, 2}));
  expect_values(out.select(0, 1), matmul(ba.select(0, 1), b).to_vector());
  expect_values(matmul(a, a.transpose(0, 1)), {14, 32, 32, 77});
  EXPECT_THROW(matmul(a, a), Error);
  EXPECT_THROW(matmul(Tensor::scalar(1.f), a), Error);
}

TEST(Tensor, CatAndStack) {
  Tensor a = T({1, 2}, {1, 2}), b = T({3, 4, 5, 6}, {2, 2});
  expect_values(cat({a, b}, 0), {1, 2, 3, 4, 5, 6});
  EXPECT_EQ(stack({a, a}, 0).shape(), (Shape{2, 1, 2}));
  EXPECT_THROW(cat({a, T({1, 2, 3}, {1, 3})}, 0), Error);
}

TEST(Tensor, ErrorsNameTheOpAndShapes) {
  Tensor a = Tensor::zeros({2, 3});
  try {
    a.view({4, 2});
    FAIL() << "no throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("view"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 3]"), std::string::npos) << m;
  }
  try {
    a + Tensor::zeros({4});
    FAIL() << "no throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("add"), std::string::npos) << m;
    EXPECT_NE(m.find("[4]"), std::string::npos) << m;
  }
  EXPECT_THROW(a.permute({0, 0}), Error);
  EXPECT_THROW(a.narrow(1, 2, 2), Error);
  EXPECT_THROW(a.squeeze(0), Error);
  EXPECT_THROW(a.transpose(0, 2), Error);
  EXPECT_THROW(a.expand({3, 3}), Error);
  EXPECT_THROW(a.at({2, 0}), Error);
  EXPECT_THROW(a.item(), Error);
  EXPECT_THROW(Tensor::from_vector({1, 2}, {3}), Error);
  EXPECT_THROW(Tensor::zeros({-1}), Error);
  EXPECT_THROW(Tensor().shape(), Error);
  EXPECT_THROW(a.reshape({-1, -1}), Error);
}

TEST(Tensor, Printing) {
  std::string s = Tensor::arange(4).reshape({2, 2}).str();
  EXPECT_NE(s.find("[[0, 1],"), std::string::npos) << s;
  EXPECT_NE(s.find("shape=[2, 2]"), std::string::npos) << s;
  std::string big = Tensor::arange(100).str();
  EXPECT_NE(big.find("..."), std::string::npos) << big;
  EXPECT_LT(big.size(), 100u);
}
