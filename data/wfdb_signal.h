// wfdb_signal.h: WFDB signal files (`.dat`): reading sample ranges, physical units, checksums, writing.
//
// A record's signals live in one or more binary files named by the header's signal lines. Signals
// that share a file are interleaved frame by frame, in header order:
//
//     file a.dat with signals s0, s1:   s0[0] s1[0] s0[1] s1[1] s0[2] ...
//
// Sample encodings (WFDB signal(5)):
//   16   16-bit two's complement, little-endian (2 bytes per sample)
//   212  two 12-bit two's complement samples in 3 bytes: for the pair (a, b) of consecutive samples
//        in the file's sample stream, byte0 = a & 0xff, byte1 = ((b >> 8) & 0xf) << 4 | ((a >> 8) & 0xf),
//        byte2 = b & 0xff. An odd total ends with 2 bytes (WFDB) or 3 (some writers): both accepted.
//   80   8-bit offset binary: value = byte - 128
// The pairing of 212 runs over the file's interleaved stream, so a pair may hold samples of two
// different signals or frames.
//
// Invalid-sample markers (-32768 in 16, -2048 in 212, -128 in 80) come back unchanged from
// read_adc() and as NaN from read_physical().
//
// Checksum: the header's checksum is the sum of all of a signal's ADC samples modulo 2^16. It is
// verified whenever a whole signal is read (from = 0, to = num_samples) and by verify_checksums().
//
// Ranges are read with seeks and bounded chunks: reading [from, to) touches only the bytes of those
// frames, so a minute of an 8-hour recording costs a minute's worth of I/O.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/wfdb_header.h"

namespace sleepnet::data {

// Each read opens its own stream, so const calls may run from several threads at once.
class WfdbSignalReader {
 public:
  // Opens the signal files of `header`, looked up in `directory`. Checks that every file exists
  // and is large enough for num_samples (error naming the file, expected and actual size); when the
  // header has no sample count, derives it from the file sizes (the smallest over the files).
  WfdbSignalReader(WfdbHeader header, std::string directory);
  // Reads the header of `record_path` ("dir/a01" or "dir/a01.hea") and opens its signal files.
  static WfdbSignalReader open(const std::string& record_path);
  // True when every signal file named by the header exists in `directory` (no size check).
  static bool signal_files_present(const WfdbHeader& header, const std::string& directory);

  const WfdbHeader& header() const { return header_; }
  int num_signals() const { return static_cast<int>(header_.signals.size()); }
  int64_t num_samples() const { return num_samples_; }  // per signal
  double sampling_frequency() const { return header_.sampling_frequency; }
  // Index of the signal with this description (exact match); throws naming the record if absent.
  int signal_index(std::string_view description) const;

  // ADC values of signal `signal` for samples [from, to). 0 <= from <= to <= num_samples().
  std::vector<int32_t> read_adc(int signal, int64_t from, int64_t to) const;
  // (adc - baseline) / gain for samples [from, to); invalid-sample markers become NaN.
  std::vector<float> read_physical(int signal, int64_t from, int64_t to) const;
  // All samples of one signal, physical units (checksum verified).
  std::vector<float> read_physical(int signal) const { return read_physical(signal, 0, num_samples_); }
  // Every signal for samples [from, to): result[s] has to - from values.
  std::vector<std::vector<int32_t>> read_all_adc(int64_t from, int64_t to) const;

  // Reads every signal fully and compares with the header checksums; throws on the first mismatch
  // (naming the file, the signal, the header checksum and the computed one).
  void verify_checksums() const;

 private:
  struct FileGroup {
    std::string path;          // full path of the signal file
    int format = 16;
    int64_t byte_offset = 0;
    std::vector<int> signals;  // header indices of the signals in this file, in frame order
    int64_t file_size = 0;
  };
  // Reads frames [from, to) of `group` and hands every (signal position, frame, value) to `out`.
  void read_group(const FileGroup& group, int64_t from, int64_t to,
                  std::vector<std::vector<int32_t>*>& out) const;
  void check_signal_index(int signal, const char* what) const;

  WfdbHeader header_;
  std::string directory_;
  int64_t num_samples_ = 0;
  std::vector<FileGroup> groups_;
  std::vector<int> group_of_signal_;     // signal -> index into groups_
  std::vector<int> position_in_group_;   // signal -> position within its frame
};

// Sum of ADC values modulo 2^16 as WFDB defines the header checksum (returned in [-32768, 32767]).
int32_t wfdb_checksum(const std::vector<int32_t>& adc);
// True when two checksums agree modulo 2^16 (headers write them signed or unsigned).
bool wfdb_checksums_equal(int32_t a, int32_t b);

// Smallest and largest storable value of a format (16: [-32768, 32767], 212: [-2048, 2047],
// 80: [-128, 127]); the minimum is the invalid-sample marker.
int32_t wfdb_format_min(int format);
int32_t wfdb_format_max(int format);

// Physical values -> ADC: round(x * gain + baseline), clamped to [format_min + 1, format_max]
// (format_min is reserved for invalid samples; NaN maps to it).
std::vector<int32_t> wfdb_physical_to_adc(const std::vector<float>& physical, double gain,
                                          int32_t baseline, int format);

// Writes a record: one signal file per distinct file_name in `header.signals` (signals sharing a file
// are interleaved in header order) and the header `record_path + ".hea"`. `adc[s]` holds signal s;
// all must have the same length. Formats 16, 212 and 80. Fills in and returns the header as written:
// num_samples, initial_value (first sample, or adc_zero when empty), checksum, and adc_resolution
// when it was 0. Values outside the format's range are an error (naming the signal and sample).
// Signal file names must be plain names (no directory part); they are written next to the header.
WfdbHeader write_wfdb_record(const std::string& record_path, WfdbHeader header,
                             const std::vector<std::vector<int32_t>>& adc);

// The bytes of a signal file holding `adc` (interleaved signals, all of equal length), for tests
// and the fuzzers: exactly what write_wfdb_record() puts in one file.
std::string encode_wfdb_samples(int format, const std::vector<const std::vector<int32_t>*>& signals);

}  // namespace sleepnet::data
