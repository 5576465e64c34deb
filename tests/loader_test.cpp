// loader_test.cpp: the DataLoader: batches hold the right images and labels, every sample once per
// epoch, seeded order independent of the background thread and of earlier epochs, drop_last,
// resuming mid-epoch, early stop without hanging, and exceptions reaching the consumer.
#include <gtest/gtest.h>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <set>
#include <thread>
#include <vector>

#include "data/dataset.h"
#include "data/loader.h"
#include "reader_test_util.h"

using namespace sleepnet;
using namespace sleepnet::data;

namespace {

// A small dataset: 3 records, 10 + 7 + 6 = 23 one-minute windows, 8x8 images, 2 channels.
const Dataset& small_dataset() {
  static const Dataset ds = [] {
    std::vector<Record> recs;
    const int minutes[] = {10, 7, 6};
    for (int r = 0; r < 3; ++r) {
      Record rec;
      rec.id = fmt::format("r{}", r);
      rec.duration_s = minutes[r] * 60.0;
      rec.beat_fs_hz = 1000;
      for (double t = 0.2; t < rec.duration_s; t += 0.8 + 0.1 * std::sin(t / (5.0 + r)))
        rec.beat_times_s.push_back(std::round(t * 1000) / 1000);
      rec.windows = unlabelled_windows(rec.duration_s, 60.0);
      for (size_t k = 0; k < rec.windows.size(); ++k) rec.windows[k].apnea = static_cast<int8_t>((k + r) % 2);
      recs.push_back(std::move(rec));
    }
    DatasetOptions o;
    o.spectrogram.height = 8;
    o.spectrogram.width = 8;
    return build_dataset(recs, o);
  }();
  return ds;
}

std::vector<Batch> run_epoch(const DataLoader& loader, int64_t epoch, int64_t first = 0) {
  std::vector<Batch> out;
  DataLoader::Epoch it = loader.epoch(epoch, first);
  Batch b;
  while (it.next(b)) out.push_back(b);
  return out;
}

std::vector<int64_t> order_of(const std::vector<Batch>& batches) {
  std::vector<int64_t> out;
  for (const Batch& b : batches) out.insert(out.end(), b.sample.begin(), b.sample.end());
  return out;
}

}  // namespace

TEST(Loader, BatchesHoldTheDatasetImagesAndLabels) {
  const Dataset& ds = small_dataset();
  ASSERT_EQ(ds.size(), 23);
  LoaderOptions o;
  o.batch_size = 5;
  o.seed = 3;
  DataLoader loader(ds, ds.all_samples(), o);
  EXPECT_EQ(loader.num_batches(), 5);
  std::vector<Batch> batches = run_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 5u);
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    const Batch& b = batches[bi];
    EXPECT_EQ(b.index, static_cast<int64_t>(bi));
    const int64_t n = b.size();
    EXPECT_EQ(n, bi < 4 ? 5 : 3);
    EXPECT_EQ(b.images.shape(), (Shape{n, 2, 8, 8}));
    EXPECT_EQ(b.labels.shape(), (Shape{n, 1}));
    for (int64_t k = 0; k < n; ++k) {
      const SampleInfo& s = ds.sample(b.sample[k]);
      EXPECT_EQ(b.labels.data()[k], s.label);
      EXPECT_EQ(b.record[k], s.record);
      EXPECT_EQ(b.start_s[k], s.start_s);
      const float* img = ds.image(b.sample[k]);
      for (int64_t q = 0; q < ds.image_size(); ++q) ASSERT_EQ(b.images.data()[k * ds.image_size() + q], img[q]);
    }
  }
}

TEST(Loader, EverySampleOncePerEpochAndDropLast) {
  const Dataset& ds = small_dataset();
  std::vector<int64_t> subset = ds.samples_of({0, 2});  // 16 samples
  LoaderOptions o;
  o.batch_size = 6;
  DataLoader loader(ds, subset, o);
  for (int64_t e = 0; e < 3; ++e) {
    std::vector<int64_t> seen = order_of(run_epoch(loader, e));
    ASSERT_EQ(seen.size(), subset.size());
    EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()), std::set<int64_t>(subset.begin(), subset.end()));
  }
  o.drop_last = true;
  DataLoader dl(ds, subset, o);
  EXPECT_EQ(dl.num_batches(), 2);
  std::vector<Batch> b = run_epoch(dl, 0);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[1].size(), 6);
  // Without shuffling, the given order.
  o.shuffle = false;
  o.drop_last = false;
  EXPECT_EQ(order_of(run_epoch(DataLoader(ds, subset, o), 5)), subset);
}

