// nn/mobilenet.h: MobileNetV2 (Sandler et al. 2018) with torchvision's exact structure, names and
// initialisation, so torchvision's state dict and ours line up tensor by tensor.
//
//   features.0      Conv2dNormActivation: 3x3 conv stride 2 (in_channels -> c0), BN, ReLU6
//   features.1..17  InvertedResidual blocks from the settings (t, c, n, s) below
//   features.18     Conv2dNormActivation: 1x1 conv -> last_channel, BN, ReLU6
//   (global average pooling and flatten: functional, as in torchvision's forward)
//   classifier      Sequential(Dropout(p), Linear(last_channel, num_outputs))
//
//   settings (t = expansion, c = channels, n = repeats, s = stride of the first repeat):
//     (1, 16, 1, 1) (6, 24, 2, 2) (6, 32, 3, 2) (6, 64, 4, 2) (6, 96, 3, 1) (6, 160, 3, 2) (6, 320, 1, 1)
//   channels are make_divisible(c * width_mult, 8); c0 = make_divisible(32 * width_mult, 8);
//   last_channel = make_divisible(1280 * max(1, width_mult), 8).
//
// InvertedResidual(inp, oup, stride, t), hidden = round(inp * t):
//   conv.0  Conv2dNormActivation 1x1 inp -> hidden (expansion; absent when t == 1)
//   conv.1  Conv2dNormActivation 3x3 depthwise hidden -> hidden, stride    (conv.0 when t == 1)
//   conv.2  Conv2d 1x1 hidden -> oup, no bias (linear bottleneck: no activation)
//   conv.3  BatchNorm2d(oup)
//   y = x + conv(x) when stride == 1 and inp == oup, else conv(x)
//
// Initialisation (torchvision): every conv weight kaiming_normal_(mode = "fan_out"), BN weight 1
// and bias 0, Linear weight N(0, 0.01) and bias 0; random numbers from Generator(options.seed).
#pragma once

#include <cstdint>
#include <memory>

#include "nn/layers.h"

namespace sleepnet::nn {

// torchvision's _make_divisible(v, divisor): nearest multiple of divisor, >= divisor, and not
// more than 10 % below v.
int64_t make_divisible(double v, int64_t divisor = 8);

// Conv2d (bias-free) + BatchNorm2d + ReLU6 as children "0", "1", "2"; padding (kernel - 1) / 2.
// The forward runs the convolution, then BatchNorm2d and ReLU6 as one fused op
// (BatchNorm2d::forward_relu6: one kernel pass, no intermediate tensor); the result, gradients and
// BN state are those of running the three children in order, which is what it does instead while
// a forward hook is installed (nn/summary.h), so the hook sees each child.
class Conv2dNormActivation : public Sequential {
 public:
  Conv2dNormActivation(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups, Generator& gen,
                       const BatchNorm2dOptions& bn = {});
  Tensor forward(const Tensor& x) override;  // x [N, in, H, W] -> [N, out, OH, OW]

  std::shared_ptr<Conv2d> conv;    // child "0"
  std::shared_ptr<BatchNorm2d> bn;  // child "1" (child "2" is the ReLU6)
};

class InvertedResidual : public Module {
 public:
  InvertedResidual(int64_t inp, int64_t oup, int64_t stride, int64_t expand_ratio, Generator& gen,
                   const BatchNorm2dOptions& bn = {});
  Tensor forward(const Tensor& x) override;

  int64_t inp, oup, stride, expand_ratio, hidden;
  bool use_res_connect;
  std::shared_ptr<Sequential> conv;
};

struct MobileNetV2Options {
  double width_mult = 1.0;
  int64_t in_channels = 3;
  int64_t num_outputs = 1000;
  float dropout = 0.2f;
  uint64_t seed = 0;  // of the initialisation (and of the dropout masks)
  BatchNorm2dOptions bn = {};
};

class MobileNetV2 : public Module {
 public:
  explicit MobileNetV2(const MobileNetV2Options& options = {});
  Tensor forward(const Tensor& x) override;  // [N, in_channels, H, W] -> [N, num_outputs]

  MobileNetV2Options options;
  int64_t last_channel;
  std::shared_ptr<Sequential> features, classifier;
};

}  // namespace sleepnet::nn
