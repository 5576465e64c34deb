// pipeline.h: the screening method end to end: models, AHI per night, run directories.
//
// Two MobileNetV2 classifiers on time-frequency images of the heart-beat series (data/spectrogram.h):
//   apnea model   one image per scored minute (Apnea-ECG) -> p(apnea or hypopnea in the minute)
//   sleep model   one image per 30-s epoch (slpdb)        -> p(asleep)
// AHI of a night:
//   p_apnea         the model's probability, averaged over the neighbouring minutes of the
//                   night (RunConfig::smooth_windows), and averaged with the posterior of a
//                   two-state hidden Markov model of the night (RunConfig::hmm, TwoStateChain)
//   apnea minutes   minutes with p_apnea >= 0.5
//   hours           sleep hours: 30-s epochs with p_sleep >= 0.5, p_sleep averaged over the
//                   neighbouring epochs (RunConfig::smooth_sleep_epochs) (without a sleep model: the
//                   hours of scored windows, "in bed")
//   raw AHI         apnea minutes / hours (a count of thresholded minutes: see predict_records)
//   estimated AHI   max(0, a * raw + b): a line fitted (least squares) on the training records'
//                   raw AHI against their reference AHI, so that apnea *minutes* per hour map to
//                   *events* per hour; never fitted on a record it is evaluated on.
//
// A run directory holds everything `train` made:
//   run.json              format version, configuration, records used, status
//   apnea/, sleep/        per model: checkpoint.safetensors, best.safetensors, log.csv
//   calibration.json      the AHI lines (with and without the sleep model), the apnea chain
// `predict` and `evaluate` need only run.json, the two best.safetensors and calibration.json.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/screening/metrics.h"
#include "apps/screening/report.h"
#include "apps/screening/trainer.h"
#include "data/dataset.h"
#include "data/record.h"

