// edf_test.cpp: EDF/EDF+ reader and writer. A small file written independently from the
// specification (tests/data/edf/ucddb_like.edf, with UCDDB's ':' start-time quirk), writer round
// trips, tolerated quirks (warnings), EDF+ annotations, and headers whose lengths lie.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "data/edf.h"
#include "reader_test_util.h"

using namespace sleepnet;
using namespace sleepnet::data;
using sleepnet::test::TempDir;

namespace {

const std::string kData = std::string(SLEEPNET_TEST_DATA_DIR);

bool has_warning(const EdfHeader& h, const std::string& part) {
  for (const auto& w : h.warnings)
    if (w.find(part) != std::string::npos) return true;
  return false;
}

EdfSignal make_signal(const std::string& label, int64_t spr, double pmin, double pmax, int32_t dmin = -32768,
                      int32_t dmax = 32767, const std::string& dim = "uV") {
  EdfSignal s;
  s.label = label;
  s.physical_dimension = dim;
  s.physical_min = pmin;
  s.physical_max = pmax;
  s.digital_min = dmin;
  s.digital_max = dmax;
  s.samples_per_record = spr;
  return s;
}

EdfHeader make_header(std::vector<EdfSignal> signals, double duration = 1.0) {
  EdfHeader h;
  h.patient = "X M 01-JAN-1960 synthetic";
  h.recording = "Startdate 01-JAN-2020 X X sleepnet";
  h.start_date = "01.01.20";
  h.start_time = "22.30.00";
  h.record_duration = duration;
  h.signals = std::move(signals);
  return h;
}

// A valid 3-signal file in memory: ECG 128/record, SpO2 1/record, Resp 8/record, 10 records of 1 s.
std::string valid_edf(std::vector<std::vector<float>>* physical_out = nullptr) {
  EdfHeader h = make_header({make_signal("ECG", 128, -5, 5, -2048, 2047, "mV"), make_signal("SpO2", 1, 0, 100, 0, 1000, "%"),
                             make_signal("Resp", 8, -1000, 1000)});
  std::vector<std::vector<float>> x(3);
  for (int i = 0; i < 1280; ++i) x[0].push_back(static_cast<float>(4.0 * std::sin(i * 0.05)));
  for (int i = 0; i < 10; ++i) x[1].push_back(90.0f + static_cast<float>(i) * 0.5f);
  for (int i = 0; i < 80; ++i) x[2].push_back(static_cast<float>(i * 10 - 400));
  std::vector<std::vector<int16_t>> d;
  for (size_t s = 0; s < 3; ++s) d.push_back(edf_physical_to_digital(h.signals[s], x[s]));
  if (physical_out) *physical_out = x;
  return encode_edf(h, d);
}

// Replaces the bytes of a header field (padded with spaces to `width`).
std::string patched(std::string b, size_t offset, size_t width, const std::string& value) {
  std::string v = value;
  v.resize(width, ' ');
  b.replace(offset, width, v);
  return b;
}

}  // namespace

