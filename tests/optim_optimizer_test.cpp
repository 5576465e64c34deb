// Tests of optim/: Adam, AdamW and SGD against a scalar double-precision re-implementation and
// against PyTorch's numbers (tests/data/optim/optim_golden.json, made by
// tests/optim/make_optim_golden.py), skipping of parameters without a gradient, zero_grad, the
// strict state dict and bit-exact resumption, make_optimizer and argument checking.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "optim/adam.h"
#include "optim/lr_scheduler.h"
#include "optim/optimizer.h"
#include "optim/sgd.h"
#include "tensor/tensor.h"

namespace sleepnet::optim {
namespace {

using nlohmann::json;

// ---- helpers ----

// Fresh leaf parameters with requires_grad, values from the generator.
NamedTensors make_params(const std::vector<std::pair<std::string, Shape>>& shapes, Generator& gen) {
  NamedTensors out;
  for (const auto& [name, shape] : shapes) {
    Tensor p = Tensor::normal(shape, 0.f, 1.f, gen);
    p.set_requires_grad(true);
    out.emplace_back(name, p);
  }
  return out;
}

NamedTensors clone_params(const NamedTensors& params) {
  NamedTensors out;
  for (const auto& [name, p] : params) {
    Tensor c = p.clone().detach();
    c.set_requires_grad(true);
    out.emplace_back(name, c);
  }
  return out;
}

// A fixed gradient sequence: grads[step][param], undefined = "no gradient at this step".
using GradSeq = std::vector<std::vector<Tensor>>;

GradSeq make_grads(const NamedTensors& params, int steps, uint64_t seed, bool with_gaps) {
  Generator gen(seed);
  GradSeq out(steps);
  for (int k = 0; k < steps; ++k)
    for (size_t i = 0; i < params.size(); ++i) {
      // The last parameter gets no gradient on odd steps (per-parameter step counts then differ).
      if (with_gaps && i + 1 == params.size() && k % 2 == 1) {
        out[k].push_back(Tensor());
        continue;
      }
      out[k].push_back(Tensor::normal(params[i].second.shape(), 0.f, 0.5f + static_cast<float>(k), gen));
    }
  return out;
}

void set_grads(NamedTensors& params, const std::vector<Tensor>& grads) {
  for (size_t i = 0; i < params.size(); ++i) {
    if (grads[i].defined())
      params[i].second.set_grad(grads[i].clone());
    else
      params[i].second.zero_grad();
  }
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const auto va = a.to_vector(), vb = b.to_vector();
  return std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)) == 0;
}

// ---- scalar double-precision references (written from PyTorch's documented algorithms) ----

struct RefAdam {
  double lr, beta1, beta2, eps, wd;
  bool decoupled;
  std::vector<std::vector<double>> m, v;
  std::vector<int64_t> t;

  void step(std::vector<std::vector<double>>& p, const std::vector<Tensor>& grads) {
    if (m.empty()) {
      for (auto& x : p) {
        m.emplace_back(x.size(), 0.0);
        v.emplace_back(x.size(), 0.0);
      }
      t.assign(p.size(), 0);
    }
    for (size_t i = 0; i < p.size(); ++i) {
      if (!grads[i].defined()) continue;
      const auto g32 = grads[i].to_vector();
      t[i] += 1;
      const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(t[i]));
      const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(t[i]));
      for (size_t j = 0; j < p[i].size(); ++j) {
        double g = g32[j];
        if (decoupled)
          p[i][j] *= 1.0 - lr * wd;
        else
          g += wd * p[i][j];
        m[i][j] = beta1 * m[i][j] + (1.0 - beta1) * g;
        v[i][j] = beta2 * v[i][j] + (1.0 - beta2) * g * g;
        const double mhat = m[i][j] / bc1, vhat = v[i][j] / bc2;
        p[i][j] -= lr * mhat / (std::sqrt(vhat) + eps);  // the same as PyTorch's arrangement in exact arithmetic
      }
    }
  }
};

struct RefSGD {
  double lr, momentum, dampening, wd;
  bool nesterov;
  std::vector<std::vector<double>> buf;
  std::vector<bool> has_buf;

