// app_test.cpp: the screening app's training loop and pipeline on small synthetic records:
// an interrupted run resumed from its checkpoint ends with exactly the weights of an uninterrupted
// one; the models learn a separable toy problem; run directories refuse to be overwritten; predict
// writes the two CSV files with the documented headers.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "apps/screening/cv.h"
#include "apps/screening/pipeline.h"
#include "apps/screening/trainer.h"
#include "data/dataset.h"
#include "nn/safetensors.h"

using namespace sleepnet;
using namespace sleepnet::screening;
namespace fs = std::filesystem;

namespace {

// A night of `minutes` minutes: RR around 1 s; apnea minutes carry a 40-s cyclic variation of
// heart rate (the CVHR the apnea model looks for), normal minutes only small noise.
data::Record toy_record(const std::string& id, int minutes, uint64_t seed, double apnea_share) {
  Generator g(seed);
  data::Record r;
  r.id = id;
  r.database = data::Database::Wfdb;
  r.duration_s = minutes * 60.0;
  r.meta.night = r.meta.subject = id;
  std::vector<int8_t> label(minutes);
  int apnea_minutes = 0;
  for (int m = 0; m < minutes; ++m) {
    label[m] = ((m / 5) % 10) < apnea_share * 10 ? 1 : 0;  // runs of 5 minutes
    apnea_minutes += label[m];
  }
  double t = 0.2;
  while (t < r.duration_s) {
    r.beat_times_s.push_back(t);
    const int m = std::min(minutes - 1, static_cast<int>(t / 60));
    double rr = 1.0 + 0.02 * g.normal();
    if (label[m]) rr += 0.15 * std::sin(2 * M_PI * t / 40.0);
    t += rr;
  }
  r.beat_fs_hz = 100;
  for (int m = 0; m < minutes; ++m) {
    data::Window w;
    w.start_s = m * 60.0;
    w.duration_s = 60.0;
    w.apnea = label[m];
    w.sleep = 1;
    r.windows.push_back(w);
  }
  r.meta.reference_ahi = apnea_minutes * 60.0 / minutes;
  return r;
}

std::vector<data::Record> toy_records(int minutes = 30) {
  std::vector<data::Record> rs;
  const double shares[] = {0.0, 0.2, 0.5, 0.7, 0.1, 0.4};
  for (int i = 0; i < 6; ++i) rs.push_back(toy_record(fmt::format("t{:02d}", i), minutes, 100 + i, shares[i]));
  return rs;
}

ModelConfig toy_model_config() {
  ModelConfig m;
  m.data.spectrogram.height = m.data.spectrogram.width = 16;
  m.data.spectrogram.context_s = 60;
  m.data.spectrogram.amplitude_channel = false;
  m.train.epochs = 3;
  m.train.batch_size = 16;
  m.train.width_mult = 0.25;
  m.train.lr = 3e-3;
  m.train.patience = 0;
  m.train.progress = false;
  return m;
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / fmt::format("sleepnet_app_test_{}_{}", name, ::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Edits a finished run's calibration.json, then expects load_models to refuse the run with an
// error that names `key`.
void expect_refused_after_editing_calibration(const fs::path& run, const std::function<void(nlohmann::json&)>& edit,
                                              const std::string& key) {
  nlohmann::json cal = nlohmann::json::parse(std::ifstream(run / "calibration.json"));
  edit(cal);
  std::ofstream(run / "calibration.json") << cal.dump();
  try {
    load_models(run.string());
    ADD_FAILURE() << "calibration.json edited (" << key << "): the run must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
  }
}

}  // namespace

// Killed mid-epoch and resumed: the same weights, bit for bit, as an uninterrupted run; with and
// without augmentation (whose random numbers must not depend on where the run started).
class TrainerResume : public ::testing::TestWithParam<bool> {};

TEST_P(TrainerResume, InterruptedRunResumesToTheSameWeights) {
  auto records = toy_records();
  ModelConfig mc = toy_model_config();
  if (GetParam()) {
    mc.train.time_shift = 2;
    mc.train.mixup = 0.4;
  }
  data::Dataset ds = data::build_dataset(records, mc.data);
  std::vector<int64_t> train = ds.samples_of({0, 1, 2, 3}), val = ds.samples_of({4, 5});
  ASSERT_GT(train.size(), 50u);

  fs::path a = temp_dir("a"), b = temp_dir("b");
  nn::MobileNetV2 model_a(model_options(mc.train, ds.channels()));
  TrainSummary sa = train_model(model_a, ds, train, val, mc.train, a.string(), "apnea", false);
  EXPECT_EQ(sa.log.epochs.size(), 3u);

  // Run b is "killed" in the middle of epoch 2, then resumed from the checkpoint of epoch 1.
  nn::MobileNetV2 model_b(model_options(mc.train, ds.channels()));
  TrainHooks stop{.should_stop = [](int epoch, int64_t batch) { return epoch == 2 && batch == 3; }};
  EXPECT_THROW(train_model(model_b, ds, train, val, mc.train, b.string(), "apnea", false, stop), Interrupted);
  nn::MobileNetV2 model_c(model_options(mc.train, ds.channels()));  // a new process would start afresh
  TrainSummary sc = train_model(model_c, ds, train, val, mc.train, b.string(), "apnea", true);
  EXPECT_TRUE(sc.resumed);
  EXPECT_EQ(sc.log.epochs.size(), 3u);
  EXPECT_EQ(sc.best_epoch, sa.best_epoch);

  auto wa = model_a.state_dict(), wc = model_c.state_dict();
  ASSERT_EQ(wa.size(), wc.size());
  for (const auto& [name, rec] : wa) {
    ASSERT_TRUE(wc.count(name)) << name;
    EXPECT_EQ(rec.tensor.to_vector(), wc.at(name).tensor.to_vector()) << name << " differs after resume";
  }
  for (size_t e = 0; e < 3; ++e) EXPECT_EQ(sa.log.epochs[e].train_loss, sc.log.epochs[e].train_loss) << e;
  EXPECT_TRUE(fs::exists(b / "log.csv"));
  fs::remove_all(a);
  fs::remove_all(b);
}

INSTANTIATE_TEST_SUITE_P(Trainer, TrainerResume, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Augmented" : "Plain"; });

namespace {
// A batch of N images [N, 2, 3, W] whose pixel (n, c, h, w) is 1000 n + 100 c + 10 h + w and
// labels n / (N - 1).
data::Batch numbered_batch(int64_t N, int64_t W) {
  data::Batch b;
  b.images = Tensor::empty({N, 2, 3, W});
  b.labels = Tensor::empty({N, 1});
  float* x = b.images.data();
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t h = 0; h < 3; ++h)
        for (int64_t w = 0; w < W; ++w) x[((n * 2 + c) * 3 + h) * W + w] = float(1000 * n + 100 * c + 10 * h + w);
    b.labels.data()[n] = float(n) / float(N - 1);
  }
  b.index = 5;
  return b;
}

// numbered_batch(N, W) as made and after augment_batch(o, epoch).
struct Augmented {
  data::Batch before, after;
};
Augmented augment_numbered(int64_t N, int64_t W, const TrainOptions& o, int epoch) {
  Augmented a{numbered_batch(N, W), numbered_batch(N, W)};
  augment_batch(a.after, o, epoch);
  return a;
}
}  // namespace

TEST(Augment, TimeShiftMovesWholeImagesAlongTimeWithTheEdgeRepeated) {
  const int64_t N = 40, W = 8;
  TrainOptions o;
  o.time_shift = 2;
  Augmented a = augment_numbered(N, W, o, 3);
  EXPECT_EQ(a.after.labels.to_vector(), a.before.labels.to_vector());
  std::set<int64_t> shifts;
  const float* x = a.after.images.data();
  for (int64_t n = 0; n < N; ++n) {
    // The shift s of image n, read from its first row: column w holds original column clamp(w - s).
    const float* first = x + n * 2 * 3 * W;
    int64_t s = 99;
    for (int64_t cand = -2; cand <= 2; ++cand) {
      bool ok = true;
      for (int64_t w = 0; w < W; ++w) ok = ok && first[w] == float(1000 * n + std::clamp<int64_t>(w - cand, 0, W - 1));
      if (ok) s = cand;
    }
    ASSERT_NE(s, 99) << "image " << n << " is not a shift of at most 2 columns";
    shifts.insert(s);
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t h = 0; h < 3; ++h)
        for (int64_t w = 0; w < W; ++w)
          ASSERT_EQ(x[((n * 2 + c) * 3 + h) * W + w], float(1000 * n + 100 * c + 10 * h + std::clamp<int64_t>(w - s, 0, W - 1)))
              << "image " << n << " channel " << c << " row " << h << ": every row moves by the same " << s;
  }
  EXPECT_EQ(shifts.size(), 5u) << "40 images should see every shift in -2..2";
}

