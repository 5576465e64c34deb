// cv.h: the jobs that train and evaluate in one go: the README's main job (one by-record hold-out
// split) and k-fold cross-validation by record; plus the CSV files of `predict`.
#pragma once

#include <string>
#include <vector>

#include "apps/screening/pipeline.h"

namespace sleepnet::screening {

// Trains on every fold but `fold` of a k-fold split by record (apnea records; the sleep records
// are split the same way), evaluates on the held-out records, writes `out`/report and prints the
// summary table and the report path.
int run_main_job(const RunConfig& config, const std::string& out, int folds, int fold);

// k-fold cross-validation by record: every record is tested once, by models that never saw it
// (calibration included). Writes `out`/report with the out-of-fold predictions.
int run_cross_validation(const RunConfig& config, const std::string& out, int folds);

// predict's files: windows.csv (record,start_s,duration_s,p_apnea,apnea[,p_sleep,sleep]) and
// records.csv (record,hours,apnea_windows,estimated_ahi,severity).
std::string predictions_windows_csv(const std::vector<WindowRow>& rows, bool with_sleep);
std::string predictions_records_csv(const std::vector<RecordRow>& rows);

// A small end-to-end check of the foundation: fits y = sin(3x) with a two-layer tanh network.
int run_demo(int steps);

}  // namespace sleepnet::screening