TEST(Loader, OrderIsSeededAndIndependentOfTheThread) {
  const Dataset& ds = small_dataset();
  LoaderOptions o;
  o.batch_size = 4;
  o.seed = 99;
  std::vector<std::vector<int64_t>> orders;
  for (int prefetch : {0, 1, 4}) {
    o.prefetch = prefetch;
    DataLoader loader(ds, ds.all_samples(), o);
    std::vector<int64_t> both;
    for (int64_t e : {0, 1}) {
      std::vector<Batch> batches = run_epoch(loader, e);
      std::vector<int64_t> ord = order_of(batches);
      EXPECT_EQ(ord, loader.epoch_order(e));
      both.insert(both.end(), ord.begin(), ord.end());
    }
    orders.push_back(both);
  }
  EXPECT_EQ(orders[0], orders[1]);
  EXPECT_EQ(orders[0], orders[2]);
  // Epochs differ from each other, and seeds from each other.
  DataLoader a(ds, ds.all_samples(), o);
  EXPECT_NE(a.epoch_order(0), a.epoch_order(1));
  o.seed = 100;
  DataLoader b(ds, ds.all_samples(), o);
  EXPECT_NE(a.epoch_order(0), b.epoch_order(0));
  // An epoch's order does not depend on the epochs run before it (resume at any epoch).
  EXPECT_EQ(DataLoader(ds, ds.all_samples(), o).epoch_order(7), b.epoch_order(7));
}

TEST(Loader, ResumingMidEpochGivesTheRemainingBatches) {
  const Dataset& ds = small_dataset();
  LoaderOptions o;
  o.batch_size = 4;
  o.seed = 5;
  DataLoader loader(ds, ds.all_samples(), o);
  std::vector<Batch> full = run_epoch(loader, 2);
  std::vector<Batch> tail = run_epoch(loader, 2, 3);
  ASSERT_EQ(tail.size(), full.size() - 3);
  for (size_t i = 0; i < tail.size(); ++i) {
    EXPECT_EQ(tail[i].index, full[i + 3].index);
    EXPECT_EQ(tail[i].sample, full[i + 3].sample);
  }
  EXPECT_TRUE(run_epoch(loader, 2, loader.num_batches()).empty());
  EXPECT_ERROR_CONTAINS(loader.epoch(0, loader.num_batches() + 1), {"first_batch"});
}

TEST(Loader, EarlyStopJoinsTheThread) {
  const Dataset& ds = small_dataset();
  LoaderOptions o;
  o.batch_size = 1;  // 23 batches, so the producer is blocked on the full queue
  o.prefetch = 2;
  std::atomic<int> made{0};
  o.transform = [&](Batch&) { ++made; };
  DataLoader loader(ds, ds.all_samples(), o);
  for (int trial = 0; trial < 20; ++trial) {
    made = 0;
    DataLoader::Epoch it = loader.epoch(trial);
    Batch b;
    ASSERT_TRUE(it.next(b));
    // Give the producer time to fill the queue: it may run at most `prefetch` batches ahead
    // (plus the one it is making when the queue frees a slot).
    std::this_thread::sleep_for(std::chrono::milliseconds(trial == 0 ? 50 : 0));
    if (trial == 0) {
      EXPECT_LE(made.load(), 1 + 2 + 1);
    }
  }  // each Epoch is destroyed mid-epoch here; the test finishing proves nothing hangs
  // Moving an epoch run keeps it working; the moved-from one is empty.
  DataLoader::Epoch a = loader.epoch(0);
  Batch b;
  ASSERT_TRUE(a.next(b));
  DataLoader::Epoch c = std::move(a);
  EXPECT_FALSE(a.next(b));
  int rest = 0;
  while (c.next(b)) ++rest;
  EXPECT_EQ(rest, 22);
  // Assigning over a running epoch stops it first.
  c = loader.epoch(1);
  EXPECT_TRUE(c.next(b));
}

TEST(Loader, ExceptionsReachTheConsumerInOrder) {
  const Dataset& ds = small_dataset();
  for (int prefetch : {0, 3}) {
    SCOPED_TRACE(prefetch);
    LoaderOptions o;
    o.batch_size = 4;
    o.prefetch = prefetch;
    o.transform = [](Batch& b) {
      if (b.index == 3) throw Error("transform failed on batch 3");
    };
    DataLoader loader(ds, ds.all_samples(), o);
    DataLoader::Epoch it = loader.epoch(0);
    Batch b;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(it.next(b));
      EXPECT_EQ(b.index, i);
    }
    EXPECT_ERROR_CONTAINS(it.next(b), {"batch 3"});
    EXPECT_FALSE(it.next(b));  // the run is over after the error
  }
}

TEST(Loader, BadArguments) {
  const Dataset& ds = small_dataset();
  LoaderOptions o;
  o.batch_size = 0;
  EXPECT_ERROR_CONTAINS(DataLoader(ds, ds.all_samples(), o), {"batch_size"});
  o.batch_size = 2;
  o.prefetch = 9;
  EXPECT_ERROR_CONTAINS(DataLoader(ds, ds.all_samples(), o), {"prefetch"});
  o.prefetch = 2;
  EXPECT_ERROR_CONTAINS(DataLoader(ds, {0, 23}, o), {"23", "out of range"});
  DataLoader empty(ds, {}, o);
  EXPECT_EQ(empty.num_batches(), 0);
  EXPECT_TRUE(run_epoch(empty, 0).empty());
}
