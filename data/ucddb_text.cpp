// ucddb_text.cpp: UCDDB stage files, respiratory event lists and the subject table (see ucddb_text.h).
//
// The respiratory event list is a fixed-width text table whose cells may be empty, so splitting a
// line on spaces alone can shift later cells into the wrong column. The parser therefore reads the
// column positions from the header line (the line holding "Time" and "Type") and gives every cell of
// a data line to the column whose header span it overlaps most (or, overlapping none, lies nearest
// to). Data lines are the lines that start with a clock time; titles, rulers, unit lines and
// footers are skipped. Without a header line, cells are taken in the documented order.
#include "data/ucddb_text.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "data/reader_util.h"
#include "tensor/tensor.h"

namespace sleepnet::data {

using detail::quote;

namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return r;
}

[[noreturn]] void fail(const std::string& src, size_t line, const std::string& what) {
  throw Error(src + ":" + std::to_string(line) + ": " + what);
}

}  // namespace

std::optional<double> parse_clock_seconds(std::string_view text) {
  std::string_view t = detail::trim(text);
  int parts[3] = {0, 0, 0};
  int n = 0;
  size_t i = 0;
  while (true) {
    size_t j = i;
    while (j < t.size() && t[j] >= '0' && t[j] <= '9') ++j;
    if (j == i || j - i > 2 || n >= 3) return std::nullopt;
    parts[n++] = std::stoi(std::string(t.substr(i, j - i)));
    if (j == t.size()) break;
    if (t[j] != ':') return std::nullopt;
    i = j + 1;
  }
  if (n < 2) return std::nullopt;
  if (parts[0] > 23 || parts[1] > 59 || parts[2] > 59) return std::nullopt;
  return parts[0] * 3600.0 + parts[1] * 60.0 + parts[2];
}

// ---------------------------------------------------------------------------------------------
// Stages

std::string_view ucddb_stage_name(UcddbStage stage) {
  switch (stage) {
    case UcddbStage::Wake: return "W";
    case UcddbStage::REM: return "R";
    case UcddbStage::Stage1: return "S1";
    case UcddbStage::Stage2: return "S2";
    case UcddbStage::Stage3: return "S3";
    case UcddbStage::Stage4: return "S4";
    case UcddbStage::Artefact: return "artefact";
    case UcddbStage::Indeterminate: return "indeterminate";
    case UcddbStage::Unknown8: return "unknown8";
  }
  return "?";
}

std::vector<UcddbStage> parse_ucddb_stages(std::string_view text, const std::string& source) {
  std::vector<UcddbStage> out;
  auto lines = detail::split_lines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view t = detail::trim(lines[i]);
    if (t.empty()) continue;
    auto v = detail::parse_int(t);
    if (!v || *v < 0 || *v > 8)
      fail(source, i + 1, "stage code " + quote(t) + " is not an integer 0..8 (0 wake, 1 REM, 2-5 stages 1-4, "
                          "6 artefact, 7 indeterminate, 8 undocumented)");
    out.push_back(static_cast<UcddbStage>(*v));
  }
  if (out.empty()) throw Error(source + ": no stage codes (empty file)");
  return out;
}

std::vector<UcddbStage> read_ucddb_stages(const std::string& path) {
  return parse_ucddb_stages(detail::read_file(path, "UCDDB stage file", int64_t{1} << 26), path);
}

// ---------------------------------------------------------------------------------------------
// Respiratory events

bool ucddb_is_apnea(UcddbEventKind k) {
  return k == UcddbEventKind::ApneaObstructive || k == UcddbEventKind::ApneaCentral || k == UcddbEventKind::ApneaMixed;
}

bool ucddb_is_hypopnea(UcddbEventKind k) {
  return k == UcddbEventKind::HypopneaObstructive || k == UcddbEventKind::HypopneaCentral ||
         k == UcddbEventKind::HypopneaMixed;
}

