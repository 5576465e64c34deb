// optim/sgd.cpp: SGD with momentum (see sgd.h for the update and its PyTorch correspondence).
#include "optim/sgd.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tensor/ops.h"

namespace sleepnet::optim {

namespace {

// Scalars rounded to float once, as PyTorch passes Python floats to its float32 kernels.
struct SGDScalars {
  float weight_decay;
  float momentum;
  float one_minus_dampening;
  float neg_lr;
};

// p: [n] updated in place; g: [n]; buf: [n] momentum buffer (nullptr when momentum == 0).
// first: the parameter's first update (the buffer starts as a copy of the gradient).
void sgd_update(float* __restrict p, const float* __restrict g, float* __restrict buf, int64_t n, const SGDScalars& s,
                bool decay, bool first, bool nesterov) {
#pragma omp parallel for schedule(static) if (n >= 65536)
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    if (decay) gi = gi + s.weight_decay * p[i];          // grad.add(param, alpha=wd)
    if (buf) {
      float b;
      if (first) {
        b = gi;                                          // buf = clone(grad)
      } else {
        b = buf[i] * s.momentum;                         // buf.mul_(momentum)
        b = b + s.one_minus_dampening * gi;              //    .add_(grad, alpha=1 - dampening)
      }
      buf[i] = b;
      gi = nesterov ? gi + s.momentum * b : b;           // grad.add(buf, alpha=momentum) or buf
    }
    p[i] = p[i] + s.neg_lr * gi;                         // param.add_(grad, alpha=-lr)
  }
}

}  // namespace

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
  SGDScalars s{};
  s.weight_decay = static_cast<float>(weight_decay_);
  s.momentum = static_cast<float>(momentum_);
  s.one_minus_dampening = static_cast<float>(1.0 - dampening_);
  s.neg_lr = static_cast<float>(-lr_);
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
    sgd_update(p.data(), g.data(), buf, p.numel(), s, weight_decay_ != 0.0, st.step == 0, nesterov_);
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
