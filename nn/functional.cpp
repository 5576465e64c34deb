// nn/functional.cpp: every layer op, its backward right below its forward. See functional.h.
//
// The pattern (autograd/engine.h): compute the forward with a kernel into a new tensor, then
// `record` a closure that holds what the backward reads (detached tensors, plain numbers) and
// maps dL/dy to dL/d(each input). Gradients an input does not need are not computed at all: the
// closure remembers at forward time which inputs require grad, so the first convolution of a
// network never pays for a gradient of the images.
#include "nn/functional.h"

#include <fmt/format.h>

#include <cmath>

#include "nn/kernels/activation.h"
#include "nn/kernels/batchnorm.h"
#include "nn/kernels/conv.h"
#include "nn/kernels/depthwise.h"
#include "tensor/ops.h"

namespace sleepnet::nn::functional {

namespace {

// A contiguous tensor with the same values and no history (a copy only when needed).
Tensor dense(const Tensor& t) { return raw::contiguous(t.detach()); }

bool wants_grad(const Tensor& t) { return t.defined() && t.requires_grad() && grad_enabled(); }

void expect_dim(const Tensor& t, int64_t d, const char* op, const char* what) {
  if (!t.defined()) throw Error(fmt::format("{}: {} is undefined", op, what));
  if (t.dim() != d)
    throw Error(fmt::format("{}: {} must have {} dims, got shape {}", op, what, d, shape_str(t.shape())));
}

void expect_vector(const Tensor& t, int64_t n, const char* op, const char* what) {
  if (!t.defined()) return;
  if (t.dim() != 1 || t.size(0) != n)
    throw Error(fmt::format("{}: {} must have shape [{}], got {}", op, what, n, shape_str(t.shape())));
}

}  // namespace

// ================================================================ conv2d
//
// y = conv(x, w) + b. The backward is three products of the same matrices (nn/kernels/conv.h):
//   dx = conv_transpose(dy, w)   (backward-data)
//   dw = sum_n dy_n * col(x_n)^T (backward-weight)
//   db = sum over n, oh, ow of dy

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride, int64_t padding, int64_t groups) {
  expect_dim(x, 4, "conv2d", "input x");
  expect_dim(w, 4, "conv2d", "weight w");
  if (groups < 1) throw Error(fmt::format("conv2d: groups = {}, expected >= 1", groups));
  kernels::Conv2dGeom g;
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.OC = w.size(0), g.KH = w.size(2), g.KW = w.size(3);
  g.SH = g.SW = stride;
  g.PH = g.PW = padding;
  g.groups = groups;
  if (g.C % groups != 0 || w.size(1) != g.C / groups)
    throw Error(fmt::format("conv2d: weight {} does not fit input {} with groups = {} (expected [OC, {}, KH, KW])",
                            shape_str(w.shape()), shape_str(x.shape()), groups,
                            g.C % groups == 0 ? std::to_string(g.C / groups) : "C/groups"));
  expect_vector(b, g.OC, "conv2d", "bias b");
  g.validate("conv2d");
  const bool depthwise = groups == g.C && groups == g.OC;

  Tensor xc = dense(x), wc = dense(w), bc = b.defined() ? dense(b) : Tensor();
  Tensor y = Tensor::empty({g.N, g.OC, g.OH(), g.OW()});
  const float* bias = bc.defined() ? bc.data() : nullptr;
  const bool need_x = wants_grad(x), need_w = wants_grad(w), need_b = wants_grad(b);
  if (depthwise)
    kernels::depthwise_forward(g, xc.data(), wc.data(), bias, y.data());
  else  // with no graph to record (inference), 1x1 layers on small planes may merge images
    kernels::conv2d_forward(g, xc.data(), wc.data(), bias, y.data(),
                            need_x || need_w || need_b ? kernels::ConvThreading::Auto : kernels::ConvThreading::Chunks);

  std::vector<Tensor> inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  return record("conv2d", y, inputs,
                [g, depthwise, need_x, need_w, need_b, has_b = b.defined(), xc = need_w ? xc : Tensor(),
                 wc = need_x ? wc : Tensor()](const Tensor& grad) {
                  Tensor dy = raw::contiguous(grad);
                  Tensor dx, dw, db;
                  if (need_x) {
                    dx = Tensor::empty({g.N, g.C, g.H, g.W});
                    if (depthwise)
                      kernels::depthwise_backward_data(g, dy.data(), wc.data(), dx.data());
                    else
                      kernels::conv2d_backward_data(g, dy.data(), wc.data(), dx.data());
                  }
                  if (need_w) {
                    dw = Tensor::empty({g.OC, g.Cg(), g.KH, g.KW});
                    if (depthwise)
                      kernels::depthwise_backward_weight(g, xc.data(), dy.data(), dw.data());
                    else
                      kernels::conv2d_backward_weight(g, xc.data(), dy.data(), dw.data());
                  }
                  if (need_b) {
                    db = Tensor::empty({g.OC});
                    kernels::conv2d_backward_bias(g.N, g.OC, g.OH() * g.OW(), dy.data(), db.data());
                  }
                  grads out{dx, dw};
                  if (has_b) out.push_back(db);
                  return out;
                });
}

