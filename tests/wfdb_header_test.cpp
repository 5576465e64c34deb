// wfdb_header_test.cpp: WFDB header parser and writer, on the shipped PhysioNet headers, on
// hand-written headers covering every field form, and on malformed headers.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "data/wfdb_header.h"
#include "tensor/tensor.h"

using namespace sleepnet;
using namespace sleepnet::data;

namespace {

const std::string kPhysionet = std::string(SLEEPNET_SOURCE_DIR) + "/data/physionet";

// Expects parse_wfdb_header(text) to throw an Error whose message contains every `parts`.
void expect_error(const std::string& text, std::initializer_list<std::string> parts) {
  try {
    parse_wfdb_header(text, "bad.hea");
    ADD_FAILURE() << "no error for header:\n" << text;
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
  }
}

}  // namespace

TEST(WfdbHeader, Slp01aRealFile) {
  WfdbHeader h = read_wfdb_header(kPhysionet + "/slpdb/slp01a");
  EXPECT_EQ(h.record_name, "slp01a");
  EXPECT_EQ(h.num_signals, 4);
  EXPECT_DOUBLE_EQ(h.sampling_frequency, 250.0);
  EXPECT_DOUBLE_EQ(h.counter_frequency, 0.033333333);
  EXPECT_DOUBLE_EQ(h.base_counter, 94.0);
  ASSERT_TRUE(h.num_samples.has_value());
  EXPECT_EQ(*h.num_samples, 1800000);
  EXPECT_EQ(h.base_time.value_or(""), "23:07:00");
  EXPECT_EQ(h.base_date.value_or(""), "19/1/1989");
  EXPECT_DOUBLE_EQ(h.base_time_seconds().value(), 23 * 3600 + 7 * 60);
  ASSERT_EQ(h.signals.size(), 4u);
  const WfdbSignalSpec& ecg = h.signals[0];
  EXPECT_EQ(ecg.file_name, "slp01a.dat");
  EXPECT_EQ(ecg.format, 212);
  EXPECT_DOUBLE_EQ(ecg.gain, -200.0);
  EXPECT_TRUE(ecg.gain_given);
  EXPECT_EQ(ecg.units, "mV");
  EXPECT_EQ(ecg.baseline, 0);  // = ADC zero when not written
  EXPECT_EQ(ecg.adc_resolution, 12);
  EXPECT_EQ(ecg.initial_value, -17);
  EXPECT_EQ(ecg.checksum.value(), 59911);
  EXPECT_EQ(ecg.description, "ECG");
  const WfdbSignalSpec& bp = h.signals[1];
  EXPECT_DOUBLE_EQ(bp.gain, 4.77778);
  EXPECT_EQ(bp.baseline, -477);
  EXPECT_EQ(bp.units, "mmHg");
  EXPECT_EQ(h.signals[2].description, "EEG (C4-A1)");  // description with a space and parentheses
  EXPECT_EQ(h.signals[3].description, "Resp (sum)");
  EXPECT_EQ(h.find_signal("BP"), 1);
  EXPECT_EQ(h.find_signal("SpO2"), -1);
  ASSERT_EQ(h.comments.size(), 1u);
  EXPECT_EQ(h.comments[0], "44 M 89 32-01-89");
}

TEST(WfdbHeader, ApneaEcgRealFilesCrlf) {
  WfdbHeader h = read_wfdb_header(kPhysionet + "/apnea-ecg/a01.hea");  // with extension too
  EXPECT_EQ(h.record_name, "a01");
  EXPECT_EQ(h.num_signals, 1);
  EXPECT_DOUBLE_EQ(h.sampling_frequency, 100.0);
  EXPECT_EQ(h.num_samples.value(), 2957000);
  EXPECT_FALSE(h.base_time.has_value());
  EXPECT_EQ(h.signals[0].format, 16);
  EXPECT_DOUBLE_EQ(h.signals[0].gain, 200.0);
  EXPECT_EQ(h.signals[0].units, "mV");  // default
  EXPECT_EQ(h.signals[0].checksum.value(), 5827);
  EXPECT_EQ(h.signals[0].description, "ECG");  // no trailing '\r' from the CRLF line end

  WfdbHeader r = read_wfdb_header(kPhysionet + "/apnea-ecg/a01r");
  ASSERT_EQ(r.num_signals, 4);
  EXPECT_EQ(r.signals[0].description, "Resp C");
  EXPECT_EQ(r.signals[3].description, "SpO2");
  EXPECT_DOUBLE_EQ(r.signals[3].gain, 1.0);
  EXPECT_EQ(r.signals[0].checksum.value(), -21303);  // signed checksum form
}

