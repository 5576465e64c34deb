// sleepnet: the command-line program. Thin: every command parses its flags and calls the library
// (apps/screening/ for the screening method, data/ for readers and synthetic records).
//
//   sleepnet main                      the README's main job: train on a by-record split of the
//                                      shipped data, evaluate on the held-out records, report
//   sleepnet train --out RUN           train the apnea and sleep models (all shipped data by default)
//   sleepnet evaluate --run RUN ...    metrics and report on labelled records
//   sleepnet predict --run RUN --out OUT RECORD...   windows.csv and records.csv for any records
//   sleepnet cv                        k-fold cross-validation by record (the README's table)
//   sleepnet synth --out DIR           synthetic WFDB/EDF recordings with ground truth
//   sleepnet info RECORD...            what a record holds
//   sleepnet summary                   MobileNetV2 layer by layer (shapes, parameters, MACs)
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cmath>
#include <exception>
#include <filesystem>

#include "apps/screening/cv.h"
#include "apps/screening/pipeline.h"
#include "apps/screening/report.h"
#include "autograd/ops.h"
#include "data/info.h"
#include "data/synth.h"
#include "nn/kernels/blas_core.h"
#include "nn/summary.h"

using namespace sleepnet;
using namespace sleepnet::screening;
namespace fs = std::filesystem;

namespace {

// Flags shared by train, main and cv: where the data is and how the models are made.
struct ConfigFlags {
  RunConfig c = RunConfig::defaults();
  int image_size = 0;
  double context_s = -1, sleep_context_s = -1;
  int epochs = 0, sleep_epochs = 0;
  int64_t batch = 0;
  double width = 0, sleep_width = 0, lr = 0;
  int64_t seed = -1;
  bool no_sleep = false;
  bool no_cache = false;
  std::string norm;
  int patience = -1;
  bool log_frequency = false;
  bool no_level_channel = false;
  bool trace_channel = false;
  bool no_hmm = false;
  double f_max = -1;
  double stft_window = -1;
  double min_coverage = -1, weight_decay = -1, dropout = -1, mixup = -1;
  int time_shift = -1;
  int members = 0, sleep_members = 0;  // 0: not given

