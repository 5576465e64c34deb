// nn/module.h: the Module base class, PyTorch's torch.nn.Module cut to what sleepnet needs.
//
// A Module owns
//   parameters   leaf tensors with requires_grad (weights, biases); gradients land in .grad()
//   buffers      state that is saved but not trained (BatchNorm2d's running_mean, running_var,
//                num_batches_tracked), each with the dtype it has in a checkpoint
//   children     sub-modules, each under a name
// all registered in order, so that every tensor has a dotted path exactly like PyTorch's:
//     MobileNetV2 -> "features" (Sequential) -> "1" (InvertedResidual) -> "conv" (Sequential)
//     -> "0" (Conv2dNormActivation) -> "0" (Conv2d) -> "weight"  gives  features.1.conv.0.0.weight
// and a torchvision state dict lines up with ours name by name.
//
// Usage (see nn/layers.h for the layers and nn/mobilenet.h for MobileNetV2):
//     MobileNetV2 model({.width_mult = 1.0, .in_channels = 1, .num_outputs = 1});
//     for (auto& [name, p] : model.named_parameters()) ...      // optimizer
//     Tensor y = model(x);                                     // forward (records the graph)
//     model.eval();  model.train();                            // recursive
//     save_safetensors("m.safetensors", model.state_dict());
//     model.load_state_dict(load_safetensors("m.safetensors").tensors);  // strict
//
// Tensors are handles: named_parameters() and state_dict() return the module's own tensors (they
// share storage), and load_state_dict() copies values into them, so an optimizer holding the
// parameter handles keeps working after a load.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/safetensors.h"
#include "tensor/tensor.h"

namespace sleepnet::nn {

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // x -> y. Every layer of MobileNetV2 takes one tensor and returns one.
  virtual Tensor forward(const Tensor& x) = 0;
  // forward() plus the forward hook, if one is installed (see ForwardHookGuard).
  Tensor operator()(const Tensor& x);

  const std::string& type_name() const { return type_name_; }  // "Conv2d", "BatchNorm2d", ...
  // The constructor arguments, as PyTorch prints them: "3, 32, kernel_size=3, stride=2, ...".
  virtual std::string extra_repr() const { return ""; }
  // The module tree as PyTorch prints it.
  std::string repr() const;

  // ---- mode (recursive): changes BatchNorm2d (batch vs running statistics) and Dropout ----
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- tensors, recursively, with dotted names, in registration order ----
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  // Direct children, and every module of the tree (this one first, named "").
  std::vector<std::pair<std::string, Module*>> named_children() const;
  std::vector<std::pair<std::string, Module*>> named_modules() const;
  int64_t num_parameters() const;  // total number of parameter elements

  // Parameters and buffers (with their dtype tags), sharing storage with the module.
  TensorMap state_dict() const;
  // Strict: every parameter and buffer must be present with the same shape (and I64 buffers as
  // I64), and no other name may appear; otherwise sleepnet::Error naming the tensor. Values are
  // copied into the existing tensors. Nothing is modified if any check fails.
  void load_state_dict(const TensorMap& state);

  // Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();

 protected:
  // Registers a parameter (sets requires_grad on it) and returns the same handle.
  Tensor register_parameter(const std::string& name, Tensor t);
  Tensor register_buffer(const std::string& name, Tensor t, DType dtype = DType::F32);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }
  void add_child(const std::string& name, std::shared_ptr<Module> m);

 private:
  struct Buffer {
    std::string name;
    Tensor tensor;
    DType dtype;
  };
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Module*>>& out) const;
  void check_name(const std::string& name) const;

  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<Buffer> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Called after the forward of every module run through operator() while the guard lives (per
// thread). Used by summary() to see each layer's output; handy for debugging too.
using ForwardHook = std::function<void(Module& m, const Tensor& input, const Tensor& output)>;
class ForwardHookGuard {
 public:
  explicit ForwardHookGuard(ForwardHook hook);
  ~ForwardHookGuard();
  ForwardHookGuard(const ForwardHookGuard&) = delete;
  ForwardHookGuard& operator=(const ForwardHookGuard&) = delete;

 private:
  ForwardHook prev_;
};
// True while a forward hook is installed on this thread. A container that fuses several children
// into one op (Conv2dNormActivation: BatchNorm2d + ReLU6) runs them one by one instead, so that
// the hook sees every child's own input and output.
bool forward_hook_installed();

}  // namespace sleepnet::nn
