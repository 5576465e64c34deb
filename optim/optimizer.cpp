// optim/optimizer.cpp: parameter bookkeeping, zero_grad, the strict state dict, make_optimizer.
#include "optim/optimizer.h"

#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "optim/adam.h"
#include "optim/sgd.h"

namespace sleepnet::optim {

namespace {

// float32 holds every whole number up to 2^24 exactly; step counts beyond that cannot be saved.
constexpr int64_t kMaxSavedStep = int64_t{1} << 24;

}  // namespace

Optimizer::Optimizer(NamedTensors params, double lr, std::string who)
    : params_(std::move(params)), who_(std::move(who)) {
  std::set<std::string> seen;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    if (name.empty()) throw Error(fmt::format("{}: parameter #{} has an empty name", who_, i));
    if (!seen.insert(name).second) throw Error(fmt::format("{}: parameter name '{}' appears twice", who_, name));
    if (!p.defined()) throw Error(fmt::format("{}: parameter '{}' is an undefined tensor", who_, name));
    if (!p.is_leaf()) throw Error(fmt::format("{}: parameter '{}' is not a leaf tensor (it has a grad_fn)", who_, name));
    if (!p.is_contiguous())
      throw Error(fmt::format("{}: parameter '{}' of shape {} is not contiguous", who_, name, shape_str(p.shape())));
  }
  set_lr(lr);
}

void Optimizer::set_lr(double lr) {
  if (!std::isfinite(lr) || lr < 0.0) throw Error(fmt::format("{}: lr must be finite and >= 0, got {}", who_, lr));
  lr_ = lr;
}

void Optimizer::init_state(std::vector<std::string> buffer_names) {
  buffer_names_ = std::move(buffer_names);
  state_.assign(params_.size(), ParamState{});
  for (size_t i = 0; i < params_.size(); ++i)
    for (size_t b = 0; b < buffer_names_.size(); ++b) state_[i].buffers.push_back(Tensor::zeros(params_[i].second.shape()));
  // State names cannot collide: parameter names are unique and no suffix (".step", ".exp_avg",
  // ".exp_avg_sq", ".momentum_buffer") ends with another one.
}

std::vector<std::string> Optimizer::state_suffixes() const {
  std::vector<std::string> out{".step"};
  for (const auto& b : buffer_names_) out.push_back("." + b);
  return out;
}

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
}

NamedTensors Optimizer::state_dict() const {
  NamedTensors out;
  out.reserve(params_.size() * (1 + buffer_names_.size()));
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& name = params_[i].first;
    if (state_[i].step > kMaxSavedStep)
      throw Error(fmt::format("{}.state_dict: step count {} of '{}' exceeds 2^24, which float32 cannot hold exactly",
                              who_, state_[i].step, name));
    out.emplace_back(name + ".step", Tensor::scalar(static_cast<float>(state_[i].step)));
    for (size_t b = 0; b < buffer_names_.size(); ++b)
      out.emplace_back(name + "." + buffer_names_[b], state_[i].buffers[b].clone());
  }
  return out;
}

void Optimizer::load_state_dict(const NamedTensors& state, const std::string& source) {
  const std::string where = fmt::format("{}.load_state_dict({})", who_, source);
  std::map<std::string, const Tensor*> given;
  for (const auto& [name, t] : state) {
    if (!given.emplace(name, &t).second) throw Error(fmt::format("{}: entry '{}' appears twice", where, name));
    if (!t.defined()) throw Error(fmt::format("{}: entry '{}' is an undefined tensor", where, name));
  }
  auto find = [&](const std::string& key, const Shape& shape) -> const Tensor& {
    auto it = given.find(key);
    if (it == given.end()) throw Error(fmt::format("{}: missing entry '{}' (expected shape {})", where, key, shape_str(shape)));
    if (it->second->shape() != shape)
      throw Error(fmt::format("{}: entry '{}' has shape {}, expected {}", where, key, shape_str(it->second->shape()),
                              shape_str(shape)));
    return *it->second;
  };

  // Validate everything first, so a bad state leaves the optimizer untouched.
  std::vector<int64_t> steps(params_.size());
  size_t expected = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    const std::string key = name + ".step";
    const float s = find(key, {}).item();
    if (!(s >= 0.f) || s != std::floor(s) || s > static_cast<float>(kMaxSavedStep))
      throw Error(fmt::format("{}: entry '{}' must be a whole number in [0, 2^24], got {}", where, key, s));
    steps[i] = static_cast<int64_t>(s);
    for (const auto& b : buffer_names_) find(name + "." + b, p.shape());
    expected += 1 + buffer_names_.size();
  }
  if (given.size() != expected) {
    std::set<std::string> known;
    for (const auto& [name, p] : params_)
      for (const auto& suffix : state_suffixes()) known.insert(name + suffix);
    for (const auto& [name, t] : given)
      if (!known.count(name)) throw Error(fmt::format("{}: unexpected entry '{}'", where, name));
  }

  for (size_t i = 0; i < params_.size(); ++i) {
    state_[i].step = steps[i];
    for (size_t b = 0; b < buffer_names_.size(); ++b)
      state_[i].buffers[b].copy_(*given.at(params_[i].first + "." + buffer_names_[b]));
  }
}

