// dataset_test.cpp: building datasets (images equal tf_image, labels, coverage filter, per-record
// normalisation), the disk cache (hit, stale, corrupt: truncated / flipped byte, atomic writes),
// and splits by record (explicit lists, k-fold: every record in exactly one test fold, groups
// kept together, stratified, seeded).
#include <gtest/gtest.h>
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "data/apnea_ecg.h"
#include "data/cache.h"
#include "data/dataset.h"
#include "data/record.h"
#include "reader_test_util.h"

using namespace sleepnet;
using namespace sleepnet::data;
namespace fs = std::filesystem;

namespace {

const std::string kApnea = std::string(SLEEPNET_SOURCE_DIR) + "/data/physionet/apnea-ecg";

// A record made in memory: beats at ~70 bpm with a slow RR oscillation, minutes labelled
// 1 when (minute / 3) is odd, and no beats in [gap_from, gap_to) seconds.
Record fake_record(const std::string& id, double minutes, double gap_from = -1, double gap_to = -1,
                   double period_s = 40.0) {
  Record r;
  r.id = id;
  r.database = Database::Wfdb;
  r.duration_s = minutes * 60.0;
  r.beat_fs_hz = 1000.0;
  r.beat_source = "fake";
  double t = 0.3;
  while (t < r.duration_s) {
    if (!(t >= gap_from && t < gap_to)) r.beat_times_s.push_back(std::round(t * 1000.0) / 1000.0);
    t += 0.85 + 0.08 * std::sin(2 * M_PI * t / period_s);
  }
  r.windows = unlabelled_windows(r.duration_s, 60.0);
  for (size_t k = 0; k < r.windows.size(); ++k) {
    r.windows[k].apnea = static_cast<int8_t>((k / 3) % 2);
    r.windows[k].stage = (k % 4 == 0) ? StageLabel::Wake : StageLabel::S2;
    r.windows[k].sleep = static_cast<int8_t>(sleep_wake_of(r.windows[k].stage));
  }
  return r;
}

DatasetOptions small_options() {
  DatasetOptions o;
  o.spectrogram.height = 16;
  o.spectrogram.width = 16;
  o.spectrogram.amplitude_channel = false;
  return o;
}

bool same_images(const Dataset& a, const Dataset& b) {
  if (a.size() != b.size() || a.image_size() != b.image_size()) return false;
  for (int64_t i = 0; i < a.size(); ++i)
    for (int64_t k = 0; k < a.image_size(); ++k)
      if (a.image(i)[k] != b.image(i)[k]) return false;
  return true;
}

int count_files(const std::string& dir, const std::string& part) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().filename().string().find(part) != std::string::npos;
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

TEST(Dataset, SamplesImagesAndLabels) {
  std::vector<Record> recs = {fake_record("r1", 12), fake_record("r2", 9)};
  DatasetOptions o = small_options();
  Dataset ds = build_dataset(recs, o);
  ASSERT_EQ(ds.size(), 21);
  EXPECT_EQ(ds.channels(), 1);
  EXPECT_EQ(ds.height(), 16);
  ASSERT_EQ(ds.records().size(), 2u);
  EXPECT_EQ(ds.records()[1].first_sample, 12);
  EXPECT_EQ(ds.records()[1].num_samples, 9);
  EXPECT_EQ(ds.stats().kept, 21);
  EXPECT_EQ(ds.stats().dropped_coverage, 0);
  for (int64_t i = 0; i < ds.size(); ++i) {
    const SampleInfo& s = ds.sample(i);
    const Window& w = recs[s.record].windows[s.window];
    EXPECT_EQ(s.label, static_cast<float>(w.apnea));
    EXPECT_EQ(s.start_s, w.start_s);
    EXPECT_GT(s.coverage, 0.95f);  // the first minute misses the first beat's interval
  }
  // Each image is exactly tf_image of the cleaned beats.
  const BeatSeries clean = clean_beat_series(recs[1].beat_series(), o.clean);
  for (int64_t i : {int64_t{12}, int64_t{16}, int64_t{20}}) {
    TFImage img = tf_image(clean, ds.sample(i).start_s, 60.0, o.spectrogram);
    ASSERT_EQ(static_cast<int64_t>(img.data.size()), ds.image_size());
    for (int64_t k = 0; k < ds.image_size(); ++k) ASSERT_EQ(ds.image(i)[k], img.data[k]) << i << " " << k;
  }
  EXPECT_EQ(ds.samples_of({1}).front(), 12);
  EXPECT_EQ(ds.samples_of({1, 0}).size(), 21u);
  EXPECT_EQ(ds.record_index("r2"), 1);
  EXPECT_EQ(ds.record_index("zz"), -1);
  // The sleep target takes the sleep-wake labels.
  o.target = Target::Sleep;
  Dataset sl = build_dataset(recs, o);
  for (int64_t i = 0; i < sl.size(); ++i)
    EXPECT_EQ(sl.sample(i).label, sl.sample(i).window % 4 == 0 ? 0.f : 1.f);
}

TEST(Dataset, CoverageFilterAndUnlabelledWindowsAreCounted) {
  // Minutes 3 and 4 have no beats (180-300 s); minute 5 has half (beats resume at 330 s).
  std::vector<Record> recs = {fake_record("gap", 10, 180, 330)};
  recs[0].windows[7].apnea = -1;
  Record empty = fake_record("nobeats", 4);
  empty.beat_times_s.clear();
  recs.push_back(empty);
  DatasetOptions o = small_options();
  o.min_coverage = 0.6;
  Dataset ds = build_dataset(recs, o);
  EXPECT_EQ(ds.stats().windows, 14);
  EXPECT_EQ(ds.stats().records_without_beats, 1);
  EXPECT_EQ(ds.records()[0].dropped_coverage, 3);  // minutes 3, 4, 5
  EXPECT_EQ(ds.records()[1].dropped_coverage, 4);
  EXPECT_EQ(ds.stats().dropped_coverage, 7);
  EXPECT_EQ(ds.stats().dropped_unlabelled, 1);
  EXPECT_EQ(ds.size(), 10 - 3 - 1);
  EXPECT_EQ(ds.stats().kept + ds.stats().dropped_coverage + ds.stats().dropped_unlabelled, ds.stats().windows);
  for (const SampleInfo& s : ds.samples()) EXPECT_TRUE(s.window < 3 || s.window > 5);
  // A lower threshold keeps the half-covered minute; keep_unlabelled keeps minute 7 with label -1.
  o.min_coverage = 0.4;
  o.keep_unlabelled = true;
  Dataset ds2 = build_dataset(recs, o);
  EXPECT_EQ(ds2.records()[0].dropped_coverage, 2);
  EXPECT_EQ(ds2.size(), 8);
  int unlabelled = 0;
  for (const SampleInfo& s : ds2.samples()) unlabelled += s.label < 0;
  EXPECT_EQ(unlabelled, 1);
  // window_coverage itself.
  EXPECT_NEAR(window_coverage(recs[0].beat_times_s, 300, 60, 3.0), 0.5, 0.02);
  EXPECT_DOUBLE_EQ(window_coverage(recs[0].beat_times_s, 200, 60, 3.0), 0.0);
  EXPECT_DOUBLE_EQ(window_coverage({}, 0, 60, 3.0), 0.0);
}

TEST(Dataset, PerRecordNormalisation) {
  std::vector<Record> recs = {fake_record("r1", 8, -1, -1, 40.0), fake_record("r2", 8, -1, -1, 25.0)};
  DatasetOptions o = small_options();
  o.spectrogram.amplitude_channel = true;  // channel 1 all zeros (no amplitudes): stays zero
  o.spectrogram.normalization = SpecNormalization::None;
  o.record_normalization = RecordNormalization::ZScore;
  Dataset ds = build_dataset(recs, o);
  const int64_t px = ds.height() * ds.width();
  for (int r = 0; r < 2; ++r) {
    double sum = 0, sq = 0, n = 0, ch1 = 0;
    for (int64_t i : ds.samples_of({r})) {
      const float* p = ds.image(i);
      for (int64_t k = 0; k < px; ++k) { sum += p[k]; sq += double(p[k]) * p[k]; ++n; }
      for (int64_t k = 0; k < px; ++k) ch1 += std::abs(p[px + k]);
    }
    EXPECT_NEAR(sum / n, 0.0, 1e-4) << r;
    EXPECT_NEAR(std::sqrt(sq / n), 1.0, 1e-4) << r;
    EXPECT_EQ(ch1, 0.0);
  }
  // Without it the images are raw dB values, far from zero mean.
  o.record_normalization = RecordNormalization::None;
  Dataset raw = build_dataset(recs, o);
  double mean = 0;
  for (int64_t k = 0; k < px; ++k) mean += raw.image(0)[k] / px;
  EXPECT_GT(std::abs(mean), 1.0);
}

TEST(Dataset, BadOptionsAndDuplicateRecords) {
  std::vector<Record> recs = {fake_record("r1", 3)};
  DatasetOptions o = small_options();
  o.min_coverage = 1.5;
  EXPECT_ERROR_CONTAINS(build_dataset(recs, o), {"min_coverage"});
  o = small_options();
  o.spectrogram.height = 0;
  EXPECT_ERROR_CONTAINS(build_dataset(recs, o), {"height"});
  recs.push_back(recs[0]);
  EXPECT_ERROR_CONTAINS(build_dataset(recs, small_options()), {"r1", "twice"});
}

TEST(Dataset, RealApneaEcgRecords) {
  std::vector<Record> recs;
  for (const char* id : {"a03", "b01", "c02"}) recs.push_back(load_record(kApnea + "/" + id));
  DatasetOptions o = small_options();
  Dataset ds = build_dataset(recs, o);
  const DatasetStats& st = ds.stats();
  EXPECT_EQ(st.windows, 519 + 487 + 502);
  EXPECT_EQ(st.kept + st.dropped_coverage, st.windows);
  EXPECT_GT(st.kept, 0.95 * st.windows);
  int64_t positives = 0;
  for (size_t r = 0; r < recs.size(); ++r) {
    const DatasetRecord& dr = ds.records()[r];
    int64_t pos = 0;
    for (int64_t i : ds.samples_of({static_cast<int>(r)})) pos += ds.sample(i).label == 1.f;
    int64_t apnea_windows = count_labels(recs[r]).apnea;
    EXPECT_LE(pos, apnea_windows);
    EXPECT_GE(pos, apnea_windows - dr.dropped_coverage);
    positives += pos;
  }
  EXPECT_EQ(positives, st.positives);
  EXPECT_EQ(ds.records()[0].record_class, "A");
  EXPECT_DOUBLE_EQ(ds.records()[0].reference_ahi.value_or(-1), 39.1);
}

// The one test that builds all 35 Apnea-ECG learning records with the default image design
// (2 x 64 x 64, 5-minute spans): window bookkeeping against the table, then the cache. It prints
// the build and cache-read times (no timing assertion: speed is measured, not tested).
TEST(Dataset, FullApneaEcgBuildAndCache) {
  test::TempDir dir;
  DatabaseLoad db = load_database(kApnea);
  ASSERT_EQ(db.records.size(), 35u);
  DatasetOptions o;
  o.cache_dir = dir.file("cache");
  int64_t windows = 0, apnea = 0;
  for (const Record& r : db.records) {
    windows += r.windows.size();
    apnea += count_labels(r).apnea;
  }
  uint64_t sum_built = 0;
  {
    Dataset ds = build_dataset(db.records, o);
    const DatasetStats& st = ds.stats();
    std::printf("[ build    ] %s\n", st.to_string().c_str());
    EXPECT_EQ(st.windows, windows);
    EXPECT_EQ(st.kept + st.dropped_coverage + st.dropped_unlabelled, windows);
    EXPECT_EQ(st.dropped_unlabelled, 0);
    EXPECT_GT(st.kept, 0.95 * windows);
    EXPECT_LE(st.positives, apnea);
    EXPECT_GT(st.positives, 0.95 * apnea);
    EXPECT_EQ(st.cache_misses, 35);
    sum_built = checksum64(ds.image(0), static_cast<size_t>(ds.size() * ds.image_size()) * sizeof(float));
  }
  Dataset again = build_dataset(db.records, o);
  std::printf("[ cached   ] %s\n", again.stats().to_string().c_str());
  EXPECT_EQ(again.stats().cache_hits, 35);
  EXPECT_EQ(checksum64(again.image(0), static_cast<size_t>(again.size() * again.image_size()) * sizeof(float)),
            sum_built);
}

// ---------------------------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------------------------

TEST(Cache, HitStaleAndCorruptFilesAreRebuilt) {
  test::TempDir dir;
  std::vector<Record> recs = {fake_record("r1", 8), fake_record("r2", 6)};
  DatasetOptions o = small_options();
  o.cache_dir = dir.file("cache");  // created by build_dataset
  Dataset fresh = build_dataset(recs, o);
  EXPECT_EQ(fresh.stats().cache_misses, 2);
  EXPECT_EQ(fresh.stats().cache_hits, 0);
  EXPECT_EQ(count_files(o.cache_dir, ".sncache"), 2);
  EXPECT_EQ(count_files(o.cache_dir, ".tmp-"), 0);  // written atomically, nothing left over

  // Hit: same images.
  Dataset hit = build_dataset(recs, o);
  EXPECT_EQ(hit.stats().cache_hits, 2);
  EXPECT_EQ(hit.stats().cache_misses + hit.stats().cache_rebuilt, 0);
  EXPECT_TRUE(same_images(fresh, hit));

  // Settings change: another key, another file; the old one is not used.
  DatasetOptions o2 = o;
  o2.spectrogram.context_s = 90;
  Dataset other = build_dataset(recs, o2);
  EXPECT_EQ(other.stats().cache_hits, 0);
  EXPECT_EQ(other.stats().cache_misses, 2);
  EXPECT_FALSE(same_images(fresh, other));
  EXPECT_EQ(count_files(o.cache_dir, ".sncache"), 4);
  // Changed record content (one beat moved) also misses.
  std::vector<Record> edited = recs;
  edited[0].beat_times_s[100] += 0.01;
  EXPECT_EQ(build_dataset(edited, o).stats().cache_misses, 1);

  const std::string key = cache_key(recs[0], o.spectrogram, o.clean);
  const std::string path = cache_file_path(o.cache_dir, "r1", key);
  ASSERT_TRUE(fs::exists(path));
  const std::string good = test::read_bytes(path);

  // Stale: a file made for other settings put in place of this one.
  const std::string other_path = cache_file_path(o.cache_dir, "r1", cache_key(recs[0], o2.spectrogram, o2.clean));
  fs::copy_file(other_path, path, fs::copy_options::overwrite_existing);
  EXPECT_EQ(read_cache_file(path, key).status, CacheStatus::Stale);
  Dataset s = build_dataset(recs, o);
  EXPECT_EQ(s.stats().cache_rebuilt, 1);
  EXPECT_EQ(s.stats().cache_hits, 1);
  ASSERT_EQ(s.stats().messages.size(), 1u);
  EXPECT_NE(s.stats().messages[0].find("r1: cache stale"), std::string::npos) << s.stats().messages[0];
  EXPECT_TRUE(same_images(fresh, s));
  EXPECT_EQ(test::read_bytes(path), good);  // rewritten

  // Corrupt: truncated.
  test::write_bytes(path, good.substr(0, good.size() - 100));
  CacheLookup t = read_cache_file(path, key);
  EXPECT_EQ(t.status, CacheStatus::Corrupt);
  EXPECT_NE(t.reason.find("truncated"), std::string::npos) << t.reason;
  Dataset c1 = build_dataset(recs, o);
  EXPECT_EQ(c1.stats().cache_rebuilt, 1);
  EXPECT_TRUE(same_images(fresh, c1));
  EXPECT_EQ(test::read_bytes(path), good);

  // Corrupt: one flipped bit in the image data, and one in the window starts.
  for (size_t at : {good.size() - 200, good.size() / 2, size_t{good.find("windows") + 40}}) {
    std::string flipped = good;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x10);
    test::write_bytes(path, flipped);
    CacheLookup f = read_cache_file(path, key);
    EXPECT_NE(f.status, CacheStatus::Hit) << at;
    Dataset c2 = build_dataset(recs, o);
    EXPECT_EQ(c2.stats().cache_rebuilt, 1);
    EXPECT_TRUE(same_images(fresh, c2));
  }