  void add(CLI::App* app) {
    app->add_option("--apnea-data", c.apnea_dir, "Apnea-ECG-style database directory")->capture_default_str();
    app->add_option("--sleep-data", c.sleep_dir, "slpdb-style database directory for the sleep model")
        ->capture_default_str();
    app->add_flag("--no-sleep-model", no_sleep, "train no sleep model: AHI per hour of recording");
    app->add_option("--records", c.records, "apnea records to use (default: every record present)");
    app->add_option("--sleep-records", c.sleep_records, "sleep records to use (default: every record present)");
    app->add_option("--epochs", epochs, "training epochs of the apnea model (sleep model: 2/3 of it unless --sleep-epochs)");
    app->add_option("--sleep-epochs", sleep_epochs, "training epochs of the sleep model");
    app->add_option("--batch-size", batch, "batch size");
    app->add_option("--width", width, "MobileNetV2 width multiplier");
    app->add_option("--sleep-width", sleep_width, "width multiplier of the sleep model's networks (default: --width's)");
    app->add_option("--image-size", image_size, "image height and width (pixels)");
    app->add_option("--context", context_s, "seconds of context on each side of an apnea window");
    app->add_option("--sleep-context", sleep_context_s, "seconds of context on each side of a 30-s sleep epoch");
    app->add_option("--lr", lr, "peak learning rate (AdamW, warm-up + cosine)");
    app->add_option("--weight-decay", weight_decay, "AdamW weight decay");
    app->add_option("--dropout", dropout, "dropout before the classifier");
    app->add_option("--time-shift", time_shift,
                    "augmentation: move each training image by up to N columns along time (0: off)");
    app->add_option("--mixup", mixup, "augmentation: mixup with lam ~ Beta(A, A) (0: off)");
    app->add_option("--patience", patience, "early stopping: epochs without a better validation AUC (0: off)");
    app->add_option("--normalization", norm, "image normalisation: 'record' (z-score per record and channel), "
                                             "'image' (z-score per image) or 'none' (dB as computed; the "
                                             "first batch norm scales them)")
        ->check(CLI::IsMember({"record", "image", "none"}));
    app->add_flag("--log-frequency", log_frequency, "image rows spaced logarithmically in frequency");
    app->add_flag("--no-level-channel", no_level_channel,
                  "images without the heart-rate level channel (mean RR per frame): the spectrogram only");
    app->add_flag("--trace-channel", trace_channel,
                  "images with the RR trace channel too (mean RR of each column's ~11-s slice)");
    app->add_option("--f-max", f_max, "highest frequency of the images (Hz)");
    app->add_option("--stft-window", stft_window, "frame length of the images' spectrogram (seconds)")
        ->check(CLI::Range(1.0, 3600.0));
    app->add_option("--smooth", c.smooth_windows, "average p(apnea) over +-N neighbouring minutes (0: off)")
        ->capture_default_str();
    app->add_flag("--no-hmm", no_hmm,
                  "p(apnea): only the +-N average, not also averaged with the posterior of the two-state hidden Markov "
                  "model of the night fitted on the training labels");
    app->add_option("--smooth-sleep", c.smooth_sleep_epochs,
                    "average p(sleep) over +-N neighbouring 30-s epochs (0: off)")
        ->capture_default_str();
    app->add_option("--min-coverage", min_coverage, "drop training windows whose beats cover less than this share");
    app->add_option("--seed", seed, "random seed (initialisation, batch order, dropout, splits)");
    app->add_option("--threads", c.threads, "threads (0: OpenMP's default)");
    app->add_option("--cache", c.cache_dir, "image cache directory")->capture_default_str();
    app->add_flag("--no-cache", no_cache, "do not cache images on disk");
    app->add_option("--members", members,
                    fmt::format("networks per model, probabilities averaged (each its own seed and validation "
                                "records) [default: {}]",
                                c.members))
        ->check(CLI::Range(1, 50));
    app->add_option("--sleep-members", sleep_members,
                    fmt::format("networks of the sleep model (overrides --members for it) [default: {}]", c.sleep_members))
        ->check(CLI::Range(1, 50));
    app->add_flag("--cross-fit", c.cross_fit,
                  "with --members K: network j trains on K-1 of K folds of the training records and validates "
                  "on fold j; the AHI calibration is fitted on these out-of-fold predictions");
    app->add_option("--validation-fraction", c.validation_fraction,
                    "share of the apnea model's training records held out for early stopping")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 0.9));
    app->add_flag("--apnea-sleep-nights,!--no-apnea-sleep-nights", c.apnea_sleep_nights,
                  "the apnea model also trains on the sleep model's training nights (their respiratory events "
                  "as apnea minutes); never in the AHI calibration")
        ->capture_default_str();
    app->add_option("--sleep-validation-fraction", c.sleep_validation_fraction,
                    "the same for the sleep model (0: no early stopping, every epoch on every training night)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 0.9));
  }

  RunConfig resolve() {
    if (no_sleep) c.sleep_dir.clear();
    if (no_cache) c.cache_dir.clear();
    if (no_hmm) c.hmm = false;
    if (members > 0) c.members = c.sleep_members = members;
    if (sleep_members > 0) c.sleep_members = sleep_members;
    for (ModelConfig* m : {&c.apnea, &c.sleep}) {
      if (image_size > 0) m->data.spectrogram.height = m->data.spectrogram.width = image_size;
      if (batch > 0) m->train.batch_size = batch;
      if (width > 0) m->train.width_mult = width;
      if (lr > 0) m->train.lr = lr;
      if (seed >= 0) m->train.seed = static_cast<uint64_t>(seed);
      if (patience >= 0) m->train.patience = patience;
      if (weight_decay >= 0) m->train.weight_decay = weight_decay;
      if (dropout >= 0) m->train.dropout = static_cast<float>(dropout);
      if (time_shift >= 0) m->train.time_shift = time_shift;
      if (mixup >= 0) m->train.mixup = mixup;
      if (min_coverage >= 0) m->data.min_coverage = min_coverage;
      if (log_frequency) m->data.spectrogram.log_frequency = true;
      if (no_level_channel) m->data.spectrogram.level_channel = false;
      if (trace_channel) m->data.spectrogram.trace_channel = true;
      if (f_max > 0) m->data.spectrogram.f_max_hz = f_max;
      if (stft_window > 0) m->data.spectrogram.stft_window_s = stft_window;
      if (norm == "record") {
        m->data.spectrogram.normalization = data::SpecNormalization::None;
        m->data.record_normalization = data::RecordNormalization::ZScore;
      } else if (norm == "image") {
        m->data.spectrogram.normalization = data::SpecNormalization::ZScore;
        m->data.record_normalization = data::RecordNormalization::None;
      } else if (norm == "none") {
        m->data.spectrogram.normalization = data::SpecNormalization::None;
        m->data.record_normalization = data::RecordNormalization::None;
      }
    }
    if (epochs > 0) {
      c.apnea.train.epochs = epochs;
      c.sleep.train.epochs = std::max(1, epochs * 2 / 3);
    }
    if (sleep_epochs > 0) c.sleep.train.epochs = sleep_epochs;
    if (sleep_width > 0) c.sleep.train.width_mult = sleep_width;
    if (context_s >= 0) c.apnea.data.spectrogram.context_s = context_s;
    if (sleep_context_s >= 0) c.sleep.data.spectrogram.context_s = sleep_context_s;
    if (c.apnea_sleep_nights && c.sleep_dir.empty())
      throw Error("--apnea-sleep-nights trains the apnea model on the sleep model's nights too: it needs the sleep "
                  "data (drop --no-sleep-model, or add --no-apnea-sleep-nights)");
    return c;
  }
};

