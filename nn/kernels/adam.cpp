// nn/kernels/adam.cpp: fused Adam/AdamW and SGD updates (formulas and PyTorch mapping in adam.h).
#include "nn/kernels/adam.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "nn/kernels/common.h"

namespace sleepnet::kernels {

namespace {

// The per-step scalars, each rounded to float once, as PyTorch hands Python floats to its
// float32 kernels.
struct AdamScalars {
  float wd;              // Adam: grad.add(param, alpha=wd)
  float decay;           // AdamW: param.mul_(1 - lr * wd)
  float lerp_w;          // exp_avg.lerp_(grad, 1 - beta1)
  float beta2, one_minus_beta2;
  float bc2_sqrt;        // sqrt(1 - beta2^t)
  float eps;
  float neg_step_size;   // -lr / (1 - beta1^t)
  bool coupled, decoupled;
};

AdamScalars adam_scalars(int64_t step, const AdamHyper& h) {
  const double t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(h.beta1, t), bc2 = 1.0 - std::pow(h.beta2, t);
  AdamScalars s{};
  s.wd = static_cast<float>(h.weight_decay);
  s.decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  s.lerp_w = static_cast<float>(1.0 - h.beta1);
  s.beta2 = static_cast<float>(h.beta2);
  s.one_minus_beta2 = static_cast<float>(1.0 - h.beta2);
  s.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  s.eps = static_cast<float>(h.eps);
  s.neg_step_size = static_cast<float>(-(h.lr / bc1));
  s.coupled = h.weight_decay != 0.0 && !h.decoupled;
  s.decoupled = h.weight_decay != 0.0 && h.decoupled;
  return s;
}

// PyTorch's lerp for a scalar weight: two formulas, chosen by |weight| < 0.5, so that the end
// points are exact.
inline float lerp(float self, float end, float w) {
  return std::fabs(w) < 0.5f ? self + w * (end - self) : end - (end - self) * (1.f - w);
}

// One element of the Adam update, shared by the kernel and its ref so the arithmetic is written once.
inline void adam_element(float& p, float g, float& m, float& v, const AdamScalars& s) {
  if (s.coupled) g = g + s.wd * p;
  if (s.decoupled) p = p * s.decay;
  m = lerp(m, g, s.lerp_w);
  v = v * s.beta2;
  v = v + s.one_minus_beta2 * g * g;
  const float denom = std::sqrt(v) / s.bc2_sqrt + s.eps;
  p = p + s.neg_step_size * m / denom;
}

// adam_element over n elements with the branches fixed at compile time (same arithmetic).
// (The loop vectorises, sqrt included, because CMakeLists.txt compiles this file with
// -fno-math-errno: v >= 0, so sqrt never has an error to report.)
template <bool kCoupled, bool kDecoupled, bool kLerpLow>
void adam_loop(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
               int64_t n, const AdamScalars& sc) {
  const float wd = sc.wd, decay = sc.decay, w = sc.lerp_w, b2 = sc.beta2, omb2 = sc.one_minus_beta2;
  const float bc2 = sc.bc2_sqrt, eps = sc.eps, nss = sc.neg_step_size;
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i], pi = p[i];
    if constexpr (kCoupled) gi = gi + wd * pi;
    if constexpr (kDecoupled) pi = pi * decay;
    float mi = m[i];
    if constexpr (kLerpLow)
      mi = mi + w * (gi - mi);
    else
      mi = gi - (gi - mi) * (1.f - w);
    float vi = v[i] * b2;
    vi = vi + omb2 * gi * gi;
    const float denom = std::sqrt(vi) / bc2 + eps;
    p[i] = pi + nss * mi / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

// (Every check builds its message only when it fails: they run once per parameter tensor per step.)
void check_adam(const char* who, int64_t n, int64_t step, const AdamHyper& h, std::initializer_list<const void*> ptrs) {
  h.validate(who);
  require(n >= 0, who, [&] { return "n = " + std::to_string(n) + ", expected >= 0 (nn/kernels/adam.h)"; });
  require(step >= 1, who, [&] { return "step = " + std::to_string(step) + ", expected >= 1 (counting from 1)"; });
  for (const void* p : ptrs)
    require(n == 0 || p != nullptr, who, [] { return std::string("a required array pointer is null"); });
}

// A second thread only for at least this many elements per thread (most parameter tensors are
// far smaller and never reach the OpenMP runtime; see common.h). Chunks start on cache lines.
constexpr int64_t kGrain = 1 << 14;
constexpr int64_t kLine = 16;

}  // namespace

void AdamHyper::validate(const char* who) const {
  require(lr >= 0.0 && std::isfinite(lr), who,
          [&] { return "lr = " + std::to_string(lr) + ", expected finite and >= 0"; });
  require(beta1 >= 0.0 && beta1 < 1.0, who,
          [&] { return "beta1 = " + std::to_string(beta1) + ", expected in [0, 1)"; });
  require(beta2 >= 0.0 && beta2 < 1.0, who,
          [&] { return "beta2 = " + std::to_string(beta2) + ", expected in [0, 1)"; });
  require(eps >= 0.0 && std::isfinite(eps), who,
          [&] { return "eps = " + std::to_string(eps) + ", expected finite and >= 0"; });
  require(weight_decay >= 0.0 && std::isfinite(weight_decay), who,
          [&] { return "weight_decay = " + std::to_string(weight_decay) + ", expected finite and >= 0"; });
}

void adam_step(int64_t n, float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
               int64_t step, const AdamHyper& h) {
  check_adam("adam_step", n, step, h, {param, grad, exp_avg, exp_avg_sq});
  const AdamScalars s = adam_scalars(step, h);
  // The choices are made once, outside the loop, so that the loop body is straight-line code the
  // compiler vectorizes (it would not with the branches inside).
  using Loop = void (*)(float*, const float*, float*, float*, int64_t, const AdamScalars&);
  const bool low = std::fabs(s.lerp_w) < 0.5f;
  const Loop loop = s.coupled ? (low ? adam_loop<true, false, true> : adam_loop<true, false, false>)
                    : s.decoupled ? (low ? adam_loop<false, true, true> : adam_loop<false, true, false>)
                                  : (low ? adam_loop<false, false, true> : adam_loop<false, false, false>);
  parallel_for(n, threads_for(n, kGrain), [&](int64_t b, int64_t e) {
    loop(param + b, grad + b, exp_avg + b, exp_avg_sq + b, e - b, s);
  }, kLine);
}

void adam_step_ref(int64_t n, float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                   int64_t step, const AdamHyper& h) {
  check_adam("adam_step_ref", n, step, h, {param, grad, exp_avg, exp_avg_sq});
  // torch.optim.adam._single_tensor_adam, line by line, one element at a time.
  const double bias_correction1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  const double step_size = h.lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i];
    if (h.weight_decay != 0.0 && !h.decoupled) g = g + static_cast<float>(h.weight_decay) * param[i];
    if (h.weight_decay != 0.0 && h.decoupled) param[i] = param[i] * static_cast<float>(1.0 - h.lr * h.weight_decay);
    const float w = static_cast<float>(1.0 - h.beta1);  // lerp weight, < 0.5 for usual betas
    exp_avg[i] = w < 0.5f ? exp_avg[i] + w * (g - exp_avg[i]) : g - (g - exp_avg[i]) * (1.f - w);
    exp_avg_sq[i] = exp_avg_sq[i] * static_cast<float>(h.beta2);
    exp_avg_sq[i] = exp_avg_sq[i] + static_cast<float>(1.0 - h.beta2) * g * g;
    const float denom = std::sqrt(exp_avg_sq[i]) / static_cast<float>(bias_correction2_sqrt) + static_cast<float>(h.eps);
    param[i] = param[i] + static_cast<float>(-step_size) * exp_avg[i] / denom;
  }
}