  // Garbage, empty file, wrong magic.
  test::write_bytes(path, "");
  EXPECT_EQ(read_cache_file(path, key).status, CacheStatus::Corrupt);
  test::write_bytes(path, std::string(1000, 'x'));
  EXPECT_EQ(read_cache_file(path, key).status, CacheStatus::Corrupt);
  EXPECT_EQ(read_cache_file(dir.file("none.sncache"), key).status, CacheStatus::Missing);
  EXPECT_EQ(build_dataset(recs, o).stats().cache_rebuilt, 1);
  EXPECT_EQ(read_cache_file(path, key).status, CacheStatus::Hit);
  EXPECT_EQ(count_files(o.cache_dir, ".tmp-"), 0);
}

TEST(Cache, FileRoundTripAndChecksum) {
  test::TempDir dir;
  CachedImages d;
  d.channels = 2;
  d.height = 3;
  d.width = 4;
  d.starts = {0, 60, 120};
  d.amplitude_missing = {1, 0, 1};
  for (int i = 0; i < 3 * 24; ++i) d.images.push_back(0.5f * i - 3);
  const std::string p = dir.file("x.sncache");
  write_cache_file(p, "key text", d);
  CacheLookup got = read_cache_file(p, "key text");
  ASSERT_EQ(got.status, CacheStatus::Hit) << got.reason;
  EXPECT_EQ(got.data.starts, d.starts);
  EXPECT_EQ(got.data.amplitude_missing, d.amplitude_missing);
  EXPECT_EQ(got.data.images, d.images);
  EXPECT_EQ(read_cache_file(p, "key text 2").status, CacheStatus::Stale);
  d.images.pop_back();
  EXPECT_ERROR_CONTAINS(write_cache_file(p, "k", d), {"x.sncache", "inconsistent sizes"});
  // The checksum sees a change anywhere, including in the tail bytes.
  std::string bytes(37, 'a');
  const uint64_t h = checksum64(bytes.data(), bytes.size());
  for (size_t i : {size_t{0}, size_t{8}, size_t{36}}) {
    std::string b = bytes;
    b[i] = 'b';
    EXPECT_NE(checksum64(b.data(), b.size()), h) << i;
  }
  EXPECT_NE(checksum64(bytes.data(), 36), h);
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
}

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------

