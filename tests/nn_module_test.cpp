// nn_module_test.cpp: Module bookkeeping (names, train/eval, strict state dicts), the layers'
// PyTorch defaults, and MobileNetV2's structure against torchvision's own state dict listing
// (tests/data/nn/torchvision_mobilenet_v2_state_dict.txt, written by torchvision 0.14).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "autograd/ops.h"
#include "nn/layers.h"
#include "nn/mobilenet.h"

namespace sleepnet::nn {
namespace {

struct Entry {
  std::string name;
  std::string dtype;
  Shape shape;
};

std::vector<Entry> torchvision_listing() {
  std::ifstream in(SLEEPNET_TEST_DATA_DIR "/nn/torchvision_mobilenet_v2_state_dict.txt");
  EXPECT_TRUE(in.good());
  std::vector<Entry> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    Entry e;
    s >> e.name >> e.dtype;
    int64_t d;
    while (s >> d) e.shape.push_back(d);
    out.push_back(e);
  }
  return out;
}

bool is_buffer(const std::string& name) {
  for (const char* b : {"running_mean", "running_var", "num_batches_tracked"})
    if (name.size() >= std::strlen(b) && name.compare(name.size() - std::strlen(b), std::string::npos, b) == 0)
      return true;
  return false;
}

double stddev(const Tensor& t) {
  std::vector<float> v = t.to_vector();
  double m = 0, s = 0;
  for (float x : v) m += x;
  m /= v.size();
  for (float x : v) s += (x - m) * (x - m);
  return std::sqrt(s / v.size());
}

float max_abs(const Tensor& t) {
  float m = 0;
  for (float x : t.to_vector()) m = std::max(m, std::fabs(x));
  return m;
}

// ---------------------------------------------------------------- MobileNetV2 structure

TEST(MobileNetV2, StateDictMatchesTorchvisionNameByName) {
  MobileNetV2 model({.width_mult = 1.0, .in_channels = 3, .num_outputs = 1000});
  const std::vector<Entry> ref = torchvision_listing();
  ASSERT_EQ(ref.size(), 314u);
  TensorMap sd = model.state_dict();
  ASSERT_EQ(sd.size(), ref.size());
  std::vector<std::string> ref_params;
  for (const Entry& e : ref) {
    auto it = sd.find(e.name);
    ASSERT_NE(it, sd.end()) << e.name;
    EXPECT_EQ(it->second.tensor.shape(), e.shape) << e.name;
    EXPECT_EQ(dtype_name(it->second.dtype), e.dtype) << e.name;
    if (!is_buffer(e.name)) ref_params.push_back(e.name);
  }
  // Parameters come in torchvision's registration order (what optimizers and printers see).
  std::vector<std::string> ours;
  for (auto& [name, p] : model.named_parameters()) ours.push_back(name);
  EXPECT_EQ(ours, ref_params);
  EXPECT_EQ(model.num_parameters(), 3504872);  // torchvision's published count
  EXPECT_EQ(model.last_channel, 1280);
}

TEST(MobileNetV2, WidthAndChannelsFollowMakeDivisible) {
  EXPECT_EQ(make_divisible(32 * 0.35), 16);  // 11.2 -> 16 (never below 8, +8 if 10 % under)
  EXPECT_EQ(make_divisible(16 * 0.35), 8);
  EXPECT_EQ(make_divisible(24 * 0.35), 8);
  EXPECT_EQ(make_divisible(96 * 0.35), 32);  // 33.6 -> 32
  EXPECT_EQ(make_divisible(1280 * 1.4), 1792);
  MobileNetV2 m({.width_mult = 0.35, .in_channels = 1, .num_outputs = 1});
  TensorMap sd = m.state_dict();
  EXPECT_EQ(sd.at("features.0.0.weight").tensor.shape(), (Shape{16, 1, 3, 3}));
  EXPECT_EQ(sd.at("features.1.conv.0.0.weight").tensor.shape(), (Shape{16, 1, 3, 3}));  // t = 1: depthwise first
  EXPECT_EQ(sd.at("features.1.conv.1.weight").tensor.shape(), (Shape{8, 16, 1, 1}));
  EXPECT_EQ(sd.at("features.2.conv.0.0.weight").tensor.shape(), (Shape{48, 8, 1, 1}));
  EXPECT_EQ(sd.at("features.18.0.weight").tensor.shape(), (Shape{1280, 112, 1, 1}));
  EXPECT_EQ(sd.at("classifier.1.weight").tensor.shape(), (Shape{1, 1280}));
}

TEST(MobileNetV2, ResidualConnectionsWhereTorchvisionHasThem) {
  MobileNetV2 m({.width_mult = 1.0});
  std::set<int> with_residual;
  for (size_t i = 1; i + 1 < m.features->size(); ++i) {
    auto& block = dynamic_cast<InvertedResidual&>((*m.features)[i]);
    if (block.use_res_connect) with_residual.insert(static_cast<int>(i));
  }
  // Repeats after the first of each setting, at stride 1 with equal channels.
  EXPECT_EQ(with_residual, (std::set<int>{3, 5, 6, 8, 9, 10, 12, 13, 15, 16}));
}

TEST(MobileNetV2, ForwardShapesModesAndInitialisation) {
  MobileNetV2 m({.width_mult = 0.35, .in_channels = 1, .num_outputs = 3, .dropout = 0.2f, .seed = 5});
  Generator gen(1);
  Tensor x = Tensor::normal({2, 1, 32, 32}, 0, 1, gen);
  EXPECT_EQ(m(x).shape(), (Shape{2, 3}));
  EXPECT_THROW(m(Tensor::zeros({2, 3, 32, 32})), Error);
  m.eval();
  for (auto& [name, mod] : m.named_modules()) EXPECT_FALSE(mod->is_training()) << name;
  Tensor a = m(x), b = m(x);
  EXPECT_EQ(a.to_vector(), b.to_vector());  // eval: deterministic (no dropout, running stats)
  m.train();
  for (auto& [name, mod] : m.named_modules()) EXPECT_TRUE(mod->is_training()) << name;

  // torchvision's init: conv N(0, 2/fan_out), BN 1/0, Linear N(0, 0.01), biases 0.
  MobileNetV2 big({.width_mult = 1.0, .seed = 3});
  TensorMap sd = big.state_dict();
  const Tensor& w18 = sd.at("features.18.0.weight").tensor;  // [1280, 320, 1, 1], fan_out 1280
  EXPECT_NEAR(stddev(w18), std::sqrt(2.0 / 1280), 0.02 * std::sqrt(2.0 / 1280));
  const Tensor& dw = sd.at("features.2.conv.1.0.weight").tensor;  // [96, 1, 3, 3], fan_out 864
  EXPECT_NEAR(stddev(dw), std::sqrt(2.0 / 864), 0.1 * std::sqrt(2.0 / 864));
  EXPECT_NEAR(stddev(sd.at("classifier.1.weight").tensor), 0.01, 0.0005);
  EXPECT_EQ(max_abs(sd.at("classifier.1.bias").tensor), 0.f);
  EXPECT_EQ(sd.at("features.5.conv.1.1.weight").tensor.to_vector(), std::vector<float>(192, 1.f));
  EXPECT_EQ(max_abs(sd.at("features.5.conv.1.1.bias").tensor), 0.f);
  // Same seed, same weights; another seed, other weights.
  MobileNetV2 again({.width_mult = 1.0, .seed = 3}), other({.width_mult = 1.0, .seed = 4});
  EXPECT_EQ(again.state_dict().at("features.18.0.weight").tensor.to_vector(), w18.to_vector());
  EXPECT_NE(other.state_dict().at("features.18.0.weight").tensor.to_vector(), w18.to_vector());
}

TEST(MobileNetV2, FusedConvNormActivationEqualsItsChildrenInOrder) {
  // Conv2dNormActivation runs BatchNorm2d + ReLU6 as one fused op, except while a forward hook is
  // installed, when it runs its three children one by one. Two identical models, one through each
  // path, for two training steps' worth of forwards and one eval forward: same outputs, parameter
  // gradients, BN buffers (running stats and num_batches_tracked): bit for bit on this machine;
  // the tolerances leave room for a compiler contracting a*b + c differently in the two kernels.
  const MobileNetV2Options opt{.width_mult = 0.35, .in_channels = 1, .num_outputs = 2, .dropout = 0.f, .seed = 9};
  MobileNetV2 fused(opt), plain(opt);
  Generator gen(2);
  const Tensor x = Tensor::normal({4, 1, 32, 32}, 0, 1, gen), r = Tensor::normal({4, 2}, 0, 1, gen);
  int children_seen = 0;
  auto unfused = [&](const Tensor& in) {
    ForwardHookGuard guard([&](Module& m, const Tensor&, const Tensor&) { children_seen += m.type_name() == "ReLU6"; });
    return plain(in);
  };
  for (int step = 0; step < 2; ++step) {
    fused.zero_grad(), plain.zero_grad();
    Tensor yf = fused(x), yp = unfused(x);
    sum(yf * r).backward();
    sum(yp * r).backward();
    const std::vector<float> a = yf.to_vector(), b = yp.to_vector();
    for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5f * (1 + std::fabs(b[i]))) << i;
  }
  EXPECT_EQ(children_seen, 2 * 35);  // 17 blocks (16 with 2 ReLU6s, 1 with 1) + stem + last
  const auto pf = fused.named_parameters(), pp = plain.named_parameters();
  ASSERT_EQ(pf.size(), pp.size());
  for (size_t i = 0; i < pf.size(); ++i) {
    const std::vector<float> a = pf[i].second.grad().to_vector(), b = pp[i].second.grad().to_vector();
    const float scale = max_abs(pp[i].second.grad());
    for (size_t j = 0; j < a.size(); ++j) ASSERT_NEAR(a[j], b[j], 1e-4f * scale + 1e-9f) << pf[i].first << " " << j;
  }
  const TensorMap sf = fused.state_dict(), sp = plain.state_dict();
  for (const auto& [name, e] : sp) {
    if (!is_buffer(name)) continue;
    const std::vector<float> a = sf.at(name).tensor.to_vector(), b = e.tensor.to_vector();
    for (size_t j = 0; j < a.size(); ++j) ASSERT_NEAR(a[j], b[j], 1e-5f * (1 + std::fabs(b[j]))) << name << " " << j;
  }
  EXPECT_EQ(sf.at("features.0.1.num_batches_tracked").tensor.item(), 2.f);
  EXPECT_EQ(sf.at("features.1.conv.0.1.num_batches_tracked").tensor.item(), 2.f);
  fused.eval(), plain.eval();
  NoGradGuard no_grad;
  const std::vector<float> a = fused(x).to_vector(), b = unfused(x).to_vector();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5f * (1 + std::fabs(b[i]))) << "eval " << i;
}

