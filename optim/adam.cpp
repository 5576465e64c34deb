// optim/adam.cpp: Adam / AdamW (see adam.h for the update and its PyTorch correspondence).
#include "optim/adam.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tensor/ops.h"

namespace sleepnet::optim {

namespace {

// The per-step scalars, already rounded to float as PyTorch passes them to its float32 kernels.
struct AdamScalars {
  float weight_decay;  // Adam: g += weight_decay * p (0 = off)
  float decay;         // AdamW: p *= decay = 1 - lr * weight_decay (1 = off)
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float bias_correction2_sqrt;
  float eps;
  float neg_step_size;  // -lr / bias_correction1
};

// One parameter's update over n contiguous floats; element-wise, so threads cannot change results.
// p, m, v: [n] updated in place; g: [n].
void adam_update(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, int64_t n,
                 const AdamScalars& s, bool coupled_decay, bool decoupled_decay) {
#pragma omp parallel for schedule(static) if (n >= 65536)
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    if (coupled_decay) gi = gi + s.weight_decay * p[i];   // grad.add(param, alpha=wd)
    float pi = p[i];
    if (decoupled_decay) pi = pi * s.decay;                // param.mul_(1 - lr * wd)
    float mi = m[i] * s.beta1;                             // exp_avg.mul_(beta1)
    mi = mi + s.one_minus_beta1 * gi;                      //        .add_(grad, alpha=1 - beta1)
    float vi = v[i] * s.beta2;                             // exp_avg_sq.mul_(beta2)
    vi = vi + s.one_minus_beta2 * gi * gi;                 //           .addcmul_(grad, grad, value=1 - beta2)
    const float denom = std::sqrt(vi) / s.bias_correction2_sqrt + s.eps;
    p[i] = pi + s.neg_step_size * mi / denom;              // param.addcdiv_(exp_avg, denom, value=-step_size)
    m[i] = mi;
    v[i] = vi;
  }
}

void check_hyper(const char* who, double lr, double beta1, double beta2, double eps, double weight_decay) {
  (void)lr;  // checked by Optimizer
  if (!(beta1 >= 0.0 && beta1 < 1.0)) throw Error(fmt::format("{}: beta1 must be in [0, 1), got {}", who, beta1));
  if (!(beta2 >= 0.0 && beta2 < 1.0)) throw Error(fmt::format("{}: beta2 must be in [0, 1), got {}", who, beta2));
  if (!(eps >= 0.0) || !std::isfinite(eps)) throw Error(fmt::format("{}: eps must be finite and >= 0, got {}", who, eps));
  if (!(weight_decay >= 0.0) || !std::isfinite(weight_decay))
    throw Error(fmt::format("{}: weight_decay must be finite and >= 0, got {}", who, weight_decay));
}

}  // namespace

Adam::Adam(NamedTensors params, const AdamOptions& o) : Adam(std::move(params), o, false, "Adam") {}

Adam::Adam(NamedTensors params, const AdamOptions& o, bool decoupled, const char* who)
    : Optimizer(std::move(params), o.lr, who),
      beta1_(o.beta1),
      beta2_(o.beta2),
      eps_(o.eps),
      weight_decay_(o.weight_decay),
      decoupled_(decoupled) {
  check_hyper(who, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay);
  init_state({"exp_avg", "exp_avg_sq"});
}

AdamW::AdamW(NamedTensors params, const AdamWOptions& o)
    : Adam(std::move(params),
           AdamOptions{.lr = o.lr, .beta1 = o.beta1, .beta2 = o.beta2, .eps = o.eps, .weight_decay = o.weight_decay}, true,
           "AdamW") {}

void Adam::step() {
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    const Tensor grad = p.grad();
    if (!grad.defined()) continue;  // as PyTorch: no gradient, no update, no state change
    if (grad.shape() != p.shape())
      throw Error(fmt::format("{}.step: gradient of '{}' has shape {}, the parameter {}", who_, params_[i].first,
                              shape_str(grad.shape()), shape_str(p.shape())));
    const Tensor g = raw::contiguous(grad);
    ParamState& st = state_[i];
    st.step += 1;

    const double t = static_cast<double>(st.step);
    const double bias_correction1 = 1.0 - std::pow(beta1_, t);
    const double bias_correction2 = 1.0 - std::pow(beta2_, t);
    AdamScalars s{};
    s.weight_decay = static_cast<float>(weight_decay_);
    s.decay = static_cast<float>(1.0 - lr_ * weight_decay_);
    s.beta1 = static_cast<float>(beta1_);
    s.one_minus_beta1 = static_cast<float>(1.0 - beta1_);
    s.beta2 = static_cast<float>(beta2_);
    s.one_minus_beta2 = static_cast<float>(1.0 - beta2_);
    s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    s.eps = static_cast<float>(eps_);
    s.neg_step_size = static_cast<float>(-(lr_ / bias_correction1));
    const bool any_decay = weight_decay_ != 0.0;
    adam_update(p.data(), g.data(), st.buffers[0].data(), st.buffers[1].data(), p.numel(), s, any_decay && !decoupled_,
                any_decay && decoupled_);
  }
}

nlohmann::json Adam::config() const {
  return {{"name", name()}, {"lr", lr_}, {"betas", {beta1_, beta2_}}, {"eps", eps_}, {"weight_decay", weight_decay_}};
}

}  // namespace sleepnet::optim
