// wfdb_annotation_test.cpp: MIT-format annotations. The shipped Apnea-ECG and slpdb annotation files
// (counts checked against the databases' own tables), hand-encoded words, writer round trips, and
// malformed files (tests/data/bad/).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "data/wfdb_annotation.h"
#include "reader_test_util.h"

using namespace sleepnet;
using namespace sleepnet::data;

namespace {

const std::string kPhysionet = std::string(SLEEPNET_SOURCE_DIR) + "/data/physionet";
const std::string kBad = std::string(SLEEPNET_TEST_DATA_DIR) + "/bad";

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int v : b) s.push_back(static_cast<char>(v));
  return s;
}

int count_code(const std::vector<WfdbAnnotation>& a, int code) {
  int n = 0;
  for (const auto& x : a) n += x.code == code;
  return n;
}

int count_beats(const std::vector<WfdbAnnotation>& a) {
  int n = 0;
  for (const auto& x : a) n += is_beat_annotation(x.code);
  return n;
}

// Apnea minutes per record from Apnea-ECG's additional-information.txt ("a01\t490\t20\t470\t...").
std::map<std::string, int> apnea_minutes_table() {
  std::ifstream in(kPhysionet + "/apnea-ecg/additional-information.txt");
  std::map<std::string, int> table;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string rec;
    int length = 0, non_apnea = 0, apnea = 0;
    if (ss >> rec >> length >> non_apnea >> apnea && rec.size() == 3 && (rec[0] == 'a' || rec[0] == 'b' || rec[0] == 'c' || rec[0] == 'x'))
      table[rec] = apnea;
  }
  return table;
}

}  // namespace

TEST(WfdbAnnotation, CodeTable) {
  EXPECT_EQ(annotation_mnemonic(ann::NORMAL), "N");
  EXPECT_EQ(annotation_mnemonic(ann::APC), "A");
  EXPECT_EQ(annotation_mnemonic(ann::NOTE), "\"");
  EXPECT_EQ(annotation_mnemonic(ann::ARFCT), "|");
  EXPECT_EQ(annotation_mnemonic(ann::SVPB), "S");
  EXPECT_EQ(annotation_mnemonic(ann::NAPC), "x");
  EXPECT_EQ(annotation_mnemonic(15), "");
  EXPECT_EQ(annotation_mnemonic(99), "");
  EXPECT_EQ(annotation_mnemonic(-1), "");
  EXPECT_EQ(annotation_code("A"), ann::APC);
  EXPECT_EQ(annotation_code("V"), ann::PVC);
  EXPECT_EQ(annotation_code("\""), ann::NOTE);
  EXPECT_EQ(annotation_code("zz"), -1);
  EXPECT_EQ(annotation_code(""), -1);
  EXPECT_TRUE(is_beat_annotation(ann::NORMAL));
  EXPECT_TRUE(is_beat_annotation(ann::PVC));
  EXPECT_TRUE(is_beat_annotation(ann::NAPC) && is_beat_annotation(ann::RONT) && is_beat_annotation(ann::BBB));
  EXPECT_FALSE(is_beat_annotation(ann::ARFCT));
  EXPECT_FALSE(is_beat_annotation(ann::NOTE));
  EXPECT_FALSE(is_beat_annotation(ann::NOISE));
  EXPECT_FALSE(is_beat_annotation(0));
}

TEST(WfdbAnnotation, A01QrsHas29938Beats) {
  auto a = read_wfdb_annotations(kPhysionet + "/apnea-ecg/a01.qrs");
  EXPECT_EQ(a.size(), 29938u);
  EXPECT_EQ(count_beats(a), 29938);
  EXPECT_EQ(a.front().sample, 34);
  EXPECT_EQ(a.back().sample, 2956445);
  for (size_t i = 1; i < a.size(); ++i) ASSERT_LE(a[i - 1].sample, a[i].sample);
}

