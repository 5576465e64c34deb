// wfdb_header.h: the WFDB header file (`.hea`) as a struct, its parser and its writer.
//
// A WFDB record `dir/a01` is described by the text file `dir/a01.hea`:
//
//     a01 1 100 2957000                                   <- record line
//     a01.dat 16 200 12 0 -12 5827 0 ECG                  <- one line per signal
//     # comments start with '#'
//
// Record line:  name[/segments] nsig [fs[/counter_fs[(base_counter)]] [nsamp [hh:mm:ss [dd/mm/yyyy]]]]
// Signal line:  file format[xspf][:skew][+offset] [gain[(baseline)][/units] [adc_res [adc_zero
//               [init_value [checksum [block_size [description...]]]]]]]
//
// Every field after the first two is optional, but positional: a field can only be present when all
// the fields before it are. Defaults follow the WFDB documentation (header(5)): fs 250 Hz, gain 200
// ADC units per physical unit (also when the gain is written as 0), baseline = ADC zero, units "mV",
// ADC resolution by format (12 for 212, 16 for 16, 8 for 80).
//
// Supported: single-segment records with signal formats 16, 212 and 80, one sample per frame, no
// skew, optional byte offset. Multi-segment records (`name/3`), other formats, several samples per
// frame and non-zero skew are refused with an Error naming the file, line and field. CRLF line endings,
// blank lines and comment lines anywhere are accepted.
//
// The parser takes the text from memory (so fuzzers and tests need no files); read_wfdb_header()
// is the file wrapper. Every error is a sleepnet::Error whose message names the source, the line
// number and the field, e.g. "a01.hea:2: signal 0 field 'format': unsupported format 311 ...".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sleepnet::data {

// One signal line of a header.
struct WfdbSignalSpec {
  std::string file_name;      // signal file, relative to the header's directory ("a01.dat")
  int format = 16;            // 16, 212 or 80
  int samples_per_frame = 1;  // only 1 is supported (parsed from the "x" suffix)
  int skew = 0;               // only 0 is supported (parsed from the ":" suffix)
  int64_t byte_offset = 0;    // bytes to skip at the start of the file (the "+" suffix)
  double gain = 200.0;        // ADC units per physical unit; 200 when absent or written as 0
  bool gain_given = false;    // false: gain was absent or 0 in the file (the default was used)
  int32_t baseline = 0;       // ADC value of physical 0; = adc_zero when not written
  std::string units = "mV";   // physical units ("mV", "mmHg", "l", ...)
  int adc_resolution = 0;     // bits; the format's default when absent or 0
  int32_t adc_zero = 0;       // ADC value in the middle of the input range
  int32_t initial_value = 0;  // first sample (informative for formats 16/212/80); = adc_zero if absent
  std::optional<int32_t> checksum;  // 16-bit sum of all samples, as written (signed or unsigned)
  int block_size = 0;         // 0 for ordinary files
  std::string description;    // rest of the line, may contain spaces ("EEG (C4-A1)")

  // physical = (adc - baseline) / gain
  double to_physical(int32_t adc) const { return (static_cast<double>(adc) - baseline) / gain; }
};

// The header's record line, its signals and comments.
struct WfdbHeader {
  std::string record_name;                // "slp01a"
  int num_signals = 0;
  double sampling_frequency = 250.0;      // samples per second per signal
  bool sampling_frequency_given = false;  // false: absent from the file, the default 250 was used
  double counter_frequency = 0.0;         // counter ticks per second; 0 when absent (= fs)
  double base_counter = 0.0;              // counter value of sample 0
  std::optional<int64_t> num_samples;     // samples per signal; absent (or written as 0): derive
                                          // from the signal file size (see WfdbSignalReader)
  std::optional<std::string> base_time;   // as written, "23:07:00" or "0:49:0"
  std::optional<std::string> base_date;   // as written, "19/1/1989"
  std::vector<WfdbSignalSpec> signals;    // num_signals entries, in file order
  std::vector<std::string> comments;      // comment lines without the leading '#' and one space

  // Parsed base time in seconds after midnight (hh*3600 + mm*60 + ss.sss); nullopt when absent.
  std::optional<double> base_time_seconds() const;
  // Index of the first signal whose description equals `description` (exact), or -1.
  int find_signal(std::string_view description) const;
};

// Largest sample count or signal count the parsers accept before calling a header absurd.
inline constexpr int64_t kWfdbMaxSamples = int64_t{1} << 40;  // ~1.1e12, many years at 1 kHz
inline constexpr int kWfdbMaxSignals = 4096;

// Parses header text. `source` names it in error messages (usually the file path).
WfdbHeader parse_wfdb_header(std::string_view text, const std::string& source);

// Reads `path`. `path` may be the .hea file or the record path without extension ("dir/a01").
WfdbHeader read_wfdb_header(const std::string& path);

// The header as text (LF line endings), such that parse_wfdb_header(format_wfdb_header(h)) == h
// for every field this model holds (checksum written when present, gain with baseline and units,
// comments at the end).
std::string format_wfdb_header(const WfdbHeader& header);
// Writes format_wfdb_header(header) to `path` (the .hea file or the record path without extension).
void write_wfdb_header(const std::string& path, const WfdbHeader& header);

// "dir/a01" or "dir/a01.hea" -> "dir/a01" (strips a trailing ".hea").
std::string wfdb_record_base(const std::string& path);
// Directory part of a path ("dir/a01" -> "dir", "a01" -> "."): where signal files are looked up.
std::string wfdb_directory(const std::string& path);

// Default ADC resolution (bits) of a supported format, or 0 for an unsupported one.
int wfdb_default_adc_resolution(int format);
// True for the formats this reader supports (16, 212, 80).
bool wfdb_format_supported(int format);

}  // namespace sleepnet::data
