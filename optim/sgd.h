// optim/sgd.h: stochastic gradient descent with momentum, dampening, Nesterov momentum and weight
// decay, with the exact update of PyTorch's torch.optim.SGD (single-tensor path, maximize=False).
//
// For each parameter p with gradient g:
//
//     g <- g + weight_decay * p                     (if weight_decay != 0)
//     if momentum != 0:
//         b <- g                                    on the parameter's first update (no dampening)
//         b <- momentum * b + (1 - dampening) * g   afterwards                 (momentum_buffer)
//         g <- g + momentum * b                     if nesterov
//         g <- b                                    otherwise
//     p <- p - lr * g
//
// With momentum == 0 there is no buffer: the state is only the step count.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "optim/optimizer.h"

namespace sleepnet::optim {

// PyTorch's defaults, except that lr has none there (it is required); give it explicitly:
// SGD(params, {.lr = 0.1, .momentum = 0.9, .nesterov = true}).
struct SGDOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening == 0, as in PyTorch
};

class SGD : public Optimizer {
 public:
  explicit SGD(NamedTensors params, const SGDOptions& options);
  void step() override;
  std::string name() const override { return "sgd"; }
  nlohmann::json config() const override;

  double momentum() const { return momentum_; }
  double dampening() const { return dampening_; }
  double weight_decay() const { return weight_decay_; }
  bool nesterov() const { return nesterov_; }

 private:
  double momentum_, dampening_, weight_decay_;
  bool nesterov_;
};

}  // namespace sleepnet::optim