TEST(Augment, MixupBlendsImagesAndLabelsWithOneWeightPerBatch) {
  const int64_t N = 16, W = 4;
  TrainOptions o;
  o.mixup = 0.4;
  Augmented a = augment_numbered(N, W, o, 1);
  const std::vector<float> before = a.before.images.to_vector();
  data::Batch& b = a.after;
  const float* x = b.images.data();
  const float* y = b.labels.data();
  const int64_t per = 2 * 3 * W;
  double label_sum = 0;
  int changed = 0;
  for (int64_t n = 0; n < N; ++n) {
    // Image n = lam * image n + (1 - lam) * image m: pixel minus its (c, h, w) part is 1000 times
    // the blended index, lam * n + (1 - lam) * m, which the label must equal / (N - 1).
    const double blended = x[n * per] / 1000.0;
    for (int64_t i = 0; i < per; ++i)
      ASSERT_NEAR(x[n * per + i], blended * 1000.0 + (before[static_cast<size_t>(i)]), 2e-2) << n << " " << i;
    EXPECT_NEAR(y[n], blended / double(N - 1), 1e-5) << "image " << n;
    EXPECT_GE(y[n], 0.f);
    EXPECT_LE(y[n], 1.f);
    label_sum += y[n];
    changed += std::abs(blended - double(n)) > 1e-3;
  }
  // A permutation is mixed in, so the labels' sum is kept.
  EXPECT_NEAR(label_sum, N / 2.0, 1e-4);
  EXPECT_GT(changed, N / 2);

  // The same (seed, epoch, batch) gives the same batch; another epoch another one.
  EXPECT_EQ(augment_numbered(N, W, o, 1).after.images.to_vector(), b.images.to_vector());
  EXPECT_NE(augment_numbered(N, W, o, 2).after.images.to_vector(), b.images.to_vector());
}

