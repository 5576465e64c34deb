// nn/kernels/activation.h: the small kernels of MobileNetV2's head and activations.
//
//   ReLU6              y = min(max(x, 0), 6); dx = dy where 0 < x < 6, else 0 (PyTorch's
//                      hardtanh_backward: the gradient is 0 AT the kinks x = 0 and x = 6; a NaN
//                      input passes the gradient through, as in PyTorch)
//   global avg pool    [N, C, H*W] -> [N, C] (AdaptiveAvgPool2d(1)); backward spreads dy / (H*W)
//   linear             y = x W^T + b, W: [OUT, IN] (PyTorch's nn.Linear layout), via sgemm
//   dropout            y = x * mask, mask[i] = 1/(1-p) (kept) or 0 (dropped); the mask is made
//                      from uniform numbers the caller draws (so the kernel needs no generator)
//
// Element-wise kernels are parallel over elements with OpenMP; linear uses OpenBLAS with OpenMP's
// thread count. Every kernel has a `_ref` twin (plain loops) for the tests.
#pragma once

#include <cstdint>

namespace sleepnet::kernels {

// ---- ReLU6 (n elements, any shape) ----
void relu6_forward(int64_t n, const float* x, float* y);  // y may alias x (in place)
void relu6_forward_ref(int64_t n, const float* x, float* y);
// x may be the forward's input or its output (same mask). dx may alias dy.
void relu6_backward(int64_t n, const float* x, const float* dy, float* dx);
void relu6_backward_ref(int64_t n, const float* x, const float* dy, float* dx);

// ---- global average pooling: x [N, C, HW] -> y [N, C] ----
void global_avg_pool_forward(int64_t N, int64_t C, int64_t HW, const float* x, float* y);
void global_avg_pool_forward_ref(int64_t N, int64_t C, int64_t HW, const float* x, float* y);
// dx [N, C, HW] is overwritten with dy[n, c] / HW.
void global_avg_pool_backward(int64_t N, int64_t C, int64_t HW, const float* dy, float* dx);
void global_avg_pool_backward_ref(int64_t N, int64_t C, int64_t HW, const float* dy, float* dx);

// ---- linear: x [N, IN], w [OUT, IN], b [OUT] (may be null), y [N, OUT] ----
struct LinearGeom {
  int64_t N = 1, IN = 1, OUT = 1;
  void validate(const char* who) const;
};
void linear_forward(const LinearGeom& g, const float* x, const float* w, const float* b, float* y);
void linear_forward_ref(const LinearGeom& g, const float* x, const float* w, const float* b, float* y);
// dx [N, IN] = dy w;  dw [OUT, IN] = dy^T x;  db [OUT] = sum over n of dy. Each output may be
// null when not wanted; all are overwritten.
void linear_backward(const LinearGeom& g, const float* x, const float* w, const float* dy, float* dx,
                     float* dw, float* db);
void linear_backward_ref(const LinearGeom& g, const float* x, const float* w, const float* dy,
                         float* dx, float* dw, float* db);

// ---- dropout ----
// mask[i] = (u[i] < 1 - p) ? 1 / (1 - p) : 0 for uniform u in [0, 1) (PyTorch: bernoulli(1 - p)
// divided by 1 - p). p must be in [0, 1]; p == 1 drops everything.
void dropout_mask(int64_t n, float p, const float* uniform, float* mask);
void dropout_mask_ref(int64_t n, float p, const float* uniform, float* mask);
// y = x * mask (forward); the backward is the same product: dx = dy * mask.
void dropout_apply(int64_t n, const float* x, const float* mask, float* y);
void dropout_apply_ref(int64_t n, const float* x, const float* mask, float* y);
inline void dropout_forward(int64_t n, const float* x, const float* mask, float* y) {
  dropout_apply(n, x, mask, y);
}
inline void dropout_backward(int64_t n, const float* dy, const float* mask, float* dx) {
  dropout_apply(n, dy, mask, dx);
}

}  // namespace sleepnet::kernels
