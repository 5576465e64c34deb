// tests/kernels_adam_test.cpp: fused Adam/AdamW and SGD updates (nn/kernels/adam.h).
//
//   - the first Adam step by hand (m = 0.1 g, v = 0.001 g^2, so the step is lr * g / (|g| + eps));
//   - several steps of Adam, Adam with L2 decay, AdamW, unusual betas (beta1 = 0.5 takes lerp's
//     other formula) and SGD (momentum, dampening, Nesterov, weight decay) against a scalar
//     re-implementation in double, written here from PyTorch's documented algorithm;
//   - the OpenMP kernels against their refs on a large array.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "nn/kernels/adam.h"
#include "tensor/tensor.h"
#include "tests/kernels_test_util.h"

namespace sleepnet::kernels {
namespace {

using testing::expect_close;
using testing::expect_equal;
using testing::random_floats;

TEST(KernelsAdam, FirstStepByHand) {
  AdamHyper h;
  h.lr = 0.01;
  std::vector<float> p = {1.f, -2.f, 0.5f, 3.f}, g = {0.5f, -0.25f, 1e-9f, 0.f}, m(4, 0.f), v(4, 0.f);
  const std::vector<float> p0 = p;
  adam_step(4, p.data(), g.data(), m.data(), v.data(), 1, h);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(m[i], 0.1 * g[i], 1e-7 * std::fabs(g[i]));
    EXPECT_NEAR(v[i], 0.001 * g[i] * g[i], 1e-6 * g[i] * g[i]);
    const double want = p0[i] - 0.01 * g[i] / (std::fabs(g[i]) + 1e-8);
    EXPECT_NEAR(p[i], want, 1e-7) << i;
  }
  // A zero gradient leaves the parameter exactly where it was.
  EXPECT_EQ(p[3], 3.f);
}

// Adam in double, written from the algorithm (moments as b1*m + (1-b1)*g).
struct AdamDouble {
  std::vector<double> p, m, v;
  std::vector<double> m_abs;  // the same average of |g|: the error scale of m (which cancels)
  void step(const std::vector<float>& g, int64_t t, const AdamHyper& h) {
    for (size_t i = 0; i < p.size(); ++i) {
      double gi = g[i];
      if (h.decoupled)
        p[i] *= 1.0 - h.lr * h.weight_decay;
      else
        gi += h.weight_decay * p[i];
      m[i] = h.beta1 * m[i] + (1 - h.beta1) * gi;
      m_abs[i] = h.beta1 * m_abs[i] + (1 - h.beta1) * std::fabs(gi);
      v[i] = h.beta2 * v[i] + (1 - h.beta2) * gi * gi;
      const double mhat = m[i] / (1 - std::pow(h.beta1, static_cast<double>(t)));
      const double vhat_sqrt = std::sqrt(v[i]) / std::sqrt(1 - std::pow(h.beta2, static_cast<double>(t)));
      p[i] -= h.lr * mhat / (vhat_sqrt + h.eps);
    }
  }
};

std::vector<float> to_float(const std::vector<double>& d) { return std::vector<float>(d.begin(), d.end()); }

TEST(KernelsAdam, SeveralStepsMatchDoubleReimplementation) {
  AdamHyper adam, adam_l2, adamw, odd;
  adam_l2.weight_decay = 0.05, adam_l2.lr = 3e-3;
  adamw.weight_decay = 0.1, adamw.decoupled = true, adamw.lr = 2e-3;
  odd.beta1 = 0.5, odd.beta2 = 0.9, odd.eps = 1e-3, odd.lr = 0.1;
  int variant = 0;
  for (const AdamHyper& h : {adam, adam_l2, adamw, odd}) {
    const int64_t n = 257;
    std::vector<float> p = random_floats(n, 1 + variant), m(n, 0.f), v(n, 0.f);
    AdamDouble ref{std::vector<double>(p.begin(), p.end()), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0),
                   std::vector<double>(n, 0.0)};
    for (int64_t t = 1; t <= 6; ++t) {
      // Gradients of varied sizes, some tiny, one exactly zero.
      std::vector<float> g = random_floats(n, 100 * t + variant);
      for (int64_t i = 0; i < n; ++i) g[static_cast<size_t>(i)] *= std::pow(10.f, static_cast<float>(i % 5) - 3.f);
      g[7] = 0.f;
      adam_step(n, p.data(), g.data(), m.data(), v.data(), t, h);
      ref.step(g, t, h);
      const std::string tag = "variant " + std::to_string(variant) + " step " + std::to_string(t);
      // Float rounding: ~1e-7 relative per operation; the parameter moves by ~lr per step.
      expect_close(p, to_float(ref.p), 1.0, 2e-6 * (1 + h.lr * 100), "param " + tag);
      std::vector<float> mscale(static_cast<size_t>(n)), vscale(static_cast<size_t>(n));
      for (size_t i = 0; i < mscale.size(); ++i) {
        mscale[i] = static_cast<float>(ref.m_abs[i] + 1e-30);
        vscale[i] = static_cast<float>(ref.v[i] + 1e-30);
      }
      expect_close(m, to_float(ref.m), mscale, 2e-6, "exp_avg " + tag);
      expect_close(v, to_float(ref.v), vscale, 2e-6, "exp_avg_sq " + tag);
    }
    ++variant;
  }
}