TEST(Augment, OptionsAreValidatedAndOlderRunsReadWithoutAugmentation) {
  TrainOptions o;
  o.time_shift = -1;
  EXPECT_THROW(o.validate(), Error);
  o.time_shift = 0;
  o.mixup = -0.5;
  EXPECT_THROW(o.validate(), Error);
  nlohmann::json j = TrainOptions{}.to_json();
  j.erase("time_shift");
  j.erase("mixup");
  TrainOptions old = TrainOptions::from_json(j);
  EXPECT_EQ(old.time_shift, 0);
  EXPECT_EQ(old.mixup, 0.0);
}

TEST(Trainer, CheckpointOfOtherOptionsIsRefused) {
  auto records = toy_records();
  ModelConfig mc = toy_model_config();
  mc.train.epochs = 1;
  data::Dataset ds = data::build_dataset(records, mc.data);
  fs::path d = temp_dir("opts");
  nn::MobileNetV2 m1(model_options(mc.train, ds.channels()));
  train_model(m1, ds, ds.all_samples(), {}, mc.train, d.string(), "apnea", false);
  TrainOptions other = mc.train;
  other.lr *= 2;
  nn::MobileNetV2 m2(model_options(other, ds.channels()));
  try {
    train_model(m2, ds, ds.all_samples(), {}, other, d.string(), "apnea", true);
    FAIL() << "resuming with other options must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("other training options"), std::string::npos) << e.what();
  }
  fs::remove_all(d);
}