TEST(Edf, ReadsFileWrittenFromTheSpecification) {
  EdfReader r = EdfReader::open(kData + "/edf/ucddb_like.edf");
  const EdfHeader& h = r.header();
  EXPECT_EQ(h.num_signals(), 2);
  EXPECT_EQ(h.num_records, 3);
  EXPECT_TRUE(h.num_records_given);
  EXPECT_DOUBLE_EQ(h.record_duration, 1.0);
  EXPECT_EQ(h.start_date, "01.02.03");
  EXPECT_EQ(h.start_day, 1);
  EXPECT_EQ(h.start_month, 2);
  EXPECT_EQ(h.start_year, 2003);
  // UCDDB writes the start time with ':' : accepted, with a warning naming the file and field.
  EXPECT_EQ(h.start_time, "23:07:50");
  EXPECT_EQ(h.start_hour, 23);
  EXPECT_EQ(h.start_minute, 7);
  EXPECT_EQ(h.start_second, 50);
  EXPECT_DOUBLE_EQ(h.start_seconds_of_day(), 23 * 3600 + 7 * 60 + 50);
  EXPECT_TRUE(has_warning(h, "ucddb_like.edf: field 'start time'"));
  EXPECT_EQ(h.warnings.size(), 1u);
  EXPECT_EQ(h.signals[0].label, "ECG");
  EXPECT_EQ(h.signals[0].transducer, "AgAgCl electrode");
  EXPECT_EQ(h.signals[0].prefiltering, "HP:0.1Hz");
  EXPECT_EQ(h.signals[1].physical_dimension, "%");
  EXPECT_DOUBLE_EQ(h.sampling_rate(0), 4.0);
  EXPECT_DOUBLE_EQ(h.sampling_rate(1), 1.0);
  EXPECT_DOUBLE_EQ(h.duration_seconds(), 3.0);
  EXPECT_FALSE(h.edf_plus());
  // ECG digital (r*4 + i) * 100 - 500; physical = -5 + (d + 2048) * 10 / 4095.
  std::vector<int16_t> ecg = r.read_digital(0);
  ASSERT_EQ(ecg.size(), 12u);
  for (int k = 0; k < 12; ++k) EXPECT_EQ(ecg[static_cast<size_t>(k)], k * 100 - 500);
  std::vector<float> ecg_mv = r.read_physical(r.signal_index("ecg"));  // case-insensitive label
  EXPECT_NEAR(ecg_mv[5], -5.0 + (0 + 2048) * 10.0 / 4095.0, 1e-6);
  EXPECT_EQ(r.read_physical("SpO2"), (std::vector<float>{90.0f, 91.0f, 92.0f}));
  EXPECT_EQ(r.read_digital(0, 1, 1), (std::vector<int16_t>{-100, 0, 100, 200}));
  EXPECT_EQ(r.read_digital(1, 2), (std::vector<int16_t>{92}));
}

TEST(Edf, WriterRoundTripFileAndMemory) {
  std::vector<std::vector<float>> x;
  const std::string bytes = valid_edf(&x);
  TempDir d;
  test::write_bytes(d.file("v.edf"), bytes);
  for (const EdfReader& r : {EdfReader::open(d.file("v.edf")), EdfReader::from_bytes(bytes, "mem.edf")}) {
    const EdfHeader& h = r.header();
    EXPECT_TRUE(h.warnings.empty()) << h.warnings[0];
    EXPECT_EQ(h.num_records, 10);
    EXPECT_EQ(h.header_bytes, 256 * 4);
    EXPECT_EQ(h.record_bytes(), 2 * (128 + 1 + 8));
    EXPECT_DOUBLE_EQ(h.sampling_rate(0), 128.0);
    EXPECT_EQ(h.start_hour, 22);
    EXPECT_EQ(h.start_minute, 30);
    EXPECT_EQ(h.patient, "X M 01-JAN-1960 synthetic");
    for (int s = 0; s < 3; ++s) {
      std::vector<float> y = r.read_physical(s);
      ASSERT_EQ(y.size(), x[static_cast<size_t>(s)].size());
      const double tol = h.signals[static_cast<size_t>(s)].scale() / 2 + 1e-6;
      for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], x[static_cast<size_t>(s)][i], tol) << s << " " << i;
    }
    // A record range.
    std::vector<float> part = r.read_physical(0, 3, 2);
    ASSERT_EQ(part.size(), 256u);
    EXPECT_NEAR(part[0], x[0][3 * 128], 0.01);
    EXPECT_TRUE(r.read_physical(0, 10, 0).empty());
  }
}

