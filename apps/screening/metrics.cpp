// metrics.cpp: binary metrics, ROC, confusion matrices, kappa, Pearson, least squares, severity.
// See metrics.h for the definitions and the edge-case rules (NaN for undefined, Error for bad input).
#include "apps/screening/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "tensor/tensor.h"  // sleepnet::Error

namespace sleepnet::screening {
namespace {

// a / b as double, NaN when b is 0.
double ratio(int64_t a, int64_t b) {
  return b == 0 ? kNaN : static_cast<double>(a) / static_cast<double>(b);
}

void check_nonempty_same_size(const char* fn, const char* a_name, size_t a, const char* b_name,
                              size_t b) {
  if (a != b) {
    throw Error(fmt::format("{}: {} has {} values but {} has {}; expected the same length", fn,
                            a_name, a, b_name, b));
  }
  if (a == 0) throw Error(fmt::format("{}: {} and {} are empty; expected at least one value", fn,
                                      a_name, b_name));
}

void check_binary(const char* fn, const char* name, const std::vector<int>& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != 0 && v[i] != 1) {
      throw Error(fmt::format("{}: {}[{}] = {}; expected 0 or 1", fn, name, i, v[i]));
    }
  }
}

void check_finite(const char* fn, const char* name, const std::vector<double>& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      throw Error(fmt::format("{}: {}[{}] = {}; expected a finite number", fn, name, i, v[i]));
    }
  }
}

void check_scores(const char* fn, const std::vector<double>& score, const std::vector<int>& truth) {
  check_nonempty_same_size(fn, "score", score.size(), "truth", truth.size());
  check_finite(fn, "score", score);
  check_binary(fn, "truth", truth);
}

std::vector<int> threshold_all(const std::vector<double>& v, double threshold) {
  if (std::isnan(threshold)) throw Error("metrics: decision threshold is NaN; expected a number");
  std::vector<int> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[i] >= threshold ? 1 : 0;
  return out;
}

Diagnosis diagnose(const std::vector<double>& estimated, const std::vector<double>& reference,
                   double cutoff) {
  Diagnosis d;
  d.cutoff = cutoff;
  std::vector<int> truth = threshold_all(reference, cutoff);
  std::vector<int> pred = threshold_all(estimated, cutoff);
  std::string c = fmt::format("{:g}", cutoff);
  d.confusion = confusion_matrix(truth, pred, {"AHI < " + c, "AHI >= " + c});
  d.decision = binary_metrics(truth, pred);
  return d;
}

}  // namespace

// ---- BinaryMetrics ------------------------------------------------------------------------------

double BinaryMetrics::accuracy() const { return ratio(tp + tn, n()); }
double BinaryMetrics::sensitivity() const { return ratio(tp, tp + fn); }
double BinaryMetrics::specificity() const { return ratio(tn, tn + fp); }
double BinaryMetrics::precision() const { return ratio(tp, tp + fp); }
double BinaryMetrics::f1() const { return ratio(2 * tp, 2 * tp + fp + fn); }

BinaryMetrics binary_metrics(const std::vector<int>& truth, const std::vector<int>& predicted) {
  const char* fn = "binary_metrics";
  check_nonempty_same_size(fn, "truth", truth.size(), "predicted", predicted.size());
  check_binary(fn, "truth", truth);
  check_binary(fn, "predicted", predicted);
  BinaryMetrics m;
  for (size_t i = 0; i < truth.size(); ++i) {
    if (truth[i] == 1) {
      (predicted[i] == 1 ? m.tp : m.fn)++;
    } else {
      (predicted[i] == 1 ? m.fp : m.tn)++;
    }
  }
  return m;
}

BinaryMetrics binary_metrics_at(const std::vector<double>& prob, const std::vector<int>& truth,
                                double threshold) {
  check_scores("binary_metrics_at", prob, truth);
  return binary_metrics(truth, threshold_all(prob, threshold));
}

