// nn/functional.h: the differentiable layer operations (PyTorch's torch.nn.functional).
//
// Each op is defined once in functional.cpp: the forward calls a hand-written kernel from
// nn/kernels/, then `record(...)` attaches the backward, which calls the matching backward
// kernel with exactly the tensors the forward saved. The modules of nn/layers.h are thin wrappers
// that own the parameters and call these.
//
// Shapes use N C H W (batch, channels, height, width), OC output channels, KH KW kernel size,
// OH OW output size. Every op accepts non-contiguous inputs (it makes a contiguous copy first)
// and returns a new contiguous tensor.
//
// Losses reduce in double, so a loss over 100k elements keeps float32's precision.
#pragma once

#include <cstdint>

#include "autograd/engine.h"
#include "tensor/tensor.h"

namespace sleepnet::nn::functional {

// ---- convolution ----
// x [N, C, H, W], w [OC, C/groups, KH, KW], b [OC] or undefined -> y [N, OC, OH, OW]
// with OH = (H + 2*padding - KH) / stride + 1. Dispatches to the direct depthwise kernels when
// groups == C == OC, otherwise to im2col + GEMM (conv.h, which skips im2col for 1x1 stride 1).
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), int64_t stride = 1,
              int64_t padding = 0, int64_t groups = 1);

// ---- batch normalisation (BatchNorm2d) ----
// x [N, C, H, W]; weight, bias [C] (either may be undefined: 1 and 0); running_mean,
// running_var [C] (may be undefined in training: then no running statistics are kept).
// training: normalise with the batch's statistics and update the running ones in place
//           (running = (1 - momentum) * running + momentum * batch, batch variance unbiased);
// eval:     normalise with the running statistics.
// (The module increments its num_batches_tracked; this function does not know about it.)
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, float momentum = 0.1f, float eps = 1e-5f);

// BatchNorm2d followed by ReLU6 (MobileNetV2's Conv2dNormActivation), fused: the same arguments,
// statistics and running-statistic update as batch_norm, returns min(max(batch_norm(...), 0), 6)
// with the gradients of that composition (ReLU6's is zero at both kinks, as PyTorch's). One kernel
// pass writes the clamped output directly; the backward keeps x, mean, inverse std and the output
// (no intermediate BN output, no second full-size tensor in either direction).
Tensor batch_norm_relu6(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                        const Tensor& running_var, bool training, float momentum = 0.1f, float eps = 1e-5f);

// ---- activations, pooling, linear, dropout ----
// min(max(x, 0), 6); gradient 1 strictly inside (0, 6), 0 at and beyond the kinks (PyTorch).
Tensor relu6(const Tensor& x);
// x [N, C, H, W] -> [N, C, 1, 1], the mean over each plane. Only output size 1 is supported.
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t output_size = 1);
// x [N, IN], w [OUT, IN], b [OUT] or undefined -> [N, OUT] = x w^T + b.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());
// Training: zero each element with probability p (drawn from gen), scale the others by 1/(1-p).
// Eval or p == 0: returns x unchanged. p in [0, 1] (1 zeroes everything).
Tensor dropout(const Tensor& x, float p, bool training, Generator& gen);
// Dims start_dim.. merged into one (a view when possible, recorded by autograd).
Tensor flatten(const Tensor& x, int64_t start_dim = 1, int64_t end_dim = -1);

// ---- losses (0-dim results) ----
enum class Reduction { Mean, Sum };
// mean or sum of (input - target)^2; shapes must match. Gradients flow to both.
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean);
// mean over elements of  -[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], computed stably as
// max(x, 0) - x t + log(1 + exp(-|x|)). Gradients flow to both (d/dx = sigmoid(x) - t, d/dt = -x).
Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target,
                                        Reduction reduction = Reduction::Mean);

}  // namespace sleepnet::nn::functional

namespace sleepnet {
namespace F = nn::functional;
}
