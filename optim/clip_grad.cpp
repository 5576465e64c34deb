// optim/clip_grad.cpp: global-norm gradient clipping (see clip_grad.h).
#include "optim/clip_grad.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "tensor/ops.h"

namespace sleepnet::optim {

double grad_norm(const std::vector<Tensor>& params) {
  // Serial, in a fixed order: the norm does not depend on the number of threads.
  double sum_sq = 0.0;
  for (const Tensor& p : params) {
    if (!p.defined()) throw Error("grad_norm: undefined tensor in the parameter list");
    const Tensor grad = p.grad();
    if (!grad.defined()) continue;
    const Tensor g = raw::contiguous(grad);
    const float* d = g.data();
    const int64_t n = g.numel();
    for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(d[i]) * static_cast<double>(d[i]);
  }
  return std::sqrt(sum_sq);
}

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm) {
  if (!(max_norm >= 0.0)) throw Error(fmt::format("clip_grad_norm_: max_norm must be >= 0, got {}", max_norm));
  const double total_norm = grad_norm(params);
  const double coef = std::min(max_norm / (total_norm + 1e-6), 1.0);  // NaN stays NaN, as in PyTorch
  const float c = static_cast<float>(coef);
  for (const Tensor& p : params) {
    Tensor grad = p.grad();
    if (!grad.defined()) continue;
    if (grad.is_contiguous()) {
      float* d = grad.data();
      const int64_t n = grad.numel();
      for (int64_t i = 0; i < n; ++i) d[i] = d[i] * c;
    } else {
      grad.copy_(raw::binary(raw::Binary::Mul, grad, c));  // grads.mul_(coef), any layout
    }
  }
  return total_norm;
}

double clip_grad_norm_(const NamedTensors& params, double max_norm) {
  std::vector<Tensor> ps;
  ps.reserve(params.size());
  for (const auto& [name, p] : params) ps.push_back(p);
  return clip_grad_norm_(ps, max_norm);
}

}  // namespace sleepnet::optim
