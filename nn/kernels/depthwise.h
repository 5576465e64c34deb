// nn/kernels/depthwise.h: depthwise 2-D convolution (groups == C == OC), written directly.
//
// MobileNetV2's 3x3 depthwise layers hold few weights and do few multiply-adds per byte moved, so
// im2col + GEMM (a [1, 9] x [9, OH*OW] product per channel) would spend its time copying. These
// kernels read each input plane once, straight from NCHW memory:
//
//   y[n, c, oh, ow] = bias[c] + sum over kh, kw of w[c, kh, kw] * x[n, c, oh*SH - PH + kh, ow*SW - PW + kw]
//
// (x is zero outside [0, H) x [0, W)). Every (n, c) plane is independent, so forward and
// backward-data run in parallel over N x C planes; backward-weight sums over n for each c, so it
// runs in parallel over C (each result is summed by one thread in a fixed order: the thread count
// does not change it). How a plane is computed depends on its size (depthwise.cpp): tiny planes
// (4x4, 2x2, ...) as a small dense matrix per channel; 3x3 with stride 1 or 2 (every other
// MobileNetV2 layer) as "flat polyphase" planes, one branch-free loop of nine shifted loads per
// plane with the padding in a per-thread buffer, or, on AVX-512 CPUs and for padding 1, straight
// from the input with masked loads; any other kernel, stride or padding through a general path.
// The backward passes are derived step by step in depthwise.cpp.
//
// Shapes: the geometry is a Conv2dGeom (conv.h) with groups == C == OC (channel multiplier 1).
//   x  [N, C, H, W]    w  [C, 1, KH, KW]    bias [C] (may be null)    y  [N, C, OH, OW]
// The bias gradient is conv2d_backward_bias(N, C, OH*OW, dy, db) from conv.h.
#pragma once

#include "nn/kernels/conv.h"

namespace sleepnet::kernels {

// y = depthwise_conv(x, w) + bias; y is overwritten.
void depthwise_forward(const Conv2dGeom& g, const float* x, const float* w, const float* bias, float* y);
void depthwise_forward_ref(const Conv2dGeom& g, const float* x, const float* w, const float* bias,
                           float* y);

// dx = dL/dx given dy; dx [N, C, H, W] is overwritten.
void depthwise_backward_data(const Conv2dGeom& g, const float* dy, const float* w, float* dx);
void depthwise_backward_data_ref(const Conv2dGeom& g, const float* dy, const float* w, float* dx);

// dw = dL/dw summed over the batch; dw [C, 1, KH, KW] is overwritten.
void depthwise_backward_weight(const Conv2dGeom& g, const float* x, const float* dy, float* dw);
void depthwise_backward_weight_ref(const Conv2dGeom& g, const float* x, const float* dy, float* dw);

// On CPUs with AVX-512 (GCC builds for the default x86-64 baseline, with the multiversioned
// kernels), every MobileNetV2 depthwise layer's forward and backward-data pass (3x3, padding 1,
// stride 1 or 2) is computed straight from the input, without the padded copy or the tiny path's
// matrices (depthwise.cpp, "straight from the input"), with the same bits. These two calls let
// tests and benchmarks compare the two. Not thread-safe: set it while no kernel runs.
bool depthwise_direct_available();
void depthwise_set_direct(bool on);  // ignored when not available

}  // namespace sleepnet::kernels
