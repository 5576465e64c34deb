// pipeline.cpp: see pipeline.h.
#include "apps/screening/pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "apps/screening/version.h"
#include "nn/safetensors.h"

namespace sleepnet::screening {

namespace fs = std::filesystem;
using nlohmann::json;

// ================================================================ configuration <-> JSON

namespace {

json spectrogram_json(const data::SpectrogramSettings& s) {
  return json{{"context_s", s.context_s},
              {"series_fs_hz", s.series_fs_hz},
              {"interp", s.interp == data::Interp::Linear ? "linear" : "pchip"},
              {"stft_window_s", s.stft_window_s},
              {"overlap", s.overlap},
              {"nfft", s.nfft},
              {"detrend", s.detrend == data::Detrend::Constant ? "constant" : "linear"},
              {"f_min_hz", s.f_min_hz},
              {"f_max_hz", s.f_max_hz},
              {"log_frequency", s.log_frequency},
              {"height", s.height},
              {"width", s.width},
              {"log_scale", s.log_scale},
              {"log_floor_rel", s.log_floor_rel},
              {"normalization", s.normalization == data::SpecNormalization::None     ? "none"
                                : s.normalization == data::SpecNormalization::ZScore ? "zscore"
                                                                                     : "minmax"},
              {"amplitude_channel", s.amplitude_channel},
              {"level_channel", s.level_channel},
              {"trace_channel", s.trace_channel},
              {"max_gap_s", s.max_gap_s}};
}

data::SpectrogramSettings spectrogram_from_json(const json& j) {
  data::SpectrogramSettings s;
  s.context_s = j.at("context_s");
  s.series_fs_hz = j.at("series_fs_hz");
  s.interp = j.at("interp") == "linear" ? data::Interp::Linear : data::Interp::Pchip;
  s.stft_window_s = j.at("stft_window_s");
  s.overlap = j.at("overlap");
  s.nfft = j.at("nfft");
  s.detrend = j.at("detrend") == "constant" ? data::Detrend::Constant : data::Detrend::Linear;
  s.f_min_hz = j.at("f_min_hz");
  s.f_max_hz = j.at("f_max_hz");
  s.log_frequency = j.at("log_frequency");
  s.height = j.at("height");
  s.width = j.at("width");
  s.log_scale = j.at("log_scale");
  s.log_floor_rel = j.at("log_floor_rel");
  const std::string n = j.at("normalization");
  s.normalization = n == "none"     ? data::SpecNormalization::None
                    : n == "zscore" ? data::SpecNormalization::ZScore
                                    : data::SpecNormalization::MinMax;
  s.amplitude_channel = j.at("amplitude_channel");
  s.level_channel = j.value("level_channel", false);  // absent in runs made before the option
  s.trace_channel = j.value("trace_channel", false);  // the same
  s.max_gap_s = j.at("max_gap_s");
  return s;
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error(fmt::format("{}: cannot open", path.string()));
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: not valid JSON: {}", path.string(), e.what()));
  }
}

}  // namespace

json ModelConfig::to_json() const {
  return json{{"spectrogram", spectrogram_json(data.spectrogram)},
              {"clean",
               {{"rr_min_s", data.clean.rr_min_s},
                {"rr_max_s", data.clean.rr_max_s},
                {"max_rel_diff", data.clean.max_rel_diff},
                {"median_half_window", data.clean.median_half_window},
                {"remove_outliers", data.clean.remove_outliers}}},
              {"min_coverage", data.min_coverage},
              {"record_normalization", data.record_normalization == data::RecordNormalization::ZScore ? "zscore" : "none"},
              {"train", train.to_json()}};
}

ModelConfig ModelConfig::from_json(const json& j, const std::string& source) {
  try {
    ModelConfig m;
    m.data.spectrogram = spectrogram_from_json(j.at("spectrogram"));
    const json& c = j.at("clean");
    m.data.clean.rr_min_s = c.at("rr_min_s");
    m.data.clean.rr_max_s = c.at("rr_max_s");
    m.data.clean.max_rel_diff = c.at("max_rel_diff");
    m.data.clean.median_half_window = c.at("median_half_window");
    m.data.clean.remove_outliers = c.at("remove_outliers");
    m.data.min_coverage = j.at("min_coverage");
    m.data.record_normalization =
        j.at("record_normalization") == "zscore" ? data::RecordNormalization::ZScore : data::RecordNormalization::None;
    m.train = TrainOptions::from_json(j.at("train"));
    return m;
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: model configuration: {}", source, e.what()));
  }
}

json RunConfig::to_json() const {
  return json{{"apnea_dir", apnea_dir},
              {"sleep_dir", sleep_dir},
              {"records", records},
              {"sleep_records", sleep_records},
              {"apnea", apnea.to_json()},
              {"sleep", sleep.to_json()},
              {"validation_fraction", validation_fraction},
              {"sleep_validation_fraction", sleep_validation_fraction},
              {"apnea_sleep_nights", apnea_sleep_nights},
              {"smooth_windows", smooth_windows},
              {"smooth_sleep_epochs", smooth_sleep_epochs},
              {"hmm", hmm},
              {"members", members},
              {"sleep_members", sleep_members},
              {"cross_fit", cross_fit},
              {"threads", threads}};
}

