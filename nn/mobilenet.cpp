// nn/mobilenet.cpp: MobileNetV2 as torchvision builds it. See mobilenet.h.
#include "nn/mobilenet.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "nn/functional.h"
#include "nn/init.h"

namespace sleepnet::nn {

int64_t make_divisible(double v, int64_t divisor) {
  int64_t new_v = std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (static_cast<double>(new_v) < 0.9 * v) new_v += divisor;
  return new_v;
}

Conv2dNormActivation::Conv2dNormActivation(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups,
                                           Generator& gen, const BatchNorm2dOptions& bn)
    : Sequential("Conv2dNormActivation") {
  conv = push_back(std::make_shared<Conv2d>(
      in, out, kernel, Conv2dOptions{.stride = stride, .padding = (kernel - 1) / 2, .groups = groups, .bias = false},
      &gen));
  this->bn = push_back(std::make_shared<BatchNorm2d>(out, bn));
  push_back(std::make_shared<ReLU6>());
}

Tensor Conv2dNormActivation::forward(const Tensor& x) {
  if (forward_hook_installed()) return Sequential::forward(x);  // each child visible to the hook
  return bn->forward_relu6((*conv)(x));
}

InvertedResidual::InvertedResidual(int64_t inp, int64_t oup, int64_t stride, int64_t t, Generator& gen,
                                   const BatchNorm2dOptions& bn)
    : Module("InvertedResidual"), inp(inp), oup(oup), stride(stride), expand_ratio(t) {
  if (stride != 1 && stride != 2)
    throw Error(fmt::format("InvertedResidual: stride = {}, expected 1 or 2", stride));
  if (t < 1) throw Error(fmt::format("InvertedResidual: expand_ratio = {}, expected >= 1", t));
  hidden = static_cast<int64_t>(std::lround(static_cast<double>(inp * t)));
  use_res_connect = stride == 1 && inp == oup;
  conv = register_module("conv", std::make_shared<Sequential>());
  if (t != 1) conv->push_back(std::make_shared<Conv2dNormActivation>(inp, hidden, 1, 1, 1, gen, bn));   // expand
  conv->push_back(std::make_shared<Conv2dNormActivation>(hidden, hidden, 3, stride, hidden, gen, bn));  // depthwise
  conv->push_back(std::make_shared<Conv2d>(hidden, oup, 1, Conv2dOptions{.bias = false}, &gen));       // project
  conv->push_back(std::make_shared<BatchNorm2d>(oup, bn));
}

Tensor InvertedResidual::forward(const Tensor& x) {
  Tensor y = (*conv)(x);
  return use_res_connect ? x + y : y;
}

MobileNetV2::MobileNetV2(const MobileNetV2Options& opt) : Module("MobileNetV2"), options(opt) {
  if (!(opt.width_mult > 0.0 && std::isfinite(opt.width_mult)))
    throw Error(fmt::format("MobileNetV2: width_mult = {}, expected > 0", opt.width_mult));
  if (opt.in_channels < 1) throw Error(fmt::format("MobileNetV2: in_channels = {}, expected >= 1", opt.in_channels));
  if (opt.num_outputs < 1) throw Error(fmt::format("MobileNetV2: num_outputs = {}, expected >= 1", opt.num_outputs));
  struct Setting {
    int64_t t, c, n, s;
  };
  const Setting settings[] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                              {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  Generator gen(opt.seed);
  int64_t c = make_divisible(32 * opt.width_mult);
  last_channel = make_divisible(1280 * std::max(1.0, opt.width_mult));

  features = register_module("features", std::make_shared<Sequential>());
  features->push_back(std::make_shared<Conv2dNormActivation>(opt.in_channels, c, 3, 2, 1, gen, opt.bn));
  for (const Setting& st : settings) {
    const int64_t out = make_divisible(st.c * opt.width_mult);
    for (int64_t i = 0; i < st.n; ++i) {
      features->push_back(std::make_shared<InvertedResidual>(c, out, i == 0 ? st.s : 1, st.t, gen, opt.bn));
      c = out;
    }
  }
  features->push_back(std::make_shared<Conv2dNormActivation>(c, last_channel, 1, 1, 1, gen, opt.bn));

  classifier = register_module("classifier", std::make_shared<Sequential>());
  classifier->push_back(std::make_shared<Dropout>(opt.dropout, &gen));
  classifier->push_back(std::make_shared<Linear>(last_channel, opt.num_outputs, LinearOptions{}, &gen));

  // torchvision's initialisation, over every module in order.
  for (auto& [name, m] : named_modules()) {
    if (auto* conv = dynamic_cast<Conv2d*>(m)) {
      kaiming_normal_fan_out_(conv->weight, gen);
      if (conv->bias.defined()) conv->bias.zero_();
    } else if (auto* bn = dynamic_cast<BatchNorm2d*>(m)) {
      bn->weight.fill_(1.f);
      bn->bias.zero_();
    } else if (auto* fc = dynamic_cast<Linear*>(m)) {
      normal_(fc->weight, 0.f, 0.01f, gen);
      if (fc->bias.defined()) fc->bias.zero_();
    }
  }
}

Tensor MobileNetV2::forward(const Tensor& x) {
  if (x.dim() != 4 || x.size(1) != options.in_channels)
    throw Error(fmt::format("MobileNetV2: expected input [N, {}, H, W], got {}", options.in_channels,
                            shape_str(x.shape())));
  Tensor y = (*features)(x);                      // [N, last_channel, H/32, W/32]
  y = functional::adaptive_avg_pool2d(y, 1);      // [N, last_channel, 1, 1]
  y = functional::flatten(y, 1);                  // [N, last_channel]
  return (*classifier)(y);                        // [N, num_outputs]
}

}  // namespace sleepnet::nn