// ---- make_optimizer ----

namespace {

double get_number(const nlohmann::json& config, const char* key, double fallback) {
  if (!config.contains(key)) return fallback;
  const auto& v = config.at(key);
  if (!v.is_number()) throw Error(fmt::format("make_optimizer: config field '{}' must be a number, got {}", key, v.dump()));
  return v.get<double>();
}

void check_keys(const nlohmann::json& config, const std::set<std::string>& allowed, const std::string& name) {
  for (const auto& [key, value] : config.items()) {
    if (key == "amsgrad" || key == "maximize") {
      if (!value.is_boolean() || value.get<bool>())
        throw Error(fmt::format("make_optimizer: config field '{}' = {} is not supported (only false)", key, value.dump()));
      continue;
    }
    if (!allowed.count(key))
      throw Error(fmt::format("make_optimizer: unknown config field '{}' for optimizer '{}'", key, name));
  }
}

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& config, NamedTensors params) {
  if (!config.is_object()) throw Error("make_optimizer: config must be a JSON object, got " + config.dump());
  if (!config.contains("name") || !config.at("name").is_string())
    throw Error("make_optimizer: config field 'name' (\"adam\", \"adamw\" or \"sgd\") is missing");
  const std::string name = config.at("name").get<std::string>();
  if (name == "adam" || name == "adamw") {
    check_keys(config, {"name", "lr", "betas", "eps", "weight_decay"}, name);
    AdamOptions o;
    if (name == "adamw") o.weight_decay = AdamWOptions{}.weight_decay;
    o.lr = get_number(config, "lr", o.lr);
    o.eps = get_number(config, "eps", o.eps);
    o.weight_decay = get_number(config, "weight_decay", o.weight_decay);
    if (config.contains("betas")) {
      const auto& b = config.at("betas");
      if (!b.is_array() || b.size() != 2 || !b[0].is_number() || !b[1].is_number())
        throw Error("make_optimizer: config field 'betas' must be an array of two numbers, got " + b.dump());
      o.beta1 = b[0].get<double>();
      o.beta2 = b[1].get<double>();
    }
    if (name == "adam") return std::make_unique<Adam>(std::move(params), o);
    return std::make_unique<AdamW>(std::move(params), AdamWOptions{.lr = o.lr, .beta1 = o.beta1, .beta2 = o.beta2,
                                                                   .eps = o.eps, .weight_decay = o.weight_decay});
  }
  if (name == "sgd") {
    check_keys(config, {"name", "lr", "momentum", "dampening", "weight_decay", "nesterov"}, name);
    if (!config.contains("lr")) throw Error("make_optimizer: config field 'lr' is required for sgd");
    SGDOptions o;
    o.lr = get_number(config, "lr", o.lr);
    o.momentum = get_number(config, "momentum", o.momentum);
    o.dampening = get_number(config, "dampening", o.dampening);
    o.weight_decay = get_number(config, "weight_decay", o.weight_decay);
    if (config.contains("nesterov")) {
      if (!config.at("nesterov").is_boolean())
        throw Error("make_optimizer: config field 'nesterov' must be true or false, got " + config.at("nesterov").dump());
      o.nesterov = config.at("nesterov").get<bool>();
    }
    return std::make_unique<SGD>(std::move(params), o);
  }
  throw Error(fmt::format("make_optimizer: unknown optimizer name '{}' (expected \"adam\", \"adamw\" or \"sgd\")", name));
}

}  // namespace sleepnet::optim