RunConfig RunConfig::from_json(const json& j, const std::string& source) {
  try {
    RunConfig c;
    c.apnea_dir = j.at("apnea_dir");
    c.sleep_dir = j.at("sleep_dir");
    c.records = j.at("records").get<std::vector<std::string>>();
    c.sleep_records = j.at("sleep_records").get<std::vector<std::string>>();
    c.apnea = ModelConfig::from_json(j.at("apnea"), source);
    c.sleep = ModelConfig::from_json(j.at("sleep"), source);
    c.validation_fraction = j.at("validation_fraction");
    // Runs made before it existed held out the same share of sleep records as of apnea records.
    c.sleep_validation_fraction = j.value("sleep_validation_fraction", c.validation_fraction);
    c.apnea_sleep_nights = j.value("apnea_sleep_nights", false);  // runs made before it existed: off
    c.smooth_windows = j.at("smooth_windows");
    c.smooth_sleep_epochs = j.value("smooth_sleep_epochs", 0);  // runs made before it existed: off
    c.hmm = j.value("hmm", false);  // runs made before it existed: off
    c.members = j.value("members", 1);  // runs made before ensembles: one network per model
    c.sleep_members = j.value("sleep_members", c.members);  // runs made before it: as many as the apnea model
    for (auto [key, v] : {std::pair{"members", c.members}, std::pair{"sleep_members", c.sleep_members}})
      if (v < 1 || v > 50) throw Error(fmt::format("{}: run configuration: {} = {} is not in 1..50", source, key, v));
    c.cross_fit = j.value("cross_fit", false);
    c.threads = j.at("threads");
    return c;
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: run configuration: {}", source, e.what()));
  }
}

RunConfig RunConfig::defaults() {
  RunConfig c;
  const std::string root = SLEEPNET_SOURCE_DIR "/data/physionet";
  c.apnea_dir = root + "/apnea-ecg";
  c.sleep_dir = root + "/slpdb";
  // Apnea model: the scored minute with three minutes of context on each side, RR channel only
  // (the shipped Apnea-ECG files hold beat times, not the ECG, so there is no R amplitude) plus the
  // heart-rate level channel (each frame's mean RR), log
  // power z-scored per record (keeps a night's contrast between minutes; per-image z-scores erase
  // it), 32 x 32 images, MobileNetV2 width 0.5. Chosen by the comparison in the README.
  data::SpectrogramSettings& a = c.apnea.data.spectrogram;
  a.context_s = 180;
  a.height = 32;
  a.width = 32;
  a.amplitude_channel = false;
  a.level_channel = true;  // heart-rate level beside its spectrogram: README, input-design table
  // Frames of 48 s rather than the spectrogram's default 64: 5-fold CV of the apnea model, seeds
  // 1-4, minute accuracy 0.865 -> 0.870, ROC-AUC 0.930 -> 0.933, AHI r 0.874 -> 0.881 on average
  // (32, 96 and 128 s did worse; README, frame length table).
  a.stft_window_s = 48;
  a.normalization = data::SpecNormalization::None;
  c.apnea.data.record_normalization = data::RecordNormalization::ZScore;
  c.apnea.data.target = data::Target::Apnea;
  c.apnea.train.epochs = 5;
  c.apnea.train.patience = 2;
  // Training images moved by up to +-2 columns (+-26 s) along time: with it, 5 epochs beat 3 (without
  // it they do not); README, two-stage design table.
  c.apnea.train.time_shift = 2;
  // Sleep model: a 30-s epoch with 5 minutes of context on each side, same image design, 8 epochs.
  // Against 2.5 minutes and 4 epochs: 5-fold CV sleep/wake accuracy +1.2 to +4.5 points on each of
  // four seeds (README, sleep model designs); either change alone did not help.
  c.sleep.data = c.apnea.data;
  c.sleep.data.spectrogram.context_s = 300;
  c.sleep.data.spectrogram.stft_window_s = 64;  // the sleep model's designs were measured with 64-s frames
  c.sleep.data.target = data::Target::Sleep;
  c.sleep.train = c.apnea.train;
  c.sleep.train.epochs = 8;
  c.sleep.train.time_shift = 0;
  // Three sleep networks (seeds seed, seed + 1, seed + 2; every training night each), their p_sleep
  // averaged: 5-fold CV sleep/wake accuracy higher on each of four seeds (README, sleep model
  // designs), for twice the main job's time (52 -> 106 s on the AMD machine of the README).
  c.sleep_members = 3;
  // One apnea network: three (--members 3) cost three times the training time for no gain. With
  // the previous defaults: 5-fold CV minute ROC-AUC 0.935 -> 0.939 (mean of two seeds), AHI r 0.900
  // -> 0.894; with these: minute accuracy 0.880 -> 0.878, ROC-AUC 0.940 -> 0.942, AHI r 0.903 ->
  // 0.885 (README, design tables).
  if (const char* cache = std::getenv("SLEEPNET_CACHE")) {
    c.cache_dir = cache;
  } else if (const char* home = std::getenv("HOME")) {
    c.cache_dir = std::string(home) + "/.cache/sleepnet";
  }
  return c;
}

namespace {
std::atomic<bool> g_stop{false};
}
void request_stop() { g_stop.store(true); }
bool stop_requested() { return g_stop.load(); }

void set_threads(int threads) {
#ifdef _OPENMP
  if (threads > 0) omp_set_num_threads(threads);
#else
  (void)threads;
#endif
}

// ================================================================ records and models

std::vector<double> smooth_in_time(const std::vector<double>& p, const std::vector<double>& start_s,
                                   const std::vector<double>& duration_s, int k) {
  if (start_s.size() != p.size() || duration_s.size() != p.size())
    throw Error(fmt::format("smooth_in_time: {} probabilities, {} start times, {} durations; expected as many of each",
                            p.size(), start_s.size(), duration_s.size()));
  if (k <= 0) return p;
  std::vector<double> out(p.size());
  for (size_t j = 0; j < p.size(); ++j) {
    const double reach = k * duration_s[j] + 1e-6;
    double sum = 0;
    int n = 0;
    for (size_t i = j - std::min<size_t>(j, k); i < p.size() && i <= j + k; ++i) {
      if (std::fabs(start_s[i] - start_s[j]) > reach) continue;
      sum += p[i];
      ++n;
    }
    out[j] = sum / n;
  }
  return out;
}

