// optim/adam.cpp: Adam / AdamW (see adam.h for the update and its PyTorch correspondence).
// The element-wise update is the fused kernel kernels::adam_step (nn/kernels/adam.h); this file
// keeps the per-parameter state and step counts.
#include "optim/adam.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nn/kernels/adam.h"
#include "tensor/ops.h"

namespace sleepnet::optim {

namespace {

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
  const kernels::AdamHyper hyper{.lr = lr_, .beta1 = beta1_, .beta2 = beta2_, .eps = eps_,
                                 .weight_decay = weight_decay_, .decoupled = decoupled_};
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
    kernels::adam_step(p.numel(), p.data(), g.data(), st.buffers[0].data(), st.buffers[1].data(), st.step, hyper);
  }
}

nlohmann::json Adam::config() const {
  return {{"name", name()}, {"lr", lr_}, {"betas", {beta1_, beta2_}}, {"eps", eps_}, {"weight_decay", weight_decay_}};
}

}  // namespace sleepnet::optim