// ---- SGD ----

void SgdHyper::validate(const char* who) const {
  require(lr >= 0.0 && std::isfinite(lr), who,
          [&] { return "lr = " + std::to_string(lr) + ", expected finite and >= 0"; });
  require(momentum >= 0.0 && std::isfinite(momentum), who,
          [&] { return "momentum = " + std::to_string(momentum) + ", expected >= 0"; });
  require(std::isfinite(dampening), who, [] { return std::string("dampening must be finite"); });
  require(weight_decay >= 0.0 && std::isfinite(weight_decay), who,
          [&] { return "weight_decay = " + std::to_string(weight_decay) + ", expected finite and >= 0"; });
  require(!nesterov || (momentum > 0.0 && dampening == 0.0), who,
          [] { return std::string("nesterov momentum requires a momentum and zero dampening"); });
}

namespace {

struct SgdScalars {
  float wd, momentum, one_minus_dampening, neg_lr;
  bool has_wd, has_momentum, nesterov;
};

SgdScalars sgd_scalars(const SgdHyper& h) {
  return {static_cast<float>(h.weight_decay), static_cast<float>(h.momentum),
          static_cast<float>(1.0 - h.dampening), static_cast<float>(-h.lr),
          h.weight_decay != 0.0, h.momentum != 0.0, h.nesterov};
}

// buf is read only when there is momentum (it may be null otherwise).
inline void sgd_element(float& p, float g, float* buf, bool first, const SgdScalars& s) {
  if (s.has_wd) g = g + s.wd * p;  // grad.add(param, alpha=wd)
  if (s.has_momentum) {
    float b = first ? g : *buf * s.momentum + s.one_minus_dampening * g;  // buf.mul_(m).add_(g, alpha=1-d)
    *buf = b;
    g = s.nesterov ? g + s.momentum * b : b;
  }
  p = p + s.neg_lr * g;  // param.add_(grad, alpha=-lr)
}

void check_sgd(const char* who, int64_t n, float* param, const float* grad, float* buf, const SgdHyper& h) {
  h.validate(who);
  require(n >= 0, who, [&] { return "n = " + std::to_string(n) + ", expected >= 0 (nn/kernels/adam.h)"; });
  require(n == 0 || (param && grad), who, [] { return std::string("param and grad must not be null"); });
  require(n == 0 || h.momentum == 0.0 || buf, who,
          [] { return std::string("momentum > 0 needs a momentum buffer"); });
}

}  // namespace

