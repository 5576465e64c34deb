// plots.cpp: line plot, AHI scatter, confusion grid and ROC plot as SVG strings (see plots.h).
#include "apps/screening/plots.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "apps/screening/svg.h"

namespace sleepnet::screening::plots {
namespace {

using svg::Axes;
using svg::AxesSpec;
using svg::Document;
using svg::LegendEntry;

void no_data_note(Document& doc, const Axes& ax, const std::string& what) {
  doc.text(ax.left + ax.width / 2, ax.top + ax.height / 2, what,
           "font-size=\"15\" text-anchor=\"middle\" fill=\"#888\"");
}

std::string fmt_or_na(double v, const char* spec_fmt) {
  return std::isfinite(v) ? fmt::format(fmt::runtime(spec_fmt), v) : std::string("n/a");
}

}  // namespace

// ---- Line plot ----------------------------------------------------------------------------------

std::string line_plot(const LinePlotSpec& spec) {
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  int points = 0;
  for (const LineSeries& s : spec.series) {
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]);
      xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]);
      ymax = std::max(ymax, s.y[i]);
      ++points;
    }
  }
  Document doc(640, 420);
  AxesSpec a;
  a.title = spec.title;
  a.subtitle = spec.subtitle;
  a.x_label = spec.x_label;
  a.y_label = spec.y_label;
  a.x = svg::nice_range(points ? xmin : 0, points ? xmax : 1, 8, spec.integer_x ? 1.0 : 0.0);
  // a little headroom so the top point does not sit on the frame
  const double pad = points ? 0.04 * (ymax - ymin) : 0.0;
  a.y = svg::nice_range(points ? ymin - pad : 0, points ? ymax + pad : 1, 5);
  Axes ax = svg::draw_axes(doc, a);
  if (points == 0) {
    no_data_note(doc, ax, "no data");
    return doc.str();
  }

  if (std::isfinite(spec.marker_x)) {
    const double x = ax.px(spec.marker_x);
    doc.line(x, ax.top, x, ax.bottom(), "stroke=\"#777\" stroke-width=\"1.5\" stroke-dasharray=\"2 3\"");
    if (!spec.marker_label.empty()) {
      // label inside the plot, on the side with more room
      const bool left_side = spec.marker_x > (ax.x0 + ax.x1) / 2;
      doc.text(left_side ? x - 5 : x + 5, ax.bottom() - 8, spec.marker_label,
               fmt::format("font-size=\"12\" fill=\"#555\" text-anchor=\"{}\"",
                           left_side ? "end" : "start"));
    }
  }

  std::vector<LegendEntry> legend;
  std::vector<std::pair<double, double>> drawn;  // every pixel the lines pass through, roughly
  int colour = 0;
  for (const LineSeries& s : spec.series) {
    const std::string c = s.color.empty() ? svg::kPalette[colour++ % svg::kPaletteSize] : s.color;
    std::vector<std::pair<double, double>> pts;
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) pts.emplace_back(ax.px(s.x[i]), ax.py(s.y[i]));
    }
    if (pts.empty()) continue;
    for (const auto& p : svg::densify(pts)) drawn.push_back(p);
    doc.polyline(pts, fmt::format("fill=\"none\" stroke=\"{}\" stroke-width=\"2.2\" "
                                  "stroke-linejoin=\"round\"{}",
                                  c, s.dashed ? " stroke-dasharray=\"7 4\"" : ""));
    if (pts.size() <= 60) {  // markers only while they stay distinct
      for (const auto& [x, y] : pts) doc.circle(x, y, 3, fmt::format("fill=\"{}\"", c));
    }
    legend.push_back({s.name, c, s.dashed, false});
  }
  svg::draw_legend(doc, ax, legend, drawn);
  return doc.str();
}

// ---- AHI scatter --------------------------------------------------------------------------------

