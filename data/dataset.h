// dataset.h: the images and labels a model trains on, built from records, and splits by record.
//
// build_dataset() turns records (record.h) into samples, one per scored window:
//
//   record --(clean_beat_series: range + ectopic removal)--> cleaned beats
//   cleaned beats, every window --(tf_images, data/spectrogram.h: OpenMP over windows)--> images
//   images --(cache.h: one file per record, keyed by settings + beat/window content + code)--> disk
//   every window --(coverage filter, label filter)--> kept samples
//   kept samples --(optional per-record normalisation)--> Dataset
//
// Sample i: image [C, H, W] (C = 1 RR, or 2 RR + R amplitude), label (1/0, the target of the
// options: apnea or sleep-vs-wake; -1 only for unlabelled windows kept on request), its record,
// window start and coverage. Images live in one contiguous float buffer, [N, C, H, W] row-major,
// so a batch is N memcpy's (loader.h).
//
// Coverage (what `min_coverage` filters on) is the fraction of the *scored window itself*
// [start, start + duration) spanned by consecutive cleaned beats at most max_gap_s apart (the
// spectrogram settings' max_gap_s). It is not TFImage::coverage, which is over the whole span
// including context: at the ends of a record the context lies outside it, and a record's first
// minute would be penalised for being first. Windows with no usable beats (signal loss, ectopic
// runs, the unscored tail of a record) fall below it and are dropped; DatasetStats counts them.
//
// Per-record normalisation (option `record_normalization`): after the images are built, each
// channel of each record is z-scored with that record's own statistics (mean and std over every
// pixel of every window of the record that passed the coverage filter, labels not used, so the
// same transform applies at prediction time when there are no labels). It removes between-subject
// offsets (a subject's overall heart-rate variability) while keeping within-night contrast (an
// apnea minute has more low-frequency power than a quiet one of the same night), which per-image
// normalisation (SpectrogramSettings::normalization = ZScore) erases. To use it, set the
// spectrogram's normalization to None. A channel that is constant over the record (the
// all-zero amplitude channel of a record without ECG) stays zero.
//
// Splits are by record, never by window, and keep records of one group (Record::group(): one
// subject, or one night: a01/a01r/a01er; Apnea-ECG a01 and a14 are one person) on one side:
//   split_by_ids      explicit train / validation / test lists of record ids
//   kfold_by_record   k folds of groups, seeded, stratified by record class where possible;
//                     each record is in exactly one test fold; optional validation records taken
//                     (stratified, seeded) from each fold's training records
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/record.h"
#include "data/signal.h"
#include "data/spectrogram.h"

