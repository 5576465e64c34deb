// metrics.h: how well the screening models do, computed from plain numbers.
//
// Everything here takes std::vector<double> probabilities / values and std::vector<int> labels
// (0 or 1, or a class index), so it needs no tensors and is easy to test by hand.
//
// Three levels, matching how the app is judged (issue 5):
//
//  1. Per window (one scored minute of Apnea-ECG, or one 30-s epoch): the model gives a probability
//     p; the decision is `p >= threshold`. From the decisions: accuracy, sensitivity (recall of the
//     positive class), specificity, precision, F1 (`BinaryMetrics`). From the probabilities
//     themselves, never from the decisions: the ROC curve and its area (`roc_curve`, `roc_auc`).
//     The AUC is the Mann-Whitney statistic: the probability that a random positive window scores
//     higher than a random negative one, ties counting one half. It is computed from mid-ranks
//     (tied scores share the mean of the ranks they occupy), which equals the trapezoid area under
//     the ROC curve whose points sit at each distinct score.
//
//  2. Per record (one night): estimated vs reference AHI (apnea-hypopnea index, events per hour of
//     sleep). Pearson r, mean absolute error, and the clinical decisions: 2-class "AHI >= 5" and
//     "AHI >= 15" confusion matrices (with accuracy, sensitivity, specificity) and the 4-class
//     severity matrix: normal < 5 <= mild < 15 <= moderate < 30 <= severe.
//
//  3. Sleep/wake per 30-s epoch: accuracy and Cohen's kappa (agreement beyond chance, the usual
//     figure for sleep scoring, where "always sleep" already gives a high accuracy).
//
// Plus `fit_linear`: the least-squares line y = slope * x + intercept used to calibrate raw AHI
// estimates onto the reference scale. Fit it on training records only, then apply it to test records.
//
// Undefined values are NaN, never an exception, so a report can still be written:
//   - sensitivity with no positive windows, specificity with no negatives, precision with no
//     predicted positives, F1 when neither truth nor prediction has a positive;
//   - ROC-AUC when the labels hold only one class (the ROC curve is then empty);
//   - Pearson r when either variable is constant (or has one value);
//   - Cohen's kappa when chance agreement is 1 (both raters always give the same single class).
// Bad input is an exception (sleepnet::Error) naming the function and the argument: empty input,
// size mismatch, a label that is not 0/1 (or not a class index), a non-finite probability or value.
// fit_linear also refuses a constant x (no slope can be fitted): the caller decides what to do.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace sleepnet::screening {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- 1. Binary decisions ------------------------------------------------------------------------

// Counts of a 2-class decision, positive class = 1. The ratios are NaN when their denominator is 0.
struct BinaryMetrics {
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;

  int64_t n() const { return tp + fp + tn + fn; }
  int64_t positives() const { return tp + fn; }  // truly positive
  int64_t negatives() const { return tn + fp; }  // truly negative
  double accuracy() const;                       // (tp + tn) / n
  double sensitivity() const;                    // tp / (tp + fn), a.k.a. recall, TPR
  double specificity() const;                    // tn / (tn + fp), 1 - FPR
  double precision() const;                      // tp / (tp + fp), a.k.a. PPV
  double f1() const;                             // 2 tp / (2 tp + fp + fn)
};

// truth, predicted: [n] labels in {0, 1}.
BinaryMetrics binary_metrics(const std::vector<int>& truth, const std::vector<int>& predicted);
// prob: [n] finite scores; predicted positive when prob[i] >= threshold. truth: [n] in {0, 1}.
BinaryMetrics binary_metrics_at(const std::vector<double>& prob, const std::vector<int>& truth,
                                double threshold);

// One point of an ROC curve: deciding "positive" when score >= threshold gives this FPR and TPR.
struct RocPoint {
  double threshold;  // +infinity for the first point (nothing predicted positive)
  double fpr;        // false-positive rate = 1 - specificity
  double tpr;        // true-positive rate = sensitivity
};

// The ROC curve from the scores: starts at (0, 0) with threshold +inf, then one point per distinct
// score in decreasing order, ends at (1, 1). Empty when truth holds only one class.
std::vector<RocPoint> roc_curve(const std::vector<double>& score, const std::vector<int>& truth);
// Area under the ROC curve (Mann-Whitney U / (P * N), mid-ranks for ties). NaN with one class.
double roc_auc(const std::vector<double>& score, const std::vector<int>& truth);
// Trapezoid area under a curve from roc_curve; NaN for an empty curve. Equals roc_auc (a check).
double roc_area_trapezoid(const std::vector<RocPoint>& curve);

// ---- Confusion matrices and agreement -----------------------------------------------------------