std::string ahi_scatter(const std::vector<std::string>& names, const std::vector<double>& estimated,
                        const std::vector<double>& reference, const std::string& title,
                        const std::string& subtitle) {
  const size_t n = std::min({names.size(), estimated.size(), reference.size()});
  double vmax = 0.0;
  int points = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(estimated[i]) || !std::isfinite(reference[i])) continue;
    vmax = std::max({vmax, estimated[i], reference[i]});
    ++points;
  }
  // Both axes share one range from 0 so that the identity line is the diagonal; at least up to
  // the "severe" threshold, so the four severity bands are always visible.
  vmax = std::max(vmax * 1.05, kAhiSevere + 5.0);
  Document doc(560, 584);
  AxesSpec a;
  a.title = title;
  a.subtitle = subtitle;
  a.x_label = "reference AHI (events / h)";
  a.y_label = "estimated AHI (events / h)";
  a.x = a.y = svg::nice_range(0.0, vmax, 6);
  a.margin_left = 72;
  a.margin_right = 24;  // plotting area 464 x 464
  a.margin_top = 64;
  a.margin_bottom = 56;
  Axes ax = svg::draw_axes(doc, a);

  // Severity thresholds on both axes, labelled along the top edge.
  const double cuts[] = {kAhiMild, kAhiModerate, kAhiSevere};
  const char* band[] = {"normal", "mild", "moderate", "severe"};
  double prev = 0.0;
  for (int k = 0; k < 4; ++k) {
    const double next = k < 3 ? cuts[k] : ax.x1;
    if (k < 3) {
      doc.line(ax.px(cuts[k]), ax.top, ax.px(cuts[k]), ax.bottom(),
               "stroke=\"#999\" stroke-width=\"1\" stroke-dasharray=\"4 4\"");
      doc.line(ax.left, ax.py(cuts[k]), ax.right(), ax.py(cuts[k]),
               "stroke=\"#999\" stroke-width=\"1\" stroke-dasharray=\"4 4\"");
    }
    const double mid = ax.px((prev + next) / 2);
    if (ax.px(next) - ax.px(prev) > 40) {  // only where the band is wide enough to hold the word
      doc.text(mid, ax.top + 14, band[k], "font-size=\"11\" text-anchor=\"middle\" fill=\"#777\"");
    }
    prev = next;
  }
  doc.line(ax.px(0), ax.py(0), ax.px(ax.x1), ax.py(ax.x1), "stroke=\"#444\" stroke-width=\"1.5\"");

  std::vector<std::pair<double, double>> drawn;
  const char* same = svg::kPalette[2];  // green
  const char* diff = svg::kPalette[3];  // vermillion
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(estimated[i]) || !std::isfinite(reference[i])) continue;
    const bool agree = severity(estimated[i]) == severity(reference[i]);
    drawn.emplace_back(ax.px(reference[i]), ax.py(estimated[i]));
    doc.circle(ax.px(reference[i]), ax.py(estimated[i]), 5.5,
               fmt::format("fill=\"{}\" fill-opacity=\"0.75\" stroke=\"#fff\" stroke-width=\"1\"",
                           agree ? same : diff),
               fmt::format("{}: estimated {:.1f}, reference {:.1f}", names[i], estimated[i],
                           reference[i]));
  }
  if (points == 0) no_data_note(doc, ax, "no record with a reference AHI");
  svg::draw_legend(doc, ax,
                   {{"same severity class", same, false, true},
                    {"different severity class", diff, false, true},
                    {"identity (estimated = reference)", "#444", false, false},
                    {"severity thresholds 5, 15, 30", "#999", true, false}},
                   drawn, {svg::Corner::bottom_right, svg::Corner::top_left});
  return doc.str();
}

// ---- Confusion grid -----------------------------------------------------------------------------

std::string confusion_plot(const ConfusionMatrix& cm, const std::string& title,
                           const std::string& subtitle, const std::string& row_axis,
                           const std::string& column_axis) {
  const int K = std::max(cm.classes(), 1);
  const double cell = K <= 2 ? 120.0 : 92.0;
  size_t longest = 0;
  for (const auto& l : cm.labels) longest = std::max(longest, l.size());
  const double label_w = 14 + 7.5 * static_cast<double>(longest);  // row names, right-aligned
  const double left = 40 + label_w, top = 84;
  const double grid = cell * K;
  const double width = std::max(left + grid + 70, 420.0);
  Document doc(width, top + grid + 76);
  doc.rect(0, 0, doc.width(), doc.height(), "fill=\"#ffffff\"");
  doc.text(doc.width() / 2, 26, title,
           "font-size=\"17\" font-weight=\"bold\" text-anchor=\"middle\" fill=\"#222\"");
  if (!subtitle.empty()) {
    doc.text(doc.width() / 2, 46, subtitle, "font-size=\"13\" text-anchor=\"middle\" fill=\"#555\"");
  }
  doc.text(left + grid / 2, top - 12, column_axis,
           "font-size=\"14\" text-anchor=\"middle\" fill=\"#222\"");
  doc.vertical_text(18, top + grid / 2, row_axis,
                    "font-size=\"14\" text-anchor=\"middle\" dominant-baseline=\"middle\" fill=\"#222\"");
  doc.text(left + grid + 8, top - 12, "n", "font-size=\"12\" fill=\"#555\"");

  const bool shaped = static_cast<int>(cm.counts.size()) == cm.classes();
  for (int t = 0; t < cm.classes() && shaped; ++t) {
    int64_t row_total = 0;
    for (int64_t c : cm.counts[t]) row_total += c;
    doc.text(left - 8, top + cell * t + cell / 2 + 4, cm.labels[t],
             "font-size=\"13\" text-anchor=\"end\" fill=\"#222\"");
    doc.text(left + grid + 8, top + cell * t + cell / 2 + 4, fmt::format("{}", row_total),
             "font-size=\"12\" fill=\"#555\"");
    for (int p = 0; p < cm.classes() && p < static_cast<int>(cm.counts[t].size()); ++p) {
      const int64_t count = cm.counts[t][p];
      const double frac = row_total > 0 ? static_cast<double>(count) / row_total : 0.0;
      // white (#f7fbff) -> dark blue (#08519c), linear in RGB
      const int r = static_cast<int>(std::lround(0xf7 + (0x08 - 0xf7) * frac));
      const int g = static_cast<int>(std::lround(0xfb + (0x51 - 0xfb) * frac));
      const int b = static_cast<int>(std::lround(0xff + (0x9c - 0xff) * frac));
      const double x = left + cell * p, y = top + cell * t;
      doc.rect(x, y, cell, cell,
               fmt::format("fill=\"#{:02x}{:02x}{:02x}\" stroke=\"#ffffff\" stroke-width=\"2\"", r, g, b));
      const char* ink = frac > 0.5 ? "#ffffff" : "#222222";
      doc.text(x + cell / 2, y + cell / 2 + 2, fmt::format("{}", count),
               fmt::format("font-size=\"{}\" font-weight=\"bold\" text-anchor=\"middle\" fill=\"{}\"",
                           K <= 2 ? 22 : 18, ink));
      if (row_total > 0) {
        doc.text(x + cell / 2, y + cell / 2 + 20, fmt::format("{:.0f}%", 100.0 * frac),
                 fmt::format("font-size=\"12\" text-anchor=\"middle\" fill=\"{}\"", ink));
      }
    }
  }
  for (int p = 0; p < cm.classes(); ++p) {
    doc.text(left + cell * p + cell / 2, top + grid + 20, cm.labels[p],
             "font-size=\"13\" text-anchor=\"middle\" fill=\"#222\"");
  }
  doc.rect(left, top, grid, grid, "fill=\"none\" stroke=\"#444\" stroke-width=\"1\"");
  doc.text(left + grid / 2, top + grid + 46,
           "colour and %: share of the reference class (row)",
           "font-size=\"11\" text-anchor=\"middle\" fill=\"#777\"");
  if (cm.total() == 0) {
    doc.text(left + grid / 2, top + grid / 2, "no data", "font-size=\"15\" text-anchor=\"middle\" fill=\"#888\"");
  }
  return doc.str();
}