// ---- ROC ----------------------------------------------------------------------------------------

// Walk the scores from the highest down. Lowering the threshold past a group of tied scores turns
// all of them positive at once, so a group gives one point (a diagonal step when it mixes classes).
std::vector<RocPoint> roc_curve(const std::vector<double>& score, const std::vector<int>& truth) {
  check_scores("roc_curve", score, truth);
  const int64_t P = std::count(truth.begin(), truth.end(), 1);
  const int64_t N = static_cast<int64_t>(truth.size()) - P;
  if (P == 0 || N == 0) return {};

  std::vector<size_t> order(score.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] > score[b]; });

  std::vector<RocPoint> curve;
  curve.push_back({std::numeric_limits<double>::infinity(), 0.0, 0.0});
  int64_t tp = 0, fp = 0;
  for (size_t i = 0; i < order.size();) {
    const double s = score[order[i]];
    for (; i < order.size() && score[order[i]] == s; ++i) (truth[order[i]] == 1 ? tp : fp)++;
    curve.push_back({s, static_cast<double>(fp) / N, static_cast<double>(tp) / P});
  }
  return curve;
}

// Mann-Whitney: rank all scores ascending (1..n), tied scores get the mean of their ranks. With R the
// sum of the positives' ranks, U = R - P (P + 1) / 2 counts the (positive, negative) pairs where the
// positive scores higher, plus one half per tie; AUC = U / (P N).
double roc_auc(const std::vector<double>& score, const std::vector<int>& truth) {
  check_scores("roc_auc", score, truth);
  const int64_t P = std::count(truth.begin(), truth.end(), 1);
  const int64_t N = static_cast<int64_t>(truth.size()) - P;
  if (P == 0 || N == 0) return kNaN;

  std::vector<size_t> order(score.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] < score[b]; });

  double rank_sum_pos = 0.0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && score[order[j]] == score[order[i]]) ++j;
    // items i..j-1 (0-based) occupy ranks i+1..j: their mean is (i + 1 + j) / 2
    const double mid_rank = 0.5 * static_cast<double>(i + 1 + j);
    for (size_t k = i; k < j; ++k) {
      if (truth[order[k]] == 1) rank_sum_pos += mid_rank;
    }
    i = j;
  }
  const double U = rank_sum_pos - 0.5 * static_cast<double>(P) * static_cast<double>(P + 1);
  return U / (static_cast<double>(P) * static_cast<double>(N));
}

double roc_area_trapezoid(const std::vector<RocPoint>& curve) {
  if (curve.empty()) return kNaN;
  double area = 0.0;
  for (size_t i = 1; i < curve.size(); ++i) {
    area += (curve[i].fpr - curve[i - 1].fpr) * 0.5 * (curve[i].tpr + curve[i - 1].tpr);
  }
  return area;
}

// ---- Confusion matrices -------------------------------------------------------------------------

int64_t ConfusionMatrix::total() const {
  int64_t t = 0;
  for (const auto& row : counts) t = std::accumulate(row.begin(), row.end(), t);
  return t;
}

double ConfusionMatrix::accuracy() const {
  int64_t diag = 0;
  for (size_t k = 0; k < counts.size(); ++k) diag += counts[k][k];
  return ratio(diag, total());
}

ConfusionMatrix confusion_matrix(const std::vector<int>& truth, const std::vector<int>& predicted,
                                 std::vector<std::string> labels) {
  const char* fn = "confusion_matrix";
  check_nonempty_same_size(fn, "truth", truth.size(), "predicted", predicted.size());
  if (labels.size() < 2) {
    throw Error(fmt::format("{}: {} class labels given; expected at least 2", fn, labels.size()));
  }
  const int K = static_cast<int>(labels.size());
  ConfusionMatrix cm;
  cm.labels = std::move(labels);
  cm.counts.assign(K, std::vector<int64_t>(K, 0));
  for (size_t i = 0; i < truth.size(); ++i) {
    if (truth[i] < 0 || truth[i] >= K) {
      throw Error(fmt::format("{}: truth[{}] = {}; expected a class id in [0, {})", fn, i, truth[i], K));
    }
    if (predicted[i] < 0 || predicted[i] >= K) {
      throw Error(fmt::format("{}: predicted[{}] = {}; expected a class id in [0, {})", fn, i,
                              predicted[i], K));
    }
    cm.counts[truth[i]][predicted[i]]++;
  }
  return cm;
}

