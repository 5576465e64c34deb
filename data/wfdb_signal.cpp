// wfdb_signal.cpp: reading and writing WFDB signal files in formats 16, 212 and 80.
//
// A signal file is one stream of samples: frame after frame, each frame holding one sample of every
// signal stored in the file. Flat sample index k = frame * signals_in_file + position. Its bytes:
//   16:  [2k, 2k+2)
//   80:  [k]
//   212: the pair p = k / 2 occupies bytes [3p, 3p+3); k even uses byte 3p and the low nibble of
//        byte 3p+1, k odd uses byte 3p+2 and the high nibble of byte 3p+1.
// So the bytes needed for n flat samples are 2n, n and ceil(3n / 2).
#include "data/wfdb_signal.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "data/reader_util.h"
#include "tensor/tensor.h"

namespace sleepnet::data {

namespace {

constexpr int64_t kChunkFrames = 1 << 16;  // frames decoded per read (bounded memory)

// Bytes needed to hold `flat` samples of `format`.
int64_t bytes_for_samples(int format, int64_t flat) {
  switch (format) {
    case 16: return 2 * flat;
    case 80: return flat;
    case 212: return (3 * flat + 1) / 2;
    default: return 0;
  }
}

// Whole samples held by `bytes` bytes of `format`.
int64_t samples_in_bytes(int format, int64_t bytes) {
  switch (format) {
    case 16: return bytes / 2;
    case 80: return bytes;
    case 212: return (bytes / 3) * 2 + (bytes % 3 == 2 ? 1 : 0);
    default: return 0;
  }
}

// First byte of flat sample k (212: first byte of its pair).
int64_t first_byte_of_sample(int format, int64_t k) {
  switch (format) {
    case 16: return 2 * k;
    case 80: return k;
    case 212: return 3 * (k / 2);
    default: return 0;
  }
}

int32_t invalid_marker(int format) { return wfdb_format_min(format); }

}  // namespace

int32_t wfdb_format_min(int format) {
  switch (format) {
    case 16: return -32768;
    case 212: return -2048;
    case 80: return -128;
    default: throw Error("WFDB: unsupported signal format " + std::to_string(format));
  }
}

int32_t wfdb_format_max(int format) {
  switch (format) {
    case 16: return 32767;
    case 212: return 2047;
    case 80: return 127;
    default: throw Error("WFDB: unsupported signal format " + std::to_string(format));
  }
}

int32_t wfdb_checksum(const std::vector<int32_t>& adc) {
  uint32_t sum = 0;
  for (int32_t v : adc) sum += static_cast<uint32_t>(v);
  return static_cast<int16_t>(static_cast<uint16_t>(sum & 0xffffu));
}

bool wfdb_checksums_equal(int32_t a, int32_t b) {
  return (static_cast<uint32_t>(a) & 0xffffu) == (static_cast<uint32_t>(b) & 0xffffu);
}

bool WfdbSignalReader::signal_files_present(const WfdbHeader& header, const std::string& directory) {
  std::error_code ec;
  for (const WfdbSignalSpec& s : header.signals)
    if (!std::filesystem::is_regular_file(directory + "/" + s.file_name, ec)) return false;
  return true;
}

WfdbSignalReader::WfdbSignalReader(WfdbHeader header, std::string directory)
    : header_(std::move(header)), directory_(std::move(directory)) {
  const std::string rec = directory_ + "/" + header_.record_name;
  if (static_cast<int>(header_.signals.size()) != header_.num_signals)
    throw Error(rec + ": header declares " + std::to_string(header_.num_signals) + " signals but describes " +
                std::to_string(header_.signals.size()));
  group_of_signal_.assign(header_.signals.size(), -1);
  position_in_group_.assign(header_.signals.size(), -1);
  std::map<std::string, int> group_by_name;
  for (size_t s = 0; s < header_.signals.size(); ++s) {
    const WfdbSignalSpec& spec = header_.signals[s];
    if (!wfdb_format_supported(spec.format))
      throw Error(rec + ": signal " + std::to_string(s) + " has unsupported format " + std::to_string(spec.format));
    auto it = group_by_name.find(spec.file_name);
    if (it == group_by_name.end()) {
      FileGroup g;
      g.path = directory_ + "/" + spec.file_name;
      g.format = spec.format;
      g.byte_offset = spec.byte_offset;
      it = group_by_name.emplace(spec.file_name, static_cast<int>(groups_.size())).first;
      groups_.push_back(std::move(g));
    }
    FileGroup& g = groups_[it->second];
    if (g.format != spec.format || g.byte_offset != spec.byte_offset)
      throw Error(rec + ": signal " + std::to_string(s) + " shares file " + spec.file_name +
                  " with a signal of another format or byte offset");
    group_of_signal_[s] = it->second;
    position_in_group_[s] = static_cast<int>(g.signals.size());
    g.signals.push_back(static_cast<int>(s));
  }
  // Check the files and resolve the sample count.
  int64_t derived = std::numeric_limits<int64_t>::max();
  for (FileGroup& g : groups_) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(g.path, ec))
      throw Error(g.path + ": signal file of record " + header_.record_name + " not found");
    auto size = std::filesystem::file_size(g.path, ec);
    if (ec) throw Error(g.path + ": cannot read the size of the signal file: " + ec.message());
    g.file_size = static_cast<int64_t>(size);
    const int64_t nsig = static_cast<int64_t>(g.signals.size());
    if (g.file_size < g.byte_offset)
      throw Error(g.path + ": signal file is " + std::to_string(g.file_size) + " bytes, smaller than its byte offset " +
                  std::to_string(g.byte_offset));
    if (header_.num_samples) {
      const int64_t need = g.byte_offset + bytes_for_samples(g.format, *header_.num_samples * nsig);
      if (g.file_size < need)
        throw Error(g.path + ": truncated signal file: the header says " + std::to_string(*header_.num_samples) +
                    " samples of " + std::to_string(nsig) + " signal(s) in format " + std::to_string(g.format) +
                    ", which needs " + std::to_string(need) + " bytes, but the file has " +
                    std::to_string(g.file_size));
    } else {
      derived = std::min(derived, samples_in_bytes(g.format, g.file_size - g.byte_offset) / nsig);
    }
  }
  if (header_.num_samples) {
    num_samples_ = *header_.num_samples;
  } else {
    num_samples_ = groups_.empty() ? 0 : derived;
  }
}