int cmd_train(const RunConfig& c, const std::string& out, bool resume, bool overwrite) {
  set_threads(c.threads);
  prepare_run_dir(out, c, resume, overwrite);
  auto apnea = load_records(c.apnea_dir, c.records, c.progress);
  std::vector<data::Record> sleep;
  if (!c.sleep_dir.empty()) sleep = load_records(c.sleep_dir, c.sleep_records, c.progress);
  std::vector<TrainingLog> logs;
  Models m = train_models(c, apnea, sleep, out, resume, &logs);
  save_models(m, out);
  fmt::print("trained: {} (apnea model{}); AHI calibration: {:.3f} * raw + {:.3f}\n", out,
             m.sleep ? " + sleep model" : "", m.calibration.slope, m.calibration.intercept);
  return 0;
}

int cmd_predict(const std::string& run, const std::string& out, const std::vector<std::string>& paths, int threads) {
  Models m = load_models(run);
  set_threads(threads > 0 ? threads : m.config.threads);
  std::vector<data::Record> records;
  int failed = 0;
  for (const std::string& p : paths) {
    try {
      records.push_back(data::load_record(p));
    } catch (const std::exception& e) {
      fmt::print(stderr, "sleepnet predict: {}: skipped: {}\n", p, e.what());
      ++failed;
    }
  }
  if (records.empty()) throw Error("predict: no record could be read");
  Prediction p = predict_records(m, records);
  fs::create_directories(out);
  write_file_atomic(fs::path(out) / "windows.csv", predictions_windows_csv(p.windows, static_cast<bool>(m.sleep)));
  write_file_atomic(fs::path(out) / "records.csv", predictions_records_csv(p.records));
  for (const RecordRow& r : p.records)
    fmt::print("{:8s} {:6.2f} h  {:4d} apnea windows  AHI {:6.1f}  {}\n", r.record, r.hours, r.apnea_windows,
               r.estimated_ahi, std::isfinite(r.estimated_ahi) ? severity_name(severity(r.estimated_ahi)) : "unknown");
  fmt::print("wrote {}/windows.csv and {}/records.csv\n", out, out);
  return failed ? 2 : 0;
}

