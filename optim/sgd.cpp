// optim/sgd.cpp: SGD with momentum (see sgd.h for the update and its PyTorch correspondence).
// The element-wise update is the fused kernel kernels::sgd_step (nn/kernels/adam.h); this file
// keeps the momentum buffers and step counts.
#include "optim/sgd.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nn/kernels/adam.h"
#include "tensor/ops.h"

namespace sleepnet::optim {

SGD::SGD(NamedTensors params, const SGDOptions& o)
    : Optimizer(std::move(params), o.lr, "SGD"),
      momentum_(o.momentum),
      dampening_(o.dampening),
      weight_decay_(o.weight_decay),
      nesterov_(o.nesterov) {
  if (!(momentum_ >= 0.0) || !std::isfinite(momentum_))
    throw Error(fmt::format("SGD: momentum must be finite and >= 0, got {}", momentum_));
  if (!std::isfinite(dampening_)) throw Error(fmt::format("SGD: dampening must be finite, got {}", dampening_));
  if (!(weight_decay_ >= 0.0) || !std::isfinite(weight_decay_))
    throw Error(fmt::format("SGD: weight_decay must be finite and >= 0, got {}", weight_decay_));
  if (nesterov_ && (momentum_ <= 0.0 || dampening_ != 0.0))
    throw Error(fmt::format("SGD: nesterov needs momentum > 0 and dampening == 0, got momentum {} and dampening {}",
                            momentum_, dampening_));
  if (momentum_ != 0.0)
    init_state({"momentum_buffer"});
  else
    init_state({});
}

void SGD::step() {
  const kernels::SgdHyper hyper{.lr = lr_, .momentum = momentum_, .dampening = dampening_,
                                .weight_decay = weight_decay_, .nesterov = nesterov_};
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    const Tensor grad = p.grad();
    if (!grad.defined()) continue;  // as PyTorch: no gradient, no update, no state change
    if (grad.shape() != p.shape())
      throw Error(fmt::format("SGD.step: gradient of '{}' has shape {}, the parameter {}", params_[i].first,
                              shape_str(grad.shape()), shape_str(p.shape())));
    const Tensor g = raw::contiguous(grad);
    ParamState& st = state_[i];
    float* buf = st.buffers.empty() ? nullptr : st.buffers[0].data();
    // The buffer starts as a copy of the gradient on the parameter's first update (PyTorch's `buf is None`).
    kernels::sgd_step(p.numel(), p.data(), g.data(), buf, /*first_step=*/st.step == 0, hyper);
    st.step += 1;
  }
}

nlohmann::json SGD::config() const {
  return {{"name", "sgd"},
          {"lr", lr_},
          {"momentum", momentum_},
          {"dampening", dampening_},
          {"weight_decay", weight_decay_},
          {"nesterov", nesterov_}};
}

}  // namespace sleepnet::optim