TEST(Edf, ToleratedQuirks) {
  const std::string good = valid_edf();
  // Numbers NUL-padded, a decimal comma, a version other than "0", -1 records.
  std::string b = good;
  b.replace(236, 8, std::string("10\0\0\0\0\0\0", 8));  // number of records, NUL-padded
  b = patched(b, 0, 8, "1");
  const size_t pmin0 = 256 + 3 * (16 + 80 + 8);  // physical minimum of signal 0
  b = patched(b, pmin0, 8, "-5,0");
  EdfHeader h = EdfReader::from_bytes(b, "q.edf").header();
  EXPECT_TRUE(has_warning(h, "field 'number of data records'")) << h.warnings.size();
  EXPECT_TRUE(has_warning(h, "field 'version'"));
  EXPECT_TRUE(has_warning(h, "decimal comma"));
  EXPECT_DOUBLE_EQ(h.signals[0].physical_min, -5.0);
  // -1 records: derived from the file size.
  EdfReader r = EdfReader::from_bytes(patched(good, 236, 8, "-1"), "u.edf");
  EXPECT_EQ(r.header().num_records, 10);
  EXPECT_FALSE(r.header().num_records_given);
  EXPECT_TRUE(has_warning(r.header(), "-1 (unknown)"));
  // Extra bytes after the last record: ignored with a warning.
  EdfHeader e = EdfReader::from_bytes(good + "xyz!", "x.edf").header();
  EXPECT_EQ(e.num_records, 10);
  EXPECT_TRUE(has_warning(e, "4 bytes after the last"));
  // Unparseable start date: warning, not an error.
  EdfHeader g = EdfReader::from_bytes(patched(good, 168, 8, "garbage"), "g.edf").header();
  EXPECT_TRUE(has_warning(g, "field 'start date'"));
  // Equal digital minimum and maximum (blanked channel): warning, constant physical values.
  const size_t dmax1 = 256 + 3 * (16 + 80 + 8 + 8 + 8 + 8) + 1 * 8;  // digital maximum of signal 1
  EdfReader c = EdfReader::from_bytes(patched(good, dmax1, 8, "0"), "c.edf");
  EXPECT_TRUE(has_warning(c.header(), "signal 1 ('SpO2'): digital minimum equals digital maximum"));
  for (float v : c.read_physical(1)) EXPECT_EQ(v, 0.0f);
}

TEST(Edf, EdfPlusAnnotations) {
  // Signal 0: a 4-sample data signal; signal 1: "EDF Annotations" with 32 bytes (16 samples) per record.
  EdfHeader h = make_header({make_signal("Resp", 4, -1, 1), make_signal("EDF Annotations", 16, -1, 1)});
  h.reserved = "EDF+C";
  auto tal_words = [](const std::string& tal) {
    std::string t = tal;
    t.resize(32, '\0');
    std::vector<int16_t> w;
    for (size_t i = 0; i < t.size(); i += 2)
      w.push_back(static_cast<int16_t>(static_cast<uint16_t>(static_cast<unsigned char>(t[i]) |
                                                             (static_cast<unsigned char>(t[i + 1]) << 8))));
    return w;
  };
  using namespace std::string_literals;
  std::vector<int16_t> ann = tal_words("+0\x14\x14\0+1.5\x15" "0.5\x14" "Apnea\x14\0"s);
  std::vector<int16_t> ann1 = tal_words("+1\x14\x14\0+1.25\x14" "Desat\x14" "Arousal\x14\0"s);
  ann.insert(ann.end(), ann1.begin(), ann1.end());
  std::string bytes = encode_edf(h, {{0, 1, 2, 3, 4, 5, 6, 7}, ann});
  EdfReader r = EdfReader::from_bytes(bytes, "plus.edf");
  EXPECT_TRUE(r.header().edf_plus());
  EXPECT_FALSE(r.header().discontinuous());
  EXPECT_TRUE(r.header().signals[1].is_annotation());
  auto a = r.read_annotations();
  ASSERT_EQ(a.size(), 3u);
  EXPECT_DOUBLE_EQ(a[0].onset, 1.5);
  EXPECT_DOUBLE_EQ(a[0].duration, 0.5);
  EXPECT_EQ(a[0].text, "Apnea");
  EXPECT_DOUBLE_EQ(a[1].onset, 1.25);
  EXPECT_DOUBLE_EQ(a[1].duration, -1.0);
  EXPECT_EQ(a[1].text, "Desat");
  EXPECT_EQ(a[2].text, "Arousal");
  // Malformed TALs.
  std::vector<int16_t> bad = tal_words("x0\x14\x14\0"s);
  bad.insert(bad.end(), ann1.begin(), ann1.end());
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(encode_edf(h, {{0, 1, 2, 3, 4, 5, 6, 7}, bad}), "b.edf").read_annotations(),
                        {"b.edf", "record 0", "must start with '+' or '-'"});
  std::vector<int16_t> unterminated = tal_words("+0\x14\x14\0+2\x14" "abcdefghijklmnopqrstuvwx"s);
  unterminated.insert(unterminated.end(), ann1.begin(), ann1.end());
  EXPECT_ERROR_CONTAINS(
      EdfReader::from_bytes(encode_edf(h, {{0, 1, 2, 3, 4, 5, 6, 7}, unterminated}), "u.edf").read_annotations(),
      {"u.edf", "record 0", "not terminated"});
}