TEST(WfdbHeader, EveryShippedHeaderParses) {
  int count = 0;
  for (const char* db : {"apnea-ecg", "slpdb"}) {
    for (const auto& entry : std::filesystem::directory_iterator(kPhysionet + "/" + db)) {
      if (entry.path().extension() != ".hea") continue;
      WfdbHeader h = read_wfdb_header(entry.path().string());
      EXPECT_EQ(static_cast<int>(h.signals.size()), h.num_signals) << entry.path();
      EXPECT_TRUE(h.num_samples.has_value()) << entry.path();
      // Round trip through the writer.
      WfdbHeader back = parse_wfdb_header(format_wfdb_header(h), "roundtrip");
      EXPECT_EQ(back.record_name, h.record_name);
      EXPECT_EQ(back.num_samples, h.num_samples);
      EXPECT_EQ(back.sampling_frequency, h.sampling_frequency);
      EXPECT_EQ(back.counter_frequency, h.counter_frequency);
      EXPECT_EQ(back.base_counter, h.base_counter);
      EXPECT_EQ(back.base_time, h.base_time);
      EXPECT_EQ(back.base_date, h.base_date);
      EXPECT_EQ(back.comments, h.comments);
      ASSERT_EQ(back.signals.size(), h.signals.size());
      for (size_t i = 0; i < h.signals.size(); ++i) {
        EXPECT_EQ(back.signals[i].gain, h.signals[i].gain);
        EXPECT_EQ(back.signals[i].baseline, h.signals[i].baseline);
        EXPECT_EQ(back.signals[i].units, h.signals[i].units);
        EXPECT_EQ(back.signals[i].checksum, h.signals[i].checksum);
        EXPECT_EQ(back.signals[i].description, h.signals[i].description);
        EXPECT_EQ(back.signals[i].initial_value, h.signals[i].initial_value);
      }
      ++count;
    }
  }
  EXPECT_EQ(count, 35 + 8 + 18);  // apnea-ecg learning set + respiration records + slpdb
}

TEST(WfdbHeader, SlpdbVariants) {
  // slp02a: gain without units, base time "0:49:0".
  WfdbHeader h = read_wfdb_header(kPhysionet + "/slpdb/slp02a");
  EXPECT_DOUBLE_EQ(h.signals[0].gain, -500.0);
  EXPECT_EQ(h.signals[0].units, "mV");
  EXPECT_DOUBLE_EQ(h.base_time_seconds().value(), 49 * 60);
  // slp37: two comment lines, 7 signals, gain "10(-400)/mmHg".
  WfdbHeader g = read_wfdb_header(kPhysionet + "/slpdb/slp37");
  EXPECT_EQ(g.num_signals, 7);
  EXPECT_EQ(g.comments.size(), 2u);
  EXPECT_DOUBLE_EQ(g.signals[1].gain, 10.0);
  EXPECT_EQ(g.signals[1].baseline, -400);
  EXPECT_EQ(g.signals[5].description, "EOG (right)");
}

TEST(WfdbHeader, FieldForms) {
  const std::string text =
      "# leading comment\r\n"
      "\r\n"
      "rec 5 360 650000 10:20:30.5 01/02/2003\r\n"
      "rec.dat 212\r\n"                          // only file and format
      "rec.dat 212 0 12 1024 1000\r\n"           // gain 0: default 200, baseline = adc zero
      "x.dat 16+512 100(5)\r\n"                   // byte offset, baseline without units
      "y.dat 80x1:0 2.5/uV 8 0 0 12 0 a  b  c \r\n"  // spf 1 and skew 0 accepted, spaces inside description
      "y.dat 80x1:0+0 -3.25(-7)/% 0 3 4 -5 0 Sp O2\r\n"
      "   \t \r\n"
      "#trailing\r\n";
  WfdbHeader h = parse_wfdb_header(text, "mem.hea");
  EXPECT_EQ(h.num_signals, 5);
  EXPECT_DOUBLE_EQ(h.sampling_frequency, 360.0);
  EXPECT_DOUBLE_EQ(h.counter_frequency, 0.0);
  EXPECT_DOUBLE_EQ(h.base_time_seconds().value(), 10 * 3600 + 20 * 60 + 30.5);
  ASSERT_EQ(h.comments.size(), 2u);
  EXPECT_EQ(h.comments[0], "leading comment");
  EXPECT_EQ(h.comments[1], "trailing");
  const auto& s = h.signals;
  EXPECT_DOUBLE_EQ(s[0].gain, 200.0);
  EXPECT_FALSE(s[0].gain_given);
  EXPECT_FALSE(s[0].checksum.has_value());
  EXPECT_EQ(s[0].description, "");
  EXPECT_FALSE(s[1].gain_given);
  EXPECT_DOUBLE_EQ(s[1].gain, 200.0);
  EXPECT_EQ(s[1].adc_zero, 1024);
  EXPECT_EQ(s[1].baseline, 1024);
  EXPECT_EQ(s[1].initial_value, 1000);
  EXPECT_EQ(s[2].byte_offset, 512);
  EXPECT_EQ(s[2].baseline, 5);
  EXPECT_EQ(s[2].units, "mV");
  EXPECT_EQ(s[2].adc_resolution, 16);
  EXPECT_EQ(s[3].format, 80);
  EXPECT_EQ(s[3].units, "uV");
  EXPECT_EQ(s[3].checksum.value(), 12);
  EXPECT_EQ(s[3].description, "a  b  c");
  EXPECT_DOUBLE_EQ(s[4].gain, -3.25);
  EXPECT_EQ(s[4].baseline, -7);
  EXPECT_EQ(s[4].units, "%");
  EXPECT_EQ(s[4].adc_resolution, 8);  // 0 -> format default
  EXPECT_EQ(s[4].adc_zero, 3);
  EXPECT_EQ(s[4].initial_value, 4);
  EXPECT_EQ(s[4].checksum.value(), -5);
  EXPECT_EQ(s[4].description, "Sp O2");
  EXPECT_DOUBLE_EQ(s[4].to_physical(-7 + 13), 13 / -3.25);
}

