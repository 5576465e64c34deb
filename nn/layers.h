// nn/layers.h: the layers MobileNetV2 is built from, with PyTorch's names, shapes and default
// initialisation. Each is a thin Module around an op of nn/functional.h:
//
//   Conv2d(in, out, kernel, {.stride, .padding, .groups, .bias})
//       weight [out, in/groups, kernel, kernel], bias [out]; both U(-1/sqrt(fan_in), 1/sqrt(fan_in))
//       (PyTorch's kaiming_uniform_(a = sqrt(5)) and its bias rule), fan_in = in/groups * kernel^2
//   BatchNorm2d(C, {.eps, .momentum})
//       weight [C] = 1, bias [C] = 0; buffers running_mean [C] = 0, running_var [C] = 1,
//       num_batches_tracked [] = 0 (an int64 in checkpoints)
//   ReLU6, AdaptiveAvgPool2d(1), Flatten(start_dim = 1)
//   Linear(in, out, {.bias})    weight [out, in], bias [out], initialised as Conv2d
//   Dropout(p)                  its own Generator, seeded from the init generator at construction
//   Sequential                  children named "0", "1", ... run in order
//
// Constructors take an optional Generator* for initialisation; null means nn::default_generator().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace sleepnet::nn {

struct Conv2dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t groups = 1;
  bool bias = true;
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, const Conv2dOptions& options = {},
         Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;  // x [N, in, H, W] -> [N, out, OH, OW]
  std::string extra_repr() const override;

  int64_t in_channels, out_channels, kernel_size;
  Conv2dOptions options;
  Tensor weight;  // [out, in/groups, k, k]
  Tensor bias;    // [out], undefined when options.bias is false
};

struct BatchNorm2dOptions {
  float eps = 1e-5f;
  float momentum = 0.1f;
};

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t num_features, const BatchNorm2dOptions& options = {});
  // Training: batch statistics, running statistics updated, num_batches_tracked + 1.
  // Eval: running statistics. x [N, C, H, W] -> same shape.
  Tensor forward(const Tensor& x) override;
  // ReLU6()(forward(x)) as one fused op (functional::batch_norm_relu6): the same output, gradients
  // and state updates (running statistics, num_batches_tracked), without the intermediate tensor.
  // For a parent that knows a ReLU6 follows (Conv2dNormActivation); runs no forward hook itself.
  Tensor forward_relu6(const Tensor& x);
  std::string extra_repr() const override;

  int64_t num_features;
  BatchNorm2dOptions options;
  Tensor weight, bias;                   // parameters [C]
  Tensor running_mean, running_var;      // buffers [C]
  Tensor num_batches_tracked;            // buffer [], a whole number (I64 in checkpoints)
};

class ReLU6 : public Module {
 public:
  ReLU6() : Module("ReLU6") {}
  Tensor forward(const Tensor& x) override;
};

// Only output size 1 (global average pooling), the one MobileNetV2 uses.
class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(int64_t output_size = 1);
  Tensor forward(const Tensor& x) override;  // [N, C, H, W] -> [N, C, 1, 1]
  std::string extra_repr() const override;
};

class Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : Module("Flatten"), start_dim(start_dim), end_dim(end_dim) {}
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;
  int64_t start_dim, end_dim;
};

struct LinearOptions {
  bool bias = true;
};

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, const LinearOptions& options = {}, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;  // [N, in] -> [N, out]
  std::string extra_repr() const override;

  int64_t in_features, out_features;
  Tensor weight;  // [out, in]
  Tensor bias;    // [out] or undefined
};

class Dropout : public Module {
 public:
  explicit Dropout(float p = 0.5f, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  float p;
  Generator generator;  // the masks' random numbers (its state can be saved to resume exactly)
};

class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  explicit Sequential(std::vector<std::shared_ptr<Module>> modules);
  // Appends a child named by its position ("0", "1", ...); returns it.
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    add_child(std::to_string(layers_.size()), m);
    layers_.push_back(m);
    return m;
  }
  Tensor forward(const Tensor& x) override;
  size_t size() const { return layers_.size(); }
  Module& operator[](size_t i) const { return *layers_.at(i); }

 protected:
  explicit Sequential(std::string type_name) : Module(std::move(type_name)) {}

 private:
  std::vector<std::shared_ptr<Module>> layers_;
};

}  // namespace sleepnet::nn