double cohen_kappa(const ConfusionMatrix& cm) {
  const int K = cm.classes();
  if (static_cast<int>(cm.counts.size()) != K) {
    throw Error(fmt::format("cohen_kappa: {} rows of counts for {} labels", cm.counts.size(), K));
  }
  const double n = static_cast<double>(cm.total());
  if (n == 0) return kNaN;
  double observed = 0.0, expected = 0.0;
  for (int k = 0; k < K; ++k) {
    observed += static_cast<double>(cm.counts[k][k]);
    double row = 0.0, col = 0.0;  // how often truth says k, how often the prediction says k
    for (int j = 0; j < K; ++j) {
      row += static_cast<double>(cm.counts[k][j]);
      col += static_cast<double>(cm.counts[j][k]);
    }
    expected += row * col;
  }
  const double p_o = observed / n;
  const double p_e = expected / (n * n);
  if (p_e >= 1.0) return kNaN;  // both raters constant and equal: agreement by chance is certain
  return (p_o - p_e) / (1.0 - p_e);
}

BinaryMetrics binary_from_confusion(const ConfusionMatrix& cm) {
  if (cm.counts.size() != 2 || cm.counts[0].size() != 2 || cm.counts[1].size() != 2) {
    throw Error(fmt::format("binary_from_confusion: matrix has {} classes; expected 2",
                            cm.counts.size()));
  }
  BinaryMetrics m;
  m.tn = cm.counts[0][0];
  m.fp = cm.counts[0][1];
  m.fn = cm.counts[1][0];
  m.tp = cm.counts[1][1];
  return m;
}

// ---- Regression ---------------------------------------------------------------------------------

double pearson_r(const std::vector<double>& x, const std::vector<double>& y) {
  const char* fn = "pearson_r";
  check_nonempty_same_size(fn, "x", x.size(), "y", y.size());
  check_finite(fn, "x", x);
  check_finite(fn, "y", y);
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  // centred sums (two passes: no cancellation of large means)
  double sxx = 0.0, syy = 0.0, sxy = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double dx = x[i] - mx, dy = y[i] - my;
    sxx += dx * dx;
    syy += dy * dy;
    sxy += dx * dy;
  }
  if (sxx == 0.0 || syy == 0.0) return kNaN;
  return std::clamp(sxy / std::sqrt(sxx * syy), -1.0, 1.0);
}

double mean_absolute_error(const std::vector<double>& x, const std::vector<double>& y) {
  const char* fn = "mean_absolute_error";
  check_nonempty_same_size(fn, "x", x.size(), "y", y.size());
  check_finite(fn, "x", x);
  check_finite(fn, "y", y);
  double s = 0.0;
  for (size_t i = 0; i < x.size(); ++i) s += std::abs(x[i] - y[i]);
  return s / static_cast<double>(x.size());
}

double mean_error(const std::vector<double>& x, const std::vector<double>& y) {
  const char* fn = "mean_error";
  check_nonempty_same_size(fn, "x", x.size(), "y", y.size());
  check_finite(fn, "x", x);
  check_finite(fn, "y", y);
  double s = 0.0;
  for (size_t i = 0; i < x.size(); ++i) s += x[i] - y[i];
  return s / static_cast<double>(x.size());
}

