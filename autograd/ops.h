// ops.h: differentiable tensor operations. Each is defined once in ops.cpp, its backward right
// below its forward. They record the graph only when grad mode is on and an input requires grad;
// otherwise they cost what the raw computation in tensor/ops.h costs.
//
// Broadcasting follows NumPy; every backward sums the gradient back to its input's shape.
// Neural-network layers (conv2d, batch_norm, ...) are in nn/functional.h.
#pragma once

#include <vector>

#include "autograd/engine.h"
#include "tensor/tensor.h"

namespace sleepnet {

// ---- elementwise arithmetic (broadcasting) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor neg(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor sqrt(const Tensor& a);
Tensor pow(const Tensor& a, float exponent);
Tensor pow(const Tensor& a, const Tensor& exponent);  // a > 0 where exponent needs a gradient
Tensor abs(const Tensor& a);
Tensor clamp(const Tensor& a, float lo, float hi);  // gradient passes where lo <= a <= hi (PyTorch)
Tensor maximum(const Tensor& a, const Tensor& b);  // gradient split evenly on ties (PyTorch)
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // cond != 0 ? a : b
Tensor sigmoid(const Tensor& a);
Tensor tanh(const Tensor& a);

// ---- comparisons (not differentiable; 1.0 or 0.0) ----
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

// ---- reductions over dims (empty list = all dims) ----
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor var(const Tensor& a, const std::vector<int64_t>& dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor max(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);  // ties share the gradient
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim = false);                          // not differentiable

// ---- linear algebra ----
Tensor matmul(const Tensor& a, const Tensor& b);  // 1-D, 2-D and batched (broadcast batch dims)

// ---- joining ----
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);

}  // namespace sleepnet