namespace {

std::vector<RecordKey> apnea_ecg_keys() {
  DatabaseLoad db = load_database(kApnea);
  return record_keys(db.records);
}

}  // namespace

TEST(Splits, ExplicitLists) {
  std::vector<RecordKey> keys = {{"a", "g1", "A"}, {"b", "g2", "A"}, {"c", "g1", "C"}, {"d", "g3", "C"}};
  Split s = split_by_ids(keys, {"a", "c"}, {"b"}, {"d"});
  EXPECT_EQ(s.train, (std::vector<int>{0, 2}));
  EXPECT_EQ(s.validation, (std::vector<int>{1}));
  EXPECT_EQ(s.test, (std::vector<int>{3}));
  EXPECT_ERROR_CONTAINS(split_by_ids(keys, {"a"}, {}, {"zz"}), {"test", "zz", "not in the dataset"});
  EXPECT_ERROR_CONTAINS(split_by_ids(keys, {"a", "b"}, {}, {"b"}), {"b", "train", "test"});
  // a and c are one group: splitting them is refused unless allowed.
  EXPECT_ERROR_CONTAINS(split_by_ids(keys, {"a"}, {}, {"c"}), {"group g1"});
  EXPECT_NO_THROW(split_by_ids(keys, {"a"}, {}, {"c"}, /*allow_split_groups=*/true));
}

