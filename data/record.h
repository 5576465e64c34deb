// record.h: one model of a sleep recording for every database sleepnet reads, and the loaders that
// fill it (a single record, or a whole database directory).
//
// A Record is what the rest of the program needs from a night, whatever database it came from:
//
//     id, database, duration_s                 "a01", ApneaEcg, 29570 s
//     beats                                    R-peak times (s) from a beat annotation file (.qrs,
//                                              .ecg, .atr: beat codes only) or from the QRS detector
//                                              on the raw ECG; R amplitudes when the ECG is there
//     signals                                  the other channels of the recording (respiration,
//                                              SpO2, ...): name, units, rate, and the samples when
//                                              asked for (LoadOptions::load_signals)
//     windows                                  the labelled windows: Apnea-ECG minutes (60 s) or
//                                              30-s sleep epochs, with an apnea label (1/0/-1) and a
//                                              sleep stage / sleep-wake label (-1 = unknown)
//     meta                                     reference AHI and its source, class, age, sex, and
//                                              the keys that say which records share a subject
//
// The database adapters (apnea_ecg.h, slpdb.h, ucddb.h) fill it; `load_record` picks the adapter
// from the files next to a record path; `load_database` loads every record of a directory and
// turns a record whose files are absent into one warning line instead of an error.
//
// Every time is in seconds from the record start. Labels follow one convention everywhere:
//     apnea  1 = the window holds apnea or hypopnea, 0 = it does not, -1 = not scored / unknown
//     stage  StageLabel (Unknown = -1 when not scored)
//     sleep  1 = asleep (stages 1-4, REM), 0 = awake, -1 = unknown (unscored, movement, artefact)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/signal.h"
#include "data/wfdb_annotation.h"

namespace sleepnet::data {

enum class Database {
  ApneaEcg,  // PhysioNet Apnea-ECG (a01..c10, x01..x35, respiration records a01r, a01er)
  Slpdb,     // MIT-BIH Polysomnographic Database
  Ucddb,     // St. Vincent's / UCD Sleep Apnea Database
  Wfdb,      // any other WFDB record (synthetic records, user recordings)
  Edf,       // any other EDF file
};
std::string_view database_name(Database db);  // "apnea-ecg", "slpdb", "ucddb", "wfdb", "edf"

// Sleep stages in Rechtschaffen & Kales terms (what slpdb and UCDDB score).
// (Named StageLabel, not SleepStage: data/synth.h uses that name for its generator's stages.)
enum class StageLabel : int8_t {
  Unknown = -1,        // not scored
  Wake = 0,
  S1 = 1,
  S2 = 2,
  S3 = 3,
  S4 = 4,
  REM = 5,
  Movement = 6,        // slpdb MT (movement time)
  Artefact = 7,        // UCDDB code 6
  Indeterminate = 8,   // UCDDB code 7
  Undocumented = 9,    // UCDDB code 8 (occurs in ucddb008 and ucddb024; meaning not documented)
};
std::string_view stage_label_name(StageLabel s);  // "W", "S1".."S4", "REM", "MT", "artefact", ...
// 1 for S1-S4 and REM, 0 for Wake, -1 otherwise.
int sleep_wake_of(StageLabel s);

// One scored window.
struct Window {
  double start_s = 0.0;       // from the record start
  double duration_s = 0.0;    // 60 (Apnea-ECG minute) or 30 (sleep epoch)
  int8_t apnea = -1;          // 1 / 0 / -1 (see the top of this file)
  StageLabel stage = StageLabel::Unknown;
  int8_t sleep = -1;          // sleep_wake_of(stage), or 1/0/-1 from a sleep-wake-only source
  int16_t events = 0;         // respiratory events scored in the window (slpdb tokens, UCDDB events)
  std::string note;           // the source annotation as written ("A", "2 OA X", "3"), for `info`
};

// A channel of the recording other than the one the beats came from (or including it, for `info`).
struct SignalChannel {
  std::string name;           // "Resp C", "SpO2", "ECG", "Flow"
  std::string units;          // "mV", "%", "l"
  double fs_hz = 0.0;
  int64_t num_samples = 0;    // per the header
  std::string file;           // the file holding it ("a01r.dat", "ucddb002.rec")
  bool present = false;       // the file exists
  std::vector<float> samples; // physical units; filled only with LoadOptions::load_signals
};

struct RecordMeta {
  std::optional<double> reference_ahi;  // events per hour of sleep, from the database's tables
  std::string ahi_source;               // where reference_ahi comes from (file, or how computed)
  std::string record_class;             // Apnea-ECG "A"/"B"/"C"; others: AHI severity
                                        // ("normal", "mild", "moderate", "severe"), or ""
  std::optional<int> age;
  std::string sex;                      // "M", "F" or ""
  std::optional<double> height_cm, weight_kg;
  // Records of one night share `night` (a01, a01r and a01er are one night: "a01"); records of
  // one person share `subject` (Apnea-ECG a01 and a14 have identical age, sex, height and
  // weight). Splits keep records of one group together (dataset.h).
  std::string night;
  std::string subject;
  // Apnea-ECG: the table's counts, for checks (`info` prints them next to what was read).
  std::optional<int> table_minutes, table_apnea_minutes, table_normal_minutes;
};

struct Record {
  std::string id;                       // "a01", "slp37", "ucddb002"
  Database database = Database::Wfdb;
  std::string path;                     // the record path as given ("dir/a01", "dir/x.rec")
  double duration_s = 0.0;

