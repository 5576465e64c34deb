// nn/kernels/adam.h: fused optimizer updates over flat float arrays, with PyTorch's exact
// arithmetic (torch.optim.Adam / AdamW / SGD, single-tensor CPU path, float32 tensors).
//
// Adam, step t (t = 1 for the first update), for every element:
//   Adam  (decoupled = false):  g = g + weight_decay * p                   grad.add(param, alpha=wd)
//   AdamW (decoupled = true):   p = p * (1 - lr * weight_decay)            param.mul_(1 - lr*wd)
//   m = m + (1 - beta1) * (g - m)                                          exp_avg.lerp_(grad, 1-beta1)
//   v = v * beta2 + (1 - beta2) * g * g                                    exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2)
//   bc1 = 1 - beta1^t, bc2 = 1 - beta2^t                                   (in double, as Python floats)
//   denom = sqrt(v) / sqrt(bc2) + eps
//   p = p + (-lr / bc1) * m / denom                                        param.addcdiv_(m, denom, -step_size)
// m = beta1 m + (1 - beta1) g written as PyTorch's lerp (it rounds differently in the last bit).
// Scalars computed in double are rounded to float once, as PyTorch passes them to float kernels;
// the element-wise arithmetic is float, in PyTorch's operation order.
//
// SGD (torch.optim.SGD), for every element:
//   g = g + weight_decay * p
//   momentum != 0:  buf = g on the first step, else buf = buf * momentum + (1 - dampening) * g
//                   g = nesterov ? g + momentum * buf : buf
//   p = p + (-lr) * g
//
// All arrays are [n], updated in place; the updates are element-wise (results do not depend on
// the thread count). Each has a `_ref` twin: the same formulas, one plain loop, no OpenMP.
#pragma once

#include <cstdint>

namespace sleepnet::kernels {

struct AdamHyper {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled = false;  // false: Adam (L2 added to the gradient); true: AdamW
  void validate(const char* who) const;
};

// step: the update's number, counting from 1 (PyTorch's state['step'] after its increment).
void adam_step(int64_t n, float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
               int64_t step, const AdamHyper& h);
void adam_step_ref(int64_t n, float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                   int64_t step, const AdamHyper& h);

struct SgdHyper {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // needs momentum > 0 and dampening == 0, as in PyTorch
  void validate(const char* who) const;
};

// momentum_buf may be null when momentum == 0. first_step: the buffer does not exist yet
// (PyTorch's `buf is None`), so it is set to the gradient.
void sgd_step(int64_t n, float* param, const float* grad, float* momentum_buf, bool first_step,
              const SgdHyper& h);
void sgd_step_ref(int64_t n, float* param, const float* grad, float* momentum_buf, bool first_step,
                  const SgdHyper& h);

}  // namespace sleepnet::kernels