  void step(std::vector<std::vector<double>>& p, const std::vector<Tensor>& grads) {
    if (buf.empty()) {
      for (auto& x : p) buf.emplace_back(x.size(), 0.0);
      has_buf.assign(p.size(), false);
    }
    for (size_t i = 0; i < p.size(); ++i) {
      if (!grads[i].defined()) continue;
      const auto g32 = grads[i].to_vector();
      for (size_t j = 0; j < p[i].size(); ++j) {
        double g = g32[j] + wd * p[i][j];
        if (momentum != 0.0) {
          buf[i][j] = has_buf[i] ? momentum * buf[i][j] + (1.0 - dampening) * g : g;
          g = nesterov ? g + momentum * buf[i][j] : buf[i][j];
        }
        p[i][j] -= lr * g;
      }
      has_buf[i] = true;
    }
  }
};

std::vector<std::vector<double>> to_double(const NamedTensors& params) {
  std::vector<std::vector<double>> out;
  for (const auto& [name, p] : params) {
    const auto v = p.to_vector();
    out.emplace_back(v.begin(), v.end());
  }
  return out;
}

// max over elements of |ours - ref| / (rel * |ref| + abs)  (<= 1 passes)
double worst_ratio(const Tensor& ours, const std::vector<double>& ref, double rel, double abs) {
  const auto o = ours.to_vector();
  EXPECT_EQ(o.size(), ref.size());
  double worst = 0.0;
  for (size_t j = 0; j < o.size() && j < ref.size(); ++j)
    worst = std::max(worst, std::abs(static_cast<double>(o[j]) - ref[j]) / (rel * std::abs(ref[j]) + abs));
  return worst;
}

const std::vector<std::pair<std::string, Shape>> kShapes = {
    {"conv.weight", {4, 3, 3, 3}}, {"conv.bias", {4}}, {"fc.weight", {2, 6}}, {"scale", {}}, {"late", {5}}};

// ---- against the double reference ----

TEST(Adam, MatchesDoubleReference) {
  struct Case {
    const char* what;
    double lr, beta1, beta2, eps, wd;
    bool decoupled;
  };
  const Case cases[] = {{"adam", 1e-2, 0.9, 0.999, 1e-8, 0.0, false},
                        {"adam+wd", 3e-2, 0.8, 0.99, 1e-6, 0.1, false},
                        {"adamw", 1e-2, 0.9, 0.999, 1e-8, 0.1, true},
                        {"adamw big lr", 0.5, 0.5, 0.9, 1e-3, 0.5, true}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    Generator gen(7);
    NamedTensors params = make_params(kShapes, gen);
    const GradSeq grads = make_grads(params, 6, 99, /*with_gaps=*/true);
    auto ref_p = to_double(params);
    RefAdam ref{c.lr, c.beta1, c.beta2, c.eps, c.wd, c.decoupled, {}, {}, {}};
    std::unique_ptr<Optimizer> opt;
    if (c.decoupled)
      opt = std::make_unique<AdamW>(params, AdamWOptions{.lr = c.lr, .beta1 = c.beta1, .beta2 = c.beta2, .eps = c.eps,
                                                         .weight_decay = c.wd});
    else
      opt = std::make_unique<Adam>(params, AdamOptions{.lr = c.lr, .beta1 = c.beta1, .beta2 = c.beta2, .eps = c.eps,
                                                       .weight_decay = c.wd});
    for (size_t k = 0; k < grads.size(); ++k) {
      set_grads(params, grads[k]);
      opt->step();
      ref.step(ref_p, grads[k]);
      for (size_t i = 0; i < params.size(); ++i)
        EXPECT_LE(worst_ratio(params[i].second, ref_p[i], 1e-6, 1e-6), 1.0) << params[i].first << " step " << k;
    }
    // The state agrees too (exp_avg, exp_avg_sq; step counts differ for "late").
    const NamedTensors st = opt->state_dict();
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_EQ(opt->step_count(i), ref.t[i]);
      EXPECT_LE(worst_ratio(st[3 * i + 1].second, ref.m[i], 1e-5, 1e-6), 1.0) << st[3 * i + 1].first;
      EXPECT_LE(worst_ratio(st[3 * i + 2].second, ref.v[i], 1e-5, 1e-7), 1.0) << st[3 * i + 2].first;
    }
  }
}

