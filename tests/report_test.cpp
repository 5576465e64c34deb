// report_test.cpp: the report directory (files, metrics.json contents, CSVs, well-formed SVG,
// self-contained index.html), NaN and empty cases, atomic writes, and the SVG helpers.
#include "apps/screening/report.h"

#include <unistd.h>  // getpid

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "apps/screening/plots.h"
#include "apps/screening/svg.h"
#include "tensor/tensor.h"

namespace sleepnet::screening {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- Helpers ------------------------------------------------------------------------------------

// A fresh directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ = fs::temp_directory_path() /
            ("sleepnet_report_test_" + std::to_string(::getpid()) + "_" + tag);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << p;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count_of(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

// True when a whole word of `s` is nan/inf/infinity in any case (not "dominant" or "information").
bool has_nonfinite_word(const std::string& s) {
  std::string word;
  for (size_t i = 0; i <= s.size(); ++i) {
    const char c = i < s.size() ? s[i] : ' ';
    if (std::isalpha(static_cast<unsigned char>(c))) {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      continue;
    }
    if (word == "nan" || word == "inf" || word == "infinity") return true;
    word.clear();
  }
  return false;
}

// A strict little XML well-formedness check (enough for what svg.cpp writes): one root element,
// every tag closed in order, attributes quoted, '&' only in the five named entities or &#...;,
// no '<' in text or attribute values. Returns "" when well-formed, else what went wrong and where.
std::string xml_problem(const std::string& s) {
  size_t i = 0;
  auto entity_ok = [&](size_t at) {
    static const char* names[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (const char* e : names)
      if (s.compare(at, std::strlen(e), e) == 0) return true;
    if (s.compare(at, 2, "&#") == 0) {
      size_t j = at + 2;
      while (j < s.size() && std::isalnum(static_cast<unsigned char>(s[j]))) ++j;
      return j < s.size() && s[j] == ';' && j > at + 2;
    }
    return false;
  };
  if (s.compare(0, 5, "<?xml") == 0) {
    i = s.find("?>");
    if (i == std::string::npos) return "unterminated XML declaration";
    i += 2;
  }
  std::vector<std::string> stack;
  int roots = 0;
  while (i < s.size()) {
    const size_t lt = s.find('<', i);
    for (size_t k = i; k < std::min(lt, s.size()); ++k) {
      if (s[k] == '&' && !entity_ok(k)) return "bad entity in text at " + std::to_string(k);
      if (s[k] == '>') return "stray '>' in text at " + std::to_string(k);
    }
    const std::string text = s.substr(i, std::min(lt, s.size()) - i);
    if (stack.empty() && text.find_first_not_of(" \n\r\t") != std::string::npos) {
      return "text outside the root element at " + std::to_string(i);
    }
    if (lt == std::string::npos) break;
    size_t j = lt + 1;
    if (s.compare(j, 3, "!--") == 0) {
      const size_t end = s.find("-->", j);
      if (end == std::string::npos) return "unterminated comment";
      i = end + 3;
      continue;
    }
    const bool closing = j < s.size() && s[j] == '/';
    if (closing) ++j;
    const size_t name_start = j;
    while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '-' ||
                            s[j] == ':' || s[j] == '_'))
      ++j;
    const std::string name = s.substr(name_start, j - name_start);
    if (name.empty()) return "empty tag name at " + std::to_string(lt);
    if (closing) {
      while (j < s.size() && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      if (j >= s.size() || s[j] != '>') return "bad closing tag </" + name;
      if (stack.empty() || stack.back() != name) {
        return "</" + name + "> closes <" + (stack.empty() ? std::string("nothing") : stack.back()) + ">";
      }
      stack.pop_back();
      i = j + 1;
      continue;
    }
    // attributes
    for (;;) {
      while (j < s.size() && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      if (j >= s.size()) return "unterminated tag <" + name;
      if (s[j] == '>' || s.compare(j, 2, "/>") == 0) break;
      const size_t a = j;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '-' ||
                              s[j] == ':' || s[j] == '_'))
        ++j;
      if (j == a) return "bad attribute in <" + name + " at " + std::to_string(j);
      if (j >= s.size() || s[j] != '=') return "attribute without value in <" + name;
      ++j;
      if (j >= s.size() || (s[j] != '"' && s[j] != '\'')) return "unquoted attribute in <" + name;
      const char q = s[j++];
      const size_t end = s.find(q, j);
      if (end == std::string::npos) return "unterminated attribute in <" + name;
      for (size_t k = j; k < end; ++k) {
        if (s[k] == '<') return "'<' in attribute of <" + name;
        if (s[k] == '&' && !entity_ok(k)) return "bad entity in attribute of <" + name;
      }
      j = end + 1;
    }
    const bool self_closing = s[j] == '/';
    if (stack.empty()) ++roots;
    if (!self_closing) stack.push_back(name);
    i = j + (self_closing ? 2 : 1);
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return std::to_string(roots) + " root elements";
  return "";
}

// Tiny, hand-checkable data:
//   windows: the 4-window ROC example of metrics_test (AUC 0.75) in record r1, plus 2 unlabelled;
//   records: the 6 records of metrics_test's Records.ByHand (r = 0.9590806713189183, AHI >= 5
//            accuracy 4/6, severity accuracy 0.5), one record without a reference;
//   sleep:   the 6 epochs of Sleep.AccuracyKappaByHand (accuracy 5/6, kappa 2/3);
//   training: 3 epochs, no validation accuracy in epoch 1.
ReportData small_data() {
  ReportData d;
  d.title = "test report";
  d.config = {{"epochs", 3}, {"seed", 42}, {"note", "a <b> & \"c\""}};
  d.calibration = LinearFit{0.9, 1.5};
  const double p[] = {0.1, 0.4, 0.35, 0.8};
  const int t[] = {0, 0, 1, 1};
  for (int i = 0; i < 4; ++i) {
    d.windows.push_back({"r1", 60.0 * i, 60.0, p[i], t[i], kNaN});
  }
  d.windows.push_back({"r,2", 0.0, 60.0, 0.7, -1, 0.9});  // unlabelled; a comma in the name
  d.windows.push_back({"r,2", 60.0, 60.0, 0.2, -1, 0.3});
  const double est[] = {3, 7, 20, 40, 12, 4}, ref[] = {2, 4, 25, 35, 16, 6};
  for (int i = 0; i < 6; ++i) {
    RecordRow r;
    r.record = "rec" + std::to_string(i);
    r.fold = i % 2;
    r.hours = 7.0;
    r.hours_in_bed = 8.0;
    r.apnea_windows = static_cast<int64_t>(est[i] * 7);
    r.raw_ahi = est[i];
    r.estimated_ahi = est[i];
    r.reference_ahi = ref[i];
    d.records.push_back(r);
  }
  RecordRow unknown;
  unknown.record = "new01";
  unknown.hours = 6.5;
  unknown.apnea_windows = 13;
  unknown.raw_ahi = 2.0;
  unknown.estimated_ahi = 3.3;
  d.records.push_back(unknown);
  const double ps[] = {0.9, 0.8, 0.2, 0.6, 0.1, 0.7};
  const int ts[] = {1, 1, 0, 0, 0, 1};
  for (int i = 0; i < 6; ++i) d.sleep_epochs.push_back({"slp01", 30.0 * i, 30.0, ps[i], ts[i]});
  TrainingLog log{"apnea fold 1", {}};
  log.epochs.push_back({1, 0.25, 0.22, kNaN, kNaN, 1e-3, 12.5});
  log.epochs.push_back({2, 0.15, 0.14, 0.81, 0.88, 8e-4, 12.1});
  log.epochs.push_back({3, 0.10, 0.16, 0.84, 0.90, 2e-4, 12.3});
  d.training.push_back(log);
  return d;
}

const char* kExpectedFiles[] = {
    "metrics.json",          "windows.csv",         "sleep_epochs.csv",   "records.csv",
    "training_apnea_fold_1.csv", "loss_apnea_fold_1.svg", "val_apnea_fold_1.svg", "ahi_scatter.svg",
    "confusion_ahi5.svg",    "confusion_ahi15.svg", "confusion_severity.svg", "confusion_windows.svg",
    "confusion_sleep.svg",   "roc.svg",             "index.html"};

// ---- The report directory -----------------------------------------------------------------------

TEST(Report, WritesEveryFileAndNoTemporaries) {
  TempDir dir("files");
  const fs::path out = dir.path() / "nested" / "report";  // created on demand
  write_report(small_data(), out.string());
  for (const char* f : kExpectedFiles) {
    EXPECT_TRUE(fs::is_regular_file(out / f)) << f;
    EXPECT_GT(fs::file_size(out / f), 0u) << f;
  }
  for (const auto& e : fs::directory_iterator(out)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  }
}

TEST(Report, MetricsJsonHoldsTheHandComputedNumbers) {
  TempDir dir("json");
  const ReportData d = small_data();
  write_report(d, dir.str());
  const json j = json::parse(read_text(dir.path() / "metrics.json"));

  for (const char* key : {"format", "title", "config", "thresholds", "calibration", "counts", "windows",
                          "records", "records_in_bed", "sleep", "targets", "per_record", "training"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["format"], "sleepnet-report-1");
  EXPECT_EQ(j["config"]["seed"], 42);
  EXPECT_EQ(j["config"]["note"], "a <b> & \"c\"");
  EXPECT_DOUBLE_EQ(j["calibration"]["slope"].get<double>(), 0.9);
  EXPECT_EQ(j["counts"]["windows"], 6);
  EXPECT_EQ(j["counts"]["labelled_windows"], 4);
  EXPECT_EQ(j["counts"]["records"], 7);
  EXPECT_EQ(j["counts"]["records_with_reference"], 6);

  // windows: 0.1 0.4 0.35 0.8 vs 0 0 1 1 at 0.5 -> tp 1 (0.8), fn 1 (0.35), tn 2
  const json& w = j["windows"];
  EXPECT_DOUBLE_EQ(w["roc_auc"].get<double>(), 0.75);
  EXPECT_EQ(w["tp"], 1);
  EXPECT_EQ(w["fn"], 1);
  EXPECT_EQ(w["tn"], 2);
  EXPECT_EQ(w["fp"], 0);
  EXPECT_DOUBLE_EQ(w["accuracy"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(w["sensitivity"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(w["precision"].get<double>(), 1.0);
  EXPECT_EQ(w["confusion"]["counts"], json::parse("[[2, 0], [1, 1]]"));
  EXPECT_EQ(w["roc"]["fpr"].size(), 5u);
  EXPECT_TRUE(w["roc"]["threshold"][0].is_null());  // +inf
  EXPECT_DOUBLE_EQ(w["roc"]["tpr"][3].get<double>(), 1.0);

  const json& r = j["records"];
  EXPECT_EQ(r["n"], 6);
  EXPECT_NEAR(r["pearson_r"].get<double>(), 0.9590806713189183, 1e-13);
  EXPECT_DOUBLE_EQ(r["mae"].get<double>(), 20.0 / 6.0);
  EXPECT_DOUBLE_EQ(r["ahi5"]["accuracy"].get<double>(), 4.0 / 6.0);
  EXPECT_EQ(r["ahi5"]["confusion"]["counts"], json::parse("[[1, 1], [1, 3]]"));
  EXPECT_DOUBLE_EQ(r["ahi15"]["specificity"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(r["severity"]["accuracy"].get<double>(), 0.5);
  EXPECT_EQ(r["severity"]["confusion"]["labels"][2], "moderate");
  EXPECT_TRUE(j["records_in_bed"].is_null());  // no record has estimated_ahi_in_bed

  const json& s = j["sleep"];
  EXPECT_DOUBLE_EQ(s["accuracy"].get<double>(), 5.0 / 6.0);
  EXPECT_NEAR(s["kappa"].get<double>(), 2.0 / 3.0, 1e-15);
  EXPECT_EQ(s["confusion"]["labels"][0], "wake");

  ASSERT_EQ(j["per_record"].size(), 7u);
  EXPECT_EQ(j["per_record"][3]["severity"], "severe");
  EXPECT_EQ(j["per_record"][6]["record"], "new01");
  EXPECT_TRUE(j["per_record"][6]["reference_ahi"].is_null());
  EXPECT_TRUE(j["per_record"][6]["reference_severity"].is_null());
  EXPECT_TRUE(j["per_record"][6]["fold"].is_null());
  EXPECT_EQ(j["training"][0]["name"], "apnea fold 1");
  EXPECT_TRUE(j["training"][0]["epochs"][0]["val_accuracy"].is_null());
  EXPECT_DOUBLE_EQ(j["training"][0]["epochs"][2]["val_loss"].get<double>(), 0.16);
}

TEST(Report, SleepModelComparisonWhenInBedEstimatesExist) {
  ReportData d = small_data();
  for (RecordRow& r : d.records) r.estimated_ahi_in_bed = r.estimated_ahi * 0.5;
  d.records.back().estimated_ahi_in_bed = kNaN;  // the unreferenced record does not matter
  const ReportMetrics m = compute_metrics(d);
  ASSERT_TRUE(m.records_in_bed.has_value());
  // halving every estimate leaves r unchanged; MAE: |1.5-2| |3.5-4| |10-25| |20-35| |6-16| |2-6|
  EXPECT_NEAR(m.records_in_bed->pearson_r, 0.9590806713189183, 1e-13);
  EXPECT_DOUBLE_EQ(m.records_in_bed->mae, (0.5 + 0.5 + 15 + 15 + 10 + 4) / 6.0);
  const std::string table = summary_table(d, m);
  EXPECT_NE(table.find("no sleep model"), std::string::npos);
  // MAE 3.33 with the sleep model vs 7.50 per hour in bed
  EXPECT_NE(table.find("sleep model: AHI MAE 3.33 vs 7.50 events/h without it (-4.17)"), std::string::npos)
      << table;
  EXPECT_NE(table.find("the sleep model lowers the AHI error"), std::string::npos) << table;
}

// Without a sleep model (no window has p_sleep) the estimate per hour in bed is the estimate: no
// "no sleep model" rows, no comparison sentence, no second AHI column.
TEST(Report, NoSleepModelComparisonWithoutASleepModel) {
  ReportData d = small_data();
  for (RecordRow& r : d.records) r.estimated_ahi_in_bed = r.estimated_ahi;
  for (WindowRow& w : d.windows) w.p_sleep = kNaN;
  const ReportMetrics m = compute_metrics(d);
  EXPECT_FALSE(m.records_in_bed.has_value());
  const std::string table = summary_table(d, m);
  EXPECT_EQ(table.find("no sleep model"), std::string::npos) << table;
  EXPECT_EQ(table.find("sleep model:"), std::string::npos) << table;
  TempDir dir("nosleep");
  write_report(d, dir.str());
  EXPECT_EQ(read_text(dir.path() / "index.html").find("AHI without sleep model"), std::string::npos);
  // With one window scored by a sleep model, the comparison is back.
  d.windows.front().p_sleep = 0.9;
  EXPECT_TRUE(compute_metrics(d).records_in_bed.has_value());
}

TEST(Report, CsvFiles) {
  TempDir dir("csv");
  write_report(small_data(), dir.str());
  const std::string w = read_text(dir.path() / "windows.csv");
  EXPECT_EQ(w.substr(0, w.find('\n')),
            "record,start_s,duration_s,p_apnea,apnea,p_sleep,sleep,reference_apnea");
  EXPECT_EQ(count_of(w, "\n"), 7u);  // header + 6 windows
  EXPECT_NE(w.find("\nr1,120,60,0.35,0,,,1\n"), std::string::npos) << w;
  EXPECT_NE(w.find("\n\"r,2\",0,60,0.7,1,0.9,1,\n"), std::string::npos) << w;  // quoted name

  const std::string r = read_text(dir.path() / "records.csv");
  // starts with `predict`'s records.csv columns
  EXPECT_EQ(r.rfind("record,hours,apnea_windows,estimated_ahi,severity,", 0), 0u);
  EXPECT_NE(r.find("\nrec3,7,280,40,severe,8,40,,35,severe,1\n"), std::string::npos) << r;
  EXPECT_NE(r.find("\nnew01,6.5,13,3.3,normal,,2,,,,\n"), std::string::npos) << r;

  const std::string s = read_text(dir.path() / "sleep_epochs.csv");
  EXPECT_NE(s.find("\nslp01,90,30,0.6,1,0\n"), std::string::npos) << s;

  const std::string t = read_text(dir.path() / "training_apnea_fold_1.csv");
  EXPECT_EQ(t, "epoch,train_loss,val_loss,val_accuracy,val_auc,learning_rate,seconds\n"
               "1,0.25,0.22,,,0.001,12.500\n"
               "2,0.15,0.14,0.81,0.88,0.0008,12.100\n"
               "3,0.1,0.16,0.84,0.9,0.0002,12.300\n");
}

TEST(Report, SvgFilesAreWellFormedAndHoldTheirElements) {
  TempDir dir("svg");
  write_report(small_data(), dir.str());
  for (const auto& e : fs::directory_iterator(dir.path())) {
    if (e.path().extension() != ".svg") continue;
    const std::string s = read_text(e.path());
    EXPECT_EQ(xml_problem(s), "") << e.path();
    EXPECT_NE(s.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos) << e.path();
    EXPECT_NE(s.find("viewBox="), std::string::npos) << e.path();
    EXPECT_FALSE(has_nonfinite_word(s)) << e.path();
  }
  const std::string roc = read_text(dir.path() / "roc.svg");
  EXPECT_EQ(count_of(roc, "<polyline"), 2u);  // apnea and sleep curves
  EXPECT_NE(roc.find("apnea per window (AUC = 0.750)"), std::string::npos);
  EXPECT_NE(roc.find("sleep per epoch (AUC = 1.000)"), std::string::npos);
  EXPECT_NE(roc.find("chance (AUC = 0.5)"), std::string::npos);
  EXPECT_NE(roc.find("false-positive rate"), std::string::npos);

  const std::string scatter = read_text(dir.path() / "ahi_scatter.svg");
  EXPECT_EQ(count_of(scatter, "<title>"), 6u);  // one hoverable point per record with a reference
  EXPECT_NE(scatter.find("<title>rec3: estimated 40.0, reference 35.0</title>"), std::string::npos);
  EXPECT_NE(scatter.find("identity (estimated = reference)"), std::string::npos);
  EXPECT_NE(scatter.find("Pearson r = 0.959"), std::string::npos);

  const std::string sev = read_text(dir.path() / "confusion_severity.svg");
  EXPECT_EQ(count_of(sev, "<rect"), 1u + 16u + 1u);  // background, 16 cells, frame
  for (const char* name : {"normal", "mild", "moderate", "severe"})
    EXPECT_NE(sev.find(std::string(">") + name + "<"), std::string::npos) << name;

  const std::string loss = read_text(dir.path() / "loss_apnea_fold_1.svg");
  EXPECT_EQ(count_of(loss, "<polyline"), 2u);
  EXPECT_NE(loss.find("lowest val loss: epoch 2"), std::string::npos);  // lowest val_loss 0.14
  EXPECT_NE(loss.find(">epoch<"), std::string::npos);
}

TEST(Report, IndexHtmlIsSelfContainedAndShowsEverything) {
  TempDir dir("html");
  write_report(small_data(), dir.str());
  const std::string h = read_text(dir.path() / "index.html");
  EXPECT_EQ(h.rfind("<!DOCTYPE html>", 0), 0u);
  size_t svg_files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) svg_files += e.path().extension() == ".svg";
  EXPECT_EQ(svg_files, 9u);  // loss, val, scatter, 5 confusion grids, roc
  EXPECT_EQ(count_of(h, "<svg "), svg_files);  // every plot inline
  EXPECT_EQ(count_of(h, "</svg>"), svg_files);
  EXPECT_EQ(h.find("<?xml"), std::string::npos);  // declarations stripped for inline use
  // nothing fetched from elsewhere
  EXPECT_EQ(h.find("<script"), std::string::npos);
  EXPECT_EQ(h.find("<link"), std::string::npos);
  EXPECT_EQ(h.find("src="), std::string::npos);
  EXPECT_EQ(count_of(h, "http"), count_of(h, "http://www.w3.org/2000/svg"));
  // summary, records and config (escaped)
  EXPECT_NE(h.find("ROC-AUC"), std::string::npos);
  EXPECT_NE(h.find("<td>new01</td>"), std::string::npos);
  EXPECT_NE(h.find("a &lt;b&gt; &amp; \\&quot;c\\&quot;"), std::string::npos);
  EXPECT_NE(h.find("href=\"metrics.json\""), std::string::npos);
  EXPECT_EQ(count_of(h, "<table>"), count_of(h, "</table>"));
  EXPECT_EQ(count_of(h, "<figure>"), svg_files);
}

TEST(Report, UndefinedMetricsBecomeNullAndPlotsStayValid) {
  // Windows of one class (AUC undefined), one record (Pearson undefined), sleep epochs all sleep
  // and predicted sleep (kappa undefined), a training log without validation.
  ReportData d;
  for (int i = 0; i < 5; ++i) d.windows.push_back({"x", 60.0 * i, 60.0, 0.1 * i, 0, kNaN});
  RecordRow r;
  r.record = "x";
  r.estimated_ahi = 12.0;
  r.reference_ahi = 9.0;
  d.records.push_back(r);
  for (int i = 0; i < 4; ++i) d.sleep_epochs.push_back({"y", 30.0 * i, 30.0, 0.9, 1});
  d.training.push_back({"apnea", {{1, 0.3, kNaN, kNaN, kNaN, kNaN, kNaN}}});

  TempDir dir("nan");
  write_report(d, dir.str());
  const std::string text = read_text(dir.path() / "metrics.json");
  EXPECT_FALSE(has_nonfinite_word(text)) << text;
  const json j = json::parse(text);  // throws on invalid JSON
  EXPECT_TRUE(j["windows"]["roc_auc"].is_null());
  EXPECT_TRUE(j["windows"]["sensitivity"].is_null());
  EXPECT_TRUE(j["windows"]["roc"]["fpr"].empty());
  EXPECT_TRUE(j["records"]["pearson_r"].is_null());
  EXPECT_DOUBLE_EQ(j["records"]["mae"].get<double>(), 3.0);
  EXPECT_TRUE(j["sleep"]["kappa"].is_null());
  EXPECT_TRUE(j["sleep"]["roc_auc"].is_null());
  EXPECT_TRUE(j["training"][0]["epochs"][0]["val_loss"].is_null());

  for (const auto& e : fs::directory_iterator(dir.path())) {
    if (e.path().extension() != ".svg") continue;
    const std::string s = read_text(e.path());
    EXPECT_EQ(xml_problem(s), "") << e.path();
    EXPECT_FALSE(has_nonfinite_word(s)) << e.path();
  }
  const std::string roc = read_text(dir.path() / "roc.svg");
  EXPECT_NE(roc.find("AUC undefined"), std::string::npos);
  EXPECT_EQ(count_of(roc, "<polyline"), 0u);
  const std::string summary = summary_table(d);
  EXPECT_NE(summary.find("undefined"), std::string::npos) << summary;  // AUC has a target
  EXPECT_NE(summary.find("n/a"), std::string::npos) << summary;
}

TEST(Report, EmptyDataStillWritesJsonAndHtml) {
  TempDir dir("empty");
  const ReportMetrics m = write_report(ReportData{}, dir.str());
  EXPECT_FALSE(m.windows || m.records || m.sleep);
  const json j = json::parse(read_text(dir.path() / "metrics.json"));
  EXPECT_TRUE(j["windows"].is_null());
  EXPECT_TRUE(j["records"].is_null());
  EXPECT_TRUE(j["sleep"].is_null());
  EXPECT_TRUE(j["calibration"].is_null());
  EXPECT_TRUE(j["per_record"].empty());
  EXPECT_TRUE(fs::exists(dir.path() / "index.html"));
  EXPECT_FALSE(fs::exists(dir.path() / "roc.svg"));
  EXPECT_NE(summary_table(ReportData{}).find("nothing to score"), std::string::npos);
}

TEST(Report, BadRowsAreClearErrors) {
  ReportData d = small_data();
  d.windows[2].p_apnea = kNaN;
  try {
    compute_metrics(d);
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("windows[2] (record r1, 120 s): p_apnea = nan"),
              std::string::npos) << e.what();
  }
  d = small_data();
  d.records[1].estimated_ahi = kNaN;
  EXPECT_THROW(compute_metrics(d), Error);
  d = small_data();
  d.sleep_epochs[0].reference_sleep = 2;
  EXPECT_THROW(compute_metrics(d), Error);
  d = small_data();
  d.apnea_threshold = kNaN;
  EXPECT_THROW(compute_metrics(d), Error);
  // an unlabelled window may lack a probability (it is only listed)
  d = small_data();
  d.windows[4].p_apnea = kNaN;
  EXPECT_NO_THROW(compute_metrics(d));

  TempDir dir("bad");
  std::ofstream(dir.path() / "a_file") << "x";
  try {
    write_report(small_data(), (dir.path() / "a_file").string());
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create directory"), std::string::npos) << e.what();
  }
}

TEST(Report, SummaryTable) {
  const std::string s = summary_table(small_data());
  EXPECT_NE(s.find("test report"), std::string::npos);
  EXPECT_NE(s.find("7 records (6 with reference AHI), 6 windows (4 labelled)"), std::string::npos) << s;
  EXPECT_NE(s.find("estimated AHI = 0.9 x raw AHI + 1.5"), std::string::npos) << s;
  // window accuracy 0.75 misses 0.88; sleep accuracy 0.833 meets 0.80; Pearson 0.959 meets 0.90
  EXPECT_NE(s.find("0.750  >= 0.88   MISSED"), std::string::npos) << s;
  EXPECT_NE(s.find("0.833  >= 0.80   met"), std::string::npos) << s;
  EXPECT_NE(s.find("0.959  >= 0.90   met"), std::string::npos) << s;
  EXPECT_NE(s.find("Cohen's kappa"), std::string::npos);
  EXPECT_NE(s.find("0.667"), std::string::npos);
}

TEST(Report, WriteFileAtomicReplacesWholeFiles) {
  TempDir dir("atomic");
  const fs::path p = dir.path() / "x.txt";
  write_file_atomic(p, "first version, long");
  write_file_atomic(p, "second");
  EXPECT_EQ(read_text(p), "second");
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
  EXPECT_THROW(write_file_atomic(dir.path() / "missing_dir" / "y.txt", "z"), Error);
}

TEST(Report, FileSlug) {
  EXPECT_EQ(file_slug("apnea fold 3"), "apnea_fold_3");
  EXPECT_EQ(file_slug("Sleep/Wake (UCDDB)"), "sleep_wake_ucddb");
  EXPECT_EQ(file_slug("../.."), "unnamed");
  EXPECT_EQ(file_slug("a-b_c"), "a-b_c");
}

// ---- SVG helpers --------------------------------------------------------------------------------

TEST(Svg, NiceRangesAndTickLabels) {
  svg::NiceRange r = svg::nice_range(0.0, 97.0, 5);
  EXPECT_DOUBLE_EQ(r.lo, 0.0);
  EXPECT_DOUBLE_EQ(r.hi, 100.0);
  EXPECT_DOUBLE_EQ(r.step, 20.0);
  EXPECT_EQ(r.ticks().size(), 6u);
  r = svg::nice_range(0.083, 0.231, 5);  // raw step 0.0296 -> 0.05
  EXPECT_DOUBLE_EQ(r.step, 0.05);
  EXPECT_NEAR(r.lo, 0.05, 1e-12);
  EXPECT_NEAR(r.hi, 0.25, 1e-12);
  EXPECT_EQ(svg::tick_label(r.ticks()[1], r.step), "0.10");
  r = svg::nice_range(1.0, 3.0, 8, 1.0);  // epochs: never a fractional step
  EXPECT_DOUBLE_EQ(r.step, 1.0);
  r = svg::nice_range(5.0, 5.0, 5);  // constant data still gets an axis around it
  EXPECT_LT(r.lo, 5.0);
  EXPECT_GT(r.hi, 5.0);
  r = svg::nice_range(0.3, 0.3, 5);  // ... and a positive loss no negative axis
  EXPECT_GE(r.lo, 0.0);
  EXPECT_GT(r.hi, 0.3);
  r = svg::nice_range(NAN, 1.0, 5);
  EXPECT_TRUE(std::isfinite(r.lo) && std::isfinite(r.hi) && r.hi > r.lo);
  EXPECT_EQ(svg::tick_label(15.0, 5.0), "15");
  EXPECT_EQ(svg::tick_label(0.6000000000000001, 0.2), "0.6");
  EXPECT_EQ(svg::tick_label(-1e-17, 0.2), "0.0");
}

TEST(Svg, DocumentEscapesAndDropsNonFinite) {
  svg::Document doc(100, 50);
  doc.text(10, 10, "a < b & \"c\"");
  doc.line(0, 0, NAN, 1, "stroke=\"#000\"");
  doc.circle(INFINITY, 1, 2, "fill=\"#000\"", "tip <x>");
  doc.polyline({{0, 0}, {NAN, 3}, {5, 5}}, "fill=\"none\"");
  EXPECT_EQ(doc.dropped(), 3);  // the line, the circle, one polyline point
  const std::string s = doc.str();
  EXPECT_EQ(xml_problem(s), "");
  EXPECT_NE(s.find("a &lt; b &amp; &quot;c&quot;"), std::string::npos);
  EXPECT_NE(s.find("points=\"0.00,0.00 5.00,5.00\""), std::string::npos);
  EXPECT_EQ(count_of(s, "<line"), 0u);
  EXPECT_EQ(count_of(s, "<circle"), 0u);
}

TEST(Svg, CheckersCatchBrokenDocuments) {
  EXPECT_TRUE(has_nonfinite_word("<circle cx=\"nan\"/>"));
  EXPECT_TRUE(has_nonfinite_word("{\"a\": NaN}"));
  EXPECT_TRUE(has_nonfinite_word("x=-inf"));
  EXPECT_FALSE(has_nonfinite_word("dominant-baseline information"));
  // The checker itself must be able to fail, or the tests above prove nothing.
  EXPECT_EQ(xml_problem("<svg><g></g></svg>"), "");
  EXPECT_NE(xml_problem("<svg><g></svg>"), "");
  EXPECT_NE(xml_problem("<svg x=1></svg>"), "");
  EXPECT_NE(xml_problem("<svg>a & b</svg>"), "");
  EXPECT_NE(xml_problem("<svg></svg><svg></svg>"), "");
  EXPECT_NE(xml_problem("<svg><text x=\"a<b\">t</text></svg>"), "");
}

TEST(Plots, ThinRocKeepsEndsAndShape) {
  std::vector<RocPoint> curve;
  for (int i = 0; i <= 10000; ++i) curve.push_back({1.0 - i / 10000.0, i / 10000.0, std::sqrt(i / 10000.0)});
  const std::vector<RocPoint> thin = plots::thin_roc(curve, 0.002);
  EXPECT_LT(thin.size(), 1100u);
  EXPECT_GT(thin.size(), 300u);
  EXPECT_DOUBLE_EQ(thin.front().fpr, 0.0);
  EXPECT_DOUBLE_EQ(thin.back().fpr, 1.0);
  EXPECT_DOUBLE_EQ(thin.back().tpr, 1.0);
  // same area to within the thinning error
  EXPECT_NEAR(roc_area_trapezoid(thin), roc_area_trapezoid(curve), 1e-3);
}

TEST(Plots, EmptyInputsGiveValidSvg) {
  EXPECT_EQ(xml_problem(plots::line_plot({})), "");
  EXPECT_NE(plots::line_plot({}).find("no data"), std::string::npos);
  EXPECT_EQ(xml_problem(plots::ahi_scatter({}, {}, {}, "t", "")), "");
  EXPECT_EQ(xml_problem(plots::roc_plot({}, "t")), "");
  ConfusionMatrix empty{{"a", "b"}, {{0, 0}, {0, 0}}};
  const std::string c = plots::confusion_plot(empty, "t & u", "");
  EXPECT_EQ(xml_problem(c), "");
  EXPECT_NE(c.find("no data"), std::string::npos);
}

}  // namespace
}  // namespace sleepnet::screening
