// loader.h: batches of a Dataset for training and evaluation: seeded shuffling, batching into
// tensors, and a background thread that prepares the next batches while the model trains.
//
//     DataLoader loader(dataset, dataset.samples_of(split.train), {.batch_size = 64, .seed = 7});
//     for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//       DataLoader::Epoch it = loader.epoch(epoch);
//       Batch b;
//       while (it.next(b)) {
//         // b.images: [N, C, H, W], b.labels: [N, 1]
//         ...
//         if (stop_early) break;   // leaving the scope stops and joins the thread
//       }
//     }
//
// Order. Epoch e visits the loader's samples in a permutation drawn from a generator seeded with
// (seed, e) (Fisher-Yates with sleepnet::Generator, identical on every machine), or in the given
// order when shuffle is off. Batch b holds positions [b * batch_size, (b + 1) * batch_size) of that
// order; the last, smaller batch is dropped with drop_last. The batches are the same whether the
// background thread is used or not, and whatever the timing: the thread only computes ahead.
// `epoch(e, first_batch)` starts at batch `first_batch`, so a run resumed mid-epoch sees exactly
// the batches it would have seen.
//
// Thread. With prefetch = P > 0 one producer thread fills a queue of at most P batches (bounded:
// memory stays at P batches); next() takes from it. Destroying (or moving from) the Epoch stops the
// producer and joins it, also when the consumer stops early. An exception thrown while making a
// batch is handed to the consumer: next() rethrows it once the batches before it were taken.
// prefetch = 0 makes every batch in next() on the caller's thread.
//
// The Dataset must outlive the loader and its epochs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "data/dataset.h"
#include "tensor/tensor.h"

namespace sleepnet::data {

struct Batch {
  Tensor images;                 // [N, C, H, W]
  Tensor labels;                 // [N, 1]
  std::vector<int64_t> sample;   // dataset sample index of each row
  std::vector<int32_t> record;   // dataset record index of each row
  std::vector<double> start_s;   // window start (s from the record start) of each row
  int64_t epoch = 0;
  int64_t index = 0;             // batch number within the epoch
  int64_t size() const { return static_cast<int64_t>(sample.size()); }
};

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;
  bool drop_last = false;
  uint64_t seed = 0;
  int prefetch = 2;   // batches prepared ahead by the background thread, 0..8 (0: no thread)
  // Applied to every batch right after it is made, on the producer thread (augmentation, checks).
  // Must be deterministic in the batch (use batch.epoch / batch.index for any randomness) and
  // must not touch state shared with the consumer. An exception it throws reaches next().
  std::function<void(Batch&)> transform = nullptr;
};

class DataLoader {
 public:
  // `samples`: dataset sample indices (e.g. dataset.samples_of(split.train)); each must be valid.
  DataLoader(const Dataset& dataset, std::vector<int64_t> samples, LoaderOptions options = {});

  int64_t num_samples() const { return static_cast<int64_t>(samples_.size()); }
  int64_t num_batches() const;  // per epoch
  const LoaderOptions& options() const { return options_; }
  const Dataset& dataset() const { return *dataset_; }

  // The sample order of an epoch (dataset sample indices).
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // Batch `index` of an order, made on the calling thread.
  Batch make_batch(const std::vector<int64_t>& order, int64_t index, int64_t epoch = 0) const;

  class Epoch {
   public:
    Epoch(Epoch&&) noexcept;
    Epoch& operator=(Epoch&&) noexcept;
    Epoch(const Epoch&) = delete;
    Epoch& operator=(const Epoch&) = delete;
    ~Epoch();
    // The next batch into `out`; false after the last one. Rethrows a producer's exception.
    bool next(Batch& out);
    int64_t num_batches() const;  // in this epoch run (from first_batch)

   private:
    friend class DataLoader;
    struct State;
    explicit Epoch(std::unique_ptr<State> state);
    void stop();
    std::unique_ptr<State> state_;
    std::thread thread_;
  };
  // Iterates epoch `epoch` from batch `first_batch` (0 <= first_batch <= num_batches()).
  Epoch epoch(int64_t epoch, int64_t first_batch = 0) const;

 private:
  const Dataset* dataset_;
  std::vector<int64_t> samples_;
  LoaderOptions options_;
};

}  // namespace sleepnet::data