TEST(SGD, MatchesDoubleReference) {
  struct Case {
    const char* what;
    SGDOptions o;
  };
  const Case cases[] = {{"plain", {.lr = 0.1}},
                        {"wd", {.lr = 0.1, .weight_decay = 0.05}},
                        {"momentum+dampening", {.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.01}},
                        {"nesterov", {.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    Generator gen(8);
    NamedTensors params = make_params(kShapes, gen);
    const GradSeq grads = make_grads(params, 6, 98, /*with_gaps=*/true);
    auto ref_p = to_double(params);
    RefSGD ref{c.o.lr, c.o.momentum, c.o.dampening, c.o.weight_decay, c.o.nesterov, {}, {}};
    SGD opt(params, c.o);
    for (size_t k = 0; k < grads.size(); ++k) {
      set_grads(params, grads[k]);
      opt.step();
      ref.step(ref_p, grads[k]);
      for (size_t i = 0; i < params.size(); ++i)
        EXPECT_LE(worst_ratio(params[i].second, ref_p[i], 1e-6, 1e-6), 1.0) << params[i].first << " step " << k;
    }
    if (c.o.momentum != 0.0) {
      const NamedTensors st = opt.state_dict();
      ASSERT_EQ(st.size(), 2 * params.size());
      for (size_t i = 0; i < params.size(); ++i)
        EXPECT_LE(worst_ratio(st[2 * i + 1].second, ref.buf[i], 1e-5, 1e-6), 1.0) << st[2 * i + 1].first;
    } else {
      EXPECT_EQ(opt.state_dict().size(), params.size());  // only the step counts
    }
  }
}

// ---- against PyTorch ----

json load_golden() {
  const std::string path = std::string(SLEEPNET_TEST_DATA_DIR) + "/optim/optim_golden.json";
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  return json::parse(f);
}

Tensor from_json(const json& values, const Shape& shape) {
  return Tensor::from_vector(values.get<std::vector<float>>(), shape);
}

TEST(OptimGolden, OptimizersMatchPyTorch) {
  const json doc = load_golden();
  std::vector<std::string> names;
  std::map<std::string, Shape> shapes;
  for (const auto& [name, p] : doc.at("params").items()) {
    names.push_back(name);
    shapes[name] = p.at("shape").get<Shape>();
  }
  ASSERT_GE(doc.at("optimizers").size(), 7u);
  for (const json& c : doc.at("optimizers")) {
    SCOPED_TRACE(c.at("config").dump());
    NamedTensors params;
    for (const auto& [name, p] : doc.at("params").items()) {
      Tensor t = from_json(p.at("init"), shapes[name]);
      t.set_requires_grad(true);
      params.emplace_back(name, t);
    }
    std::unique_ptr<Optimizer> opt = make_optimizer(c.at("config"), params);
    std::unique_ptr<LRScheduler> sched;
    if (c.contains("schedule")) {
      const json& s = c.at("schedule");
      ASSERT_EQ(s.at("kind"), "warmup_cosine");
      sched = std::make_unique<WarmupCosineLR>(
          *opt, WarmupCosineOptions{.warmup_steps = s.at("warmup_steps").get<int64_t>(),
                                    .total_steps = s.at("total_steps").get<int64_t>(),
                                    .warmup_start_factor = s.at("warmup_start_factor").get<double>(),
                                    .min_lr = s.at("min_lr").get<double>()});
    }
    const json& after = c.at("params_after");
    double worst = 0.0;
    ASSERT_EQ(after.size(), doc.at("grads").size());
    for (size_t k = 0; k < after.size(); ++k) {
      if (sched) {
        EXPECT_NEAR(opt->lr(), c.at("lrs")[k].get<double>(), 1e-15) << "lr at step " << k;
      }
      opt->zero_grad();
      for (auto& [name, p] : params) {
        const json& g = doc.at("grads")[k].at(name);
        if (!g.is_null()) p.set_grad(from_json(g, shapes[name]));
      }
      opt->step();
      if (sched) sched->step();
      for (const auto& [name, p] : params) {
        const auto ref = after[k].at(name).get<std::vector<double>>();
        const double r = worst_ratio(p, ref, 1e-6, 1e-7);
        EXPECT_LE(r, 1.0) << name << " after step " << k + 1;
        worst = std::max(worst, r);
      }
    }
    // The largest error as a fraction of the tolerance, so that drift shows before it fails.
    std::printf("%-60s worst error %.3f of tolerance\n", c.at("config").dump().c_str(), worst);
    // Every state entry PyTorch has, we have with the same value ("step" exactly).
    std::map<std::string, Tensor> ours;
    for (const auto& [name, t] : opt->state_dict()) ours[name] = t;
    for (const auto& [key, ref] : c.at("state").items()) {
      ASSERT_TRUE(ours.count(key)) << key;
      if (key.ends_with(".step")) {
        EXPECT_EQ(ours[key].item(), ref.get<float>()) << key;
      } else {
        EXPECT_LE(worst_ratio(ours[key], ref.get<std::vector<double>>(), 1e-6, 1e-9), 1.0) << key;
      }
    }
  }
}

// ---- behaviour ----

TEST(Optimizer, SkipsParametersWithoutGradient) {
  Generator gen(1);
  NamedTensors params = make_params({{"a", {3}}, {"b", {2}}}, gen);
  const Tensor b0 = params[1].second.clone();
  for (int kind = 0; kind < 3; ++kind) {
    std::unique_ptr<Optimizer> opt;
    if (kind == 0) opt = std::make_unique<Adam>(params, AdamOptions{.weight_decay = 0.1});
    if (kind == 1) opt = std::make_unique<AdamW>(params);
    if (kind == 2) opt = std::make_unique<SGD>(params, SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1});
    params[0].second.set_grad(Tensor::ones({3}));
    params[1].second.zero_grad();
    opt->step();
    opt->step();
    EXPECT_EQ(opt->step_count(0), 2);
    EXPECT_EQ(opt->step_count(1), 0);
    EXPECT_TRUE(bit_equal(params[1].second, b0)) << opt->name() << ": weight decay must not touch a skipped parameter";
    for (const auto& [name, t] : opt->state_dict())
      if (name.starts_with("b.") && name != "b.step") {
        EXPECT_TRUE(bit_equal(t, Tensor::zeros({2}))) << name;
      }
  }
}

TEST(Optimizer, ZeroGradSetsGradientsToNone) {
  Generator gen(2);
  NamedTensors params = make_params({{"a", {3}}, {"b", {2}}}, gen);
  Adam opt(params);
  (sum(params[0].second * params[0].second) + sum(params[1].second)).backward();
  EXPECT_TRUE(params[0].second.grad().defined());
  EXPECT_TRUE(params[1].second.grad().defined());
  opt.zero_grad();
  EXPECT_FALSE(params[0].second.grad().defined());
  EXPECT_FALSE(params[1].second.grad().defined());
}

TEST(Optimizer, LearningRate) {
  Generator gen(3);
  NamedTensors params = make_params({{"a", {3}}}, gen);
  Adam opt(params, {.lr = 0.25});
  EXPECT_EQ(opt.lr(), 0.25);
  opt.set_lr(0.125);
  EXPECT_EQ(opt.lr(), 0.125);
  EXPECT_EQ(opt.config().at("lr").get<double>(), 0.125);
  EXPECT_THROW(opt.set_lr(-1.0), Error);
  EXPECT_THROW(opt.set_lr(std::nan("")), Error);
  // A zero lr leaves Adam's parameters unchanged (but advances the state).
  opt.set_lr(0.0);
  const Tensor before = params[0].second.clone();
  params[0].second.set_grad(Tensor::ones({3}));
  opt.step();
  EXPECT_TRUE(bit_equal(params[0].second, before));
  EXPECT_EQ(opt.step_count(0), 1);
}

TEST(Optimizer, NonContiguousGradient) {
  Generator gen(4);
  NamedTensors p1 = make_params({{"w", {3, 4}}}, gen);
  NamedTensors p2 = clone_params(p1);
  const Tensor gt = Tensor::normal({4, 3}, 0.f, 1.f, gen);
  Adam a1(p1), a2(p2);
  p1[0].second.set_grad(gt.transpose(0, 1));               // a strided view
  p2[0].second.set_grad(gt.transpose(0, 1).contiguous());  // the same values, contiguous
  a1.step();
  a2.step();
  EXPECT_TRUE(bit_equal(p1[0].second, p2[0].second));
}

// 3 steps, save, a new optimizer over copies of the parameters, load, 2 steps == 5 steps, bit for bit.
TEST(Optimizer, StateDictRoundTripIsBitExact) {
  using Make = std::function<std::unique_ptr<Optimizer>(NamedTensors)>;
  const std::vector<std::pair<std::string, Make>> makers = {
      {"adam", [](NamedTensors p) { return std::make_unique<Adam>(p, AdamOptions{.lr = 0.05, .weight_decay = 0.01}); }},
      {"adamw", [](NamedTensors p) { return std::make_unique<AdamW>(p, AdamWOptions{.lr = 0.05}); }},
      {"sgd", [](NamedTensors p) {
         return std::make_unique<SGD>(p, SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true});
       }}};
  for (const auto& [what, make] : makers) {
    SCOPED_TRACE(what);
    Generator gen(5);
    NamedTensors straight = make_params(kShapes, gen);
    NamedTensors resumed = clone_params(straight);
    const GradSeq grads = make_grads(straight, 5, 55, /*with_gaps=*/true);

    auto opt = make(straight);
    WarmupCosineLR sched(*opt, {.warmup_steps = 2, .total_steps = 5, .warmup_start_factor = 0.1, .min_lr = 1e-3});
    for (int k = 0; k < 5; ++k) {
      set_grads(straight, grads[k]);
      opt->step();
      sched.step();
    }

    NamedTensors saved_state;
    int64_t saved_step = 0;
    {
      auto first = make(resumed);
      WarmupCosineLR s1(*first, {.warmup_steps = 2, .total_steps = 5, .warmup_start_factor = 0.1, .min_lr = 1e-3});
      for (int k = 0; k < 3; ++k) {
        set_grads(resumed, grads[k]);
        first->step();
        s1.step();
      }
      saved_state = first->state_dict();
      saved_step = s1.last_step();
    }
    NamedTensors fresh = clone_params(resumed);  // as if the model were loaded from a checkpoint
    auto second = make(fresh);
    WarmupCosineLR s2(*second, {.warmup_steps = 2, .total_steps = 5, .warmup_start_factor = 0.1, .min_lr = 1e-3});
    second->load_state_dict(saved_state, "test");
    s2.set_step(saved_step);
    for (int k = 3; k < 5; ++k) {
      set_grads(fresh, grads[k]);
      second->step();
      s2.step();
    }
    for (size_t i = 0; i < straight.size(); ++i)
      EXPECT_TRUE(bit_equal(straight[i].second, fresh[i].second)) << straight[i].first;
    const NamedTensors a = opt->state_dict(), b = second->state_dict();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].first, b[i].first);
      EXPECT_TRUE(bit_equal(a[i].second, b[i].second)) << a[i].first;
    }
  }
}

