// sleepnet: the command-line program. Thin: every command is a call into the library.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <exception>

#include "autograd/ops.h"
#include "tensor/tensor.h"

using namespace sleepnet;

// A small end-to-end check of the foundation: fits y = sin(3x) with a two-layer tanh network,
// using only tensor ops and autograd, and prints the loss as it falls.
static int run_demo(int steps, uint64_t seed) {
  Generator gen(seed);
  Tensor x = Tensor::uniform({256, 1}, -1.f, 1.f, gen);
  Tensor y = Tensor::empty({256, 1});
  for (int64_t i = 0; i < 256; ++i) y.data()[i] = std::sin(3.f * x.data()[i]);
  Tensor w1 = (Tensor::normal({1, 32}, 0.f, 1.f, gen)).set_requires_grad();
  Tensor b1 = Tensor::zeros({32}).set_requires_grad();
  Tensor w2 = (Tensor::normal({32, 1}, 0.f, 0.2f, gen)).set_requires_grad();
  Tensor b2 = Tensor::zeros({1}).set_requires_grad();
  const float lr = 0.1f;
  for (int step = 0; step <= steps; ++step) {
    Tensor h = tanh(matmul(x, w1) + b1);
    Tensor loss = mean(pow(matmul(h, w2) + b2 - y, 2.f));
    for (Tensor* p : {&w1, &b1, &w2, &b2}) p->zero_grad();
    loss.backward();
    NoGradGuard no_grad;
    for (Tensor* p : {&w1, &b1, &w2, &b2}) p->copy_(*p - p->grad() * lr);
    if (step % (steps / 10 > 0 ? steps / 10 : 1) == 0) fmt::print("step {:5d}  mse {:.6f}\n", step, loss.item());
  }
  return 0;
}

int main(int argc, char** argv) {
  CLI::App app{"sleepnet: home sleep-apnea screening with MobileNetV2, from scratch"};
  app.require_subcommand(1);
  int steps = 2000;
  uint64_t seed = 0;
  auto* demo = app.add_subcommand("demo", "fit a small network with autograd (a check of the foundation)");
  demo->add_option("--steps", steps, "training steps")->check(CLI::PositiveNumber);
  demo->add_option("--seed", seed, "random seed");
  CLI11_PARSE(app, argc, argv);
  try {
    if (*demo) return run_demo(steps, seed);
  } catch (const std::exception& e) {
    fmt::print(stderr, "sleepnet: {}\n", e.what());
    return 1;
  }
  return 0;
}
