// apnea_ecg.cpp: the Apnea-ECG adapter (see apnea_ecg.h): additional-information.txt, .apn
// minutes, and the record's metadata on top of the generic WFDB record.
#include "data/apnea_ecg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>

#include "data/reader_util.h"
#include "tensor/tensor.h"

namespace sleepnet::data {

namespace {

namespace du = sleepnet::data::detail;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

enum class Col { Record, Length, NonApnea, Apnea, Hours, AI, HI, AHI, Age, Sex, Height, Weight, Ignored };

Col column_of(std::string_view name) {
  static const std::map<std::string, Col> names = {
      {"record", Col::Record}, {"length", Col::Length}, {"non-apn", Col::NonApnea},
      {"non-apnea", Col::NonApnea}, {"apnea", Col::Apnea}, {"hours", Col::Hours},
      {"ai", Col::AI}, {"hi", Col::HI}, {"ahi", Col::AHI}, {"age", Col::Age}, {"sex", Col::Sex},
      {"height", Col::Height}, {"weight", Col::Weight}};
  auto it = names.find(lower(name));
  return it == names.end() ? Col::Ignored : it->second;
}

const char* column_name(Col c) {
  switch (c) {
    case Col::Record: return "Record";
    case Col::Length: return "Length";
    case Col::NonApnea: return "non-apn";
    case Col::Apnea: return "apnea";
    case Col::Hours: return "hours";
    case Col::AI: return "AI";
    case Col::HI: return "HI";
    case Col::AHI: return "AHI";
    case Col::Age: return "Age";
    case Col::Sex: return "Sex";
    case Col::Height: return "height";
    case Col::Weight: return "weight";
    default: return "?";
  }
}

bool has_digit(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

// A record name: letters then digits, optionally followed by letters ("a01", "a01er", "x35").
bool looks_like_record_name(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0) return false;
  size_t d = i;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == d) return false;
  while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
  return i == s.size();
}

}  // namespace

const ApneaEcgTableRow* ApneaEcgTable::find(std::string_view record) const {
  for (const auto& r : rows)
    if (r.record == record) return &r;
  return nullptr;
}

ApneaEcgTable parse_apnea_ecg_table(std::string_view text, const std::string& source) {
  ApneaEcgTable table;
  table.source = source;
  std::vector<std::string_view> lines = du::split_lines(text);
  std::vector<Col> cols;
  size_t header_line = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::vector<std::string_view> tok = du::split_ws(lines[i]);
    if (!tok.empty() && lower(tok[0]) == "record" && tok.size() >= 2) {
      for (auto t : tok) cols.push_back(column_of(t));
      header_line = i + 1;
      break;
    }
  }
  if (cols.empty())
    throw Error(fmt::format("{}: no header line starting with 'Record' (expected the table of "
                            "Apnea-ECG's additional-information.txt)", source));
  std::map<Col, int> where;
  for (size_t c = 0; c < cols.size(); ++c) {
    if (cols[c] == Col::Ignored) continue;
    if (where.count(cols[c]))
      throw Error(fmt::format("{}:{}: column '{}' appears twice in the header", source, header_line, column_name(cols[c])));
    where[cols[c]] = static_cast<int>(c);
  }
  for (Col req : {Col::Record, Col::Length, Col::NonApnea, Col::Apnea, Col::AHI})
    if (!where.count(req))
      throw Error(fmt::format("{}:{}: header has no column '{}' (columns: Record Length non-apn apnea "
                              "hours AI HI AHI Age Sex height weight)", source, header_line, column_name(req)));

  std::set<std::string> seen;
  for (size_t i = header_line; i < lines.size(); ++i) {
    const int lineno = static_cast<int>(i + 1);
    std::string_view line = lines[i];
    std::vector<std::string_view> tok = du::split_ws(line);
    if (tok.empty()) continue;
    // The units line under the header ("\tminutes\tminutes\t...(cm)\t(kg)"): indented, no numbers.
    if ((line[0] == ' ' || line[0] == '\t') &&
        std::none_of(tok.begin(), tok.end(), [](std::string_view t) { return has_digit(t); }))
      continue;
    if (tok.size() != cols.size())
      throw Error(fmt::format("{}:{}: row has {} cells, expected {} (one per header column); line {}",
                              source, lineno, tok.size(), cols.size(), du::quote(du::trim(line))));
    ApneaEcgTableRow row;
    row.line = lineno;
    std::string_view name = tok[where[Col::Record]];
    if (!looks_like_record_name(name))
      throw Error(fmt::format("{}:{}: column 'Record': expected a record name such as a01, got {}",
                              source, lineno, du::quote(name)));
    row.record = std::string(name);
    auto cell = [&](Col c) { return tok[where.at(c)]; };
    auto integer = [&](Col c) -> int {
      auto v = du::parse_int(cell(c));
      if (!v || *v < 0 || *v > 100000)
        throw Error(fmt::format("{}:{}: record {}: column '{}': expected a non-negative whole number, got {}",
                                source, lineno, row.record, column_name(c), du::quote(cell(c))));
      return static_cast<int>(*v);
    };
    auto number = [&](Col c) -> double {
      auto v = du::parse_double(cell(c));
      if (!v || *v < 0)
        throw Error(fmt::format("{}:{}: record {}: column '{}': expected a non-negative number, got {}",
                                source, lineno, row.record, column_name(c), du::quote(cell(c))));
      return *v;
    };
    row.minutes = integer(Col::Length);
    row.normal_minutes = integer(Col::NonApnea);
    row.apnea_minutes = integer(Col::Apnea);
    row.ahi = number(Col::AHI);
    if (where.count(Col::Hours)) row.hours_with_apnea = integer(Col::Hours);
    if (where.count(Col::AI)) row.ai = number(Col::AI);
    if (where.count(Col::HI)) row.hi = number(Col::HI);
    if (where.count(Col::Age)) row.age = integer(Col::Age);
    if (where.count(Col::Height)) row.height_cm = number(Col::Height);
    if (where.count(Col::Weight)) row.weight_kg = number(Col::Weight);
    if (where.count(Col::Sex)) {
      std::string sex(cell(Col::Sex));
      if (sex != "M" && sex != "F")
        throw Error(fmt::format("{}:{}: record {}: column 'Sex': expected M or F, got {}", source, lineno,
                                row.record, du::quote(sex)));
      row.sex = sex;
    }
    if (row.normal_minutes + row.apnea_minutes != row.minutes)
      throw Error(fmt::format("{}:{}: record {}: non-apn ({}) + apnea ({}) != Length ({})", source, lineno,
                              row.record, row.normal_minutes, row.apnea_minutes, row.minutes));
    if (!seen.insert(row.record).second)
      throw Error(fmt::format("{}:{}: record {} listed twice", source, lineno, row.record));
    table.rows.push_back(std::move(row));
  }
  if (table.rows.empty()) throw Error(fmt::format("{}: the table has no rows", source));
  return table;
}

