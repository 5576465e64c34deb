// nn/init.cpp: see init.h.
#include "nn/init.h"

#include <fmt/format.h>

#include <cmath>

namespace sleepnet::nn {

Generator& default_generator() {
  static Generator gen(0);
  return gen;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

static int64_t receptive_field(const Tensor& w) {
  if (w.dim() < 2)
    throw Error(fmt::format("nn::init: fan in/out need a weight with at least 2 dims, got {}", shape_str(w.shape())));
  int64_t r = 1;
  for (int64_t d = 2; d < w.dim(); ++d) r *= w.size(d);
  return r;
}

int64_t fan_in(const Tensor& w) { return w.size(1) * receptive_field(w); }
int64_t fan_out(const Tensor& w) { return w.size(0) * receptive_field(w); }

Tensor& uniform_(Tensor& t, float low, float high, Generator& gen) {
  t.copy_(Tensor::uniform(t.shape(), low, high, gen));
  return t;
}

Tensor& normal_(Tensor& t, float mean, float std, Generator& gen) {
  t.copy_(Tensor::normal(t.shape(), mean, std, gen));
  return t;
}

Tensor& kaiming_uniform_(Tensor& w, double a, Generator& gen) {
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double bound = gain * std::sqrt(3.0 / static_cast<double>(fan_in(w)));
  return uniform_(w, static_cast<float>(-bound), static_cast<float>(bound), gen);
}

Tensor& kaiming_normal_fan_out_(Tensor& w, Generator& gen) {
  const double std = std::sqrt(2.0 / static_cast<double>(fan_out(w)));
  return normal_(w, 0.f, static_cast<float>(std), gen);
}

}  // namespace sleepnet::nn
