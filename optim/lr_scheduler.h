// optim/lr_scheduler.h: learning-rate schedules that set an optimizer's lr for step t.
//
// A schedule is a function lr(t) of the number t of optimizer steps taken so far. As in PyTorch,
// constructing a scheduler sets the lr for t = 0, and step() is called once after each
// optimizer.step():
//
//     optim::AdamW opt(params, {.lr = 1e-3});
//     optim::WarmupCosineLR sched(opt, {.warmup_steps = 100, .total_steps = 10000, .min_lr = 1e-5});
//     for (...) { ...; opt.step(); sched.step(); }     // step t used lr(t)
//
// Resuming: the state is the step count alone. Save last_step() and, after building the optimizer
// and scheduler again, call set_step(saved): the lr is set from the closed-form formula, so the
// resumed run uses exactly the same lr values as an uninterrupted one.
//
// The schedules, with base lr L (default: the optimizer's lr when the scheduler is built):
//
//   WarmupCosineLR   linear warm-up over W steps from L * s to L, then a half cosine from L down to
//                    min_lr m over the remaining T - W steps, then m for ever:
//                      t <  W:       lr = L * (s + (1 - s) * t / W)
//                      W <= t <= T:  lr = m + (L - m) * (1 + cos(pi * (t - W) / (T - W))) / 2
//                      t >  T:       lr = m
//                    (W = warmup_steps, T = total_steps, s = warmup_start_factor). This equals
//                    PyTorch's SequentialLR([LinearLR(start_factor=s, total_iters=W),
//                    CosineAnnealingLR(T_max=T-W, eta_min=m)], milestones=[W]) up to t = T, written in
//                    closed form (PyTorch updates recursively, which differs in the last bits).
//   StepLR           lr = L * gamma^floor(t / step_size), as torch.optim.lr_scheduler.StepLR
//                    (PyTorch calls the unit an epoch: it is whatever step() is called once per).
//   ConstantLR       lr = L. (Not PyTorch's ConstantLR, which scales by a factor for some steps.)
#pragma once

#include <cstdint>
#include <optional>

#include "optim/optimizer.h"

namespace sleepnet::optim {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  LRScheduler(const LRScheduler&) = delete;
  LRScheduler& operator=(const LRScheduler&) = delete;

  // The schedule's value at step t >= 0 (a pure function: does not touch the optimizer).
  virtual double lr_at(int64_t t) const = 0;

  void step() { set_step(last_step_ + 1); }  // after each optimizer.step()
  void set_step(int64_t t);                   // jump to step t (resume) and set the lr
  int64_t last_step() const { return last_step_; }
  double base_lr() const { return base_lr_; }
  double last_lr() const { return lr_at(last_step_); }  // what the optimizer was last given

 protected:
  LRScheduler(Optimizer& optimizer, std::optional<double> base_lr);
  void apply() { optimizer_.set_lr(lr_at(last_step_)); }  // subclass constructors call this last

  Optimizer& optimizer_;
  double base_lr_;
  int64_t last_step_ = 0;
};

struct WarmupCosineOptions {
  int64_t warmup_steps = 0;           // W >= 0
  int64_t total_steps = 0;            // T > W: the step at which the cosine reaches min_lr
  double warmup_start_factor = 0.0;   // s in [0, 1]: the warm-up starts at L * s
  double min_lr = 0.0;                // m in [0, L]
  std::optional<double> base_lr = std::nullopt;  // L; default: the optimizer's lr at construction
};

class WarmupCosineLR : public LRScheduler {
 public:
  WarmupCosineLR(Optimizer& optimizer, const WarmupCosineOptions& options);
  double lr_at(int64_t t) const override;

 private:
  WarmupCosineOptions o_;
};

struct StepLROptions {
  int64_t step_size = 1;          // > 0
  double gamma = 0.1;             // > 0
  std::optional<double> base_lr = std::nullopt;  // default: the optimizer's lr at construction
};

class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, const StepLROptions& options);
  double lr_at(int64_t t) const override;

 private:
  StepLROptions o_;
};

class ConstantLR : public LRScheduler {
 public:
  explicit ConstantLR(Optimizer& optimizer, std::optional<double> base_lr = std::nullopt);
  double lr_at(int64_t t) const override;
};

}  // namespace sleepnet::optim