TEST(Pipeline, LearnsTheToyProblemAndPredictWritesTheCsvFiles) {
  auto records = toy_records(90);
  RunConfig c;
  c.apnea = toy_model_config();
  c.apnea.train.epochs = 15;
  c.apnea.train.batch_size = 32;
  c.apnea.data.target = data::Target::Apnea;
  c.validation_fraction = 0.0;
  c.progress = false;
  fs::path run = temp_dir("run");
  std::vector<data::Record> train(records.begin(), records.begin() + 4), test(records.begin() + 4, records.end());
  prepare_run_dir(run.string(), c, false, false);
  Models m = train_models(c, train, {}, run.string(), false, nullptr);
  save_models(m, run.string());

  // A finished run is never overwritten unless asked.
  EXPECT_THROW(prepare_run_dir(run.string(), c, false, false), Error);
  EXPECT_THROW(prepare_run_dir(run.string(), c, true, false), Error);

  Models loaded = load_models(run.string());
  // The apnea chain (RunConfig::hmm, on by default) is fitted on the training labels and saved.
  ASSERT_TRUE(c.hmm);
  ASSERT_TRUE(m.apnea_chain.fitted());
  EXPECT_EQ(loaded.apnea_chain.prior, m.apnea_chain.prior);
  EXPECT_EQ(loaded.apnea_chain.stay0, m.apnea_chain.stay0);
  EXPECT_EQ(loaded.apnea_chain.stay1, m.apnea_chain.stay1);
  Prediction p = predict_records(loaded, test);
  ASSERT_EQ(p.records.size(), 2u);
  // The toy problem is separable: held-out minutes are classified well.
  int correct = 0, n = 0;
  for (const WindowRow& w : p.windows) {
    if (w.reference_apnea < 0) continue;
    correct += (w.p_apnea >= 0.5) == (w.reference_apnea == 1);
    ++n;
  }
  EXPECT_GT(static_cast<double>(correct) / n, 0.85) << correct << " of " << n;
  std::string windows = predictions_windows_csv(p.windows, false);
  EXPECT_EQ(windows.substr(0, windows.find('\n')), "record,start_s,duration_s,p_apnea,apnea");
  std::string recs = predictions_records_csv(p.records);
  EXPECT_EQ(recs.substr(0, recs.find('\n')), "record,hours,apnea_windows,estimated_ahi,severity");
  EXPECT_EQ(std::count(windows.begin(), windows.end(), '\n'), static_cast<long>(p.windows.size()) + 1);

  // p_apnea = the mean of the +-2 average and the chain's posterior, both from the networks' own
  // probabilities (those of the run without any post-processing).
  Models bare = load_models(run.string());
  bare.config.smooth_windows = 0;
  bare.config.hmm = false;
  const Prediction raw = predict_records(bare, test);
  ASSERT_EQ(raw.windows.size(), p.windows.size());
  for (size_t a = 0, b = 0; a < raw.windows.size(); a = b) {
    for (b = a; b < raw.windows.size() && raw.windows[b].record == raw.windows[a].record;) ++b;
    std::vector<double> q, start, dur;
    for (size_t i = a; i < b; ++i) {
      q.push_back(raw.windows[i].p_apnea);
      start.push_back(raw.windows[i].start_s);
      dur.push_back(raw.windows[i].duration_s);
    }
    const std::vector<double> box = smooth_in_time(q, start, dur, 2), post = chain_posterior(q, start, dur, m.apnea_chain);
    for (size_t i = a; i < b; ++i) EXPECT_NEAR(p.windows[i].p_apnea, 0.5 * (box[i - a] + post[i - a]), 1e-12) << i;
  }

  // The same nights given as 30-s epochs (how slpdb, UCDDB and EDF records come) are scored as
  // the same minutes: the same windows, probabilities and AHI, not twice as many windows.
  std::vector<data::Record> halves = test;
  for (data::Record& r : halves) {
    std::vector<data::Window> epochs;
    for (const data::Window& w : r.windows)
      for (int h = 0; h < 2; ++h) {
        data::Window e = w;
        e.start_s = w.start_s + 30.0 * h;
        e.duration_s = 30.0;
        epochs.push_back(e);
      }
    r.windows = epochs;
  }
  const Prediction from_epochs = predict_records(loaded, halves);
  ASSERT_EQ(from_epochs.windows.size(), p.windows.size());
  for (size_t i = 0; i < p.windows.size(); ++i) {
    EXPECT_EQ(from_epochs.windows[i].duration_s, 60.0);
    EXPECT_EQ(from_epochs.windows[i].start_s, p.windows[i].start_s);
    EXPECT_EQ(from_epochs.windows[i].p_apnea, p.windows[i].p_apnea) << i;
    EXPECT_EQ(from_epochs.windows[i].reference_apnea, p.windows[i].reference_apnea) << i;
  }
  for (size_t i = 0; i < p.records.size(); ++i) EXPECT_EQ(from_epochs.records[i].estimated_ahi, p.records[i].estimated_ahi);

  // A run trained with the chain cannot be read without it.
  expect_refused_after_editing_calibration(run, [](nlohmann::json& cal) { cal.erase("apnea_chain"); }, "apnea_chain");
  fs::remove_all(run);
}

// An ensemble (members = 3; seeds and random validation records, or cross-fitted folds): three
// networks, each with its own checkpoints and validation records; loading the run gives back the
// same three networks (the same predictions), and the ensemble's probability is the members' mean.
class PipelineEnsemble : public ::testing::TestWithParam<bool> {};

