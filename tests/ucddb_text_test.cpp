// ucddb_text_test.cpp: UCDDB stage files and subject table (the shipped files), and respiratory
// event lists (synthetic: the real _respevt.txt files are not shipped) in the fixed-width layout,
// with empty cells, the PB/CS flag, the midnight wrap and malformed lines.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/ucddb_text.h"
#include "reader_test_util.h"

using namespace sleepnet;
using namespace sleepnet::data;

namespace {

const std::string kUcddb = std::string(SLEEPNET_SOURCE_DIR) + "/data/physionet/ucddb";

// One fixed-width line: each (column, text) pair is written starting at that column.
std::string row(std::initializer_list<std::pair<size_t, std::string>> cells) {
  std::string s;
  for (const auto& [col, text] : cells) {
    if (s.size() < col + text.size()) s.resize(col + text.size(), ' ');
    s.replace(col, text.size(), text);
  }
  return s + "\r\n";
}

// Column starts of the table (Time, Type, PB/CS, Duration, Low, %Drop, Snore, Arousal, Rate, Change).
constexpr size_t T = 0, TY = 10, PB = 20, DU = 28, LO = 37, DR = 45, SN = 53, AR = 59, RA = 67, CH = 74;

std::string table(const std::vector<std::string>& rows) {
  std::string s = "Respiratory events of a synthetic study\r\n\r\n";
  s += row({{T, "Time"}, {TY, "Type"}, {PB, "PB/CS"}, {DU, "Duration"}, {LO, "Low"}, {DR, "%Drop"}, {SN, "Snore"},
            {AR, "Arousal"}, {RA, "Rate"}, {CH, "Change"}});
  s += row({{DU, "(secs)"}, {LO, "SpO2"}, {RA, "(bpm)"}});
  s += std::string(78, '-') + "\r\n";
  for (const auto& r : rows) s += r;
  s += "\r\nTotal events: " + std::to_string(rows.size()) + "\r\n";
  return s;
}

}  // namespace

TEST(UcddbStages, EveryShippedStageFile) {
  int files = 0, unknown8 = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kUcddb)) {
    const std::string name = entry.path().filename().string();
    if (name.find("_stage.txt") == std::string::npos) continue;
    auto st = read_ucddb_stages(entry.path().string());
    EXPECT_GT(st.size(), 700u) << name;
    for (UcddbStage s : st) unknown8 += s == UcddbStage::Unknown8;
    ++files;
  }
  EXPECT_EQ(files, 25);
  EXPECT_EQ(unknown8, 11 + 4);  // ucddb008 and ucddb024
  auto s2 = read_ucddb_stages(kUcddb + "/ucddb002_stage.txt");
  ASSERT_EQ(s2.size(), 748u);
  EXPECT_EQ(s2.front(), UcddbStage::Wake);
  EXPECT_EQ(ucddb_stage_name(UcddbStage::Stage4), "S4");
  EXPECT_EQ(ucddb_stage_name(UcddbStage::Unknown8), "unknown8");
  auto s8 = read_ucddb_stages(kUcddb + "/ucddb008_stage.txt");
  int n8 = 0;
  for (UcddbStage s : s8) n8 += s == UcddbStage::Unknown8;
  EXPECT_EQ(n8, 11);
}

TEST(UcddbStages, FormsAndErrors) {
  auto s = parse_ucddb_stages("0\r\n1\n\n7\n8\n  5  \n", "mem");
  EXPECT_EQ(s, (std::vector<UcddbStage>{UcddbStage::Wake, UcddbStage::REM, UcddbStage::Indeterminate,
                                        UcddbStage::Unknown8, UcddbStage::Stage4}));
  EXPECT_ERROR_CONTAINS(parse_ucddb_stages("0\n9\n", "s.txt"), {"s.txt:2", "'9'", "0..8"});
  EXPECT_ERROR_CONTAINS(parse_ucddb_stages("0\nW\n", "s.txt"), {"s.txt:2", "'W'"});
  EXPECT_ERROR_CONTAINS(parse_ucddb_stages("-1\n", "s.txt"), {"s.txt:1"});
  EXPECT_ERROR_CONTAINS(parse_ucddb_stages("", "e.txt"), {"e.txt", "empty"});
  EXPECT_ERROR_CONTAINS(read_ucddb_stages("/nonexistent/ucddb999_stage.txt"), {"ucddb999_stage.txt", "cannot open"});
}

