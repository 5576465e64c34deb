// optim/adam.h: Adam and AdamW, with the exact update of PyTorch's torch.optim.Adam / AdamW
// (the default single-tensor path: amsgrad=False, maximize=False, foreach=False).
//
// For each parameter p with gradient g, at its own step count t (1 on its first update):
//
//     Adam  (L2 penalty):      g <- g + weight_decay * p
//     AdamW (decoupled decay): p <- p * (1 - lr * weight_decay)
//     m <- beta1 * m + (1 - beta1) * g                  exp_avg
//     v <- beta2 * v + (1 - beta2) * g * g              exp_avg_sq
//     bias_correction1 = 1 - beta1^t                    (these scalars in double)
//     bias_correction2 = 1 - beta2^t
//     denom = sqrt(v) / sqrt(bias_correction2) + eps    (eps added after the division)
//     p <- p - (lr / bias_correction1) * m / denom
//
// The element-wise work is the fused kernel kernels::adam_step (nn/kernels/adam.h): float32, in
// PyTorch's operation order (m is updated as exp_avg.lerp_(g, 1 - beta1), as PyTorch 2.x does;
// 1.13 wrote mul_ + add_, which can differ in the last bit). The per-step scalars are computed in
// double and rounded to float once, as PyTorch does when it passes a Python float to a float32
// kernel. Each parameter keeps its own step count t, so a parameter that missed some steps (no
// gradient) gets the bias correction of the updates it actually received, as in PyTorch.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "optim/optimizer.h"

namespace sleepnet::optim {

// PyTorch's defaults. Use designated initializers: Adam(params, {.lr = 3e-4, .weight_decay = 1e-4}).
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

// The same fields; PyTorch's AdamW defaults to weight_decay = 1e-2.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

class Adam : public Optimizer {
 public:
  explicit Adam(NamedTensors params, const AdamOptions& options = {});
  void step() override;
  std::string name() const override { return decoupled_ ? "adamw" : "adam"; }
  nlohmann::json config() const override;

  double beta1() const { return beta1_; }
  double beta2() const { return beta2_; }
  double eps() const { return eps_; }
  double weight_decay() const { return weight_decay_; }

 protected:
  Adam(NamedTensors params, const AdamOptions& options, bool decoupled, const char* who);

 private:
  double beta1_, beta2_, eps_, weight_decay_;
  bool decoupled_;  // AdamW
};

class AdamW : public Adam {
 public:
  explicit AdamW(NamedTensors params, const AdamWOptions& options = {});
};

}  // namespace sleepnet::optim