TEST_P(PipelineEnsemble, MembersAreSavedLoadedAndAveraged) {
  auto records = toy_records(40);
  RunConfig c;
  c.apnea = toy_model_config();
  c.apnea.train.epochs = 2;
  c.apnea.data.target = data::Target::Apnea;
  c.members = 3;
  c.cross_fit = GetParam();
  c.validation_fraction = 0.34;  // one validation group of three (the toy records are 5 groups)
  c.progress = false;
  fs::path run = temp_dir("ensemble");
  std::vector<data::Record> train(records.begin(), records.begin() + 5), test(records.begin() + 5, records.end());
  prepare_run_dir(run.string(), c, false, false);
  std::vector<TrainingLog> logs;
  Models m = train_models(c, train, {}, run.string(), false, &logs);
  save_models(m, run.string());
  ASSERT_EQ(m.apnea.size(), 3u);
  EXPECT_FALSE(m.sleep);
  ASSERT_EQ(logs.size(), 3u);
  EXPECT_EQ(logs[1].name, "apnea member 2");
  for (int j = 1; j <= 3; ++j) EXPECT_TRUE(fs::exists(run / "apnea" / fmt::format("member{}", j) / "best.safetensors")) << j;
  // Every member validated on records it did not train on: its log has validation scores.
  for (const auto& log : logs) EXPECT_TRUE(std::isfinite(log.epochs.back().val_auc)) << log.name;

  Models loaded = load_models(run.string());
  ASSERT_EQ(loaded.apnea.size(), 3u);
  EXPECT_EQ(loaded.calibration_in_bed.slope, m.calibration_in_bed.slope);
  Prediction a = predict_records(m, test), b = predict_records(loaded, test);
  ASSERT_EQ(a.windows.size(), b.windows.size());
  ASSERT_FALSE(a.windows.empty());
  for (size_t i = 0; i < a.windows.size(); ++i) ASSERT_EQ(a.windows[i].p_apnea, b.windows[i].p_apnea) << i;

  // The mean of the members: each member alone, unsmoothed, averaged by hand.
  Models one;
  one.config = c;
  one.config.smooth_windows = 0;
  one.config.hmm = false;
  Models all = load_models(run.string());
  all.config.smooth_windows = 0;
  all.config.hmm = false;
  Prediction whole = predict_records(all, test);
  std::vector<double> mean(whole.windows.size(), 0.0);
  for (int j = 0; j < 3; ++j) {
    one.apnea.members.clear();
    one.apnea.members.push_back(std::move(loaded.apnea.members[static_cast<size_t>(j)]));
    Prediction pj = predict_records(one, test);
    ASSERT_EQ(pj.windows.size(), mean.size());
    for (size_t i = 0; i < mean.size(); ++i) mean[i] += pj.windows[i].p_apnea / 3.0;
  }
  for (size_t i = 0; i < mean.size(); ++i) EXPECT_NEAR(whole.windows[i].p_apnea, mean[i], 1e-12) << i;

  // The AHI calibration, fitted by hand: a least-squares line from each training record's raw AHI
  // (per hour in bed; no sleep model) to its reference. Seeds: the raw AHI is the ensemble's own
  // prediction of the record. Cross-fit: it is the prediction of the one member that never trained
  // on the record (fold j of the same seeded 3-fold split by record is member j's validation).
  {
    Models ens = load_models(run.string());
    ens.calibration = ens.calibration_in_bed = LinearFit{};  // identity: estimated = raw
    std::vector<double> raw, ref;
    auto add = [&](const Prediction& p) {
      for (const RecordRow& r : p.records) {
        raw.push_back(r.estimated_ahi_in_bed);
        ref.push_back(r.reference_ahi);
      }
    };
    if (!GetParam()) {
      add(predict_records(ens, train));
    } else {
      const auto folds = data::kfold_by_record(data::record_keys(train), {.k = 3, .seed = c.apnea.train.seed, .stratify = true});
      for (int j = 0; j < 3; ++j) {
        Models mj;
        mj.config = ens.config;
        mj.apnea_chain = ens.apnea_chain;
        mj.apnea.members.push_back(std::move(ens.apnea.members[static_cast<size_t>(j)]));
        std::vector<data::Record> held;
        for (int i : folds[static_cast<size_t>(j)].test) held.push_back(train[static_cast<size_t>(i)]);
        add(predict_records(mj, held));
      }
    }
    ASSERT_EQ(raw.size(), train.size());
    const auto [lo, hi] = std::minmax_element(raw.begin(), raw.end());
    // The toy networks of the Seeds run predict no apnea minute on their own training records, and
    // the code then keeps the identity (raw AHIs spanning less than 0.5/h); the cross-fitted ones,
    // each on the records it never saw, do predict some: a line is fitted, and it must be this one.
    if (!GetParam() && *hi - *lo < 0.5) {
      EXPECT_EQ(m.calibration_in_bed.slope, 1.0);
      EXPECT_EQ(m.calibration_in_bed.intercept, 0.0);
    }
    if (GetParam()) {
      ASSERT_GE(*hi - *lo, 0.5) << "the cross-fitted toy ensemble no longer fits a line: the check below would not run";
    }
    const LinearFit hand = *hi - *lo < 0.5 ? LinearFit{} : fit_linear(raw, ref);
    EXPECT_NEAR(m.calibration_in_bed.slope, hand.slope, 1e-9 * std::max(1.0, std::abs(hand.slope)));
    EXPECT_NEAR(m.calibration_in_bed.intercept, hand.intercept, 1e-9 * std::max(1.0, std::abs(hand.intercept)));
  }

  // calibration.json and run.json must agree on the number of networks.
  expect_refused_after_editing_calibration(run, [](nlohmann::json& cal) { cal["apnea_members"] = 2; }, "apnea_members");
  fs::remove_all(run);
}

INSTANTIATE_TEST_SUITE_P(Pipeline, PipelineEnsemble, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "CrossFit" : "Seeds"; });

