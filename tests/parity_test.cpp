// parity_test.cpp: sleepnet against PyTorch, driven entirely by the fixture files.
//
// Every `*.safetensors` in the fixture directory becomes one test case (directory: the
// environment variable SLEEPNET_GOLDEN_DIR, default tests/golden/ of the repository; an empty or
// missing directory is a failure). Each file's `config` metadata says what was computed
// (tests/golden/make_golden.py, whose docstring is the format's definition):
//
//   kind "op"            one layer (conv2d, batchnorm2d, relu6, linear, global_avg_pool), train
//                        mode, loss = sum(output * proj): output, grad.input, grad.<param>,
//                        buffer.<name> after the forward
//   kind "mobilenet_v2"  torchvision's MobileNetV2 from `init.*`, `steps` steps of MSE (mean) +
//                        Adam/AdamW on one batch: output and grad.* of step 1, loss of every
//                        step, final.* (parameters and BN buffers), output_eval
//
// The file's `tolerances` metadata gives, per result tensor, the largest max|ours - ref| allowed;
// int64 tensors (num_batches_tracked) must match exactly. Every tensor's worst error is printed as
// a fraction of its tolerance, so drift shows long before a failure. A tolerance for a tensor the
// test did not compute is a failure too (nothing is skipped silently), as is a config key or value
// this code does not support.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "nn/mobilenet.h"
#include "nn/safetensors.h"
#include "optim/optimizer.h"

namespace sleepnet {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using nn::TensorMap;

std::string golden_dir() {
  const char* env = std::getenv("SLEEPNET_GOLDEN_DIR");
  return env && *env ? std::string(env) : std::string(SLEEPNET_SOURCE_DIR "/tests/golden");
}

// One entry per fixture file; a single empty entry when there are none (that case then fails).
std::vector<std::string> fixture_files() {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(golden_dir(), ec))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  if (files.empty()) files.push_back("");
  return files;
}

