// cv.cpp: see cv.h.
#include "apps/screening/cv.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "autograd/ops.h"

namespace sleepnet::screening {

namespace fs = std::filesystem;

namespace {

std::vector<data::Record> pick(const std::vector<data::Record>& all, const std::vector<int>& idx) {
  std::vector<data::Record> out;
  for (int i : idx) out.push_back(all[i]);
  return out;
}

std::vector<data::Split> folds_of(const std::vector<data::Record>& records, int k, uint64_t seed) {
  return data::kfold_by_record(data::record_keys(records), {.k = k, .seed = seed, .stratify = true});
}

std::string ids(const std::vector<data::Record>& rs) {
  std::string s;
  for (const auto& r : rs) s += (s.empty() ? "" : " ") + r.id;
  return s;
}

struct Loaded {
  std::vector<data::Record> apnea, sleep;
};

Loaded load_all(const RunConfig& c) {
  Loaded l;
  l.apnea = load_records(c.apnea_dir, c.records, c.progress);
  if (!c.sleep_dir.empty()) l.sleep = load_records(c.sleep_dir, c.sleep_records, c.progress);
  return l;
}

// Trains on fold f's training records and predicts its test records into `rd`; returns the models.
Models run_fold(const RunConfig& c, const Loaded& l, const data::Split& af, const data::Split* sf, int fold,
                const std::string& work_dir, ReportData& rd) {
  std::vector<data::Record> train = pick(l.apnea, af.train), test = pick(l.apnea, af.test);
  for (int i : af.validation) train.push_back(l.apnea[i]);
  std::vector<data::Record> sleep_train, sleep_test;
  if (sf) {
    sleep_train = pick(l.sleep, sf->train);
    for (int i : sf->validation) sleep_train.push_back(l.sleep[i]);
    sleep_test = pick(l.sleep, sf->test);
  }
  if (c.progress)
    fmt::print(stderr, "fold {}: apnea test records: {}{}\n", fold, ids(test),
               sf ? "; sleep test records: " + ids(sleep_test) : "");
  std::vector<TrainingLog> logs;
  Models m = train_models(c, train, sleep_train, work_dir, false, &logs);
  write_calibration(m, work_dir);
  for (auto& log : logs) {
    if (fold >= 0) log.name += fmt::format(" fold {}", fold);
    rd.training.push_back(log);
  }
  Prediction p = predict_records(m, test);
  for (auto& r : p.records) r.fold = fold;
  rd.windows.insert(rd.windows.end(), p.windows.begin(), p.windows.end());
  rd.records.insert(rd.records.end(), p.records.begin(), p.records.end());
  if (m.sleep) {
    auto e = predict_sleep_epochs(m, sleep_test);
    rd.sleep_epochs.insert(rd.sleep_epochs.end(), e.begin(), e.end());
  }
  rd.calibration = m.calibration;
  return m;
}

int finish(ReportData& rd, const std::string& out) {
  const std::string dir = (fs::path(out) / "report").string();
  ReportMetrics metrics = write_report(rd, dir);
  fmt::print("{}\nreport: {}/index.html\n", summary_table(rd, metrics), fs::absolute(dir).string());
  return 0;
}

}  // namespace

int run_main_job(const RunConfig& c, const std::string& out, int folds, int fold) {
  if (folds < 2) throw Error(fmt::format("main: --folds {} must be at least 2", folds));
  if (fold < 0 || fold >= folds) throw Error(fmt::format("main: --fold {} is not in 0..{}", fold, folds - 1));
  set_threads(c.threads);
  // The main job is re-run often: it replaces its own earlier output, but never another run.
  prepare_run_dir(out, c, false, fs::exists(fs::path(out) / "run.json"));
  Loaded l = load_all(c);
  auto af = folds_of(l.apnea, folds, c.apnea.train.seed);
  std::vector<data::Split> sf;
  if (!l.sleep.empty()) sf = folds_of(l.sleep, std::min<int>(folds, static_cast<int>(l.sleep.size())), c.sleep.train.seed);
  ReportData rd;
  rd.title = fmt::format("sleepnet main job: held-out fold {} of {}", fold, folds);
  rd.config = c.to_json();
  rd.config["split"] = {{"folds", folds}, {"held_out_fold", fold}};
  const Models m = run_fold(c, l, af[fold], sf.empty() ? nullptr : &sf[fold % sf.size()], fold, out, rd);
  // The run directory is a finished run like one of `train`'s (trained on the other folds), so
  // `predict --run` and `evaluate --run` take it.
  save_models(m, out);
  return finish(rd, out);
}

int run_cross_validation(const RunConfig& c, const std::string& out, int folds) {
  if (folds < 2) throw Error(fmt::format("cv: --folds {} must be at least 2", folds));
  set_threads(c.threads);
  fs::create_directories(out);
  Loaded l = load_all(c);
  auto af = folds_of(l.apnea, folds, c.apnea.train.seed);
  std::vector<data::Split> sf;
  if (!l.sleep.empty()) sf = folds_of(l.sleep, std::min<int>(folds, static_cast<int>(l.sleep.size())), c.sleep.train.seed);
  ReportData rd;
  rd.title = fmt::format("sleepnet {}-fold cross-validation by record", folds);
  rd.config = c.to_json();
  rd.config["split"] = {{"folds", folds}};
  for (int f = 0; f < folds; ++f) {
    const std::string dir = (fs::path(out) / fmt::format("fold{}", f)).string();
    fs::remove_all(dir);
    run_fold(c, l, af[f], f < static_cast<int>(sf.size()) ? &sf[f] : nullptr, f, dir, rd);
  }
  rd.calibration.reset();
  rd.calibration_note = "one line per fold, fitted on that fold's training records (see foldN/calibration.json)";
  return finish(rd, out);
}

std::string predictions_windows_csv(const std::vector<WindowRow>& rows, bool with_sleep) {
  std::string s = with_sleep ? "record,start_s,duration_s,p_apnea,apnea,p_sleep,sleep\n"
                             : "record,start_s,duration_s,p_apnea,apnea\n";
  for (const WindowRow& w : rows) {
    s += fmt::format("{},{:g},{:g},{:.6f},{}", w.record, w.start_s, w.duration_s, w.p_apnea, w.p_apnea >= 0.5 ? 1 : 0);
    if (with_sleep) {
      if (std::isfinite(w.p_sleep))
        s += fmt::format(",{:.6f},{}", w.p_sleep, w.p_sleep >= 0.5 ? 1 : 0);
      else
        s += ",,";
    }
    s += "\n";
  }
  return s;
}

std::string predictions_records_csv(const std::vector<RecordRow>& rows) {
  std::string s = "record,hours,apnea_windows,estimated_ahi,severity\n";
  for (const RecordRow& r : rows) {
    const bool ok = std::isfinite(r.estimated_ahi);
    s += fmt::format("{},{:.4f},{},{},{}\n", r.record, r.hours, r.apnea_windows,
                     ok ? fmt::format("{:.2f}", r.estimated_ahi) : "",
                     ok ? severity_name(severity(r.estimated_ahi)) : "unknown");
  }
  return s;
}

int run_demo(int steps) {
  Generator gen(0);
  Tensor x = Tensor::uniform({256, 1}, -1.f, 1.f, gen);
  Tensor y = Tensor::empty({256, 1});
  for (int64_t i = 0; i < 256; ++i) y.data()[i] = std::sin(3.f * x.data()[i]);
  Tensor w1 = Tensor::normal({1, 32}, 0.f, 1.f, gen).set_requires_grad();
  Tensor b1 = Tensor::zeros({32}).set_requires_grad();
  Tensor w2 = Tensor::normal({32, 1}, 0.f, 0.2f, gen).set_requires_grad();
  Tensor b2 = Tensor::zeros({1}).set_requires_grad();
  const float lr = 0.1f;
  for (int step = 0; step <= steps; ++step) {
    Tensor h = tanh(matmul(x, w1) + b1);
    Tensor loss = mean(pow(matmul(h, w2) + b2 - y, 2.f));
    for (Tensor* p : {&w1, &b1, &w2, &b2}) p->zero_grad();
    loss.backward();
    NoGradGuard no_grad;
    for (Tensor* p : {&w1, &b1, &w2, &b2}) p->copy_(*p - p->grad() * lr);
    if (step % std::max(1, steps / 10) == 0) fmt::print("step {:5d}  mse {:.6f}\n", step, loss.item());
  }
  return 0;
}

}  // namespace sleepnet::screening
