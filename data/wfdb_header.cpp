// wfdb_header.cpp: parser and writer of WFDB header files (see wfdb_header.h for the format).
//
// The parser walks the lines once: the first non-blank, non-comment line is the record line, the
// next num_signals such lines are signal lines, and comments may appear anywhere. Every field is
// parsed strictly (the whole token must be a number of the right kind and range) and every error
// names the source, the line number and the field.
#include "data/wfdb_header.h"

#include <cmath>
#include <map>

#include "data/reader_util.h"
#include "tensor/tensor.h"

namespace sleepnet::data {

using detail::parse_double;
using detail::parse_int;
using detail::quote;

namespace {

// Error helper: "<source>:<line>: <field>: <what>"
[[noreturn]] void fail(const std::string& source, int line, const std::string& field, const std::string& what) {
  throw Error(source + ":" + std::to_string(line) + ": " + field + ": " + what);
}

// Parses "hh:mm:ss[.sss]" (also "mm:ss" or "ss" as WFDB allows); returns seconds or nullopt.
std::optional<double> parse_wfdb_time(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t c = s.find(':', start);
    parts.push_back(s.substr(start, c == std::string_view::npos ? std::string_view::npos : c - start));
    if (c == std::string_view::npos) break;
    start = c + 1;
  }
  if (parts.empty() || parts.size() > 3) return std::nullopt;
  double total = 0.0;
  for (size_t i = 0; i < parts.size(); ++i) {
    bool last = i + 1 == parts.size();
    if (last) {
      auto v = parse_double(parts[i]);
      if (!v || *v < 0 || (parts.size() > 1 && *v >= 60.0)) return std::nullopt;
      total = total * 60.0 + *v;
    } else {
      auto v = parse_int(parts[i]);
      if (!v || *v < 0 || (i > 0 && *v >= 60) || *v > 1000000) return std::nullopt;
      if (i == 0 && parts.size() == 3 && *v >= 24) return std::nullopt;  // hours of a clock time
      total = total * 60.0 + static_cast<double>(*v);
    }
  }
  return total;
}

bool valid_wfdb_date(std::string_view s) {
  // dd/mm/yyyy
  size_t a = s.find('/');
  if (a == std::string_view::npos) return false;
  size_t b = s.find('/', a + 1);
  if (b == std::string_view::npos) return false;
  auto d = parse_int(s.substr(0, a));
  auto m = parse_int(s.substr(a + 1, b - a - 1));
  auto y = parse_int(s.substr(b + 1));
  return d && m && y && *d >= 1 && *d <= 31 && *m >= 1 && *m <= 12 && *y >= 0 && *y <= 9999;
}

// Parses an int field that must fit int32.
std::optional<int32_t> parse_i32(std::string_view s) {
  auto v = parse_int(s);
  if (!v || *v < INT32_MIN || *v > INT32_MAX) return std::nullopt;
  return static_cast<int32_t>(*v);
}

void parse_record_line(std::string_view line, const std::string& src, int ln, WfdbHeader& h) {
  auto tok = detail::split_ws(line);
  // tok[0]: record name, possibly "name/segments"
  std::string_view name = tok[0];
  if (name.find('/') != std::string_view::npos)
    fail(src, ln, "record name", "multi-segment record " + quote(name) +
                                     " is not supported (only single-segment records can be read)");
  h.record_name = std::string(name);
  if (tok.size() < 2) fail(src, ln, "number of signals", "missing (record line has only the record name)");
  auto ns = parse_int(tok[1]);
  if (!ns) fail(src, ln, "number of signals", quote(tok[1]) + " is not an integer");
  if (*ns < 0 || *ns > kWfdbMaxSignals)
    fail(src, ln, "number of signals", std::to_string(*ns) + " is out of range [0, " +
                                           std::to_string(kWfdbMaxSignals) + "]");
  h.num_signals = static_cast<int>(*ns);

  if (tok.size() >= 3) {
    // fs[/counter_freq[(base_counter)]]
    std::string_view f = tok[2];
    std::string_view fs_text = f, cf_text, bc_text;
    size_t slash = f.find('/');
    if (slash != std::string_view::npos) {
      fs_text = f.substr(0, slash);
      cf_text = f.substr(slash + 1);
      size_t paren = cf_text.find('(');
      if (paren != std::string_view::npos) {
        if (cf_text.back() != ')')
          fail(src, ln, "base counter", quote(f) + " has '(' without a closing ')'");
        bc_text = cf_text.substr(paren + 1, cf_text.size() - paren - 2);
        cf_text = cf_text.substr(0, paren);
      }
    }
    auto fs = parse_double(fs_text);
    if (!fs) fail(src, ln, "sampling frequency", quote(fs_text) + " is not a number");
    if (*fs <= 0.0 || *fs > 1e7)
      fail(src, ln, "sampling frequency", detail::format_number(*fs) + " Hz is out of range (0, 1e7]");
    h.sampling_frequency = *fs;
    h.sampling_frequency_given = true;
    if (slash != std::string_view::npos) {
      auto cf = parse_double(cf_text);
      if (!cf) fail(src, ln, "counter frequency", quote(cf_text) + " is not a number");
      if (*cf <= 0.0 || *cf > 1e9)
        fail(src, ln, "counter frequency", detail::format_number(*cf) + " is out of range (0, 1e9]");
      h.counter_frequency = *cf;
      if (!bc_text.empty() || f.find('(') != std::string_view::npos) {
        auto bc = parse_double(bc_text);
        if (!bc) fail(src, ln, "base counter", quote(bc_text) + " is not a number");
        h.base_counter = *bc;
      }
    }
  }
  if (tok.size() >= 4) {
    auto n = parse_int(tok[3]);
    if (!n) fail(src, ln, "number of samples", quote(tok[3]) + " is not an integer");
    if (*n < 0) fail(src, ln, "number of samples", std::to_string(*n) + " is negative");
    if (*n > kWfdbMaxSamples)
      fail(src, ln, "number of samples", std::to_string(*n) + " is absurd (more than " +
                                             std::to_string(kWfdbMaxSamples) + ")");
    if (*n > 0) h.num_samples = *n;
  }
  if (tok.size() >= 5) {
    if (!parse_wfdb_time(tok[4]))
      fail(src, ln, "base time", quote(tok[4]) + " is not a time hh:mm:ss");
    h.base_time = std::string(tok[4]);
  }
  if (tok.size() >= 6) {
    if (!valid_wfdb_date(tok[5])) fail(src, ln, "base date", quote(tok[5]) + " is not a date dd/mm/yyyy");
    h.base_date = std::string(tok[5]);
  }
  if (tok.size() > 6) fail(src, ln, "record line", "unexpected extra field " + quote(tok[6]));
}

// "212", "16x1", "212:0", "16+512", "212x1:0+24"
void parse_format_field(std::string_view f, const std::string& src, int ln, const std::string& field,
                        WfdbSignalSpec& s) {
  size_t i = 0;
  auto take_digits = [&](size_t from) {
    size_t j = from;
    while (j < f.size() && f[j] >= '0' && f[j] <= '9') ++j;
    return j;
  };
  size_t j = take_digits(0);
  auto fmt = parse_int(f.substr(0, j));
  if (!fmt) fail(src, ln, field, quote(f) + " is not a signal format");
  i = j;
  std::optional<int64_t> spf, skew, offset;
  while (i < f.size()) {
    char c = f[i];
    if (c != 'x' && c != ':' && c != '+') fail(src, ln, field, quote(f) + " has an unexpected character");
    size_t k = take_digits(i + 1);
    auto v = parse_int(f.substr(i + 1, k - i - 1));
    if (!v) fail(src, ln, field, quote(f) + ": '" + std::string(1, c) + "' must be followed by a number");
    if (c == 'x') spf = v;
    if (c == ':') skew = v;
    if (c == '+') offset = v;
    i = k;
  }
  if (!wfdb_format_supported(static_cast<int>(*fmt)) || *fmt > 100000)
    fail(src, ln, field, "unsupported signal format " + std::to_string(*fmt) +
                             " (this reader supports 16, 212 and 80)");
  s.format = static_cast<int>(*fmt);
  if (spf && *spf > 1)
    fail(src, ln, field, quote(f) + ": " + std::to_string(*spf) +
                             " samples per frame (multi-frequency records) are not supported");
  s.samples_per_frame = 1;
  if (skew && *skew != 0)
    fail(src, ln, field, quote(f) + ": skew " + std::to_string(*skew) + " is not supported");
  if (offset) {
    if (*offset > (int64_t{1} << 40)) fail(src, ln, field, quote(f) + ": absurd byte offset");
    s.byte_offset = *offset;
  }
}

// "200", "-200/mV", "4.77778(-477)/mmHg", "0", "200(0)"
void parse_gain_field(std::string_view g, const std::string& src, int ln, const std::string& field,
                      WfdbSignalSpec& s, bool& baseline_given) {
  std::string_view gain_text = g;
  size_t slash = g.find('/');
  if (slash != std::string_view::npos) {
    std::string_view units = g.substr(slash + 1);
    if (!units.empty()) s.units = std::string(units);
    gain_text = g.substr(0, slash);
  }
  size_t paren = gain_text.find('(');
  if (paren != std::string_view::npos) {
    if (gain_text.back() != ')') fail(src, ln, field, quote(g) + ": '(' without a closing ')'");
    std::string_view b = gain_text.substr(paren + 1, gain_text.size() - paren - 2);
    auto bl = parse_i32(b);
    if (!bl) fail(src, ln, field, quote(g) + ": baseline " + quote(b) + " is not an integer");
    s.baseline = *bl;
    baseline_given = true;
    gain_text = gain_text.substr(0, paren);
  }
  auto gain = parse_double(gain_text);
  if (!gain) fail(src, ln, field, quote(g) + ": gain " + quote(gain_text) + " is not a number");
  if (*gain == 0.0) {
    s.gain = 200.0;  // WFDB: 0 means uncalibrated; the default gain is used
    s.gain_given = false;
  } else {
    s.gain = *gain;
    s.gain_given = true;
  }
}

void parse_signal_line(std::string_view line, const std::string& src, int ln, int index, WfdbSignalSpec& s) {
  const std::string sig = "signal " + std::to_string(index) + " ";
  // Locate up to 9 tokens with their positions, so the description keeps its inner spaces.
  std::vector<std::string_view> tok;
  size_t i = 0;
  while (i < line.size() && tok.size() < 9) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i >= line.size()) break;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    tok.push_back(line.substr(i, j - i));
    i = j;
  }
  s.file_name = std::string(tok[0]);
  if (tok.size() < 2) fail(src, ln, sig + "field 'format'", "missing (a signal line needs a file name and a format)");
  parse_format_field(tok[1], src, ln, sig + "field 'format'", s);
  bool baseline_given = false;
  if (tok.size() >= 3) parse_gain_field(tok[2], src, ln, sig + "field 'gain'", s, baseline_given);
  s.adc_resolution = wfdb_default_adc_resolution(s.format);
  if (tok.size() >= 4) {
    auto r = parse_int(tok[3]);
    if (!r) fail(src, ln, sig + "field 'ADC resolution'", quote(tok[3]) + " is not an integer");
    if (*r < 0 || *r > 32) fail(src, ln, sig + "field 'ADC resolution'", std::to_string(*r) + " bits is out of range [0, 32]");
    if (*r > 0) s.adc_resolution = static_cast<int>(*r);
  }
  if (tok.size() >= 5) {
    auto z = parse_i32(tok[4]);
    if (!z) fail(src, ln, sig + "field 'ADC zero'", quote(tok[4]) + " is not a 32-bit integer");
    s.adc_zero = *z;
  }
  if (!baseline_given) s.baseline = s.adc_zero;
  s.initial_value = s.adc_zero;
  if (tok.size() >= 6) {
    auto v = parse_i32(tok[5]);
    if (!v) fail(src, ln, sig + "field 'initial value'", quote(tok[5]) + " is not a 32-bit integer");
    s.initial_value = *v;
  }
  if (tok.size() >= 7) {
    auto c = parse_int(tok[6]);
    if (!c) fail(src, ln, sig + "field 'checksum'", quote(tok[6]) + " is not an integer");
    if (*c < -32768 || *c > 65535)
      fail(src, ln, sig + "field 'checksum'", std::to_string(*c) + " does not fit 16 bits");
    s.checksum = static_cast<int32_t>(*c);
  }
  if (tok.size() >= 8) {
    auto b = parse_int(tok[7]);
    if (!b) fail(src, ln, sig + "field 'block size'", quote(tok[7]) + " is not an integer");
    if (*b < 0 || *b > (1 << 30)) fail(src, ln, sig + "field 'block size'", std::to_string(*b) + " is out of range");
    s.block_size = static_cast<int>(*b);
  }
  if (tok.size() >= 9) {
    // tok[8] is the first word of the description: keep everything from there on.
    std::string_view d = line.substr(static_cast<size_t>(tok[8].data() - line.data()));
    s.description = std::string(detail::trim(d));
  }
}

}  // namespace