// A cross-fitted ensemble needs as many record groups as members.
TEST(Pipeline, CrossFitWithTooFewRecordsIsAClearError) {
  auto records = toy_records(20);
  RunConfig c;
  c.apnea = toy_model_config();
  c.apnea.train.epochs = 1;
  c.members = 8;
  c.cross_fit = true;
  c.progress = false;
  fs::path run = temp_dir("crossfit");
  try {
    train_models(c, records, {}, run.string(), false, nullptr);
    FAIL() << "6 records cannot make 8 folds";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be split into 8 folds"), std::string::npos) << e.what();
  }
  fs::remove_all(run);
}

TEST(Pipeline, RunConfigReadsRunsMadeBeforeEnsembles) {
  RunConfig c = RunConfig::defaults();
  c.members = 4;
  nlohmann::json j = c.to_json();
  EXPECT_EQ(RunConfig::from_json(j, "test").members, 4);
  EXPECT_TRUE(RunConfig::from_json(j, "test").hmm);
  j.erase("members");
  j.erase("cross_fit");
  j.erase("hmm");  // runs made before the apnea chain: off
  EXPECT_FALSE(RunConfig::from_json(j, "test").hmm);
  EXPECT_EQ(RunConfig::from_json(j, "test").members, 1);
  EXPECT_FALSE(RunConfig::from_json(j, "test").cross_fit);
  j["members"] = 0;
  EXPECT_THROW(RunConfig::from_json(j, "test"), Error);
}

TEST(Pipeline, RunConfigKeepsTheSleepModelsOwnNetworkCount) {
  RunConfig c = RunConfig::defaults();
  c.members = 2;
  c.sleep_members = 3;
  nlohmann::json j = c.to_json();
  EXPECT_EQ(RunConfig::from_json(j, "run.json").members, 2);
  EXPECT_EQ(RunConfig::from_json(j, "run.json").sleep_members, 3);
  j.erase("sleep_members");  // runs made before it: as many sleep networks as apnea networks
  EXPECT_EQ(RunConfig::from_json(j, "run.json").sleep_members, 2);
  j["sleep_members"] = 51;
  try {
    RunConfig::from_json(j, "run.json");
    FAIL() << "sleep_members = 51 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sleep_members = 51"), std::string::npos) << e.what();
  }
}

TEST(Pipeline, RunConfigKeepsTheSleepValidationShareAndReadsOlderRuns) {
  RunConfig c = RunConfig::defaults();
  EXPECT_EQ(c.sleep_validation_fraction, 0.0);  // the sleep model trains on every training night
  EXPECT_GT(c.validation_fraction, 0.0);        // the apnea model early-stops on held-out records
  c.sleep_validation_fraction = 0.25;
  nlohmann::json j = c.to_json();
  EXPECT_EQ(RunConfig::from_json(j, "run.json").sleep_validation_fraction, 0.25);
  j.erase("sleep_validation_fraction");  // runs made before it: the apnea model's share, as they were trained
  j["validation_fraction"] = 0.2;
  EXPECT_EQ(RunConfig::from_json(j, "run.json").sleep_validation_fraction, 0.2);
}

TEST(Pipeline, RunConfigKeepsWhetherTheApneaModelTrainsOnSleepNights) {
  RunConfig c = RunConfig::defaults();
  c.apnea_sleep_nights = !c.apnea_sleep_nights;
  nlohmann::json j = c.to_json();
  EXPECT_EQ(RunConfig::from_json(j, "run.json").apnea_sleep_nights, c.apnea_sleep_nights);
  j.erase("apnea_sleep_nights");  // runs made before it: the apnea model trained on apnea records only
  EXPECT_FALSE(RunConfig::from_json(j, "run.json").apnea_sleep_nights);
}

