// slpdb.cpp: the MIT-BIH Polysomnographic Database adapter (see slpdb.h): .st epochs, event
// tokens, the AHI computed from them, and the header's subject line.
#include "data/slpdb.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <map>

#include "data/reader_util.h"
#include "data/wfdb_header.h"
#include "tensor/tensor.h"

namespace sleepnet::data {

namespace du = sleepnet::data::detail;

bool slpdb_is_respiratory_event(std::string_view t) {
  return t == "H" || t == "HA" || t == "OA" || t == "X" || t == "CA" || t == "CAA";
}

namespace {

// Stage token -> label; nullopt when the token is not a stage.
std::optional<StageLabel> stage_token(std::string_view t) {
  if (t == "W") return StageLabel::Wake;
  if (t == "1") return StageLabel::S1;
  if (t == "2") return StageLabel::S2;
  if (t == "3") return StageLabel::S3;
  if (t == "4") return StageLabel::S4;
  if (t == "R") return StageLabel::REM;
  if (t == "MT" || t == "M") return StageLabel::Movement;  // slp45 writes "M\0"
  return std::nullopt;
}

bool known_other_token(std::string_view t) {
  if (t == "LA" || t == "A") return true;
  // Leg movements: "L", and the variants "LL", "LLLL" that occur in slp16, slp59, slp60, slp61.
  return !t.empty() && t.find_first_not_of('L') == std::string_view::npos;
}

}  // namespace

SlpdbEpochLabel parse_slpdb_aux(std::string_view aux) {
  std::string clean;
  for (char c : aux) clean += (c == '\0' ? ' ' : c);
  SlpdbEpochLabel out;
  std::vector<std::string_view> tok = du::split_ws(clean);
  for (size_t i = 0; i < tok.size(); ++i) {
    if (i == 0) {
      if (auto s = stage_token(tok[0])) {
        out.stage = *s;
        out.has_stage_token = true;
        continue;
      }
    }
    if (slpdb_is_respiratory_event(tok[i])) out.events.emplace_back(tok[i]);
    else out.other.emplace_back(tok[i]);
  }
  return out;
}

std::vector<Window> slpdb_windows_from_annotations(const std::vector<WfdbAnnotation>& annotations,
                                                   double fs_hz, double duration_s,
                                                   const std::string& source,
                                                   std::vector<std::string>* notes) {
  const double epoch_samples = kSlpdbEpochSeconds * fs_hz;
  std::vector<Window> out = unlabelled_windows(duration_s, kSlpdbEpochSeconds);
  std::vector<bool> seen(out.size(), false);
  std::map<std::string, int> unknown;
  int64_t non_note = 0;
  for (size_t i = 0; i < annotations.size(); ++i) {
    const WfdbAnnotation& a = annotations[i];
    if (a.code != ann::NOTE) { ++non_note; continue; }
    const double k = std::round(static_cast<double>(a.sample) / epoch_samples);
    if (a.sample < 0 || k >= static_cast<double>(out.size()))
      throw Error(fmt::format("{}: annotation {} at sample {} (epoch {}) lies outside the record's {} "
                              "whole 30-s epochs", source, i, a.sample, k, out.size()));
    const size_t e = static_cast<size_t>(k);
    if (seen[e])
      throw Error(fmt::format("{}: annotation {} at sample {}: epoch {} is annotated twice", source, i,
                              a.sample, e));
    seen[e] = true;
    SlpdbEpochLabel lab = parse_slpdb_aux(a.aux);
    Window& w = out[e];
    std::string note;
    for (char c : a.aux) if (c != '\0') note += c;
    w.note = std::string(du::trim(note));
    w.stage = lab.stage;
    w.sleep = static_cast<int8_t>(sleep_wake_of(lab.stage));
    w.events = static_cast<int16_t>(lab.events.size());
    w.apnea = lab.events.empty() ? 0 : 1;
    if (!lab.has_stage_token) ++unknown["(no stage token)"];
    for (const std::string& t : lab.other)
      if (!known_other_token(t)) ++unknown[t];
  }
  if (notes) {
    for (const auto& [tok, n] : unknown)
      notes->push_back(fmt::format("{}: unknown token {} in {} epochs", du::file_name(source), du::quote(tok), n));
    if (non_note > 0)
      notes->push_back(fmt::format("{}: {} non-NOTE annotations ignored", du::file_name(source), non_note));
  }
  return out;
}

SlpdbAhi slpdb_ahi(const Record& record, SlpdbEventCount counting) {
  SlpdbAhi out;
  std::map<std::string, int> previous;  // event tokens of the previous scored epoch
  for (const Window& w : record.windows) {
    SlpdbEpochLabel lab = parse_slpdb_aux(w.note);
    std::map<std::string, int> current;
    for (const std::string& t : lab.events) ++current[t];
    if (sleep_wake_of(lab.stage) == 1) {
      ++out.sleep_epochs;
      for (const auto& [t, n] : current) {
        if (counting == SlpdbEventCount::PerToken) {
          out.events += n;
        } else {
          // A run of epochs holding the token is one event; extra tokens in one epoch are more.
          auto it = previous.find(t);
          int carried = it == previous.end() ? 0 : std::min(it->second, 1);
          out.events += n - carried;
        }
      }
    }
    previous = std::move(current);
  }
  out.sleep_hours = out.sleep_epochs * kSlpdbEpochSeconds / 3600.0;
  out.ahi = out.sleep_hours > 0 ? out.events / out.sleep_hours : 0.0;
  return out;
}

Record load_slpdb_record(const std::string& record_path, const LoadOptions& options) {
  LoadOptions opts = options;
  if (opts.windows == LoadOptions::Windows::Auto) opts.windows = LoadOptions::Windows::Epochs;
  Record r = load_wfdb_record(record_path, opts);
  r.database = Database::Slpdb;
  // slp01a and slp01b are two parts of one night of one subject.
  std::string night = r.id;
  if (night.size() > 5 && (night.back() == 'a' || night.back() == 'b')) night.pop_back();
  r.meta.night = night;
  r.meta.subject = "slpdb/" + night;
  if (!r.label_source.empty()) {
    SlpdbAhi ahi = slpdb_ahi(r);
    r.meta.reference_ahi = ahi.ahi;
    r.meta.ahi_source = fmt::format("computed from {}: {} respiratory event tokens in {} sleep epochs "
                                    "({:.2f} h of sleep)", r.label_source, ahi.events, ahi.sleep_epochs,
                                    ahi.sleep_hours);
    r.meta.record_class = std::string(ahi_severity(ahi.ahi));
  }
  // Subject line: "# 44 M 89 32-01-89" (age, sex, weight, date; "x" when unknown).
  WfdbHeader h = read_wfdb_header(detail::strip_record_extension(record_path) + ".hea");
  for (const std::string& c : h.comments) {
    std::vector<std::string_view> tok = du::split_ws(c);
    if (tok.size() < 2 || (tok[1] != "M" && tok[1] != "F" && tok[1] != "x")) continue;
    if (auto age = du::parse_int(tok[0]); age && *age > 0 && *age < 130) r.meta.age = static_cast<int>(*age);
    if (tok[1] != "x") r.meta.sex = std::string(tok[1]);
    if (tok.size() >= 3)
      if (auto wt = du::parse_double(tok[2]); wt && *wt > 20 && *wt < 400) r.meta.weight_kg = *wt;
    break;
  }
  return r;
}

}  // namespace sleepnet::data