std::optional<double> WfdbHeader::base_time_seconds() const {
  if (!base_time) return std::nullopt;
  return parse_wfdb_time(*base_time);
}

int WfdbHeader::find_signal(std::string_view description) const {
  for (size_t i = 0; i < signals.size(); ++i)
    if (signals[i].description == description) return static_cast<int>(i);
  return -1;
}

int wfdb_default_adc_resolution(int format) {
  switch (format) {
    case 16: return 16;
    case 212: return 12;
    case 80: return 8;
    default: return 0;
  }
}

bool wfdb_format_supported(int format) { return format == 16 || format == 212 || format == 80; }

WfdbHeader parse_wfdb_header(std::string_view text, const std::string& source) {
  WfdbHeader h;
  auto lines = detail::split_lines(text);
  bool have_record = false;
  int record_line_no = 0;
  for (size_t li = 0; li < lines.size(); ++li) {
    const int ln = static_cast<int>(li) + 1;
    std::string_view raw = lines[li];
    std::string_view t = detail::trim(raw);
    if (t.empty()) continue;
    if (t.front() == '#') {
      std::string_view c = t.substr(1);
      if (!c.empty() && c.front() == ' ') c.remove_prefix(1);
      h.comments.emplace_back(c);
      continue;
    }
    if (raw.find('\0') != std::string_view::npos) fail(source, ln, "line", "contains a NUL byte");
    if (!have_record) {
      parse_record_line(t, source, ln, h);
      have_record = true;
      record_line_no = ln;
      continue;
    }
    if (static_cast<int>(h.signals.size()) >= h.num_signals)
      fail(source, ln, "signal line", "more signal lines than the " + std::to_string(h.num_signals) +
                                          " declared on the record line (line " +
                                          std::to_string(record_line_no) + ")");
    WfdbSignalSpec s;
    parse_signal_line(t, source, ln, static_cast<int>(h.signals.size()), s);
    // Signals sharing a file must agree on format and byte offset (they are one interleaved stream).
    for (size_t k = 0; k < h.signals.size(); ++k) {
      const WfdbSignalSpec& o = h.signals[k];
      if (o.file_name != s.file_name) continue;
      if (o.format != s.format)
        fail(source, ln, "signal " + std::to_string(h.signals.size()) + " field 'format'",
             "format " + std::to_string(s.format) + " differs from format " + std::to_string(o.format) +
                 " of signal " + std::to_string(k) + " in the same file " + quote(s.file_name));
      if (o.byte_offset != s.byte_offset)
        fail(source, ln, "signal " + std::to_string(h.signals.size()) + " field 'format'",
             "byte offset differs from signal " + std::to_string(k) + " in the same file " + quote(s.file_name));
      break;
    }
    h.signals.push_back(std::move(s));
  }
  if (!have_record) throw Error(source + ": not a WFDB header (no record line: the file is empty or only comments)");
  if (static_cast<int>(h.signals.size()) != h.num_signals)
    fail(source, record_line_no, "number of signals",
         "the record line declares " + std::to_string(h.num_signals) + " signals but " +
             std::to_string(h.signals.size()) + " signal lines follow");
  return h;
}