TEST(Pipeline, RunDirectoryOfAnotherVersionIsRefused) {
  fs::path run = temp_dir("version");
  std::ofstream(run / "run.json") << R"({"format": "sleepnet-run-0", "status": "finished", "config": {}})";
  RunConfig c = RunConfig::defaults();
  try {
    prepare_run_dir(run.string(), c, true, false);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another format"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_models(run.string()), Error);
  fs::remove_all(run);
  fs::create_directories(run);
  std::ofstream(run / "precious.txt") << "user data";
  EXPECT_THROW(prepare_run_dir(run.string(), c, false, false), Error);  // not a run directory
  EXPECT_TRUE(fs::exists(run / "precious.txt"));
  fs::remove_all(run);
}

TEST(Pipeline, RunConfigKeepsTheSmoothingAndReadsOlderRuns) {
  RunConfig c = RunConfig::defaults();
  c.smooth_windows = 3;
  c.smooth_sleep_epochs = 5;
  nlohmann::json j = c.to_json();
  RunConfig back = RunConfig::from_json(j, "run.json");
  EXPECT_EQ(back.smooth_windows, 3);
  EXPECT_EQ(back.smooth_sleep_epochs, 5);
  // a run made before p_sleep was smoothed has no key: it keeps predicting as it was trained
  j.erase("smooth_sleep_epochs");
  EXPECT_EQ(RunConfig::from_json(j, "run.json").smooth_sleep_epochs, 0);
  j.erase("smooth_windows");  // a key that was always written is required
  EXPECT_THROW(RunConfig::from_json(j, "run.json"), Error);
}

// The apnea model's windows: minutes. Records of minutes pass unchanged; others get the whole
// minutes of their duration, labelled from the windows inside each.
TEST(Pipeline, AsMinutesTurnsOtherWindowsIntoLabelledMinutes) {
  data::Record r;
  r.id = "e";
  r.duration_s = 290;  // 4 whole minutes and 50 s
  const int8_t apnea[] = {0, 0, 0, 1, 1, -1, 0, -1, 0};  // 30-s epochs from 0 to 270 s
  for (int i = 0; i < 9; ++i) {
    if (i == 6) continue;  // a hole in minute 3 (180-210 s)
    data::Window w;
    w.start_s = 30.0 * i, w.duration_s = 30.0, w.apnea = apnea[i], w.events = static_cast<int16_t>(i % 2);
    r.windows.push_back(w);
  }
  data::Record plain = r;
  plain.id = "m";
  plain.windows.assign(2, data::Window{});
  plain.windows[0].duration_s = plain.windows[1].duration_s = 60.0;
  plain.windows[1].start_s = 60.0;
  plain.windows[0].apnea = 1, plain.windows[1].apnea = 0;
  const std::vector<data::Record> out = as_minutes({r, plain});
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(out[0].windows.size(), 4u);  // the last 50 s are no whole minute
  const int8_t expected[] = {0,    // two normal halves
                             1,    // normal + apnea
                             1,    // apnea + unknown: an apnea is in it
                             -1};  // a hole + unknown: neither apnea nor covered by normal windows
  for (int m = 0; m < 4; ++m) {
    EXPECT_EQ(out[0].windows[m].start_s, 60.0 * m);
    EXPECT_EQ(out[0].windows[m].duration_s, 60.0);
    EXPECT_EQ(out[0].windows[m].apnea, expected[m]) << m;
  }
  EXPECT_EQ(out[0].windows[1].events, 1);  // epochs 2 and 3: 0 + 1
  // A minute half covered by normal windows (the hole) is unknown, not normal.
  data::Record holey = r;
  holey.windows.erase(holey.windows.begin() + 1);  // epoch 1 (30-60 s) gone: minute 0 half covered
  EXPECT_EQ(as_minutes({holey})[0].windows[0].apnea, -1);
  // Minutes pass unchanged.
  ASSERT_EQ(out[1].windows.size(), 2u);
  EXPECT_EQ(out[1].windows[0].apnea, 1);
  EXPECT_EQ(out[1].windows[1].start_s, 60.0);
}

TEST(Pipeline, FitChainCountsLabelsAndDirectSuccessorsOnly) {
  // record 0: 0 0 1 1 1 0 (one minute each, back to back); record 1: 1, a gap, 1 -1 0
  const std::vector<std::vector<int>> y = {{0, 0, 1, 1, 1, 0}, {1, 1, -1, 0}};
  const std::vector<std::vector<double>> start = {{0, 60, 120, 180, 240, 300}, {0, 600, 660, 720}};
  const std::vector<std::vector<double>> dur = {std::vector<double>(6, 60.0), std::vector<double>(4, 60.0)};
  const TwoStateChain c = fit_chain(y, start, dur);
  ASSERT_TRUE(c.fitted());
  EXPECT_DOUBLE_EQ(c.prior, (5.0 + 1) / (9 + 2));  // 5 of the 9 labelled windows (the -1 is skipped), plus one each
  // one class only: still a usable chain
  const TwoStateChain normal = fit_chain({{0, 0, 0}}, {{0, 60, 120}}, {{60, 60, 60}});
  EXPECT_DOUBLE_EQ(normal.prior, 1.0 / 5);
  EXPECT_DOUBLE_EQ(normal.stay0, 3.0 / 4);
  EXPECT_DOUBLE_EQ(normal.stay1, 1.0 / 2);
  EXPECT_EQ(chain_posterior({0.2, 0.9}, {0, 60}, {60, 60}, normal).size(), 2u);
  // pairs (plus one each): 0->0 once, 0->1 once; 1->1 twice, 1->0 once (record 1: the gap and the
  // unlabelled window break both of its pairs)
  EXPECT_DOUBLE_EQ(c.stay0, 2.0 / 4);
  EXPECT_DOUBLE_EQ(c.stay1, 3.0 / 5);
  EXPECT_FALSE(fit_chain({{-1}}, {{0}}, {{60}}).fitted());
  EXPECT_THROW(fit_chain(y, start, {dur[0]}), Error);
}

// The forward-backward posterior against every state path enumerated (n = 7 windows: 128 paths),
// with a gap of three window lengths in the middle (the 3-step transition T^3).
TEST(Pipeline, ChainPosteriorIsTheExactPosterior) {
  const TwoStateChain c{0.3, 0.9, 0.8};
  const std::vector<double> p = {0.1, 0.7, 0.4, 0.95, 0.2, 0.6, 0.5};
  const std::vector<double> start = {0, 60, 120, 180, 360, 420, 480};  // 180 -> 360: k = 3
  const std::vector<double> dur(p.size(), 60.0);
  const double T[2][2] = {{c.stay0, 1 - c.stay0}, {1 - c.stay1, c.stay1}};
  auto step = [&](int k, int from, int to) {  // T^k by repeated products
    double m[2][2] = {{1, 0}, {0, 1}};
    for (int s = 0; s < k; ++s) {
      double n[2][2];
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) n[i][j] = m[i][0] * T[0][j] + m[i][1] * T[1][j];
      std::memcpy(m, n, sizeof m);
    }
    return m[from][to];
  };
  const int n = static_cast<int>(p.size());
  std::vector<double> want(p.size(), 0.0);
  double total = 0;
  for (int path = 0; path < (1 << n); ++path) {
    double w = 1;
    for (int j = 0; j < n; ++j) {
      const int s = (path >> j) & 1;
      w *= s ? p[j] / c.prior : (1 - p[j]) / (1 - c.prior);
      w *= j == 0 ? (s ? c.prior : 1 - c.prior) : step(j == 4 ? 3 : 1, (path >> (j - 1)) & 1, s);
    }
    total += w;
    for (int j = 0; j < n; ++j)
      if ((path >> j) & 1) want[j] += w;
  }
  const std::vector<double> got = chain_posterior(p, start, dur, c);
  ASSERT_EQ(got.size(), p.size());
  for (size_t j = 0; j < p.size(); ++j) EXPECT_NEAR(got[j], want[j] / total, 1e-12) << j;
  // Runs pull a window towards its neighbours: 0.4 between 0.7 and 0.95 becomes apnea.
  EXPECT_GT(got[2], 0.5);

  // A chain that forgets at once (stay0 + stay1 = 1, prior = its stationary share) gives p back.
  const std::vector<double> same = chain_posterior(p, start, dur, TwoStateChain{0.3, 0.7, 0.3});
  for (size_t j = 0; j < p.size(); ++j) EXPECT_NEAR(same[j], p[j], 1e-12) << j;
  // Across a very long gap the two parts do not talk.
  std::vector<double> far = start;
  for (size_t j = 4; j < far.size(); ++j) far[j] += 1e6;
  const std::vector<double> joined = chain_posterior(p, far, dur, c);
  const std::vector<double> first = chain_posterior({p.begin(), p.begin() + 4}, {start.begin(), start.begin() + 4},
                                                    {dur.begin(), dur.begin() + 4}, c);
  for (size_t j = 0; j < 4; ++j) EXPECT_NEAR(joined[j], first[j], 1e-12) << j;

  EXPECT_TRUE(chain_posterior({}, {}, {}, c).empty());
  EXPECT_THROW(chain_posterior(p, start, {60.0}, c), Error);
  EXPECT_THROW(chain_posterior(p, start, dur, TwoStateChain{}), Error);  // not fitted
  EXPECT_THROW(chain_posterior(p, start, dur, TwoStateChain{0.3, 1.0, 0.8}), Error);
}