int cmd_evaluate(const std::string& run, const std::string& data_dir, const std::vector<std::string>& ids,
                 const std::string& sleep_dir, const std::vector<std::string>& sleep_ids, const std::string& out,
                 int threads) {
  Models m = load_models(run);
  set_threads(threads > 0 ? threads : m.config.threads);
  auto records = load_records(data_dir, ids, true);
  ReportData rd;
  rd.title = fmt::format("sleepnet evaluation of {}", run);
  rd.config = m.config.to_json();
  rd.calibration = m.calibration;
  Prediction p = predict_records(m, records);
  rd.windows = p.windows;
  rd.records = p.records;
  if (m.sleep && !sleep_dir.empty()) rd.sleep_epochs = predict_sleep_epochs(m, load_records(sleep_dir, sleep_ids, true));
  const std::string dir = out.empty() ? (fs::path(run) / "report").string() : out;
  ReportMetrics metrics = write_report(rd, dir);
  fmt::print("{}\nreport: {}/index.html\n", summary_table(rd, metrics), dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  sleepnet::kernels::select_blas_core(argv);  // OpenBLAS's kernels for this CPU (re-executes once)
  CLI::App app{"sleepnet: home sleep-apnea screening with MobileNetV2, written from scratch"};
  app.require_subcommand(1);

  // main
  ConfigFlags main_flags;
  std::string main_out = "runs/main";
  int main_fold = 0, main_folds = 5;
  auto* main_cmd = app.add_subcommand("main", "the main job: train on a by-record split of the shipped data, "
                                              "evaluate on the held-out records, print the summary and the report path");
  main_flags.add(main_cmd);
  main_cmd->add_option("--out", main_out, "run directory (replaced if it holds an earlier main job)")->capture_default_str();
  main_cmd->add_option("--folds", main_folds, "the held-out records are one fold of this many")->capture_default_str();
  main_cmd->add_option("--fold", main_fold, "which fold is held out")->capture_default_str();

  // train
  ConfigFlags train_flags;
  std::string train_out;
  bool resume = false, overwrite = false;
  auto* train_cmd = app.add_subcommand("train", "train the apnea and sleep models and the AHI calibration");
  train_flags.add(train_cmd);
  train_cmd->add_option("--out", train_out, "run directory")->required();
  train_cmd->add_flag("--resume", resume, "continue an interrupted run in --out");
  train_cmd->add_flag("--overwrite", overwrite, "replace a finished run in --out");

  // evaluate
  std::string eval_run, eval_data = RunConfig::defaults().apnea_dir, eval_sleep, eval_out;
  std::vector<std::string> eval_records, eval_sleep_records;
  auto* eval_cmd = app.add_subcommand("evaluate", "metrics and report of a trained run on labelled records");
  eval_cmd->add_option("--run", eval_run, "run directory made by `train`")->required();
  eval_cmd->add_option("--data", eval_data, "database directory with the records")->capture_default_str();
  eval_cmd->add_option("--records", eval_records, "records to evaluate (default: all present)");
  eval_cmd->add_option("--sleep-data", eval_sleep, "hypnogram-scored database for sleep/wake metrics");
  eval_cmd->add_option("--sleep-records", eval_sleep_records, "records of --sleep-data (default: all)");
  eval_cmd->add_option("--out", eval_out, "report directory (default: RUN/report)");
  int eval_threads = 0;
  eval_cmd->add_option("--threads", eval_threads, "threads (default: the run's setting)")->check(CLI::NonNegativeNumber);

  // predict
  std::string pred_run, pred_out;
  std::vector<std::string> pred_records;
  auto* pred_cmd = app.add_subcommand("predict", "estimate the AHI of records (WFDB record paths such as dir/x01)");
  pred_cmd->add_option("--run", pred_run, "run directory made by `train`")->required();
  pred_cmd->add_option("--out", pred_out, "output directory for windows.csv and records.csv")->required();
  pred_cmd->add_option("records", pred_records, "record paths")->required();
  int pred_threads = 0;
  pred_cmd->add_option("--threads", pred_threads, "threads (default: the run's setting)")->check(CLI::NonNegativeNumber);

  // cv
  ConfigFlags cv_flags;
  std::string cv_out = "runs/cv";
  int cv_folds = 5;
  auto* cv_cmd = app.add_subcommand("cv", "k-fold cross-validation by record, with a report");
  cv_flags.add(cv_cmd);
  cv_cmd->add_option("--folds", cv_folds, "number of folds")->capture_default_str();
  cv_cmd->add_option("--out", cv_out, "output directory")->capture_default_str();

  // synth
  data::SynthConfig synth;
  std::string synth_out, synth_name = "synth";
  int synth_count = 1;
  auto* synth_cmd = app.add_subcommand("synth", "write synthetic WFDB (and EDF) recordings with ground truth");
  synth_cmd->add_option("--out", synth_out, "output directory")->required();
  synth_cmd->add_option("--name", synth_name, "record name (with --count > 1: NAME01, NAME02, ...)")->capture_default_str();
  synth_cmd->add_option("--count", synth_count, "number of records (seeds seed, seed+1, ...)")->capture_default_str();
  synth_cmd->add_option("--seed", synth.seed, "random seed")->capture_default_str();
  synth_cmd->add_option("--duration", synth.duration_s, "duration in seconds")->capture_default_str();
  synth_cmd->add_option("--fs", synth.fs_hz, "sampling rate (Hz)")->capture_default_str();
  synth_cmd->add_option("--format", synth.wfdb_format, "WFDB signal format: 16 or 212")->capture_default_str();
  synth_cmd->add_option("--ahi", synth.ahi, "events per hour of sleep")->capture_default_str();
  synth_cmd->add_option("--snr", synth.snr_db, "ECG signal-to-noise ratio (dB)")->capture_default_str();
  synth_cmd->add_flag("!--no-edf", synth.write_edf, "do not write the EDF copy");

  // info
  std::vector<std::string> info_paths;
  auto* info_cmd = app.add_subcommand("info", "print what a record holds (WFDB record path or EDF file)");
  info_cmd->add_option("records", info_paths, "record paths")->required();

  // summary
  double sum_width = 1.0;
  int64_t sum_channels = 1, sum_size = 64, sum_batch = 1;
  auto* sum_cmd = app.add_subcommand("summary", "MobileNetV2 layer by layer: output shape, parameters, MACs, memory");
  sum_cmd->add_option("--width", sum_width, "width multiplier")->capture_default_str();
  sum_cmd->add_option("--channels", sum_channels, "input channels")->capture_default_str();
  sum_cmd->add_option("--size", sum_size, "input height and width")->capture_default_str();
  sum_cmd->add_option("--batch", sum_batch, "batch size")->capture_default_str();

  // demo
  int steps = 2000;
  auto* demo = app.add_subcommand("demo", "fit a small network with autograd (a check of the foundation)");
  demo->add_option("--steps", steps, "training steps")->check(CLI::PositiveNumber);

  CLI11_PARSE(app, argc, argv);
  // Ctrl-C or kill -TERM: finish the current batch, then stop; the last checkpoint stays intact.
  std::signal(SIGINT, [](int) { request_stop(); });
  std::signal(SIGTERM, [](int) { request_stop(); });
  try {
    if (*main_cmd || *train_cmd || *cv_cmd) {
      const std::string better = sleepnet::kernels::blas_core_held_back();
      fmt::print(stderr, "OpenBLAS kernels: {}{}{}\n", sleepnet::kernels::blas_core_name(),
                 std::getenv("OPENBLAS_CORETYPE") ? " (OPENBLAS_CORETYPE)" : "",
                 better.empty() ? "" : fmt::format("; this CPU runs {0} kernels, faster: unset OPENBLAS_CORETYPE "
                                                   "or set it to {0}", better));
    }
    if (*main_cmd) {
      auto t0 = std::chrono::steady_clock::now();
      int rc = run_main_job(main_flags.resolve(), main_out, main_folds, main_fold);
      fmt::print("main job: {:.0f} s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      return rc;
    }
    if (*train_cmd) return cmd_train(train_flags.resolve(), train_out, resume, overwrite);
    if (*eval_cmd)
      return cmd_evaluate(eval_run, eval_data, eval_records, eval_sleep, eval_sleep_records, eval_out, eval_threads);
    if (*pred_cmd) return cmd_predict(pred_run, pred_out, pred_records, pred_threads);
    if (*cv_cmd) return run_cross_validation(cv_flags.resolve(), cv_out, cv_folds);
    if (*synth_cmd) {
      for (int i = 0; i < synth_count; ++i) {
        data::SynthConfig s = synth;
        s.seed = synth.seed + i;
        const std::string name = synth_count > 1 ? fmt::format("{}{:02d}", synth_name, i + 1) : synth_name;
        data::write_synthetic_record(s, synth_out, name);
        fmt::print("wrote {}/{} (seed {})\n", synth_out, name, s.seed);
      }
      return 0;
    }
    if (*info_cmd) return data::print_info(info_paths, stdout, stderr);
    if (*sum_cmd) {
      nn::MobileNetV2 model({.width_mult = sum_width, .in_channels = sum_channels, .num_outputs = 1});
      fmt::print("{}", nn::summary(model, {sum_batch, sum_channels, sum_size, sum_size}));
      return 0;
    }
    if (*demo) return run_demo(steps);
  } catch (const Interrupted& e) {
    fmt::print(stderr, "sleepnet: {}\n", e.what());
    return 130;
  } catch (const std::exception& e) {
    fmt::print(stderr, "sleepnet: {}\n", e.what());
    return 1;
  }
  return 0;
}
