// nn/kernels/batchnorm.h: BatchNorm2d kernels with PyTorch's exact semantics.
//
// For each channel c, over its M = N*H*W values:
//
//   train:  mean = sum(x) / M,  var = sum((x - mean)^2) / M   (biased: used to normalise)
//           invstd = 1 / sqrt(var + eps)
//           y = (x - mean) * invstd * weight + bias
//           running_mean = (1 - momentum) * running_mean + momentum * mean
//           running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)  (unbiased!)
//           save_mean, save_invstd are kept for the backward pass.
//   eval:   y = (x - running_mean) / sqrt(running_var + eps) * weight + bias
//
// As PyTorch's CPU kernel does, y is computed as x * alpha + beta with alpha = weight * invstd and
// beta = bias - mean * alpha. Sums are accumulated in double (blocks of float lanes flushed into
// double), so statistics match PyTorch to float precision even for 100k values per channel.
// Work is split over channels (train, backward) or over (n, c) planes (eval) with OpenMP, in one
// parallel region per call.
//
// Fused BatchNorm2d + ReLU6 (MobileNetV2's Conv2dNormActivation): y = min(max(bn(x), 0), 6) is
// written in the same pass that would write bn(x), so the intermediate BN output never exists.
// The backward needs only x, the saved statistics and the fused output y: ReLU6's gradient mask
// "0 < bn(x) < 6" (PyTorch's, zero at both kinks) is exactly "0 < y < 6", and xhat is recomputed
// from x, mean and invstd. Each fused kernel gives the same numbers as its two unfused kernels in
// sequence (same sums in the same order; only the extra tensor and memory pass are gone).
//
// Shapes: x, y, dy, dx [N, C, HW] (NCHW with H*W flattened); everything else [C].
// weight (gamma) and bias (beta) may be null (affine = false: weight 1, bias 0). running_mean and
// running_var may be null in train mode (track_running_stats = false). dweight and dbias may be
// null when not wanted. The backward pass is derived in batchnorm.cpp.
#pragma once

#include <cstdint>

namespace sleepnet::kernels {

struct BatchNormGeom {
  int64_t N = 1, C = 1, HW = 1;  // x: [N, C, HW]
  float eps = 1e-5f;
  float momentum = 0.1f;  // PyTorch's default; momentum = None (cumulative average) is not supported
  // Throws sleepnet::Error naming the field (sizes < 1, eps < 0, momentum outside [0, 1]).
  void validate(const char* who) const;
};

void batchnorm_forward_train(const BatchNormGeom& g, const float* x, const float* weight,
                             const float* bias, float* y, float* save_mean, float* save_invstd,
                             float* running_mean, float* running_var);
void batchnorm_forward_train_ref(const BatchNormGeom& g, const float* x, const float* weight,
                                 const float* bias, float* y, float* save_mean, float* save_invstd,
                                 float* running_mean, float* running_var);

void batchnorm_forward_eval(const BatchNormGeom& g, const float* x, const float* weight,
                            const float* bias, const float* running_mean, const float* running_var,
                            float* y);
void batchnorm_forward_eval_ref(const BatchNormGeom& g, const float* x, const float* weight,
                                const float* bias, const float* running_mean,
                                const float* running_var, float* y);

// Inference fusion: y = min(max(batchnorm_eval(x), 0), 6) in one pass over memory.
void batchnorm_relu6_eval(const BatchNormGeom& g, const float* x, const float* weight,
                          const float* bias, const float* running_mean, const float* running_var,
                          float* y);
void batchnorm_relu6_eval_ref(const BatchNormGeom& g, const float* x, const float* weight,
                              const float* bias, const float* running_mean,
                              const float* running_var, float* y);

// Training fusion: batchnorm_forward_train (same statistics, same running-stat update), then the
// clamp to [0, 6], in the normalisation pass.
void batchnorm_relu6_forward_train(const BatchNormGeom& g, const float* x, const float* weight,
                                   const float* bias, float* y, float* save_mean, float* save_invstd,
                                   float* running_mean, float* running_var);
void batchnorm_relu6_forward_train_ref(const BatchNormGeom& g, const float* x, const float* weight,
                                       const float* bias, float* y, float* save_mean,
                                       float* save_invstd, float* running_mean, float* running_var);

// Backward of the train-mode forward, from the statistics it saved. dx is overwritten.
void batchnorm_backward(const BatchNormGeom& g, const float* x, const float* dy, const float* weight,
                        const float* save_mean, const float* save_invstd, float* dx, float* dweight,
                        float* dbias);
void batchnorm_backward_ref(const BatchNormGeom& g, const float* x, const float* dy,
                            const float* weight, const float* save_mean, const float* save_invstd,
                            float* dx, float* dweight, float* dbias);

// Backward of the eval-mode forward (statistics are constants): dx = dy * weight * invstd,
// dweight = sum(dy * xhat), dbias = sum(dy), with invstd from the running variance.
void batchnorm_backward_eval(const BatchNormGeom& g, const float* x, const float* dy,
                             const float* weight, const float* running_mean,
                             const float* running_var, float* dx, float* dweight, float* dbias);
void batchnorm_backward_eval_ref(const BatchNormGeom& g, const float* x, const float* dy,
                                 const float* weight, const float* running_mean,
                                 const float* running_var, float* dx, float* dweight, float* dbias);

// Backward of the fused forwards, given their output y (the clamped one): dy is replaced by
// dy * [0 < y < 6] (read on the fly, never stored), then batchnorm_backward (train, from the saved
// statistics) or batchnorm_backward_eval (eval, from the running ones). dx is overwritten.
void batchnorm_relu6_backward(const BatchNormGeom& g, const float* x, const float* y, const float* dy,
                              const float* weight, const float* save_mean, const float* save_invstd,
                              float* dx, float* dweight, float* dbias);
void batchnorm_relu6_backward_ref(const BatchNormGeom& g, const float* x, const float* y,
                                  const float* dy, const float* weight, const float* save_mean,
                                  const float* save_invstd, float* dx, float* dweight, float* dbias);
void batchnorm_relu6_backward_eval(const BatchNormGeom& g, const float* x, const float* y,
                                   const float* dy, const float* weight, const float* running_mean,
                                   const float* running_var, float* dx, float* dweight, float* dbias);
void batchnorm_relu6_backward_eval_ref(const BatchNormGeom& g, const float* x, const float* y,
                                       const float* dy, const float* weight,
                                       const float* running_mean, const float* running_var, float* dx,
                                       float* dweight, float* dbias);

// The train-mode sums over planes of 16 or more values have two implementations that give the
// same bits: the `omp simd` loops, and on CPUs with AVX-512 (default GCC + OpenMP builds; not
// under sanitizers or -march=native) a hand-vectorised version that finishes sixteen blocks' sums
// at once (batchnorm.cpp, "Sixteen blocks at once"). The faster one is used when available; these
// two calls let tests and benchmarks compare them. Not thread-safe: set it while no kernel runs.
bool batchnorm_lanes16_available();
void batchnorm_set_lanes16(bool on);  // ignored when not available

}  // namespace sleepnet::kernels
