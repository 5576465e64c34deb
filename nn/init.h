// nn/init.h: parameter initialisation, PyTorch's torch.nn.init with sleepnet's seeded Generator.
//
// Fans follow PyTorch: for a weight [OUT, IN, KH, KW] (or [OUT, IN] for Linear)
//     fan_in  = IN * KH * KW        fan_out = OUT * KH * KW
// (for a grouped convolution IN is the channels per group, so a 3x3 depthwise weight [C, 1, 3, 3]
// has fan_in 9 and fan_out 9 C).
//
//   kaiming_uniform_(w, a)    U(-b, b), b = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + a^2)).
//                             PyTorch's default for Conv2d and Linear weights uses a = sqrt(5),
//                             which makes b = 1 / sqrt(fan_in).
//   kaiming_normal_fan_out_   N(0, 2 / fan_out): torchvision's MobileNetV2 convolutions (ReLU gain).
//
// Modules draw from the Generator they are given, or from default_generator() (seeded with 0 at
// start-up, reseeded by manual_seed), so that building the same model twice after the same
// manual_seed gives the same weights, as with torch.manual_seed.
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace sleepnet::nn {

Generator& default_generator();
void manual_seed(uint64_t seed);

int64_t fan_in(const Tensor& w);
int64_t fan_out(const Tensor& w);

// In place; each returns its argument.
Tensor& uniform_(Tensor& t, float low, float high, Generator& gen);
Tensor& normal_(Tensor& t, float mean, float std, Generator& gen);
Tensor& kaiming_uniform_(Tensor& w, double a, Generator& gen);
Tensor& kaiming_normal_fan_out_(Tensor& w, Generator& gen);

}  // namespace sleepnet::nn