WfdbSignalReader WfdbSignalReader::open(const std::string& record_path) {
  WfdbHeader h = read_wfdb_header(record_path);
  return WfdbSignalReader(std::move(h), wfdb_directory(wfdb_record_base(record_path)));
}

int WfdbSignalReader::signal_index(std::string_view description) const {
  int i = header_.find_signal(description);
  if (i < 0) {
    std::string names;
    for (const auto& s : header_.signals) names += (names.empty() ? "'" : ", '") + s.description + "'";
    throw Error(directory_ + "/" + header_.record_name + ": no signal named '" + std::string(description) +
                "' (signals: " + names + ")");
  }
  return i;
}

void WfdbSignalReader::check_signal_index(int signal, const char* what) const {
  if (signal < 0 || signal >= num_signals())
    throw Error(std::string(what) + ": signal index " + std::to_string(signal) + " out of range [0, " +
                std::to_string(num_signals()) + ") for record " + header_.record_name);
}

void WfdbSignalReader::read_group(const FileGroup& g, int64_t from, int64_t to,
                                  std::vector<std::vector<int32_t>*>& out) const {
  if (to <= from) return;
  std::ifstream in(g.path, std::ios::binary);
  if (!in) throw Error(g.path + ": cannot open signal file");
  const int64_t nsig = static_cast<int64_t>(g.signals.size());
  std::vector<unsigned char> buf;
  for (int64_t f0 = from; f0 < to; f0 += kChunkFrames) {
    const int64_t f1 = std::min(to, f0 + kChunkFrames);
    const int64_t k0 = f0 * nsig, k1 = f1 * nsig;          // flat sample range
    const int64_t b0 = first_byte_of_sample(g.format, k0);   // relative to byte_offset
    const int64_t b1 = bytes_for_samples(g.format, k1);      // bytes needed up to k1
    const int64_t n = b1 - b0;
    if (g.byte_offset + b1 > g.file_size)
      throw Error(g.path + ": truncated signal file: reading frames [" + std::to_string(f0) + ", " +
                  std::to_string(f1) + ") needs " + std::to_string(g.byte_offset + b1) + " bytes, the file has " +
                  std::to_string(g.file_size));
    buf.resize(static_cast<size_t>(n));
    in.seekg(g.byte_offset + b0);
    if (!in.read(reinterpret_cast<char*>(buf.data()), n))
      throw Error(g.path + ": read error at byte " + std::to_string(g.byte_offset + b0));
    // Walk the flat samples with a running (frame, position) instead of dividing per sample.
    int64_t pos = 0, frame = f0;
    for (int64_t k = k0; k < k1; ++k) {
      std::vector<int32_t>* dst = out[static_cast<size_t>(pos)];
      if (dst) {
        int32_t v = 0;
        if (g.format == 16) {
          const size_t b = static_cast<size_t>(2 * k - b0);
          v = static_cast<int16_t>(static_cast<uint16_t>(buf[b] | (buf[b + 1] << 8)));
        } else if (g.format == 80) {
          v = static_cast<int32_t>(buf[static_cast<size_t>(k - b0)]) - 128;
        } else {  // 212
          const size_t b = static_cast<size_t>(3 * (k >> 1) - b0);
          const int32_t raw = (k & 1) == 0 ? (buf[b] | ((buf[b + 1] & 0x0f) << 8))
                                           : (buf[b + 2] | ((buf[b + 1] & 0xf0) << 4));
          v = raw >= 2048 ? raw - 4096 : raw;  // sign-extend 12 bits
        }
        (*dst)[static_cast<size_t>(frame - from)] = v;
      }
      if (++pos == nsig) {
        pos = 0;
        ++frame;
      }
    }
  }
}