TEST(Optimizer, StateDictNamesAndShapes) {
  Generator gen(6);
  NamedTensors params = make_params({{"w", {2, 3}}, {"s", {}}}, gen);
  Adam adam(params);
  std::vector<std::string> names;
  for (const auto& [n, t] : adam.state_dict()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"w.step", "w.exp_avg", "w.exp_avg_sq", "s.step", "s.exp_avg", "s.exp_avg_sq"}));
  EXPECT_EQ(adam.state_dict()[0].second.dim(), 0);
  EXPECT_EQ(adam.state_dict()[1].second.shape(), (Shape{2, 3}));
  SGD sgd(params, {.lr = 0.1, .momentum = 0.5});
  EXPECT_EQ(sgd.state_dict()[1].first, "w.momentum_buffer");
  // state_dict() returns copies: stepping afterwards does not change a saved state.
  const NamedTensors saved = adam.state_dict();
  params[0].second.set_grad(Tensor::ones({2, 3}));
  adam.step();
  EXPECT_EQ(saved[0].second.item(), 0.f);
  EXPECT_TRUE(bit_equal(saved[1].second, Tensor::zeros({2, 3})));
}

TEST(Optimizer, LoadStateDictIsStrict) {
  Generator gen(7);
  NamedTensors params = make_params({{"w", {2, 3}}, {"b", {3}}}, gen);
  Adam opt(params);
  params[0].second.set_grad(Tensor::ones({2, 3}));
  params[1].second.set_grad(Tensor::ones({3}));
  opt.step();
  const NamedTensors good = opt.state_dict();

  auto expect_error = [&](const NamedTensors& bad, const std::string& needle) {
    try {
      opt.load_state_dict(bad, "ckpt.safetensors");
      ADD_FAILURE() << "no error, expected one mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("ckpt.safetensors"), std::string::npos) << e.what();
    }
  };
  NamedTensors missing = good;
  missing.erase(missing.begin() + 2);  // w.exp_avg_sq
  expect_error(missing, "missing entry 'w.exp_avg_sq'");
  NamedTensors misshaped = good;
  misshaped[4].second = Tensor::zeros({4});  // b.exp_avg
  expect_error(misshaped, "'b.exp_avg' has shape [4], expected [3]");
  NamedTensors extra = good;
  extra.emplace_back("w.momentum_buffer", Tensor::zeros({2, 3}));
  expect_error(extra, "unexpected entry 'w.momentum_buffer'");
  NamedTensors fractional = good;
  fractional[3].second = Tensor::scalar(1.5f);  // b.step
  expect_error(fractional, "'b.step' must be a whole number");
  NamedTensors negative = good;
  negative[0].second = Tensor::scalar(-1.f);
  expect_error(negative, "'w.step' must be a whole number");
  NamedTensors twice = good;
  twice.push_back(good[0]);
  expect_error(twice, "'w.step' appears twice");

  // A failed load changes nothing: a good state with a broken last entry leaves the old state.
  NamedTensors zeros = good;
  for (auto& [n, t] : zeros) t = Tensor::zeros(t.shape());
  zeros.back().second = Tensor::zeros({7});
  EXPECT_THROW(opt.load_state_dict(zeros), Error);
  const NamedTensors now = opt.state_dict();
  for (size_t i = 0; i < good.size(); ++i) EXPECT_TRUE(bit_equal(now[i].second, good[i].second)) << good[i].first;
  // Entry order does not matter.
  NamedTensors reversed(good.rbegin(), good.rend());
  opt.load_state_dict(reversed);
}

