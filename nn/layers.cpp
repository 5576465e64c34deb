// nn/layers.cpp: the layer modules. See layers.h.
#include "nn/layers.h"

#include <fmt/format.h>

#include <cmath>

#include "nn/functional.h"
#include "nn/init.h"

namespace sleepnet::nn {

namespace {
Generator& pick(Generator* gen) { return gen ? *gen : default_generator(); }

void require_positive(int64_t v, const char* who, const char* what) {
  if (v < 1) throw Error(fmt::format("{}: {} = {}, expected >= 1", who, what, v));
}
}  // namespace

// ---------------------------------------------------------------- Conv2d

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, const Conv2dOptions& opt, Generator* gen)
    : Module("Conv2d"), in_channels(in), out_channels(out), kernel_size(k), options(opt) {
  require_positive(in, "Conv2d", "in_channels");
  require_positive(out, "Conv2d", "out_channels");
  require_positive(k, "Conv2d", "kernel_size");
  require_positive(opt.stride, "Conv2d", "stride");
  require_positive(opt.groups, "Conv2d", "groups");
  if (opt.padding < 0) throw Error(fmt::format("Conv2d: padding = {}, expected >= 0", opt.padding));
  if (in % opt.groups || out % opt.groups)
    throw Error(fmt::format("Conv2d: groups = {} must divide in_channels = {} and out_channels = {}", opt.groups, in,
                            out));
  Generator& g = pick(gen);
  Tensor w = Tensor::empty({out, in / opt.groups, k, k});
  kaiming_uniform_(w, std::sqrt(5.0), g);
  weight = register_parameter("weight", w);
  if (opt.bias) {
    const float bound = 1.f / std::sqrt(static_cast<float>(fan_in(w)));
    bias = register_parameter("bias", Tensor::uniform({out}, -bound, bound, g));
  }
}

Tensor Conv2d::forward(const Tensor& x) {
  return functional::conv2d(x, weight, bias, options.stride, options.padding, options.groups);
}

std::string Conv2d::extra_repr() const {
  std::string s = fmt::format("{}, {}, kernel_size=({}, {}), stride=({}, {})", in_channels, out_channels, kernel_size,
                              kernel_size, options.stride, options.stride);
  if (options.padding) s += fmt::format(", padding=({}, {})", options.padding, options.padding);
  if (options.groups != 1) s += fmt::format(", groups={}", options.groups);
  if (!options.bias) s += ", bias=False";
  return s;
}

// ---------------------------------------------------------------- BatchNorm2d

BatchNorm2d::BatchNorm2d(int64_t C, const BatchNorm2dOptions& opt)
    : Module("BatchNorm2d"), num_features(C), options(opt) {
  require_positive(C, "BatchNorm2d", "num_features");
  if (!(opt.eps >= 0.f)) throw Error(fmt::format("BatchNorm2d: eps = {}, expected >= 0", opt.eps));
  if (!(opt.momentum >= 0.f && opt.momentum <= 1.f))
    throw Error(fmt::format("BatchNorm2d: momentum = {}, expected in [0, 1]", opt.momentum));
  weight = register_parameter("weight", Tensor::ones({C}));
  bias = register_parameter("bias", Tensor::zeros({C}));
  running_mean = register_buffer("running_mean", Tensor::zeros({C}));
  running_var = register_buffer("running_var", Tensor::ones({C}));
  num_batches_tracked = register_buffer("num_batches_tracked", Tensor::scalar(0.f), DType::I64);
}

namespace {
void check_bn_input(const Tensor& x, int64_t C) {
  if (x.dim() != 4 || x.size(1) != C)
    throw Error(fmt::format("BatchNorm2d({}): expected input [N, {}, H, W], got {}", C, C, shape_str(x.shape())));
}
}  // namespace

Tensor BatchNorm2d::forward(const Tensor& x) {
  check_bn_input(x, num_features);
  if (is_training()) num_batches_tracked.fill_(num_batches_tracked.item() + 1.f);
  return functional::batch_norm(x, weight, bias, running_mean, running_var, is_training(), options.momentum,
                                options.eps);
}

Tensor BatchNorm2d::forward_relu6(const Tensor& x) {
  check_bn_input(x, num_features);
  if (is_training()) num_batches_tracked.fill_(num_batches_tracked.item() + 1.f);
  return functional::batch_norm_relu6(x, weight, bias, running_mean, running_var, is_training(), options.momentum,
                                      options.eps);
}

std::string BatchNorm2d::extra_repr() const {
  return fmt::format("{}, eps={}, momentum={}, affine=True, track_running_stats=True", num_features, options.eps,
                     options.momentum);
}

// ---------------------------------------------------------------- simple layers

Tensor ReLU6::forward(const Tensor& x) { return functional::relu6(x); }

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t output_size) : Module("AdaptiveAvgPool2d") {
  if (output_size != 1)
    throw Error(fmt::format("AdaptiveAvgPool2d: output_size = {}; only 1 (global average pooling) is supported",
                            output_size));
}
Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return functional::adaptive_avg_pool2d(x, 1); }
std::string AdaptiveAvgPool2d::extra_repr() const { return "output_size=1"; }

Tensor Flatten::forward(const Tensor& x) { return functional::flatten(x, start_dim, end_dim); }
std::string Flatten::extra_repr() const { return fmt::format("start_dim={}, end_dim={}", start_dim, end_dim); }

Linear::Linear(int64_t in, int64_t out, const LinearOptions& opt, Generator* gen)
    : Module("Linear"), in_features(in), out_features(out) {
  require_positive(in, "Linear", "in_features");
  require_positive(out, "Linear", "out_features");
  Generator& g = pick(gen);
  Tensor w = Tensor::empty({out, in});
  kaiming_uniform_(w, std::sqrt(5.0), g);
  weight = register_parameter("weight", w);
  if (opt.bias) {
    const float bound = 1.f / std::sqrt(static_cast<float>(in));
    bias = register_parameter("bias", Tensor::uniform({out}, -bound, bound, g));
  }
}

Tensor Linear::forward(const Tensor& x) { return functional::linear(x, weight, bias); }
std::string Linear::extra_repr() const {
  return fmt::format("in_features={}, out_features={}, bias={}", in_features, out_features,
                     bias.defined() ? "True" : "False");
}

Dropout::Dropout(float p, Generator* gen) : Module("Dropout"), p(p), generator(pick(gen).next_u64()) {
  if (!(p >= 0.f && p <= 1.f)) throw Error(fmt::format("Dropout: p = {}, expected in [0, 1]", p));
}
Tensor Dropout::forward(const Tensor& x) { return functional::dropout(x, p, is_training(), generator); }
std::string Dropout::extra_repr() const { return fmt::format("p={}, inplace=False", p); }

// ---------------------------------------------------------------- Sequential

Sequential::Sequential(std::vector<std::shared_ptr<Module>> modules) : Module("Sequential") {
  for (auto& m : modules) push_back(m);
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& m : layers_) y = (*m)(y);
  return y;
}

}  // namespace sleepnet::nn