std::vector<int32_t> WfdbSignalReader::read_adc(int signal, int64_t from, int64_t to) const {
  check_signal_index(signal, "WfdbSignalReader::read_adc");
  if (from < 0 || to < from || to > num_samples_)
    throw Error("WfdbSignalReader::read_adc: sample range [" + std::to_string(from) + ", " + std::to_string(to) +
                ") is outside [0, " + std::to_string(num_samples_) + ") of record " + header_.record_name);
  const FileGroup& g = groups_[static_cast<size_t>(group_of_signal_[static_cast<size_t>(signal)])];
  std::vector<int32_t> result(static_cast<size_t>(to - from));
  std::vector<std::vector<int32_t>*> out(g.signals.size(), nullptr);
  out[static_cast<size_t>(position_in_group_[static_cast<size_t>(signal)])] = &result;
  read_group(g, from, to, out);
  const WfdbSignalSpec& spec = header_.signals[static_cast<size_t>(signal)];
  if (from == 0 && to == num_samples_ && spec.checksum) {
    int32_t got = wfdb_checksum(result);
    if (!wfdb_checksums_equal(got, *spec.checksum))
      throw Error(g.path + ": checksum mismatch for signal " + std::to_string(signal) + " ('" + spec.description +
                  "'): header says " + std::to_string(*spec.checksum) + ", samples sum to " + std::to_string(got) +
                  " (mod 2^16)");
  }
  return result;
}

std::vector<float> WfdbSignalReader::read_physical(int signal, int64_t from, int64_t to) const {
  std::vector<int32_t> adc = read_adc(signal, from, to);
  const WfdbSignalSpec& spec = header_.signals[static_cast<size_t>(signal)];
  const int32_t invalid = invalid_marker(spec.format);
  std::vector<float> x(adc.size());
  for (size_t i = 0; i < adc.size(); ++i)
    x[i] = adc[i] == invalid ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>(spec.to_physical(adc[i]));
  return x;
}

