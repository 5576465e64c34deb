// wfdb_signal_test.cpp: WFDB signal files. Byte-exact decoding of formats 16, 212 and 80 from
// bytes written by hand from the format description, interleaving of several signals per file and
// several files per record, sample ranges (across the reader's chunk boundary), physical units,
// checksums, truncated and missing files, and writer round trips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "data/wfdb_header.h"
#include "data/wfdb_signal.h"
#include "reader_test_util.h"

using namespace sleepnet;
using namespace sleepnet::data;
using sleepnet::test::TempDir;
using sleepnet::test::write_bytes;

namespace {

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int v : b) s.push_back(static_cast<char>(v));
  return s;
}

// Deterministic pseudo-random ADC values in [lo, hi] (LCG; no std distributions).
std::vector<int32_t> pattern(size_t n, int32_t lo, int32_t hi, uint32_t seed) {
  std::vector<int32_t> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    v[i] = lo + static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(hi - lo + 1));
  }
  return v;
}

WfdbSignalSpec spec(const std::string& file, int format, const std::string& desc, double gain = 200,
                    int32_t baseline = 0) {
  WfdbSignalSpec s;
  s.file_name = file;
  s.format = format;
  s.gain = gain;
  s.gain_given = true;
  s.baseline = baseline;
  s.description = desc;
  return s;
}

WfdbHeader header_with(std::vector<WfdbSignalSpec> sigs, double fs = 250) {
  WfdbHeader h;
  h.record_name = std::string(1, 'x');  // (not = "x": GCC 12 -Wrestrict false positive)
  h.num_signals = static_cast<int>(sigs.size());
  h.sampling_frequency = fs;
  h.sampling_frequency_given = true;
  h.signals = std::move(sigs);
  return h;
}

}  // namespace

TEST(WfdbSignal, Format212HandEncodedBytes) {
  TempDir d;
  // Pairs (1, -1), (2047, -2048), (291, -291) packed as the format description says:
  // byte0 = low 8 bits of a, byte1 = high nibble of b << 4 | high nibble of a, byte2 = low 8 bits of b.
  write_bytes(d.file("t.dat"), bytes({0x01, 0xF0, 0xFF, 0xFF, 0x87, 0x00, 0x23, 0xE1, 0xDD}));
  write_bytes(d.file("t.hea"), "t 1 100 6\nt.dat 212\n");
  WfdbSignalReader r = WfdbSignalReader::open(d.file("t"));
  EXPECT_EQ(r.num_samples(), 6);
  EXPECT_EQ(r.read_adc(0, 0, 6), (std::vector<int32_t>{1, -1, 2047, -2048, 291, -291}));
  EXPECT_EQ(r.read_adc(0, 3, 5), (std::vector<int32_t>{-2048, 291}));  // range starting mid-pair
  // And the writer produces exactly these bytes.
  std::vector<int32_t> v{1, -1, 2047, -2048, 291, -291};
  EXPECT_EQ(encode_wfdb_samples(212, {&v}), bytes({0x01, 0xF0, 0xFF, 0xFF, 0x87, 0x00, 0x23, 0xE1, 0xDD}));
}

TEST(WfdbSignal, Format212OddCount) {
  TempDir d;
  // 5, -6, 7: one full pair then a lone sample in 2 bytes (WFDB's way) ...
  const std::string two = bytes({0x05, 0xF0, 0xFA, 0x07, 0x00});
  std::vector<int32_t> v{5, -6, 7};
  EXPECT_EQ(encode_wfdb_samples(212, {&v}), two);
  write_bytes(d.file("o.dat"), two);
  write_bytes(d.file("o.hea"), "o 1 100 3\no.dat 212\n");
  EXPECT_EQ(WfdbSignalReader::open(d.file("o")).read_adc(0, 0, 3), v);
  // ... or padded to 3 bytes by other writers: also accepted.
  write_bytes(d.file("o.dat"), two + std::string(1, '\0'));
  EXPECT_EQ(WfdbSignalReader::open(d.file("o")).read_adc(0, 0, 3), v);
  // Without a sample count the 5-byte file holds 3 samples.
  write_bytes(d.file("o.dat"), two);
  write_bytes(d.file("o.hea"), "o 1 100\no.dat 212\n");
  WfdbSignalReader r = WfdbSignalReader::open(d.file("o"));
  EXPECT_EQ(r.num_samples(), 3);
  EXPECT_EQ(r.read_adc(0, 2, 3), (std::vector<int32_t>{7}));
}