TEST(Splits, KFoldByRecordOnApneaEcg) {
  std::vector<RecordKey> keys = apnea_ecg_keys();
  ASSERT_EQ(keys.size(), 35u);
  KFoldOptions o;
  o.k = 5;
  o.seed = 42;
  std::vector<Split> folds = kfold_by_record(keys, o);
  ASSERT_EQ(folds.size(), 5u);
  std::map<int, int> test_count;
  for (const Split& f : folds) {
    check_split(f, keys);  // no record twice, no group in two parts
    EXPECT_EQ(f.train.size() + f.validation.size() + f.test.size(), 35u);
    EXPECT_TRUE(f.validation.empty());
    for (int i : f.test) ++test_count[i];
    // Stratified: every fold tests some A and some C records.
    std::map<std::string, int> cls;
    for (int i : f.test) ++cls[keys[i].stratum];
    EXPECT_GE(cls["A"], 2);
    EXPECT_GE(cls["C"], 1);
    EXPECT_GE(f.test.size(), 4u);
    EXPECT_LE(f.test.size(), 10u);
  }
  // Every record is in exactly one test fold.
  ASSERT_EQ(test_count.size(), 35u);
  for (auto [i, n] : test_count) EXPECT_EQ(n, 1) << keys[i].id;
  // Records of one subject share a test fold (a01 and a14; a05, a10 and a20).
  auto fold_of = [&](const std::string& id) {
    for (size_t f = 0; f < folds.size(); ++f)
      for (int i : folds[f].test)
        if (keys[i].id == id) return static_cast<int>(f);
    return -1;
  };
  EXPECT_EQ(fold_of("a01"), fold_of("a14"));
  EXPECT_EQ(fold_of("a05"), fold_of("a10"));
  EXPECT_EQ(fold_of("a05"), fold_of("a20"));
  // Seeded: the same seed gives the same folds, another seed other folds.
  std::vector<Split> again = kfold_by_record(keys, o);
  for (size_t f = 0; f < folds.size(); ++f) EXPECT_EQ(folds[f].test, again[f].test);
  o.seed = 43;
  std::vector<Split> other = kfold_by_record(keys, o);
  bool differs = false;
  for (size_t f = 0; f < folds.size(); ++f) differs |= folds[f].test != other[f].test;
  EXPECT_TRUE(differs);
}

