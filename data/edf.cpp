// edf.cpp: EDF/EDF+ reader and writer (format summary in edf.h).
//
// Why our own reader rather than EDFlib (Debian's libedf-dev): EDFlib refuses files that break the
// specification anywhere in the header, and the files this project must read do: UCDDB's
// recordings write the start time as "23:07:50" (':' instead of '.'), and other PhysioNet EDFs have
// equal digital minimum and maximum on unused channels or are longer than their record count says.
// Such a file cannot be opened with EDFlib at all (pyedflib, built on it, fails the same way), while
// the quirks do not affect the signals. This reader accepts them with a warning in
// EdfHeader::warnings, and still refuses what would give wrong samples: header lengths that
// disagree, truncated data, non-numeric or absurd fields.
#include "data/edf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "data/reader_util.h"
#include "tensor/tensor.h"

namespace sleepnet::data {

using detail::quote;

namespace {

constexpr int kMaxSignals = 4096;
constexpr int64_t kMaxSamplesPerRecord = int64_t{1} << 24;

// Byte offsets of the fixed header fields.
struct Field {
  const char* name;
  size_t offset, width;
};
constexpr Field kVersion{"version", 0, 8};
constexpr Field kPatient{"patient identification", 8, 80};
constexpr Field kRecording{"recording identification", 88, 80};
constexpr Field kStartDate{"start date", 168, 8};
constexpr Field kStartTime{"start time", 176, 8};
constexpr Field kHeaderBytes{"number of bytes in header", 184, 8};
constexpr Field kReserved{"reserved", 192, 44};
constexpr Field kNumRecords{"number of data records", 236, 8};
constexpr Field kDuration{"duration of a data record", 244, 8};
constexpr Field kNumSignals{"number of signals", 252, 4};

// Per-signal fields: name and width; they are stored field by field for all signals.
struct SignalField {
  const char* name;
  size_t width;
};
constexpr SignalField kSignalFields[] = {
    {"label", 16},        {"transducer type", 80}, {"physical dimension", 8}, {"physical minimum", 8},
    {"physical maximum", 8}, {"digital minimum", 8}, {"digital maximum", 8},   {"prefiltering", 80},
    {"number of samples in each data record", 8}, {"reserved", 32}};

// "<file>: field '<name>' (byte <offset>)": where a fixed-header field is.
std::string where(const std::string& src, const std::string& field, size_t offset) {
  return src + ": field '" + field + "' (byte " + std::to_string(offset) + ")";
}
// "<file>: signal <s> ('<label>') field '<name>' (byte <offset>)": where a signal-header field is.
std::string signal_where(const std::string& src, size_t s, const std::string& label, const char* field, size_t offset) {
  return src + ": signal " + std::to_string(s) + " ('" + label + "') field '" + field + "' (byte " +
         std::to_string(offset) + ")";
}

// A numeric header field: trimmed of spaces and NULs (padding quirks) before parsing.
double number_field(std::string_view raw, const std::string& loc, std::vector<std::string>& warnings) {
  std::string_view t = detail::trim(raw);
  if (t.size() != raw.size() && !raw.empty() && (raw.front() == ' ' || raw.back() == '\0'))
    warnings.push_back(loc + ": value " + quote(raw) + " is not left-aligned or is NUL-padded");
  auto v = detail::parse_double(t);
  if (!v) {
    // Some writers use ',' as the decimal separator.
    std::string comma(t);
    std::replace(comma.begin(), comma.end(), ',', '.');
    v = detail::parse_double(comma);
    if (v) warnings.push_back(loc + ": decimal comma in " + quote(raw));
  }
  if (!v) throw Error(loc + ": " + quote(t) + " is not a number");
  return *v;
}

int64_t int_field(std::string_view raw, const std::string& loc, std::vector<std::string>& warnings) {
  std::string_view t = detail::trim(raw);
  auto v = detail::parse_int(t);
  if (!v) {
    // "256.0" style integers: accept when the value is integral.
    auto d = detail::parse_double(t);
    if (d && std::floor(*d) == *d && std::fabs(*d) < 1e15) {
      warnings.push_back(loc + ": integer written as " + quote(raw));
      return static_cast<int64_t>(*d);
    }
    throw Error(loc + ": " + quote(t) + " is not an integer");
  }
  if (t.size() != raw.size() && !raw.empty() && (raw.front() == ' ' || raw.back() == '\0'))
    warnings.push_back(loc + ": value " + quote(raw) + " is not left-aligned or is NUL-padded");
  return *v;
}

// Parses "dd.mm.yy" / "hh.mm.ss" with any single separator; returns false when not three numbers.
bool three_numbers(std::string_view s, int& a, int& b, int& c, char& sep1, char& sep2) {
  size_t i = 0;
  auto num = [&](int& out) {
    size_t j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9' && j - i < 4) ++j;
    if (j == i) return false;
    out = 0;
    for (size_t k = i; k < j; ++k) out = out * 10 + (s[k] - '0');
    i = j;
    return true;
  };
  if (!num(a) || i >= s.size()) return false;
  sep1 = s[i++];
  if (!num(b) || i >= s.size()) return false;
  sep2 = s[i++];
  if (!num(c)) return false;
  return i == s.size();
}

}  // namespace

double EdfSignal::scale() const {
  if (digital_max == digital_min) return 0.0;
  return (physical_max - physical_min) / (static_cast<double>(digital_max) - digital_min);
}

double EdfSignal::offset() const { return physical_min - digital_min * scale(); }

int64_t EdfHeader::record_bytes() const {
  int64_t n = 0;
  for (const EdfSignal& s : signals) n += s.samples_per_record;
  return 2 * n;
}

double EdfHeader::sampling_rate(int signal) const {
  if (signal < 0 || signal >= num_signals())
    throw Error("EdfHeader::sampling_rate: signal index " + std::to_string(signal) + " out of range [0, " +
                std::to_string(num_signals()) + ")");
  if (record_duration <= 0.0) return 0.0;
  return static_cast<double>(signals[static_cast<size_t>(signal)].samples_per_record) / record_duration;
}

int EdfHeader::find_signal(std::string_view label) const {
  std::string_view want = detail::trim(label);
  for (size_t i = 0; i < signals.size(); ++i)
    if (signals[i].label == want) return static_cast<int>(i);
  auto lower = [](std::string_view s) {
    std::string r(s);
    for (char& c : r) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    return r;
  };
  const std::string w = lower(want);
  for (size_t i = 0; i < signals.size(); ++i)
    if (lower(signals[i].label) == w) return static_cast<int>(i);
  return -1;
}

EdfHeader parse_edf_header(std::string_view b, const std::string& src, int64_t file_size) {
  EdfHeader h;
  auto& warn = h.warnings;
  if (file_size == 0 || b.empty()) throw Error(src + ": empty file (an EDF file starts with a 256-byte header)");
  if (b.size() < 256)
    throw Error(src + ": file is " + std::to_string(b.size()) + " bytes, shorter than the 256-byte EDF header");
  auto raw = [&](const Field& f) { return b.substr(f.offset, f.width); };
  auto text = [&](const Field& f) { return std::string(detail::trim(raw(f))); };

  // Version: "0" for EDF; BDF files start with 0xFF "BIOSEMI" (24-bit samples): refuse those.
  if (static_cast<unsigned char>(b[0]) == 0xFF)
    throw Error(where(src, kVersion.name, 0) + ": BDF file (24-bit samples) is not supported, only EDF");
  h.version = text(kVersion);
  if (h.version != "0")
    warn.push_back(where(src, kVersion.name, 0) + ": " + quote(raw(kVersion)) + " instead of '0'");
  h.patient = text(kPatient);
  h.recording = text(kRecording);
  h.reserved = text(kReserved);

  // Start date and time: "dd.mm.yy" and "hh.mm.ss"; other separators (UCDDB: ':') accepted with a warning.
  h.start_date = text(kStartDate);
  h.start_time = text(kStartTime);
  {
    int d = 0, m = 0, y = 0;
    char s1 = 0, s2 = 0;
    if (three_numbers(h.start_date, d, m, y, s1, s2) && d >= 1 && d <= 31 && m >= 1 && m <= 12 && y <= 99) {
      if (s1 != '.' || s2 != '.')
        warn.push_back(where(src, kStartDate.name, kStartDate.offset) + ": " + quote(h.start_date) +
                       " uses a separator other than '.'");
      h.start_day = d;
      h.start_month = m;
      h.start_year = y >= 85 ? 1900 + y : 2000 + y;
    } else {
      warn.push_back(where(src, kStartDate.name, kStartDate.offset) + ": " + quote(raw(kStartDate)) +
                     " is not a date dd.mm.yy (ignored)");
    }
    int hh = 0, mm = 0, ss = 0;
    if (three_numbers(h.start_time, hh, mm, ss, s1, s2) && hh <= 23 && mm <= 59 && ss <= 60) {
      if (s1 != '.' || s2 != '.')
        warn.push_back(where(src, kStartTime.name, kStartTime.offset) + ": " + quote(h.start_time) +
                       " uses a separator other than '.' (UCDDB writes ':')");
      h.start_hour = hh;
      h.start_minute = mm;
      h.start_second = ss;
    } else {
      warn.push_back(where(src, kStartTime.name, kStartTime.offset) + ": " + quote(raw(kStartTime)) +
                     " is not a time hh.mm.ss (ignored)");
    }
  }

  const int64_t ns = int_field(raw(kNumSignals), where(src, kNumSignals.name, kNumSignals.offset), warn);
  if (ns < 1 || ns > kMaxSignals)
    throw Error(where(src, kNumSignals.name, kNumSignals.offset) + ": " + std::to_string(ns) +
                " is out of range [1, " + std::to_string(kMaxSignals) + "]");
  h.header_bytes = int_field(raw(kHeaderBytes), where(src, kHeaderBytes.name, kHeaderBytes.offset), warn);
  const int64_t expect_header = 256 * (ns + 1);
  if (h.header_bytes != expect_header)
    throw Error(where(src, kHeaderBytes.name, kHeaderBytes.offset) + ": says " + std::to_string(h.header_bytes) +
                " bytes, but " + std::to_string(ns) + " signals need 256 * (1 + " + std::to_string(ns) +
                ") = " + std::to_string(expect_header));
  if (static_cast<int64_t>(b.size()) < expect_header || file_size < expect_header)
    throw Error(src + ": header truncated: " + std::to_string(ns) + " signals need a " + std::to_string(expect_header) +
                "-byte header, the file has " + std::to_string(std::min<int64_t>(file_size, static_cast<int64_t>(b.size()))) +
                " bytes");
  const int64_t num_records = int_field(raw(kNumRecords), where(src, kNumRecords.name, kNumRecords.offset), warn);
  if (num_records < -1)
    throw Error(where(src, kNumRecords.name, kNumRecords.offset) + ": " + std::to_string(num_records) +
                " is negative (only -1, 'unknown', is allowed)");
  h.record_duration = number_field(raw(kDuration), where(src, kDuration.name, kDuration.offset), warn);
  if (h.record_duration < 0.0 || h.record_duration > 1e6)
    throw Error(where(src, kDuration.name, kDuration.offset) + ": " + detail::format_number(h.record_duration) +
                " seconds is out of range [0, 1e6]");

  // Signal headers.
  h.signals.resize(static_cast<size_t>(ns));
  size_t off = 256;
  for (size_t fi = 0; fi < std::size(kSignalFields); ++fi) {
    const SignalField& f = kSignalFields[fi];
    for (size_t s = 0; s < static_cast<size_t>(ns); ++s, off += f.width) {
      std::string_view r = b.substr(off, f.width);
      const std::string loc = signal_where(src, s, h.signals[s].label, f.name, off);
      EdfSignal& sig = h.signals[s];
      switch (fi) {
        case 0: sig.label = std::string(detail::trim(r)); break;
        case 1: sig.transducer = std::string(detail::trim(r)); break;
        case 2: sig.physical_dimension = std::string(detail::trim(r)); break;
        case 3: sig.physical_min = number_field(r, loc, warn); break;
        case 4: sig.physical_max = number_field(r, loc, warn); break;
        case 5: case 6: {
          int64_t v = int_field(r, loc, warn);
          if (v < -32768 || v > 32767)
            throw Error(loc + ": " + std::to_string(v) + " does not fit 16 bits");
          (fi == 5 ? sig.digital_min : sig.digital_max) = static_cast<int32_t>(v);
          break;
        }
        case 7: sig.prefiltering = std::string(detail::trim(r)); break;
        case 8: {
          int64_t v = int_field(r, loc, warn);
          if (v < 1 || v > kMaxSamplesPerRecord)
            throw Error(loc + ": " + std::to_string(v) + " is out of range [1, " +
                        std::to_string(kMaxSamplesPerRecord) + "]");
          sig.samples_per_record = v;
          break;
        }
        case 9: sig.reserved = std::string(detail::trim(r)); break;
      }
    }
  }
  bool all_annotations = true;
  for (size_t s = 0; s < h.signals.size(); ++s) {
    const EdfSignal& sig = h.signals[s];
    all_annotations = all_annotations && sig.is_annotation();
    const std::string who = src + ": signal " + std::to_string(s) + " ('" + sig.label + "')";
    if (sig.digital_min > sig.digital_max)
      throw Error(who + ": digital minimum " + std::to_string(sig.digital_min) + " is above the digital maximum " +
                  std::to_string(sig.digital_max));
    if (sig.is_annotation()) continue;
    if (sig.digital_min == sig.digital_max)
      warn.push_back(who + ": digital minimum equals digital maximum (" + std::to_string(sig.digital_min) +
                     "): physical values are constant");
    if (sig.physical_min == sig.physical_max)
      warn.push_back(who + ": physical minimum equals physical maximum: physical values are constant");
  }
  if (h.record_duration == 0.0 && !all_annotations)
    throw Error(where(src, kDuration.name, kDuration.offset) + ": 0 seconds, allowed only when every signal is "
                "'EDF Annotations'");

  // Data size against the record count.
  const int64_t rb = h.record_bytes();
  const int64_t data = file_size - expect_header;
  if (num_records == -1) {
    h.num_records_given = false;
    h.num_records = data / rb;
    warn.push_back(where(src, kNumRecords.name, kNumRecords.offset) + ": -1 (unknown); " +
                   std::to_string(h.num_records) + " records from the file size");
    if (data % rb != 0)
      throw Error(src + ": last data record truncated: " + std::to_string(data) + " bytes of data are not a multiple of the " +
                  std::to_string(rb) + "-byte record (field 'number of data records' is -1)");
  } else {
    h.num_records = num_records;
    if (num_records > (int64_t{1} << 62) / rb)
      throw Error(where(src, kNumRecords.name, kNumRecords.offset) + ": " + std::to_string(num_records) + " records is absurd");
    const int64_t need = num_records * rb;
    if (data < need)
      throw Error(src + ": truncated: field 'number of data records' says " + std::to_string(num_records) + " records of " +
                  std::to_string(rb) + " bytes = " + std::to_string(need) + " bytes of data, the file has " +
                  std::to_string(data) + (data % rb != 0 ? " (the last record is cut)" : ""));
    if (data > need)
      warn.push_back(src + ": " + std::to_string(data - need) + " bytes after the last of the " +
                     std::to_string(num_records) + " data records (ignored)");
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
// Reader

EdfReader EdfReader::from_bytes(std::string bytes, std::string source) {
  EdfReader r;
  r.source_ = std::move(source);
  r.memory_ = std::move(bytes);
  r.header_ = parse_edf_header(r.memory_, r.source_, static_cast<int64_t>(r.memory_.size()));
  int64_t off = 0;
  for (const EdfSignal& s : r.header_.signals) {
    r.signal_offsets_.push_back(off);
    off += 2 * s.samples_per_record;
  }
  return r;
}

EdfReader EdfReader::open(const std::string& path) {
  EdfReader r;
  r.source_ = path;
  r.file_ = std::make_shared<std::ifstream>(path, std::ios::binary);
  if (!*r.file_) throw Error(path + ": cannot open EDF file (missing or unreadable)");
  r.file_->seekg(0, std::ios::end);
  const int64_t size = static_cast<int64_t>(r.file_->tellg());
  r.file_->seekg(0);
  std::string head(static_cast<size_t>(std::min<int64_t>(size, 256)), '\0');
  if (!head.empty()) r.file_->read(head.data(), static_cast<std::streamsize>(head.size()));
  if (head.size() == 256) {
    // Read the signal headers too (their count is in the last 4 bytes of the fixed header).
    auto ns = detail::parse_int(detail::trim(std::string_view(head).substr(252, 4)));
    if (ns && *ns >= 1 && *ns <= kMaxSignals) {
      const int64_t want = std::min<int64_t>(size, 256 * (*ns + 1));
      head.resize(static_cast<size_t>(want));
      r.file_->seekg(0);
      r.file_->read(head.data(), static_cast<std::streamsize>(want));
    }
  }
  if (!*r.file_) throw Error(path + ": read error in the EDF header");
  r.header_ = parse_edf_header(head, path, size);
  int64_t off = 0;
  for (const EdfSignal& s : r.header_.signals) {
    r.signal_offsets_.push_back(off);
    off += 2 * s.samples_per_record;
  }
  return r;
}

int EdfReader::signal_index(std::string_view label) const {
  int i = header_.find_signal(label);
  if (i < 0) {
    std::string names;
    for (const auto& s : header_.signals) names += (names.empty() ? "'" : ", '") + s.label + "'";
    throw Error(source_ + ": no signal labelled '" + std::string(label) + "' (signals: " + names + ")");
  }
  return i;
}

void EdfReader::read_bytes(int64_t offset, int64_t n, char* out) const {
  if (!file_) {
    if (offset < 0 || offset + n > static_cast<int64_t>(memory_.size()))
      throw Error(source_ + ": read past the end of the data at byte " + std::to_string(offset));
    std::memcpy(out, memory_.data() + offset, static_cast<size_t>(n));
    return;
  }
  file_->clear();
  file_->seekg(offset);
  if (!file_->read(out, n)) throw Error(source_ + ": read error at byte " + std::to_string(offset));
}

std::vector<int16_t> EdfReader::read_digital(int signal, int64_t first_record, int64_t count) const {
  if (signal < 0 || signal >= header_.num_signals())
    throw Error(source_ + ": signal index " + std::to_string(signal) + " out of range [0, " +
                std::to_string(header_.num_signals()) + ")");
  if (count < 0) count = header_.num_records - first_record;
  if (first_record < 0 || count < 0 || first_record + count > header_.num_records)
    throw Error(source_ + ": records [" + std::to_string(first_record) + ", " + std::to_string(first_record + count) +
                ") are outside [0, " + std::to_string(header_.num_records) + ")");
  const EdfSignal& sig = header_.signals[static_cast<size_t>(signal)];
  const int64_t spr = sig.samples_per_record, rb = header_.record_bytes();
  std::vector<int16_t> out(static_cast<size_t>(count * spr));
  // Read whole records in chunks of about 4 MB and pick this signal's samples out of each.
  const int64_t chunk = std::max<int64_t>(1, (int64_t{4} << 20) / rb);
  std::vector<char> buf;
  for (int64_t r0 = 0; r0 < count; r0 += chunk) {
    const int64_t nr = std::min(chunk, count - r0);
    buf.resize(static_cast<size_t>(nr * rb));
    read_bytes(header_.header_bytes + (first_record + r0) * rb, nr * rb, buf.data());
    for (int64_t r = 0; r < nr; ++r) {
      const unsigned char* p =
          reinterpret_cast<const unsigned char*>(buf.data() + r * rb + signal_offsets_[static_cast<size_t>(signal)]);
      int16_t* dst = out.data() + (r0 + r) * spr;
      for (int64_t i = 0; i < spr; ++i)
        dst[i] = static_cast<int16_t>(static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
    }
  }
  return out;
}

std::vector<float> EdfReader::read_physical(int signal, int64_t first_record, int64_t count) const {
  std::vector<int16_t> d = read_digital(signal, first_record, count);
  const EdfSignal& sig = header_.signals[static_cast<size_t>(signal)];
  const double scale = sig.scale(), offset = sig.offset();
  std::vector<float> x(d.size());
  for (size_t i = 0; i < d.size(); ++i) x[i] = static_cast<float>(d[i] * scale + offset);
  return x;
}

std::vector<EdfAnnotation> EdfReader::read_annotations() const {
  std::vector<EdfAnnotation> out;
  for (int s = 0; s < header_.num_signals(); ++s) {
    if (!header_.signals[static_cast<size_t>(s)].is_annotation()) continue;
    std::vector<int16_t> words = read_digital(s);
    const int64_t spr = header_.signals[static_cast<size_t>(s)].samples_per_record;
    std::string bytes(words.size() * 2, '\0');
    for (size_t i = 0; i < words.size(); ++i) {
      const uint16_t u = static_cast<uint16_t>(words[i]);
      bytes[2 * i] = static_cast<char>(u & 0xff);
      bytes[2 * i + 1] = static_cast<char>(u >> 8);
    }
    for (int64_t r = 0; r < header_.num_records; ++r) {
      std::string_view rec = std::string_view(bytes).substr(static_cast<size_t>(r * spr * 2), static_cast<size_t>(spr * 2));
      const std::string who = source_ + ": signal " + std::to_string(s) + " (EDF Annotations) record " + std::to_string(r);
      size_t i = 0;
      while (i < rec.size()) {
        if (rec[i] == '\0') {
          ++i;
          continue;
        }
        const size_t tal_start = i;
        if (rec[i] != '+' && rec[i] != '-')
          throw Error(who + " byte " + std::to_string(i) + ": a TAL must start with '+' or '-', found " + quote(rec.substr(i, 1)));
        size_t j = i;
        while (j < rec.size() && rec[j] != '\x14' && rec[j] != '\x15' && rec[j] != '\0') ++j;
        auto onset = detail::parse_double(rec.substr(i, j - i));
        if (!onset || j >= rec.size() || rec[j] == '\0')
          throw Error(who + " byte " + std::to_string(i) + ": bad onset " + quote(rec.substr(i, j - i)));
        double duration = -1.0;
        if (rec[j] == '\x15') {
          size_t k = j + 1;
          while (k < rec.size() && rec[k] != '\x14' && rec[k] != '\0') ++k;
          auto d = detail::parse_double(rec.substr(j + 1, k - j - 1));
          if (!d || *d < 0 || k >= rec.size() || rec[k] != '\x14')
            throw Error(who + " byte " + std::to_string(j + 1) + ": bad duration " + quote(rec.substr(j + 1, k - j - 1)));
          duration = *d;
          j = k;
        }
        i = j + 1;  // past the 0x14 after onset/duration
        // Annotation texts, each ended by 0x14, until the TAL's closing 0.
        while (true) {
          if (i >= rec.size())
            throw Error(who + " byte " + std::to_string(tal_start) + ": TAL not terminated by a 0 byte");
          if (rec[i] == '\0') {
            ++i;
            break;
          }
          size_t k = i;
          while (k < rec.size() && rec[k] != '\x14' && rec[k] != '\0') ++k;
          if (k >= rec.size() || rec[k] != '\x14')
            throw Error(who + " byte " + std::to_string(i) + ": annotation text not terminated by 0x14");
          if (k > i) out.push_back({*onset, duration, std::string(rec.substr(i, k - i))});
          i = k + 1;
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

// Left-aligned, space-padded field; throws when the text does not fit.
void put_field(std::string& out, std::string_view text, size_t width, const std::string& what) {
  if (text.size() > width)
    throw Error("encode_edf: " + what + " " + quote(text) + " is longer than its " + std::to_string(width) + "-byte field");
  for (char c : text)
    if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126)
      throw Error("encode_edf: " + what + " " + quote(text) + " has a non-printable character");
  out.append(text);
  out.append(width - text.size(), ' ');
}

// A number in at most `width` characters, as precise as fits.
std::string fit_number(double x, size_t width, const std::string& what) {
  std::string s = detail::format_number(x);
  for (int prec = 8; s.size() > width && prec >= 1; --prec) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*g", prec, x);
    s = buf;
  }
  if (s.size() > width) throw Error("encode_edf: " + what + " " + s + " does not fit in " + std::to_string(width) + " characters");
  return s;
}

}  // namespace

std::string encode_edf(const EdfHeader& h, const std::vector<std::vector<int16_t>>& digital) {
  const size_t ns = h.signals.size();
  if (ns == 0 || ns > static_cast<size_t>(kMaxSignals)) throw Error("encode_edf: need 1 to 4096 signals, got " + std::to_string(ns));
  if (digital.size() != ns)
    throw Error("encode_edf: " + std::to_string(digital.size()) + " data vectors for " + std::to_string(ns) + " signals");
  int64_t records = -1;
  for (size_t s = 0; s < ns; ++s) {
    const EdfSignal& sig = h.signals[s];
    const std::string who = "encode_edf: signal " + std::to_string(s) + " ('" + sig.label + "')";
    if (sig.samples_per_record < 1) throw Error(who + ": samples_per_record must be >= 1");
    if (digital[s].size() % static_cast<size_t>(sig.samples_per_record) != 0)
      throw Error(who + ": " + std::to_string(digital[s].size()) + " samples is not a multiple of " +
                  std::to_string(sig.samples_per_record) + " samples per record");
    const int64_t r = static_cast<int64_t>(digital[s].size()) / sig.samples_per_record;
    if (records >= 0 && r != records)
      throw Error(who + ": holds " + std::to_string(r) + " records, signal 0 holds " + std::to_string(records));
    records = r;
    if (sig.digital_min > sig.digital_max || sig.digital_min < -32768 || sig.digital_max > 32767)
      throw Error(who + ": digital range [" + std::to_string(sig.digital_min) + ", " + std::to_string(sig.digital_max) + "] is invalid");
    if (!sig.is_annotation())
      for (size_t i = 0; i < digital[s].size(); ++i)
        if (digital[s][i] < sig.digital_min || digital[s][i] > sig.digital_max)
          throw Error(who + ": sample " + std::to_string(i) + " = " + std::to_string(digital[s][i]) +
                      " is outside the digital range [" + std::to_string(sig.digital_min) + ", " +
                      std::to_string(sig.digital_max) + "]");
  }
  std::string out;
  out.reserve(256 * (ns + 1));
  put_field(out, h.version.empty() ? "0" : h.version, 8, "version");
  put_field(out, h.patient, 80, "patient");
  put_field(out, h.recording, 80, "recording");
  put_field(out, h.start_date, 8, "start date");
  put_field(out, h.start_time, 8, "start time");
  put_field(out, std::to_string(256 * (ns + 1)), 8, "header bytes");
  put_field(out, h.reserved, 44, "reserved");
  put_field(out, std::to_string(records), 8, "number of records");
  put_field(out, fit_number(h.record_duration, 8, "record duration"), 8, "record duration");
  put_field(out, std::to_string(ns), 4, "number of signals");
  for (const EdfSignal& s : h.signals) put_field(out, s.label, 16, "label");
  for (const EdfSignal& s : h.signals) put_field(out, s.transducer, 80, "transducer");
  for (const EdfSignal& s : h.signals) put_field(out, s.physical_dimension, 8, "physical dimension");
  for (const EdfSignal& s : h.signals) put_field(out, fit_number(s.physical_min, 8, "physical minimum"), 8, "physical minimum");
  for (const EdfSignal& s : h.signals) put_field(out, fit_number(s.physical_max, 8, "physical maximum"), 8, "physical maximum");
  for (const EdfSignal& s : h.signals) put_field(out, std::to_string(s.digital_min), 8, "digital minimum");
  for (const EdfSignal& s : h.signals) put_field(out, std::to_string(s.digital_max), 8, "digital maximum");
  for (const EdfSignal& s : h.signals) put_field(out, s.prefiltering, 80, "prefiltering");
  for (const EdfSignal& s : h.signals) put_field(out, std::to_string(s.samples_per_record), 8, "samples per record");
  for (const EdfSignal& s : h.signals) put_field(out, s.reserved, 32, "signal reserved");
  for (int64_t r = 0; r < records; ++r) {
    for (size_t s = 0; s < ns; ++s) {
      const int64_t spr = h.signals[s].samples_per_record;
      for (int64_t i = 0; i < spr; ++i) {
        const uint16_t u = static_cast<uint16_t>(digital[s][static_cast<size_t>(r * spr + i)]);
        out.push_back(static_cast<char>(u & 0xff));
        out.push_back(static_cast<char>(u >> 8));
      }
    }
  }
  return out;
}

std::vector<int16_t> edf_physical_to_digital(const EdfSignal& sig, const std::vector<float>& physical) {
  std::vector<int16_t> d(physical.size());
  const double range = sig.physical_max - sig.physical_min;
  const double drange = static_cast<double>(sig.digital_max) - sig.digital_min;
  for (size_t i = 0; i < physical.size(); ++i) {
    double x = physical[i];
    double v = std::isnan(x) || range == 0.0 ? sig.digital_min
                                             : std::round((x - sig.physical_min) / range * drange + sig.digital_min);
    v = std::clamp(v, static_cast<double>(sig.digital_min), static_cast<double>(sig.digital_max));
    d[i] = static_cast<int16_t>(v);
  }
  return d;
}

void write_edf(const std::string& path, const EdfHeader& header, const std::vector<std::vector<float>>& physical) {
  if (physical.size() != header.signals.size())
    throw Error("write_edf(" + path + "): " + std::to_string(physical.size()) + " data vectors for " +
                std::to_string(header.signals.size()) + " signals");
  std::vector<std::vector<int16_t>> digital;
  for (size_t s = 0; s < physical.size(); ++s) digital.push_back(edf_physical_to_digital(header.signals[s], physical[s]));
  detail::write_file(path, encode_edf(header, digital), "EDF file");
}

}  // namespace sleepnet::data