TEST(MobileNetV2, ConvNormActivationKeepsItsChildrenAndNames) {
  Generator gen(3);
  Conv2dNormActivation c(4, 8, 3, 2, 1, gen);
  std::vector<std::string> names;
  for (const auto& [name, t] : c.state_dict()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean",
                                             "1.running_var", "1.weight"}));
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].type_name(), "Conv2d");
  EXPECT_EQ(c[1].type_name(), "BatchNorm2d");
  EXPECT_EQ(c[2].type_name(), "ReLU6");
  EXPECT_EQ(&c[0], c.conv.get());
  EXPECT_EQ(&c[1], c.bn.get());
  Tensor y = c(Tensor::ones({2, 4, 5, 5}));
  EXPECT_EQ(y.shape(), (Shape{2, 8, 3, 3}));
  EXPECT_EQ(c.bn->num_batches_tracked.item(), 1.f);
  EXPECT_THROW(c(Tensor::ones({2, 3, 5, 5})), Error);
}

// ---------------------------------------------------------------- layers

TEST(Layers, PyTorchDefaultInitialisation) {
  Generator gen(8);
  Conv2d conv(16, 32, 3, {.stride = 1, .padding = 1}, &gen);  // fan_in 144: bound 1/12
  EXPECT_EQ(conv.weight.shape(), (Shape{32, 16, 3, 3}));
  EXPECT_LE(max_abs(conv.weight), 1.f / 12);
  EXPECT_NEAR(stddev(conv.weight), 1.0 / 12 / std::sqrt(3.0), 0.03 / 12);
  EXPECT_LE(max_abs(conv.bias), 1.f / 12);
  EXPECT_GT(max_abs(conv.bias), 0.5f / 12);

  Conv2d depthwise(8, 8, 3, {.padding = 1, .groups = 8, .bias = false}, &gen);  // fan_in 9
  EXPECT_EQ(depthwise.weight.shape(), (Shape{8, 1, 3, 3}));
  EXPECT_FALSE(depthwise.bias.defined());
  EXPECT_LE(max_abs(depthwise.weight), 1.f / 3);

  Linear fc(400, 10, {}, &gen);
  EXPECT_LE(max_abs(fc.weight), 1.f / 20);
  EXPECT_NEAR(stddev(fc.weight), 1.0 / 20 / std::sqrt(3.0), 0.03 / 20);
  EXPECT_LE(max_abs(fc.bias), 1.f / 20);

  BatchNorm2d bn(4);
  EXPECT_EQ(bn.weight.to_vector(), std::vector<float>(4, 1.f));
  EXPECT_EQ(bn.bias.to_vector(), std::vector<float>(4, 0.f));
  EXPECT_EQ(bn.running_mean.to_vector(), std::vector<float>(4, 0.f));
  EXPECT_EQ(bn.running_var.to_vector(), std::vector<float>(4, 1.f));
  EXPECT_EQ(bn.num_batches_tracked.shape(), Shape{});
  EXPECT_EQ(bn.state_dict().at("num_batches_tracked").dtype, DType::I64);
}

