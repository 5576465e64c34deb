// Tests of optim/lr_scheduler.h and optim/clip_grad.h: hand-computed values, PyTorch's numbers from
// tests/data/optim/optim_golden.json (torch.optim.lr_scheduler, torch.nn.utils.clip_grad_norm_),
// resuming a schedule, and argument checking.
#include <cmath>
#include <fstream>
#include <numbers>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "optim/adam.h"
#include "optim/clip_grad.h"
#include "optim/lr_scheduler.h"
#include "optim/sgd.h"
#include "tensor/tensor.h"

namespace sleepnet::optim {
namespace {

using nlohmann::json;

NamedTensors one_param() {
  Tensor p = Tensor::zeros({3});
  p.set_requires_grad(true);
  return {{"p", p}};
}

json load_golden() {
  const std::string path = std::string(SLEEPNET_TEST_DATA_DIR) + "/optim/optim_golden.json";
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  return json::parse(f);
}

// ---- schedules, by hand ----

TEST(WarmupCosineLR, HandComputedValues) {
  SGD opt(one_param(), {.lr = 0.1});
  // L = 0.1, W = 4, T = 12, s = 0.2, m = 0.01
  WarmupCosineLR sched(opt, {.warmup_steps = 4, .total_steps = 12, .warmup_start_factor = 0.2, .min_lr = 0.01});
  EXPECT_DOUBLE_EQ(opt.lr(), 0.02);  // set at construction: t = 0 -> L * s
  const double expected[] = {
      0.02,                                                      // t = 0
      0.04,                                                      // 0.1 * (0.2 + 0.8 * 1/4)
      0.06, 0.08,                                                //
      0.1,                                                       // t = W: the peak
      0.01 + 0.09 * (1 + std::cos(std::numbers::pi / 8)) / 2,    // t = 5
      0.01 + 0.09 * (1 + std::cos(std::numbers::pi / 4)) / 2,    // t = 6
      0.01 + 0.09 * (1 + std::cos(3 * std::numbers::pi / 8)) / 2,
      0.055,                                                     // t = 8: half way, (L + m) / 2
      0.01 + 0.09 * (1 + std::cos(5 * std::numbers::pi / 8)) / 2,
      0.01 + 0.09 * (1 + std::cos(6 * std::numbers::pi / 8)) / 2,
      0.01 + 0.09 * (1 + std::cos(7 * std::numbers::pi / 8)) / 2,
      0.01,                                                      // t = T
      0.01, 0.01};                                               // after T: min_lr
  for (size_t t = 0; t < std::size(expected); ++t) {
    EXPECT_NEAR(sched.lr_at(static_cast<int64_t>(t)), expected[t], 1e-15) << "t = " << t;
    EXPECT_EQ(sched.last_step(), static_cast<int64_t>(t));
    EXPECT_EQ(opt.lr(), sched.lr_at(static_cast<int64_t>(t))) << "t = " << t;
    sched.step();
  }
}

TEST(WarmupCosineLR, NoWarmupAndZeroStart) {
  Adam opt(one_param(), {.lr = 2e-3});
  WarmupCosineLR cos(opt, {.total_steps = 10});  // W = 0: pure cosine from L to 0
  EXPECT_EQ(cos.base_lr(), 2e-3);
  EXPECT_DOUBLE_EQ(cos.lr_at(0), 2e-3);
  EXPECT_DOUBLE_EQ(cos.lr_at(5), 1e-3);
  EXPECT_NEAR(cos.lr_at(10), 0.0, 1e-18);
  WarmupCosineLR warm(opt, {.warmup_steps = 10, .total_steps = 20, .base_lr = 1.0});  // s = 0: from zero
  EXPECT_EQ(warm.lr_at(0), 0.0);
  EXPECT_DOUBLE_EQ(warm.lr_at(3), 0.3);
  EXPECT_EQ(opt.lr(), 0.0);  // the last scheduler built set the lr
}

TEST(StepLR, HandComputedValues) {
  SGD opt(one_param(), {.lr = 1.0});
  StepLR sched(opt, {.step_size = 3, .gamma = 0.5});
  const double expected[] = {1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125};
  for (size_t t = 0; t < std::size(expected); ++t) {
    EXPECT_EQ(opt.lr(), expected[t]) << "t = " << t;
    sched.step();
  }
  EXPECT_EQ(sched.lr_at(30), std::pow(0.5, 10));
}

TEST(ConstantLR, StaysAtBase) {
  SGD opt(one_param(), {.lr = 0.3});
  ConstantLR sched(opt, 0.7);
  EXPECT_EQ(opt.lr(), 0.7);
  for (int i = 0; i < 5; ++i) sched.step();
  EXPECT_EQ(opt.lr(), 0.7);
  EXPECT_EQ(sched.last_step(), 5);
  ConstantLR from_opt(opt);
  EXPECT_EQ(from_opt.base_lr(), 0.7);  // the optimizer's lr at construction
}

// Resuming = set_step(saved): the same lr as stepping there, whatever the optimizer's lr was.
TEST(LRScheduler, ResumeWithSetStep) {
  SGD a(one_param(), {.lr = 0.1});
  WarmupCosineLR sa(a, {.warmup_steps = 3, .total_steps = 17, .warmup_start_factor = 0.1, .min_lr = 1e-3});
  for (int i = 0; i < 9; ++i) sa.step();

  SGD b(one_param(), {.lr = 0.1});
  WarmupCosineLR sb(b, {.warmup_steps = 3, .total_steps = 17, .warmup_start_factor = 0.1, .min_lr = 1e-3});
  b.set_lr(123.0);  // overwritten by set_step
  sb.set_step(sa.last_step());
  EXPECT_EQ(b.lr(), a.lr());
  EXPECT_EQ(sb.last_lr(), a.lr());
  sa.step();
  sb.step();
  EXPECT_EQ(b.lr(), a.lr());
  EXPECT_THROW(sb.set_step(-1), Error);
}

TEST(LRScheduler, ArgumentChecks) {
  SGD opt(one_param(), {.lr = 0.1});
  EXPECT_THROW(WarmupCosineLR(opt, {.warmup_steps = 5, .total_steps = 5}), Error);
  EXPECT_THROW(WarmupCosineLR(opt, {.warmup_steps = -1, .total_steps = 5}), Error);
  EXPECT_THROW(WarmupCosineLR(opt, {.total_steps = 5, .warmup_start_factor = 1.5}), Error);
  EXPECT_THROW(WarmupCosineLR(opt, {.total_steps = 5, .min_lr = 0.2}), Error);  // above base lr
  EXPECT_THROW(WarmupCosineLR(opt, {.total_steps = 5, .base_lr = -1.0}), Error);
  EXPECT_THROW(StepLR(opt, {.step_size = 0}), Error);
  EXPECT_THROW(StepLR(opt, {.step_size = 2, .gamma = 0.0}), Error);
  EXPECT_EQ(opt.lr(), 0.1);  // failed constructions did not touch the optimizer
}

// ---- schedules, against PyTorch ----

TEST(OptimGolden, SchedulesMatchPyTorch) {
  const json doc = load_golden();
  ASSERT_EQ(doc.at("schedules").size(), 3u);
  for (const json& c : doc.at("schedules")) {
    SCOPED_TRACE(c.dump());
    SGD opt(one_param(), {.lr = c.at("base_lr").get<double>()});
    std::unique_ptr<LRScheduler> sched;
    if (c.at("kind") == "step") {
      sched = std::make_unique<StepLR>(
          opt, StepLROptions{.step_size = c.at("step_size").get<int64_t>(), .gamma = c.at("gamma").get<double>()});
    } else {
      ASSERT_EQ(c.at("kind"), "warmup_cosine");
      sched = std::make_unique<WarmupCosineLR>(
          opt, WarmupCosineOptions{.warmup_steps = c.at("warmup_steps").get<int64_t>(),
                                   .total_steps = c.at("total_steps").get<int64_t>(),
                                   .warmup_start_factor = c.at("warmup_start_factor").get<double>(),
                                   .min_lr = c.at("min_lr").get<double>()});
    }
    const auto lrs = c.at("lrs").get<std::vector<double>>();
    for (size_t t = 0; t < lrs.size(); ++t) {
      // PyTorch updates recursively, we use the closed form: equal to double rounding.
      EXPECT_NEAR(opt.lr(), lrs[t], 1e-12 * lrs[0]) << "t = " << t;
      sched->step();
    }
  }
}

// ---- clip_grad_norm_ ----

TEST(ClipGradNorm, HandComputed) {
  Tensor a = Tensor::zeros({2}), b = Tensor::zeros({1}), none = Tensor::zeros({4});
  for (Tensor* t : {&a, &b, &none}) t->set_requires_grad(true);
  a.set_grad(Tensor::from_vector({3.f, 0.f}, {2}));
  b.set_grad(Tensor::from_vector({-4.f}, {1}));
  // `none` has no gradient: ignored.  total = sqrt(9 + 16) = 5
  const double total = clip_grad_norm_(std::vector<Tensor>{a, b, none}, 1.0);
  EXPECT_EQ(total, 5.0);
  const float coef = static_cast<float>(1.0 / (5.0 + 1e-6));
  EXPECT_EQ(a.grad().to_vector(), (std::vector<float>{3.f * coef, 0.f}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<float>{-4.f * coef}));
  EXPECT_FALSE(none.grad().defined());
  // Now the norm is below the limit: nothing changes (coef clamped to 1).
  const std::vector<float> before = a.grad().to_vector();
  EXPECT_NEAR(clip_grad_norm_(NamedTensors{{"a", a}, {"b", b}}, 2.0), 1.0, 1e-6);
  EXPECT_EQ(a.grad().to_vector(), before);
  EXPECT_NEAR(grad_norm({a, b}), 1.0, 1e-6);
}

TEST(ClipGradNorm, EdgeCases) {
  Tensor p = Tensor::zeros({2, 3});
  p.set_requires_grad(true);
  EXPECT_EQ(clip_grad_norm_(std::vector<Tensor>{p}, 1.0), 0.0);  // no gradients at all
  // A strided gradient is scaled in place through its view.
  const Tensor g = Tensor::from_vector({6.f, 0.f, 0.f, 0.f, 0.f, 8.f}, {3, 2});
  p.set_grad(g.transpose(0, 1));
  EXPECT_EQ(clip_grad_norm_(std::vector<Tensor>{p}, 5.0), 10.0);
  const float coef = static_cast<float>(5.0 / (10.0 + 1e-6));
  EXPECT_EQ(p.grad().to_vector(), (std::vector<float>{6.f * coef, 0.f, 0.f, 0.f, 0.f, 8.f * coef}));
  EXPECT_EQ(g.to_vector()[0], 6.f * coef);  // the underlying tensor changed
  EXPECT_THROW(clip_grad_norm_(std::vector<Tensor>{p}, -1.0), Error);
  // A non-finite norm is returned, not thrown (PyTorch's default).
  p.set_grad(Tensor::from_vector({INFINITY, 1.f, 0.f, 0.f, 0.f, 0.f}, {2, 3}));
  EXPECT_TRUE(std::isinf(clip_grad_norm_(std::vector<Tensor>{p}, 1.0)));
}

TEST(OptimGolden, ClipGradNormMatchesPyTorch) {
  const json doc = load_golden();
  ASSERT_EQ(doc.at("clip").size(), 2u);
  for (const json& c : doc.at("clip")) {
    SCOPED_TRACE(c.at("max_norm").dump());
    std::vector<Tensor> params;
    std::vector<std::string> names;
    for (const auto& [name, p] : doc.at("params").items()) {
      const Shape shape = p.at("shape").get<Shape>();
      Tensor t = Tensor::zeros(shape);
      t.set_requires_grad(true);
      const json& g = c.at("grads").at(name);
      if (!g.is_null()) t.set_grad(Tensor::from_vector(g.get<std::vector<float>>(), shape));
      params.push_back(t);
      names.push_back(name);
    }
    const double total = clip_grad_norm_(params, c.at("max_norm").get<double>());
    EXPECT_NEAR(total, c.at("total_norm").get<double>(), 1e-6 * total);
    for (size_t i = 0; i < params.size(); ++i) {
      if (!c.at("clipped").contains(names[i])) {
        EXPECT_FALSE(params[i].grad().defined()) << names[i];
        continue;
      }
      const auto ref = c.at("clipped").at(names[i]).get<std::vector<float>>();
      const auto ours = params[i].grad().to_vector();
      ASSERT_EQ(ours.size(), ref.size());
      for (size_t j = 0; j < ref.size(); ++j)
        EXPECT_NEAR(ours[j], ref[j], 1e-6 * std::abs(ref[j]) + 1e-9) << names[i] << "[" << j << "]";
    }
  }
}

}  // namespace
}  // namespace sleepnet::optim