// slope = sum (x - mx)(y - my) / sum (x - mx)^2, intercept = my - slope * mx.
LinearFit fit_linear(const std::vector<double>& x, const std::vector<double>& y) {
  const char* fn = "fit_linear";
  check_nonempty_same_size(fn, "x", x.size(), "y", y.size());
  check_finite(fn, "x", x);
  check_finite(fn, "y", y);
  if (x.size() < 2) throw Error("fit_linear: 1 point given; expected at least 2 to fit a line");
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n;
  const double my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxx = 0.0, sxy = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxx += (x[i] - mx) * (x[i] - mx);
    sxy += (x[i] - mx) * (y[i] - my);
  }
  if (sxx == 0.0) {
    throw Error(fmt::format("fit_linear: x is constant ({} points, all {}); expected x to vary",
                            x.size(), x[0]));
  }
  LinearFit f;
  f.slope = sxy / sxx;
  f.intercept = my - f.slope * mx;
  return f;
}

double calibrated_ahi(const LinearFit& fit, double raw_ahi) {
  return std::max(0.0, fit(raw_ahi));
}

// ---- Severity -----------------------------------------------------------------------------------

Severity severity(double ahi) {
  if (std::isnan(ahi)) throw Error("severity: AHI is NaN; expected a number of events per hour");
  if (ahi < kAhiMild) return Severity::normal;
  if (ahi < kAhiModerate) return Severity::mild;
  if (ahi < kAhiSevere) return Severity::moderate;
  return Severity::severe;
}

const char* severity_name(Severity s) {
  switch (s) {
    case Severity::normal: return "normal";
    case Severity::mild: return "mild";
    case Severity::moderate: return "moderate";
    case Severity::severe: return "severe";
  }
  throw Error(fmt::format("severity_name: {} is not a severity", static_cast<int>(s)));
}

const std::vector<std::string>& severity_names() {
  static const std::vector<std::string> names = {"normal", "mild", "moderate", "severe"};
  return names;
}

// ---- The three levels ---------------------------------------------------------------------------

WindowMetrics window_metrics(const std::vector<double>& prob, const std::vector<int>& truth,
                             double threshold) {
  WindowMetrics m;
  m.threshold = threshold;
  m.decision = binary_metrics_at(prob, truth, threshold);
  m.roc_auc = roc_auc(prob, truth);
  m.roc = roc_curve(prob, truth);
  return m;
}

RecordMetrics record_metrics(const std::vector<double>& estimated,
                             const std::vector<double>& reference) {
  const char* fn = "record_metrics";
  check_nonempty_same_size(fn, "estimated", estimated.size(), "reference", reference.size());
  check_finite(fn, "estimated", estimated);
  check_finite(fn, "reference", reference);
  RecordMetrics m;
  m.n = static_cast<int64_t>(estimated.size());
  m.pearson_r = pearson_r(estimated, reference);
  m.mae = mean_absolute_error(estimated, reference);
  m.mean_error = mean_error(estimated, reference);
  m.ahi5 = diagnose(estimated, reference, kAhiMild);
  m.ahi15 = diagnose(estimated, reference, kAhiModerate);
  std::vector<int> t(estimated.size()), p(estimated.size());
  for (size_t i = 0; i < estimated.size(); ++i) {
    t[i] = static_cast<int>(severity(reference[i]));
    p[i] = static_cast<int>(severity(estimated[i]));
  }
  m.severity = confusion_matrix(t, p, severity_names());
  return m;
}

SleepMetrics sleep_metrics(const std::vector<double>& p_sleep, const std::vector<int>& truth,
                           double threshold) {
  check_scores("sleep_metrics", p_sleep, truth);
  SleepMetrics m;
  m.threshold = threshold;
  std::vector<int> pred = threshold_all(p_sleep, threshold);
  m.confusion = confusion_matrix(truth, pred, {"wake", "sleep"});
  m.decision = binary_from_confusion(m.confusion);
  m.accuracy = m.confusion.accuracy();
  m.kappa = cohen_kappa(m.confusion);
  m.roc_auc = roc_auc(p_sleep, truth);
  return m;
}

}  // namespace sleepnet::screening