TEST(Splits, KFoldValidationRecords) {
  std::vector<RecordKey> keys = apnea_ecg_keys();
  KFoldOptions o;
  o.k = 5;
  o.seed = 1;
  o.validation_fraction = 0.2;
  for (const Split& f : kfold_by_record(keys, o)) {
    check_split(f, keys);
    EXPECT_GE(f.validation.size(), 3u);
    EXPECT_LE(f.validation.size(), 9u);
    std::set<std::string> cls;
    for (int i : f.validation) cls.insert(keys[i].stratum);
    EXPECT_GE(cls.size(), 2u);  // stratified, not all of one class
  }
  o.k = 1;
  EXPECT_ERROR_CONTAINS(kfold_by_record(keys, o), {"k = 1"});
  o.k = 40;
  EXPECT_ERROR_CONTAINS(kfold_by_record(keys, o), {"k = 40", "groups"});
  o.k = 5;
  o.validation_fraction = 1.0;
  EXPECT_ERROR_CONTAINS(kfold_by_record(keys, o), {"validation_fraction"});
}

TEST(Splits, KFoldWithoutGroupsOrStrata) {
  std::vector<RecordKey> keys;
  for (int i = 0; i < 10; ++i) {
    RecordKey k;
    k.id = fmt::format("r{}", i);
    k.group = k.id;
    keys.push_back(k);
  }
  KFoldOptions o;
  o.k = 10;  // leave-one-out
  std::vector<Split> folds = kfold_by_record(keys, o);
  for (const Split& f : folds) {
    EXPECT_EQ(f.test.size(), 1u);
    EXPECT_EQ(f.train.size(), 9u);
  }
}