TEST(Layers, BatchNormCountsBatchesOnlyInTraining) {
  BatchNorm2d bn(3);
  Generator gen(2);
  Tensor x = Tensor::normal({4, 3, 2, 2}, 1.f, 2.f, gen);
  bn(x);
  bn(x);
  EXPECT_EQ(bn.num_batches_tracked.item(), 2.f);
  std::vector<float> rm = bn.running_mean.to_vector();
  bn.eval();
  bn(x);
  EXPECT_EQ(bn.num_batches_tracked.item(), 2.f);
  EXPECT_EQ(bn.running_mean.to_vector(), rm);
}

TEST(Layers, ConstructorValidation) {
  EXPECT_THROW(Conv2d(3, 8, 3, {.groups = 2}), Error);
  EXPECT_THROW(Conv2d(0, 8, 3), Error);
  EXPECT_THROW(Conv2d(4, 8, 3, {.padding = -1}), Error);
  EXPECT_THROW(BatchNorm2d(4, {.momentum = 2.f}), Error);
  EXPECT_THROW(Dropout(1.5f), Error);
  EXPECT_THROW(AdaptiveAvgPool2d(2), Error);
  EXPECT_THROW(MobileNetV2({.width_mult = 0.0}), Error);
  BatchNorm2d bn(4);
  EXPECT_THROW(bn(Tensor::zeros({2, 3, 2, 2})), Error);
}

