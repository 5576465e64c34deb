// gradcheck.h: the one numerical gradient checker every differentiable op goes through.
//
// For inputs x_1..x_k and an op y = f(x), the checker uses the loss L = sum(y * R) with a fixed
// random R (a plain `sum(y)` would be blind: through batch-norm or softmax its gradient is zero
// whatever the code does). It compares the analytic dL/dx (from backward) with central differences
//     (L(x + h e_i) - L(x - h e_i)) / 2h
// where L is accumulated in double from the float32 outputs. The error reported is
//     max_i |numeric_i - analytic_i| / (max_i |analytic_i| + floor)
// which is O(1) for a wrong sign or a missing term and ~1e-4 for a correct float32 op. Keep inputs
// away from kinks (e.g. ReLU6 at 0 and 6) by more than h.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "tensor/tensor.h"

namespace sleepnet::testing {

struct GradCheckOptions {
  float h = 1e-2f;          // finite-difference step
  double tolerance = 2e-3;  // on the relative error defined above
  double floor = 1e-3;      // keeps the ratio meaningful when gradients are tiny
  uint64_t seed = 1234;     // of the projection R
  std::vector<bool> check;  // which inputs to check (default: all that require grad)
};

inline double projected_loss(const Tensor& y, const std::vector<float>& r) {
  std::vector<float> v = y.to_vector();
  double acc = 0;
  for (size_t i = 0; i < v.size(); ++i) acc += static_cast<double>(v[i]) * r[i];
  return acc;
}

// Checks every input that requires grad. Inputs are modified in place and restored.
inline ::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                            std::vector<Tensor> inputs, GradCheckOptions opt = {}) {
  Tensor y = f(inputs);
  Generator gen(opt.seed);
  Tensor r = Tensor::normal(y.shape(), 0.f, 1.f, gen);
  std::vector<float> rv = r.to_vector();
  for (auto& x : inputs) x.zero_grad();
  Tensor loss = sum(f(inputs) * r);
  loss.backward();

  std::string report;
  bool ok = true;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    if (!opt.check.empty() && k < opt.check.size() && !opt.check[k]) continue;
    if (!x.is_contiguous()) return ::testing::AssertionFailure() << "gradcheck: input " << k << " must be contiguous";
    Tensor g = x.grad();
    std::vector<float> analytic = g.defined() ? g.to_vector() : std::vector<float>(x.numel(), 0.f);
    float* p = x.data();
    double worst = 0, scale = 0;
    int64_t worst_i = -1;
    std::vector<double> numeric(x.numel());
    for (int64_t i = 0; i < x.numel(); ++i) {
      NoGradGuard no_grad;
      const float orig = p[i];
      p[i] = orig + opt.h;
      double lp = projected_loss(f(inputs), rv);
      p[i] = orig - opt.h;
      double lm = projected_loss(f(inputs), rv);
      p[i] = orig;
      // the step actually taken in float32
      double step = static_cast<double>(orig + opt.h) - static_cast<double>(orig - opt.h);
      numeric[i] = (lp - lm) / step;
      scale = std::max(scale, std::fabs(static_cast<double>(analytic[i])));
    }
    for (int64_t i = 0; i < x.numel(); ++i) {
      double e = std::fabs(numeric[i] - analytic[i]);
      if (e > worst) {
        worst = e;
        worst_i = i;
      }
    }
    double rel = worst / (scale + opt.floor);
    if (rel > opt.tolerance) {
      ok = false;
      report += "input " + std::to_string(k) + ": relative error " + std::to_string(rel) + " at element " +
                std::to_string(worst_i) + " (numeric " + std::to_string(numeric[worst_i]) + ", analytic " +
                std::to_string(analytic[worst_i]) + ", scale " + std::to_string(scale) + "); ";
    }
  }
  if (!ok) return ::testing::AssertionFailure() << report;
  return ::testing::AssertionSuccess();
}

// A random input of `shape` that requires grad, values uniform in [lo, hi).
inline Tensor random_input(const Shape& shape, Generator& gen, float lo = -1.f, float hi = 1.f) {
  Tensor t = Tensor::uniform(shape, lo, hi, gen);
  t.set_requires_grad(true);
  return t;
}

}  // namespace sleepnet::testing