TEST(KernelsAdam, KernelMatchesRefOnLargeArrays) {
  AdamHyper h;
  h.weight_decay = 0.01, h.decoupled = true;
  const int64_t n = 100003;
  std::vector<float> p = random_floats(n, 1), m = random_floats(n, 2), v = random_floats(n, 3, 0.f, 1e-2f);
  std::vector<float> pr = p, mr = m, vr = v;
  for (int64_t t = 3; t <= 5; ++t) {
    const auto g = random_floats(n, 10 + t);
    adam_step(n, p.data(), g.data(), m.data(), v.data(), t, h);
    adam_step_ref(n, pr.data(), g.data(), mr.data(), vr.data(), t, h);
  }
  // Same float operations in the same order: equal up to FMA contraction under -march=native.
  expect_close(p, pr, 1.0, 1e-7, "param");
  expect_close(m, mr, 1.0, 1e-7, "exp_avg");
  expect_close(v, vr, 1e-2, 1e-7, "exp_avg_sq");
}

// SGD in double, written from the algorithm.
struct SgdDouble {
  std::vector<double> p, buf;
  void step(const std::vector<float>& g, bool first, const SgdHyper& h) {
    for (size_t i = 0; i < p.size(); ++i) {
      double gi = g[i] + h.weight_decay * p[i];
      if (h.momentum != 0) {
        buf[i] = first ? gi : h.momentum * buf[i] + (1 - h.dampening) * gi;
        gi = h.nesterov ? gi + h.momentum * buf[i] : buf[i];
      }
      p[i] -= h.lr * gi;
    }
  }
};

TEST(KernelsAdam, SgdByHandAndOverSeveralSteps) {
  {
    SgdHyper h;
    h.lr = 0.1, h.momentum = 0.9;
    std::vector<float> p = {1.f}, g = {2.f}, buf = {123.f};  // the buffer's old contents are ignored on step 1
    sgd_step(1, p.data(), g.data(), buf.data(), true, h);
    EXPECT_FLOAT_EQ(buf[0], 2.f);
    EXPECT_FLOAT_EQ(p[0], 0.8f);
    sgd_step(1, p.data(), g.data(), buf.data(), false, h);
    EXPECT_FLOAT_EQ(buf[0], 0.9f * 2.f + 2.f);
    EXPECT_FLOAT_EQ(p[0], 0.8f - 0.1f * 3.8f);
  }
  SgdHyper plain, mom, damp, nest;
  plain.lr = 0.05;
  mom.lr = 0.01, mom.momentum = 0.9, mom.weight_decay = 1e-3;
  damp.lr = 0.02, damp.momentum = 0.5, damp.dampening = 0.3;
  nest.lr = 0.01, nest.momentum = 0.9, nest.nesterov = true, nest.weight_decay = 0.01;
  int variant = 0;
  for (const SgdHyper& h : {plain, mom, damp, nest}) {
    const int64_t n = 100003;
    std::vector<float> p = random_floats(n, 5 + variant), buf(n, 0.f);
    std::vector<float> pr = p, bufr = buf;
    SgdDouble ref{std::vector<double>(p.begin(), p.end()), std::vector<double>(n, 0.0)};
    for (int t = 0; t < 4; ++t) {
      const auto g = random_floats(n, 50 + t);
      sgd_step(n, p.data(), g.data(), h.momentum != 0 ? buf.data() : nullptr, t == 0, h);
      sgd_step_ref(n, pr.data(), g.data(), h.momentum != 0 ? bufr.data() : nullptr, t == 0, h);
      ref.step(g, t == 0, h);
    }
    const std::string tag = "sgd variant " + std::to_string(variant);
    expect_close(p, pr, 1.0, 1e-7, tag + " kernel vs ref");
    expect_close(buf, bufr, 1.0, 1e-7, tag + " buffer kernel vs ref");
    expect_close(p, to_float(ref.p), 1.0, 1e-6, tag + " vs double");
    if (h.momentum != 0) expect_close(buf, to_float(ref.buf), 4.0, 1e-6, tag + " buffer vs double");
    ++variant;
  }
}

TEST(KernelsAdam, BadHyperparametersThrow) {
  std::vector<float> a(4), b(4), c(4), d(4);
  AdamHyper h;
  EXPECT_THROW(adam_step(4, a.data(), b.data(), c.data(), d.data(), 0, h), sleepnet::Error);  // step counts from 1
  h.beta1 = 1.0;
  EXPECT_THROW(adam_step(4, a.data(), b.data(), c.data(), d.data(), 1, h), sleepnet::Error);
  SgdHyper s;
  s.momentum = 0.9;
  EXPECT_THROW(sgd_step(4, a.data(), b.data(), nullptr, true, s), sleepnet::Error);  // no buffer
  s.nesterov = true, s.dampening = 0.1;
  EXPECT_THROW(sgd_step(4, a.data(), b.data(), c.data(), true, s), sleepnet::Error);
}

}  // namespace
}  // namespace sleepnet::kernels