TEST(Pipeline, SmoothInTimeAveragesNeighboursWithinReachOnly) {
  // five 30-s epochs, then a 10-minute gap, then two more
  const std::vector<double> p = {0, 1, 0, 1, 1, 0.2, 0.4};
  const std::vector<double> start = {0, 30, 60, 90, 120, 720, 750};
  const std::vector<double> dur(p.size(), 30.0);
  EXPECT_EQ(smooth_in_time(p, start, dur, 0), p);
  const std::vector<double> s1 = smooth_in_time(p, start, dur, 1);
  const std::vector<double> want1 = {0.5, 1.0 / 3, 2.0 / 3, 2.0 / 3, 1.0, 0.3, 0.3};  // edges: fewer neighbours;
  for (size_t i = 0; i < p.size(); ++i) EXPECT_DOUBLE_EQ(s1[i], want1[i]) << i;  // the gap is not crossed
  const std::vector<double> s2 = smooth_in_time(p, start, dur, 2);
  EXPECT_DOUBLE_EQ(s2[2], 3.0 / 5);  // all five of the first run
  EXPECT_DOUBLE_EQ(s2[4], 2.0 / 3);  // 60, 90, 120 s; 720 s is index-near but 600 s away
  EXPECT_DOUBLE_EQ(s2[5], 0.3);
  EXPECT_THROW(smooth_in_time(p, start, {30.0}, 1), Error);
}