TEST(WfdbAnnotation, QrsFilesHoldArtifactMarks) {
  // a02.qrs: 35242 annotations of which 90 are artifact marks '|' (not beats).
  auto a = read_wfdb_annotations(kPhysionet + "/apnea-ecg/a02.qrs");
  EXPECT_EQ(a.size(), 35242u);
  EXPECT_EQ(count_code(a, ann::ARFCT), 90);
  EXPECT_EQ(count_beats(a), 35152);
  // c01.qrs starts with an artifact mark.
  auto c = read_wfdb_annotations(kPhysionet + "/apnea-ecg/c01.qrs");
  EXPECT_EQ(c.front().code, ann::ARFCT);
}

TEST(WfdbAnnotation, A01Apn470ApneaMinutesOf489) {
  auto a = read_wfdb_annotations(kPhysionet + "/apnea-ecg/a01.apn");
  ASSERT_EQ(a.size(), 489u);
  EXPECT_EQ(count_code(a, ann::APC), 470);
  EXPECT_EQ(count_code(a, ann::NORMAL), 19);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].sample, static_cast<int64_t>(i) * 6000) << i;  // one per minute at 100 Hz, via SKIP
    ASSERT_EQ(annotation_mnemonic(a[i].code), a[i].code == ann::APC ? "A" : "N");
  }
}

TEST(WfdbAnnotation, EveryApnMatchesTheDatabaseTable) {
  auto table = apnea_minutes_table();
  ASSERT_EQ(table.size(), 70u);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kPhysionet + "/apnea-ecg")) {
    if (entry.path().extension() != ".apn") continue;
    std::string rec = entry.path().stem().string().substr(0, 3);  // a01r -> a01
    auto a = read_wfdb_annotations(entry.path().string());
    EXPECT_EQ(count_code(a, ann::APC), table.at(rec)) << entry.path();
    EXPECT_EQ(count_code(a, ann::APC) + count_code(a, ann::NORMAL), static_cast<int>(a.size())) << entry.path();
    ++files;
  }
  EXPECT_EQ(files, 35 + 8);
}

TEST(WfdbAnnotation, SlpdbStFiles) {
  auto a = read_wfdb_annotations(kPhysionet + "/slpdb/slp01a.st");
  ASSERT_EQ(a.size(), 240u);  // 1800000 samples / 250 Hz / 30 s
  EXPECT_EQ(a[0].sample, 1);
  EXPECT_EQ(a[0].code, ann::NOTE);
  EXPECT_EQ(a[0].aux, "4 LA LA");  // odd length 7, padded in the file
  EXPECT_EQ(a[1].sample, 7500);  // then every 30 s
  EXPECT_EQ(a.back().aux, "2");
  // slp41 writes the stage with a trailing NUL inside the aux string: kept as is.
  auto b = read_wfdb_annotations(kPhysionet + "/slpdb/slp41.st");
  EXPECT_EQ(b[0].aux, std::string("W\0", 2));
  int files = 0, with_nul = 0, total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kPhysionet + "/slpdb")) {
    // (README.st is a text file describing the aux tokens, not an annotation file)
    if (entry.path().extension() != ".st" || entry.path().stem() == "README") continue;
    auto st = read_wfdb_annotations(entry.path().string());
    EXPECT_GT(st.size(), 100u) << entry.path();
    for (const auto& x : st) {
      EXPECT_EQ(x.code, ann::NOTE) << entry.path();
      EXPECT_FALSE(x.aux.empty()) << entry.path();
      with_nul += x.aux.find('\0') != std::string::npos;
    }
    total += static_cast<int>(st.size());
    ++files;
  }
  EXPECT_EQ(files, 18);
  EXPECT_EQ(total, 10197);
  EXPECT_EQ(with_nul, 780 + 760);  // every annotation of slp41 and slp45
}

TEST(WfdbAnnotation, SlpdbEcgBeats) {
  auto a = read_wfdb_annotations(kPhysionet + "/slpdb/slp02b.ecg");
  EXPECT_EQ(a.size(), 11317u);
  EXPECT_EQ(count_code(a, ann::SVPB), 33);
  EXPECT_EQ(count_code(a, ann::NAPC), 2);
  EXPECT_EQ(count_beats(a), 11317);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kPhysionet + "/slpdb")) {
    if (entry.path().extension() != ".ecg") continue;
    EXPECT_GT(read_wfdb_annotations(entry.path().string()).size(), 1000u) << entry.path();
    ++files;
  }
  EXPECT_EQ(files, 18);
}