std::string wfdb_record_base(const std::string& path) {
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".hea") == 0) return path.substr(0, path.size() - 4);
  return path;
}

std::string wfdb_directory(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

WfdbHeader read_wfdb_header(const std::string& path) {
  const std::string file = wfdb_record_base(path) + ".hea";
  std::string text = detail::read_file(file, "WFDB header", int64_t{1} << 24);
  return parse_wfdb_header(text, file);
}

std::string format_wfdb_header(const WfdbHeader& h) {
  if (static_cast<int>(h.signals.size()) != h.num_signals)
    throw Error("format_wfdb_header: num_signals = " + std::to_string(h.num_signals) + " but " +
                std::to_string(h.signals.size()) + " signals are given");
  if (h.record_name.empty() || h.record_name.find_first_of(" \t\n/") != std::string::npos)
    throw Error("format_wfdb_header: record name " + quote(h.record_name) + " is empty or has spaces or '/'");
  std::string out = h.record_name + " " + std::to_string(h.num_signals);
  const bool more = h.num_samples || h.base_time || h.base_date;
  if (h.sampling_frequency_given || h.counter_frequency > 0 || more) {
    out += " " + detail::format_number(h.sampling_frequency);
    if (h.counter_frequency > 0) {
      out += "/" + detail::format_number(h.counter_frequency);
      if (h.base_counter != 0.0) out += "(" + detail::format_number(h.base_counter) + ")";
    }
  }
  if (more) {
    out += ' ';
    out += std::to_string(h.num_samples.value_or(0));
  }
  if (h.base_time || h.base_date) {
    out += ' ';
    out += h.base_time.value_or("0:0:0");
  }
  if (h.base_date) {
    out += ' ';
    out += *h.base_date;
  }
  out += "\n";
  for (size_t i = 0; i < h.signals.size(); ++i) {
    const WfdbSignalSpec& s = h.signals[i];
    const std::string who = "format_wfdb_header: signal " + std::to_string(i);
    if (s.file_name.empty() || s.file_name.find_first_of(" \t\n") != std::string::npos)
      throw Error(who + ": file name " + quote(s.file_name) + " is empty or has spaces");
    if (s.units.empty() || s.units.find_first_of(" \t\n") != std::string::npos)
      throw Error(who + ": units " + quote(s.units) + " are empty or have spaces");
    if (!s.checksum && (s.block_size != 0 || !s.description.empty()))
      throw Error(who + ": a block size or description cannot be written without a checksum "
                        "(header fields are positional)");
    // Built with a field-appending lambda (also avoids a GCC 12 -Wrestrict false positive on
    // "literal" + std::to_string(...)).
    auto field = [&out](const std::string& f) {
      out += ' ';
      out += f;
    };
    out += s.file_name;
    std::string fmt = std::to_string(s.format);
    if (s.byte_offset != 0) fmt += '+' + std::to_string(s.byte_offset);
    field(fmt);
    std::string gain = s.gain_given ? detail::format_number(s.gain) : std::string("0");
    gain += '(';
    gain += std::to_string(s.baseline);
    gain += ")/";
    gain += s.units;
    field(gain);
    field(std::to_string(s.adc_resolution));
    field(std::to_string(s.adc_zero));
    field(std::to_string(s.initial_value));
    if (s.checksum) {
      field(std::to_string(*s.checksum));
      field(std::to_string(s.block_size));
      if (!s.description.empty()) field(s.description);
    }
    out += "\n";
  }
  for (const std::string& c : h.comments) out += "# " + c + "\n";
  return out;
}

void write_wfdb_header(const std::string& path, const WfdbHeader& header) {
  const std::string file = wfdb_record_base(path) + ".hea";
  detail::write_file(file, format_wfdb_header(header), "WFDB header");
}

}  // namespace sleepnet::data