ApneaEcgTable read_apnea_ecg_table(const std::string& path) {
  return parse_apnea_ecg_table(du::read_file(path, "Apnea-ECG table", int64_t{1} << 22), path);
}

std::string apnea_ecg_night(std::string_view record) {
  std::string s(record);
  if (s.size() > 2 && s.compare(s.size() - 2, 2, "er") == 0 &&
      std::isdigit(static_cast<unsigned char>(s[s.size() - 3])))
    return s.substr(0, s.size() - 2);
  if (s.size() > 1 && s.back() == 'r' && std::isdigit(static_cast<unsigned char>(s[s.size() - 2])))
    return s.substr(0, s.size() - 1);
  return s;
}

std::string apnea_ecg_class(std::string_view record, const ApneaEcgTableRow* row) {
  std::string night = apnea_ecg_night(record);
  if (night.size() >= 2 && (night[0] == 'a' || night[0] == 'b' || night[0] == 'c') &&
      std::all_of(night.begin() + 1, night.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    return std::string(1, static_cast<char>(std::toupper(static_cast<unsigned char>(night[0]))));
  if (!row) return "";
  if (row->apnea_minutes >= 100) return "A";
  if (row->apnea_minutes >= 5) return "B";
  return "C";
}

std::vector<Window> apnea_windows_from_annotations(const std::vector<WfdbAnnotation>& annotations,
                                                   double fs_hz, double duration_s,
                                                   const std::string& source) {
  std::vector<Window> out;
  out.reserve(annotations.size());
  double prev = -1e300;
  for (size_t i = 0; i < annotations.size(); ++i) {
    const WfdbAnnotation& a = annotations[i];
    Window w;
    w.start_s = static_cast<double>(a.sample) / fs_hz;
    w.duration_s = 60.0;
    if (a.code == ann::APC) w.apnea = 1;
    else if (a.code == ann::NORMAL) w.apnea = 0;
    else
      throw Error(fmt::format("{}: annotation {} at sample {}: code {} ({}), expected N (no apnea) or A (apnea)",
                              source, i, a.sample, a.code, du::quote(annotation_mnemonic(a.code))));
    if (w.start_s < 0 || w.start_s < prev + 60.0 - 1e-6)
      throw Error(fmt::format("{}: annotation {} at {} s: minutes must start at least 60 s apart "
                              "(previous at {} s)", source, i, w.start_s, prev));
    if (duration_s > 0 && w.start_s >= duration_s)
      throw Error(fmt::format("{}: annotation {} at {} s starts after the record end ({} s)", source, i,
                              w.start_s, duration_s));
    w.note = std::string(annotation_mnemonic(a.code));
    prev = w.start_s;
    out.push_back(std::move(w));
  }
  return out;
}

Record load_apnea_ecg_record(const std::string& record_path, const ApneaEcgTable* table,
                             const LoadOptions& options) {
  LoadOptions opts = options;
  if (opts.windows == LoadOptions::Windows::Auto) opts.windows = LoadOptions::Windows::Minutes;
  Record r = load_wfdb_record(record_path, opts);
  r.database = Database::ApneaEcg;
  r.meta.night = apnea_ecg_night(r.id);
  const ApneaEcgTableRow* row = table ? table->find(r.meta.night) : nullptr;
  r.meta.record_class = apnea_ecg_class(r.id, row);
  if (row) {
    r.meta.reference_ahi = row->ahi;
    r.meta.ahi_source = detail::file_name(table->source);
    r.meta.age = row->age;
    r.meta.sex = row->sex;
    r.meta.height_cm = row->height_cm;
    r.meta.weight_kg = row->weight_kg;
    r.meta.table_minutes = row->minutes;
    r.meta.table_apnea_minutes = row->apnea_minutes;
    r.meta.table_normal_minutes = row->normal_minutes;
    if (row->age && !row->sex.empty() && row->height_cm && row->weight_kg)
      r.meta.subject = fmt::format("apnea-ecg/{}/{}/{}/{}", *row->age, row->sex,
                                   du::format_number(*row->height_cm), du::format_number(*row->weight_kg));
  } else if (table) {
    r.notes.push_back(fmt::format("{} is not in {}", r.meta.night, table->source));
  }
  return r;
}

}  // namespace sleepnet::data
