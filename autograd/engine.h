// engine.h: the reverse-mode autograd engine.
//
// Every differentiable op that runs while grad mode is on, on at least one input that requires
// grad, attaches a Node to its output. The Node holds an Edge per input (to that input's own
// Node, or to the input itself when it is a leaf) and a `backward` function that maps the
// gradient of the output to the gradients of the inputs, using only what the op chose to save.
//
// `Tensor::backward()` sorts the graph topologically (iteratively, so deep graphs do not overflow
// the stack), then walks it from the output to the leaves, summing gradients where a tensor feeds
// several ops and accumulating them into each leaf's `.grad()`. Unless `retain_graph` is set, each
// node drops its saved tensors once used, and a second backward through it is an error.
//
// How an op is written (autograd/ops.cpp has many; nn/functional.cpp has the layers):
//
//     Tensor mul(const Tensor& a, const Tensor& b) {
//       Tensor out = raw::binary(raw::Binary::Mul, a, b);           // forward
//       return record("mul", out, {a, b}, [a, b](const Tensor& g) {  // backward, saving a and b
//         return grads{sum_to(g * b, a.shape()), sum_to(g * a, b.shape())};
//       });
//     }
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace sleepnet {

// Where a gradient goes: the Node that produced an input, or the input itself if it is a leaf.
struct Edge {
  std::shared_ptr<Node> fn;
  std::shared_ptr<TensorImpl> leaf;
};

using grads = std::vector<Tensor>;

struct Node {
  std::string name;                // the op, for error messages and graph printing
  std::vector<Edge> next;          // one per input, empty when that input needs no gradient
  std::vector<Shape> input_shapes; // gradients are checked against these
  // Maps d(loss)/d(output) to d(loss)/d(input_i); an undefined Tensor means "no gradient".
  std::function<grads(const Tensor& grad_output)> backward;
};

// Grad mode is on by default; NoGradGuard turns it off in a scope (per thread), as torch.no_grad().
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and some input requires grad: only then is a Node worth building.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Attaches a Node for `out` (computed from `inputs`) when needed, and returns `out`.
Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs,
              std::function<grads(const Tensor&)> backward);

// Runs backward from `root` (see Tensor::backward).
void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph);

}  // namespace sleepnet
