// nn/summary.cpp: see summary.h.
#include "nn/summary.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "autograd/engine.h"
#include "nn/layers.h"

namespace sleepnet::nn {

namespace {

// Multiply-adds of one call of a leaf layer (conventions in summary.h).
int64_t leaf_mult_adds(Module& m, const Tensor& in, const Tensor& out) {
  if (auto* c = dynamic_cast<Conv2d*>(&m)) {
    const int64_t per_output = (c->in_channels / c->options.groups) * c->kernel_size * c->kernel_size;
    return out.numel() * per_output;
  }
  if (auto* l = dynamic_cast<Linear*>(&m)) return out.numel() * l->in_features;
  if (dynamic_cast<BatchNorm2d*>(&m)) return in.numel();
  return 0;
}

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return v < 0 ? "-" + out : out;
}

std::string megabytes(int64_t bytes) { return fmt::format("{:.2f} MB", bytes / (1024.0 * 1024.0)); }

}  // namespace

ModelSummary summarize(Module& model, const Shape& input_shape) {
  ModelSummary s;
  s.input = input_shape;
  const auto modules = model.named_modules();
  std::map<const Module*, size_t> index;  // module -> its row
  for (const auto& [name, m] : modules) {
    LayerSummary row;
    row.name = name;
    row.type = m->type_name();
    row.depth = name.empty() ? 0 : 1 + static_cast<int>(std::count(name.begin(), name.end(), '.'));
    row.leaf = m->named_children().empty();
    row.params = m->num_parameters();
    index[m] = s.layers.size();
    s.layers.push_back(row);
  }
  const bool was_training = model.is_training();
  model.eval();
  {
    NoGradGuard no_grad;
    ForwardHookGuard hook([&](Module& m, const Tensor& in, const Tensor& out) {
      auto it = index.find(&m);
      if (it == index.end()) return;  // a module outside this model
      LayerSummary& row = s.layers[it->second];
      row.output = out.shape();
      row.activation_bytes = out.numel() * static_cast<int64_t>(sizeof(float));
      if (row.leaf) row.mult_adds += leaf_mult_adds(m, in, out);
    });
    try {
      model(Tensor::zeros(input_shape));
    } catch (...) {
      model.train(was_training);
      throw;
    }
  }
  model.train(was_training);

  // Containers: sum of mult-adds below them. Rows are in pre-order, so walk backwards and add
  // each row into its nearest shallower predecessor (its parent).
  for (size_t i = s.layers.size(); i-- > 1;) {
    size_t p = i;
    while (p > 0 && s.layers[p - 1].depth >= s.layers[i].depth) --p;
    if (p > 0) s.layers[p - 1].mult_adds += s.layers[i].mult_adds;
  }
  for (const LayerSummary& row : s.layers)
    if (row.leaf) {
      s.total_mult_adds += row.mult_adds;
      s.total_activation_bytes += row.activation_bytes;
    }
  s.total_params = model.num_parameters();
  for (auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) s.trainable_params += p.numel();
  s.input_bytes = shape_numel(input_shape) * static_cast<int64_t>(sizeof(float));
  s.param_bytes = s.total_params * static_cast<int64_t>(sizeof(float));
  return s;
}

std::string format_summary(const ModelSummary& s, int max_depth) {
  std::string out;
  const std::string rule(112, '-');
  out += rule + "\n";
  out += fmt::format("{:<52} {:<20} {:>12} {:>15} {:>10}\n", "Layer (type)", "Output shape", "Params",
                     "Mult-adds", "Act. MB");
  out += rule + "\n";
  for (const LayerSummary& row : s.layers) {
    if (max_depth >= 0 && row.depth > max_depth) continue;
    const std::string label = std::string(2 * row.depth, ' ') + (row.name.empty() ? "" : row.name + " ") + "(" +
                              row.type + ")";
    out += fmt::format("{:<52} {:<20} {:>12} {:>15} {:>10.3f}\n", label,
                       row.output.empty() && row.activation_bytes == 0 ? "--" : shape_str(row.output),
                       row.params ? with_commas(row.params) : "--", row.mult_adds ? with_commas(row.mult_adds) : "--",
                       row.activation_bytes / (1024.0 * 1024.0));
  }
  out += rule + "\n";
  out += fmt::format("Total params: {}\nTrainable params: {}\nTotal mult-adds: {} ({:.2f} M)\n",
                     with_commas(s.total_params), with_commas(s.trainable_params), with_commas(s.total_mult_adds),
                     s.total_mult_adds / 1e6);
  out += rule + "\n";
  out += fmt::format("Input size: {}\nActivations (forward, leaf layers): {}\nParams size: {}\nEstimated total: {}\n",
                     megabytes(s.input_bytes), megabytes(s.total_activation_bytes), megabytes(s.param_bytes),
                     megabytes(s.input_bytes + s.total_activation_bytes + s.param_bytes));
  out += rule + "\n";
  return out;
}

std::string summary(Module& model, const Shape& input_shape, int max_depth) {
  return format_summary(summarize(model, input_shape), max_depth);
}

}  // namespace sleepnet::nn