TEST(WfdbAnnotation, HandEncodedWords) {
  // N at 5, SKIP of 70000 then V, SUB 3, CHN 2, NUM 7, AUX "abc" (odd: padded), end marker.
  const std::string b = bytes({0x05, 0x04,                // (1 << 10) | 5
                               0x00, 0xEC,                // SKIP
                               0x01, 0x00, 0x70, 0x11,    // interval 0x00011170 = 70000, high word first
                               0x00, 0x14,                // (5 << 10) | 0
                               0x03, 0xF4,                // SUB 3
                               0x02, 0xF8,                // CHN 2
                               0x07, 0xF0,                // NUM 7
                               0x03, 0xFC, 'a', 'b', 'c', 0x00,  // AUX 3 + pad
                               0x0A, 0x04,                // N at +10 (inherits chan 2 and num 7)
                               0x00, 0x00,                // end
                               0x55, 0x55});              // ignored after the end marker
  auto a = parse_wfdb_annotations(b, "mem");
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].sample, 5);
  EXPECT_EQ(a[0].code, ann::NORMAL);
  EXPECT_EQ(a[1].sample, 70005);
  EXPECT_EQ(a[1].code, ann::PVC);
  EXPECT_EQ(a[1].subtype, 3);
  EXPECT_EQ(a[1].channel, 2);
  EXPECT_EQ(a[1].num, 7);
  EXPECT_EQ(a[1].aux, "abc");
  EXPECT_EQ(a[2].sample, 70015);
  EXPECT_EQ(a[2].subtype, 0);
  EXPECT_EQ(a[2].channel, 2);
  EXPECT_EQ(a[2].num, 7);
  EXPECT_EQ(a[2].aux, "");
  // The writer produces the same bytes up to the end marker.
  EXPECT_EQ(encode_wfdb_annotations(a), b.substr(0, b.size() - 2));
  // Negative SKIP intervals are allowed as long as time stays >= 0.
  auto n = parse_wfdb_annotations(bytes({0x00, 0xEC, 0xFF, 0xFF, 0xFE, 0xFF, 0x05, 0x04}), "neg");
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(n[0].sample, 3);  // -2 + 5
  EXPECT_TRUE(parse_wfdb_annotations("", "empty").empty());
  EXPECT_TRUE(parse_wfdb_annotations(bytes({0, 0}), "only end").empty());
}

TEST(WfdbAnnotation, WriterRoundTrip) {
  std::vector<WfdbAnnotation> a;
  int64_t t = 0;
  uint32_t x = 12345;
  for (int i = 0; i < 2000; ++i) {
    x = x * 1664525u + 1013904223u;
    const int64_t step = (x >> 28) == 0 ? int64_t{5000000} + (x & 0xffff) : (x >> 20) % 1500;
    t += step;
    WfdbAnnotation an;
    an.sample = t;
    an.code = static_cast<int>((x >> 8) % 59);
    if (an.code == 0 && (step == 0 || step > 1023)) an.code = 22;  // code 0 needs a non-zero short interval
    an.subtype = (x >> 3) % 5 == 0 ? static_cast<int>(x % 1024) : 0;
    an.channel = static_cast<int>((x >> 12) % 3);
    an.num = static_cast<int>((x >> 14) % 2) * 1023;
    if ((x >> 16) % 4 == 0) {
      an.aux = std::string((x >> 5) % 9, 'q');
      if (!an.aux.empty()) an.aux[0] = '\0';  // embedded NUL
    }
    a.push_back(an);
  }
  const std::string enc = encode_wfdb_annotations(a);
  EXPECT_EQ(enc.size() % 2, 0u);
  EXPECT_EQ(parse_wfdb_annotations(enc, "roundtrip"), a);
  test::TempDir d;
  write_wfdb_annotations(d.file("r.atr"), a);
  EXPECT_EQ(read_wfdb_annotations(d.file("r.atr")), a);
  // Re-encoding a real file gives back its annotations.
  auto st = read_wfdb_annotations(kPhysionet + "/slpdb/slp45.st");
  EXPECT_EQ(parse_wfdb_annotations(encode_wfdb_annotations(st), "slp45"), st);
}

