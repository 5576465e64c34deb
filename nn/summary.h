// nn/summary.h: a model summary in the spirit of torchinfo: per layer, its output shape,
// parameter count, multiply-adds and activation memory, with totals.
//
//     nn::MobileNetV2 model({.width_mult = 1.0, .in_channels = 1, .num_outputs = 1});
//     std::cout << nn::summary(model, {32, 1, 64, 64});
//
// The model runs one forward pass on zeros of `input_shape` in eval mode with gradients off (so
// BatchNorm's running statistics are not touched; the mode is restored afterwards), and a forward
// hook records every module's output. Counting conventions (per forward pass, whole batch):
//   mult-adds   Conv2d: N*OC*OH*OW * (C/groups)*KH*KW      Linear: N*IN*OUT
//               BatchNorm2d: N*C*H*W (one multiply-add per element, x * a + b at inference)
//               ReLU6, pooling, dropout, flatten: 0
//               a container (Sequential, block) shows the sum over its layers
//   activations the bytes of the module's output (float32); the total is the sum over leaf
//               layers, i.e. what a training step keeps for the backward pass (the gradients
//               need about as much again)
//   params      parameters of the module and everything below it
// Functional steps between modules (MobileNetV2's pooling and flatten) have no row.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/module.h"

namespace sleepnet::nn {

struct LayerSummary {
  std::string name;  // dotted path ("" for the model itself)
  std::string type;  // "Conv2d", "InvertedResidual", ...
  int depth = 0;     // 0 for the model, 1 for its children, ...
  bool leaf = true;  // no children
  Shape output;
  int64_t params = 0;
  int64_t mult_adds = 0;
  int64_t activation_bytes = 0;
};

struct ModelSummary {
  Shape input;
  std::vector<LayerSummary> layers;  // in module order (the model first)
  int64_t total_params = 0;
  int64_t trainable_params = 0;
  int64_t total_mult_adds = 0;         // sum over leaf layers
  int64_t total_activation_bytes = 0;  // sum over leaf layers
  int64_t input_bytes = 0;
  int64_t param_bytes = 0;
};

ModelSummary summarize(Module& model, const Shape& input_shape);
// The table; rows deeper than max_depth are folded into their parent (-1: all rows).
std::string format_summary(const ModelSummary& s, int max_depth = -1);
std::string summary(Module& model, const Shape& input_shape, int max_depth = -1);

}  // namespace sleepnet::nn
