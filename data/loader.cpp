// loader.cpp: seeded shuffling, batching and the prefetching thread (see loader.h).
#include "data/loader.h"

#include <fmt/format.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <utility>

namespace sleepnet::data {

DataLoader::DataLoader(const Dataset& dataset, std::vector<int64_t> samples, LoaderOptions options)
    : dataset_(&dataset), samples_(std::move(samples)), options_(options) {
  if (options_.batch_size < 1)
    throw Error(fmt::format("LoaderOptions.batch_size: {}, must be at least 1", options_.batch_size));
  if (options_.prefetch < 0 || options_.prefetch > 8)
    throw Error(fmt::format("LoaderOptions.prefetch: {}, must be in [0, 8]", options_.prefetch));
  for (size_t i = 0; i < samples_.size(); ++i)
    if (samples_[i] < 0 || samples_[i] >= dataset.size())
      throw Error(fmt::format("DataLoader: sample index {} (position {}) out of range [0, {})", samples_[i], i,
                              dataset.size()));
}

int64_t DataLoader::num_batches() const {
  const int64_t n = num_samples(), b = options_.batch_size;
  return options_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order = samples_;
  if (!options_.shuffle) return order;
  // One generator per epoch, seeded from (seed, epoch): epoch e's order does not depend on how
  // many epochs ran before (resuming at epoch e reproduces it).
  Generator gen(options_.seed * 0x9E3779B97F4A7C15ULL ^ (static_cast<uint64_t>(epoch) + 0x5DEECE66DULL));
  shuffle(order, gen);
  return order;
}

Batch DataLoader::make_batch(const std::vector<int64_t>& order, int64_t index, int64_t epoch) const {
  const int64_t b = options_.batch_size;
  const int64_t begin = index * b;
  if (index < 0 || begin >= static_cast<int64_t>(order.size()))
    throw Error(fmt::format("DataLoader::make_batch: batch {} out of range ({} samples, batch size {})", index,
                            order.size(), b));
  const int64_t n = std::min<int64_t>(b, static_cast<int64_t>(order.size()) - begin);
  const Dataset& ds = *dataset_;
  const int64_t isz = ds.image_size();
  Batch out;
  out.epoch = epoch;
  out.index = index;
  out.images = Tensor::empty({n, ds.channels(), ds.height(), ds.width()});
  out.labels = Tensor::empty({n, 1});
  out.sample.resize(n);
  out.record.resize(n);
  out.start_s.resize(n);
  float* img = out.images.data();
  float* lab = out.labels.data();
  for (int64_t k = 0; k < n; ++k) {
    const int64_t s = order[begin + k];
    const SampleInfo& info = ds.sample(s);
    std::memcpy(img + k * isz, ds.image(s), static_cast<size_t>(isz) * sizeof(float));
    lab[k] = info.label;
    out.sample[k] = s;
    out.record[k] = info.record;
    out.start_s[k] = info.start_s;
  }
  if (options_.transform) options_.transform(out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Epoch runs
// ---------------------------------------------------------------------------------------------

struct DataLoader::Epoch::State {
  const DataLoader* loader = nullptr;
  int64_t epoch = 0;
  std::vector<int64_t> order;
  int64_t first = 0;       // first batch of this run
  int64_t next_make = 0;   // next batch the producer (or next() without a thread) makes
  int64_t end = 0;         // one past the last batch
  int64_t consumed = 0;    // batches handed out
  int capacity = 0;        // prefetch

  std::mutex mu;
  std::condition_variable can_produce, can_consume;
  std::deque<Batch> queue;
  std::exception_ptr error;  // set by the producer; rethrown after the queued batches
  bool producer_done = false;
  bool stopping = false;

  void produce() {
    for (;;) {
      int64_t b;
      {
        std::unique_lock<std::mutex> lock(mu);
        can_produce.wait(lock, [&] { return stopping || static_cast<int>(queue.size()) < capacity; });
        if (stopping || next_make >= end) break;
        b = next_make++;
      }
      try {
        Batch batch = loader->make_batch(order, b, epoch);
        std::lock_guard<std::mutex> lock(mu);
        queue.push_back(std::move(batch));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        error = std::current_exception();
        break;
      }
      can_consume.notify_one();
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      producer_done = true;
    }
    can_consume.notify_all();
  }
};

DataLoader::Epoch::Epoch(std::unique_ptr<State> state) : state_(std::move(state)) {}

DataLoader::Epoch::Epoch(Epoch&& other) noexcept
    : state_(std::move(other.state_)), thread_(std::move(other.thread_)) {}

DataLoader::Epoch& DataLoader::Epoch::operator=(Epoch&& other) noexcept {
  if (this != &other) {
    stop();
    state_ = std::move(other.state_);
    thread_ = std::move(other.thread_);
  }
  return *this;
}

DataLoader::Epoch::~Epoch() { stop(); }

void DataLoader::Epoch::stop() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->stopping = true;
    }
    state_->can_produce.notify_all();
    thread_.join();
  }
}

int64_t DataLoader::Epoch::num_batches() const {
  return state_ ? state_->end - state_->first : 0;
}

bool DataLoader::Epoch::next(Batch& out) {
  if (!state_) return false;
  State& s = *state_;
  if (!thread_.joinable()) {
    // No background thread (prefetch = 0), or it has been joined after an error.
    if (s.error) std::rethrow_exception(std::exchange(s.error, nullptr));
    if (s.next_make >= s.end) return false;
    try {
      out = s.loader->make_batch(s.order, s.next_make, s.epoch);
    } catch (...) {
      s.next_make = s.end;  // the epoch is over for this run, as with the thread
      throw;
    }
    ++s.next_make;
    ++s.consumed;
    return true;
  }
  std::unique_lock<std::mutex> lock(s.mu);
  s.can_consume.wait(lock, [&] { return !s.queue.empty() || s.producer_done; });
  if (!s.queue.empty()) {
    out = std::move(s.queue.front());
    s.queue.pop_front();
    ++s.consumed;
    lock.unlock();
    s.can_produce.notify_one();
    return true;
  }
  // Queue empty and the producer finished: either the end, or an error after the last batch.
  std::exception_ptr e = std::exchange(s.error, nullptr);
  if (e) {
    s.next_make = s.end;  // the epoch is over for this run
    std::rethrow_exception(e);
  }
  return false;
}

DataLoader::Epoch DataLoader::epoch(int64_t epoch, int64_t first_batch) const {
  const int64_t nb = num_batches();
  if (first_batch < 0 || first_batch > nb)
    throw Error(fmt::format("DataLoader::epoch: first_batch {} out of range [0, {}]", first_batch, nb));
  auto state = std::make_unique<Epoch::State>();
  state->loader = this;
  state->epoch = epoch;
  state->order = epoch_order(epoch);
  state->first = first_batch;
  state->next_make = first_batch;
  state->end = nb;
  state->capacity = options_.prefetch;
  Epoch run(std::move(state));
  if (options_.prefetch > 0 && first_batch < nb) {
    Epoch::State* raw = run.state_.get();
    run.thread_ = std::thread([raw] { raw->produce(); });
  }
  return run;
}

}  // namespace sleepnet::data