TEST(Sequential, NamesChildrenByPositionAndPrintsLikePyTorch) {
  Sequential s;
  s.push_back(std::make_shared<Linear>(4, 3));
  s.push_back(std::make_shared<ReLU6>());
  s.push_back(std::make_shared<Linear>(3, 2, LinearOptions{.bias = false}));
  std::vector<std::string> names;
  for (auto& [n, p] : s.named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "2.weight"}));
  EXPECT_EQ(s(Tensor::zeros({5, 4})).shape(), (Shape{5, 2}));
  const std::string r = s.repr();
  EXPECT_NE(r.find("(0): Linear(in_features=4, out_features=3, bias=True)"), std::string::npos) << r;
  EXPECT_NE(r.find("(2): Linear(in_features=3, out_features=2, bias=False)"), std::string::npos) << r;
}

// ---------------------------------------------------------------- state dicts

TEST(StateDict, RoundTripSharesNothingAndKeepsHandles) {
  MobileNetV2 a({.width_mult = 0.35, .in_channels = 1, .num_outputs = 2, .seed = 1});
  MobileNetV2 b({.width_mult = 0.35, .in_channels = 1, .num_outputs = 2, .seed = 2});
  Tensor handle = b.named_parameters().front().second;
  b.load_state_dict(a.state_dict());
  EXPECT_TRUE(b.named_parameters().front().second.same(handle));  // optimizers keep working
  TensorMap sa = a.state_dict(), sb = b.state_dict();
  for (auto& [name, r] : sa) EXPECT_EQ(r.tensor.to_vector(), sb.at(name).tensor.to_vector()) << name;
  // A copy, not an alias: changing b leaves a alone.
  handle.fill_(7.f);
  EXPECT_NE(a.named_parameters().front().second.to_vector()[0], 7.f);
}

