// ucddb.cpp: the UCDDB adapter (see ucddb.h): stage epochs, respiratory events, EDF signals and
// the subject table. Also reads a generic EDF file (no labels) for load_record.
#include "data/ucddb.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "data/edf.h"
#include "data/reader_util.h"
#include "data/wfdb_header.h"
#include "tensor/tensor.h"

namespace sleepnet::data {

namespace {

namespace du = sleepnet::data::detail;

StageLabel label_of(UcddbStage s) {
  switch (s) {
    case UcddbStage::Wake: return StageLabel::Wake;
    case UcddbStage::REM: return StageLabel::REM;
    case UcddbStage::Stage1: return StageLabel::S1;
    case UcddbStage::Stage2: return StageLabel::S2;
    case UcddbStage::Stage3: return StageLabel::S3;
    case UcddbStage::Stage4: return StageLabel::S4;
    case UcddbStage::Artefact: return StageLabel::Artefact;
    case UcddbStage::Indeterminate: return StageLabel::Indeterminate;
    case UcddbStage::Unknown8: return StageLabel::Undocumented;
  }
  return StageLabel::Unknown;
}

bool is_ecg_label(std::string_view label) {
  std::string l;
  for (char c : label) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return l.rfind("ecg", 0) == 0 || l.rfind("ekg", 0) == 0;
}

}  // namespace

Record load_ucddb_record(const std::string& record_path, const std::vector<UcddbSubject>* subjects,
                         const LoadOptions& options) {
  std::string base = record_path;
  std::string edf_path;
  for (const char* ext : {".rec", ".edf"}) {
    const std::string e = ext;
    if (base.size() > e.size() && base.compare(base.size() - e.size(), e.size(), e) == 0) {
      edf_path = base;
      base = base.substr(0, base.size() - e.size());
    }
  }
  if (edf_path.empty()) {
    for (const char* ext : {".rec", ".edf"})
      if (detail::file_exists(base + ext)) { edf_path = base + ext; break; }
  } else if (!detail::file_exists(edf_path)) {
    throw Error(fmt::format("{}: no such file", edf_path));
  }
  const std::string stage_path = base + "_stage.txt";
  const std::string respevt_path = base + "_respevt.txt";
  const bool has_stage = detail::file_exists(stage_path);
  if (!has_stage && edf_path.empty())
    throw Error(fmt::format("{}: no such record (looked for {} and {}.rec)", record_path, stage_path, base));

  Record r;
  r.id = detail::file_name(base);
  r.path = record_path;
  r.meta.night = r.id;
  const UcddbSubject* subject = subjects ? find_ucddb_subject(*subjects, r.id) : nullptr;
  r.database = (has_stage || subject) ? Database::Ucddb : Database::Edf;

  // EDF: signals, duration, ECG.
  if (!edf_path.empty()) {
    EdfReader edf = EdfReader::open(edf_path);
    const EdfHeader& h = edf.header();
    for (const std::string& w : h.warnings) r.notes.push_back(w);
    r.duration_s = h.duration_seconds();
    int ecg = -1;
    for (int s = 0; s < h.num_signals(); ++s) {
      const EdfSignal& sig = h.signals[s];
      if (sig.is_annotation()) continue;
      SignalChannel c;
      c.name = sig.label;
      c.units = sig.physical_dimension;
      c.fs_hz = h.sampling_rate(s);
      c.num_samples = h.num_records * sig.samples_per_record;
      c.file = detail::file_name(edf_path);
      c.present = true;
      if (ecg < 0 && is_ecg_label(sig.label)) ecg = s;
      else if (options.load_signals) c.samples = edf.read_physical(s);
      r.signals.push_back(std::move(c));
    }
    if (ecg >= 0) {
      std::vector<float> x = edf.read_physical(ecg);
      detail::beats_from_ecg(r, x, h.sampling_rate(ecg),
                             detail::file_name(edf_path) + " (" + h.signals[ecg].label + ")", true,
                             options.r_amplitudes);
    } else {
      r.notes.push_back(fmt::format("{}: no ECG signal (labels starting with ECG/EKG): no beats",
                                    detail::file_name(edf_path)));
    }
  } else {
    r.notes.push_back(fmt::format("{}.rec absent: no signals, no beats", r.id));
  }

  // Stages -> 30-s windows.
  if (has_stage) {
    std::vector<UcddbStage> stages = read_ucddb_stages(stage_path);
    r.windows.reserve(stages.size());
    for (size_t k = 0; k < stages.size(); ++k) {
      Window w;
      w.start_s = k * kUcddbEpochSeconds;
      w.duration_s = kUcddbEpochSeconds;
      w.stage = label_of(stages[k]);
      w.sleep = static_cast<int8_t>(sleep_wake_of(w.stage));
      w.note = std::to_string(static_cast<int>(stages[k]));
      r.windows.push_back(std::move(w));
    }
    r.label_source = detail::file_name(stage_path);
    const double staged = stages.size() * kUcddbEpochSeconds;
    if (r.duration_s <= 0) {
      r.duration_s = staged;
      if (subject && subject->edf_blocks > 0)
        r.duration_s = std::max(r.duration_s, static_cast<double>(subject->edf_blocks));
    }
  } else {
    r.windows = unlabelled_windows(r.duration_s, kUcddbEpochSeconds);
  }

  // Subject table.
  if (subject) {
    r.meta.reference_ahi = subject->ahi;
    r.meta.ahi_source = "SubjectDetails.csv (PSG AHI)";
    r.meta.record_class = std::string(ahi_severity(subject->ahi));
    if (subject->age > 0) r.meta.age = subject->age;
    r.meta.sex = subject->gender;
    if (subject->height_cm > 0) r.meta.height_cm = subject->height_cm;
    if (subject->weight_kg > 0) r.meta.weight_kg = subject->weight_kg;
    r.meta.subject = "ucddb/" + r.id;
  } else if (r.database == Database::Ucddb) {
    r.notes.push_back(fmt::format("{} not in SubjectDetails.csv (or the table is absent): no reference AHI", r.id));
  }

  // Respiratory events -> apnea labels.
  if (detail::file_exists(respevt_path)) {
    if (!subject)
      throw Error(fmt::format("{}: cannot place the events in time: the PSG start of {} comes from "
                              "SubjectDetails.csv, which is absent or has no row for it",
                              respevt_path, r.id));
    std::vector<UcddbRespEvent> events = read_ucddb_respevt(respevt_path, subject->psg_start_seconds);
    for (Window& w : r.windows) w.apnea = 0;
    for (const UcddbRespEvent& e : events) {
      if (!ucddb_is_apnea(e.kind) && !ucddb_is_hypopnea(e.kind)) continue;
      const double a = e.onset_seconds, b = e.onset_seconds + std::max(0.0, e.duration_seconds);
      for (Window& w : r.windows) {
        const double w0 = w.start_s, w1 = w.start_s + w.duration_s;
        if (a < w1 && (b > w0 || (a >= w0 && a < w1))) w.apnea = 1;
        if (a >= w0 && a < w1) ++w.events;
      }
    }
    r.label_source += (r.label_source.empty() ? "" : " + ") + detail::file_name(respevt_path);
  }
  if (r.duration_s <= 0) throw Error(fmt::format("{}: record length unknown or zero", record_path));
  return r;
}

}  // namespace sleepnet::data