namespace {

UcddbEventKind event_kind(std::string_view type) {
  const std::string t = lower(type);
  if (t == "apnea-o") return UcddbEventKind::ApneaObstructive;
  if (t == "apnea-c") return UcddbEventKind::ApneaCentral;
  if (t == "apnea-m") return UcddbEventKind::ApneaMixed;
  if (t == "hyp-o") return UcddbEventKind::HypopneaObstructive;
  if (t == "hyp-c") return UcddbEventKind::HypopneaCentral;
  if (t == "hyp-m") return UcddbEventKind::HypopneaMixed;
  if (t == "pb") return UcddbEventKind::PeriodicBreathing;
  return UcddbEventKind::Other;
}

enum Col { kTime, kType, kPbCs, kDuration, kLow, kDrop, kSnore, kArousal, kRate, kChange, kNumCols };
const char* kColNames[kNumCols] = {"Time", "Type", "PB/CS", "Duration", "Low", "%Drop", "Snore", "Arousal", "Rate", "Change"};

// Column of a header word, or -1 for words that name no column ("SpO2", "B/T", "(secs)").
int column_of_header_word(std::string_view w) {
  const std::string l = lower(w);
  if (l == "time") return kTime;
  if (l == "type") return kType;
  if (l == "pb/cs" || l == "pb" || l == "cs") return kPbCs;
  if (l == "duration" || l == "dur" || l == "duration(s)") return kDuration;
  if (l == "low" || l == "lowspo2" || l == "low_spo2") return kLow;
  if (l == "%drop" || l == "drop" || l == "%") return kDrop;
  if (l == "snore") return kSnore;
  if (l == "arousal") return kArousal;
  if (l == "rate") return kRate;
  if (l == "change") return kChange;
  return -1;
}

struct Token {
  std::string_view text;
  size_t begin, end;  // character span in the line
};

std::vector<Token> tokens_with_spans(std::string_view line) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) out.push_back({line.substr(i, j - i), i, j});
    i = j;
  }
  return out;
}

bool is_clock_token(std::string_view t) { return t.find(':') != std::string_view::npos && parse_clock_seconds(t).has_value(); }

bool is_number(std::string_view t) { return detail::parse_double(t).has_value(); }

std::optional<double> optional_number(std::string_view cell, const std::string& src, size_t ln, const char* col) {
  std::string_view t = detail::trim(cell);
  if (t.empty() || t == "-" || t == "--") return std::nullopt;
  auto v = detail::parse_double(t);
  if (!v) fail(src, ln, std::string("column '") + col + "': " + quote(t) + " is not a number");
  return v;
}

}  // namespace