// ---- ROC ----------------------------------------------------------------------------------------

std::vector<RocPoint> thin_roc(const std::vector<RocPoint>& curve, double min_step) {
  if (curve.size() <= 2) return curve;
  std::vector<RocPoint> out{curve.front()};
  for (size_t i = 1; i + 1 < curve.size(); ++i) {
    const RocPoint& last = out.back();
    if (std::abs(curve[i].fpr - last.fpr) + std::abs(curve[i].tpr - last.tpr) >= min_step) {
      out.push_back(curve[i]);
    }
  }
  out.push_back(curve.back());
  return out;
}

std::string roc_plot(const std::vector<RocSeries>& series, const std::string& title,
                     const std::string& subtitle) {
  Document doc(560, 584);
  AxesSpec a;
  a.title = title;
  a.subtitle = subtitle;
  a.x_label = "false-positive rate (1 - specificity)";
  a.y_label = "true-positive rate (sensitivity)";
  a.x = a.y = svg::nice_range(0.0, 1.0, 5);
  Axes ax = svg::draw_axes(doc, a);
  doc.line(ax.px(0), ax.py(0), ax.px(1), ax.py(1),
           "stroke=\"#999\" stroke-width=\"1.2\" stroke-dasharray=\"5 5\"");

  std::vector<LegendEntry> legend;
  std::vector<std::pair<double, double>> drawn;
  bool any = false;
  for (size_t k = 0; k < series.size(); ++k) {
    const RocSeries& s = series[k];
    const char* c = svg::kPalette[k % svg::kPaletteSize];
    std::string label =
        std::isfinite(s.auc) ? fmt::format("{} (AUC = {:.3f})", s.name, s.auc)
                             : fmt::format("{} (AUC undefined: one class only)", s.name);
    if (!s.curve.empty()) {
      std::vector<std::pair<double, double>> pts;
      for (const RocPoint& p : thin_roc(s.curve)) pts.emplace_back(ax.px(p.fpr), ax.py(p.tpr));
      for (const auto& p : svg::densify(pts)) drawn.push_back(p);
      doc.polyline(pts, fmt::format("fill=\"none\" stroke=\"{}\" stroke-width=\"2.4\" "
                                    "stroke-linejoin=\"round\"", c));
      any = true;
    }
    legend.push_back({label, c, false, false});
    if (std::isfinite(s.op_fpr) && std::isfinite(s.op_tpr)) {
      doc.circle(ax.px(s.op_fpr), ax.py(s.op_tpr), 5.5,
                 fmt::format("fill=\"#ffffff\" stroke=\"{}\" stroke-width=\"2.5\"", c),
                 fmt::format("{}: sensitivity {}, specificity {}", s.op_label.empty() ? s.name : s.op_label,
                             fmt_or_na(s.op_tpr, "{:.3f}"), fmt_or_na(1.0 - s.op_fpr, "{:.3f}")));
      if (!s.op_label.empty()) legend.push_back({s.name + ": " + s.op_label, c, false, false, true});
    }
  }
  legend.push_back({"chance (AUC = 0.5)", "#999", true, false});
  if (!any) no_data_note(doc, ax, "no ROC curve: the labels hold one class only");
  svg::draw_legend(doc, ax, legend, drawn, {svg::Corner::bottom_right, svg::Corner::top_left});
  return doc.str();
}

}  // namespace sleepnet::screening::plots