std::vector<std::vector<int32_t>> WfdbSignalReader::read_all_adc(int64_t from, int64_t to) const {
  if (from < 0 || to < from || to > num_samples_)
    throw Error("WfdbSignalReader::read_all_adc: sample range [" + std::to_string(from) + ", " + std::to_string(to) +
                ") is outside [0, " + std::to_string(num_samples_) + ") of record " + header_.record_name);
  std::vector<std::vector<int32_t>> result(header_.signals.size(), std::vector<int32_t>(static_cast<size_t>(to - from)));
  for (const FileGroup& g : groups_) {
    std::vector<std::vector<int32_t>*> out;
    for (int s : g.signals) out.push_back(&result[static_cast<size_t>(s)]);
    read_group(g, from, to, out);
  }
  if (from == 0 && to == num_samples_) {
    for (size_t s = 0; s < result.size(); ++s) {
      const WfdbSignalSpec& spec = header_.signals[s];
      if (!spec.checksum) continue;
      int32_t got = wfdb_checksum(result[s]);
      if (!wfdb_checksums_equal(got, *spec.checksum))
        throw Error(groups_[static_cast<size_t>(group_of_signal_[s])].path + ": checksum mismatch for signal " +
                    std::to_string(s) + " ('" + spec.description + "'): header says " +
                    std::to_string(*spec.checksum) + ", samples sum to " + std::to_string(got) + " (mod 2^16)");
    }
  }
  return result;
}

void WfdbSignalReader::verify_checksums() const {
  // One pass per file, signal by signal, so memory stays at one signal's length.
  for (int s = 0; s < num_signals(); ++s) (void)read_adc(s, 0, num_samples_);
}

std::vector<int32_t> wfdb_physical_to_adc(const std::vector<float>& physical, double gain, int32_t baseline,
                                          int format) {
  const int32_t lo = wfdb_format_min(format), hi = wfdb_format_max(format);
  if (!(gain != 0.0) || !std::isfinite(gain)) throw Error("wfdb_physical_to_adc: gain must be finite and non-zero");
  std::vector<int32_t> adc(physical.size());
  for (size_t i = 0; i < physical.size(); ++i) {
    const float x = physical[i];
    if (std::isnan(x)) {
      adc[i] = lo;
      continue;
    }
    double v = std::round(static_cast<double>(x) * gain + baseline);
    v = std::clamp(v, static_cast<double>(lo + 1), static_cast<double>(hi));
    adc[i] = static_cast<int32_t>(v);
  }
  return adc;
}

std::string encode_wfdb_samples(int format, const std::vector<const std::vector<int32_t>*>& signals) {
  if (format != 16 && format != 212 && format != 80)
    throw Error("encode_wfdb_samples: format " + std::to_string(format) + " cannot be written (16, 212, 80 only)");
  const size_t nsig = signals.size();
  const size_t n = nsig ? signals[0]->size() : 0;
  for (size_t s = 0; s < nsig; ++s)
    if (signals[s]->size() != n)
      throw Error("encode_wfdb_samples: signal " + std::to_string(s) + " has " + std::to_string(signals[s]->size()) +
                  " samples, signal 0 has " + std::to_string(n));
  const int32_t lo = wfdb_format_min(format), hi = wfdb_format_max(format);
  const size_t flat = n * nsig;
  std::string out;
  out.reserve(static_cast<size_t>(bytes_for_samples(format, static_cast<int64_t>(flat))));
  int32_t pending = 0;  // 212: first sample of an incomplete pair
  for (size_t k = 0; k < flat; ++k) {
    const size_t s = k % nsig, i = k / nsig;
    const int32_t v = (*signals[s])[i];
    if (v < lo || v > hi)
      throw Error("encode_wfdb_samples: signal " + std::to_string(s) + " sample " + std::to_string(i) + " = " +
                  std::to_string(v) + " is outside the range [" + std::to_string(lo) + ", " + std::to_string(hi) +
                  "] of format " + std::to_string(format));
    if (format == 16) {
      const uint16_t u = static_cast<uint16_t>(static_cast<int16_t>(v));
      out.push_back(static_cast<char>(u & 0xff));
      out.push_back(static_cast<char>(u >> 8));
    } else if (format == 80) {
      out.push_back(static_cast<char>(static_cast<uint8_t>(v + 128)));
    } else if (k % 2 == 0) {
      pending = v;
    } else {
      const uint32_t a = static_cast<uint32_t>(pending) & 0xfffu, b = static_cast<uint32_t>(v) & 0xfffu;
      out.push_back(static_cast<char>(a & 0xff));
      out.push_back(static_cast<char>(((b >> 8) << 4) | (a >> 8)));
      out.push_back(static_cast<char>(b & 0xff));
    }
  }
  if (format == 212 && flat % 2 == 1) {  // odd total: the last sample takes 2 bytes (as WFDB writes it)
    const uint32_t a = static_cast<uint32_t>(pending) & 0xfffu;
    out.push_back(static_cast<char>(a & 0xff));
    out.push_back(static_cast<char>(a >> 8));
  }
  return out;
}