// ================================================================ batch_norm, batch_norm_relu6
//
// Per channel c over its M = N*H*W values (derivation in nn/kernels/batchnorm.cpp and nn/README.md):
//   forward  xhat = (x - mean) * invstd,  y = weight * xhat + bias
//   backward dbias = sum(dy),  dweight = sum(dy * xhat),
//            dx = weight * invstd * (dy - dbias / M - xhat * dweight / M)      (training)
//            dx = weight * invstd_running * dy                                (eval)
// batch_norm_relu6 returns z = min(max(y, 0), 6) from the same kernels' fused variants. Its
// backward first masks dz by 0 < z < 6 (ReLU6's gradient, which is the same mask as 0 < y < 6)
// inside the kernel, then runs the formulas above with xhat recomputed from x, mean and invstd:
// so it saves x, the statistics and z, and the unclamped y is never stored.

namespace {

Tensor batch_norm_impl(const char* op, bool relu6, const Tensor& x, const Tensor& weight, const Tensor& bias,
                       const Tensor& running_mean, const Tensor& running_var, bool training, float momentum,
                       float eps) {
  expect_dim(x, 4, op, "input x");
  const int64_t C = x.size(1);
  expect_vector(weight, C, op, "weight");
  expect_vector(bias, C, op, "bias");
  expect_vector(running_mean, C, op, "running_mean");
  expect_vector(running_var, C, op, "running_var");
  if (running_mean.defined() != running_var.defined())
    throw Error(fmt::format("{}: running_mean and running_var must both be given or both be undefined", op));
  if (!training && !running_mean.defined())
    throw Error(fmt::format("{}: eval mode needs running_mean and running_var", op));
  for (const Tensor* r : {&running_mean, &running_var})
    if (r->defined() && !r->is_contiguous())
      throw Error(fmt::format("{}: running statistics must be contiguous (they are updated in place)", op));

  kernels::BatchNormGeom g;
  g.N = x.size(0), g.C = C, g.HW = x.size(2) * x.size(3);
  g.eps = eps, g.momentum = momentum;
  g.validate(op);
  if (training && g.N * g.HW < 2)
    throw Error(fmt::format("{}: training needs more than one value per channel, got input {}", op,
                            shape_str(x.shape())));

  Tensor xc = dense(x);
  Tensor wc = weight.defined() ? dense(weight) : Tensor(), bc = bias.defined() ? dense(bias) : Tensor();
  const float* wp = wc.defined() ? wc.data() : nullptr;
  const float* bp = bc.defined() ? bc.data() : nullptr;
  Tensor y = Tensor::empty(x.shape());
  std::vector<Tensor> inputs{x};
  if (weight.defined()) inputs.push_back(weight);
  if (bias.defined()) inputs.push_back(bias);
  const bool has_w = weight.defined(), has_b = bias.defined();
  const bool need_x = wants_grad(x), need_w = wants_grad(weight), need_b = wants_grad(bias);
  // The fused backward reads ReLU6's mask from the output (a handle without history: no cycle).
  Tensor z = relu6 ? y.detach() : Tensor();

  // Gathers {dx, dweight, dbias} in the order of `inputs`.
  auto pack = [has_w, has_b](Tensor dx, Tensor dw, Tensor db) {
    grads out{std::move(dx)};
    if (has_w) out.push_back(std::move(dw));
    if (has_b) out.push_back(std::move(db));
    return out;
  };

  if (training) {
    Tensor save_mean = Tensor::empty({C}), save_invstd = Tensor::empty({C});
    float* rm = running_mean.defined() ? const_cast<Tensor&>(running_mean).data() : nullptr;
    float* rv = running_var.defined() ? const_cast<Tensor&>(running_var).data() : nullptr;
    (relu6 ? kernels::batchnorm_relu6_forward_train : kernels::batchnorm_forward_train)(
        g, xc.data(), wp, bp, y.data(), save_mean.data(), save_invstd.data(), rm, rv);
    return record(op, y, inputs,
                  [g, xc, wc, z, save_mean, save_invstd, need_x, need_w, need_b, pack](const Tensor& grad) {
                    Tensor dy = raw::contiguous(grad);
                    Tensor dx = Tensor::empty(xc.shape()), dw = Tensor::empty({g.C}), db = Tensor::empty({g.C});
                    const float* w = wc.defined() ? wc.data() : nullptr;
                    if (z.defined())
                      kernels::batchnorm_relu6_backward(g, xc.data(), z.data(), dy.data(), w, save_mean.data(),
                                                        save_invstd.data(), dx.data(), dw.data(), db.data());
                    else
                      kernels::batchnorm_backward(g, xc.data(), dy.data(), w, save_mean.data(), save_invstd.data(),
                                                  dx.data(), dw.data(), db.data());
                    return pack(need_x ? dx : Tensor(), need_w ? dw : Tensor(), need_b ? db : Tensor());
                  });
  }
  Tensor rm = dense(running_mean), rv = dense(running_var);
  (relu6 ? kernels::batchnorm_relu6_eval : kernels::batchnorm_forward_eval)(g, xc.data(), wp, bp, rm.data(),
                                                                           rv.data(), y.data());
  // Nothing to save when no gradient will be asked for (inference under NoGradGuard).
  if (!need_x && !need_w && !need_b) return y;
  // The running statistics may change after this call (a later training step), so the backward
  // keeps copies of the ones used here.
  return record(op, y, inputs,
                [g, xc, wc, z, rm = rm.clone(), rv = rv.clone(), need_x, need_w, need_b, pack](const Tensor& grad) {
                  Tensor dy = raw::contiguous(grad);
                  Tensor dx = Tensor::empty(xc.shape()), dw = Tensor::empty({g.C}), db = Tensor::empty({g.C});
                  const float* w = wc.defined() ? wc.data() : nullptr;
                  if (z.defined())
                    kernels::batchnorm_relu6_backward_eval(g, xc.data(), z.data(), dy.data(), w, rm.data(),
                                                           rv.data(), dx.data(), dw.data(), db.data());
                  else
                    kernels::batchnorm_backward_eval(g, xc.data(), dy.data(), w, rm.data(), rv.data(), dx.data(),
                                                     dw.data(), db.data());
                  return pack(need_x ? dx : Tensor(), need_w ? dw : Tensor(), need_b ? db : Tensor());
                });
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, float momentum, float eps) {
  return batch_norm_impl("batch_norm", false, x, weight, bias, running_mean, running_var, training, momentum, eps);
}

Tensor batch_norm_relu6(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                        const Tensor& running_var, bool training, float momentum, float eps) {
  return batch_norm_impl("batch_norm_relu6", true, x, weight, bias, running_mean, running_var, training, momentum,
                         eps);
}

// ================================================================ relu6, pooling, linear, dropout

Tensor relu6(const Tensor& x) {
  if (!x.defined()) throw Error("relu6: undefined input");
  Tensor xc = dense(x);
  Tensor y = Tensor::empty(x.shape());
  kernels::relu6_forward(xc.numel(), xc.data(), y.data());
  // The output carries the same mask as the input (0 < y < 6 exactly where 0 < x < 6), so the
  // backward saves y and lets x be freed.
  return record("relu6", y, {x}, [y = y.detach()](const Tensor& g) {
    Tensor dy = raw::contiguous(g);
    Tensor dx = Tensor::empty(y.shape());
    kernels::relu6_backward(y.numel(), y.data(), dy.data(), dx.data());
    return grads{dx};
  });
}

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t output_size) {
  if (output_size != 1)
    throw Error(fmt::format("adaptive_avg_pool2d: output_size = {}; only 1 (global average pooling) is supported",
                            output_size));
  expect_dim(x, 4, "adaptive_avg_pool2d", "input x");
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  if (N * C * HW == 0) throw Error(fmt::format("adaptive_avg_pool2d: empty input {}", shape_str(x.shape())));
  Tensor xc = dense(x);
  Tensor y = Tensor::empty({N, C, 1, 1});
  kernels::global_avg_pool_forward(N, C, HW, xc.data(), y.data());
  return record("adaptive_avg_pool2d", y, {x}, [N, C, HW, shape = x.shape()](const Tensor& g) {
    Tensor dy = raw::contiguous(g);
    Tensor dx = Tensor::empty(shape);
    kernels::global_avg_pool_backward(N, C, HW, dy.data(), dx.data());
    return grads{dx};
  });
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  expect_dim(x, 2, "linear", "input x");
  expect_dim(w, 2, "linear", "weight w");
  kernels::LinearGeom g;
  g.N = x.size(0), g.IN = x.size(1), g.OUT = w.size(0);
  if (w.size(1) != g.IN)
    throw Error(fmt::format("linear: weight {} does not fit input {} (expected [OUT, {}])", shape_str(w.shape()),
                            shape_str(x.shape()), g.IN));
  expect_vector(b, g.OUT, "linear", "bias b");
  g.validate("linear");
  Tensor xc = dense(x), wc = dense(w), bc = b.defined() ? dense(b) : Tensor();
  Tensor y = Tensor::empty({g.N, g.OUT});
  kernels::linear_forward(g, xc.data(), wc.data(), bc.defined() ? bc.data() : nullptr, y.data());
  const bool need_x = wants_grad(x), need_w = wants_grad(w), need_b = wants_grad(b);
  std::vector<Tensor> inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  return record("linear", y, inputs,
                [g, xc, wc, need_x, need_w, need_b, has_b = b.defined()](const Tensor& grad) {
                  Tensor dy = raw::contiguous(grad);
                  Tensor dx = need_x ? Tensor::empty({g.N, g.IN}) : Tensor();
                  Tensor dw = need_w ? Tensor::empty({g.OUT, g.IN}) : Tensor();
                  Tensor db = need_b ? Tensor::empty({g.OUT}) : Tensor();
                  kernels::linear_backward(g, xc.data(), wc.data(), dy.data(), need_x ? dx.data() : nullptr,
                                           need_w ? dw.data() : nullptr, need_b ? db.data() : nullptr);
                  grads out{dx, dw};
                  if (has_b) out.push_back(db);
                  return out;
                });
}

