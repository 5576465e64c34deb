// info_test.cpp: the text of `sleepnet info` on the shipped records (it must agree with the
// databases' own tables: Apnea-ECG a01 has 29,938 beats in .qrs and 470 apnea minutes), and its
// errors for records that cannot be read.
#include <gtest/gtest.h>
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "data/apnea_ecg.h"
#include "data/info.h"
#include "reader_test_util.h"

using namespace sleepnet;
using namespace sleepnet::data;

namespace {

const std::string kData = std::string(SLEEPNET_SOURCE_DIR) + "/data/physionet";

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Runs print_info and returns (status, stdout text, stderr text).
struct InfoRun {
  int status = 0;
  std::string out, err;
};
InfoRun run_info(const std::vector<std::string>& paths) {
  InfoRun r;
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  r.status = print_info(paths, out, err);
  for (auto [f, s] : {std::pair{out, &r.out}, std::pair{err, &r.err}}) {
    std::rewind(f);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s->append(buf, n);
    std::fclose(f);
  }
  return r;
}

}  // namespace

TEST(Info, A01) {
  const std::string text = describe_record(kData + "/apnea-ecg/a01");
  EXPECT_TRUE(contains(text, "a01 (apnea-ecg)")) << text;
  EXPECT_TRUE(contains(text, "29570 s (8:12:50)")) << text;
  EXPECT_TRUE(contains(text, "1: ECG (mV, 100 Hz, a01.dat absent)")) << text;
  EXPECT_TRUE(contains(text, "29938 from a01.qrs (beat annotations only; 0 other annotations)")) << text;
  EXPECT_TRUE(contains(text, "489 x 60 s from a01.apn")) << text;
  EXPECT_TRUE(contains(text, "470 apnea, 19 normal")) << text;
  EXPECT_TRUE(contains(text, "AHI 69.6 (additional-information.txt), class A")) << text;
  EXPECT_TRUE(contains(text, "490 minutes, 470 apnea, 20 non-apnea")) << text;
  EXPECT_TRUE(contains(text, "age 51, sex M, 175 cm, 102 kg")) << text;
}

TEST(Info, EveryLearningRecordShowsTheTablesApneaMinutes) {
  ApneaEcgTable table = read_apnea_ecg_table(kData + "/apnea-ecg/additional-information.txt");
  for (const auto& row : table.rows) {
    if (row.record[0] == 'x') continue;  // test set: files not shipped
    SCOPED_TRACE(row.record);
    const std::string text = describe_record(kData + "/apnea-ecg/" + row.record);
    EXPECT_TRUE(contains(text, fmt::format("  {} apnea, ", row.apnea_minutes))) << text;
    EXPECT_TRUE(contains(text, fmt::format("{} minutes, {} apnea", row.minutes, row.apnea_minutes))) << text;
  }
}

TEST(Info, ArtifactMarksAreReportedApart) {
  const std::string text = describe_record(kData + "/apnea-ecg/b05");
  // b05.qrs: 27702 beats and 1640 artifact marks.
  EXPECT_TRUE(contains(text, "27702 from b05.qrs (beat annotations only; 1640 other annotations)")) << text;
}

TEST(Info, SleepStagedRecords) {
  const std::string slp = describe_record(kData + "/slpdb/slp01a");
  EXPECT_TRUE(contains(slp, "slp01a (slpdb)")) << slp;
  EXPECT_TRUE(contains(slp, "4: ECG (mV, 250 Hz, slp01a.dat absent), BP (mmHg")) << slp;
  EXPECT_TRUE(contains(slp, "7806 from slp01a.ecg")) << slp;
  EXPECT_TRUE(contains(slp, "240 x 30 s from slp01a.st")) << slp;
  EXPECT_TRUE(contains(slp, "W 7, S1 1, S2 105, S3 47, S4 66, REM 13, MT 1")) << slp;
  EXPECT_TRUE(contains(slp, "232 sleep, 7 wake, 1 unknown")) << slp;
  EXPECT_TRUE(contains(slp, "37 apnea, 203 normal; 38 respiratory events")) << slp;
  EXPECT_TRUE(contains(slp, "AHI 19.14 (computed from slp01a.st")) << slp;
  EXPECT_TRUE(contains(slp, "age 44, sex M, 89 kg")) << slp;

  const std::string ucd = describe_record(kData + "/ucddb/ucddb008");
  EXPECT_TRUE(contains(ucd, "ucddb008 (ucddb)")) << ucd;
  EXPECT_TRUE(contains(ucd, "768 x 30 s from ucddb008_stage.txt")) << ucd;
  EXPECT_TRUE(contains(ucd, "W 263, S1 76, S2 302, S3 46, S4 37, REM 33, code8 11")) << ucd;
  EXPECT_TRUE(contains(ucd, "0 (no beat annotation file and no ECG)")) << ucd;
  EXPECT_TRUE(contains(ucd, "(SubjectDetails.csv (PSG AHI))")) << ucd;
}

TEST(Info, ErrorsNameThePath) {
  EXPECT_ERROR_CONTAINS(describe_record(kData + "/apnea-ecg/x01"), {"apnea-ecg/x01", "no such record"});
  EXPECT_ERROR_CONTAINS(describe_record("/nonexistent/dir/rec.edf"), {"/nonexistent/dir/rec.edf", "no such file"});
  test::TempDir dir;
  test::write_bytes(dir.file("bad.hea"), "bad 1 100 -5\nbad.dat 16\n");
  EXPECT_ERROR_CONTAINS(describe_record(dir.file("bad")), {"bad.hea"});
}

TEST(Info, PrintInfoReportsEveryRecordAndFailsOnAnyError) {
  InfoRun ok = run_info({kData + "/apnea-ecg/a01", kData + "/slpdb/slp01a"});
  EXPECT_EQ(ok.status, 0);
  EXPECT_TRUE(contains(ok.out, "a01 (apnea-ecg)"));
  EXPECT_TRUE(contains(ok.out, "\n\nslp01a (slpdb)"));
  EXPECT_TRUE(ok.err.empty());
  InfoRun bad = run_info({kData + "/apnea-ecg/x02", kData + "/apnea-ecg/a02"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_TRUE(contains(bad.out, "a02 (apnea-ecg)"));
  EXPECT_TRUE(contains(bad.err, "sleepnet info: ")) << bad.err;
  EXPECT_TRUE(contains(bad.err, "x02")) << bad.err;
}