TEST(WfdbAnnotationBad, CutMidAux) {
  EXPECT_ERROR_CONTAINS(read_wfdb_annotations(kBad + "/cut_mid_aux.st"),
                        {"cut_mid_aux.st", "byte offset 8", "inside an AUX string of 7 bytes", "offset 4"});
  // Every cut of a real .st file inside its first AUX string is detected.
  std::string st = test::read_bytes(kPhysionet + "/slpdb/slp01a.st");
  for (size_t cut = 5; cut < 12; ++cut)
    EXPECT_ERROR_CONTAINS(parse_wfdb_annotations(st.substr(0, cut), "x.st"), {"x.st", "byte offset"});
}

TEST(WfdbAnnotationBad, CutInSkipAndOddLength) {
  EXPECT_ERROR_CONTAINS(read_wfdb_annotations(kBad + "/cut_in_skip.apn"),
                        {"cut_in_skip.apn", "byte offset 4", "SKIP"});
  EXPECT_ERROR_CONTAINS(read_wfdb_annotations(kBad + "/odd_length.qrs"), {"odd_length.qrs", "byte offset 4", "lone byte"});
}

TEST(WfdbAnnotationBad, ModifierBeforeFirstAnnotation) {
  EXPECT_ERROR_CONTAINS(read_wfdb_annotations(kBad + "/aux_before_annotation.ann"),
                        {"aux_before_annotation.ann", "byte offset 0", "AUX word before the first annotation"});
  EXPECT_ERROR_CONTAINS(parse_wfdb_annotations(bytes({0x01, 0xF0}), "m"), {"NUM word before"});
}

TEST(WfdbAnnotationBad, NegativeTimeAndMissingFile) {
  EXPECT_ERROR_CONTAINS(parse_wfdb_annotations(bytes({0x00, 0xEC, 0xFF, 0xFF, 0x00, 0x00, 0x05, 0x04}), "neg"),
                        {"neg", "negative"});
  EXPECT_ERROR_CONTAINS(read_wfdb_annotations("/nonexistent/a01.qrs"), {"/nonexistent/a01.qrs", "cannot open"});
}

TEST(WfdbAnnotationBad, WriterRefusesBadAnnotations) {
  auto mk = [](int64_t s, int code) {
    WfdbAnnotation a;
    a.sample = s;
    a.code = code;
    return a;
  };
  EXPECT_ERROR_CONTAINS(encode_wfdb_annotations({mk(10, 1), mk(5, 1)}), {"annotation 1", "sorted"});
  EXPECT_ERROR_CONTAINS(encode_wfdb_annotations({mk(-1, 1)}), {"annotation 0", "negative"});
  EXPECT_ERROR_CONTAINS(encode_wfdb_annotations({mk(1, 59)}), {"code 59"});
  EXPECT_ERROR_CONTAINS(encode_wfdb_annotations({mk(0, 0)}), {"end marker"});
  EXPECT_ERROR_CONTAINS(encode_wfdb_annotations({mk(5000, 0)}), {"end marker"});  // needs a SKIP, then I = 0
  WfdbAnnotation big = mk(1, 1);
  big.aux = std::string(256, 'a');
  EXPECT_ERROR_CONTAINS(encode_wfdb_annotations({big}), {"aux string of 256 bytes"});
  WfdbAnnotation sub = mk(1, 1);
  sub.subtype = 1024;
  EXPECT_ERROR_CONTAINS(encode_wfdb_annotations({sub}), {"subtype 1024"});
  EXPECT_ERROR_CONTAINS(encode_wfdb_annotations({mk(int64_t{1} << 33, 1)}), {"32-bit SKIP"});
}
