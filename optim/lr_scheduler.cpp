// optim/lr_scheduler.cpp: the closed-form schedules of lr_scheduler.h.
#include "optim/lr_scheduler.h"

#include <cmath>
#include <numbers>

#include <fmt/format.h>

namespace sleepnet::optim {

LRScheduler::LRScheduler(Optimizer& optimizer, std::optional<double> base_lr)
    : optimizer_(optimizer), base_lr_(base_lr.value_or(optimizer.lr())) {
  if (!std::isfinite(base_lr_) || base_lr_ < 0.0)
    throw Error(fmt::format("LRScheduler: base_lr must be finite and >= 0, got {}", base_lr_));
}

void LRScheduler::set_step(int64_t t) {
  if (t < 0) throw Error(fmt::format("LRScheduler.set_step: step must be >= 0, got {}", t));
  last_step_ = t;
  apply();
}

// ---- WarmupCosineLR ----

WarmupCosineLR::WarmupCosineLR(Optimizer& optimizer, const WarmupCosineOptions& o)
    : LRScheduler(optimizer, o.base_lr), o_(o) {
  if (o.warmup_steps < 0) throw Error(fmt::format("WarmupCosineLR: warmup_steps must be >= 0, got {}", o.warmup_steps));
  if (o.total_steps <= o.warmup_steps)
    throw Error(fmt::format("WarmupCosineLR: total_steps ({}) must be greater than warmup_steps ({})", o.total_steps,
                            o.warmup_steps));
  if (!(o.warmup_start_factor >= 0.0 && o.warmup_start_factor <= 1.0))
    throw Error(fmt::format("WarmupCosineLR: warmup_start_factor must be in [0, 1], got {}", o.warmup_start_factor));
  if (!(o.min_lr >= 0.0 && o.min_lr <= base_lr_))
    throw Error(fmt::format("WarmupCosineLR: min_lr must be in [0, base_lr = {}], got {}", base_lr_, o.min_lr));
  apply();
}

double WarmupCosineLR::lr_at(int64_t t) const {
  const double L = base_lr_, s = o_.warmup_start_factor, m = o_.min_lr;
  const int64_t W = o_.warmup_steps, T = o_.total_steps;
  if (t < W) return L * (s + (1.0 - s) * static_cast<double>(t) / static_cast<double>(W));
  if (t > T) return m;
  const double progress = static_cast<double>(t - W) / static_cast<double>(T - W);  // 0 .. 1
  return m + (L - m) * (1.0 + std::cos(std::numbers::pi * progress)) / 2.0;
}

// ---- StepLR ----

StepLR::StepLR(Optimizer& optimizer, const StepLROptions& o) : LRScheduler(optimizer, o.base_lr), o_(o) {
  if (o.step_size <= 0) throw Error(fmt::format("StepLR: step_size must be > 0, got {}", o.step_size));
  if (!(o.gamma > 0.0) || !std::isfinite(o.gamma))
    throw Error(fmt::format("StepLR: gamma must be finite and > 0, got {}", o.gamma));
  apply();
}

double StepLR::lr_at(int64_t t) const {
  return base_lr_ * std::pow(o_.gamma, static_cast<double>(t / o_.step_size));
}

// ---- ConstantLR ----

ConstantLR::ConstantLR(Optimizer& optimizer, std::optional<double> base_lr) : LRScheduler(optimizer, base_lr) {
  apply();
}

double ConstantLR::lr_at(int64_t) const { return base_lr_; }

}  // namespace sleepnet::optim