TEST(UcddbSubjects, ShippedTable) {
  auto subjects = read_ucddb_subjects(kUcddb + "/SubjectDetails.csv");
  ASSERT_EQ(subjects.size(), 25u);
  const UcddbSubject* s2 = find_ucddb_subject(subjects, "ucddb002");
  ASSERT_NE(s2, nullptr);
  EXPECT_EQ(s2->serial, 1);
  EXPECT_EQ(s2->psg_start, "0:11:04");
  EXPECT_DOUBLE_EQ(s2->psg_start_seconds, 11 * 60 + 4);
  EXPECT_DOUBLE_EQ(s2->ahi, 23);
  EXPECT_DOUBLE_EQ(s2->bmi, 33.9);
  EXPECT_EQ(s2->gender, "M");
  EXPECT_EQ(s2->age, 54);
  EXPECT_DOUBLE_EQ(s2->study_duration_hours, 6.2);
  EXPECT_EQ(s2->edf_blocks, 22470);
  const UcddbSubject* s25 = find_ucddb_subject(subjects, "UCDDB025");
  ASSERT_NE(s25, nullptr);
  EXPECT_DOUBLE_EQ(s25->ahi, 91);
  EXPECT_DOUBLE_EQ(find_ucddb_subject(subjects, "ucddb003")->psg_start_seconds, 23 * 3600 + 7 * 60 + 50);
  EXPECT_EQ(find_ucddb_subject(subjects, "ucddb004"), nullptr);
  // Each stage file covers the EDF length (1-s blocks) in whole 30-s epochs, the last partial or
  // full epoch excepted.
  for (const UcddbSubject& s : subjects) {
    std::string rec = s.study;
    for (char& c : rec) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const int64_t epochs = static_cast<int64_t>(read_ucddb_stages(kUcddb + "/" + rec + "_stage.txt").size());
    EXPECT_GT(s.edf_blocks - 30 * epochs, 0) << rec;
    EXPECT_LE(s.edf_blocks - 30 * epochs, 30) << rec;
  }
}

TEST(UcddbSubjects, Errors) {
  const std::string head =
      "S/No,Study Number,Height (cm),Weight (kg),Gender,PSG Start Time,PSG AHI,BMI,Age,Epworth Sleepiness Score,"
      "Study Duration (hr),Sleep Efficiency (%),No of data blocks in EDF\n";
  auto ok = parse_ucddb_subjects(head + "1,UCDDB002,172,100.3,M,0:11:04,23,33.9,54,16,6.2,84,22470\n", "t.csv");
  EXPECT_EQ(ok.size(), 1u);
  EXPECT_ERROR_CONTAINS(parse_ucddb_subjects(head + "1,UCDDB002,172,100.3,M,0:11:04,NaN,33.9,54,16,6.2,84,22470\n", "t.csv"),
                        {"t.csv:2", "column 'PSG AHI'", "'NaN' is not a number"});
  EXPECT_ERROR_CONTAINS(parse_ucddb_subjects(head + "1,UCDDB002,172,100.3,M,25:11:04,23,33.9,54,16,6.2,84,22470\n", "t.csv"),
                        {"t.csv:2", "PSG Start Time", "'25:11:04'"});
  EXPECT_ERROR_CONTAINS(parse_ucddb_subjects(head + "1,UCDDB002,172\n", "t.csv"), {"t.csv:2", "3 cells"});
  EXPECT_ERROR_CONTAINS(parse_ucddb_subjects(head + "1,UCDDB002,172,100.3,M,0:11:04,23,33.9,54,16,6.2,84,-5\n", "t.csv"),
                        {"t.csv:2", "No of data blocks", "'-5'"});
  EXPECT_ERROR_CONTAINS(parse_ucddb_subjects("S/No,Study Number\n1,UCDDB002\n", "t.csv"), {"t.csv:1", "no column 'Height'"});
  EXPECT_ERROR_CONTAINS(parse_ucddb_subjects("\n\n", "t.csv"), {"t.csv", "empty"});
}

