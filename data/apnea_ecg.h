// apnea_ecg.h: adapter for the PhysioNet Apnea-ECG Database (Penzel et al. 2000).
//
// What a record `dir/a01` is made of, and what this adapter takes from each file:
//
//   a01.hea    header: 1 signal (ECG, 100 Hz), the record length          -> duration, signals
//   a01.qrs    machine QRS annotations at the 100 Hz clock. Besides beats
//              (code N) the files hold artifact marks (code '|'): only
//              is_beat_annotation() codes become beats; the rest is counted -> beats
//   a01.apn    one annotation per minute from the record start: N = no
//              apnea, A = apnea (or hypopnea) in progress at the start of
//              the minute (PhysioNet's corrected description). Window k is
//              [60 k, 60 k + 60) s.                                     -> windows (apnea 1/0)
//   a01.dat    the raw ECG (only in the full download): R amplitudes at
//              the .qrs beats, or beats from the QRS detector when there
//              is no .qrs (or LoadOptions::detect_qrs)                   -> beats, amplitudes
//   additional-information.txt (one per directory): per-record length,
//              apnea minutes, AI, HI, AHI, age, sex, height, weight      -> meta
//
// Records without .apn (the test set x01..x35 as distributed) get unlabelled windows: every whole
// minute of the record, apnea = -1. Respiration records (a01r: Resp C, Resp A, Resp N, SpO2;
// a01er: ECG + respiration) are read the same way; their `meta.night` is the base record ("a01")
// so splits keep them with it.
//
// Class: the record name's letter for the learning set (a = apnea, b = borderline, c = control);
// for other names the Challenge's definition from the table's apnea minutes (A: >= 100 minutes,
// B: 5-99, C: < 5). Subject key: records whose table rows share age, sex, height and weight are
// taken as one person ("51/M/175/102": a01 and a14; a05, a10 and a20; b04 and c08 ...).
//
// Known differences between the files and the table (checked by tests/adapters_test.cpp): the
// table's Length and non-apnea count include one more (the final, partial) minute than the .apn
// files score, and c07 and c08 have fewer annotated minutes than the table lists (their signals
// are shorter). Apnea minutes agree exactly for all 35 learning records.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/record.h"

namespace sleepnet::data {

// One row of additional-information.txt.
struct ApneaEcgTableRow {
  std::string record;           // "a01"
  int minutes = 0;              // Length
  int normal_minutes = 0;       // non-apn
  int apnea_minutes = 0;        // apnea
  std::optional<int> hours_with_apnea;
  std::optional<double> ai, hi; // apnea index, hypopnea index
  double ahi = 0.0;
  std::optional<int> age;
  std::string sex;              // "M" / "F"
  std::optional<double> height_cm, weight_kg;
  int line = 0;                 // 1-based line in the file
};

struct ApneaEcgTable {
  std::string source;
  std::vector<ApneaEcgTableRow> rows;  // in file order
  const ApneaEcgTableRow* find(std::string_view record) const;  // nullptr when absent
};

// Parses the table. The header line is the one starting with "Record"; its column names
// (case-insensitive: Record, Length, non-apn, apnea, hours, AI, HI, AHI, Age, Sex, height, weight)
// locate the columns, so their order may change; Record, Length, non-apn, apnea and AHI are
// required. Lines before the header are prose. After it: blank lines, and lines that start with
// white space and hold no number (the units line "minutes minutes ..."), are skipped; every other
// line is a row and must have one cell per column (white-space separated), numbers where numbers
// belong, a unique record name, and apnea + non-apn == Length. A violation is an Error naming the
// file, the line, the column and what was expected.
ApneaEcgTable parse_apnea_ecg_table(std::string_view text, const std::string& source);
ApneaEcgTable read_apnea_ecg_table(const std::string& path);

// "A", "B" or "C" (see the top of this file); `row` may be null for names a/b/c + digits.
std::string apnea_ecg_class(std::string_view record, const ApneaEcgTableRow* row);
// "a01r" -> "a01", "a01er" -> "a01", "a01" -> "a01".
std::string apnea_ecg_night(std::string_view record);

// Windows from the annotations of a .apn file (`source` names it in errors): one 60-s window per
// annotation at its time (sample / fs_hz), code N -> apnea 0, A -> apnea 1. Any other code,
// times not increasing by at least 60 s, or a window starting at or after `duration_s` is an Error.
std::vector<Window> apnea_windows_from_annotations(const std::vector<WfdbAnnotation>& annotations,
                                                   double fs_hz, double duration_s,
                                                   const std::string& source);

// Loads `record_path` ("dir/a01"). `table` (may be null) supplies the metadata; pass
// read_apnea_ecg_table(dir + "/additional-information.txt") or let load_record find it.
// Errors: a missing header, a malformed file (named, with what was wrong), a .apn with codes other
// than N/A, windows out of order or beyond the record end, a .apn without its end marker
// (truncated).
Record load_apnea_ecg_record(const std::string& record_path, const ApneaEcgTable* table,
                             const LoadOptions& options = {});

}  // namespace sleepnet::data