WfdbHeader write_wfdb_record(const std::string& record_path, WfdbHeader header,
                             const std::vector<std::vector<int32_t>>& adc) {
  const std::string base = wfdb_record_base(record_path);
  const std::string dir = wfdb_directory(base);
  const std::string who = "write_wfdb_record(" + base + ")";
  if (adc.size() != header.signals.size())
    throw Error(who + ": " + std::to_string(adc.size()) + " sample vectors for " +
                std::to_string(header.signals.size()) + " signals in the header");
  const size_t n = adc.empty() ? 0 : adc[0].size();
  for (size_t s = 0; s < adc.size(); ++s)
    if (adc[s].size() != n)
      throw Error(who + ": signal " + std::to_string(s) + " has " + std::to_string(adc[s].size()) +
                  " samples, signal 0 has " + std::to_string(n));
  header.record_name = base.substr(base.find_last_of('/') == std::string::npos ? 0 : base.find_last_of('/') + 1);
  header.num_signals = static_cast<int>(header.signals.size());
  header.num_samples = static_cast<int64_t>(n);
  if (!header.sampling_frequency_given) header.sampling_frequency_given = true;
  // Group signals by file, keeping header order within each file.
  std::vector<std::string> files;
  std::map<std::string, std::vector<size_t>> members;
  for (size_t s = 0; s < header.signals.size(); ++s) {
    WfdbSignalSpec& spec = header.signals[s];
    if (spec.file_name.empty() || spec.file_name.find('/') != std::string::npos)
      throw Error(who + ": signal " + std::to_string(s) + " file name " + detail::quote(spec.file_name) +
                  " must be a plain file name");
    if (spec.format != 16 && spec.format != 212 && spec.format != 80)
      throw Error(who + ": signal " + std::to_string(s) + " format " + std::to_string(spec.format) +
                  " cannot be written (16, 212 or 80)");
    if (spec.samples_per_frame != 1 || spec.skew != 0)
      throw Error(who + ": signal " + std::to_string(s) + ": samples per frame and skew must be 1 and 0");
    if (spec.adc_resolution == 0) spec.adc_resolution = wfdb_default_adc_resolution(spec.format);
    spec.initial_value = n ? adc[s][0] : spec.adc_zero;
    spec.checksum = wfdb_checksum(adc[s]);
    auto& m = members[spec.file_name];
    if (m.empty()) files.push_back(spec.file_name);
    else if (header.signals[m[0]].format != spec.format || header.signals[m[0]].byte_offset != spec.byte_offset)
      throw Error(who + ": signals " + std::to_string(m[0]) + " and " + std::to_string(s) + " share file " +
                  spec.file_name + " but differ in format or byte offset");
    m.push_back(s);
  }
  for (const std::string& f : files) {
    const auto& m = members[f];
    std::vector<const std::vector<int32_t>*> sigs;
    for (size_t s : m) sigs.push_back(&adc[s]);
    const WfdbSignalSpec& first = header.signals[m[0]];
    std::string bytes(static_cast<size_t>(first.byte_offset), '\0');
    bytes += encode_wfdb_samples(first.format, sigs);
    detail::write_file(dir + "/" + f, bytes, "WFDB signal file");
  }
  write_wfdb_header(base, header);
  return header;
}

}  // namespace sleepnet::data