void sgd_step(int64_t n, float* param, const float* grad, float* momentum_buf, bool first_step,
              const SgdHyper& h) {
  check_sgd("sgd_step", n, param, grad, momentum_buf, h);
  const SgdScalars s = sgd_scalars(h);
  parallel_for(n, threads_for(n, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      sgd_element(param[i], grad[i], s.has_momentum ? momentum_buf + i : nullptr, first_step, s);
  }, kLine);
}

void sgd_step_ref(int64_t n, float* param, const float* grad, float* momentum_buf, bool first_step,
                  const SgdHyper& h) {
  check_sgd("sgd_step_ref", n, param, grad, momentum_buf, h);
  // torch.optim.sgd._single_tensor_sgd, line by line.
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i];
    if (h.weight_decay != 0.0) g = g + static_cast<float>(h.weight_decay) * param[i];
    if (h.momentum != 0.0) {
      if (first_step)
        momentum_buf[i] = g;
      else
        momentum_buf[i] = momentum_buf[i] * static_cast<float>(h.momentum) + static_cast<float>(1.0 - h.dampening) * g;
      g = h.nesterov ? g + static_cast<float>(h.momentum) * momentum_buf[i] : momentum_buf[i];
    }
    param[i] = param[i] + static_cast<float>(-h.lr) * g;
  }
}

}  // namespace sleepnet::kernels
