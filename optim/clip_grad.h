// optim/clip_grad.h: gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_.
//
//     total_norm = sqrt(sum over every parameter with a gradient of sum(g^2))   (in double)
//     coef       = min(max_norm / (total_norm + 1e-6), 1)
//     g         <- g * coef   for every gradient                               (in float32)
//
// and total_norm is returned (before clipping), so it can be logged. Parameters without a gradient
// are ignored; with no gradient at all the result is 0. As PyTorch (error_if_nonfinite=False), a
// non-finite norm is not an error: the gradients are scaled by NaN and the caller should check the
// returned value. Gradients are scaled in place, so views of them see the change.
#pragma once

#include <vector>

#include "optim/optimizer.h"

namespace sleepnet::optim {

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm);
double clip_grad_norm_(const NamedTensors& params, double max_norm);

// The global L2 norm of the gradients alone (no clipping), in double.
double grad_norm(const std::vector<Tensor>& params);

}  // namespace sleepnet::optim