TEST(StateDict, StrictLoadNamesTheOffendingTensorAndChangesNothing) {
  auto make = [] { return std::make_shared<MobileNetV2>(MobileNetV2Options{.width_mult = 0.35, .num_outputs = 2}); };
  auto model = make();
  const std::vector<float> before = model->state_dict().at("features.0.1.weight").tensor.to_vector();
  auto expect_error = [&](const TensorMap& sd, const std::string& fragment) {
    try {
      model->load_state_dict(sd);
      ADD_FAILURE() << "no error for " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
    EXPECT_EQ(model->state_dict().at("features.0.1.weight").tensor.to_vector(), before);
  };
  auto good = [&] {
    TensorMap sd;
    for (auto& [n, r] : make()->state_dict()) sd[n] = {r.tensor.clone(), r.dtype};
    for (auto& [n, r] : sd)
      if (n == "features.0.1.weight") r.tensor.fill_(3.f);
    return sd;
  };
  TensorMap missing = good();
  missing.erase("features.3.conv.1.1.running_var");
  expect_error(missing, "features.3.conv.1.1.running_var");
  TensorMap extra = good();
  extra["features.3.conv.9.weight"] = {Tensor::zeros({1}), DType::F32};
  expect_error(extra, "features.3.conv.9.weight");
  TensorMap shape = good();
  shape["classifier.1.weight"].tensor = Tensor::zeros({3, 1280});
  expect_error(shape, "classifier.1.weight");
  TensorMap dtype = good();
  dtype["features.2.conv.3.num_batches_tracked"].dtype = DType::F32;
  expect_error(dtype, "features.2.conv.3.num_batches_tracked");
  model->load_state_dict(good());
  EXPECT_EQ(model->state_dict().at("features.0.1.weight").tensor.to_vector()[0], 3.f);
}

TEST(Module, ZeroGradDropsEveryGradient) {
  Linear fc(3, 2);
  sum(fc(Tensor::ones({4, 3})) * 2.f).backward();
  EXPECT_TRUE(fc.weight.grad().defined());
  fc.zero_grad();
  for (auto& [n, p] : fc.named_parameters()) EXPECT_FALSE(p.grad().defined()) << n;
}

TEST(Module, ForwardHookSeesEveryLayer) {
  MobileNetV2 m({.width_mult = 0.35, .in_channels = 1, .num_outputs = 1});
  int convs = 0, total = 0;
  {
    ForwardHookGuard guard([&](Module& mod, const Tensor&, const Tensor&) {
      ++total;
      convs += mod.type_name() == "Conv2d";
    });
    m(Tensor::zeros({2, 1, 32, 32}));
  }
  EXPECT_EQ(convs, 52);  // 1 stem + 17 blocks (16 with 3 convs, 1 with 2) + 1 last
  const int seen = total;
  m(Tensor::zeros({2, 1, 32, 32}));
  EXPECT_EQ(total, seen);  // the hook is gone with its guard
}

}  // namespace
}  // namespace sleepnet::nn
