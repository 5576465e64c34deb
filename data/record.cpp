// record.cpp: the common record model, the generic WFDB record loader, record-type detection and
// the database loader (see record.h).
#include "data/record.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <set>

#include "data/apnea_ecg.h"
#include "data/qrs.h"
#include "data/reader_util.h"
#include "data/slpdb.h"
#include "data/ucddb.h"
#include "data/wfdb_header.h"
#include "data/wfdb_signal.h"
#include "tensor/tensor.h"

namespace sleepnet::data {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Names and small helpers
// ---------------------------------------------------------------------------------------------

std::string_view database_name(Database db) {
  switch (db) {
    case Database::ApneaEcg: return "apnea-ecg";
    case Database::Slpdb: return "slpdb";
    case Database::Ucddb: return "ucddb";
    case Database::Wfdb: return "wfdb";
    case Database::Edf: return "edf";
  }
  return "?";
}

std::string_view stage_label_name(StageLabel s) {
  switch (s) {
    case StageLabel::Unknown: return "unscored";
    case StageLabel::Wake: return "W";
    case StageLabel::S1: return "S1";
    case StageLabel::S2: return "S2";
    case StageLabel::S3: return "S3";
    case StageLabel::S4: return "S4";
    case StageLabel::REM: return "REM";
    case StageLabel::Movement: return "MT";
    case StageLabel::Artefact: return "artefact";
    case StageLabel::Indeterminate: return "indeterminate";
    case StageLabel::Undocumented: return "code8";
  }
  return "?";
}

int sleep_wake_of(StageLabel s) {
  switch (s) {
    case StageLabel::Wake: return 0;
    case StageLabel::S1: case StageLabel::S2: case StageLabel::S3: case StageLabel::S4:
    case StageLabel::REM: return 1;
    default: return -1;
  }
}

std::string_view ahi_severity(double ahi) {
  if (ahi < 5) return "normal";
  if (ahi < 15) return "mild";
  if (ahi < 30) return "moderate";
  return "severe";
}

std::string Record::group() const {
  if (!meta.subject.empty()) return meta.subject;
  if (!meta.night.empty()) return meta.night;
  return id;
}

BeatSeries Record::beat_series() const {
  // beat_series() works on sample indices; the times are exact multiples of 1 / beat_fs_hz.
  const double fs = beat_fs_hz > 0 ? beat_fs_hz : 1000.0;
  std::vector<int64_t> samples(beat_times_s.size());
  for (size_t i = 0; i < samples.size(); ++i) samples[i] = std::llround(beat_times_s[i] * fs);
  return data::beat_series(samples, fs, r_amplitudes);
}

LabelCounts count_labels(const Record& record) {
  LabelCounts c;
  for (const Window& w : record.windows) {
    ++c.windows;
    if (w.apnea == 1) ++c.apnea;
    else if (w.apnea == 0) ++c.normal;
    else ++c.apnea_unknown;
    if (w.sleep == 1) ++c.sleep;
    else if (w.sleep == 0) ++c.wake;
    else ++c.sleep_unknown;
    int idx = static_cast<int>(w.stage) + 1;
    if (idx >= 0 && idx < 11) ++c.stage[idx];
    c.events += w.events;
  }
  return c;
}

std::vector<Window> unlabelled_windows(double duration_s, double length_s) {
  std::vector<Window> out;
  if (!(duration_s > 0) || !(length_s > 0)) return out;
  const int64_t n = static_cast<int64_t>(std::floor(duration_s / length_s + 1e-9));
  out.reserve(n);
  for (int64_t k = 0; k < n; ++k) {
    Window w;
    w.start_s = k * length_s;
    w.duration_s = length_s;
    out.push_back(w);
  }
  return out;
}

namespace detail {

std::string strip_record_extension(const std::string& path) {
  static const char* exts[] = {".hea", ".qrs", ".apn", ".st", ".ecg", ".atr", ".dat"};
  for (const char* e : exts) {
    const size_t n = std::char_traits<char>::length(e);
    if (path.size() > n && path.compare(path.size() - n, n, e) == 0) return path.substr(0, path.size() - n);
  }
  return path;
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::string file_name(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty() || dir == ".") return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

std::vector<WfdbAnnotation> read_label_annotations(const std::string& path) {
  std::string bytes = sleepnet::data::detail::read_file(path, "annotation file", int64_t{1} << 28);
  std::vector<WfdbAnnotation> anns = parse_wfdb_annotations(bytes, path);
  if (bytes.size() < 2 || bytes[bytes.size() - 2] != 0 || bytes[bytes.size() - 1] != 0)
    throw Error(fmt::format(
        "{}: no end-of-file marker after {} annotations ({} bytes): the label file is truncated "
        "(a cut label file would silently lose the end of the night)",
        path, anns.size(), bytes.size()));
  return anns;
}

void beats_from_ecg(Record& record, const std::vector<float>& ecg, double fs_hz,
                    const std::string& source, bool detect, bool amplitudes) {
  if (detect) {
    QrsResult q = detect_qrs(ecg, fs_hz);
    record.beat_times_s.resize(q.r_samples.size());
    for (size_t i = 0; i < q.r_samples.size(); ++i) record.beat_times_s[i] = static_cast<double>(q.r_samples[i]) / fs_hz;
    record.r_amplitudes = amplitudes ? std::move(q.r_amplitude) : std::vector<float>{};
    record.beat_fs_hz = fs_hz;
    record.beat_source = "QRS detector on " + source;
    record.non_beat_annotations = 0;
    if (q.nonfinite_replaced > 0)
      record.notes.push_back(fmt::format("{}: {} invalid ECG samples interpolated before QRS detection",
                                         source, q.nonfinite_replaced));
    return;
  }
  if (!amplitudes || record.beat_times_s.empty()) return;
  // R amplitudes at annotated beats, measured as detect_qrs does: the extremum of the record's
  // dominant polarity in the 0.5-40 Hz band within +-80 ms of the beat.
  std::vector<float> x = ecg;
  interpolate_nonfinite(x);
  std::vector<float> wide = bandpass_ecg(x, fs_hz);
  const int64_t n = static_cast<int64_t>(wide.size());
  const int64_t half = std::max<int64_t>(1, std::llround(0.080 * fs_hz));
  const size_t nb = record.beat_times_s.size();
  std::vector<float> hi(nb, NAN), lo(nb, NAN);
  int64_t votes = 0;
  for (size_t i = 0; i < nb; ++i) {
    const int64_t c = std::llround(record.beat_times_s[i] * fs_hz);
    const int64_t a = std::max<int64_t>(0, c - half), b = std::min<int64_t>(n - 1, c + half);
    if (a > b) continue;
    auto [mn, mx] = std::minmax_element(wide.begin() + a, wide.begin() + b + 1);
    hi[i] = *mx;
    lo[i] = *mn;
    votes += (*mx >= -*mn) ? 1 : -1;
  }
  const bool up = votes >= 0;
  record.r_amplitudes.resize(nb);
  for (size_t i = 0; i < nb; ++i) record.r_amplitudes[i] = up ? hi[i] : lo[i];
  record.beat_source += " (R amplitudes from " + source + ")";
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Generic WFDB record
// ---------------------------------------------------------------------------------------------

namespace {

bool istarts_with(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  return true;
}

// Index of the ECG signal of a header ("ECG", "ECG II", "EKG"), or -1.
int find_ecg_signal(const WfdbHeader& h) {
  for (size_t i = 0; i < h.signals.size(); ++i) {
    std::string_view d = h.signals[i].description;
    if (istarts_with(d, "ecg") || istarts_with(d, "ekg")) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

Record load_wfdb_record(const std::string& record_path, const LoadOptions& options) {
  const std::string base = detail::strip_record_extension(record_path);
  const std::string dir = wfdb_directory(base);
  const std::string hea = base + ".hea";
  if (!detail::file_exists(hea)) throw Error(fmt::format("{}: header {} not found", base, hea));
  WfdbHeader header = read_wfdb_header(hea);
  const double fs = header.sampling_frequency;

  Record r;
  r.id = detail::file_name(base);
  r.database = Database::Wfdb;
  r.path = record_path;
  r.meta.night = r.id;

  // Signals as listed; the sample data only when asked for (and present).
  const bool files_present = WfdbSignalReader::signal_files_present(header, dir);
  for (const WfdbSignalSpec& s : header.signals) {
    SignalChannel c;
    c.name = s.description.empty() ? s.file_name : s.description;
    c.units = s.units;
    c.fs_hz = fs;
    c.num_samples = header.num_samples.value_or(0);
    c.file = s.file_name;
    c.present = detail::file_exists(detail::join_path(dir, s.file_name));
    r.signals.push_back(std::move(c));
  }
  std::optional<WfdbSignalReader> reader;
  if (files_present && !header.signals.empty()) {
    reader.emplace(header, dir);
    for (SignalChannel& c : r.signals) c.num_samples = reader->num_samples();
  }

  // Duration: the header's sample count, else the signal files' (see WfdbSignalReader).
  if (header.num_samples && *header.num_samples > 0) {
    r.duration_s = static_cast<double>(*header.num_samples) / fs;
  } else if (reader) {
    r.duration_s = static_cast<double>(reader->num_samples()) / fs;
  }

  // Beats: the first beat annotation file present.
  std::string beat_file;
  for (const char* ext : {"qrs", "ecg", "atr"}) {
    std::string p = base + "." + ext;
    if (detail::file_exists(p)) { beat_file = p; break; }
  }
  const int ecg = find_ecg_signal(header);
  const bool ecg_present = reader && ecg >= 0;
  if (!beat_file.empty() && !(options.detect_qrs && ecg_present)) {
    std::vector<WfdbAnnotation> anns = read_wfdb_annotations(beat_file);
    r.beat_times_s.reserve(anns.size());
    int64_t last = -1;
    for (const WfdbAnnotation& a : anns) {
      if (!is_beat_annotation(a.code)) { ++r.non_beat_annotations; continue; }
      if (a.sample < 0 || a.sample < last)
        throw Error(fmt::format("{}: beat annotation at sample {} is {} (times must not decrease)",
                                beat_file, a.sample, a.sample < 0 ? "negative" : "before the previous one"));
      if (a.sample == last) continue;  // two beat labels at one sample: one beat
      last = a.sample;
      r.beat_times_s.push_back(static_cast<double>(a.sample) / fs);
    }
    r.beat_fs_hz = fs;
    r.beat_source = detail::file_name(beat_file);
    if (r.duration_s <= 0 && !anns.empty()) {
      r.duration_s = static_cast<double>(anns.back().sample + 1) / fs;
      r.notes.push_back("no sample count in the header: duration taken from the last beat annotation");
    }
  }
  if (ecg_present && (r.beat_times_s.empty() || options.detect_qrs || options.r_amplitudes)) {
    const bool detect = r.beat_times_s.empty() || options.detect_qrs;
    std::vector<float> x = reader->read_physical(ecg);
    detail::beats_from_ecg(r, x, fs, detail::file_name(detail::join_path(dir, header.signals[ecg].file_name)) +
                                         " (" + header.signals[ecg].description + ")",
                           detect, options.r_amplitudes);
  }
  if (r.beat_times_s.empty()) {
    if (ecg >= 0 && !ecg_present)
      r.notes.push_back(fmt::format("no beat annotation (.qrs/.ecg/.atr) and the ECG file {} is absent",
                                    header.signals[ecg].file_name));
    else if (ecg < 0)
      r.notes.push_back("no beat annotation (.qrs/.ecg/.atr) and no ECG signal");
  }
  if (!files_present && !header.signals.empty())
    r.notes.push_back(fmt::format("signal file {} absent: signals listed, not read",
                                  header.signals[0].file_name));

  // Other signals' samples on request.
  if (options.load_signals && reader) {
    for (int s = 0; s < static_cast<int>(header.signals.size()); ++s) {
      if (s == ecg) continue;
      r.signals[s].samples = reader->read_physical(s);
    }
  }

  // Windows.
  const std::string apn = base + ".apn", st = base + ".st";
  const bool has_apn = detail::file_exists(apn), has_st = detail::file_exists(st);
  LoadOptions::Windows kind = options.windows;
  if (kind == LoadOptions::Windows::Auto)
    kind = has_apn || !has_st ? LoadOptions::Windows::Minutes : LoadOptions::Windows::Epochs;
  if (kind == LoadOptions::Windows::Minutes) {
    if (has_apn) {
      r.windows = apnea_windows_from_annotations(detail::read_label_annotations(apn), fs, r.duration_s, apn);
      r.label_source = detail::file_name(apn);
    } else {
      r.windows = unlabelled_windows(r.duration_s, 60.0);
    }
  } else {
    if (has_st) {
      r.windows = slpdb_windows_from_annotations(detail::read_label_annotations(st), fs, r.duration_s, st, &r.notes);
      r.label_source = detail::file_name(st);
    } else {
      r.windows = unlabelled_windows(r.duration_s, kSlpdbEpochSeconds);
    }
  }
  if (r.duration_s <= 0) throw Error(fmt::format("{}: record length unknown or zero (header {})", base, hea));
  return r;
}

// ---------------------------------------------------------------------------------------------
// Detection and loading
// ---------------------------------------------------------------------------------------------

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_ucddb_name(const std::string& id) {
  if (!istarts_with(id, "ucddb") || id.size() <= 5) return false;
  return std::all_of(id.begin() + 5, id.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

std::vector<UcddbSubject> ucddb_subjects_in(const std::string& dir) {
  std::string p = detail::join_path(dir, "SubjectDetails.csv");
  if (!detail::file_exists(p)) return {};
  return read_ucddb_subjects(p);
}

}  // namespace

Record load_record(const std::string& path, const LoadOptions& options) {
  // EDF files.
  if (ends_with(path, ".rec") || ends_with(path, ".edf")) {
    if (!detail::file_exists(path)) throw Error(fmt::format("{}: no such file", path));
    std::string base = path.substr(0, path.size() - 4);
    std::string id = detail::file_name(base);
    if (is_ucddb_name(id) || detail::file_exists(base + "_stage.txt")) {
      std::vector<UcddbSubject> subjects = ucddb_subjects_in(wfdb_directory(base));
      return load_ucddb_record(path, subjects.empty() ? nullptr : &subjects, options);
    }
    return load_ucddb_record(path, nullptr, options);  // a generic EDF: same reading, no labels
  }
  const std::string base = detail::strip_record_extension(path);
  const std::string dir = wfdb_directory(base);
  if (detail::file_exists(base + ".hea")) {
    if (detail::file_exists(base + ".st") && !detail::file_exists(base + ".apn"))
      return load_slpdb_record(base, options);
    const std::string table_path = detail::join_path(dir, "additional-information.txt");
    const bool table = detail::file_exists(table_path);
    if (table || detail::file_exists(base + ".apn")) {
      ApneaEcgTable t;
      if (table) t = read_apnea_ecg_table(table_path);
      return load_apnea_ecg_record(base, table ? &t : nullptr, options);
    }
    return load_wfdb_record(base, options);
  }
  if (detail::file_exists(base + "_stage.txt") || detail::file_exists(base + ".rec")) {
    std::vector<UcddbSubject> subjects = ucddb_subjects_in(dir);
    return load_ucddb_record(base, subjects.empty() ? nullptr : &subjects, options);
  }
  throw Error(fmt::format("{}: no such record (looked for {}.hea, {}_stage.txt, {}.rec)", path, base,
                          base, base));
}

Database detect_database(const std::string& directory) {
  std::error_code ec;
  if (!fs::is_directory(directory, ec)) throw Error(fmt::format("{}: not a directory", directory));
  auto has = [&](const std::string& name) { return detail::file_exists(detail::join_path(directory, name)); };
  if (has("additional-information.txt")) return Database::ApneaEcg;
  if (has("SubjectDetails.csv")) return Database::Ucddb;
  bool st = false, apn = false, stage = false, hea = false;
  for (const auto& e : fs::directory_iterator(directory, ec)) {
    const std::string n = e.path().filename().string();
    if (ends_with(n, ".st")) st = true;
    else if (ends_with(n, ".apn")) apn = true;
    else if (ends_with(n, "_stage.txt")) stage = true;
    else if (ends_with(n, ".hea")) hea = true;
  }
  if (apn) return Database::ApneaEcg;
  if (st) return Database::Slpdb;
  if (stage) return Database::Ucddb;
  if (hea) return Database::Wfdb;
  throw Error(fmt::format("{}: cannot tell which database this is (no .hea, .apn, .st, _stage.txt, "
                          "additional-information.txt or SubjectDetails.csv)", directory));
}

namespace {

std::vector<std::string> read_records_file(const std::string& path) {
  std::string text = sleepnet::data::detail::read_file(path, "RECORDS list", int64_t{1} << 24);
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (std::string_view line : sleepnet::data::detail::split_lines(text)) {
    std::string_view t = sleepnet::data::detail::trim(line);
    if (t.empty() || t[0] == '#') continue;
    std::string id(t);
    if (id.find_first_of(" \t") != std::string::npos)
      throw Error(fmt::format("{}: record name {} contains white space", path, sleepnet::data::detail::quote(t)));
    if (seen.insert(id).second) out.push_back(id);
  }
  return out;
}

bool is_apnea_ecg_respiration_record(const std::string& id) {
  return ends_with(id, "r") && id != apnea_ecg_night(id);
}

// A short reason for a skipped record whose files are absent, or "" when the main file exists.
std::string absent_reason(Database db, const std::string& dir, const std::string& id) {
  const std::string base = detail::join_path(dir, id);
  if (db == Database::Ucddb) {
    if (!detail::file_exists(base + "_stage.txt") && !detail::file_exists(base + ".rec"))
      return fmt::format("files absent ({}_stage.txt, {}.rec)", id, id);
    return "";
  }
  if (!detail::file_exists(base + ".hea")) return fmt::format("files absent ({}.hea)", id);
  return "";
}

}  // namespace

DatabaseLoad load_database(const std::string& directory, const DatabaseOptions& options) {
  DatabaseLoad out;
  out.directory = directory;
  out.database = detect_database(directory);

  std::vector<std::string> ids = options.records;
  if (ids.empty()) {
    const std::string records = detail::join_path(directory, "RECORDS");
    if (detail::file_exists(records)) {
      ids = read_records_file(records);
    } else if (out.database == Database::Ucddb) {
      std::set<std::string> found;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(directory, ec)) {
        std::string n = e.path().filename().string();
        if (ends_with(n, "_stage.txt")) n = n.substr(0, n.size() - 10);
        else if (ends_with(n, ".rec")) n = n.substr(0, n.size() - 4);
        else continue;
        if (is_ucddb_name(n)) found.insert(n);
      }
      ids.assign(found.begin(), found.end());
    } else {
      throw Error(fmt::format("{}: no RECORDS file (and no record list given)", directory));
    }
  }

  // Database-wide tables: parsed once; a malformed table is an Error (not a per-record warning).
  ApneaEcgTable table;
  bool have_table = false;
  std::vector<UcddbSubject> subjects;
  if (out.database == Database::ApneaEcg) {
    const std::string p = detail::join_path(directory, "additional-information.txt");
    if (detail::file_exists(p)) { table = read_apnea_ecg_table(p); have_table = true; }
  } else if (out.database == Database::Ucddb) {
    subjects = ucddb_subjects_in(directory);
  }

  for (const std::string& id : ids) {
    if (out.database == Database::ApneaEcg && !options.respiration_records &&
        is_apnea_ecg_respiration_record(id))
      continue;
    std::string reason = absent_reason(out.database, directory, id);
    if (!reason.empty()) {
      out.warnings.push_back(fmt::format("{}: skipped: {}", id, reason));
      continue;
    }
    const std::string base = detail::join_path(directory, id);
    try {
      Record r;
      switch (out.database) {
        case Database::ApneaEcg:
          r = load_apnea_ecg_record(base, have_table ? &table : nullptr, options.load);
          break;
        case Database::Slpdb: r = load_slpdb_record(base, options.load); break;
        case Database::Ucddb:
          r = load_ucddb_record(base, subjects.empty() ? nullptr : &subjects, options.load);
          break;
        default: r = load_record(base, options.load); break;
      }
      if (options.require_beats && !r.has_beats()) {
        std::string why = r.notes.empty() ? "no beats" : r.notes.front();
        out.warnings.push_back(fmt::format("{}: skipped: no beats ({})", id, why));
        continue;
      }
      out.records.push_back(std::move(r));
    } catch (const std::exception& e) {
      out.warnings.push_back(fmt::format("{}: skipped: {}", id, e.what()));
    }
  }
  return out;
}

}  // namespace sleepnet::data