TEST(Edf, EdfPlusFileWrittenFromTheSpecification) {
  // tests/data/edf/edfplus_annotations.edf: EDF+C written independently of encode_edf, 2 records,
  // TALs "+0<14><14><0>+1.5<21>0.5<14>Apnea<14><0>" and "+1<14><14><0>+1.25<14>Desat<14>Arousal<14><0>".
  EdfReader r = EdfReader::open(kData + "/edf/edfplus_annotations.edf");
  EXPECT_TRUE(r.header().edf_plus());
  EXPECT_TRUE(r.header().warnings.empty());
  EXPECT_EQ(r.read_digital(0), (std::vector<int16_t>{1, 2, 3, 4, 1, 2, 3, 4}));
  auto a = r.read_annotations();
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].text, "Apnea");
  EXPECT_DOUBLE_EQ(a[0].onset, 1.5);
  EXPECT_DOUBLE_EQ(a[0].duration, 0.5);
  EXPECT_EQ(a[2].text, "Arousal");
  EXPECT_DOUBLE_EQ(a[2].onset, 1.25);
}

TEST(Edf, SignalLookup) {
  EdfReader r = EdfReader::from_bytes(valid_edf(), "m.edf");
  EXPECT_EQ(r.signal_index("Resp"), 2);
  EXPECT_EQ(r.signal_index("  spo2 "), 1);
  EXPECT_EQ(r.header().find_signal("EEG"), -1);
  EXPECT_ERROR_CONTAINS(r.signal_index("EEG"), {"m.edf", "no signal labelled 'EEG'", "'ECG', 'SpO2', 'Resp'"});
  EXPECT_ERROR_CONTAINS(r.read_digital(3), {"m.edf", "signal index 3"});
  EXPECT_ERROR_CONTAINS(r.read_digital(0, 9, 2), {"records [9, 11)", "outside [0, 10)"});
  EXPECT_ERROR_CONTAINS(r.read_digital(0, -1, 1), {"outside"});
}

TEST(EdfBad, EmptyAndShortFiles) {
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes("", "e.edf"), {"e.edf", "empty file"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(std::string(100, ' '), "s.edf"), {"s.edf", "shorter than the 256-byte"});
  TempDir d;
  test::write_bytes(d.file("empty.edf"), "");
  EXPECT_ERROR_CONTAINS(EdfReader::open(d.file("empty.edf")), {"empty.edf", "empty file"});
  EXPECT_ERROR_CONTAINS(EdfReader::open(d.file("missing.edf")), {"missing.edf", "cannot open"});
}

TEST(EdfBad, HeaderLengthsLie) {
  EXPECT_ERROR_CONTAINS(EdfReader::open(kData + "/bad/header_bytes_lie.edf"),
                        {"header_bytes_lie.edf", "field 'number of bytes in header'", "says 1024", "= 768"});
  const std::string good = valid_edf();
  // Signal count says 5 (header bytes patched to match): the signal headers run into the data.
  std::string five = patched(patched(good, 252, 4, "5"), 184, 8, std::to_string(256 * 6));
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(five, "five.edf"), {"five.edf", "signal"});
  // Signal count larger than the file.
  std::string many = patched(patched(good, 252, 4, "4000"), 184, 8, std::to_string(256 * 4001));
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(many, "many.edf"), {"many.edf", "header truncated", "1024256"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, 252, 4, "0"), "z.edf"),
                        {"z.edf", "field 'number of signals'", "out of range"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, 252, 4, "-3"), "n.edf"), {"number of signals", "out of range"});
}

