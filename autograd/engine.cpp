// engine.cpp: graph recording and the backward pass. Read engine.h first.
#include "autograd/engine.h"

#include <fmt/format.h>

#include <unordered_map>
#include <unordered_set>

#include "tensor/ops.h"

namespace sleepnet {

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }
NoGradGuard::NoGradGuard() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { g_grad_enabled = prev_; }

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool needs_grad(std::initializer_list<Tensor> inputs) { return needs_grad(std::vector<Tensor>(inputs)); }

Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs,
              std::function<grads(const Tensor&)> backward) {
  if (!needs_grad(inputs)) return out;
  auto node = std::make_shared<Node>();
  node->name = name;
  for (const Tensor& t : inputs) {
    Edge e;
    if (t.defined() && t.requires_grad()) {
      if (t.grad_fn())
        e.fn = t.grad_fn();
      else
        e.leaf = t.impl_ptr();
    }
    node->next.push_back(std::move(e));
    node->input_shapes.push_back(t.defined() ? t.shape() : Shape{});
  }
  node->backward = std::move(backward);
  // A view shares storage with its input but gets its own TensorImpl, so setting grad_fn here
  // never touches the input.
  TensorImpl* impl = out.unsafe_impl();
  if (impl->grad_fn || impl->requires_grad) {
    // An op returned one of its inputs unchanged (e.g. contiguous() of a contiguous tensor):
    // wrap it in a fresh impl so the input's history is not overwritten.
    out = Tensor::make_view(out.storage(), out.offset(), out.shape(), out.strides());
    impl = out.unsafe_impl();
  }
  impl->grad_fn = std::move(node);
  impl->requires_grad = true;
  return out;
}

// Adds `g` into a gradient slot (allocating it on first use).
static void accumulate(Tensor& slot, const Tensor& g) {
  if (!slot.defined())
    slot = g;  // pending gradients are never written in place, so sharing is safe
  else
    slot = raw::binary(raw::Binary::Add, slot, g);
}

static void accumulate_leaf(TensorImpl& leaf, const Tensor& g) {
  if (!leaf.grad) {
    Tensor c = g.clone();
    leaf.grad = c.impl_ptr();
    return;
  }
  Tensor acc(leaf.grad);
  Tensor sum = raw::binary(raw::Binary::Add, acc, g);
  acc.copy_(sum);
}

void run_backward(const Tensor& root, const Tensor& grad_in, bool retain_graph) {
  if (!root.requires_grad())
    throw Error("backward: the tensor does not require grad (no input of its graph has requires_grad)");
  Tensor grad = grad_in;
  if (!grad.defined()) {
    if (root.numel() != 1)
      throw Error(fmt::format("backward: a gradient must be given for a non-scalar output of shape {}",
                              shape_str(root.shape())));
    grad = Tensor::ones(root.shape());
  } else if (grad.shape() != root.shape()) {
    throw Error(fmt::format("backward: gradient of shape {} for an output of shape {}", shape_str(grad.shape()),
                            shape_str(root.shape())));
  }
  NoGradGuard no_grad;  // backward functions compute plain tensors
  if (root.is_leaf()) {
    accumulate_leaf(*root.unsafe_impl(), grad);
    return;
  }

  // Topological order: iterative depth-first search, post-order, then reversed.
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  std::vector<std::pair<Node*, size_t>> stack{{root.grad_fn().get(), 0}};
  seen.insert(root.grad_fn().get());
  while (!stack.empty()) {
    auto& [node, next_edge] = stack.back();
    if (next_edge < node->next.size()) {
      Node* child = node->next[next_edge++].fn.get();
      if (child && seen.insert(child).second) stack.push_back({child, 0});
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }

  std::unordered_map<Node*, Tensor> pending;  // gradient flowing into each node's output
  pending[root.grad_fn().get()] = grad;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = *it;
    auto found = pending.find(node);
    if (found == pending.end()) continue;  // no gradient reached this node
    Tensor g = std::move(found->second);
    pending.erase(found);
    if (!node->backward)
      throw Error(fmt::format("backward: the graph through '{}' was already freed; pass retain_graph=true to "
                              "backward twice",
                              node->name));
    grads in = node->backward(g);
    if (in.size() != node->next.size())
      throw Error(fmt::format("backward of '{}' returned {} gradients for {} inputs", node->name, in.size(),
                              node->next.size()));
    for (size_t i = 0; i < in.size(); ++i) {
      const Edge& e = node->next[i];
      if (!in[i].defined() || (!e.fn && !e.leaf)) continue;
      if (in[i].shape() != node->input_shapes[i])
        throw Error(fmt::format("backward of '{}': gradient {} has shape {}, its input has shape {}", node->name, i,
                                shape_str(in[i].shape()), shape_str(node->input_shapes[i])));
      if (e.fn)
        accumulate(pending[e.fn.get()], in[i]);
      else
        accumulate_leaf(*e.leaf, in[i]);
    }
    if (!retain_graph) node->backward = nullptr;  // frees what the op saved
  }
}

// ---------------------------------------------------------------- Tensor's autograd methods

Tensor& Tensor::set_requires_grad(bool on) {
  if (!is_leaf()) throw Error("set_requires_grad: only leaf tensors can change requires_grad (use detach())");
  impl().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }

void Tensor::set_grad(const Tensor& g) {
  if (g.defined() && g.shape() != shape())
    throw Error(fmt::format("set_grad: gradient of shape {} for a tensor of shape {}", shape_str(g.shape()),
                            shape_str(shape())));
  impl().grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::zero_grad() { impl().grad = nullptr; }

Tensor Tensor::detach() const { return make_view(storage(), offset(), shape(), strides()); }

void Tensor::backward(const Tensor& grad, bool retain_graph) const { run_backward(*this, grad, retain_graph); }

}  // namespace sleepnet