TEST(Optimizer, ConstructorChecks) {
  Generator gen(8);
  NamedTensors params = make_params({{"w", {2, 3}}}, gen);
  EXPECT_THROW(Adam(NamedTensors{params[0], params[0]}), Error);                      // duplicate name
  EXPECT_THROW(Adam(NamedTensors{{"", params[0].second}}), Error);                     // empty name
  EXPECT_THROW(Adam(NamedTensors{{"t", params[0].second.detach().transpose(0, 1)}}), Error);  // not contiguous
  EXPECT_THROW(Adam(NamedTensors{{"t", params[0].second * 2.f}}), Error);              // not a leaf
  EXPECT_THROW(Adam(NamedTensors{{"u", Tensor()}}), Error);                           // undefined
  EXPECT_THROW(Adam(params, {.beta1 = 1.0}), Error);
  EXPECT_THROW(Adam(params, {.beta2 = -0.1}), Error);
  EXPECT_THROW(Adam(params, {.eps = -1.0}), Error);
  EXPECT_THROW(AdamW(params, {.weight_decay = -1.0}), Error);
  EXPECT_THROW(Adam(params, {.lr = -1.0}), Error);
  EXPECT_THROW(SGD(params, {.lr = 0.1, .nesterov = true}), Error);  // nesterov without momentum
  EXPECT_THROW(SGD(params, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}), Error);
  EXPECT_THROW(SGD(params, {.lr = 0.1, .momentum = -0.9}), Error);
  EXPECT_EQ(AdamW(params).weight_decay(), 1e-2);  // PyTorch's AdamW default
  EXPECT_EQ(Adam(params).weight_decay(), 0.0);
}

