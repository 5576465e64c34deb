// dataset.cpp: building the dataset (images, labels, filters, cache, per-record normalisation)
// and splitting it by record (see dataset.h).
#include "data/dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>

#include "data/cache.h"
#include "tensor/tensor.h"

namespace sleepnet::data {

// ---------------------------------------------------------------------------------------------
// Options, stats, accessors
// ---------------------------------------------------------------------------------------------

void DatasetOptions::validate() const {
  if (!(min_coverage >= 0.0 && min_coverage <= 1.0))
    throw Error(fmt::format("DatasetOptions.min_coverage: {} is outside [0, 1]", min_coverage));
  if (!(clean.rr_min_s > 0 && clean.rr_max_s > clean.rr_min_s))
    throw Error(fmt::format("DatasetOptions.clean: rr range [{}, {}] s is empty or not positive",
                            clean.rr_min_s, clean.rr_max_s));
  spectrogram.validate(30.0);
}

std::string DatasetStats::to_string() const {
  return fmt::format(
      "{} records ({} without beats), {} windows: {} kept ({} positive), {} dropped for beat coverage, "
      "{} unlabelled; cache {} hits, {} built, {} rebuilt; {:.2f} s",
      records, records_without_beats, windows, kept, positives, dropped_coverage, dropped_unlabelled,
      cache_hits, cache_misses, cache_rebuilt, build_seconds);
}

const float* Dataset::image(int64_t i) const {
  if (i < 0 || i >= size()) throw Error(fmt::format("Dataset::image: index {} out of range [0, {})", i, size()));
  return images_.data() + static_cast<size_t>(i) * static_cast<size_t>(image_size());
}

int Dataset::record_index(const std::string& id) const {
  for (size_t i = 0; i < records_.size(); ++i)
    if (records_[i].id == id) return static_cast<int>(i);
  return -1;
}

std::vector<int64_t> Dataset::samples_of(const std::vector<int>& record_indices) const {
  std::vector<int64_t> out;
  for (int r : record_indices) {
    if (r < 0 || r >= static_cast<int>(records_.size()))
      throw Error(fmt::format("Dataset::samples_of: record index {} out of range [0, {})", r, records_.size()));
    const DatasetRecord& rec = records_[r];
    for (int64_t k = 0; k < rec.num_samples; ++k) out.push_back(rec.first_sample + k);
  }
  return out;
}

std::vector<int64_t> Dataset::all_samples() const {
  std::vector<int64_t> out(samples_.size());
  std::iota(out.begin(), out.end(), int64_t{0});
  return out;
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

double window_coverage(const std::vector<double>& t, double start_s, double duration_s, double max_gap_s) {
  if (!(duration_s > 0) || t.size() < 2) return 0.0;
  const double t0 = start_s, t1 = start_s + duration_s;
  size_t lo = std::lower_bound(t.begin(), t.end(), t0) - t.begin();
  size_t hi = std::upper_bound(t.begin(), t.end(), t1) - t.begin();
  if (lo > 0) --lo;
  if (hi < t.size()) ++hi;
  double covered = 0.0;
  for (size_t i = lo; i + 1 < hi; ++i) {
    if (t[i + 1] - t[i] > max_gap_s) continue;
    const double a = std::max(t[i], t0), b = std::min(t[i + 1], t1);
    if (b > a) covered += b - a;
  }
  return std::clamp(covered / duration_s, 0.0, 1.0);
}

namespace {

// The images of every window of a record (from the cache when valid).
CachedImages record_images(const Record& r, const BeatSeries& clean, const DatasetOptions& o,
                           DatasetStats& stats) {
  std::string key, path;
  if (!o.cache_dir.empty()) {
    key = cache_key(r, o.spectrogram, o.clean);
    path = cache_file_path(o.cache_dir, r.id, key);
    CacheLookup got = read_cache_file(path, key);
    if (got.status == CacheStatus::Hit && got.data.size() == static_cast<int64_t>(r.windows.size()) &&
        got.data.channels == o.spectrogram.channels() && got.data.height == o.spectrogram.height &&
        got.data.width == o.spectrogram.width) {
      ++stats.cache_hits;
      return std::move(got.data);
    }
    if (got.status == CacheStatus::Missing) {
      ++stats.cache_misses;
    } else {
      ++stats.cache_rebuilt;
      stats.messages.push_back(fmt::format("{}: cache {} ({}): rebuilt", r.id,
                                           got.status == CacheStatus::Hit ? "shape mismatch"
                                                                          : std::string(cache_status_name(got.status)),
                                           got.reason));
    }
  }
  // Windows of one record share their duration in every adapter; group by duration anyway.
  CachedImages out;
  out.channels = o.spectrogram.channels();
  out.height = o.spectrogram.height;
  out.width = o.spectrogram.width;
  const size_t n = r.windows.size();
  const size_t pix = static_cast<size_t>(out.channels) * out.height * out.width;
  out.starts.resize(n);
  out.amplitude_missing.assign(n, 1);
  out.images.assign(n * pix, 0.f);
  std::map<double, std::vector<size_t>> by_duration;
  for (size_t i = 0; i < n; ++i) {
    out.starts[i] = r.windows[i].start_s;
    by_duration[r.windows[i].duration_s].push_back(i);
  }
  for (const auto& [dur, idx] : by_duration) {
    std::vector<double> starts(idx.size());
    for (size_t k = 0; k < idx.size(); ++k) starts[k] = r.windows[idx[k]].start_s;
    std::vector<TFImage> imgs = tf_images(clean, starts, dur, o.spectrogram);
    for (size_t k = 0; k < idx.size(); ++k) {
      std::memcpy(out.images.data() + idx[k] * pix, imgs[k].data.data(), pix * sizeof(float));
      out.amplitude_missing[idx[k]] = imgs[k].amplitude_missing ? 1 : 0;
    }
  }
  if (!o.cache_dir.empty()) {
    try {
      write_cache_file(path, key, out);
    } catch (const std::exception& e) {
      stats.messages.push_back(fmt::format("{}: cache not written: {}", r.id, e.what()));
    }
  }
  return out;
}

}  // namespace

Dataset build_dataset(const std::vector<Record>& records, const DatasetOptions& options) {
  options.validate();
  const auto t_start = std::chrono::steady_clock::now();
  if (!options.cache_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.cache_dir, ec);
    if (ec || !std::filesystem::is_directory(options.cache_dir))
      throw Error(fmt::format("{}: cannot create the dataset cache directory ({})", options.cache_dir, ec.message()));
  }
  Dataset ds;
  ds.options_ = options;
  ds.channels_ = options.spectrogram.channels();
  ds.height_ = options.spectrogram.height;
  ds.width_ = options.spectrogram.width;
  const size_t pix = static_cast<size_t>(ds.image_size());
  const int64_t px = int64_t{ds.height_} * ds.width_;  // pixels of one channel
  DatasetStats& st = ds.stats_;
  {
    std::set<std::string> ids;
    for (const Record& r : records)
      if (!ids.insert(r.id).second) throw Error(fmt::format("build_dataset: record {} given twice", r.id));
  }

  // Pass 1: cleaned beats, coverage and labels decide which windows are kept, so the image buffer
  // is allocated once at its final size (the full Apnea-ECG set at 2 x 64 x 64 is ~0.5 GB).
  std::vector<BeatSeries> clean(records.size());
  std::vector<std::vector<uint8_t>> passes(records.size());  // window passed the coverage filter
  for (size_t ri = 0; ri < records.size(); ++ri) {
    const Record& r = records[ri];
    DatasetRecord dr;
    dr.id = r.id;
    dr.database = r.database;
    dr.group = r.group();
    dr.record_class = r.meta.record_class;
    dr.reference_ahi = r.meta.reference_ahi;
    dr.duration_s = r.duration_s;
    dr.first_sample = static_cast<int64_t>(ds.samples_.size());
    dr.windows = static_cast<int64_t>(r.windows.size());
    ++st.records;
    st.windows += dr.windows;
    passes[ri].assign(r.windows.size(), 0);
    if (!r.has_beats()) {
      ++st.records_without_beats;
      dr.dropped_coverage = dr.windows;
    } else {
      clean[ri] = clean_beat_series(r.beat_series(), options.clean);
      // The cleaned series' beat times (its first raw beat has no RR interval and is not in it).
      const std::vector<double>& ct = clean[ri].time_s;
      for (size_t i = 0; i < r.windows.size(); ++i) {
        const Window& w = r.windows[i];
        const double cov = window_coverage(ct, w.start_s, w.duration_s, options.spectrogram.max_gap_s);
        if (cov < options.min_coverage) { ++dr.dropped_coverage; continue; }
        passes[ri][i] = 1;
        const int8_t lab = options.target == Target::Apnea ? w.apnea : w.sleep;
        if (lab < 0 && !options.keep_unlabelled) { ++dr.dropped_unlabelled; continue; }
        SampleInfo s;
        s.record = static_cast<int32_t>(ri);
        s.window = static_cast<int32_t>(i);
        s.start_s = w.start_s;
        s.duration_s = static_cast<float>(w.duration_s);
        s.label = static_cast<float>(lab);
        s.coverage = static_cast<float>(cov);
        ds.samples_.push_back(s);
        if (lab == 1) ++st.positives;
      }
    }
    dr.num_samples = static_cast<int64_t>(ds.samples_.size()) - dr.first_sample;
    st.dropped_coverage += dr.dropped_coverage;
    st.dropped_unlabelled += dr.dropped_unlabelled;
    ds.records_.push_back(std::move(dr));
  }
  st.kept = ds.size();

  // Pass 2: images (cache or tf_images), copied into place, then per-record normalisation.
  ds.images_.assign(static_cast<size_t>(st.kept) * pix, 0.f);
  for (size_t ri = 0; ri < records.size(); ++ri) {
    const DatasetRecord& dr = ds.records_[ri];
    if (dr.num_samples == 0) continue;
    CachedImages imgs = record_images(records[ri], clean[ri], options, st);
    float* dst = ds.images_.data() + static_cast<size_t>(dr.first_sample) * pix;
    for (int64_t k = 0; k < dr.num_samples; ++k) {
      const size_t w = static_cast<size_t>(ds.samples_[dr.first_sample + k].window);
      std::memcpy(dst + k * pix, imgs.images.data() + w * pix, pix * sizeof(float));
    }
    if (options.record_normalization != RecordNormalization::ZScore) continue;
    // Statistics over every window that passed the coverage filter, labelled or not, so that
    // prediction (no labels) normalises the same way.
    int64_t nstat = 0;
    for (uint8_t p : passes[ri]) nstat += p;
    for (int c = 0; c < ds.channels_; ++c) {
      double sum = 0, sq = 0;
      for (size_t i = 0; i < passes[ri].size(); ++i) {
        if (!passes[ri][i]) continue;
        const float* p = imgs.images.data() + i * pix + c * px;
        for (int64_t q = 0; q < px; ++q) sum += p[q];
      }
      const double mean = sum / (static_cast<double>(nstat) * px);
      for (size_t i = 0; i < passes[ri].size(); ++i) {
        if (!passes[ri][i]) continue;
        const float* p = imgs.images.data() + i * pix + c * px;
        for (int64_t q = 0; q < px; ++q) sq += (p[q] - mean) * (p[q] - mean);
      }
      const double sd = std::sqrt(sq / (static_cast<double>(nstat) * px));
      const bool flat = !(sd > 1e-6 * std::max(1.0, std::abs(mean)));
      const float m = static_cast<float>(mean), inv = flat ? 0.f : static_cast<float>(1.0 / sd);
      for (int64_t k = 0; k < dr.num_samples; ++k) {
        float* p = dst + k * pix + c * px;
        for (int64_t q = 0; q < px; ++q) p[q] = flat ? 0.f : (p[q] - m) * inv;
      }
    }
  }
  st.build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return ds;
}

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------

std::vector<RecordKey> record_keys(const std::vector<Record>& records) {
  std::vector<RecordKey> out;
  for (const Record& r : records) out.push_back({r.id, r.group(), r.meta.record_class});
  return out;
}

std::vector<RecordKey> record_keys(const Dataset& dataset) {
  std::vector<RecordKey> out;
  for (const DatasetRecord& r : dataset.records()) out.push_back({r.id, r.group, r.record_class});
  return out;
}

void check_split(const Split& split, const std::vector<RecordKey>& records) {
  std::map<int, const char*> part_of;
  std::map<std::string, const char*> group_part;
  auto visit = [&](const std::vector<int>& v, const char* part) {
    for (int i : v) {
      if (i < 0 || i >= static_cast<int>(records.size()))
        throw Error(fmt::format("split: {} index {} out of range [0, {})", part, i, records.size()));
      auto [it, fresh] = part_of.emplace(i, part);
      if (!fresh)
        throw Error(fmt::format("split: record {} is in {} and {}", records[i].id, it->second, part));
      auto [g, gfresh] = group_part.emplace(records[i].group, part);
      if (!gfresh && std::string(g->second) != part)
        throw Error(fmt::format("split: group {} (record {}) is in {} and {}", records[i].group, records[i].id,
                                g->second, part));
    }
  };
  visit(split.train, "train");
  visit(split.validation, "validation");
  visit(split.test, "test");
}

Split split_by_ids(const std::vector<RecordKey>& records, const std::vector<std::string>& train,
                   const std::vector<std::string>& validation, const std::vector<std::string>& test,
                   bool allow_split_groups) {
  std::map<std::string, int> index;
  for (size_t i = 0; i < records.size(); ++i) index[records[i].id] = static_cast<int>(i);
  std::map<std::string, const char*> seen;
  Split out;
  auto fill = [&](const std::vector<std::string>& ids, std::vector<int>& dst, const char* part) {
    for (const std::string& id : ids) {
      auto it = index.find(id);
      if (it == index.end()) throw Error(fmt::format("split: {} record {} is not in the dataset", part, id));
      auto [s, fresh] = seen.emplace(id, part);
      if (!fresh) throw Error(fmt::format("split: record {} is listed in {} and {}", id, s->second, part));
      dst.push_back(it->second);
    }
  };
  fill(train, out.train, "train");
  fill(validation, out.validation, "validation");
  fill(test, out.test, "test");
  if (!allow_split_groups) check_split(out, records);
  return out;
}

std::vector<Split> kfold_by_record(const std::vector<RecordKey>& records, const KFoldOptions& o) {
  // Groups, in first-appearance order, with their stratum (the most common class in the group).
  std::vector<std::string> groups;
  std::map<std::string, std::vector<int>> members;
  for (size_t i = 0; i < records.size(); ++i) {
    auto [it, fresh] = members.try_emplace(records[i].group);
    if (fresh) groups.push_back(records[i].group);
    it->second.push_back(static_cast<int>(i));
  }
  if (o.k < 2) throw Error(fmt::format("kfold_by_record: k = {}, need at least 2", o.k));
  if (o.k > static_cast<int>(groups.size()))
    throw Error(fmt::format("kfold_by_record: k = {} folds but only {} record groups", o.k, groups.size()));
  if (!(o.validation_fraction >= 0.0 && o.validation_fraction < 1.0))
    throw Error(fmt::format("kfold_by_record: validation_fraction {} is outside [0, 1)", o.validation_fraction));
  auto stratum_of = [&](const std::string& g) {
    if (!o.stratify) return std::string();
    std::map<std::string, int> n;
    for (int i : members[g]) ++n[records[i].stratum];
    return std::max_element(n.begin(), n.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
  };
  std::map<std::string, std::vector<std::string>> strata;  // sorted by stratum name: deterministic
  for (const std::string& g : groups) strata[stratum_of(g)].push_back(g);

  Generator gen(o.seed ^ 0x6b666f6c64ULL);  // "kfold"
  std::vector<std::vector<std::string>> fold_groups(o.k);
  int next = 0;
  for (auto& [name, gs] : strata) {
    shuffle(gs, gen);
    for (const std::string& g : gs) {
      fold_groups[next].push_back(g);
      next = (next + 1) % o.k;
    }
  }

  std::vector<Split> out(o.k);
  for (int f = 0; f < o.k; ++f) {
    std::set<std::string> test(fold_groups[f].begin(), fold_groups[f].end());
    // Training groups by stratum, then validation groups picked per stratum (largest remainder).
    std::map<std::string, std::vector<std::string>> train_strata;
    size_t n_train_groups = 0;
    for (auto& [name, gs] : strata)
      for (const std::string& g : gs)
        if (!test.count(g)) { train_strata[name].push_back(g); ++n_train_groups; }
    std::set<std::string> val;
    if (o.validation_fraction > 0) {
      Generator vgen(o.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(f) + 1);
      const double want = o.validation_fraction * n_train_groups;
      size_t total = static_cast<size_t>(std::llround(want));
      total = std::clamp<size_t>(total, 1, n_train_groups > 1 ? n_train_groups - 1 : 0);
      std::vector<std::pair<double, std::string>> rem;
      std::map<std::string, size_t> take;
      size_t taken = 0;
      for (auto& [name, gs] : train_strata) {
        const double exact = o.validation_fraction * gs.size() * (static_cast<double>(total) / std::max(want, 1e-12));
        take[name] = std::min(gs.size(), static_cast<size_t>(std::floor(exact)));
        taken += take[name];
        rem.emplace_back(exact - std::floor(exact), name);
      }
      std::stable_sort(rem.begin(), rem.end(), [](auto& a, auto& b) { return a.first > b.first; });
      for (auto& [r, name] : rem) {
        if (taken >= total) break;
        if (take[name] < train_strata[name].size()) { ++take[name]; ++taken; }
      }
      for (auto& [name, gs] : train_strata) {
        std::vector<std::string> pick = gs;
        shuffle(pick, vgen);
        for (size_t i = 0; i < take[name]; ++i) val.insert(pick[i]);
      }
    }
    for (size_t i = 0; i < records.size(); ++i) {
      const std::string& g = records[i].group;
      if (test.count(g)) out[f].test.push_back(static_cast<int>(i));
      else if (val.count(g)) out[f].validation.push_back(static_cast<int>(i));
      else out[f].train.push_back(static_cast<int>(i));
    }
  }
  return out;
}

}  // namespace sleepnet::data