  // Beats: R-peak times from the record start, increasing. r_amplitudes is empty (no ECG) or
  // holds one value per beat (mV of the band-passed ECG at the R peak).
  std::vector<double> beat_times_s;
  std::vector<float> r_amplitudes;
  double beat_fs_hz = 0.0;              // clock of the beat times (annotation or ECG rate)
  std::string beat_source;              // "a01.qrs", "slp01a.ecg", "QRS detector on a01.dat (ECG)"
  int64_t non_beat_annotations = 0;     // artifact marks etc. in the beat annotation file

  std::vector<SignalChannel> signals;   // every signal the header/EDF lists
  std::vector<Window> windows;          // in time order
  std::string label_source;             // "a01.apn", "slp01a.st", "ucddb002_stage.txt", "" (none)
  RecordMeta meta;
  std::vector<std::string> notes;       // things worth knowing ("a01r.dat absent: no signals")

  int64_t num_beats() const { return static_cast<int64_t>(beat_times_s.size()); }
  bool has_beats() const { return beat_times_s.size() >= 2; }
  // Split group: meta.subject if known, else meta.night, else id.
  std::string group() const;
  // The beat series (RR intervals and amplitudes) before cleaning (data/signal.h).
  BeatSeries beat_series() const;
};

struct LoadOptions {
  // Read the samples of the non-ECG signals (respiration, SpO2) into SignalChannel::samples.
  bool load_signals = false;
  // When the raw ECG is present: detect beats with the QRS detector even if a beat annotation
  // file exists (default: use the annotation file, and the ECG only for R amplitudes).
  bool detect_qrs = false;
  // When the raw ECG is present: measure R amplitudes at the beats (costs a pass over the ECG).
  bool r_amplitudes = true;
  // Windows of a WFDB record that has both label files (synthetic records write .apn and .st):
  // Auto = minutes from .apn if present, else 30-s epochs from .st, else unlabelled minutes;
  // Minutes / Epochs force the kind (unlabelled when its label file is absent). The Apnea-ECG
  // adapter's Auto is Minutes, slpdb's is Epochs.
  enum class Windows { Auto, Minutes, Epochs };
  Windows windows = Windows::Auto;
};

// Loads one record, choosing the adapter from the files at `path`:
//   "dir/x.rec" / "dir/x.edf"          EDF: UCDDB when dir/x_stage.txt exists or x is "ucddbNNN"
//   "dir/ucddbNNN" with _stage.txt     UCDDB
//   "dir/x" with dir/x.hea:            slpdb when dir/x.st exists; Apnea-ECG when dir/x.apn exists
//                                      or the directory holds additional-information.txt;
//                                      otherwise a generic WFDB record (beats from .qrs/.ecg/.atr
//                                      or the ECG, windows = unlabelled minutes)
// A trailing ".hea" (or .qrs, .apn, .st, .ecg, .dat) is stripped. Throws sleepnet::Error naming
// the path and the files looked for when nothing is there, or the file and field when a file is
// malformed.
Record load_record(const std::string& path, const LoadOptions& options = {});

// A WFDB record of no particular database (synthetic records, user recordings): header, beats from
// .qrs / .ecg / .atr (the first present) or the ECG, windows per LoadOptions::windows from .apn
// or .st. The Apnea-ECG and slpdb adapters are this plus their metadata.
Record load_wfdb_record(const std::string& record_path, const LoadOptions& options = {});

struct DatabaseOptions {
  LoadOptions load{};
  // Record ids to load; empty = the directory's RECORDS file (for UCDDB, which has none: every
  // ucddbNNN with a stage file or an EDF).
  std::vector<std::string> records{};
  // Apnea-ECG respiration records (a01r, a01er...) are the same nights as a01...; they are
  // skipped unless asked for (their ECG would duplicate a01's windows).
  bool respiration_records = false;
  // A record with no beats (no beat annotation and no raw ECG) is skipped with a warning.
  bool require_beats = true;
};

struct DatabaseLoad {
  Database database = Database::Wfdb;
  std::string directory;
  std::vector<Record> records;          // in RECORDS order
  std::vector<std::string> warnings;    // one line per skipped record: "x01: skipped: ..."
};

// Which database a directory holds (from its files); throws when it cannot tell.
Database detect_database(const std::string& directory);
// Loads the records of a database directory. A record whose files are absent, or cannot be read,
// becomes one warning and is skipped; a malformed database-wide table (Apnea-ECG
// additional-information.txt, UCDDB SubjectDetails.csv) or a directory with no RECORDS (and
// no `records` option) is an Error.
DatabaseLoad load_database(const std::string& directory, const DatabaseOptions& options = {});

// Window label counts of a record, for `info` and the tests.
struct LabelCounts {
  int64_t windows = 0, apnea = 0, normal = 0, apnea_unknown = 0;
  int64_t sleep = 0, wake = 0, sleep_unknown = 0;
  int64_t stage[11] = {};  // by StageLabel value + 1 (index 0 = Unknown)
  int64_t events = 0;      // sum of Window::events
};
LabelCounts count_labels(const Record& record);

// Unlabelled windows of `length_s` covering [0, duration_s) (whole windows only; labels -1), e.g.
// the minutes of a record without .apn.
std::vector<Window> unlabelled_windows(double duration_s, double length_s);

// Severity class of an AHI: "normal" (< 5), "mild" (< 15), "moderate" (< 30), "severe".
std::string_view ahi_severity(double ahi);

// Helpers shared by the adapters (apnea_ecg.cpp, slpdb.cpp, ucddb.cpp, info.cpp).
namespace detail {
// Strips one of the extensions a record path may carry (.hea .qrs .apn .st .ecg .atr .dat).
std::string strip_record_extension(const std::string& path);
bool file_exists(const std::string& path);
std::string file_name(const std::string& path);  // "dir/a01.qrs" -> "a01.qrs"
std::string join_path(const std::string& dir, const std::string& name);
// Annotations of a label file (.apn, .st). Label files must end with the end-of-file marker
// (every PhysioNet and sleepnet-written file does): without it the file was cut, which would
// silently drop the end of the night, so it is an Error naming the file.
std::vector<WfdbAnnotation> read_label_annotations(const std::string& path);
// Beats of an ECG (physical units, fs_hz): QRS detection (`detect`) or only R amplitudes at the
// given beats. Fills record.beat_times_s / r_amplitudes / beat_fs_hz / beat_source.
void beats_from_ecg(Record& record, const std::vector<float>& ecg, double fs_hz,
                    const std::string& source, bool detect, bool amplitudes);
}  // namespace detail

}  // namespace sleepnet::data