namespace sleepnet::data {

enum class Target { Apnea, Sleep };  // which window label a sample carries
enum class RecordNormalization { None, ZScore };

struct DatasetOptions {
  SpectrogramSettings spectrogram{};  // image design (context, STFT, size, channels)
  CleanConfig clean{};              // beat cleaning before the images (data/signal.h)
  Target target = Target::Apnea;
  double min_coverage = 0.5;        // drop windows whose beat coverage is below this ([0, 1])
  bool keep_unlabelled = false;     // keep windows whose target label is -1 (for prediction)
  RecordNormalization record_normalization = RecordNormalization::None;
  std::string cache_dir{};          // "" = no disk cache; created when missing
  void validate() const;            // throws naming the field
};

// One kept window.
struct SampleInfo {
  int32_t record = 0;      // index into Dataset::records()
  int32_t window = 0;      // index into that record's windows
  double start_s = 0.0;    // window start from the record start
  float duration_s = 0.f;
  float label = -1.f;      // 1 / 0 (target), -1 when unlabelled (only with keep_unlabelled)
  float coverage = 0.f;    // beat coverage of the scored window
};

// What the dataset knows of each record (the Records themselves are not kept).
struct DatasetRecord {
  std::string id;
  Database database = Database::Wfdb;
  std::string group;                    // Record::group()
  std::string record_class;             // stratum for k-fold ("A"/"B"/"C", severity, or "")
  std::optional<double> reference_ahi;
  double duration_s = 0.0;
  int64_t first_sample = 0;             // samples of this record are [first, first + count)
  int64_t num_samples = 0;
  int64_t windows = 0;                  // windows the record has (before filtering)
  int64_t dropped_coverage = 0;
  int64_t dropped_unlabelled = 0;
};

struct DatasetStats {
  int64_t records = 0;
  int64_t records_without_beats = 0;    // contributed nothing
  int64_t windows = 0;                  // all windows of all records
  int64_t kept = 0;
  int64_t dropped_coverage = 0;
  int64_t dropped_unlabelled = 0;
  int64_t positives = 0;                // kept samples with label 1
  int64_t cache_hits = 0, cache_misses = 0, cache_rebuilt = 0;  // rebuilt = stale or corrupt file
  double build_seconds = 0.0;
  std::vector<std::string> messages;    // per-record events ("a01: cache file corrupt ...: rebuilt")
  std::string to_string() const;        // one line
};

class Dataset {
 public:
  int channels() const { return channels_; }
  int height() const { return height_; }
  int width() const { return width_; }
  int64_t image_size() const { return int64_t{channels_} * height_ * width_; }  // C*H*W
  int64_t size() const { return static_cast<int64_t>(samples_.size()); }
  const float* image(int64_t i) const;   // [C, H, W] of sample i
  const SampleInfo& sample(int64_t i) const { return samples_.at(static_cast<size_t>(i)); }
  const std::vector<SampleInfo>& samples() const { return samples_; }
  const std::vector<DatasetRecord>& records() const { return records_; }
  const DatasetStats& stats() const { return stats_; }
  const DatasetOptions& options() const { return options_; }
  // Index of a record id, or -1.
  int record_index(const std::string& id) const;
  // Sample indices of the given records, record by record, in time order within each.
  std::vector<int64_t> samples_of(const std::vector<int>& record_indices) const;
  std::vector<int64_t> all_samples() const;

 private:
  friend Dataset build_dataset(const std::vector<Record>&, const DatasetOptions&);
  DatasetOptions options_;
  int channels_ = 0, height_ = 0, width_ = 0;
  std::vector<float> images_;           // [N, C, H, W]
  std::vector<SampleInfo> samples_;
  std::vector<DatasetRecord> records_;
  DatasetStats stats_;
};

// Builds the dataset of `records` (see the top of this file). Records without beats contribute no
// samples (counted). Errors: invalid options (named), a cache directory that cannot be created.
Dataset build_dataset(const std::vector<Record>& records, const DatasetOptions& options);

// Beat coverage of [start_s, start_s + duration_s): the fraction spanned by consecutive beats
// (times sorted) at most max_gap_s apart.
double window_coverage(const std::vector<double>& beat_times_s, double start_s, double duration_s,
                       double max_gap_s);

// ---------------------------------------------------------------------------------------------
// Splits by record
// ---------------------------------------------------------------------------------------------

// Record indices (into the list the split was made from).
struct Split {
  std::vector<int> train, validation, test;
};

// What a split needs to know of a record.
struct RecordKey {
  std::string id;
  std::string group;    // records of one group stay together
  std::string stratum;  // class to stratify on ("" = one stratum)
};
std::vector<RecordKey> record_keys(const std::vector<Record>& records);
std::vector<RecordKey> record_keys(const Dataset& dataset);

// Explicit lists of ids. Every id must be known and appear in one list only; records in none of
// the lists are left out. A group split across lists is an Error (naming the records) unless
// allow_split_groups.
Split split_by_ids(const std::vector<RecordKey>& records, const std::vector<std::string>& train,
                   const std::vector<std::string>& validation, const std::vector<std::string>& test,
                   bool allow_split_groups = false);

struct KFoldOptions {
  int k = 5;
  uint64_t seed = 0;
  bool stratify = true;               // balance the strata (record classes) across folds
  double validation_fraction = 0.0;   // of each fold's training records, moved to validation
};
// k splits: fold f's test records are the f-th part of the groups, dealt after a seeded
// shuffle within each stratum (so each fold gets its share of every class); train = the rest
// minus validation. Every record is in exactly one test fold; no group is in two parts of a fold.
// Error when k < 2 or k exceeds the number of groups.
std::vector<Split> kfold_by_record(const std::vector<RecordKey>& records, const KFoldOptions& options);

// Throws when a split has a record twice, a group across parts, or an index out of range.
void check_split(const Split& split, const std::vector<RecordKey>& records);

}  // namespace sleepnet::data
