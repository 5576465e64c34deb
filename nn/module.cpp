// nn/module.cpp: registration, recursive traversal, train/eval and state dicts. See module.h.
#include "nn/module.h"

#include <fmt/format.h>

#include <cmath>
#include <set>

namespace sleepnet::nn {

namespace {
thread_local ForwardHook g_hook;
}

ForwardHookGuard::ForwardHookGuard(ForwardHook hook) : prev_(std::move(g_hook)) { g_hook = std::move(hook); }
ForwardHookGuard::~ForwardHookGuard() { g_hook = std::move(prev_); }
bool forward_hook_installed() { return static_cast<bool>(g_hook); }

Tensor Module::operator()(const Tensor& x) {
  Tensor y = forward(x);
  if (g_hook) g_hook(*this, x, y);
  return y;
}

// ---------------------------------------------------------------- registration

void Module::check_name(const std::string& name) const {
  if (name.empty() || name.find('.') != std::string::npos)
    throw Error(fmt::format("{}: invalid member name '{}' (must be non-empty, without '.')", type_name_, name));
  auto taken = [&](const std::string& n) { return n == name; };
  for (auto& [n, t] : params_)
    if (taken(n)) throw Error(fmt::format("{}: '{}' is already registered", type_name_, name));
  for (auto& b : buffers_)
    if (taken(b.name)) throw Error(fmt::format("{}: '{}' is already registered", type_name_, name));
  for (auto& [n, c] : children_)
    if (taken(n)) throw Error(fmt::format("{}: '{}' is already registered", type_name_, name));
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_name(name);
  if (!t.defined()) throw Error(fmt::format("{}: parameter '{}' is undefined", type_name_, name));
  if (!t.is_leaf()) t = t.detach();
  t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t, DType dtype) {
  check_name(name);
  if (!t.defined()) throw Error(fmt::format("{}: buffer '{}' is undefined", type_name_, name));
  if (dtype == DType::F64) throw Error(fmt::format("{}: buffer '{}': F64 buffers are not supported", type_name_, name));
  buffers_.push_back({name, t.detach(), dtype});
  return buffers_.back().tensor;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  check_name(name);
  if (!m) throw Error(fmt::format("{}: child '{}' is null", type_name_, name));
  m->train(training_);
  children_.emplace_back(name, std::move(m));
}

// ---------------------------------------------------------------- traversal

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Module*>>& out) const {
  out.emplace_back(prefix, const_cast<Module*>(this));
  for (auto& [n, c] : children_) c->collect(prefix.empty() ? n : prefix + "." + n, out);
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, Module*>> out;
  collect("", out);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_children() const {
  std::vector<std::pair<std::string, Module*>> out;
  for (auto& [n, c] : children_) out.emplace_back(n, c.get());
  return out;
}

static std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [prefix, m] : named_modules())
    for (auto& [n, t] : m->params_) out.emplace_back(join(prefix, n), t);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [prefix, m] : named_modules())
    for (auto& b : m->buffers_) out.emplace_back(join(prefix, b.name), b.tensor);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::zero_grad() {
  for (auto& [n, t] : named_parameters()) t.zero_grad();
}

// ---------------------------------------------------------------- state dict

TensorMap Module::state_dict() const {
  TensorMap out;
  for (auto& [prefix, m] : named_modules()) {
    for (auto& [n, t] : m->params_) out[join(prefix, n)] = {t.detach(), DType::F32};
    for (auto& b : m->buffers_) out[join(prefix, b.name)] = {b.tensor, b.dtype};
  }
  return out;
}

void Module::load_state_dict(const TensorMap& state) {
  struct Target {
    std::string name;
    Tensor tensor;
    DType dtype;
  };
  std::vector<Target> targets;
  for (auto& [prefix, m] : named_modules()) {
    for (auto& [n, t] : m->params_) targets.push_back({join(prefix, n), t, DType::F32});
    for (auto& b : m->buffers_) targets.push_back({join(prefix, b.name), b.tensor, b.dtype});
  }
  // Check everything first, so that a bad state dict leaves the module untouched.
  std::set<std::string> expected;
  std::vector<std::string> missing;
  for (const Target& t : targets) {
    expected.insert(t.name);
    auto it = state.find(t.name);
    if (it == state.end()) {
      missing.push_back(t.name);
      continue;
    }
    const TensorRecord& r = it->second;
    if (!r.tensor.defined()) throw Error(fmt::format("load_state_dict: '{}' is an undefined tensor", t.name));
    if (r.tensor.shape() != t.tensor.shape())
      throw Error(fmt::format("load_state_dict: '{}' has shape {} in the state dict, the model expects {}", t.name,
                              shape_str(r.tensor.shape()), shape_str(t.tensor.shape())));
    const bool want_int = t.dtype == DType::I64, got_int = r.dtype == DType::I64;
    if (want_int != got_int)
      throw Error(fmt::format("load_state_dict: '{}' has dtype {} in the state dict, the model expects {}", t.name,
                              dtype_name(r.dtype), dtype_name(t.dtype)));
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& n : missing) list += (list.empty() ? "" : ", ") + n;
    throw Error(fmt::format("load_state_dict: missing {} tensor(s): {}", missing.size(), list));
  }
  std::string unexpected;
  for (auto& [name, r] : state)
    if (!expected.count(name)) unexpected += (unexpected.empty() ? "" : ", ") + name;
  if (!unexpected.empty()) throw Error(fmt::format("load_state_dict: unexpected tensor(s): {}", unexpected));

  for (Target& t : targets) t.tensor.copy_(state.at(t.name).tensor);
}

// ---------------------------------------------------------------- printing

std::string Module::repr() const {
  std::string s = type_name_ + "(" + extra_repr();
  if (!children_.empty()) {
    s += "\n";
    for (auto& [n, c] : children_) {
      std::string child = c->repr();
      // indent every line of the child by two spaces
      std::string indented;
      for (size_t i = 0; i < child.size(); ++i) {
        indented += child[i];
        if (child[i] == '\n') indented += "  ";
      }
      s += "  (" + n + "): " + indented + "\n";
    }
  }
  return s + ")";
}

}  // namespace sleepnet::nn