TwoStateChain fit_chain(const std::vector<std::vector<int>>& labels, const std::vector<std::vector<double>>& start_s,
                        const std::vector<std::vector<double>>& duration_s) {
  if (start_s.size() != labels.size() || duration_s.size() != labels.size())
    throw Error(fmt::format("fit_chain: {} label vectors, {} start vectors, {} duration vectors; expected as many of each",
                            labels.size(), start_s.size(), duration_s.size()));
  double n[2] = {0, 0}, pairs[2][2] = {{1, 1}, {1, 1}};  // counts; pairs start at one each
  bool any = false;
  for (size_t r = 0; r < labels.size(); ++r) {
    const auto& y = labels[r];
    if (start_s[r].size() != y.size() || duration_s[r].size() != y.size())
      throw Error(fmt::format("fit_chain: record {}: {} labels, {} starts, {} durations; expected as many of each", r,
                              y.size(), start_s[r].size(), duration_s[r].size()));
    for (size_t j = 0; j < y.size(); ++j) {
      if (y[j] != 0 && y[j] != 1) continue;
      ++n[y[j]];
      any = true;
      const bool next = j + 1 < y.size() && (y[j + 1] == 0 || y[j + 1] == 1) &&
                        std::fabs(start_s[r][j + 1] - (start_s[r][j] + duration_s[r][j])) < 1e-6 * std::max(1.0, duration_s[r][j]);
      if (next) ++pairs[y[j]][y[j + 1]];
    }
  }
  TwoStateChain c;
  if (!any) return c;  // nothing labelled: not fitted
  c.prior = (n[1] + 1) / (n[0] + n[1] + 2);
  c.stay0 = pairs[0][0] / (pairs[0][0] + pairs[0][1]);
  c.stay1 = pairs[1][1] / (pairs[1][0] + pairs[1][1]);
  return c;
}

std::vector<double> chain_posterior(const std::vector<double>& p, const std::vector<double>& start_s,
                                    const std::vector<double>& duration_s, const TwoStateChain& chain) {
  if (start_s.size() != p.size() || duration_s.size() != p.size())
    throw Error(fmt::format("chain_posterior: {} probabilities, {} start times, {} durations; expected as many of each",
                            p.size(), start_s.size(), duration_s.size()));
  if (!chain.fitted() || chain.prior <= 0 || chain.prior >= 1 || !(chain.stay0 > 0 && chain.stay0 < 1) ||
      !(chain.stay1 > 0 && chain.stay1 < 1))
    throw Error(fmt::format("chain_posterior: chain prior {}, stay {} / {}; expected a fitted chain with all three in (0, 1)",
                            chain.prior, chain.stay0, chain.stay1));
  const size_t n = p.size();
  if (n == 0) return {};
  // Stationary distribution s and the second eigenvalue lam of T = [[stay0, 1 - stay0], [1 - stay1, stay1]]:
  // T^k = S + lam^k (I - S) with every row of S equal to s.
  const double lam = chain.stay0 + chain.stay1 - 1.0;
  const double s1 = (1.0 - chain.stay0) / (2.0 - chain.stay0 - chain.stay1), s0 = 1.0 - s1;
  // T[j] = T^k[from][to] for the step from window j-1 to window j, k = the windows between them in
  // window lengths (at least 1); computed once, used by both passes.
  using Matrix = std::array<std::array<double, 2>, 2>;
  std::vector<Matrix> T(n);
  for (size_t j = 1; j < n; ++j) {
    const double k = std::max(1.0, std::round((start_s[j] - start_s[j - 1]) / std::max(duration_s[j - 1], 1e-9)));
    const double lk = std::pow(lam, k);
    for (int from = 0; from < 2; ++from)
      for (int to = 0; to < 2; ++to) {
        const double s = to == 1 ? s1 : s0;
        T[j][from][to] = s + lk * ((from == to ? 1.0 : 0.0) - s);
      }
  }
  std::vector<std::array<double, 2>> e(n), a(n), b(n);
  for (size_t j = 0; j < n; ++j) {
    const double q = std::clamp(p[j], 1e-6, 1.0 - 1e-6);
    e[j] = {(1.0 - q) / (1.0 - chain.prior), q / chain.prior};
  }
  auto normalise = [](std::array<double, 2>& v) {
    const double t = v[0] + v[1];
    v[0] /= t, v[1] /= t;
  };
  a[0] = {(1.0 - chain.prior) * e[0][0], chain.prior * e[0][1]};
  normalise(a[0]);
  for (size_t j = 1; j < n; ++j) {
    for (int t = 0; t < 2; ++t) a[j][t] = (a[j - 1][0] * T[j][0][t] + a[j - 1][1] * T[j][1][t]) * e[j][t];
    normalise(a[j]);
  }
  b[n - 1] = {1.0, 1.0};
  for (size_t j = n - 1; j-- > 0;) {
    for (int f = 0; f < 2; ++f)
      b[j][f] = T[j + 1][f][0] * e[j + 1][0] * b[j + 1][0] + T[j + 1][f][1] * e[j + 1][1] * b[j + 1][1];
    normalise(b[j]);
  }
  std::vector<double> out(n);
  for (size_t j = 0; j < n; ++j) {
    const double g0 = a[j][0] * b[j][0], g1 = a[j][1] * b[j][1];
    out[j] = g1 / (g0 + g1);
  }
  return out;
}