TEST(WfdbSignal, Format16And80HandEncoded) {
  TempDir d;
  write_bytes(d.file("a.dat"), bytes({0x00, 0x80, 0xFF, 0x7F, 0xFF, 0xFF, 0x00, 0x01}));
  write_bytes(d.file("a.hea"), "a 1 100 4\na.dat 16\n");
  EXPECT_EQ(WfdbSignalReader::open(d.file("a")).read_adc(0, 0, 4), (std::vector<int32_t>{-32768, 32767, -1, 256}));
  write_bytes(d.file("b.dat"), bytes({0x00, 0xFF, 0x80, 0x81}));
  write_bytes(d.file("b.hea"), "b 1 100 4\nb.dat 80\n");
  EXPECT_EQ(WfdbSignalReader::open(d.file("b")).read_adc(0, 0, 4), (std::vector<int32_t>{-128, 127, 0, 1}));
}

TEST(WfdbSignal, ByteOffsetPrologSkipped) {
  TempDir d;
  write_bytes(d.file("p.dat"), bytes({9, 9, 9, 0x05, 0x00, 0xFE, 0xFF}));
  write_bytes(d.file("p.hea"), "p 1 100 2\np.dat 16+3\n");
  EXPECT_EQ(WfdbSignalReader::open(d.file("p")).read_adc(0, 0, 2), (std::vector<int32_t>{5, -2}));
}

TEST(WfdbSignal, InterleavedOddSignalCount212AcrossChunks) {
  // Three signals in one 212 file: pairs straddle frames. 150001 frames cross the reader's
  // 65536-frame chunks; ranges start at odd flat indices.
  TempDir d;
  const size_t n = 150001;
  std::vector<std::vector<int32_t>> adc = {pattern(n, -2047, 2047, 1), pattern(n, -2047, 2047, 2),
                                           pattern(n, -2047, 2047, 3)};
  WfdbHeader h = header_with({spec("m.dat", 212, "A"), spec("m.dat", 212, "B"), spec("m.dat", 212, "C")});
  WfdbHeader written = write_wfdb_record(d.file("m"), h, adc);
  EXPECT_EQ(written.num_samples.value(), static_cast<int64_t>(n));
  EXPECT_EQ(written.signals[1].initial_value, adc[1][0]);
  EXPECT_EQ(test::read_bytes(d.file("m.dat")).size(), (3 * n * 3 + 1) / 2);
  WfdbSignalReader r = WfdbSignalReader::open(d.file("m.hea"));
  ASSERT_EQ(r.num_signals(), 3);
  for (int s = 0; s < 3; ++s) EXPECT_EQ(r.read_adc(s, 0, static_cast<int64_t>(n)), adc[static_cast<size_t>(s)]) << s;
  for (auto [from, to] : {std::pair<int64_t, int64_t>{1, 2}, {65535, 65537}, {70000, 140001}, {150000, 150001}, {7, 7}}) {
    for (int s = 0; s < 3; ++s) {
      std::vector<int32_t> want(adc[static_cast<size_t>(s)].begin() + from, adc[static_cast<size_t>(s)].begin() + to);
      EXPECT_EQ(r.read_adc(s, from, to), want) << "signal " << s << " [" << from << ", " << to << ")";
    }
  }
  auto all = r.read_all_adc(65530, 65550);
  EXPECT_EQ(all[2], std::vector<int32_t>(adc[2].begin() + 65530, adc[2].begin() + 65550));
  r.verify_checksums();
  EXPECT_EQ(r.signal_index("C"), 2);
  EXPECT_ERROR_CONTAINS(r.signal_index("ECG"), {"no signal named 'ECG'", "'A', 'B', 'C'"});
}