TEST(EdfBad, DataSizeLies) {
  const std::string good = valid_edf();
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, 236, 8, "12"), "more.edf"),
                        {"more.edf", "truncated", "says 12 records", "274 bytes", "has 2740"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(good.substr(0, good.size() - 1), "cut.edf"),
                        {"cut.edf", "truncated", "the last record is cut"});
  EXPECT_ERROR_CONTAINS(EdfReader::open(kData + "/bad/truncated_record.edf"), {"truncated_record.edf", "truncated"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, 236, 8, "-1").substr(0, good.size() - 5), "u.edf"),
                        {"u.edf", "last data record truncated"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, 236, 8, "-7"), "neg.edf"),
                        {"neg.edf", "number of data records", "negative"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, 236, 8, "9999999999999999"), "big.edf").header(),
                        {"big.edf"});
}

TEST(EdfBad, GarbageNumbers) {
  const std::string good = valid_edf();
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, 244, 8, "abc"), "d.edf"),
                        {"d.edf", "field 'duration of a data record'", "'abc' is not a number"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, 244, 8, "nan"), "d.edf"), {"duration", "not a number"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, 244, 8, "-1"), "d.edf"), {"duration", "out of range"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, 244, 8, "0"), "d.edf"), {"duration", "0 seconds"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, 184, 8, "x"), "h.edf"),
                        {"number of bytes in header", "'x' is not an integer"});
  const size_t pmax0 = 256 + 3 * (16 + 80 + 8 + 8);
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, pmax0, 8, "NaN"), "p.edf"),
                        {"p.edf", "signal 0 ('ECG') field 'physical maximum'", "'NaN' is not a number"});
  const size_t dmin1 = 256 + 3 * (16 + 80 + 8 + 8 + 8) + 8;
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, dmin1, 8, "99999"), "dm.edf"),
                        {"signal 1 ('SpO2') field 'digital minimum'", "does not fit 16 bits"});
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, dmin1, 8, "2000"), "dm.edf"),
                        {"signal 1 ('SpO2')", "digital minimum 2000 is above the digital maximum 1000"});
  const size_t spr2 = 256 + 3 * (16 + 80 + 8 + 8 + 8 + 8 + 8 + 80) + 2 * 8;
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(patched(good, spr2, 8, "0"), "spr.edf"),
                        {"signal 2 ('Resp') field 'number of samples in each data record'", "out of range"});
  std::string bdf = good;
  bdf[0] = static_cast<char>(0xFF);
  EXPECT_ERROR_CONTAINS(EdfReader::from_bytes(bdf, "b.bdf"), {"b.bdf", "BDF"});
}

TEST(EdfBad, WriterRefusesBadInput) {
  EdfHeader h = make_header({make_signal("ECG", 2, -1, 1, -100, 100)});
  EXPECT_ERROR_CONTAINS(encode_edf(h, {{0, 1, 2}}), {"3 samples is not a multiple of 2"});
  EXPECT_ERROR_CONTAINS(encode_edf(h, {{0, 101}}), {"sample 1 = 101", "outside the digital range"});
  EXPECT_ERROR_CONTAINS(encode_edf(h, {}), {"0 data vectors for 1 signals"});
  EdfHeader two = make_header({make_signal("A", 1, -1, 1), make_signal("B", 1, -1, 1)});
  EXPECT_ERROR_CONTAINS(encode_edf(two, {{0, 0}, {0}}), {"signal 1 ('B'): holds 1 records, signal 0 holds 2"});
  EdfHeader longlabel = make_header({make_signal("a label that is far too long", 1, -1, 1)});
  EXPECT_ERROR_CONTAINS(encode_edf(longlabel, {{0}}), {"label", "longer than its 16-byte field"});
  // Physical -> digital clamps to the digital range and maps NaN to the minimum.
  EdfSignal s = make_signal("X", 1, -1, 1, -100, 100);
  EXPECT_EQ(edf_physical_to_digital(s, {0.0f, 1.0f, -1.0f, 5.0f, NAN, 0.5f}),
            (std::vector<int16_t>{0, 100, -100, 100, -100, 50}));
}
