// ucddb_text.h: the text files of the St. Vincent's University Hospital / University College Dublin
// Sleep Apnea Database (UCDDB): per-epoch sleep stages, respiratory event lists, subject table.
//
//   ucddbNNN_stage.txt      one stage code per line, one line per 30-s epoch from the PSG start:
//                           0 wake, 1 REM, 2..5 stages 1..4, 6 artefact, 7 indeterminate; 8 occurs
//                           (ucddb008, ucddb024) but is undocumented: kept as UcddbStage::Unknown8.
//   ucddbNNN_respevt.txt    fixed-width table of respiratory events; columns located from the
//                           header line: Time (clock hh:mm:ss), Type (APNEA-O, APNEA-C, APNEA-M,
//                           HYP-O, HYP-C, HYP-M, PB, ...), PB/CS, Duration (s), Low (SpO2 %),
//                           %Drop, Snore, Arousal, B/T Rate, Change. Clock times become seconds
//                           from the PSG start, wrapping past midnight.
//   SubjectDetails.csv      the database's subject table as CSV (a header line, one row per study).
//
// Parsers take text from memory; read_* wrappers read files. Errors are sleepnet::Error naming the
// source, the line and the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sleepnet::data {

enum class UcddbStage : int8_t {
  Wake = 0,
  REM = 1,
  Stage1 = 2,
  Stage2 = 3,
  Stage3 = 4,
  Stage4 = 5,
  Artefact = 6,
  Indeterminate = 7,
  Unknown8 = 8,  // occurs in the files, meaning undocumented
};
// "W", "R", "S1", "S2", "S3", "S4", "artefact", "indeterminate", "unknown8".
std::string_view ucddb_stage_name(UcddbStage stage);
inline constexpr double kUcddbEpochSeconds = 30.0;

// One code per non-blank line; anything other than an integer 0..8 is an error naming the line.
std::vector<UcddbStage> parse_ucddb_stages(std::string_view text, const std::string& source);
std::vector<UcddbStage> read_ucddb_stages(const std::string& path);

enum class UcddbEventKind {
  ApneaObstructive,     // APNEA-O
  ApneaCentral,         // APNEA-C
  ApneaMixed,           // APNEA-M
  HypopneaObstructive,  // HYP-O
  HypopneaCentral,      // HYP-C
  HypopneaMixed,        // HYP-M
  PeriodicBreathing,    // PB
  Other,                // anything else (type text kept in UcddbRespEvent::type)
};
bool ucddb_is_apnea(UcddbEventKind kind);
bool ucddb_is_hypopnea(UcddbEventKind kind);

struct UcddbRespEvent {
  std::string clock;             // as written, "23:15:42"
  double onset_seconds = 0.0;    // seconds from the PSG start (midnight wrap handled)
  std::string type;              // as written, "APNEA-O"
  UcddbEventKind kind = UcddbEventKind::Other;
  std::string pb_cs;             // PB/CS column (often empty)
  double duration_seconds = 0.0;
  std::optional<double> low_spo2;      // % (absent when the cell is empty or "-")
  std::optional<double> drop_percent;  // %Drop
  std::string snore;             // as written (often empty)
  std::string arousal;           // as written (often empty)
  std::optional<double> rate;    // B/T Rate column, when present
  std::optional<double> change;  // Change column, when present
  int line = 0;                  // line number in the source (1-based)
};

// `psg_start_seconds`: PSG start as seconds after midnight (from the subject table). An event clock
// earlier than the start by more than 12 h is taken as the next day; an event clock before the
// start but within 12 h (clock skew, events scored just before the start) is an error.
std::vector<UcddbRespEvent> parse_ucddb_respevt(std::string_view text, const std::string& source,
                                                double psg_start_seconds);
std::vector<UcddbRespEvent> read_ucddb_respevt(const std::string& path, double psg_start_seconds);

struct UcddbSubject {
  int serial = 0;                 // S/No
  std::string study;              // "UCDDB002" (as written)
  double height_cm = 0.0;
  double weight_kg = 0.0;
  std::string gender;             // "M" / "F"
  std::string psg_start;          // as written, "23:07:50"
  double psg_start_seconds = 0.0; // seconds after midnight
  double ahi = 0.0;               // PSG AHI
  double bmi = 0.0;
  int age = 0;
  double epworth = 0.0;
  double study_duration_hours = 0.0;
  double sleep_efficiency_percent = 0.0;
  int64_t edf_blocks = 0;         // "No of data blocks in EDF": length of the .rec in 1-s records
};
// Columns are located by their header names (order-independent); a missing column or a
// non-numeric cell is an error naming the line and the column.
std::vector<UcddbSubject> parse_ucddb_subjects(std::string_view csv, const std::string& source);
std::vector<UcddbSubject> read_ucddb_subjects(const std::string& path);
// Subject whose study matches `record` case-insensitively ("ucddb002" matches "UCDDB002"), or nullptr.
const UcddbSubject* find_ucddb_subject(const std::vector<UcddbSubject>& subjects, std::string_view record);

// "hh:mm:ss" (or "h:mm:ss", "hh:mm") -> seconds after midnight; nullopt when malformed or out of range.
std::optional<double> parse_clock_seconds(std::string_view text);

}  // namespace sleepnet::data