std::string case_name(const ::testing::TestParamInfo<std::string>& info) {
  if (info.param.empty()) return "no_fixtures";
  std::string s = fs::path(info.param).stem().string();
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

// ---------------------------------------------------------------- the fixture and the comparison

struct Fixture {
  std::string path;
  TensorMap tensors;
  json config;
  std::map<std::string, double> tolerances;

  const Tensor& get(const std::string& name) const {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw Error("fixture " + path + ": tensor '" + name + "' is missing");
    return it->second.tensor;
  }
  bool has(const std::string& name) const { return tensors.count(name) > 0; }
};

Fixture load_fixture(const std::string& path) {
  nn::SafetensorsFile f = nn::load_safetensors(path);
  Fixture fx{path, std::move(f.tensors), {}, {}};
  for (const char* key : {"config", "tolerances"})
    if (!f.metadata.count(key)) throw Error("fixture " + path + ": metadata has no '" + key + "'");
  fx.config = json::parse(f.metadata.at("config"));
  const json tol = json::parse(f.metadata.at("tolerances"));
  for (auto& [k, v] : tol.items()) {
    if (!v.is_number()) throw Error("fixture " + path + ": tolerance of '" + k + "' is not a number");
    fx.tolerances[k] = v.get<double>();
  }
  return fx;
}

struct Comparison {
  std::string name;
  double max_err = 0, tolerance = 0;
  size_t worst_index = 0;             // flat index of max_err, and the two values there
  double ours_at = 0, ref_at = 0;
  bool exact = false;  // int64: must be equal
  bool ok = true;
  std::string problem;
  double fraction() const { return exact ? (max_err == 0 ? 0.0 : INFINITY) : max_err / tolerance; }
};

class Checker {
 public:
  explicit Checker(const Fixture& fx) : fx_(fx) {}

  void compare(const std::string& name, const Tensor& ours) {
    Comparison c;
    c.name = name;
    checked_.insert(name);
    auto it = fx_.tensors.find(name);
    if (it == fx_.tensors.end()) {
      c.ok = false, c.problem = "not in the fixture";
    } else if (!ours.defined()) {
      c.ok = false, c.problem = "sleepnet computed no value (undefined gradient?)";
    } else if (ours.shape() != it->second.tensor.shape()) {
      c.ok = false, c.problem = "shape " + shape_str(ours.shape()) + " vs reference " + shape_str(it->second.tensor.shape());
    } else {
      c.exact = it->second.dtype == nn::DType::I64;
      if (!c.exact) {
        auto t = fx_.tolerances.find(name);
        if (t == fx_.tolerances.end()) {
          c.ok = false, c.problem = "no tolerance in the fixture";
        } else {
          c.tolerance = t->second;
        }
      }
      std::vector<float> a = ours.to_vector(), b = it->second.tensor.to_vector();
      for (size_t i = 0; i < a.size(); ++i) {
        const double e = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
        if (!(e <= c.max_err)) {
          c.max_err = std::isnan(e) ? INFINITY : e;
          c.worst_index = i, c.ours_at = a[i], c.ref_at = b[i];
        }
      }
      if (c.ok) c.ok = c.exact ? c.max_err == 0 : c.max_err <= c.tolerance;
    }
    results_.push_back(c);
  }

  // Declares tensors deliberately not compared (named in the output, never silently).
  void skip(const std::string& prefix) { skipped_.push_back(prefix); }

  // Prints the table and reports failures to gtest.
  void finish() {
    for (const auto& [name, tol] : fx_.tolerances)
      if (!checked_.count(name) &&
          std::none_of(skipped_.begin(), skipped_.end(), [&](const std::string& p) { return name.rfind(p, 0) == 0; })) {
        Comparison c;
        c.name = name, c.ok = false, c.problem = "has a tolerance but the test did not compute it";
        results_.push_back(c);
      }
    std::printf("%s\n  %-48s %11s %11s %9s\n", fx_.path.c_str(), "tensor", "max|err|", "tolerance", "fraction");
    const Comparison* worst = nullptr;
    for (const Comparison& c : results_) {
      if (!c.problem.empty()) {
        std::printf("  %-48s %s\n", c.name.c_str(), c.problem.c_str());
      } else if (c.exact) {
        std::printf("  %-48s %11.3g %11s %9s%s\n", c.name.c_str(), c.max_err, "exact", c.max_err == 0 ? "equal" : "DIFFERS",
                    c.ok ? "" : "  FAIL");
      } else {
        std::printf("  %-48s %11.3g %11.3g %9.3f%s\n", c.name.c_str(), c.max_err, c.tolerance, c.fraction(),
                    c.ok ? "" : "  FAIL");
        if (!c.ok)
          std::printf("  %-48s at flat index %zu: sleepnet %.9g, reference %.9g\n", "", c.worst_index, c.ours_at,
                      c.ref_at);
      }
      if (c.problem.empty() && (!worst || c.fraction() > worst->fraction())) worst = &c;
      EXPECT_TRUE(c.ok) << fx_.path << ": " << c.name << ": "
                        << (c.problem.empty() ? "max|err| " + std::to_string(c.max_err) + " > tolerance " +
                                                    std::to_string(c.tolerance) + " at flat index " +
                                                    std::to_string(c.worst_index)
                                              : c.problem);
    }
    if (worst)
      std::printf("  worst: %s at %.3f of its tolerance (%zu tensors compared)\n", worst->name.c_str(),
                  worst->fraction(), results_.size());
    std::fflush(stdout);
  }

 private:
  const Fixture& fx_;
  std::set<std::string> checked_;
  std::vector<Comparison> results_;
  std::vector<std::string> skipped_;
};

// ---------------------------------------------------------------- config reading

// Throws naming the file and key when a config field is absent or of the wrong type.
struct Config {
  const Fixture& fx;
  std::set<std::string> used{"kind"};

  const json& at(const std::string& key) {
    used.insert(key);
    if (!fx.config.contains(key)) throw Error("fixture " + fx.path + ": config has no '" + key + "'");
    return fx.config.at(key);
  }
  int64_t integer(const std::string& key) {
    const json& v = at(key);
    if (!v.is_number_integer()) throw Error("fixture " + fx.path + ": config '" + key + "' must be an integer");
    return v.get<int64_t>();
  }
  double number(const std::string& key) {
    const json& v = at(key);
    if (!v.is_number()) throw Error("fixture " + fx.path + ": config '" + key + "' must be a number");
    return v.get<double>();
  }
  bool boolean(const std::string& key) {
    const json& v = at(key);
    if (!v.is_boolean()) throw Error("fixture " + fx.path + ": config '" + key + "' must be true or false");
    return v.get<bool>();
  }
  std::string string(const std::string& key) {
    const json& v = at(key);
    if (!v.is_string()) throw Error("fixture " + fx.path + ": config '" + key + "' must be a string");
    return v.get<std::string>();
  }
  // Keys that only describe how the fixture was made, and do not change the computation.
  void ignore(const std::string& key) { used.insert(key); }
  // Every key of the config must have been understood.
  void expect_all_used() {
    for (auto& [k, v] : fx.config.items())
      if (!used.count(k))
        throw Error("fixture " + fx.path + ": config key '" + k + "' (= " + v.dump() +
                    ") is not supported by this parity test");
  }
};

// Copies the fixture's param.<name> into every parameter of `m` (and requires that there are no
// other param.* tensors).
void load_params(const Fixture& fx, nn::Module& m) {
  TensorMap params = nn::select_prefix(fx.tensors, "param.");
  std::set<std::string> names;
  for (auto& [name, p] : m.named_parameters()) {
    names.insert(name);
    auto it = params.find(name);
    if (it == params.end()) throw Error("fixture " + fx.path + ": no 'param." + name + "' for the module's " + name);
    if (it->second.tensor.shape() != p.shape())
      throw Error("fixture " + fx.path + ": 'param." + name + "' has shape " + shape_str(it->second.tensor.shape()) +
                  ", the module's " + name + " has " + shape_str(p.shape()));
    p.copy_(it->second.tensor);
  }
  for (auto& [name, r] : params)
    if (!names.count(name))
      throw Error("fixture " + fx.path + ": 'param." + name + "' does not match any parameter of " + m.type_name());
}

// ---------------------------------------------------------------- kind = "op"

void run_op(const Fixture& fx) {
  Config cfg{fx};
  const std::string op = cfg.string("op");
  const Tensor& input = fx.get("input");
  std::unique_ptr<nn::Module> m;
  if (op == "conv2d") {
    const Tensor& w = fx.get("param.weight");
    if (input.dim() != 4 || w.dim() != 4) throw Error("fixture " + fx.path + ": conv2d needs 4-d input and weight");
    const int64_t k = cfg.integer("kernel");
    if (w.size(2) != k || w.size(3) != k)
      throw Error("fixture " + fx.path + ": config kernel " + std::to_string(k) + " disagrees with param.weight " +
                  shape_str(w.shape()));
    m = std::make_unique<nn::Conv2d>(input.size(1), w.size(0), k,
                                     nn::Conv2dOptions{.stride = cfg.integer("stride"),
                                                       .padding = cfg.integer("padding"),
                                                       .groups = cfg.integer("groups"),
                                                       .bias = cfg.boolean("bias")});
  } else if (op == "batchnorm2d") {
    if (input.dim() != 4) throw Error("fixture " + fx.path + ": batchnorm2d needs a 4-d input");
    m = std::make_unique<nn::BatchNorm2d>(
        input.size(1), nn::BatchNorm2dOptions{.eps = static_cast<float>(cfg.number("eps")),
                                              .momentum = static_cast<float>(cfg.number("momentum"))});
  } else if (op == "relu6") {
    m = std::make_unique<nn::ReLU6>();
  } else if (op == "linear") {
    const Tensor& w = fx.get("param.weight");
    if (w.dim() != 2) throw Error("fixture " + fx.path + ": linear needs a 2-d param.weight");
    m = std::make_unique<nn::Linear>(w.size(1), w.size(0), nn::LinearOptions{.bias = fx.has("param.bias")});
  } else if (op == "global_avg_pool") {
    m = std::make_unique<nn::AdaptiveAvgPool2d>(1);
  } else {
    throw Error("fixture " + fx.path + ": op '" + op + "' is not supported (conv2d, batchnorm2d, relu6, linear, " +
                "global_avg_pool are)");
  }
  cfg.expect_all_used();
  load_params(fx, *m);

  m->train();
  // make_golden.py sizes `proj` with `module(x)` on the same module before copying it, in train
  // mode; that call updates BatchNorm's running statistics and num_batches_tracked. The stored
  // buffers are therefore those after two forwards, and so are ours.
  {
    NoGradGuard no_grad;
    (*m)(input);
  }
  Tensor x = input.clone().set_requires_grad(true);
  Tensor out = (*m)(x);
  Tensor loss = sum(out * fx.get("proj"));
  loss.backward();

  Checker check(fx);
  check.compare("output", out);
  check.compare("grad.input", x.grad());
  for (auto& [name, p] : m->named_parameters()) check.compare("grad." + name, p.grad());
  for (auto& [name, b] : m->named_buffers()) check.compare("buffer." + name, b);
  check.finish();
}

// ---------------------------------------------------------------- kind = "mobilenet_v2"

void run_mobilenet(const Fixture& fx) {
  Config cfg{fx};
  nn::MobileNetV2Options opt;
  opt.width_mult = cfg.number("width_mult");
  opt.in_channels = cfg.integer("in_channels");
  opt.num_outputs = cfg.integer("num_outputs");
  opt.dropout = static_cast<float>(cfg.number("dropout"));
  if (opt.dropout != 0.f)
    throw Error("fixture " + fx.path + ": config dropout = " + std::to_string(opt.dropout) +
                " is not supported (PyTorch's dropout masks cannot be reproduced; use 0)");
  opt.bn.momentum = static_cast<float>(cfg.number("bn_momentum"));
  opt.bn.eps = static_cast<float>(cfg.number("bn_eps"));
  const std::string loss_kind = cfg.string("loss");
  if (loss_kind != "mse_mean")
    throw Error("fixture " + fx.path + ": config loss '" + loss_kind + "' is not supported (mse_mean is)");
  const int64_t steps = cfg.integer("steps");
  if (steps < 1) throw Error("fixture " + fx.path + ": config steps must be >= 1");
  const json optimizer_config = cfg.at("optimizer");
  Shape input_shape;
  for (const json& d : cfg.at("input_shape")) input_shape.push_back(d.get<int64_t>());
  cfg.ignore("seed");  // the seed of PyTorch's initialisation; the weights come from init.*
  cfg.expect_all_used();

  const Tensor& input = fx.get("input");
  const Tensor& target = fx.get("target");
  if (input.shape() != input_shape)
    throw Error("fixture " + fx.path + ": input has shape " + shape_str(input.shape()) + ", config input_shape " +
                shape_str(input_shape));

  nn::MobileNetV2 model(opt);
  model.load_state_dict(nn::select_prefix(fx.tensors, "init."));
  std::unique_ptr<optim::Optimizer> optimizer = optim::make_optimizer(optimizer_config, model.named_parameters());

  Checker check(fx);
  model.train();
  std::vector<float> losses;
  for (int64_t step = 0; step < steps; ++step) {
    optimizer->zero_grad();
    Tensor out = model(input);
    Tensor loss = nn::functional::mse_loss(out, target);
    loss.backward();
    if (step == 0) {
      check.compare("output", out.detach());
      for (auto& [name, p] : model.named_parameters()) check.compare("grad." + name, p.grad());
    }
    optimizer->step();
    losses.push_back(loss.item());
  }
  check.compare("loss", Tensor::from_vector(losses, {steps}));
  // final.* and output_eval come after several Adam steps, which turn gradients that are pure
  // float32 rounding noise into full-size updates: they depend on the order of every float32 sum
  // (tests/golden/README.md). CI checks them in the Release build and sets this variable in the
  // builds that sum in other orders (sanitizers, no OpenMP), where step 1 and the losses are still
  // compared.
  if (std::getenv("SLEEPNET_PARITY_STEP1_ONLY")) {
    std::printf("  final.* and output_eval not compared (SLEEPNET_PARITY_STEP1_ONLY is set)\n");
    check.skip("final.");
    check.skip("output_eval");
  } else {
    for (auto& [name, r] : model.state_dict()) check.compare("final." + name, r.tensor);
    model.eval();
    NoGradGuard no_grad;
    check.compare("output_eval", model(input));
  }
  check.finish();
}

// ---------------------------------------------------------------- the parameterized test

class Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Parity, MatchesPyTorch) {
  const std::string& path = GetParam();
  ASSERT_FALSE(path.empty()) << "no *.safetensors fixtures in " << golden_dir()
                             << " (set SLEEPNET_GOLDEN_DIR to a directory of fixtures from make_golden.py)";
  Fixture fx = load_fixture(path);
  const std::string kind = fx.config.value("kind", "");
  if (kind == "op")
    run_op(fx);
  else if (kind == "mobilenet_v2")
    run_mobilenet(fx);
  else
    FAIL() << path << ": config kind '" << kind << "' is not supported (op, mobilenet_v2 are)";
}

INSTANTIATE_TEST_SUITE_P(Golden, Parity, ::testing::ValuesIn(fixture_files()), case_name);

}  // namespace
}  // namespace sleepnet