TEST(UcddbRespevt, FixedWidthTableWithEmptyCells) {
  const std::string text = table({
      row({{T, "23:58:12"}, {TY, "HYP-O"}, {DU, "14"}, {LO, "91"}, {DR, "3"}}),
      row({{T, "00:03:07"}, {TY, "APNEA-O"}, {DU, "22"}, {LO, "88"}, {DR, "7"}, {SN, "+"}, {AR, "+"}, {RA, "64"}, {CH, "12"}}),
      // No SpO2 cells, the duration right-aligned under its label.
      row({{T, "00:10:00"}, {TY, "APNEA-C"}, {DU + 5, "9.5"}, {AR, "+"}}),
      row({{T, "01:00:00"}, {TY, "PB"}, {PB, "PB"}, {DU, "120"}, {LO, "93"}, {DR, "-"}}),
      row({{T, "02:00:00"}, {TY, "HYP-M"}, {PB, "CS"}, {DU, "18"}, {SN, "+"}}),
      row({{T, "03:00:00"}, {TY, "DESAT"}, {DU, "30"}, {LO, "85"}, {DR, "6"}}),
  });
  // PSG started at 23:50:00.
  auto ev = parse_ucddb_respevt(text, "s_respevt.txt", 23 * 3600 + 50 * 60);
  ASSERT_EQ(ev.size(), 6u);
  EXPECT_EQ(ev[0].clock, "23:58:12");
  EXPECT_DOUBLE_EQ(ev[0].onset_seconds, 8 * 60 + 12);
  EXPECT_EQ(ev[0].kind, UcddbEventKind::HypopneaObstructive);
  EXPECT_TRUE(ucddb_is_hypopnea(ev[0].kind));
  EXPECT_DOUBLE_EQ(ev[0].duration_seconds, 14);
  EXPECT_DOUBLE_EQ(ev[0].low_spo2.value(), 91);
  EXPECT_DOUBLE_EQ(ev[0].drop_percent.value(), 3);
  EXPECT_EQ(ev[0].snore, "");
  EXPECT_FALSE(ev[0].rate.has_value());
  // After midnight: wraps to the next day.
  EXPECT_DOUBLE_EQ(ev[1].onset_seconds, 10 * 60 + 3 * 60 + 7);
  EXPECT_EQ(ev[1].kind, UcddbEventKind::ApneaObstructive);
  EXPECT_TRUE(ucddb_is_apnea(ev[1].kind));
  EXPECT_EQ(ev[1].snore, "+");
  EXPECT_EQ(ev[1].arousal, "+");
  EXPECT_DOUBLE_EQ(ev[1].rate.value(), 64);
  EXPECT_DOUBLE_EQ(ev[1].change.value(), 12);
  EXPECT_EQ(ev[2].kind, UcddbEventKind::ApneaCentral);
  EXPECT_DOUBLE_EQ(ev[2].duration_seconds, 9.5);
  EXPECT_FALSE(ev[2].low_spo2.has_value());
  EXPECT_EQ(ev[2].arousal, "+");  // not shifted into an empty column
  EXPECT_EQ(ev[3].kind, UcddbEventKind::PeriodicBreathing);
  EXPECT_EQ(ev[3].pb_cs, "PB");
  EXPECT_DOUBLE_EQ(ev[3].duration_seconds, 120);
  EXPECT_FALSE(ev[3].drop_percent.has_value());  // "-"
  EXPECT_EQ(ev[4].pb_cs, "CS");
  EXPECT_EQ(ev[4].kind, UcddbEventKind::HypopneaMixed);
  EXPECT_EQ(ev[4].snore, "+");
  EXPECT_EQ(ev[5].kind, UcddbEventKind::Other);
  EXPECT_EQ(ev[5].type, "DESAT");
  EXPECT_DOUBLE_EQ(ev[5].onset_seconds, 3 * 3600 + 10 * 60);
  EXPECT_EQ(ev[5].line, 11);  // title, blank, header, units, ruler, then events
}