Tensor dropout(const Tensor& x, float p, bool training, Generator& gen) {
  if (!x.defined()) throw Error("dropout: undefined input");
  if (!(p >= 0.f && p <= 1.f)) throw Error(fmt::format("dropout: p = {}, expected in [0, 1]", p));
  if (!training || p == 0.f) return x;
  const int64_t n = x.numel();
  Tensor xc = dense(x);
  // The mask is drawn in element order from `gen`, so the same seed gives the same mask on every
  // machine and thread count.
  Tensor u = Tensor::empty(x.shape());
  float* up = u.data();
  for (int64_t i = 0; i < n; ++i) up[i] = gen.uniform();
  Tensor mask = Tensor::empty(x.shape());
  kernels::dropout_mask(n, p, up, mask.data());
  Tensor y = Tensor::empty(x.shape());
  kernels::dropout_apply(n, xc.data(), mask.data(), y.data());
  return record("dropout", y, {x}, [mask](const Tensor& g) {
    Tensor dy = raw::contiguous(g);
    Tensor dx = Tensor::empty(mask.shape());
    kernels::dropout_apply(mask.numel(), dy.data(), mask.data(), dx.data());
    return grads{dx};
  });
}

// ================================================================ losses

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  if (!input.defined() || !target.defined()) throw Error("mse_loss: undefined input or target");
  if (input.shape() != target.shape())
    throw Error(fmt::format("mse_loss: input {} and target {} must have the same shape", shape_str(input.shape()),
                            shape_str(target.shape())));
  Tensor xc = dense(input), tc = dense(target);
  const int64_t n = xc.numel();
  if (n == 0) throw Error("mse_loss: empty input");
  const float* xp = xc.data();
  const float* tp = tc.data();
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(xp[i]) - tp[i];
    acc += d * d;
  }
  const double scale = reduction == Reduction::Mean ? 1.0 / static_cast<double>(n) : 1.0;
  Tensor loss = Tensor::scalar(static_cast<float>(acc * scale));
  const bool need_x = wants_grad(input), need_t = wants_grad(target);
  // dL/dx = g * 2 (x - t) * scale,  dL/dt = -dL/dx
  return record("mse_loss", loss, {input, target}, [xc, tc, scale, need_x, need_t](const Tensor& g) {
    const float k = static_cast<float>(2.0 * scale * g.item());
    Tensor dx = Tensor::empty(xc.shape());
    const float* xp = xc.data();
    const float* tp = tc.data();
    float* d = dx.data();
    for (int64_t i = 0, n = xc.numel(); i < n; ++i) d[i] = k * (xp[i] - tp[i]);
    Tensor dt = need_t ? raw::unary(raw::Unary::Neg, dx) : Tensor();
    return grads{need_x ? dx : Tensor(), dt};
  });
}