TEST(WfdbSignal, SeveralFilesPerRecord) {
  TempDir d;
  const size_t n = 1001;
  std::vector<std::vector<int32_t>> adc = {pattern(n, -32768, 32767, 4), pattern(n, -2048, 2047, 5),
                                           pattern(n, -3000, 3000, 6), pattern(n, -128, 127, 7)};
  WfdbHeader h = header_with({spec("r_a.dat", 16, "ECG"), spec("r_b.dat", 212, "Resp"), spec("r_a.dat", 16, "EEG"),
                              spec("r_c.dat", 80, "SpO2")});
  write_wfdb_record(d.file("r"), h, adc);
  WfdbSignalReader r = WfdbSignalReader::open(d.file("r"));
  auto all = r.read_all_adc(0, static_cast<int64_t>(n));
  EXPECT_EQ(all, adc);
  EXPECT_EQ(r.read_adc(2, 500, 510), std::vector<int32_t>(adc[2].begin() + 500, adc[2].begin() + 510));
  EXPECT_EQ(test::read_bytes(d.file("r_a.dat")).size(), 2 * 2 * n);
  EXPECT_EQ(test::read_bytes(d.file("r_c.dat")).size(), n);
  EXPECT_TRUE(WfdbSignalReader::signal_files_present(r.header(), d.path()));
}

TEST(WfdbSignal, PhysicalUnitsAndInvalidSamples) {
  TempDir d;
  std::vector<std::vector<int32_t>> adc = {{10, 210, -190, -2048}, {-32768, 0, 100, 5}};
  WfdbHeader h = header_with({spec("p.dat", 212, "ECG", -200, 10), spec("q.dat", 16, "BP", 4.77778, -477)});
  write_wfdb_record(d.file("p"), h, adc);
  WfdbSignalReader r = WfdbSignalReader::open(d.file("p"));
  std::vector<float> ecg = r.read_physical(0);
  EXPECT_FLOAT_EQ(ecg[0], 0.0f);
  EXPECT_FLOAT_EQ(ecg[1], -1.0f);   // (210 - 10) / -200
  EXPECT_FLOAT_EQ(ecg[2], 1.0f);
  EXPECT_TRUE(std::isnan(ecg[3]));  // -2048 marks an invalid 212 sample
  std::vector<float> bp = r.read_physical(1, 1, 3);
  EXPECT_FLOAT_EQ(bp[0], static_cast<float>(477 / 4.77778));
  EXPECT_FLOAT_EQ(bp[1], static_cast<float>(577 / 4.77778));
  EXPECT_TRUE(std::isnan(r.read_physical(1, 0, 1)[0]));
}

TEST(WfdbSignal, PhysicalToAdcRoundTrip) {
  std::vector<float> x{0.0f, 1.0f, -1.0f, 100.0f, -100.0f, NAN, 0.0124f};
  std::vector<int32_t> adc = wfdb_physical_to_adc(x, 200.0, 5, 212);
  EXPECT_EQ(adc, (std::vector<int32_t>{5, 205, -195, 2047, -2047, -2048, 7}));  // clamped, NaN -> invalid
}