std::vector<data::Record> load_records(const std::string& dir, const std::vector<std::string>& ids, bool progress) {
  data::DatabaseOptions opt;
  opt.records = ids;
  data::DatabaseLoad load = data::load_database(dir, opt);
  for (const std::string& w : load.warnings) fmt::print(stderr, "warning: {}\n", w);
  if (load.records.empty()) throw Error(fmt::format("{}: no usable record", dir));
  if (progress) fmt::print(stderr, "{}: {} records\n", dir, load.records.size());
  return std::move(load.records);
}

namespace {

data::DatasetOptions dataset_options(const ModelConfig& m, const std::string& cache_dir, data::Target target,
                                     bool keep_unlabelled) {
  data::DatasetOptions o = m.data;
  o.target = target;
  o.cache_dir = cache_dir;
  o.keep_unlabelled = keep_unlabelled;
  return o;
}

// Splits record indices into train / validation, by group and stratified by class.
data::Split train_validation_split(const data::Dataset& ds, double fraction, uint64_t seed) {
  std::vector<data::RecordKey> keys = data::record_keys(ds);
  data::Split split;
  std::map<std::string, int> groups;
  for (const auto& k : keys) groups[k.group]++;
  const int k = fraction > 0 ? static_cast<int>(std::lround(1.0 / fraction)) : 0;
  if (k < 2 || static_cast<int>(groups.size()) < k) {
    for (int i = 0; i < static_cast<int>(keys.size()); ++i) split.train.push_back(i);
    return split;
  }
  data::Split f = data::kfold_by_record(keys, {.k = k, .seed = seed, .stratify = true})[0];
  split.train = f.train;
  split.validation = f.test;
  return split;
}

// One trained network of a model.
std::unique_ptr<nn::MobileNetV2> train_network(const ModelConfig& m, uint64_t seed, const data::Dataset& ds,
                                               const data::Split& split, const std::string& dir,
                                               const std::string& name, bool resume, bool progress,
                                               std::vector<TrainingLog>* logs) {
  fs::create_directories(dir);
  TrainOptions t = m.train;
  t.seed = seed;
  t.progress = progress;
  auto model = std::make_unique<nn::MobileNetV2>(model_options(t, ds.channels()));
  if (progress)
    fmt::print(stderr, "{} model: {} training windows from {} records, {} validation windows from {} records\n", name,
               ds.samples_of(split.train).size(), split.train.size(), ds.samples_of(split.validation).size(),
               split.validation.size());
  TrainHooks hooks{.should_stop = [](int, int64_t) { return stop_requested(); }};
  TrainSummary s = train_model(*model, ds, ds.samples_of(split.train), ds.samples_of(split.validation), t, dir, name,
                               resume, hooks);
  if (logs) logs->push_back(s.log);
  return model;
}

// A model's `members` networks (RunConfig::members or sleep_members, cross_fit): network j has seed + j and, as its
// validation records, either a random share (`validation_fraction`: RunConfig's
// validation_fraction or sleep_validation_fraction; seeded with seed + j) or fold j
// of a K-fold split by record (cross_fit). `held_out[j]` receives network j's validation records
// (dataset record indices): the records it never trained on.
Ensemble train_ensemble(const ModelConfig& m, const data::Dataset& ds, const RunConfig& c, int members,
                        double validation_fraction, const std::string& dir, const std::string& name, bool resume,
                        std::vector<TrainingLog>* logs, std::vector<std::vector<int>>* held_out) {
  const int K = members;
  const bool folds_split = c.cross_fit && K >= 2;
  std::vector<data::Split> folds;
  if (folds_split) {
    std::vector<data::RecordKey> keys = data::record_keys(ds);
    std::set<std::string> groups;
    for (const auto& k : keys) groups.insert(k.group);
    if (static_cast<int>(groups.size()) < K)
      throw Error(fmt::format("{}: {} record group(s) cannot be split into {} folds for a cross-fitted ensemble "
                              "(--members {} --cross-fit)",
                              name, groups.size(), K, K));
    folds = data::kfold_by_record(keys, {.k = K, .seed = m.train.seed, .stratify = true});
  }
  Ensemble e;
  if (held_out) held_out->clear();
  for (int j = 0; j < K; ++j) {
    const uint64_t seed = m.train.seed + static_cast<uint64_t>(j);
    data::Split split;
    if (folds_split) {
      split.train = folds[j].train;
      split.validation = folds[j].test;
    } else {
      split = train_validation_split(ds, validation_fraction, seed);
    }
    const std::string member_dir = K < 2 ? dir : (fs::path(dir) / fmt::format("member{}", j + 1)).string();
    const std::string member_name = K < 2 ? name : fmt::format("{} member {}", name, j + 1);
    e.members.push_back(train_network(m, seed, ds, split, member_dir, member_name, resume, c.progress, logs));
    if (held_out) held_out->push_back(split.validation);
  }
  return e;
}

// Per record: its windows' probabilities, in dataset order.
struct RecordProbs {
  std::vector<int64_t> samples;
  std::vector<double> p;
};

// Start times and durations of samples, in their order.
void sample_times(const data::Dataset& ds, const std::vector<int64_t>& samples, std::vector<double>& start,
                  std::vector<double>& duration) {
  start.resize(samples.size());
  duration.resize(samples.size());
  for (size_t j = 0; j < samples.size(); ++j) {
    start[j] = ds.sample(samples[j]).start_s;
    duration[j] = ds.sample(samples[j]).duration_s;
  }
}

// The post-processing of each record's probabilities: smooth_in_time (pipeline.h) over +-k
// windows; with a chain (RunConfig::hmm), each window's value is then averaged with the chain's
// posterior, computed from the unsmoothed p.
void postprocess(std::vector<RecordProbs>& records, const data::Dataset& ds, int k,
                 const TwoStateChain* chain = nullptr) {
  if (k <= 0 && !chain) return;
  std::vector<double> start, duration;
  for (RecordProbs& rp : records) {
    sample_times(ds, rp.samples, start, duration);
    std::vector<double> box = screening::smooth_in_time(rp.p, start, duration, k);
    if (chain) {
      const std::vector<double> post = chain_posterior(rp.p, start, duration, *chain);
      for (size_t j = 0; j < box.size(); ++j) box[j] = 0.5 * (box[j] + post[j]);
    }
    rp.p = std::move(box);
  }
}

// The chain of the training records' apnea labels (RunConfig::hmm).
TwoStateChain fit_apnea_chain(const data::Dataset& ds) {
  std::vector<std::vector<int>> labels(ds.records().size());
  std::vector<std::vector<double>> start(labels.size()), duration(labels.size());
  for (size_t r = 0; r < labels.size(); ++r) {
    const std::vector<int64_t> samples = ds.samples_of({static_cast<int>(r)});
    sample_times(ds, samples, start[r], duration[r]);
    for (int64_t i : samples) labels[r].push_back(ds.sample(i).label > 0.5f ? 1 : ds.sample(i).label < -0.5f ? -1 : 0);
  }
  return fit_chain(labels, start, duration);
}

// The networks' mean probability of every sample, per record.
std::vector<RecordProbs> per_record(const std::vector<nn::MobileNetV2*>& nets, const data::Dataset& ds) {
  std::vector<double> p(static_cast<size_t>(ds.size()), 0.0);
  for (nn::MobileNetV2* net : nets) {
    std::vector<double> q = predict_probabilities(*net, ds, ds.all_samples());
    for (size_t i = 0; i < p.size(); ++i) p[i] += q[i] / static_cast<double>(nets.size());
  }
  std::vector<RecordProbs> out(ds.records().size());
  for (int64_t i = 0; i < ds.size(); ++i) {
    auto& r = out[ds.sample(i).record];
    r.samples.push_back(i);
    r.p.push_back(p[i]);
  }
  return out;
}

// The record with its windows replaced by unlabelled 30-s epochs (what the sleep model scores).
data::Record as_epochs(const data::Record& r) {
  data::Record e = r;
  e.windows.clear();
  for (double t = 0; t + 30.0 <= r.duration_s + 1e-6; t += 30.0) {
    data::Window w;
    w.start_s = t;
    w.duration_s = 30.0;
    e.windows.push_back(w);
  }
  return e;
}

}  // namespace

