// edf.h: EDF and EDF+ files (European Data Format): header model, reader and writer.
//
// Layout of a file (all header fields are ASCII, left-aligned, space-padded):
//
//     fixed header, 256 bytes:  version(8) patient(80) recording(80) startdate(8, dd.mm.yy)
//                               starttime(8, hh.mm.ss) header_bytes(8) reserved(44, "EDF+C"/"EDF+D")
//                               num_records(8, -1 = unknown) record_duration(8, s) num_signals(4)
//     per-signal header, 256 bytes per signal, stored field by field for all signals:
//                               label(16) transducer(80) physical_dimension(8) physical_min(8)
//                               physical_max(8) digital_min(8) digital_max(8) prefiltering(80)
//                               samples_per_record(8) reserved(32)
//     data records:             for each record, for each signal, samples_per_record int16 (LE)
//
// Signal s has sampling rate samples_per_record[s] / record_duration, and
//     physical = physical_min + (digital - digital_min) * (physical_max - physical_min)
//                                                       / (digital_max - digital_min).
// EDF+ adds "EDF Annotations" signals holding time-stamped annotation lists (TALs), parsed by
// EdfReader::read_annotations().
//
// Tolerated quirks (each adds a line to EdfHeader::warnings, never printed): start date or time
// written with ':' or another separator instead of '.' (UCDDB's .rec files write "23:07:50"),
// numeric fields with leading spaces or trailing NULs, a version field other than "0", a
// num_records of -1 (derived from the file size), a file longer than its records. Errors (a
// sleepnet::Error naming the file and the field): header_bytes != 256 * (1 + num_signals), a
// non-numeric or absurd field, digital_min >= digital_max, a data size that disagrees with
// num_records, a truncated last record.
//
// The parser takes bytes from memory (fuzzers, tests); EdfReader::open() reads a file and fetches
// only the records a call asks for.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sleepnet::data {

struct EdfSignal {
  std::string label;               // trimmed, e.g. "ECG", "SpO2", "EDF Annotations"
  std::string transducer;
  std::string physical_dimension;  // "uV", "%", ...
  double physical_min = 0.0;
  double physical_max = 0.0;
  int32_t digital_min = -32768;
  int32_t digital_max = 32767;
  std::string prefiltering;
  int64_t samples_per_record = 0;
  std::string reserved;

  bool is_annotation() const { return label == "EDF Annotations"; }
  // physical = digital * scale() + offset()
  double scale() const;
  double offset() const;
  double to_physical(int32_t digital) const { return digital * scale() + offset(); }
};

struct EdfHeader {
  std::string version = "0";
  std::string patient;
  std::string recording;
  std::string start_date;  // as written (trimmed), normally "dd.mm.yy"
  std::string start_time;  // as written (trimmed), normally "hh.mm.ss"
  int start_day = 1, start_month = 1, start_year = 1985;  // year with century (85..99 -> 19xx)
  int start_hour = 0, start_minute = 0, start_second = 0;
  int64_t header_bytes = 256;
  std::string reserved;          // "EDF+C" / "EDF+D" for EDF+
  int64_t num_records = 0;       // resolved: from the file size when written as -1
  bool num_records_given = true; // false when the file wrote -1
  double record_duration = 1.0;  // seconds per data record (0 allowed only for annotation-only files)
  std::vector<EdfSignal> signals;
  std::vector<std::string> warnings;  // tolerated quirks, one line each, naming the file and field

  bool edf_plus() const { return reserved.rfind("EDF+", 0) == 0; }
  bool discontinuous() const { return reserved.rfind("EDF+D", 0) == 0; }
  int num_signals() const { return static_cast<int>(signals.size()); }
  int64_t record_bytes() const;  // bytes of one data record: 2 * sum(samples_per_record)
  double sampling_rate(int signal) const;  // samples per second of a signal
  double duration_seconds() const { return num_records * record_duration; }
  double start_seconds_of_day() const { return start_hour * 3600.0 + start_minute * 60.0 + start_second; }
  // Index of the signal whose label equals `label` (trimmed; exact first, then case-insensitive), or -1.
  int find_signal(std::string_view label) const;
};

// One EDF+ annotation from a TAL: onset in seconds from the file start, duration (-1 when absent).
struct EdfAnnotation {
  double onset = 0.0;
  double duration = -1.0;
  std::string text;
};

// Parses the header from `bytes` (at least the first 256 * (1 + num_signals) bytes of the file).
// `file_size` is the size of the whole file, used to resolve num_records = -1 and to check the data
// size (pass bytes.size() when `bytes` is the whole file).
EdfHeader parse_edf_header(std::string_view bytes, const std::string& source, int64_t file_size);

// An EdfReader opened from a file shares one stream between its calls: use one reader per thread.
class EdfReader {
 public:
  // Reads and checks the header of `path`; data records are read on demand.
  static EdfReader open(const std::string& path);
  // The same over a file held in memory (tests, fuzzers).
  static EdfReader from_bytes(std::string bytes, std::string source);

  const EdfHeader& header() const { return header_; }
  const std::string& source() const { return source_; }
  // Index of a signal by label (see EdfHeader::find_signal); throws naming the file and the labels.
  int signal_index(std::string_view label) const;

  // Digital values of `signal` for records [first_record, first_record + count); count -1 = to the end.
  // Result: count * samples_per_record values.
  std::vector<int16_t> read_digital(int signal, int64_t first_record = 0, int64_t count = -1) const;
  // The same in physical units.
  std::vector<float> read_physical(int signal, int64_t first_record = 0, int64_t count = -1) const;
  std::vector<float> read_physical(std::string_view label) const { return read_physical(signal_index(label)); }
  // All annotations of every "EDF Annotations" signal (EDF+), in file order. The per-record
  // time-keeping TALs (empty text) are not returned. Malformed TALs are an Error naming the record.
  std::vector<EdfAnnotation> read_annotations() const;

 private:
  EdfReader() = default;
  // Copies `n` bytes at `offset` of the file into `out`; throws if they are not there.
  void read_bytes(int64_t offset, int64_t n, char* out) const;

  std::string source_;
  EdfHeader header_;
  std::string memory_;                   // whole file when built from bytes
  std::shared_ptr<std::ifstream> file_;  // open file otherwise
  std::vector<int64_t> signal_offsets_;  // byte offset of each signal inside a data record
};

// The EDF bytes of `header` + digital data: header fields are written from `header` as given
// (start_date/start_time strings verbatim, so tests can write quirky files), header_bytes and
// num_records computed. digital[s] must hold num_records * samples_per_record values, with the
// same num_records for every signal; values outside [digital_min, digital_max] are an error.
std::string encode_edf(const EdfHeader& header, const std::vector<std::vector<int16_t>>& digital);
// Converts physical values with each signal's scaling (rounded, clamped to the digital range) and
// writes the file. physical[s].size() must be a multiple of samples_per_record, the same number of
// records for every signal.
void write_edf(const std::string& path, const EdfHeader& header,
               const std::vector<std::vector<float>>& physical);
// physical -> digital for one signal (rounded, clamped to [digital_min, digital_max]; NaN -> digital_min).
std::vector<int16_t> edf_physical_to_digital(const EdfSignal& signal, const std::vector<float>& physical);

}  // namespace sleepnet::data