TEST(WfdbSignal, ChecksumMismatch) {
  TempDir d;
  std::vector<std::vector<int32_t>> adc = {pattern(300, -2000, 2000, 8)};
  WfdbHeader h = write_wfdb_record(d.file("c"), header_with({spec("c.dat", 212, "ECG")}), adc);
  EXPECT_TRUE(wfdb_checksums_equal(*h.signals[0].checksum, wfdb_checksum(adc[0])));
  h.signals[0].checksum = *h.signals[0].checksum + 1;
  write_wfdb_header(d.file("c"), h);
  WfdbSignalReader r = WfdbSignalReader::open(d.file("c"));
  EXPECT_ERROR_CONTAINS(r.read_adc(0, 0, 300), {"c.dat", "checksum mismatch", "signal 0", "header says"});
  EXPECT_ERROR_CONTAINS(r.verify_checksums(), {"checksum mismatch"});
  EXPECT_ERROR_CONTAINS(r.read_all_adc(0, 300), {"checksum mismatch"});
  EXPECT_EQ(r.read_adc(0, 1, 300).size(), 299u);  // partial reads are not checked
}

TEST(WfdbSignal, ChecksumIsSixteenBitSum) {
  EXPECT_EQ(wfdb_checksum({}), 0);
  EXPECT_EQ(wfdb_checksum({1, 2, 3}), 6);
  EXPECT_EQ(wfdb_checksum({32767, 1}), -32768);  // wraps modulo 2^16
  EXPECT_EQ(wfdb_checksum({-1, -1}), -2);
  EXPECT_TRUE(wfdb_checksums_equal(59911, 59911 - 65536));
  EXPECT_FALSE(wfdb_checksums_equal(1, 2));
}

TEST(WfdbSignal, SampleCountDerivedFromFileSize) {
  TempDir d;
  std::vector<std::vector<int32_t>> adc = {pattern(77, -100, 100, 9), pattern(77, -100, 100, 10)};
  WfdbHeader h = write_wfdb_record(d.file("z"), header_with({spec("z.dat", 16, "A"), spec("z.dat", 16, "B")}), adc);
  h.num_samples.reset();
  write_wfdb_header(d.file("z"), h);
  WfdbSignalReader r = WfdbSignalReader::open(d.file("z"));
  EXPECT_EQ(r.num_samples(), 77);
  EXPECT_EQ(r.read_adc(1, 0, 77), adc[1]);  // whole signal: checksum verified too
}

TEST(WfdbSignalBad, TruncatedDat) {
  TempDir d;
  write_bytes(d.file("t.dat"), std::string(1000, '\0'));
  write_bytes(d.file("t.hea"), "t 2 250 1000\nt.dat 212\nt.dat 212\n");
  // 1000 frames x 2 signals in 212 need 3000 bytes.
  EXPECT_ERROR_CONTAINS(WfdbSignalReader::open(d.file("t")),
                        {d.file("t.dat"), "truncated", "1000 samples", "3000 bytes", "has 1000"});
}

TEST(WfdbSignalBad, AbsurdSampleCountDoesNotAllocate) {
  TempDir d;
  write_bytes(d.file("h.dat"), std::string(10, '\0'));
  write_bytes(d.file("h.hea"), "h 1 250 1000000000000\nh.dat 16\n");
  EXPECT_ERROR_CONTAINS(WfdbSignalReader::open(d.file("h")), {"h.dat", "truncated", "2000000000000 bytes"});
}

TEST(WfdbSignalBad, MissingAndEmptyFiles) {
  TempDir d;
  write_bytes(d.file("m.hea"), "m 1 250 10\nm.dat 16\n");
  EXPECT_FALSE(WfdbSignalReader::signal_files_present(read_wfdb_header(d.file("m")), d.path()));
  EXPECT_ERROR_CONTAINS(WfdbSignalReader::open(d.file("m")), {"m.dat", "not found"});
  write_bytes(d.file("m.dat"), "");
  EXPECT_ERROR_CONTAINS(WfdbSignalReader::open(d.file("m")), {"m.dat", "truncated", "has 0"});
  // No sample count and an empty file: a record of 0 samples, readable as empty.
  write_bytes(d.file("m.hea"), "m 1 250\nm.dat 16\n");
  WfdbSignalReader r = WfdbSignalReader::open(d.file("m"));
  EXPECT_EQ(r.num_samples(), 0);
  EXPECT_TRUE(r.read_physical(0).empty());
  // Offset beyond the end of the file.
  write_bytes(d.file("m.hea"), "m 1 250\nm.dat 16+8\n");
  EXPECT_ERROR_CONTAINS(WfdbSignalReader::open(d.file("m")), {"m.dat", "byte offset 8"});
}