namespace sleepnet::screening {

struct ModelConfig {
  data::DatasetOptions data;  // image design, beat cleaning, coverage filter, normalisation
  TrainOptions train;
  nlohmann::json to_json() const;
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
};

struct RunConfig {
  std::string apnea_dir;              // Apnea-ECG-style database directory
  std::string sleep_dir;              // slpdb-style database directory ("" = no sleep model)
  std::vector<std::string> records;   // apnea records to use (empty = every record present)
  std::vector<std::string> sleep_records;  // sleep records to use (empty = all present)
  ModelConfig apnea, sleep;
  double validation_fraction = 0.15;  // of the training records, for early stopping (not with cross_fit)
  // The same for the sleep model. None by default: its 8 epochs on all of its 14-15 training nights
  // (instead of 11-12, early-stopped on the other 3) gained on each of four seeds in the 5-fold CV
  // (README, sleep model designs).
  double sleep_validation_fraction = 0.0;
  // The apnea model also trains on the sleep model's training nights (slpdb and the like: their 30-s
  // epochs' respiratory events as apnea minutes, as_minutes below). Those nights never count in the
  // AHI calibration (their reference AHI is counted differently) and are never apnea test records.
  bool apnea_sleep_nights = false;
  // Ensembles: members = K >= 2 makes the apnea model K networks whose probabilities are averaged
  // (sleep_members the same for the sleep model). By default network j has its own seed (seed + j:
  // initialisation, batch order, dropout) and its own random train / validation split of the
  // records (same fraction). With cross_fit, the training records are instead split into K folds
  // by record: network j trains on the other folds and uses fold j for early stopping, so every
  // training record is out-of-fold for exactly one network, and the AHI calibration is fitted on
  // those out-of-fold predictions (otherwise on the training predictions themselves).
  int members = 1;
  // The sleep model's networks (the same scheme); `--members K` sets both, `--sleep-members` this one.
  // defaults() makes it 3; a bare RunConfig has one network per model.
  int sleep_members = 1;
  bool cross_fit = false;
  // Post-processing of p_apnea within a night: each window's probability is replaced by the mean
  // over the windows within +-smooth_windows of it (apneas come in runs; a window's neighbours are
  // evidence too). Uses model outputs only, never labels. 0 = off.
  int smooth_windows = 2;
  // The same for p_sleep over +-smooth_sleep_epochs 30-s epochs (sleep stages last minutes; the
  // README's sleep table measured the choice). It applies to the sleep metrics and to the sleep
  // hours of the AHI alike. 0 = off.
  int smooth_sleep_epochs = 8;
  // Post-processing of p_apnea by a two-state hidden Markov model of the night (TwoStateChain,
  // fitted on the training records' labels): the final p_apnea is the mean of the +-smooth_windows
  // average above and the chain's posterior. Off in runs made before it existed.
  bool hmm = true;
  int threads = 0;                    // 0 = OpenMP's default
  std::string cache_dir;              // "" = no image cache
  bool progress = true;
  nlohmann::json to_json() const;
  static RunConfig from_json(const nlohmann::json& j, const std::string& source);
  static RunConfig defaults();        // the shipped data, the default design
};

// Ctrl-C: the CLI's signal handler calls request_stop(); training stops before its next batch
// with Interrupted, leaving the last epoch's checkpoint for --resume.
void request_stop();
bool stop_requested();

// Applies `threads` to OpenMP (and so to every kernel).
void set_threads(int threads);

// What the apnea model scores: every record's windows as minutes. A record whose windows are not
// all 60 s long (30-s sleep epochs of slpdb, UCDDB, an EDF file) gets the whole minutes of its
// duration instead, each labelled apnea when a window inside it is (1), normal when the windows
// inside it cover it and are all normal (0), unknown otherwise (-1); events are summed. Minutes
// keep the model's images, the chain's steps and the AHI's count on the scale they were trained
// and calibrated on (30-s windows would count every apnea minute twice).
std::vector<data::Record> as_minutes(const std::vector<data::Record>& records);

// Post-processing within a night: each window's probability p[j] replaced by the mean of p[i] over
// the windows i within k positions of j whose start lies within k window lengths of j's (windows in
// time order; a gap in the record thus narrows the neighbourhood). k <= 0: p unchanged. Model
// outputs only, never labels.
std::vector<double> smooth_in_time(const std::vector<double>& p, const std::vector<double>& start_s,
                                   const std::vector<double>& duration_s, int k);

// A two-state Markov chain over a night's consecutive windows (state 1 = apnea): apnea minutes come
// in runs, which a per-window classifier does not know (in the training sets of the 5-fold CV an
// apnea minute is followed by another 94-97 times in 100, a normal minute by a normal one 96-98
// times). Fitted on labels, never on predictions.
struct TwoStateChain {
  double prior = -1;   // share of state-1 windows; < 0: not fitted
  double stay0 = 0.5;  // P(next window in state 0 | this one in state 0)
  double stay1 = 0.5;  // P(next window in state 1 | this one in state 1)
  bool fitted() const { return prior >= 0; }
};

// Fits the chain on labelled windows, one vector per record in time order: the prior from every
// label, the two stay probabilities from pairs of windows that follow each other directly (the
// next starts where this one ends), each count plus one (so that training records of one class
// only, or a state never seen to persist or end, still give probabilities strictly inside (0, 1)).
// Labels other than 0 and 1 are skipped and break the chain; no label at all: not fitted.
TwoStateChain fit_chain(const std::vector<std::vector<int>>& labels, const std::vector<std::vector<double>>& start_s,
                        const std::vector<std::vector<double>>& duration_s);

// Forward-backward posterior P(state 1 | every window's p) for one night's windows in time order.
// p[j] is the classifier's probability of state 1 for window j alone, read as a posterior under
// the chain's prior (the training share), so window j's likelihoods are p/prior and
// (1 - p)/(1 - prior). A gap of k window lengths between two windows uses the k-step transition
// T^k = S + (stay0 + stay1 - 1)^k (I - S) (S: the stationary distribution in every row), so the
// chain forgets across long gaps. p outside [1e-6, 1 - 1e-6] is clamped there.
std::vector<double> chain_posterior(const std::vector<double>& p, const std::vector<double>& start_s,
                                    const std::vector<double>& duration_s, const TwoStateChain& chain);

// Loads the records of a database directory (all, or the listed ids); skipped records are reported
// on stderr once each. Throws when nothing usable is left.
std::vector<data::Record> load_records(const std::string& dir, const std::vector<std::string>& ids, bool progress);

// The networks of one model: one, or the members of an ensemble (RunConfig::members, cross_fit).
struct Ensemble {
  std::vector<std::unique_ptr<nn::MobileNetV2>> members;
  explicit operator bool() const { return !members.empty(); }
  size_t size() const { return members.size(); }
};

// The fitted models of a run, ready to predict.
struct Models {
  RunConfig config;
  Ensemble apnea, sleep;  // sleep may be empty
  LinearFit calibration;        // raw AHI (per predicted sleep hour) -> AHI
  LinearFit calibration_in_bed; // raw AHI (per hour of scored windows) -> AHI
  TwoStateChain apnea_chain;    // fitted on the training records' minute labels (RunConfig::hmm)
};

// Trains both models on the given records and fits the AHI calibration on them. `work_dir`
// receives the checkpoints (apnea/, sleep/; apnea/member1/ ... with members >= 2). Returns the
// models and the training logs.
Models train_models(const RunConfig& config, const std::vector<data::Record>& apnea_records,
                    const std::vector<data::Record>& sleep_records, const std::string& work_dir, bool resume,
                    std::vector<TrainingLog>* logs);

// Per-window and per-record predictions for records (labelled or not).
struct Prediction {
  std::vector<WindowRow> windows;
  std::vector<RecordRow> records;
};
Prediction predict_records(Models& models, const std::vector<data::Record>& records);

// Sleep model on hypnogram-scored records (epochs with a reference sleep/wake label).
std::vector<SleepEpochRow> predict_sleep_epochs(Models& models, const std::vector<data::Record>& records);

// ---- run directories ----
// Creates (or, with resume, reopens) a run directory. Refuses to touch a finished run unless
// `overwrite`, an unfinished one unless `resume` or `overwrite`, and one of another format version.
void prepare_run_dir(const std::string& run_dir, const RunConfig& config, bool resume, bool overwrite);
void save_models(const Models& models, const std::string& run_dir);  // calibration + status: finished
void write_calibration(const Models& models, const std::string& dir);  // dir/calibration.json
Models load_models(const std::string& run_dir);

}  // namespace sleepnet::screening
