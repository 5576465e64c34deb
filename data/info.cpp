// info.cpp: the text of `sleepnet info` (see info.h).
#include "data/info.h"

#include <fmt/format.h>

#include <cmath>
#include <exception>

#include "data/reader_util.h"

namespace sleepnet::data {

namespace {

std::string clock_text(double seconds) {
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
}

std::string num(double x) {
  // Up to 2 decimals, no trailing zeros: 69.6, 0.24, 19.14, 100.
  std::string s = fmt::format("{:.2f}", x);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

void line(std::string& out, std::string_view key, const std::string& value) {
  out += fmt::format("  {:<11} {}\n", key, value);
}

}  // namespace

std::string describe(const Record& r) {
  std::string out = fmt::format("{} ({})  {}\n", r.id, database_name(r.database), r.path);
  line(out, "duration", fmt::format("{} s ({})", num(r.duration_s), clock_text(r.duration_s)));

  std::string sig = std::to_string(r.signals.size());
  for (size_t i = 0; i < r.signals.size(); ++i) {
    const SignalChannel& c = r.signals[i];
    sig += fmt::format("{} {} ({}, {} Hz{})", i == 0 ? ":" : ",", c.name, c.units.empty() ? "no units" : c.units,
                       num(c.fs_hz), c.present ? "" : ", " + c.file + " absent");
  }
  line(out, "signals", sig);

  if (r.beat_source.empty()) {
    line(out, "beats", "0 (no beat annotation file and no ECG)");
  } else if (r.beat_source.rfind("QRS detector", 0) == 0) {
    line(out, "beats", fmt::format("{} from the {}", r.num_beats(), r.beat_source));
  } else {
    line(out, "beats", fmt::format("{} from {} (beat annotations only; {} other annotations)", r.num_beats(),
                                   r.beat_source, r.non_beat_annotations));
  }
  if (!r.r_amplitudes.empty()) line(out, "amplitudes", fmt::format("R amplitude at {} beats", r.r_amplitudes.size()));

  const LabelCounts c = count_labels(r);
  double wlen = r.windows.empty() ? 0 : r.windows.front().duration_s;
  line(out, "windows", fmt::format("{} x {} s{}", c.windows, num(wlen),
                                   r.label_source.empty() ? " (unlabelled)" : " from " + r.label_source));
  if (c.apnea + c.normal > 0 || c.apnea_unknown < c.windows) {
    std::string a = fmt::format("{} apnea, {} normal", c.apnea, c.normal);
    if (c.apnea_unknown > 0) a += fmt::format(", {} unknown", c.apnea_unknown);
    if (c.events > 0) a += fmt::format("; {} respiratory events", c.events);
    line(out, "  apnea", a);
  }
  const int64_t staged = c.windows - c.stage[0];
  if (staged > 0) {
    std::string s;
    const StageLabel order[] = {StageLabel::Wake, StageLabel::S1, StageLabel::S2, StageLabel::S3,
                                StageLabel::S4, StageLabel::REM, StageLabel::Movement, StageLabel::Artefact,
                                StageLabel::Indeterminate, StageLabel::Undocumented, StageLabel::Unknown};
    for (StageLabel st : order) {
      int64_t n = c.stage[static_cast<int>(st) + 1];
      if (n == 0) continue;
      s += fmt::format("{}{} {}", s.empty() ? "" : ", ", stage_label_name(st), n);
    }
    line(out, "  stages", s);
    std::string sl = fmt::format("{} sleep, {} wake", c.sleep, c.wake);
    if (c.sleep_unknown > 0) sl += fmt::format(", {} unknown", c.sleep_unknown);
    line(out, "  sleep", sl);
  }

  if (r.meta.reference_ahi) {
    std::string ref = fmt::format("AHI {} ({})", num(*r.meta.reference_ahi), r.meta.ahi_source);
    if (!r.meta.record_class.empty()) ref += ", class " + r.meta.record_class;
    line(out, "reference", ref);
  } else if (!r.meta.record_class.empty()) {
    line(out, "reference", "class " + r.meta.record_class);
  }
  if (r.meta.table_minutes)
    line(out, "table", fmt::format("{} minutes, {} apnea, {} non-apnea ({})", *r.meta.table_minutes,
                                   r.meta.table_apnea_minutes.value_or(0), r.meta.table_normal_minutes.value_or(0),
                                   r.meta.ahi_source));
  std::string subj;
  if (r.meta.age) subj += fmt::format("age {}", *r.meta.age);
  if (!r.meta.sex.empty()) subj += fmt::format("{}sex {}", subj.empty() ? "" : ", ", r.meta.sex);
  if (r.meta.height_cm) subj += fmt::format("{}{} cm", subj.empty() ? "" : ", ", num(*r.meta.height_cm));
  if (r.meta.weight_kg) subj += fmt::format("{}{} kg", subj.empty() ? "" : ", ", num(*r.meta.weight_kg));
  if (!subj.empty()) line(out, "subject", subj);
  for (const std::string& n : r.notes) line(out, "note", n);
  return out;
}

std::string describe_record(const std::string& path, const LoadOptions& options) {
  return describe(load_record(path, options));
}

int print_info(const std::vector<std::string>& paths, std::FILE* out, std::FILE* err,
               const LoadOptions& options) {
  int status = 0;
  bool first = true;
  for (const std::string& p : paths) {
    try {
      std::string text = describe_record(p, options);
      std::fputs(first ? "" : "\n", out);
      std::fputs(text.c_str(), out);
      first = false;
    } catch (const std::exception& e) {
      std::fprintf(err, "sleepnet info: %s\n", e.what());
      status = 1;
    }
  }
  return status;
}

}  // namespace sleepnet::data
