// optim/checkpoint.cpp: model + optimizer + schedule in one safetensors file (see checkpoint.h).
#include "optim/checkpoint.h"

#include <charconv>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace sleepnet::optim {

namespace {

constexpr const char* kOptimizerKey = "optimizer";
constexpr const char* kSchedulerStepKey = "lr_scheduler.last_step";

bool is_step_entry(const std::string& name) { return name.ends_with(".step"); }

}  // namespace

nn::TensorMap optimizer_state_records(const Optimizer& opt) {
  nn::TensorMap out;
  for (auto& [name, t] : opt.state_dict())
    out[name] = nn::TensorRecord{t, is_step_entry(name) ? nn::DType::I64 : nn::DType::F32};
  return out;
}

void load_optimizer_state(Optimizer& opt, const nn::TensorMap& records, const std::string& source) {
  NamedTensors state;
  state.reserve(records.size());
  for (const auto& [name, r] : records) state.emplace_back(name, r.tensor);
  opt.load_state_dict(state, source);  // strict: names, shapes, whole-number steps
}

void save_checkpoint(const std::string& path, const nn::TensorMap& model_state, const Optimizer& opt,
                     const LRScheduler* sched, const nn::Metadata& metadata) {
  for (const auto& [name, r] : model_state)
    if (name.starts_with(kOptimizerPrefix))
      throw Error(fmt::format("save_checkpoint({}): model tensor '{}' starts with the optimizer's prefix '{}'", path,
                              name, kOptimizerPrefix));
  for (const char* key : {kOptimizerKey, kSchedulerStepKey})
    if (metadata.count(key))
      throw Error(fmt::format("save_checkpoint({}): metadata key '{}' is reserved for the optimizer state", path, key));

  nn::TensorMap all = model_state;
  for (auto& [name, r] : nn::add_prefix(optimizer_state_records(opt), kOptimizerPrefix)) all[name] = r;
  nn::Metadata meta = metadata;
  meta[kOptimizerKey] = opt.config().dump();
  if (sched) meta[kSchedulerStepKey] = std::to_string(sched->last_step());
  nn::save_safetensors(path, all, meta);
}

LoadedCheckpoint load_checkpoint(const std::string& path, Optimizer& opt, LRScheduler* sched) {
  nn::SafetensorsFile file = nn::load_safetensors(path);
  const std::string where = fmt::format("load_checkpoint({})", path);

  // 1. Check everything that can fail before changing anything.
  auto it = file.metadata.find(kOptimizerKey);
  if (it == file.metadata.end())
    throw Error(fmt::format("{}: metadata key '{}' is missing: not a training checkpoint", where, kOptimizerKey));
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: metadata '{}' is not valid JSON: {}", where, kOptimizerKey, e.what()));
  }
  if (!config.is_object() || !config.contains("name") || !config.at("name").is_string())
    throw Error(fmt::format("{}: metadata '{}' has no optimizer \"name\": {}", where, kOptimizerKey, it->second));
  if (config.at("name").get<std::string>() != opt.name())
    throw Error(fmt::format("{}: the checkpoint holds the state of optimizer '{}', but the optimizer is '{}'", where,
                            config.at("name").get<std::string>(), opt.name()));

  double lr = opt.lr();
  int64_t last_step = 0;
  if (sched) {
    auto s = file.metadata.find(kSchedulerStepKey);
    if (s == file.metadata.end())
      throw Error(fmt::format("{}: metadata key '{}' is missing (the checkpoint was saved without a scheduler)",
                              where, kSchedulerStepKey));
    const std::string& v = s->second;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), last_step);
    if (ec != std::errc() || end != v.data() + v.size() || last_step < 0)
      throw Error(fmt::format("{}: metadata '{}' = '{}', expected a whole number >= 0", where, kSchedulerStepKey, v));
  } else {
    if (!config.contains("lr") || !config.at("lr").is_number())
      throw Error(fmt::format("{}: metadata '{}' has no numeric \"lr\": {}", where, kOptimizerKey, it->second));
    lr = config.at("lr").get<double>();
    if (!std::isfinite(lr) || lr < 0.0)
      throw Error(fmt::format("{}: metadata '{}' has lr = {}, expected finite and >= 0", where, kOptimizerKey, lr));
  }

  // 2. Restore. load_optimizer_state validates all entries before it copies any.
  load_optimizer_state(opt, nn::select_prefix(file.tensors, kOptimizerPrefix), path);
  if (sched)
    sched->set_step(last_step);
  else
    opt.set_lr(lr);

  return {nn::drop_prefix(file.tensors, kOptimizerPrefix), std::move(file.metadata)};
}

}  // namespace sleepnet::optim
