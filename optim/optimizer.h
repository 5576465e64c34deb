// optim/optimizer.h: the Optimizer base class shared by Adam, AdamW and SGD (optim/adam.h,
// optim/sgd.h), with PyTorch's semantics.
//
// An optimizer holds the model's parameters as named tensor handles (the same handles the model
// owns, e.g. from nn::Module::named_parameters()), and per parameter some state of its own:
//
//     step                how many updates this parameter has received (a whole number)
//     <buffers>           tensors of the parameter's shape: Adam's exp_avg and exp_avg_sq,
//                         SGD's momentum_buffer
//
// Usage, one training step (the learning rate may be driven by optim/lr_scheduler.h):
//
//     optim::AdamW opt(model.named_parameters(), {.lr = 1e-3, .weight_decay = 0.05});
//     opt.zero_grad();                 // drop last step's gradients (set them to "none")
//     loss.backward();                 // fills p.grad() of every parameter that was used
//     optim::clip_grad_norm_(opt.params(), 1.0);   // optional (optim/clip_grad.h)
//     opt.step();                      // updates every parameter that has a gradient
//
// A parameter whose grad() is undefined at step() is skipped entirely: neither it nor its state
// (not even its step count) changes, exactly as PyTorch skips `p.grad is None`.
//
// Checkpoints: state_dict() returns the state as named tensors, `<param name>.step` (0-dim, a
// whole number stored in float32 like PyTorch's state['step']) and `<param name>.<buffer>` (the
// parameter's shape), for every parameter, in parameter order. load_state_dict() is strict: every
// one of those entries must be present with the right shape, and nothing else; it validates
// everything before changing anything. With the same parameters, hyperparameters and learning rate,
// "run k steps, save, new optimizer, load, run more" is bit-identical to an uninterrupted run.
// The hyperparameters are not tensors: config() gives them as JSON (for a checkpoint's metadata)
// and make_optimizer() builds an optimizer back from such a config.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tensor/tensor.h"

namespace sleepnet::optim {

// (name, tensor) pairs, in a meaningful order (the model's registration order).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Applies one update to every parameter that has a gradient.
  virtual void step() = 0;
  // Drops every parameter's gradient (PyTorch's default zero_grad(set_to_none=True)).
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);  // finite and >= 0

  // "adam", "adamw", "sgd".
  virtual std::string name() const = 0;
  // Hyperparameters including the current lr, e.g.
  // {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}.
  virtual nlohmann::json config() const = 0;

  const NamedTensors& params() const { return params_; }
  // Number of updates parameter i has received.
  int64_t step_count(size_t i) const { return state_.at(i).step; }

  // Copies of the state (see the top of this file). Entry order: for each parameter in order,
  // `<name>.step` then its buffers in the order buffer_names() gives.
  NamedTensors state_dict() const;
  // Strict load; `source` names where the state came from (a file path) in error messages.
  void load_state_dict(const NamedTensors& state, const std::string& source = "optimizer state");
  // Names of the per-parameter buffers ("exp_avg", "exp_avg_sq"; "momentum_buffer"; none).
  const std::vector<std::string>& buffer_names() const { return buffer_names_; }

 protected:
  // Validates the parameters (defined, leaf, contiguous, unique non-empty names) and lr.
  // `who` ("Adam", ...) starts every error message.
  Optimizer(NamedTensors params, double lr, std::string who);
  // Called once by the subclass constructor: one zero-filled buffer per name, per parameter.
  void init_state(std::vector<std::string> buffer_names);
  // ".step", then "." + each buffer name: what follows a parameter's name in the state dict.
  std::vector<std::string> state_suffixes() const;

  struct ParamState {
    int64_t step = 0;             // updates received so far
    std::vector<Tensor> buffers;  // one per buffer_names_, same shape as the parameter, contiguous
  };

  NamedTensors params_;
  std::vector<ParamState> state_;  // parallel to params_
  std::vector<std::string> buffer_names_;
  double lr_ = 0.0;
  std::string who_;
};

// Builds an optimizer from a config as config() writes it (and as the PyTorch fixtures in
// tests/golden/ store it): "name" is "adam", "adamw" or "sgd"; the other keys are that optimizer's
// options (optim/adam.h, optim/sgd.h), each optional with PyTorch's default, except SGD's "lr".
// An unknown name or key is an error, as is "amsgrad": true (not implemented).
std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& config, NamedTensors params);

}  // namespace sleepnet::optim
