// Tests of optim/checkpoint.h: model + optimizer + schedule saved to one safetensors file and
// resumed bit-identically; the file's layout; strict loading with errors naming file and entry.
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "nn/safetensors.h"
#include "optim/adam.h"
#include "optim/checkpoint.h"
#include "optim/lr_scheduler.h"
#include "optim/sgd.h"
#include "tensor/tensor.h"

namespace sleepnet::optim {
namespace {

namespace fs = std::filesystem;

// A scratch directory per test binary run, removed at the end of each test.
class OptimCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("sleepnet_optim_ckpt_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// A stand-in for a model: named parameters and one integer buffer, as Module::state_dict() gives.
struct TinyModel {
  NamedTensors params;
  Tensor counter = Tensor::scalar(0.f);  // like BatchNorm2d's num_batches_tracked

  explicit TinyModel(uint64_t seed) {
    Generator gen(seed);
    for (auto [name, shape] : std::vector<std::pair<std::string, Shape>>{{"fc.weight", {3, 4}}, {"fc.bias", {3}}, {"gain", {}}}) {
      Tensor p = Tensor::normal(shape, 0.f, 1.f, gen);
      p.set_requires_grad(true);
      params.emplace_back(name, p);
    }
  }
  nn::TensorMap state_dict() const {
    nn::TensorMap m;
    for (const auto& [name, p] : params) m[name] = {p, nn::DType::F32};
    m["counter"] = {counter, nn::DType::I64};
    return m;
  }
  void load_state_dict(const nn::TensorMap& m) {
    ASSERT_EQ(m.size(), params.size() + 1);
    for (auto& [name, p] : params) p.copy_(m.at(name).tensor);
    counter.copy_(m.at("counter").tensor);
  }
  // One "training step": gradients from a seeded generator; the bias gets none on odd steps.
  void set_grads(int step) {
    Generator gen(1000 + step);
    for (auto& [name, p] : params) {
      if (name == "fc.bias" && step % 2 == 1)
        p.zero_grad();
      else
        p.set_grad(Tensor::normal(p.shape(), 0.f, 1.f + static_cast<float>(step), gen));
    }
    counter.fill_(counter.item() + 1.f);
  }
};

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const auto va = a.to_vector(), vb = b.to_vector();
  return std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)) == 0;
}

constexpr WarmupCosineOptions kSchedule{.warmup_steps = 2, .total_steps = 6, .warmup_start_factor = 0.1, .min_lr = 1e-4};

TEST_F(OptimCheckpoint, ResumeFromFileIsBitExact) {
  for (const std::string kind : {"adamw", "sgd"}) {
    SCOPED_TRACE(kind);
    auto make = [&](TinyModel& m) -> std::unique_ptr<Optimizer> {
      if (kind == "adamw") return std::make_unique<AdamW>(m.params, AdamWOptions{.lr = 0.05, .weight_decay = 0.1});
      return std::make_unique<SGD>(m.params, SGDOptions{.lr = 0.05, .momentum = 0.9, .nesterov = true});
    };
    // 5 steps without interruption.
    TinyModel straight(1);
    auto opt = make(straight);
    WarmupCosineLR sched(*opt, kSchedule);
    for (int k = 0; k < 5; ++k) {
      straight.set_grads(k);
      opt->step();
      sched.step();
    }
    // 3 steps, checkpoint, everything rebuilt from scratch (another init), load, 2 more steps.
    const std::string file = path(kind + ".safetensors");
    {
      TinyModel first(1);
      auto o1 = make(first);
      WarmupCosineLR s1(*o1, kSchedule);
      for (int k = 0; k < 3; ++k) {
        first.set_grads(k);
        o1->step();
        s1.step();
      }
      save_checkpoint(file, first.state_dict(), *o1, &s1, {{"epoch", "3"}});
    }
    TinyModel second(2);  // different initial values: the checkpoint must overwrite them
    auto o2 = make(second);
    WarmupCosineLR s2(*o2, kSchedule);
    const LoadedCheckpoint ckpt = load_checkpoint(file, *o2, &s2);
    second.load_state_dict(ckpt.model);
    EXPECT_EQ(ckpt.metadata.at("epoch"), "3");
    EXPECT_EQ(s2.last_step(), 3);
    for (int k = 3; k < 5; ++k) {
      second.set_grads(k);
      o2->step();
      s2.step();
    }
    EXPECT_EQ(o2->lr(), opt->lr());
    for (size_t i = 0; i < straight.params.size(); ++i)
      EXPECT_TRUE(bit_equal(straight.params[i].second, second.params[i].second)) << straight.params[i].first;
    EXPECT_EQ(second.counter.item(), 5.f);
    const NamedTensors a = opt->state_dict(), b = o2->state_dict();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(bit_equal(a[i].second, b[i].second)) << a[i].first;
  }
}