std::vector<data::Record> as_minutes(const std::vector<data::Record>& records) {
  std::vector<data::Record> out;
  out.reserve(records.size());
  for (const data::Record& r : records) {
    const bool minutes = std::all_of(r.windows.begin(), r.windows.end(),
                                     [](const data::Window& w) { return std::fabs(w.duration_s - 60.0) < 1e-6; });
    if (minutes) {
      out.push_back(r);
      continue;
    }
    data::Record m = r;
    m.windows.clear();
    size_t first = 0;  // the first window that may still overlap the current minute (windows in time order)
    for (double t = 0; t + 60.0 <= r.duration_s + 1e-6; t += 60.0) {
      data::Window w;
      w.start_s = t;
      w.duration_s = 60.0;
      bool any_apnea = false, all_normal = true;
      double covered = 0;
      while (first < r.windows.size() && r.windows[first].start_s + r.windows[first].duration_s <= t + 1e-6) ++first;
      for (size_t i = first; i < r.windows.size() && r.windows[i].start_s < t + 60.0 - 1e-6; ++i) {
        const data::Window& v = r.windows[i];
        const double a = std::max(v.start_s, t), b = std::min(v.start_s + v.duration_s, t + 60.0);
        if (b <= a) continue;
        covered += b - a;
        any_apnea |= v.apnea == 1;
        all_normal &= v.apnea == 0;
        w.events = static_cast<int16_t>(w.events + v.events);
      }
      w.apnea = any_apnea ? 1 : (all_normal && covered >= 60.0 - 1e-6) ? 0 : -1;
      m.windows.push_back(w);
    }
    out.push_back(std::move(m));
  }
  return out;
}