TEST(MakeOptimizer, BuildsFromConfigAndRoundTrips) {
  Generator gen(9);
  NamedTensors params = make_params({{"w", {2, 3}}}, gen);
  const json configs[] = {
      json::parse(R"({"name": "adam", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0})"),
      json::parse(R"({"name": "adamw", "lr": 0.003, "betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.05})"),
      json::parse(R"({"name": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 1e-4, "nesterov": true})")};
  for (const json& c : configs) {
    auto opt = make_optimizer(c, params);
    EXPECT_EQ(opt->config(), c);
    EXPECT_EQ(make_optimizer(opt->config(), params)->config(), c);
  }
  EXPECT_EQ(make_optimizer(json::parse(R"({"name": "adamw"})"), params)->config().at("weight_decay"), 0.01);
  EXPECT_EQ(make_optimizer(json::parse(R"({"name": "adam", "amsgrad": false})"), params)->name(), "adam");
  EXPECT_THROW(make_optimizer(json::parse(R"({"name": "adam", "amsgrad": true})"), params), Error);
  EXPECT_THROW(make_optimizer(json::parse(R"({"name": "adam", "lr": "fast"})"), params), Error);
  EXPECT_THROW(make_optimizer(json::parse(R"({"name": "adam", "momentum": 0.9})"), params), Error);
  EXPECT_THROW(make_optimizer(json::parse(R"({"name": "adam", "betas": [0.9]})"), params), Error);
  EXPECT_THROW(make_optimizer(json::parse(R"({"name": "sgd"})"), params), Error);  // lr required
  EXPECT_THROW(make_optimizer(json::parse(R"({"name": "rmsprop"})"), params), Error);
  EXPECT_THROW(make_optimizer(json::parse(R"({"lr": 0.1})"), params), Error);
  EXPECT_THROW(make_optimizer(json::parse(R"([1, 2])"), params), Error);
}

}  // namespace
}  // namespace sleepnet::optim