// counts[t][p]: how many items of true class t were predicted as class p. Rows = truth.
struct ConfusionMatrix {
  std::vector<std::string> labels;           // class names, index = class id
  std::vector<std::vector<int64_t>> counts;  // [K][K]

  int classes() const { return static_cast<int>(labels.size()); }
  int64_t total() const;
  double accuracy() const;  // trace / total (NaN when total is 0)
};

// truth, predicted: [n] class ids in [0, labels.size()).
ConfusionMatrix confusion_matrix(const std::vector<int>& truth, const std::vector<int>& predicted,
                                 std::vector<std::string> labels);
// Cohen's kappa = (p_o - p_e) / (1 - p_e): p_o observed agreement (accuracy), p_e the agreement
// expected by chance from the row and column totals. 1 = perfect, 0 = chance level.
double cohen_kappa(const ConfusionMatrix& cm);
// The 2x2 matrix of a binary decision (class 1 = positive) as BinaryMetrics.
BinaryMetrics binary_from_confusion(const ConfusionMatrix& cm);

// ---- Regression: estimated vs reference values --------------------------------------------------

// Pearson correlation of x and y ([n] finite values, n >= 1). NaN when either is constant.
double pearson_r(const std::vector<double>& x, const std::vector<double>& y);
// mean |x - y| over [n] finite values.
double mean_absolute_error(const std::vector<double>& x, const std::vector<double>& y);
// mean (x - y): the bias of x relative to y.
double mean_error(const std::vector<double>& x, const std::vector<double>& y);

// y ~ slope * x + intercept.
struct LinearFit {
  double slope = 1.0;
  double intercept = 0.0;
  double operator()(double x) const { return slope * x + intercept; }
};
// Ordinary least squares on [n] finite pairs, n >= 2, x not constant (else Error).
LinearFit fit_linear(const std::vector<double>& x, const std::vector<double>& y);
// An AHI through the calibration, clamped at 0 (a line can go negative; an index cannot).
double calibrated_ahi(const LinearFit& fit, double raw_ahi);

// ---- Severity -----------------------------------------------------------------------------------

// AASM adult categories from the AHI (events / hour).
enum class Severity : int { normal = 0, mild = 1, moderate = 2, severe = 3 };
inline constexpr double kAhiMild = 5.0, kAhiModerate = 15.0, kAhiSevere = 30.0;

// normal < 5 <= mild < 15 <= moderate < 30 <= severe. A NaN AHI is an Error.
Severity severity(double ahi);
const char* severity_name(Severity s);              // "normal", "mild", "moderate", "severe"
const std::vector<std::string>& severity_names();   // the four, in order

// ---- The three levels together ------------------------------------------------------------------

struct WindowMetrics {
  double threshold = 0.5;
  BinaryMetrics decision;     // at the threshold
  double roc_auc = kNaN;      // from the probabilities
  std::vector<RocPoint> roc;  // full curve (empty when one class only)
};
// prob: [n] probabilities of the positive class; truth: [n] in {0, 1}.
WindowMetrics window_metrics(const std::vector<double>& prob, const std::vector<int>& truth,
                             double threshold = 0.5);

// One record-level binary diagnosis, e.g. "AHI >= 5".
struct Diagnosis {
  double cutoff = kAhiMild;
  ConfusionMatrix confusion;  // labels {"AHI < c", "AHI >= c"}, rows = reference
  BinaryMetrics decision;     // positive = AHI >= cutoff
};

struct RecordMetrics {
  int64_t n = 0;
  double pearson_r = kNaN;
  double mae = kNaN;         // mean |estimated - reference|, events/h
  double mean_error = kNaN;  // mean (estimated - reference): > 0 means over-estimation
  Diagnosis ahi5;
  Diagnosis ahi15;
  ConfusionMatrix severity;  // 4 x 4, rows = reference severity
};
// estimated, reference: [records] AHI in events/h.
RecordMetrics record_metrics(const std::vector<double>& estimated,
                             const std::vector<double>& reference);

struct SleepMetrics {
  double threshold = 0.5;
  ConfusionMatrix confusion;  // labels {"wake", "sleep"}, rows = reference
  BinaryMetrics decision;     // positive = sleep
  double accuracy = kNaN;
  double kappa = kNaN;
  double roc_auc = kNaN;      // sleep probability vs reference
};
// p_sleep: [epochs] probability of sleep; truth: [epochs] 1 = sleep, 0 = wake.
SleepMetrics sleep_metrics(const std::vector<double>& p_sleep, const std::vector<int>& truth,
                           double threshold = 0.5);

}  // namespace sleepnet::screening