namespace {

std::vector<nn::MobileNetV2*> nets_of(const Ensemble& e) {
  std::vector<nn::MobileNetV2*> out;
  for (const auto& m : e.members) out.push_back(m.get());
  return out;
}

// What a run's networks predict: predict_records with the networks given explicitly (all of an
// ensemble, or only the member a record was held out from).
struct Predictor {
  const RunConfig& config;
  std::vector<nn::MobileNetV2*> apnea, sleep;  // sleep may be empty
  LinearFit calibration, calibration_in_bed;
  TwoStateChain apnea_chain;  // used when config.hmm
};

Prediction predict_with(const Predictor& models, const std::vector<data::Record>& records) {
  Prediction out;
  const RunConfig& c = models.config;
  const bool has_sleep = !models.sleep.empty();
  // Every window is scored (coverage filter off): windows.csv has a line per scored window.
  data::DatasetOptions ao = dataset_options(c.apnea, c.cache_dir, data::Target::Apnea, true);
  ao.min_coverage = 0.0;
  const std::vector<data::Record> minutes = as_minutes(records);  // what the apnea model scores
  data::Dataset ads = data::build_dataset(minutes, ao);
  std::vector<RecordProbs> ap = per_record(models.apnea, ads);
  postprocess(ap, ads, c.smooth_windows, c.hmm ? &models.apnea_chain : nullptr);

  // Sleep probability of each 30-s epoch, looked up by (record, epoch start).
  std::vector<std::map<int64_t, double>> sleep_p(records.size());
  if (has_sleep) {
    std::vector<data::Record> epochs;
    for (const auto& r : records) epochs.push_back(as_epochs(r));
    data::DatasetOptions so = dataset_options(c.sleep, c.cache_dir, data::Target::Sleep, true);
    so.min_coverage = 0.0;
    data::Dataset sds = data::build_dataset(epochs, so);
    std::vector<RecordProbs> sp = per_record(models.sleep, sds);
    postprocess(sp, sds, c.smooth_sleep_epochs);
    for (size_t ri = 0; ri < sds.records().size(); ++ri) {
      int idx = -1;
      for (size_t k = 0; k < records.size(); ++k)
        if (records[k].id == sds.records()[ri].id) idx = static_cast<int>(k);
      if (idx < 0) continue;
      for (size_t j = 0; j < sp[ri].samples.size(); ++j)
        sleep_p[idx][std::llround(sds.sample(sp[ri].samples[j]).start_s)] = sp[ri].p[j];
    }
  }

  for (size_t ri = 0; ri < ads.records().size(); ++ri) {
    const data::DatasetRecord& dr = ads.records()[ri];
    int idx = -1;
    for (size_t k = 0; k < records.size(); ++k)
      if (records[k].id == dr.id) idx = static_cast<int>(k);
    RecordRow row;
    row.record = dr.id;
    int64_t apnea = 0;
    double in_bed_s = 0, asleep_s = 0;
    for (size_t j = 0; j < ap[ri].samples.size(); ++j) {
      const data::SampleInfo& s = ads.sample(ap[ri].samples[j]);
      const data::Record& rec = minutes[idx];
      WindowRow w;
      w.record = dr.id;
      w.start_s = s.start_s;
      w.duration_s = s.duration_s;
      w.p_apnea = ap[ri].p[j];
      w.reference_apnea = rec.windows[s.window].apnea;
      in_bed_s += s.duration_s;
      if (has_sleep) {
        // mean of the sleep epochs inside the window
        double sum = 0;
        int n = 0;
        for (double t = s.start_s; t < s.start_s + s.duration_s - 1e-6; t += 30.0) {
          auto it = sleep_p[idx].find(std::llround(t));
          if (it != sleep_p[idx].end()) {
            sum += it->second;
            ++n;
          }
        }
        w.p_sleep = n ? sum / n : kNaN;
        // the window counts as asleep when its epochs are, on average (no epoch scored: asleep)
        const bool asleep = n == 0 || sum / n >= 0.5;
        if (asleep) {
          asleep_s += s.duration_s;
          if (w.p_apnea >= 0.5) ++apnea;  // an apnea counts only in a window scored asleep
        }
      } else {
        asleep_s += s.duration_s;
        if (w.p_apnea >= 0.5) ++apnea;
      }
      out.windows.push_back(w);
    }
    row.apnea_windows = apnea;
    row.hours_in_bed = in_bed_s / 3600.0;
    row.hours = has_sleep ? asleep_s / 3600.0 : row.hours_in_bed;
    // The raw AHI is the number of apnea windows (p_apnea >= 0.5, after smoothing) per hour of
    // sleep. (The expected count, the sum of p_apnea, was measured too: it correlates less with the
    // reference AHI, r 0.84 vs 0.89 over the 5-fold cross-validation, because normal nights
    // accumulate many small probabilities.) A night with (almost) no predicted sleep has no AHI.
    int64_t apnea_in_bed = 0;
    for (double p : ap[ri].p) apnea_in_bed += p >= 0.5;
    row.raw_ahi = row.hours > 0.05 ? apnea / row.hours : kNaN;
    const double raw_in_bed = row.hours_in_bed > 0.05 ? apnea_in_bed / row.hours_in_bed : kNaN;
    row.estimated_ahi = std::isfinite(row.raw_ahi) ? calibrated_ahi(models.calibration, row.raw_ahi) : kNaN;
    row.estimated_ahi_in_bed = std::isfinite(raw_in_bed) ? calibrated_ahi(models.calibration_in_bed, raw_in_bed) : kNaN;
    if (!has_sleep) row.estimated_ahi = row.estimated_ahi_in_bed;
    if (idx >= 0 && records[idx].meta.reference_ahi) row.reference_ahi = *records[idx].meta.reference_ahi;
    out.records.push_back(row);
  }
  return out;
}

}  // namespace

Prediction predict_records(Models& models, const std::vector<data::Record>& records) {
  return predict_with({models.config, nets_of(models.apnea), nets_of(models.sleep), models.calibration,
                       models.calibration_in_bed, models.apnea_chain},
                      records);
}

std::vector<SleepEpochRow> predict_sleep_epochs(Models& models, const std::vector<data::Record>& records) {
  std::vector<SleepEpochRow> out;
  if (!models.sleep) return out;
  data::Dataset ds = data::build_dataset(records, dataset_options(models.config.sleep, models.config.cache_dir,
                                                                  data::Target::Sleep, false));
  std::vector<RecordProbs> sp = per_record(nets_of(models.sleep), ds);
  postprocess(sp, ds, models.config.smooth_sleep_epochs);
  for (const RecordProbs& rp : sp) {
    for (size_t j = 0; j < rp.samples.size(); ++j) {
      const data::SampleInfo& s = ds.sample(rp.samples[j]);
      out.push_back({ds.records()[s.record].id, s.start_s, s.duration_s, rp.p[j], s.label > 0.5f ? 1 : 0});
    }
  }
  return out;
}