TEST_F(OptimCheckpoint, FileLayout) {
  TinyModel m(3);
  Adam opt(m.params, {.lr = 0.01, .weight_decay = 0.1});
  StepLR sched(opt, {.step_size = 2, .gamma = 0.5});
  for (int k = 0; k < 3; ++k) {
    m.set_grads(k);
    opt.step();
    sched.step();
  }
  save_checkpoint(path("c.safetensors"), m.state_dict(), opt, &sched, {{"seed", "42"}});
  const nn::SafetensorsFile f = nn::load_safetensors(path("c.safetensors"));
  // Model tensors under their own names, the optimizer's under "optim.".
  EXPECT_TRUE(f.tensors.count("fc.weight"));
  EXPECT_EQ(f.tensors.at("counter").dtype, nn::DType::I64);
  const nn::TensorRecord& step = f.tensors.at("optim.fc.bias.step");
  EXPECT_EQ(step.dtype, nn::DType::I64);
  EXPECT_EQ(step.tensor.dim(), 0);
  EXPECT_EQ(step.tensor.item(), 2.f);  // the bias had no gradient at step 1
  EXPECT_EQ(f.tensors.at("optim.fc.weight.step").tensor.item(), 3.f);
  EXPECT_EQ(f.tensors.at("optim.fc.weight.exp_avg").dtype, nn::DType::F32);
  EXPECT_EQ(f.tensors.at("optim.fc.weight.exp_avg_sq").tensor.shape(), (Shape{3, 4}));
  EXPECT_EQ(f.tensors.size(), 4u + 3u * 3u);
  EXPECT_EQ(nlohmann::json::parse(f.metadata.at("optimizer")), opt.config());
  EXPECT_EQ(f.metadata.at("lr_scheduler.last_step"), "3");
  EXPECT_EQ(f.metadata.at("seed"), "42");
}

TEST_F(OptimCheckpoint, WithoutSchedulerTheLearningRateComesBack) {
  TinyModel m(4);
  SGD opt(m.params, {.lr = 0.1, .momentum = 0.5});
  opt.set_lr(0.0375);
  save_checkpoint(path("s.safetensors"), m.state_dict(), opt);
  SGD other(m.params, {.lr = 0.1, .momentum = 0.5});
  load_checkpoint(path("s.safetensors"), other);
  EXPECT_EQ(other.lr(), 0.0375);
  // A scheduler needs its step in the file.
  ConstantLR sched(other);
  EXPECT_THROW(load_checkpoint(path("s.safetensors"), other, &sched), Error);
}

TEST_F(OptimCheckpoint, StrictLoading) {
  TinyModel m(5);
  Adam opt(m.params, {.lr = 0.01});
  m.set_grads(0);
  opt.step();
  const std::string file = path("a.safetensors");
  save_checkpoint(file, m.state_dict(), opt);

  auto expect_error = [&](auto&& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error, expected one mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // Another kind of optimizer.
  SGD sgd(m.params, {.lr = 0.1, .momentum = 0.9});
  expect_error([&] { load_checkpoint(file, sgd); }, "optimizer 'adam', but the optimizer is 'sgd'");
  // AdamW and Adam have the same state but are different optimizers.
  AdamW adamw(m.params);
  expect_error([&] { load_checkpoint(file, adamw); }, "'adam', but the optimizer is 'adamw'");

  // A missing entry: the error names the file and the entry, and nothing changes.
  nn::SafetensorsFile f = nn::load_safetensors(file);
  f.tensors.erase("optim.fc.bias.exp_avg_sq");
  const std::string broken = path("broken.safetensors");
  nn::save_safetensors(broken, f.tensors, f.metadata);
  Adam fresh(TinyModel(6).params, {.lr = 0.5});
  expect_error([&] { load_checkpoint(broken, fresh); }, "missing entry 'fc.bias.exp_avg_sq'");
  expect_error([&] { load_checkpoint(broken, fresh); }, broken);
  EXPECT_EQ(fresh.lr(), 0.5);
  EXPECT_EQ(fresh.step_count(0), 0);

  // A model checkpoint without optimizer state.
  nn::save_safetensors(path("model_only.safetensors"), m.state_dict());
  expect_error([&] { load_checkpoint(path("model_only.safetensors"), fresh); }, "not a training checkpoint");

  // Reserved names on save.
  expect_error([&] { save_checkpoint(path("x.safetensors"), m.state_dict(), opt, nullptr, {{"optimizer", "{}"}}); },
               "reserved");
  nn::TensorMap clash = m.state_dict();
  clash["optim.fc.weight.step"] = {Tensor::scalar(0.f), nn::DType::F32};
  expect_error([&] { save_checkpoint(path("x.safetensors"), clash, opt); }, "prefix 'optim.'");
  EXPECT_FALSE(fs::exists(path("x.safetensors")));
}

}  // namespace
}  // namespace sleepnet::optim
