// report.cpp: metrics from the rows, metrics.json, CSVs, SVG plots, index.html, terminal summary.
// See report.h for the directory layout.
#include "apps/screening/report.h"

#include <unistd.h>  // getpid

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "apps/screening/plots.h"
#include "apps/screening/svg.h"
#include "tensor/tensor.h"  // sleepnet::Error

namespace sleepnet::screening {
namespace {

using nlohmann::json;

constexpr const char* kReportFormat = "sleepnet-report-1";

// The issue's targets (issue 5, "Targets"): shown beside the measured values, never used to compute.
struct Target {
  const char* key;
  double at_least;
};
constexpr Target kTargets[] = {{"window_accuracy", 0.88}, {"window_auc", 0.94},
                               {"ahi5_accuracy", 0.95},   {"pearson_r", 0.90},
                               {"sleep_accuracy", 0.80}};

std::optional<double> target_for(std::string_view key) {
  for (const Target& t : kTargets)
    if (key == t.key) return t.at_least;
  return std::nullopt;
}

// ---- Small formatting helpers -------------------------------------------------------------------

json jnum(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

std::string fixed(double v, int decimals) {
  return std::isfinite(v) ? fmt::format("{:.{}f}", v, decimals) : std::string("n/a");
}

std::string csv_num(double v, const char* spec = "{:.6g}") {
  return std::isfinite(v) ? fmt::format(fmt::runtime(spec), v) : std::string();
}

// RFC 4180: quote a field holding a comma, quote or line break; double the quotes inside.
std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string severity_or_empty(double ahi) {
  return std::isfinite(ahi) ? severity_name(severity(ahi)) : "";
}

// "1 record", "3 records".
std::string count_noun(int64_t n, const char* noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

// Thousands separated by a thin space: 17010 -> "17 010".
std::string grouped(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ' ';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

// The SVG document without its XML declaration, for inline use in HTML.
std::string inline_svg(const std::string& doc) {
  const size_t at = doc.find("<svg");
  return at == std::string::npos ? doc : doc.substr(at);
}

// ---- JSON sections ------------------------------------------------------------------------------

json binary_json(const BinaryMetrics& m) {
  return {{"n", m.n()},
          {"tp", m.tp},
          {"fp", m.fp},
          {"tn", m.tn},
          {"fn", m.fn},
          {"accuracy", jnum(m.accuracy())},
          {"sensitivity", jnum(m.sensitivity())},
          {"specificity", jnum(m.specificity())},
          {"precision", jnum(m.precision())},
          {"f1", jnum(m.f1())}};
}

json confusion_json(const ConfusionMatrix& cm) {
  return {{"labels", cm.labels},
          {"counts", cm.counts},
          {"rows", "reference"},
          {"columns", "predicted"},
          {"accuracy", jnum(cm.accuracy())}};
}

ConfusionMatrix window_confusion(const BinaryMetrics& m) {
  ConfusionMatrix cm;
  cm.labels = {"normal", "apnea"};
  cm.counts = {{m.tn, m.fp}, {m.fn, m.tp}};
  return cm;
}

json roc_json(const std::vector<RocPoint>& curve) {
  json fpr = json::array(), tpr = json::array(), thr = json::array();
  for (const RocPoint& p : plots::thin_roc(curve)) {
    fpr.push_back(p.fpr);
    tpr.push_back(p.tpr);
    thr.push_back(jnum(p.threshold));  // the first threshold is +inf -> null
  }
  return {{"fpr", fpr}, {"tpr", tpr}, {"threshold", thr}};
}

json diagnosis_json(const Diagnosis& d) {
  json j = binary_json(d.decision);
  j["cutoff"] = d.cutoff;
  j["confusion"] = confusion_json(d.confusion);
  return j;
}

json records_json(const RecordMetrics& m) {
  return {{"n", m.n},
          {"pearson_r", jnum(m.pearson_r)},
          {"mae", jnum(m.mae)},
          {"mean_error", jnum(m.mean_error)},
          {"ahi5", diagnosis_json(m.ahi5)},
          {"ahi15", diagnosis_json(m.ahi15)},
          {"severity", {{"accuracy", jnum(m.severity.accuracy())},
                        {"confusion", confusion_json(m.severity)}}}};
}

// ---- Files --------------------------------------------------------------------------------------

struct Plot {
  std::string file;     // "roc.svg"
  std::string caption;
  std::string svg;
};

std::string loss_subtitle(const TrainingLog& log, int* best_epoch) {
  double best = INFINITY;
  *best_epoch = -1;
  for (const EpochLog& e : log.epochs) {
    if (std::isfinite(e.val_loss) && e.val_loss < best) {
      best = e.val_loss;
      *best_epoch = e.epoch;
    }
  }
  std::string s = fmt::format("{} epoch{}", log.epochs.size(), log.epochs.size() == 1 ? "" : "s");
  if (*best_epoch >= 0) s += fmt::format("; lowest validation loss {:.4g} at epoch {}", best, *best_epoch);
  return s;
}

std::vector<Plot> make_plots(const ReportData& data, const ReportMetrics& m) {
  std::vector<Plot> out;
  for (const TrainingLog& log : data.training) {
    if (log.epochs.empty()) continue;
    const std::string slug = file_slug(log.name);
    plots::LinePlotSpec spec;
    spec.title = fmt::format("Loss per epoch: {}", log.name);
    int best_epoch = -1;
    spec.subtitle = loss_subtitle(log, &best_epoch);
    spec.x_label = "epoch";
    spec.y_label = "loss";
    plots::LineSeries train{"training loss", {}, {}, false, svg::kPalette[0]};
    plots::LineSeries val{"validation loss", {}, {}, true, svg::kPalette[1]};
    plots::LineSeries acc{"validation accuracy", {}, {}, false, svg::kPalette[2]};
    plots::LineSeries auc{"validation ROC-AUC", {}, {}, true, svg::kPalette[4]};
    for (const EpochLog& e : log.epochs) {
      train.x.push_back(e.epoch);
      train.y.push_back(e.train_loss);
      val.x.push_back(e.epoch);
      val.y.push_back(e.val_loss);
      acc.x.push_back(e.epoch);
      acc.y.push_back(e.val_accuracy);
      auc.x.push_back(e.epoch);
      auc.y.push_back(e.val_auc);
    }
    spec.series = {train, val};
    if (best_epoch >= 0) {
      spec.marker_x = best_epoch;
      spec.marker_label = fmt::format("lowest val loss: epoch {}", best_epoch);  // (the trainer keeps the best val AUC)
    }
    out.push_back({"loss_" + slug + ".svg", "Training and validation loss per epoch (" + log.name + ")",
                   plots::line_plot(spec)});
    auto any_finite = [](const std::vector<double>& v) {
      for (double x : v)
        if (std::isfinite(x)) return true;
      return false;
    };
    if (any_finite(acc.y) || any_finite(auc.y)) {
      plots::LinePlotSpec vs = spec;
      vs.title = fmt::format("Validation metrics per epoch: {}", log.name);
      vs.y_label = "accuracy / ROC-AUC";
      vs.series = {acc, auc};
      out.push_back({"val_" + slug + ".svg", "Validation accuracy and ROC-AUC per epoch (" + log.name + ")",
                     plots::line_plot(vs)});
    }
  }

  if (m.records) {
    std::vector<std::string> names;
    std::vector<double> est, ref;
    for (const RecordRow& r : data.records) {
      if (!std::isfinite(r.reference_ahi)) continue;
      names.push_back(r.record);
      est.push_back(r.estimated_ahi);
      ref.push_back(r.reference_ahi);
    }
    out.push_back({"ahi_scatter.svg", "Estimated vs reference AHI per record",
                   plots::ahi_scatter(names, est, ref, "Estimated vs reference AHI",
                                      fmt::format("{}; Pearson r = {}, MAE = {} events/h",
                                                  count_noun(m.records->n, "record"), fixed(m.records->pearson_r, 3),
                                                  fixed(m.records->mae, 2)))});
    const RecordMetrics& r = *m.records;
    out.push_back({"confusion_ahi5.svg", "Per-record diagnosis at AHI >= 5",
                   plots::confusion_plot(r.ahi5.confusion, "Diagnosis per record: AHI >= 5",
                                         fmt::format("accuracy {}, sensitivity {}, specificity {}",
                                                     fixed(r.ahi5.decision.accuracy(), 3),
                                                     fixed(r.ahi5.decision.sensitivity(), 3),
                                                     fixed(r.ahi5.decision.specificity(), 3)))});
    out.push_back({"confusion_ahi15.svg", "Per-record diagnosis at AHI >= 15",
                   plots::confusion_plot(r.ahi15.confusion, "Diagnosis per record: AHI >= 15",
                                         fmt::format("accuracy {}, sensitivity {}, specificity {}",
                                                     fixed(r.ahi15.decision.accuracy(), 3),
                                                     fixed(r.ahi15.decision.sensitivity(), 3),
                                                     fixed(r.ahi15.decision.specificity(), 3)))});
    out.push_back({"confusion_severity.svg", "Severity class per record",
                   plots::confusion_plot(r.severity, "Severity per record (4 classes)",
                                         fmt::format("accuracy {} ({})",
                                                     fixed(r.severity.accuracy(), 3), count_noun(r.n, "record")))});
  }

  if (m.windows) {
    const WindowMetrics& w = *m.windows;
    out.push_back({"confusion_windows.svg", "Apnea detection per window",
                   plots::confusion_plot(window_confusion(w.decision),
                                         fmt::format("Apnea per window (p >= {:.2f})", w.threshold),
                                         fmt::format("accuracy {}, sensitivity {}, specificity {}",
                                                     fixed(w.decision.accuracy(), 3),
                                                     fixed(w.decision.sensitivity(), 3),
                                                     fixed(w.decision.specificity(), 3)))});
  }
  if (m.sleep) {
    const SleepMetrics& s = *m.sleep;
    out.push_back({"confusion_sleep.svg", "Sleep / wake per epoch",
                   plots::confusion_plot(s.confusion,
                                         fmt::format("Sleep / wake per epoch (p >= {:.2f})", s.threshold),
                                         fmt::format("accuracy {}, Cohen's kappa {}",
                                                     fixed(s.accuracy, 3), fixed(s.kappa, 3)))});
  }
  if (m.windows || m.sleep) {
    std::vector<plots::RocSeries> curves;
    if (m.windows) {
      const WindowMetrics& w = *m.windows;
      curves.push_back({"apnea per window", w.roc, w.roc_auc, 1.0 - w.decision.specificity(),
                        w.decision.sensitivity(), fmt::format("p >= {:.2f}", w.threshold)});
    }
    if (m.sleep) {
      const SleepMetrics& s = *m.sleep;
      std::vector<double> p;
      std::vector<int> t;
      for (const SleepEpochRow& e : data.sleep_epochs) {
        if (e.reference_sleep < 0) continue;
        p.push_back(e.p_sleep);
        t.push_back(e.reference_sleep);
      }
      curves.push_back({"sleep per epoch", roc_curve(p, t), s.roc_auc,
                        1.0 - s.decision.specificity(), s.decision.sensitivity(),
                        fmt::format("p >= {:.2f}", s.threshold)});
    }
    out.push_back({"roc.svg", "ROC curves from the predicted probabilities",
                   plots::roc_plot(curves, "ROC curve", "from the predicted probabilities")});
  }
  return out;
}

// ---- Summary rows (shared by the terminal table and index.html) ---------------------------------

struct SummaryRow {
  std::string level, metric, value, target;
  int status = 0;  // 0 no target, 1 met, -1 missed, -2 undefined
};

void add_row(std::vector<SummaryRow>& rows, std::string level, std::string metric, double v,
             int decimals, std::string_view target_key = {}) {
  SummaryRow r{std::move(level), std::move(metric), fixed(v, decimals), "", 0};
  if (auto t = target_for(target_key)) {
    r.target = fmt::format(">= {:.2f}", *t);
    r.status = !std::isfinite(v) ? -2 : (v >= *t ? 1 : -1);
  }
  rows.push_back(std::move(r));
}

std::vector<SummaryRow> summary_rows(const ReportMetrics& m) {
  std::vector<SummaryRow> rows;
  if (m.windows) {
    const WindowMetrics& w = *m.windows;
    add_row(rows, "window", fmt::format("accuracy (p >= {:.2f})", w.threshold), w.decision.accuracy(),
            3, "window_accuracy");
    add_row(rows, "window", "sensitivity", w.decision.sensitivity(), 3);
    add_row(rows, "window", "specificity", w.decision.specificity(), 3);
    add_row(rows, "window", "precision", w.decision.precision(), 3);
    add_row(rows, "window", "F1", w.decision.f1(), 3);
    add_row(rows, "window", "ROC-AUC", w.roc_auc, 3, "window_auc");
  }
  if (m.records) {
    const RecordMetrics& r = *m.records;
    add_row(rows, "record", "AHI Pearson r", r.pearson_r, 3, "pearson_r");
    add_row(rows, "record", "AHI mean absolute error (/h)", r.mae, 2);
    add_row(rows, "record", "AHI mean error, bias (/h)", r.mean_error, 2);
    add_row(rows, "record", "AHI >= 5 accuracy", r.ahi5.decision.accuracy(), 3, "ahi5_accuracy");
    add_row(rows, "record", "AHI >= 5 sensitivity", r.ahi5.decision.sensitivity(), 3);
    add_row(rows, "record", "AHI >= 5 specificity", r.ahi5.decision.specificity(), 3);
    add_row(rows, "record", "AHI >= 15 accuracy", r.ahi15.decision.accuracy(), 3);
    add_row(rows, "record", "AHI >= 15 sensitivity", r.ahi15.decision.sensitivity(), 3);
    add_row(rows, "record", "AHI >= 15 specificity", r.ahi15.decision.specificity(), 3);
    add_row(rows, "record", "severity (4 classes) accuracy", r.severity.accuracy(), 3);
  }
  if (m.records_in_bed) {
    const RecordMetrics& r = *m.records_in_bed;
    add_row(rows, "no sleep model", "AHI Pearson r", r.pearson_r, 3);
    add_row(rows, "no sleep model", "AHI mean absolute error (/h)", r.mae, 2);
    add_row(rows, "no sleep model", "AHI >= 5 accuracy", r.ahi5.decision.accuracy(), 3);
    add_row(rows, "no sleep model", "severity accuracy", r.severity.accuracy(), 3);
  }
  if (m.sleep) {
    add_row(rows, "sleep epoch", fmt::format("accuracy (p >= {:.2f})", m.sleep->threshold),
            m.sleep->accuracy, 3, "sleep_accuracy");
    add_row(rows, "sleep epoch", "Cohen's kappa", m.sleep->kappa, 3);
    add_row(rows, "sleep epoch", "ROC-AUC", m.sleep->roc_auc, 3);
  }
  return rows;
}

const char* status_word(int status) {
  switch (status) {
    case 1: return "met";
    case -1: return "MISSED";
    case -2: return "undefined";
    default: return "";
  }
}

std::string counts_line(const ReportData& data, const ReportMetrics& m) {
  int64_t with_ref = 0;
  for (const RecordRow& r : data.records) with_ref += std::isfinite(r.reference_ahi) ? 1 : 0;
  std::string s = fmt::format("{} ({} with reference AHI), {} windows ({} labelled)",
                              count_noun(static_cast<int64_t>(data.records.size()), "record"), with_ref, grouped(m.windows_total),
                              grouped(m.windows ? m.windows->decision.n() : 0));
  if (!data.sleep_epochs.empty()) {
    s += fmt::format(", {} sleep epochs ({} labelled)", grouped(static_cast<int64_t>(data.sleep_epochs.size())),
                     grouped(m.sleep ? m.sleep->decision.n() : 0));
  }
  return s;
}

std::string calibration_line(const ReportData& data) {
  if (!data.calibration && !data.calibration_note.empty()) return "calibration: " + data.calibration_note;
  if (!data.calibration) return "calibration: none (estimated AHI = raw AHI)";
  return fmt::format("calibration (fitted on training records): estimated AHI = {:.4g} x raw AHI {} {:.4g}",
                     data.calibration->slope, data.calibration->intercept < 0 ? "-" : "+",
                     std::abs(data.calibration->intercept));
}

// One sentence on whether counting per hour of predicted sleep (the sleep model) beats counting per
// hour in bed, from the same records; empty when the comparison was not computed.
std::string sleep_model_line(const ReportMetrics& m) {
  if (!m.records || !m.records_in_bed) return "";
  const RecordMetrics& with = *m.records;
  const RecordMetrics& without = *m.records_in_bed;
  const double d = with.mae - without.mae;
  const char* verdict = !std::isfinite(d) ? "undetermined"
                        : d < 0          ? "the sleep model lowers the AHI error"
                        : d > 0          ? "the sleep model raises the AHI error"
                                         : "the sleep model makes no difference to the AHI error";
  return fmt::format(
      "sleep model: AHI MAE {} vs {} events/h without it ({}{}), Pearson r {} vs {}, AHI >= 5 accuracy "
      "{} vs {}: {}",
      fixed(with.mae, 2), fixed(without.mae, 2), d > 0 ? "+" : "", fixed(d, 2), fixed(with.pearson_r, 3),
      fixed(without.pearson_r, 3), fixed(with.ahi5.decision.accuracy(), 3),
      fixed(without.ahi5.decision.accuracy(), 3), verdict);
}

// ---- index.html ---------------------------------------------------------------------------------

constexpr const char* kCss = R"(
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #222; background: #f4f5f7;
       margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 34px 0 12px; border-bottom: 2px solid #d8dbe0; padding-bottom: 6px; }
p.meta { color: #555; margin: 4px 0; font-size: 14px; }
table { border-collapse: collapse; background: #fff; font-size: 14px; box-shadow: 0 1px 2px #0001; }
th, td { padding: 6px 12px; border-bottom: 1px solid #e5e7eb; text-align: left; }
th { background: #eef0f3; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.mismatch td { background: #fff4f0; }
.met { color: #0a7d32; font-weight: 600; }
.missed { color: #c2410c; font-weight: 600; }
.undefined { color: #777; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 18px; }
figure { margin: 0; background: #fff; padding: 10px; box-shadow: 0 1px 2px #0002; border-radius: 4px; }
figure svg { display: block; margin: 0 auto; max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #444; text-align: center; margin-top: 6px; }
pre { background: #fff; padding: 12px; font-size: 12px; overflow-x: auto; box-shadow: 0 1px 2px #0001; }
a { color: #0061a0; }
.note { color: #666; font-size: 14px; }
)";

std::string html_summary_table(const std::vector<SummaryRow>& rows) {
  std::string h = "<table>\n<tr><th>level</th><th>metric</th><th>value</th><th>target</th><th></th></tr>\n";
  for (const SummaryRow& r : rows) {
    const char* cls = r.status == 1 ? "met" : r.status == -1 ? "missed" : r.status == -2 ? "undefined" : "";
    h += fmt::format("<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"{}\">{}</td></tr>\n",
                     svg::escape(r.level), svg::escape(r.metric), svg::escape(r.value),
                     svg::escape(r.target), cls, status_word(r.status));
  }
  return h + "</table>\n";
}

// Windows scored by a sleep model (p_sleep), so that per hour of sleep and per hour in bed differ.
bool sleep_model_scored(const ReportData& data) {
  return std::any_of(data.windows.begin(), data.windows.end(), [](const WindowRow& w) { return std::isfinite(w.p_sleep); });
}

std::string html_records_table(const std::vector<RecordRow>& rows, bool sleep_model) {
  bool folds = false, in_bed = false;
  for (const RecordRow& r : rows) {
    folds |= r.fold >= 0;
    in_bed |= sleep_model && std::isfinite(r.estimated_ahi_in_bed);
  }
  std::string h = "<table>\n<tr><th>record</th>";
  if (folds) h += "<th>fold</th>";
  h += "<th>hours</th><th>apnea windows</th><th>raw AHI</th><th>estimated AHI</th><th>severity</th>";
  if (in_bed) h += "<th>AHI without sleep model</th>";
  h += "<th>reference AHI</th><th>reference severity</th></tr>\n";
  for (const RecordRow& r : rows) {
    const std::string sev = severity_or_empty(r.estimated_ahi);
    const std::string ref_sev = severity_or_empty(r.reference_ahi);
    const bool mismatch = !sev.empty() && !ref_sev.empty() && sev != ref_sev;
    h += fmt::format("<tr{}><td>{}</td>", mismatch ? " class=\"mismatch\"" : "", svg::escape(r.record));
    if (folds) h += fmt::format("<td class=\"num\">{}</td>", r.fold >= 0 ? std::to_string(r.fold) : "");
    h += fmt::format("<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
                     "<td class=\"num\">{}</td><td>{}</td>",
                     fixed(r.hours, 2), r.apnea_windows, fixed(r.raw_ahi, 1), fixed(r.estimated_ahi, 1), sev);
    if (in_bed) h += fmt::format("<td class=\"num\">{}</td>", fixed(r.estimated_ahi_in_bed, 1));
    h += fmt::format("<td class=\"num\">{}</td><td>{}</td></tr>\n", fixed(r.reference_ahi, 1), ref_sev);
  }
  return h + "</table>\n";
}

std::string index_html(const ReportData& data, const ReportMetrics& m, const std::vector<Plot>& plots,
                       const std::vector<std::string>& data_files) {
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += fmt::format("<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n",
                   svg::escape(data.title), kCss);
  h += fmt::format("<h1>{}</h1>\n", svg::escape(data.title));
  h += fmt::format("<p class=\"meta\">{}</p>\n", svg::escape(counts_line(data, m)));
  h += fmt::format("<p class=\"meta\">{}</p>\n", svg::escape(calibration_line(data)));
  if (const std::string line = sleep_model_line(m); !line.empty()) {
    h += fmt::format("<p class=\"meta\"><b>{}</b></p>\n", svg::escape(line));
  }

  h += "<h2>Summary</h2>\n";
  const std::vector<SummaryRow> rows = summary_rows(m);
  if (rows.empty()) {
    h += "<p class=\"note\">No labelled windows, epochs or records: nothing to score.</p>\n";
  } else {
    h += html_summary_table(rows);
    h += "<p class=\"note\">Targets are those of the project (issue 5). Per-window ROC-AUC is computed "
         "from the probabilities. \"no sleep model\" rows: the same AHI pipeline counting events per "
         "hour in bed instead of per hour of predicted sleep.</p>\n";
  }

  h += "<h2>Plots</h2>\n";
  if (plots.empty()) {
    h += "<p class=\"note\">No plots: no labelled data and no training log.</p>\n";
  } else {
    h += "<div class=\"plots\">\n";
    for (const Plot& p : plots) {
      h += fmt::format("<figure>\n{}<figcaption>{} (<a href=\"{}\">{}</a>)</figcaption>\n</figure>\n",
                       inline_svg(p.svg), svg::escape(p.caption), svg::escape(p.file), svg::escape(p.file));
    }
    h += "</div>\n";
  }

  h += "<h2>Records</h2>\n";
  if (data.records.empty()) {
    h += "<p class=\"note\">No records.</p>\n";
  } else {
    h += html_records_table(data.records, sleep_model_scored(data));
    h += "<p class=\"note\">Rows shaded where the estimated severity class differs from the reference. "
         "hours = the AHI's denominator (hours of predicted sleep when a sleep model ran).</p>\n";
  }

  h += "<h2>Files</h2>\n<p>";
  for (size_t i = 0; i < data_files.size(); ++i) {
    h += fmt::format("{}<a href=\"{}\">{}</a>", i ? " &middot; " : "", svg::escape(data_files[i]),
                     svg::escape(data_files[i]));
  }
  h += "</p>\n";
  h += "<h2>Configuration</h2>\n";
  h += fmt::format("<pre>{}</pre>\n", svg::escape(data.config.dump(2)));
  h += "</main>\n</body>\n</html>\n";
  return h;
}

}  // namespace

// ---- Public API ---------------------------------------------------------------------------------

ReportMetrics compute_metrics(const ReportData& data) {
  if (!std::isfinite(data.apnea_threshold) || !std::isfinite(data.sleep_threshold)) {
    throw Error(fmt::format("report: thresholds must be finite (apnea {}, sleep {})",
                            data.apnea_threshold, data.sleep_threshold));
  }
  ReportMetrics m;
  m.windows_total = static_cast<int64_t>(data.windows.size());

  std::vector<double> p;
  std::vector<int> t;
  for (size_t i = 0; i < data.windows.size(); ++i) {
    const WindowRow& w = data.windows[i];
    if (w.reference_apnea == -1) continue;
    if (w.reference_apnea != 0 && w.reference_apnea != 1) {
      throw Error(fmt::format("report: windows[{}] (record {}, {} s): reference_apnea = {}; expected "
                              "0, 1 or -1 (unknown)", i, w.record, w.start_s, w.reference_apnea));
    }
    if (!std::isfinite(w.p_apnea)) {
      throw Error(fmt::format("report: windows[{}] (record {}, {} s): p_apnea = {}; expected a "
                              "probability", i, w.record, w.start_s, w.p_apnea));
    }
    p.push_back(w.p_apnea);
    t.push_back(w.reference_apnea);
  }
  if (!p.empty()) m.windows = window_metrics(p, t, data.apnea_threshold);

  std::vector<double> est, ref, in_bed;
  bool all_in_bed = true;
  for (size_t i = 0; i < data.records.size(); ++i) {
    const RecordRow& r = data.records[i];
    if (!std::isfinite(r.reference_ahi)) continue;
    if (!std::isfinite(r.estimated_ahi)) {
      throw Error(fmt::format("report: records[{}] ({}): estimated_ahi = {} but reference_ahi = {}; "
                              "expected an estimate for every record with a reference",
                              i, r.record, r.estimated_ahi, r.reference_ahi));
    }
    est.push_back(r.estimated_ahi);
    ref.push_back(r.reference_ahi);
    in_bed.push_back(r.estimated_ahi_in_bed);
    all_in_bed &= std::isfinite(r.estimated_ahi_in_bed);
  }
  // The comparison per hour in bed only means something when a sleep model scored the windows
  // (without one, both estimates are the same number).
  if (!est.empty()) {
    m.records = record_metrics(est, ref);
    if (all_in_bed && sleep_model_scored(data)) m.records_in_bed = record_metrics(in_bed, ref);
  }

  p.clear();
  t.clear();
  for (size_t i = 0; i < data.sleep_epochs.size(); ++i) {
    const SleepEpochRow& e = data.sleep_epochs[i];
    if (e.reference_sleep == -1) continue;
    if (e.reference_sleep != 0 && e.reference_sleep != 1) {
      throw Error(fmt::format("report: sleep_epochs[{}] (record {}, {} s): reference_sleep = {}; "
                              "expected 0 (wake), 1 (sleep) or -1 (unknown)",
                              i, e.record, e.start_s, e.reference_sleep));
    }
    if (!std::isfinite(e.p_sleep)) {
      throw Error(fmt::format("report: sleep_epochs[{}] (record {}, {} s): p_sleep = {}; expected a "
                              "probability", i, e.record, e.start_s, e.p_sleep));
    }
    p.push_back(e.p_sleep);
    t.push_back(e.reference_sleep);
  }
  if (!p.empty()) m.sleep = sleep_metrics(p, t, data.sleep_threshold);
  return m;
}

json report_json(const ReportData& data, const ReportMetrics& m) {
  json j;
  j["format"] = kReportFormat;
  j["title"] = data.title;
  j["config"] = data.config;
  j["thresholds"] = {{"apnea", data.apnea_threshold}, {"sleep", data.sleep_threshold}};
  j["calibration"] = data.calibration
                         ? json{{"slope", jnum(data.calibration->slope)},
                                {"intercept", jnum(data.calibration->intercept)}}
                         : json(nullptr);
  int64_t with_ref = 0;
  for (const RecordRow& r : data.records) with_ref += std::isfinite(r.reference_ahi) ? 1 : 0;
  j["counts"] = {{"windows", m.windows_total},
                 {"labelled_windows", m.windows ? m.windows->decision.n() : 0},
                 {"records", data.records.size()},
                 {"records_with_reference", with_ref},
                 {"sleep_epochs", data.sleep_epochs.size()},
                 {"labelled_sleep_epochs", m.sleep ? m.sleep->decision.n() : 0}};

  if (m.windows) {
    const WindowMetrics& w = *m.windows;
    json jw = binary_json(w.decision);
    jw["threshold"] = w.threshold;
    jw["roc_auc"] = jnum(w.roc_auc);
    jw["confusion"] = confusion_json(window_confusion(w.decision));
    jw["roc"] = roc_json(w.roc);
    j["windows"] = jw;
  } else {
    j["windows"] = nullptr;
  }
  j["records"] = m.records ? records_json(*m.records) : json(nullptr);
  j["records_in_bed"] = m.records_in_bed ? records_json(*m.records_in_bed) : json(nullptr);
  if (m.sleep) {
    const SleepMetrics& s = *m.sleep;
    json js = binary_json(s.decision);
    js["threshold"] = s.threshold;
    js["kappa"] = jnum(s.kappa);
    js["roc_auc"] = jnum(s.roc_auc);
    js["confusion"] = confusion_json(s.confusion);
    j["sleep"] = js;
  } else {
    j["sleep"] = nullptr;
  }

  json targets = json::object();
  for (const Target& t : kTargets) targets[t.key] = t.at_least;
  j["targets"] = targets;

  json per_record = json::array();
  for (const RecordRow& r : data.records) {
    per_record.push_back({{"record", r.record},
                          {"fold", r.fold >= 0 ? json(r.fold) : json(nullptr)},
                          {"hours", jnum(r.hours)},
                          {"hours_in_bed", jnum(r.hours_in_bed)},
                          {"apnea_windows", r.apnea_windows},
                          {"raw_ahi", jnum(r.raw_ahi)},
                          {"estimated_ahi", jnum(r.estimated_ahi)},
                          {"severity", std::isfinite(r.estimated_ahi)
                                           ? json(severity_name(severity(r.estimated_ahi)))
                                           : json(nullptr)},
                          {"estimated_ahi_in_bed", jnum(r.estimated_ahi_in_bed)},
                          {"reference_ahi", jnum(r.reference_ahi)},
                          {"reference_severity", std::isfinite(r.reference_ahi)
                                                     ? json(severity_name(severity(r.reference_ahi)))
                                                     : json(nullptr)}});
  }
  j["per_record"] = per_record;

  json training = json::array();
  for (const TrainingLog& log : data.training) {
    json epochs = json::array();
    for (const EpochLog& e : log.epochs) {
      epochs.push_back({{"epoch", e.epoch},
                        {"train_loss", jnum(e.train_loss)},
                        {"val_loss", jnum(e.val_loss)},
                        {"val_accuracy", jnum(e.val_accuracy)},
                        {"val_auc", jnum(e.val_auc)},
                        {"learning_rate", jnum(e.learning_rate)},
                        {"seconds", jnum(e.seconds)}});
    }
    training.push_back({{"name", log.name}, {"epochs", epochs}});
  }
  j["training"] = training;
  return j;
}

std::string summary_table(const ReportData& data) { return summary_table(data, compute_metrics(data)); }

std::string summary_table(const ReportData& data, const ReportMetrics& m) {
  std::string s = fmt::format("{}\n  {}\n  {}\n", data.title, counts_line(data, m), calibration_line(data));
  if (const std::string line = sleep_model_line(m); !line.empty()) s += "  " + line + "\n";
  s += "\n";
  const std::vector<SummaryRow> rows = summary_rows(m);
  if (rows.empty()) return s + "  no labelled windows, epochs or records: nothing to score\n";
  size_t wl = 5, wm = 6, wv = 5;
  for (const SummaryRow& r : rows) {
    wl = std::max(wl, r.level.size());
    wm = std::max(wm, r.metric.size());
    wv = std::max(wv, r.value.size());
  }
  s += fmt::format("  {:<{}}  {:<{}}  {:>{}}  {}\n", "level", wl, "metric", wm, "value", wv, "target");
  s += fmt::format("  {}  {}  {}  {}\n", std::string(wl, '-'), std::string(wm, '-'), std::string(wv, '-'),
                   std::string(16, '-'));
  std::string prev_level;
  for (const SummaryRow& r : rows) {
    std::string tail = r.target.empty() ? "" : fmt::format("{:<8}  {}", r.target, status_word(r.status));
    s += fmt::format("  {:<{}}  {:<{}}  {:>{}}  {}", r.level == prev_level ? "" : r.level, wl, r.metric,
                     wm, r.value, wv, tail);
    while (!s.empty() && s.back() == ' ') s.pop_back();
    s += '\n';
    prev_level = r.level;
  }
  return s;
}

std::string windows_csv(const std::vector<WindowRow>& rows, double apnea_threshold,
                        double sleep_threshold) {
  bool sleep = false, reference = false;
  for (const WindowRow& w : rows) {
    sleep |= std::isfinite(w.p_sleep);
    reference |= w.reference_apnea >= 0;
  }
  std::string s = "record,start_s,duration_s,p_apnea,apnea";
  if (sleep) s += ",p_sleep,sleep";
  if (reference) s += ",reference_apnea";
  s += '\n';
  for (const WindowRow& w : rows) {
    s += fmt::format("{},{},{},{},{}", csv_field(w.record), csv_num(w.start_s, "{:.10g}"),
                     csv_num(w.duration_s, "{:.10g}"), csv_num(w.p_apnea),
                     std::isfinite(w.p_apnea) ? (w.p_apnea >= apnea_threshold ? "1" : "0") : "");
    if (sleep) {
      s += fmt::format(",{},{}", csv_num(w.p_sleep),
                       std::isfinite(w.p_sleep) ? (w.p_sleep >= sleep_threshold ? "1" : "0") : "");
    }
    if (reference) s += w.reference_apnea >= 0 ? fmt::format(",{}", w.reference_apnea) : ",";
    s += '\n';
  }
  return s;
}

std::string sleep_epochs_csv(const std::vector<SleepEpochRow>& rows, double sleep_threshold) {
  std::string s = "record,start_s,duration_s,p_sleep,sleep,reference_sleep\n";
  for (const SleepEpochRow& e : rows) {
    s += fmt::format("{},{},{},{},{},{}\n", csv_field(e.record), csv_num(e.start_s, "{:.10g}"),
                     csv_num(e.duration_s, "{:.10g}"), csv_num(e.p_sleep),
                     std::isfinite(e.p_sleep) ? (e.p_sleep >= sleep_threshold ? "1" : "0") : "",
                     e.reference_sleep >= 0 ? std::to_string(e.reference_sleep) : "");
  }
  return s;
}

std::string records_csv(const std::vector<RecordRow>& rows) {
  std::string s =
      "record,hours,apnea_windows,estimated_ahi,severity,hours_in_bed,raw_ahi,estimated_ahi_in_bed,"
      "reference_ahi,reference_severity,fold\n";
  for (const RecordRow& r : rows) {
    s += fmt::format("{},{},{},{},{},{},{},{},{},{},{}\n", csv_field(r.record), csv_num(r.hours),
                     r.apnea_windows, csv_num(r.estimated_ahi), severity_or_empty(r.estimated_ahi),
                     csv_num(r.hours_in_bed), csv_num(r.raw_ahi), csv_num(r.estimated_ahi_in_bed),
                     csv_num(r.reference_ahi), severity_or_empty(r.reference_ahi),
                     r.fold >= 0 ? std::to_string(r.fold) : "");
  }
  return s;
}

std::string training_csv(const TrainingLog& log) {
  std::string s = "epoch,train_loss,val_loss,val_accuracy,val_auc,learning_rate,seconds\n";
  for (const EpochLog& e : log.epochs) {
    s += fmt::format("{},{},{},{},{},{},{}\n", e.epoch, csv_num(e.train_loss), csv_num(e.val_loss),
                     csv_num(e.val_accuracy), csv_num(e.val_auc), csv_num(e.learning_rate),
                     csv_num(e.seconds, "{:.3f}"));
  }
  return s;
}

std::string file_slug(std::string_view name) {
  std::string s;
  for (char c : name) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) {
      s += static_cast<char>(std::tolower(u));
    } else if (c == '-' || c == '_') {
      s += c;
    } else if (!s.empty() && s.back() != '_') {
      s += '_';
    }
  }
  while (!s.empty() && s.back() == '_') s.pop_back();
  return s.empty() ? "unnamed" : s;
}

void write_file_atomic(const std::filesystem::path& path, std::string_view content) {
  std::filesystem::path tmp = path;
  tmp += fmt::format(".tmp-{}", static_cast<long>(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      throw Error(fmt::format("report: cannot open {} for writing: {}", tmp.string(), std::strerror(errno)));
    }
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.flush();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw Error(fmt::format("report: writing {} failed (disk full?)", tmp.string()));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw Error(fmt::format("report: cannot rename {} to {}: {}", tmp.string(), path.string(), ec.message()));
  }
}

ReportMetrics write_report(const ReportData& data, const std::string& dir) {
  namespace fs = std::filesystem;
  const ReportMetrics m = compute_metrics(data);
  const fs::path root(dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec || !fs::is_directory(root)) {
    throw Error(fmt::format("report: cannot create directory {}: {}", dir,
                            ec ? ec.message() : "a file of that name exists"));
  }

  std::vector<std::string> data_files{"metrics.json"};
  if (!data.windows.empty()) {
    write_file_atomic(root / "windows.csv", windows_csv(data.windows, data.apnea_threshold, data.sleep_threshold));
    data_files.push_back("windows.csv");
  }
  if (!data.sleep_epochs.empty()) {
    write_file_atomic(root / "sleep_epochs.csv", sleep_epochs_csv(data.sleep_epochs, data.sleep_threshold));
    data_files.push_back("sleep_epochs.csv");
  }
  if (!data.records.empty()) {
    write_file_atomic(root / "records.csv", records_csv(data.records));
    data_files.push_back("records.csv");
  }
  for (const TrainingLog& log : data.training) {
    const std::string name = "training_" + file_slug(log.name) + ".csv";
    write_file_atomic(root / name, training_csv(log));
    data_files.push_back(name);
  }

  const std::vector<Plot> plots = make_plots(data, m);
  for (const Plot& p : plots) write_file_atomic(root / p.file, p.svg);

  write_file_atomic(root / "metrics.json", report_json(data, m).dump(2) + "\n");
  write_file_atomic(root / "index.html", index_html(data, m, plots, data_files));
  return m;
}

}  // namespace sleepnet::screening
