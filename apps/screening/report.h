// report.h: everything an evaluation produced, turned into a report directory a person can open.
//
// The caller (evaluate, the main job, cross-validation) fills a ReportData with raw results: one
// row per scored window, per sleep epoch, per record, plus the training logs and the configuration.
// The metrics are computed here from those rows (compute_metrics), so the numbers in metrics.json,
// the terminal summary, the CSVs and the plots always agree with each other.
//
// write_report(data, dir) writes into `dir` (created if missing; each file written to a temporary
// name then renamed, so a crash never leaves a half-written file under the final name):
//
//   metrics.json          format tag, title, config, calibration, every metric, the per-record table
//                         and the training logs; NaN (undefined) metrics are written as null
//   windows.csv           record,start_s,duration_s,p_apnea,apnea[,p_sleep,sleep][,reference_apnea]
//   sleep_epochs.csv      record,start_s,duration_s,p_sleep,sleep,reference_sleep   (if any)
//   records.csv           record,hours,apnea_windows,estimated_ahi,severity,... (see records_csv)
//   training_<name>.csv   epoch,train_loss,val_loss,val_accuracy,val_auc,learning_rate,seconds
//   loss_<name>.svg       training / validation loss per epoch
//   ahi_scatter.svg       estimated vs reference AHI, identity line, severity thresholds
//   confusion_ahi5.svg, confusion_ahi15.svg, confusion_severity.svg, confusion_windows.svg,
//   confusion_sleep.svg   coloured grids with counts
//   roc.svg               ROC curves (apnea per window; sleep per epoch if present), AUC in legend
//   index.html            summary table, per-record table and every plot embedded inline: one
//                         self-contained file (no scripts, fonts or images fetched from anywhere)
//
// A plot or CSV whose data is absent (no sleep epochs, no training log, no reference AHI) is not
// written, and index.html says so; metrics.json then holds null for that section.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/screening/metrics.h"

namespace sleepnet::screening {

// One scored window of the apnea model (an Apnea-ECG minute).
struct WindowRow {
  std::string record;       // "a01"
  double start_s = 0.0;     // from the record start
  double duration_s = 60.0;
  double p_apnea = kNaN;    // model output in [0, 1]
  int reference_apnea = -1; // 1 apnea/hypopnea, 0 normal, -1 unknown (not used by the metrics)
  double p_sleep = kNaN;    // sleep model output for this window, NaN when no sleep model ran
};

// One 30-s epoch scored by the sleep model against a hypnogram (slpdb, UCDDB).
struct SleepEpochRow {
  std::string record;
  double start_s = 0.0;
  double duration_s = 30.0;
  double p_sleep = kNaN;    // model output in [0, 1]
  int reference_sleep = -1; // 1 sleep, 0 wake, -1 unknown
};

// One night.
struct RecordRow {
  std::string record;
  int fold = -1;                    // cross-validation fold it was tested in, -1 if none
  double hours = kNaN;              // the AHI's denominator: hours of (predicted) sleep
  double hours_in_bed = kNaN;       // hours of scored windows, whether asleep or not
  int64_t apnea_windows = 0;        // windows predicted apnea
  double raw_ahi = kNaN;            // apnea_windows / hours, before calibration
  double estimated_ahi = kNaN;      // after calibration: the app's answer
  double estimated_ahi_in_bed = kNaN;  // the same without the sleep model (per hour in bed), to
                                       // measure whether the sleep model helps; NaN if not computed
  double reference_ahi = kNaN;      // from the annotations, NaN when unknown
};

struct EpochLog {
  int epoch = 0;                // 1-based
  double train_loss = kNaN;
  double val_loss = kNaN;       // NaN when there is no validation set
  double val_accuracy = kNaN;
  double val_auc = kNaN;
  double learning_rate = kNaN;  // at the end of the epoch
  double seconds = kNaN;        // wall time of the epoch
};

struct TrainingLog {
  std::string name;  // "apnea", "sleep", "apnea fold 3": file names use a slug of it
  std::vector<EpochLog> epochs;
};

struct ReportData {
  std::string title = "sleepnet screening report";
  nlohmann::json config = nlohmann::json::object();  // copied verbatim into metrics.json
  double apnea_threshold = 0.5;  // window decision: p_apnea >= threshold
  double sleep_threshold = 0.5;  // epoch decision: p_sleep >= threshold
  std::optional<LinearFit> calibration;  // raw -> estimated AHI, fitted on the training records
  std::string calibration_note;          // shown instead when there is no single calibration
  std::vector<WindowRow> windows;
  std::vector<SleepEpochRow> sleep_epochs;
  std::vector<RecordRow> records;
  std::vector<TrainingLog> training;
};

// The metrics of a ReportData; a section is empty when its data is absent.
struct ReportMetrics {
  int64_t windows_total = 0;                 // all windows, labelled or not
  std::optional<WindowMetrics> windows;      // windows with a reference label
  std::optional<RecordMetrics> records;      // records with a reference AHI (estimated_ahi)
  std::optional<RecordMetrics> records_in_bed;  // same records, estimated_ahi_in_bed (if all finite)
  std::optional<SleepMetrics> sleep;         // sleep epochs with a reference label
};

// Throws sleepnet::Error naming the row and field for a non-finite probability or AHI where one is
// needed (a labelled window without p_apnea, a record with a reference but no estimate).
ReportMetrics compute_metrics(const ReportData& data);

// The whole metrics.json document. Non-finite numbers become null.
nlohmann::json report_json(const ReportData& data, const ReportMetrics& metrics);

// A plain-text table for the terminal: each headline metric, its value and the target.
std::string summary_table(const ReportData& data);
std::string summary_table(const ReportData& data, const ReportMetrics& metrics);

// The CSV texts (also usable on their own, e.g. by `predict`).
std::string windows_csv(const std::vector<WindowRow>& rows, double apnea_threshold,
                        double sleep_threshold);
std::string sleep_epochs_csv(const std::vector<SleepEpochRow>& rows, double sleep_threshold);
// record,hours,apnea_windows,estimated_ahi,severity,hours_in_bed,raw_ahi,estimated_ahi_in_bed,
// reference_ahi,reference_severity,fold  (unknown values are empty fields)
std::string records_csv(const std::vector<RecordRow>& rows);
std::string training_csv(const TrainingLog& log);

// Writes every file listed at the top into `dir`. Returns the metrics it computed.
ReportMetrics write_report(const ReportData& data, const std::string& dir);

// Writes `content` to `path` atomically: a temporary file in the same directory, flushed, then
// renamed over `path`. Throws sleepnet::Error naming the path on failure.
void write_file_atomic(const std::filesystem::path& path, std::string_view content);

// "apnea fold 3" -> "apnea_fold_3": lower-case letters, digits, '-' and '_' only.
std::string file_slug(std::string_view name);

}  // namespace sleepnet::screening