TEST(WfdbHeader, MinimalRecordLine) {
  WfdbHeader h = parse_wfdb_header("r0 0\n", "m");
  EXPECT_EQ(h.num_signals, 0);
  EXPECT_FALSE(h.sampling_frequency_given);
  EXPECT_DOUBLE_EQ(h.sampling_frequency, 250.0);
  EXPECT_FALSE(h.num_samples.has_value());
  // Zero samples means "derive from the file size".
  EXPECT_FALSE(parse_wfdb_header("r 1 100 0\nr.dat 16\n", "m").num_samples.has_value());
  // Counter frequency without base counter.
  WfdbHeader c = parse_wfdb_header("r 0 128/2\n", "m");
  EXPECT_DOUBLE_EQ(c.counter_frequency, 2.0);
  EXPECT_DOUBLE_EQ(c.base_counter, 0.0);
}

TEST(WfdbHeader, WriterRoundTrip) {
  WfdbHeader h;
  h.record_name = "syn1";
  h.num_signals = 2;
  h.sampling_frequency = 250;
  h.sampling_frequency_given = true;
  h.counter_frequency = 0.033333333;
  h.base_counter = 94;
  h.num_samples = 1234;
  h.base_time = "23:07:00";
  h.base_date = "19/1/1989";
  WfdbSignalSpec a;
  a.file_name = "syn1.dat";
  a.format = 212;
  a.gain = 4.77778;
  a.gain_given = true;
  a.baseline = -477;
  a.units = "mmHg";
  a.adc_resolution = 12;
  a.checksum = 100;
  a.description = "BP (arterial)";
  WfdbSignalSpec b = a;
  b.gain_given = false;
  b.gain = 200;
  b.baseline = 3;
  b.units = "mV";
  b.description = "";
  h.signals = {a, b};
  h.comments = {"synthetic", "  indented"};
  const std::string text = format_wfdb_header(h);
  WfdbHeader r = parse_wfdb_header(text, "w");
  EXPECT_EQ(r.record_name, "syn1");
  EXPECT_EQ(r.counter_frequency, h.counter_frequency);
  EXPECT_EQ(r.base_counter, 94);
  EXPECT_EQ(r.num_samples, 1234);
  EXPECT_EQ(r.signals[0].gain, 4.77778);
  EXPECT_EQ(r.signals[0].baseline, -477);
  EXPECT_EQ(r.signals[0].description, "BP (arterial)");
  EXPECT_FALSE(r.signals[1].gain_given);
  EXPECT_EQ(r.signals[1].baseline, 3);
  EXPECT_EQ(r.comments, h.comments);
  // A description without a checksum cannot be written (fields are positional).
  h.signals[0].checksum.reset();
  EXPECT_THROW(format_wfdb_header(h), Error);
}

TEST(WfdbHeader, PathHelpers) {
  EXPECT_EQ(wfdb_record_base("d/a01.hea"), "d/a01");
  EXPECT_EQ(wfdb_record_base("d/a01"), "d/a01");
  EXPECT_EQ(wfdb_directory("d/e/a01"), "d/e");
  EXPECT_EQ(wfdb_directory("a01"), ".");
}

TEST(WfdbHeaderBad, Empty) {
  expect_error("", {"bad.hea", "no record line"});
  expect_error("# only a comment\n\n", {"bad.hea", "no record line"});
}

