// nn_train_test.cpp: MobileNetV2 end to end: it learns (loss goes down on a fixed batch), and a
// training run saved to a checkpoint and resumed is bit-identical to one that never stopped.
// (The full configuration, width 1.0 at 1x64x64 with batch 32, runs in bench/bench_train_step.cpp.)
#include <gtest/gtest.h>

#include <filesystem>

#include "nn/functional.h"
#include "nn/mobilenet.h"
#include "optim/adam.h"
#include "optim/checkpoint.h"

namespace sleepnet::nn {
namespace {

MobileNetV2Options small() {
  return {.width_mult = 0.35, .in_channels = 1, .num_outputs = 2, .dropout = 0.1f, .seed = 17};
}

// One step: forward (train mode), MSE, backward, Adam. Returns the loss.
float step(MobileNetV2& model, optim::Optimizer& opt, const Tensor& x, const Tensor& y) {
  opt.zero_grad();
  Tensor loss = functional::mse_loss(model(x), y);
  loss.backward();
  opt.step();
  return loss.item();
}

TEST(Train, MobileNetV2LossGoesDown) {
  MobileNetV2 model({.width_mult = 0.35, .in_channels = 1, .num_outputs = 2, .dropout = 0.f, .seed = 17});
  Generator gen(3);
  Tensor x = Tensor::normal({8, 1, 64, 64}, 0, 1, gen), y = Tensor::normal({8, 2}, 0, 1, gen);
  optim::Adam opt(model.named_parameters(), {.lr = 1e-3});
  std::vector<float> losses;
  for (int i = 0; i < 8; ++i) losses.push_back(step(model, opt, x, y));
  for (size_t i = 0; i < losses.size(); ++i) std::printf("step %zu: loss %.5f\n", i + 1, losses[i]);
  // Adam on one fixed batch: not every step is lower than the one before, but all are below the
  // start and the end is far below it.
  for (size_t i = 1; i < losses.size(); ++i) EXPECT_LT(losses[i], losses.front()) << "step " << i + 1;
  EXPECT_LT(losses.back(), 0.3f * losses.front());
  for (auto& [name, p] : model.named_parameters()) EXPECT_TRUE(p.grad().defined()) << name;
}

TEST(Train, CheckpointResumeIsBitIdentical) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("sleepnet_train_" + std::to_string(::getpid()) + ".safetensors"))
          .string();
  Generator gen(4);
  Tensor x = Tensor::normal({4, 1, 32, 32}, 0, 1, gen), y = Tensor::normal({4, 2}, 0, 1, gen);

  MobileNetV2 a(small());
  optim::AdamW opt_a(a.named_parameters(), {.lr = 1e-3, .weight_decay = 0.01});
  step(a, opt_a, x, y);
  step(a, opt_a, x, y);
  optim::save_checkpoint(path, a.state_dict(), opt_a);
  // The dropout masks come from the Dropout module's generator: carry its state along.
  auto& drop = dynamic_cast<Dropout&>((*a.classifier)[0]);
  const std::vector<uint64_t> rng = drop.generator.state();
  const float a3 = step(a, opt_a, x, y), a4 = step(a, opt_a, x, y);

  MobileNetV2 b({.width_mult = 0.35, .in_channels = 1, .num_outputs = 2, .dropout = 0.1f, .seed = 99});
  optim::AdamW opt_b(b.named_parameters(), {.lr = 1e-3, .weight_decay = 0.01});
  optim::LoadedCheckpoint ck = optim::load_checkpoint(path, opt_b);
  b.load_state_dict(ck.model);
  dynamic_cast<Dropout&>((*b.classifier)[0]).generator.set_state(rng);
  EXPECT_EQ(step(b, opt_b, x, y), a3);
  EXPECT_EQ(step(b, opt_b, x, y), a4);
  TensorMap sa = a.state_dict(), sb = b.state_dict();
  for (auto& [name, r] : sa) EXPECT_EQ(r.tensor.to_vector(), sb.at(name).tensor.to_vector()) << name;
  std::filesystem::remove(path);
}

TEST(Train, DropoutOnlyInTraining) {
  MobileNetV2 model({.width_mult = 0.35, .in_channels = 1, .num_outputs = 4, .dropout = 0.5f, .seed = 1});
  Generator gen(5);
  Tensor x = Tensor::normal({2, 1, 32, 32}, 0, 1, gen);
  model.eval();
  EXPECT_EQ(model(x).to_vector(), model(x).to_vector());
  // In training the classifier's input is masked differently on each call (BN statistics are
  // the same for the same batch, so any difference comes from dropout).
  model.train();
  EXPECT_NE(model(x).to_vector(), model(x).to_vector());
}

}  // namespace
}  // namespace sleepnet::nn
