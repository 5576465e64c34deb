// trainer.h: trains one MobileNetV2 window classifier (apnea, or sleep vs wake) and predicts with it.
//
// The model outputs one number per window; p = sigmoid(output) is the probability of the positive
// class, and the loss is MSE(p, label) optimised with Adam, as in the paper (arXiv 2412.19967).
// The learning rate follows a linear warm-up and a cosine decay per step (optim/lr_scheduler.h).
//
// Work directory (one per model, inside the run directory):
//     checkpoint.safetensors   model + Adam state + schedule step + trainer state, written
//                              atomically at the end of every epoch
//     best.safetensors         the weights of the epoch with the best validation score
//     log.csv                  one line per finished epoch
// A run killed at any moment resumes from the last checkpoint (`resume`) and, with the same seed
// and thread count, ends with the same weights as a run that was never interrupted: batch order
// and dropout masks depend only on (seed, epoch), never on what ran before in the process.
//
// Early stopping: after `patience` epochs without a better validation score (ROC-AUC, or minus
// the loss when the validation set has one class only), training stops; the best weights win.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/screening/report.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "nn/mobilenet.h"

namespace sleepnet::screening {

struct TrainOptions {
  int epochs = 8;
  int64_t batch_size = 64;
  double lr = 2e-3;
  double weight_decay = 1e-4;   // AdamW's decoupled decay
  double warmup_epochs = 0.5;   // linear warm-up length, in epochs
  double min_lr_factor = 0.02;  // the cosine ends at lr * min_lr_factor
  int patience = 3;             // epochs without improvement before stopping (0 = never stop)
  double width_mult = 0.5;
  float dropout = 0.2f;
  // Training-time augmentation (0 = off). time_shift: each image moved along its time axis
  // (columns) by a random whole number of columns in [-time_shift, time_shift], the edge column
  // repeated. mixup: each batch replaced by lam * batch + (1 - lam) * (the batch shuffled), images
  // and labels alike, lam ~ Beta(mixup, mixup) (Zhang et al. 2018).
  int time_shift = 0;
  double mixup = 0.0;
  uint64_t seed = 1;
  bool progress = true;
  nlohmann::json to_json() const;
  static TrainOptions from_json(const nlohmann::json& j);
  void validate() const;
};

struct TrainSummary {
  TrainingLog log;
  int best_epoch = 0;            // 1-based; 0 when no validation set (last epoch kept)
  double best_score = 0.0;
  bool resumed = false;
  bool stopped_early = false;
};

nn::MobileNetV2Options model_options(const TrainOptions& opt, int in_channels);

// The augmentations of `o` (time_shift, mixup) applied to one training batch in place; nothing when
// both are off. Random numbers come from a generator seeded with (o.seed, epoch, b.index), so a
// resumed run augments exactly as an uninterrupted one.
void augment_batch(data::Batch& b, const TrainOptions& o, int epoch);

// Thrown by train_model when `should_stop` asks it to stop (Ctrl-C in the CLI). The last
// checkpoint (end of the previous epoch) is intact: `resume` continues from there.
struct Interrupted : Error {
  using Error::Error;
};

struct TrainHooks {
  // Asked before every batch; returning true stops training with Interrupted.
  std::function<bool(int epoch, int64_t batch)> should_stop;
};

// Trains `model` on dataset samples `train`, validating on `val` (may be empty: then the last
// epoch's weights are kept). On return the model holds the best weights. `work_dir` must exist.
TrainSummary train_model(nn::MobileNetV2& model, const data::Dataset& dataset, const std::vector<int64_t>& train,
                         const std::vector<int64_t>& val, const TrainOptions& options, const std::string& work_dir,
                         const std::string& name, bool resume, const TrainHooks& hooks = {});

// p = sigmoid(model(x)) for the given samples, in eval mode, without recording a graph.
std::vector<double> predict_probabilities(nn::MobileNetV2& model, const data::Dataset& dataset,
                                          const std::vector<int64_t>& samples, int64_t batch_size = 256);

}  // namespace sleepnet::screening