std::vector<UcddbRespEvent> parse_ucddb_respevt(std::string_view text, const std::string& source,
                                                double psg_start_seconds) {
  if (!(psg_start_seconds >= 0.0 && psg_start_seconds < 86400.0))
    throw Error(source + ": PSG start " + detail::format_number(psg_start_seconds) + " s is not a time of day");
  std::vector<UcddbRespEvent> out;
  auto lines = detail::split_lines(text);
  // Header: column spans from the first line holding both "Time" and "Type".
  std::vector<std::pair<size_t, size_t>> span(kNumCols, {0, 0});
  std::vector<bool> have(kNumCols, false);
  bool header = false;
  for (std::string_view line : lines) {
    auto toks = tokens_with_spans(line);
    bool t1 = false, t2 = false;
    for (const Token& t : toks) {
      t1 = t1 || lower(t.text) == "time";
      t2 = t2 || lower(t.text) == "type";
    }
    if (!t1 || !t2) continue;
    for (const Token& t : toks) {
      int c = column_of_header_word(t.text);
      if (c < 0 || have[static_cast<size_t>(c)]) continue;
      span[static_cast<size_t>(c)] = {t.begin, t.end};
      have[static_cast<size_t>(c)] = true;
    }
    header = true;
    break;
  }
  for (size_t li = 0; li < lines.size(); ++li) {
    const size_t ln = li + 1;
    std::string_view line = lines[li];
    auto toks = tokens_with_spans(line);
    if (toks.empty() || !is_clock_token(toks[0].text)) continue;  // not an event line
    if (toks.size() < 3) fail(source, ln, "event line " + quote(detail::trim(line)) + " has fewer than 3 cells (time, type, duration)");
    std::vector<std::string> cell(kNumCols);
    cell[kTime] = std::string(toks[0].text);
    cell[kType] = std::string(toks[1].text);
    if (header) {
      for (size_t k = 2; k < toks.size(); ++k) {
        const Token& t = toks[k];
        int best = -1;
        long best_score = 0;
        for (int c = kPbCs; c < kNumCols; ++c) {
          if (!have[static_cast<size_t>(c)]) continue;
          const auto [b, e] = span[static_cast<size_t>(c)];
          const long overlap = static_cast<long>(std::min(e, t.end)) - static_cast<long>(std::max(b, t.begin));
          // Overlap wins; otherwise the smaller gap (as a negative score).
          const long gap = overlap > 0 ? 0 : (t.end <= b ? static_cast<long>(b - t.end) : static_cast<long>(t.begin - e));
          const long score = overlap > 0 ? overlap * 1000 : -gap;
          if (best < 0 || score > best_score) {
            best = c;
            best_score = score;
          }
        }
        if (best < 0) fail(source, ln, "cell " + quote(t.text) + " matches no column of the header");
        if (!cell[static_cast<size_t>(best)].empty())
          fail(source, ln, "cells " + quote(cell[static_cast<size_t>(best)]) + " and " + quote(t.text) +
                               " both fall under column '" + kColNames[best] + "'");
        cell[static_cast<size_t>(best)] = std::string(t.text);
      }
    } else {
      // No header line: time, type, [PB/CS flag], duration, low, drop, snore, arousal, rate, change.
      size_t k = 2;
      if (k < toks.size() && !is_number(toks[k].text)) cell[kPbCs] = std::string(toks[k++].text);
      for (int c = kDuration; c < kNumCols && k < toks.size(); ++c, ++k) cell[static_cast<size_t>(c)] = std::string(toks[k].text);
      if (k < toks.size()) fail(source, ln, "more cells than columns: " + quote(toks[k].text));
    }
    UcddbRespEvent ev;
    ev.line = static_cast<int>(ln);
    ev.clock = cell[kTime];
    const double clock = *parse_clock_seconds(ev.clock);
    double onset = clock - psg_start_seconds;
    if (onset < -12 * 3600.0) onset += 86400.0;  // after midnight, PSG started the evening before
    if (onset < 0.0)
      fail(source, ln, "event at " + ev.clock + " is before the PSG start (" + detail::format_number(psg_start_seconds) +
                           " s after midnight)");
    ev.onset_seconds = onset;
    ev.type = cell[kType];
    ev.kind = event_kind(ev.type);
    ev.pb_cs = cell[kPbCs];
    std::string_view dur = detail::trim(cell[kDuration]);
    if (dur.empty()) fail(source, ln, "column 'Duration' is empty");
    auto d = detail::parse_double(dur);
    if (!d) fail(source, ln, "column 'Duration': " + quote(dur) + " is not a number");
    if (*d < 0 || *d > 86400) fail(source, ln, "column 'Duration': " + quote(dur) + " seconds is out of range [0, 86400]");
    ev.duration_seconds = *d;
    ev.low_spo2 = optional_number(cell[kLow], source, ln, "Low");
    ev.drop_percent = optional_number(cell[kDrop], source, ln, "%Drop");
    ev.snore = cell[kSnore];
    ev.arousal = cell[kArousal];
    ev.rate = optional_number(cell[kRate], source, ln, "Rate");
    ev.change = optional_number(cell[kChange], source, ln, "Change");
    if (ev.low_spo2 && (*ev.low_spo2 < 0 || *ev.low_spo2 > 100))
      fail(source, ln, "column 'Low': SpO2 " + detail::format_number(*ev.low_spo2) + " is outside [0, 100]");
    out.push_back(std::move(ev));
  }
  return out;
}

std::vector<UcddbRespEvent> read_ucddb_respevt(const std::string& path, double psg_start_seconds) {
  return parse_ucddb_respevt(detail::read_file(path, "UCDDB respiratory event file", int64_t{1} << 26), path,
                             psg_start_seconds);
}

// ---------------------------------------------------------------------------------------------
// Subject table

