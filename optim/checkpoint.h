// optim/checkpoint.h: training checkpoints (model + optimizer + learning-rate schedule) in one
// safetensors file (nn/safetensors.h), so that training resumes bit-identically.
//
// File layout:
//     <model tensor names>        the model's state dict, names unchanged (torchvision's names),
//                                 so the file also loads as a plain model checkpoint after
//                                 dropping the "optim." entries
//     optim.<param>.step          I64, 0-dim: updates this parameter received
//     optim.<param>.<buffer>      F32: exp_avg, exp_avg_sq (Adam/AdamW) or momentum_buffer (SGD)
//     __metadata__:
//       "optimizer"               JSON, Optimizer::config(): name and hyperparameters, current lr
//       "lr_scheduler.last_step"  the schedule's step count, when a scheduler is saved
//       ...                       anything else the caller adds (epoch, seed, git revision)
//
// Usage:
//     optim::save_checkpoint("ckpt.safetensors", model.state_dict(), opt, &sched, {{"epoch", "3"}});
//     ...
//     auto ckpt = optim::load_checkpoint("ckpt.safetensors", opt, &sched);  // restores opt, sched
//     model.load_state_dict(ckpt.model);                                   // strict
//
// load_checkpoint is strict: the optimizer's name must match the saved one, every optimizer entry
// must be there with the right shape and no unknown "optim." entry may appear (errors name the file
// and the entry). The learning rate comes back from the scheduler's step when a scheduler is given,
// else from the saved config's "lr". The other hyperparameters are those of the optimizer you built
// (so a run can be resumed with, say, another weight decay); they are in ckpt.metadata to compare.
#pragma once

#include <string>

#include "nn/safetensors.h"
#include "optim/lr_scheduler.h"
#include "optim/optimizer.h"

namespace sleepnet::optim {

inline constexpr const char* kOptimizerPrefix = "optim.";

// The optimizer's state as safetensors records: the ".step" entries tagged I64, buffers F32.
nn::TensorMap optimizer_state_records(const Optimizer& opt);
// Loads such records (names without the prefix) strictly; `source` names the file in errors.
void load_optimizer_state(Optimizer& opt, const nn::TensorMap& records, const std::string& source);

// Writes model_state + the optimizer's state (under "optim.") + metadata atomically.
// `sched` may be null. A metadata key "optimizer" or "lr_scheduler.last_step", or a model tensor
// whose name starts with "optim.", is an error (they would collide).
void save_checkpoint(const std::string& path, const nn::TensorMap& model_state, const Optimizer& opt,
                     const LRScheduler* sched = nullptr, const nn::Metadata& metadata = {});

struct LoadedCheckpoint {
  nn::TensorMap model;   // every entry not under "optim.": give it to Module::load_state_dict
  nn::Metadata metadata; // everything in __metadata__, including "optimizer"
};

// Reads `path`, restores `opt` (and `sched` if not null: its step, hence the lr), and returns the
// model's tensors and the metadata. Nothing is restored if any check fails.
LoadedCheckpoint load_checkpoint(const std::string& path, Optimizer& opt, LRScheduler* sched = nullptr);

}  // namespace sleepnet::optim
