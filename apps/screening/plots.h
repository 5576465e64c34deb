// plots.h: the report's figures as standalone SVG documents (strings), drawn with svg.h.
//
//   line_plot       loss (or any metric) per epoch, one line per series, optional marked epoch
//   ahi_scatter     estimated vs reference AHI per record, identity line, severity thresholds
//   confusion_plot  a confusion matrix as a coloured grid: counts and row percentages
//   roc_plot        ROC curves with the chance diagonal, AUC in the legend, operating points
//
// Every function accepts NaN/empty input and still returns a valid SVG (a "no data" note, an
// "AUC undefined" legend, NaN points left out), because a report must be written even for a run
// whose validation set happened to hold only one class.
#pragma once

#include <string>
#include <vector>

#include "apps/screening/metrics.h"

namespace sleepnet::screening::plots {

struct LineSeries {
  std::string name;
  std::vector<double> x, y;  // [n] each; pairs with a non-finite value are not drawn
  bool dashed = false;
  std::string color;         // empty: next palette colour
};

struct LinePlotSpec {
  std::string title, subtitle, x_label, y_label;
  std::vector<LineSeries> series;
  bool integer_x = true;      // epochs: whole-number ticks
  double marker_x = kNaN;     // a vertical dotted line, e.g. the best epoch
  std::string marker_label;   // its label, e.g. "best epoch 7"
};
std::string line_plot(const LinePlotSpec& spec);

// names, estimated, reference: [records]. Points are coloured by whether the estimated severity
// class equals the reference one; hovering shows the record name and both values.
std::string ahi_scatter(const std::vector<std::string>& names, const std::vector<double>& estimated,
                        const std::vector<double>& reference, const std::string& title,
                        const std::string& subtitle);

// Rows = reference (truth), columns = prediction. Cell colour = fraction of its row.
std::string confusion_plot(const ConfusionMatrix& cm, const std::string& title,
                           const std::string& subtitle, const std::string& row_axis = "reference",
                           const std::string& column_axis = "predicted");

struct RocSeries {
  std::string name;             // "apnea, per window"
  std::vector<RocPoint> curve;  // from roc_curve (may be empty: one class only)
  double auc = kNaN;
  double op_fpr = kNaN, op_tpr = kNaN;  // operating point at the decision threshold (optional)
  std::string op_label;                 // e.g. "threshold 0.5"
};
std::string roc_plot(const std::vector<RocSeries>& series, const std::string& title,
                     const std::string& subtitle = {});

// Keeps the first and last points and drops those closer than `min_step` (|dFPR| + |dTPR|) to the
// last kept one: a 20 000-point curve becomes a few hundred with < 1 px of error at 440 px.
std::vector<RocPoint> thin_roc(const std::vector<RocPoint>& curve, double min_step = 0.002);

}  // namespace sleepnet::screening::plots