namespace {

std::vector<std::string_view> split_csv(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t c = line.find(',', start);
    out.push_back(detail::trim(line.substr(start, c == std::string_view::npos ? std::string_view::npos : c - start)));
    if (c == std::string_view::npos) break;
    start = c + 1;
  }
  return out;
}

}  // namespace

std::vector<UcddbSubject> parse_ucddb_subjects(std::string_view csv, const std::string& source) {
  auto lines = detail::split_lines(csv);
  size_t first = 0;
  while (first < lines.size() && detail::trim(lines[first]).empty()) ++first;
  if (first >= lines.size()) throw Error(source + ": empty subject table");
  std::string_view head = lines[first];
  if (head.size() >= 3 && head.substr(0, 3) == "\xEF\xBB\xBF") head.remove_prefix(3);  // UTF-8 BOM
  auto names = split_csv(head);
  // Column index by (lower-cased, prefix-matched) header name.
  auto find = [&](std::string_view want) -> size_t {
    const std::string w = lower(want);
    for (size_t i = 0; i < names.size(); ++i)
      if (lower(names[i]).rfind(w, 0) == 0) return i;
    throw Error(source + ":" + std::to_string(first + 1) + ": subject table has no column '" + std::string(want) + "'");
  };
  const size_t c_sno = find("S/No"), c_study = find("Study Number"), c_h = find("Height"), c_w = find("Weight"),
               c_sex = find("Gender"), c_start = find("PSG Start Time"), c_ahi = find("PSG AHI"), c_bmi = find("BMI"),
               c_age = find("Age"), c_ess = find("Epworth"), c_dur = find("Study Duration"),
               c_eff = find("Sleep Efficiency"), c_blocks = find("No of data blocks");
  std::vector<UcddbSubject> out;
  for (size_t li = first + 1; li < lines.size(); ++li) {
    const size_t ln = li + 1;
    if (detail::trim(lines[li]).empty()) continue;
    auto cells = split_csv(lines[li]);
    if (cells.size() < names.size())
      fail(source, ln, std::to_string(cells.size()) + " cells, the header has " + std::to_string(names.size()));
    auto num = [&](size_t c) {
      auto v = detail::parse_double(cells[c]);
      if (!v) fail(source, ln, "column '" + std::string(names[c]) + "': " + quote(cells[c]) + " is not a number");
      return *v;
    };
    UcddbSubject s;
    s.serial = static_cast<int>(num(c_sno));
    s.study = std::string(cells[c_study]);
    if (s.study.empty()) fail(source, ln, "column '" + std::string(names[c_study]) + "' is empty");
    s.height_cm = num(c_h);
    s.weight_kg = num(c_w);
    s.gender = std::string(cells[c_sex]);
    s.psg_start = std::string(cells[c_start]);
    auto t = parse_clock_seconds(s.psg_start);
    if (!t) fail(source, ln, "column '" + std::string(names[c_start]) + "': " + quote(s.psg_start) + " is not a clock time hh:mm:ss");
    s.psg_start_seconds = *t;
    s.ahi = num(c_ahi);
    s.bmi = num(c_bmi);
    s.age = static_cast<int>(num(c_age));
    s.epworth = num(c_ess);
    s.study_duration_hours = num(c_dur);
    s.sleep_efficiency_percent = num(c_eff);
    const double blocks = num(c_blocks);
    if (blocks < 0 || blocks != std::floor(blocks) || blocks > 1e9)
      fail(source, ln, "column '" + std::string(names[c_blocks]) + "': " + quote(cells[c_blocks]) + " is not a block count");
    s.edf_blocks = static_cast<int64_t>(blocks);
    if (s.ahi < 0) fail(source, ln, "column '" + std::string(names[c_ahi]) + "': negative AHI");
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<UcddbSubject> read_ucddb_subjects(const std::string& path) {
  return parse_ucddb_subjects(detail::read_file(path, "UCDDB subject table", int64_t{1} << 24), path);
}

const UcddbSubject* find_ucddb_subject(const std::vector<UcddbSubject>& subjects, std::string_view record) {
  const std::string want = lower(record);
  for (const UcddbSubject& s : subjects)
    if (lower(s.study) == want) return &s;
  return nullptr;
}

}  // namespace sleepnet::data