Tensor binary_cross_entropy_with_logits(const Tensor& input, const Tensor& target, Reduction reduction) {
  if (!input.defined() || !target.defined()) throw Error("binary_cross_entropy_with_logits: undefined input or target");
  if (input.shape() != target.shape())
    throw Error(fmt::format("binary_cross_entropy_with_logits: input {} and target {} must have the same shape",
                            shape_str(input.shape()), shape_str(target.shape())));
  Tensor xc = dense(input), tc = dense(target);
  const int64_t n = xc.numel();
  if (n == 0) throw Error("binary_cross_entropy_with_logits: empty input");
  const float* xp = xc.data();
  const float* tp = tc.data();
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    // -[t log s + (1 - t) log(1 - s)] with s = sigmoid(x), rewritten so nothing overflows:
    // = max(x, 0) - x t + log(1 + exp(-|x|))
    const double x = xp[i], t = tp[i];
    acc += std::max(x, 0.0) - x * t + std::log1p(std::exp(-std::fabs(x)));
  }
  const double scale = reduction == Reduction::Mean ? 1.0 / static_cast<double>(n) : 1.0;
  Tensor loss = Tensor::scalar(static_cast<float>(acc * scale));
  const bool need_x = wants_grad(input), need_t = wants_grad(target);
  // dL/dx = (sigmoid(x) - t) * scale,  dL/dt = -x * scale
  return record("binary_cross_entropy_with_logits", loss, {input, target},
                [xc, tc, scale, need_x, need_t](const Tensor& g) {
                  const double k = scale * g.item();
                  const float* xp = xc.data();
                  const float* tp = tc.data();
                  const int64_t n = xc.numel();
                  Tensor dx, dt;
                  if (need_x) {
                    dx = Tensor::empty(xc.shape());
                    float* d = dx.data();
                    for (int64_t i = 0; i < n; ++i) {
                      const double x = xp[i];
                      // sigmoid without overflow for large |x|
                      const double s = x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
                      d[i] = static_cast<float>(k * (s - tp[i]));
                    }
                  }
                  if (need_t) {
                    dt = Tensor::empty(xc.shape());
                    float* d = dt.data();
                    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(-k * xp[i]);
                  }
                  return grads{dx, dt};
                });
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) { return x.flatten(start_dim, end_dim); }

}  // namespace sleepnet::nn::functional