Models train_models(const RunConfig& c, const std::vector<data::Record>& apnea_records,
                    const std::vector<data::Record>& sleep_records, const std::string& work_dir, bool resume,
                    std::vector<TrainingLog>* logs) {
  Models m;
  m.config = c;
  std::vector<std::vector<int>> held_out;  // per apnea network: the records it never trained on
  std::vector<std::string> apnea_ids;
  {
    std::vector<data::Record> train_records = apnea_records;
    if (c.apnea_sleep_nights) {
      if (sleep_records.empty())
        throw Error("--apnea-sleep-nights: the apnea model is to train on the sleep model's nights, but there are "
                    "none (no sleep data, or --no-sleep-model)");
      train_records.insert(train_records.end(), sleep_records.begin(), sleep_records.end());
    }
    data::Dataset ds =
        data::build_dataset(as_minutes(train_records), dataset_options(c.apnea, c.cache_dir, data::Target::Apnea, false));
    if (c.progress) fmt::print(stderr, "apnea dataset: {}\n", ds.stats().to_string());
    for (const auto& r : ds.records()) apnea_ids.push_back(r.id);
    if (c.hmm) {
      m.apnea_chain = fit_apnea_chain(ds);
      if (!m.apnea_chain.fitted()) throw Error("apnea model: no labelled training window to fit the apnea chain (--no-hmm)");
      if (c.progress)
        fmt::print(stderr, "apnea chain: prior {:.3f}, P(stay normal) {:.3f}, P(stay apnea) {:.3f}\n", m.apnea_chain.prior,
                   m.apnea_chain.stay0, m.apnea_chain.stay1);
    }
    m.apnea = train_ensemble(c.apnea, ds, c, c.members, c.validation_fraction, (fs::path(work_dir) / "apnea").string(), "apnea",
                             resume, logs, &held_out);
  }
  if (!sleep_records.empty()) {
    data::Dataset ds = data::build_dataset(sleep_records, dataset_options(c.sleep, c.cache_dir, data::Target::Sleep, false));
    if (c.progress) fmt::print(stderr, "sleep dataset: {}\n", ds.stats().to_string());
    m.sleep = train_ensemble(c.sleep, ds, c, c.sleep_members, c.sleep_validation_fraction, (fs::path(work_dir) / "sleep").string(),
                             "sleep", resume, logs, nullptr);
  }
  // AHI calibration on the training records only: on the predictions of the networks that trained
  // on them, or with cross_fit, each record predicted by the member that never saw it (the sleep
  // networks never saw an apnea record either way).
  m.calibration = m.calibration_in_bed = LinearFit{};
  Prediction p;
  if (!c.cross_fit || m.apnea.size() < 2) {
    p = predict_records(m, apnea_records);
  } else {
    for (size_t j = 0; j < m.apnea.size(); ++j) {
      std::set<std::string> ids;
      for (int i : held_out[j]) ids.insert(apnea_ids[static_cast<size_t>(i)]);
      std::vector<data::Record> part;
      for (const auto& r : apnea_records)
        if (ids.count(r.id)) part.push_back(r);
      if (part.empty()) continue;
      Prediction q = predict_with({c, {m.apnea.members[j].get()}, nets_of(m.sleep), {}, {}, m.apnea_chain}, part);
      p.records.insert(p.records.end(), q.records.begin(), q.records.end());
    }
  }
  std::vector<double> raw, raw_in_bed, ref, ref_in_bed;
  for (const RecordRow& r : p.records) {
    if (!std::isfinite(r.reference_ahi) || r.hours_in_bed <= 0) continue;
    if (std::isfinite(r.raw_ahi)) {
      raw.push_back(r.raw_ahi);
      ref.push_back(r.reference_ahi);
    }
    // the raw in-bed AHI is estimated_ahi_in_bed under the identity calibration
    if (std::isfinite(r.estimated_ahi_in_bed)) {
      raw_in_bed.push_back(r.estimated_ahi_in_bed);
      ref_in_bed.push_back(r.reference_ahi);
    }
  }
  auto fit = [&](const std::vector<double>& x, const std::vector<double>& y, const char* which) {
    if (x.size() < 3) {
      if (c.progress) fmt::print(stderr, "AHI calibration ({}): {} training records with a reference: none fitted\n", which, x.size());
      return LinearFit{};
    }
    double lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
    if (hi - lo < 0.5) {  // raw AHIs within half an event per hour: no line can be fitted sensibly
      fmt::print(stderr, "warning: AHI calibration ({}) not fitted (raw AHI of the training records spans only {:.3g}/h): identity used\n", which, hi - lo);
      return LinearFit{};
    }
    try {
      return fit_linear(x, y);
    } catch (const Error& e) {  // e.g. a model that predicts no apnea at all yet
      fmt::print(stderr, "warning: AHI calibration ({}) not fitted, identity used: {}\n", which, e.what());
      return LinearFit{};
    }
  };
  m.calibration = fit(raw, ref, "per sleep hour");
  m.calibration_in_bed = fit(raw_in_bed, ref_in_bed, "per hour in bed");
  if (!m.sleep) m.calibration = m.calibration_in_bed;
  return m;
}

// ================================================================ run directories