TEST(WfdbHeaderBad, MultiSegmentRefused) {
  expect_error("multi/3 2 360 100\nseg1 50\nseg2 50\n", {"bad.hea:1", "record name", "multi-segment"});
}

TEST(WfdbHeaderBad, SignalCountMismatch) {
  expect_error("r 2 250 100\nr.dat 16\n", {"bad.hea:1", "number of signals", "declares 2", "1 signal lines"});
  expect_error("r 1 250 100\nr.dat 16\nr.dat 16\n", {"bad.hea:3", "more signal lines"});
  expect_error("r -1 250\n", {"bad.hea:1", "number of signals", "out of range"});
  expect_error("r 99999 250\n", {"bad.hea:1", "number of signals", "out of range"});
  expect_error("r two 250\n", {"number of signals", "'two' is not an integer"});
}

TEST(WfdbHeaderBad, Format) {
  expect_error("r 1 250 100\nr.dat 311\n", {"bad.hea:2", "signal 0 field 'format'", "unsupported signal format 311"});
  expect_error("r 1 250 100\nr.dat\n", {"bad.hea:2", "format", "missing"});
  expect_error("r 1 250 100\nr.dat 16x4\n", {"bad.hea:2", "samples per frame"});
  expect_error("r 1 250 100\nr.dat 212:3\n", {"bad.hea:2", "skew 3"});
  expect_error("r 1 250 100\nr.dat 16+\n", {"bad.hea:2", "format"});
  expect_error("r 1 250 100\nr.dat abc\n", {"bad.hea:2", "'abc' is not a signal format"});
  expect_error("r 2 250 100\nr.dat 16\nr.dat 212\n", {"bad.hea:3", "differs from format 16"});
}

TEST(WfdbHeaderBad, AbsurdNumbers) {
  expect_error("r 1 -250 100\nr.dat 16\n", {"bad.hea:1", "sampling frequency", "out of range"});
  expect_error("r 1 0 100\nr.dat 16\n", {"sampling frequency", "out of range"});
  expect_error("r 1 nan 100\nr.dat 16\n", {"sampling frequency", "'nan' is not a number"});
  expect_error("r 1 inf 100\nr.dat 16\n", {"sampling frequency", "not a number"});
  expect_error("r 1 250 -100\nr.dat 16\n", {"bad.hea:1", "number of samples", "negative"});
  expect_error("r 1 250 1000000000000000\nr.dat 16\n", {"number of samples", "absurd"});
  expect_error("r 1 250 1e5\nr.dat 16\n", {"number of samples", "'1e5' is not an integer"});
  expect_error("r 1 250 99999999999999999999999\nr.dat 16\n", {"number of samples", "not an integer"});
  expect_error("r 1 250/0 100\nr.dat 16\n", {"counter frequency", "out of range"});
  expect_error("r 1 250/1(x) 100\nr.dat 16\n", {"base counter", "'x' is not a number"});
  expect_error("r 1 250/1(3 100\nr.dat 16\n", {"base counter", "closing"});
  expect_error("r 1 250 100 25:00:00\nr.dat 16\n", {"base time"});
  expect_error("r 1 250 100 10:61:00\nr.dat 16\n", {"base time"});
  expect_error("r 1 250 100 10:00:00 32/1/2000\nr.dat 16\n", {"base date"});
  expect_error("r 1 250 100 10:00:00 1/1/2000 extra\nr.dat 16\n", {"unexpected extra field"});
}

TEST(WfdbHeaderBad, SignalFields) {
  expect_error("r 1 250 100\nr.dat 16 abc\n", {"bad.hea:2", "field 'gain'", "'abc'"});
  expect_error("r 1 250 100\nr.dat 16 200(x)/mV\n", {"field 'gain'", "baseline 'x'"});
  expect_error("r 1 250 100\nr.dat 16 200(1/mV\n", {"field 'gain'", "closing"});
  expect_error("r 1 250 100\nr.dat 16 200 99\n", {"ADC resolution", "out of range"});
  expect_error("r 1 250 100\nr.dat 16 200 16 z\n", {"ADC zero", "'z'"});
  expect_error("r 1 250 100\nr.dat 16 200 16 0 9999999999\n", {"initial value"});
  expect_error("r 1 250 100\nr.dat 16 200 16 0 0 70000\n", {"checksum", "16 bits"});
  expect_error("r 1 250 100\nr.dat 16 200 16 0 0 0 -1\n", {"block size"});
  expect_error(std::string("r 1 250 100\nr.dat 16 2\0 16\n", 26), {"bad.hea:2", "NUL"});
}

TEST(WfdbHeaderBad, MissingFileNamesPath) {
  try {
    read_wfdb_header("/nonexistent/dir/rec");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/rec.hea"), std::string::npos) << e.what();
  }
}