TEST(UcddbRespevt, WithoutHeaderLine) {
  const std::string text = "00:20:00 APNEA-M 12 90 4\n00:21:00 PB CS 40\n";
  auto ev = parse_ucddb_respevt(text, "n.txt", 11 * 60 + 4);  // PSG start 00:11:04, no wrap
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_DOUBLE_EQ(ev[0].onset_seconds, 20 * 60 - (11 * 60 + 4));
  EXPECT_EQ(ev[0].kind, UcddbEventKind::ApneaMixed);
  EXPECT_DOUBLE_EQ(ev[0].low_spo2.value(), 90);
  EXPECT_DOUBLE_EQ(ev[0].drop_percent.value(), 4);
  EXPECT_EQ(ev[1].pb_cs, "CS");
  EXPECT_DOUBLE_EQ(ev[1].duration_seconds, 40);
}

TEST(UcddbRespevt, Errors) {
  EXPECT_ERROR_CONTAINS(parse_ucddb_respevt(table({row({{T, "23:58:12"}, {TY, "HYP-O"}, {DU, "abc"}})}), "r.txt", 0),
                        {"r.txt:6", "column 'Duration'", "'abc'"});
  EXPECT_ERROR_CONTAINS(parse_ucddb_respevt(table({row({{T, "23:58:12"}, {TY, "HYP-O"}, {LO, "91"}})}), "r.txt", 0),
                        {"r.txt:6", "column 'Duration' is empty"});
  EXPECT_ERROR_CONTAINS(
      parse_ucddb_respevt(table({row({{T, "23:58:12"}, {TY, "HYP-O"}, {DU, "10"}, {LO, "191"}})}), "r.txt", 0),
      {"r.txt:6", "SpO2 191"});
  EXPECT_ERROR_CONTAINS(
      parse_ucddb_respevt(table({row({{T, "23:58:12"}, {TY, "HYP-O"}, {DU, "10"}, {LO, "x9"}})}), "r.txt", 0),
      {"r.txt:6", "column 'Low'", "'x9'"});
  // An event minutes before the PSG start.
  EXPECT_ERROR_CONTAINS(parse_ucddb_respevt(table({row({{T, "23:40:00"}, {TY, "HYP-O"}, {DU, "10"}})}), "r.txt",
                                            23 * 3600 + 50 * 60),
                        {"r.txt:6", "before the PSG start"});
  EXPECT_ERROR_CONTAINS(parse_ucddb_respevt("00:20:00 APNEA-M\n", "r.txt", 0), {"r.txt:1", "fewer than 3 cells"});
  EXPECT_ERROR_CONTAINS(parse_ucddb_respevt("x", "r.txt", 90000), {"r.txt", "not a time of day"});
  // Lines that do not start with a clock time are not events; a file without any is empty.
  EXPECT_TRUE(parse_ucddb_respevt("no events\n--\n", "r.txt", 0).empty());
}

TEST(UcddbText, ClockParsing) {
  EXPECT_DOUBLE_EQ(parse_clock_seconds("23:07:50").value(), 83270);
  EXPECT_DOUBLE_EQ(parse_clock_seconds("0:11:04").value(), 664);
  EXPECT_DOUBLE_EQ(parse_clock_seconds("7:05").value(), 7 * 3600 + 5 * 60);
  EXPECT_FALSE(parse_clock_seconds("24:00:00").has_value());
  EXPECT_FALSE(parse_clock_seconds("12:60:00").has_value());
  EXPECT_FALSE(parse_clock_seconds("12").has_value());
  EXPECT_FALSE(parse_clock_seconds("1:2:3:4").has_value());
  EXPECT_FALSE(parse_clock_seconds("ab:cd").has_value());
  EXPECT_FALSE(parse_clock_seconds("").has_value());
}