void prepare_run_dir(const std::string& run_dir, const RunConfig& config, bool resume, bool overwrite) {
  const fs::path dir(run_dir), run_json = dir / "run.json";
  if (fs::exists(run_json)) {
    json j = read_json(run_json);
    const std::string version = j.value("format", "");
    const std::string status = j.value("status", "");
    if (overwrite) {
      for (const char* sub : {"apnea", "sleep", "report"}) fs::remove_all(dir / sub);
      fs::remove(dir / "calibration.json");
    } else if (version != run_format_version()) {
      throw Error(fmt::format("{}: a run of another format ('{}', this program writes '{}'); use another "
                              "directory or --overwrite",
                              run_json.string(), version, run_format_version()));
    } else if (status == "finished") {
      throw Error(fmt::format("{}: holds a finished run; nothing is overwritten unless you pass --overwrite",
                              run_dir));
    } else if (!resume) {
      throw Error(fmt::format("{}: holds an unfinished run; pass --resume to continue it or --overwrite to start over",
                              run_dir));
    } else if (RunConfig::from_json(j.at("config"), run_json.string()).to_json() != config.to_json()) {
      throw Error(fmt::format("{}: was started with another configuration; resume with the same flags",
                              run_json.string()));
    }
  } else if (fs::exists(dir) && !fs::is_empty(dir) && !overwrite) {
    throw Error(fmt::format("{}: exists and is not a sleepnet run directory (no run.json); refusing to write into it",
                            run_dir));
  }
  fs::create_directories(dir);
  json j{{"format", run_format_version()}, {"status", "training"}, {"config", config.to_json()}};
  write_file_atomic(run_json, j.dump(2) + "\n");
}

void write_calibration(const Models& m, const std::string& run_dir) {
  const fs::path dir(run_dir);
  json cal{{"with_sleep_model", {{"slope", m.calibration.slope}, {"intercept", m.calibration.intercept}}},
           {"in_bed", {{"slope", m.calibration_in_bed.slope}, {"intercept", m.calibration_in_bed.intercept}}},
           {"sleep_model", static_cast<bool>(m.sleep)},
           {"apnea_chain", m.apnea_chain.fitted() ? json{{"prior", m.apnea_chain.prior},
                                                         {"stay_normal", m.apnea_chain.stay0},
                                                         {"stay_apnea", m.apnea_chain.stay1}}
                                                  : json(nullptr)},
           {"apnea_members", m.apnea.size()},
           {"sleep_members", m.sleep.size()}};
  write_file_atomic(dir / "calibration.json", cal.dump(2) + "\n");
}

void save_models(const Models& m, const std::string& run_dir) {
  write_calibration(m, run_dir);
  const fs::path dir(run_dir);
  json j = read_json(dir / "run.json");
  j["status"] = "finished";
  write_file_atomic(dir / "run.json", j.dump(2) + "\n");
}

Models load_models(const std::string& run_dir) {
  const fs::path dir(run_dir), run_json = dir / "run.json";
  if (!fs::exists(run_json)) throw Error(fmt::format("{}: not a sleepnet run directory (no run.json)", run_dir));
  json j = read_json(run_json);
  if (j.value("format", "") != run_format_version())
    throw Error(fmt::format("{}: a run of another format ('{}', this program reads '{}')", run_json.string(),
                            j.value("format", ""), run_format_version()));
  if (j.value("status", "") != "finished")
    throw Error(fmt::format("{}: the run did not finish training (resume it with `sleepnet train --resume`)", run_dir));
  Models m;
  m.config = RunConfig::from_json(j.at("config"), run_json.string());
  json cal = read_json(dir / "calibration.json");
  try {
    m.calibration = {cal.at("with_sleep_model").at("slope"), cal.at("with_sleep_model").at("intercept")};
    m.calibration_in_bed = {cal.at("in_bed").at("slope"), cal.at("in_bed").at("intercept")};
    if (m.config.hmm) {
      if (!cal.contains("apnea_chain") || cal.at("apnea_chain").is_null())
        throw Error(fmt::format("{}: 'apnea_chain' missing, but run.json's configuration has hmm = true",
                                (dir / "calibration.json").string()));
      const json& ch = cal.at("apnea_chain");
      m.apnea_chain = {ch.at("prior").get<double>(), ch.at("stay_normal").get<double>(), ch.at("stay_apnea").get<double>()};
      auto inside = [](double v) { return v > 0 && v < 1; };
      if (!inside(m.apnea_chain.prior) || !inside(m.apnea_chain.stay0) || !inside(m.apnea_chain.stay1))
        throw Error(fmt::format("{}: 'apnea_chain': prior {}, stay_normal {}, stay_apnea {}; expected each in (0, 1)",
                                (dir / "calibration.json").string(), m.apnea_chain.prior, m.apnea_chain.stay0,
                                m.apnea_chain.stay1));
    }
  } catch (const json::exception& e) {
    throw Error(fmt::format("{}: {}", (dir / "calibration.json").string(), e.what()));
  }
  auto load = [&](const ModelConfig& mc, const char* sub, const char* count_key, int expected, const char* config_key) {
    Ensemble e;
    int n = 1;
    try {
      n = cal.value(count_key, 1);  // runs made before ensembles: one network
    } catch (const json::exception& ex) {
      throw Error(fmt::format("{}: '{}': {}", (dir / "calibration.json").string(), count_key, ex.what()));
    }
    if (n != expected)
      throw Error(fmt::format("{}: '{}' = {}, but run.json's configuration has {} = {}",
                              (dir / "calibration.json").string(), count_key, n, config_key, expected));
    for (int j = 0; j < n; ++j) {
      auto model = std::make_unique<nn::MobileNetV2>(model_options(mc.train, mc.data.spectrogram.channels()));
      const fs::path f = n == 1 ? dir / sub / "best.safetensors" : dir / sub / fmt::format("member{}", j + 1) / "best.safetensors";
      model->load_state_dict(nn::load_safetensors(f.string()).tensors);
      e.members.push_back(std::move(model));
    }
    return e;
  };
  m.apnea = load(m.config.apnea, "apnea", "apnea_members", m.config.members, "members");
  if (cal.value("sleep_model", false))
    m.sleep = load(m.config.sleep, "sleep", "sleep_members", m.config.sleep_members, "sleep_members");
  return m;
}

}  // namespace sleepnet::screening