TEST(WfdbSignalBad, RangesAndIndices) {
  TempDir d;
  write_wfdb_record(d.file("g"), header_with({spec("g.dat", 16, "A")}), {{1, 2, 3}});
  WfdbSignalReader r = WfdbSignalReader::open(d.file("g"));
  EXPECT_ERROR_CONTAINS(r.read_adc(0, 2, 4), {"[2, 4)", "outside [0, 3)"});
  EXPECT_ERROR_CONTAINS(r.read_adc(0, -1, 1), {"outside"});
  EXPECT_ERROR_CONTAINS(r.read_adc(0, 2, 1), {"outside"});
  EXPECT_ERROR_CONTAINS(r.read_adc(1, 0, 1), {"signal index 1 out of range"});
  EXPECT_ERROR_CONTAINS(r.read_all_adc(0, 9), {"outside"});
}

TEST(WfdbSignalBad, WriterRefusesBadInput) {
  TempDir d;
  EXPECT_ERROR_CONTAINS(write_wfdb_record(d.file("w"), header_with({spec("w.dat", 212, "A")}), {{0, 2048}}),
                        {"signal 0 sample 1", "2048", "format 212"});
  EXPECT_ERROR_CONTAINS(write_wfdb_record(d.file("w"), header_with({spec("w.dat", 16, "A"), spec("w2.dat", 16, "B")}),
                                          {{0, 1}, {0}}),
                        {"signal 1 has 1 samples"});
  EXPECT_ERROR_CONTAINS(write_wfdb_record(d.file("w"), header_with({spec("w.dat", 16, "A"), spec("w.dat", 212, "B")}),
                                          {{0}, {0}}),
                        {"share file w.dat"});
  EXPECT_ERROR_CONTAINS(write_wfdb_record(d.file("w"), header_with({spec("sub/w.dat", 16, "A")}), {{0}}),
                        {"plain file name"});
  EXPECT_ERROR_CONTAINS(write_wfdb_record(d.file("w"), header_with({spec("w.dat", 311, "A")}), {{0}}),
                        {"format 311"});
  EXPECT_ERROR_CONTAINS(write_wfdb_record(d.file("w"), header_with({spec("w.dat", 16, "A")}), {}),
                        {"0 sample vectors for 1 signals"});
}

TEST(WfdbSignal, RealSlpdbHeaderWithSyntheticSignals) {
  // The shipped slp01a header (4 signals in one 212 file) over a synthetic .dat of the size the
  // header asks for: the reader accepts the layout, and the real checksums do not match random data.
  TempDir d;
  std::string hea = test::read_bytes(std::string(SLEEPNET_SOURCE_DIR) + "/data/physionet/slpdb/slp01a.hea");
  WfdbHeader h = parse_wfdb_header(hea, "slp01a.hea");
  h.num_samples = 1000;  // keep the test small
  write_wfdb_header(d.file("slp01a"), h);
  std::vector<std::vector<int32_t>> adc(4, pattern(1000, -2000, 2000, 11));
  std::vector<const std::vector<int32_t>*> ptrs{&adc[0], &adc[1], &adc[2], &adc[3]};
  write_bytes(d.file("slp01a.dat"), encode_wfdb_samples(212, ptrs));
  WfdbSignalReader r = WfdbSignalReader::open(d.file("slp01a"));
  EXPECT_EQ(r.num_samples(), 1000);
  EXPECT_EQ(r.read_adc(3, 10, 20), std::vector<int32_t>(adc[3].begin() + 10, adc[3].begin() + 20));
  EXPECT_ERROR_CONTAINS(r.read_physical(r.signal_index("ECG")), {"slp01a.dat", "checksum mismatch", "59911"});
}
