// ops.h: raw tensor computations. They never record an autograd graph: autograd/ops.h wraps each
// of them in a differentiable op, and backward passes call them directly.
//
// Broadcasting follows NumPy: shapes are aligned from the right, and a dimension of size 1 (or a
// missing one) stretches to match. Results are always new contiguous tensors.
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace sleepnet::raw {

// ---- layout ----
Tensor contiguous(const Tensor& t);  // t itself when already contiguous
void fill(Tensor& dst, float value);
void copy(Tensor& dst, const Tensor& src);  // src broadcast to dst's shape; handles any strides
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Strides that read `t` as if it had shape `shape` (size-1 and missing dims get stride 0).
Shape broadcast_strides(const Tensor& t, const Shape& shape, const char* op);

// ---- elementwise ----
enum class Binary { Add, Sub, Mul, Div, Pow, Maximum, Minimum, Eq, Ne, Lt, Le, Gt, Ge };
enum class Unary { Neg, Exp, Log, Sqrt, Abs, Sign, Square, Reciprocal };
Tensor binary(Binary op, const Tensor& a, const Tensor& b);
Tensor binary(Binary op, const Tensor& a, float b);
Tensor unary(Unary op, const Tensor& a);
Tensor clamp(const Tensor& a, float lo, float hi);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // cond != 0 ? a : b
// 1 where lo < a < hi (strictly), else 0: the derivative mask of clamp.
Tensor inside(const Tensor& a, float lo, float hi);

// ---- reductions over `dims` (empty = all dims) ----
Tensor sum(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Variance with `correction` (1 = unbiased, as torch.var's default; 0 = biased).
Tensor var(const Tensor& a, const std::vector<int64_t>& dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor amax(const Tensor& a, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor argmax(const Tensor& a, int64_t dim, bool keepdim = false);  // indices stored as float
// Sums a broadcast gradient back to `shape` (the backward of broadcasting).
Tensor sum_to(const Tensor& g, const Shape& shape);

// ---- linear algebra (cblas_sgemm) ----
// [M, K] x [K, N] -> [M, N]; [B, M, K] x [B, K, N] -> [B, M, N] (batch dims broadcast);
// a 1-D operand is treated as a row (left) or column (right) vector and its dim removed after.
Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace sleepnet::raw
