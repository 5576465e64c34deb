// adapters_test.cpp: the database adapters on the shipped real data (Apnea-ECG against its own
// table for all 35 learning records, every slpdb record, every UCDDB stage file), the database
// loader's handling of absent records, the raw-signal paths on synthetic records, and bad input
// (a cut .apn, a garbled table row, malformed .st files).
#include <gtest/gtest.h>
#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "data/apnea_ecg.h"
#include "data/edf.h"
#include "data/qrs.h"
#include "data/record.h"
#include "data/slpdb.h"
#include "data/synth.h"
#include "data/ucddb.h"
#include "data/wfdb_annotation.h"
#include "reader_test_util.h"

using namespace sleepnet;
using namespace sleepnet::data;
namespace fs = std::filesystem;

namespace {

const std::string kData = std::string(SLEEPNET_SOURCE_DIR) + "/data/physionet";
const std::string kApnea = kData + "/apnea-ecg";
const std::string kSlpdb = kData + "/slpdb";
const std::string kUcddb = kData + "/ucddb";

std::vector<std::string> learning_set() {
  std::vector<std::string> ids;
  for (int i = 1; i <= 20; ++i) ids.push_back(fmt::format("a{:02d}", i));
  for (int i = 1; i <= 5; ++i) ids.push_back(fmt::format("b{:02d}", i));
  for (int i = 1; i <= 10; ++i) ids.push_back(fmt::format("c{:02d}", i));
  return ids;
}

// Copies the named files of a shipped directory into a scratch directory.
void copy_files(const std::string& from, const std::string& to, const std::vector<std::string>& names) {
  for (const auto& n : names) fs::copy_file(from + "/" + n, to + "/" + n, fs::copy_options::overwrite_existing);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Apnea-ECG
// ---------------------------------------------------------------------------------------------

TEST(ApneaEcg, A01MatchesThePublishedCounts) {
  Record r = load_record(kApnea + "/a01");
  EXPECT_EQ(r.id, "a01");
  EXPECT_EQ(r.database, Database::ApneaEcg);
  EXPECT_EQ(r.num_beats(), 29938);  // beat annotations of a01.qrs (it has no artifact marks)
  EXPECT_EQ(r.non_beat_annotations, 0);
  EXPECT_DOUBLE_EQ(r.duration_s, 2957000 / 100.0);
  ASSERT_EQ(r.windows.size(), 489u);
  LabelCounts c = count_labels(r);
  EXPECT_EQ(c.apnea, 470);
  EXPECT_EQ(c.normal, 19);
  EXPECT_EQ(c.apnea_unknown, 0);
  // Minute k is [60k, 60k + 60).
  for (size_t k = 0; k < r.windows.size(); ++k) {
    EXPECT_DOUBLE_EQ(r.windows[k].start_s, 60.0 * k);
    EXPECT_DOUBLE_EQ(r.windows[k].duration_s, 60.0);
  }
  ASSERT_TRUE(r.meta.reference_ahi.has_value());
  EXPECT_DOUBLE_EQ(*r.meta.reference_ahi, 69.6);
  EXPECT_EQ(r.meta.record_class, "A");
  EXPECT_EQ(r.meta.age.value_or(0), 51);
  EXPECT_EQ(r.meta.sex, "M");
  EXPECT_EQ(r.beat_source, "a01.qrs");
  EXPECT_TRUE(r.r_amplitudes.empty());  // no .dat shipped
  ASSERT_EQ(r.signals.size(), 1u);
  EXPECT_EQ(r.signals[0].name, "ECG");
  EXPECT_FALSE(r.signals[0].present);
  // Beat times increase and lie inside the record.
  for (size_t i = 1; i < r.beat_times_s.size(); ++i) ASSERT_LT(r.beat_times_s[i - 1], r.beat_times_s[i]);
  EXPECT_LT(r.beat_times_s.back(), r.duration_s);
}

TEST(ApneaEcg, ArtifactMarksAreNotBeats) {
  // a02.qrs holds 35152 beats and 90 artifact marks ('|').
  Record r = load_record(kApnea + "/a02");
  EXPECT_EQ(r.num_beats(), 35152);
  EXPECT_EQ(r.non_beat_annotations, 90);
  auto anns = read_wfdb_annotations(kApnea + "/a02.qrs");
  EXPECT_EQ(static_cast<int64_t>(anns.size()), r.num_beats() + r.non_beat_annotations);
}

TEST(ApneaEcg, All35RecordsAgreeWithAdditionalInformation) {
  ApneaEcgTable table = read_apnea_ecg_table(kApnea + "/additional-information.txt");
  EXPECT_EQ(table.rows.size(), 70u);  // learning and test set
  std::map<std::string, int> classes;
  for (const std::string& id : learning_set()) {
    SCOPED_TRACE(id);
    Record r = load_apnea_ecg_record(kApnea + "/" + id, &table);
    const ApneaEcgTableRow* row = table.find(id);
    ASSERT_NE(row, nullptr);
    LabelCounts c = count_labels(r);
    // Apnea minutes agree exactly.
    EXPECT_EQ(c.apnea, row->apnea_minutes);
    EXPECT_EQ(c.apnea_unknown, 0);
    // The table counts one more (final, partial) minute than the .apn scores, as non-apnea;
    // c07 and c08 have fewer annotated minutes than the table lists (shorter signals).
    if (id == "c07" || id == "c08") {
      EXPECT_LT(c.windows + 1, row->minutes);
      EXPECT_EQ(c.apnea + c.normal, c.windows);
    } else {
      EXPECT_EQ(c.windows + 1, row->minutes);
      EXPECT_EQ(c.normal + 1, row->normal_minutes);
    }
    // Every scored minute starts inside the record (the last one may be partial: a05's last
    // minute starts at 453 min, the record ends 15 s later).
    EXPECT_LT(r.windows.back().start_s, r.duration_s);
    EXPECT_GT(r.duration_s, 60.0 * (c.windows - 1));
    EXPECT_DOUBLE_EQ(*r.meta.reference_ahi, row->ahi);
    EXPECT_EQ(r.meta.record_class, std::string(1, static_cast<char>(std::toupper(id[0]))));
    EXPECT_GT(r.num_beats(), 20000);
    ++classes[r.meta.record_class];
  }
  EXPECT_EQ(classes["A"], 20);
  EXPECT_EQ(classes["B"], 5);
  EXPECT_EQ(classes["C"], 10);
}

TEST(ApneaEcg, ClassAndSubjectKeys) {
  ApneaEcgTable table = read_apnea_ecg_table(kApnea + "/additional-information.txt");
  // Test-set records have no name class: the Challenge's definition from apnea minutes.
  EXPECT_EQ(apnea_ecg_class("x01", table.find("x01")), "A");  // 375 apnea minutes
  EXPECT_EQ(apnea_ecg_class("x03", table.find("x03")), "B");  // 12
  EXPECT_EQ(apnea_ecg_class("x04", table.find("x04")), "C");  // 0
  EXPECT_EQ(apnea_ecg_class("a01r", nullptr), "A");
  EXPECT_EQ(apnea_ecg_night("a01r"), "a01");
  EXPECT_EQ(apnea_ecg_night("a01er"), "a01");
  EXPECT_EQ(apnea_ecg_night("c10"), "c10");
  // a01 and a14 are one person (same age, sex, height, weight); a01 and a02 are not.
  Record a01 = load_apnea_ecg_record(kApnea + "/a01", &table);
  Record a14 = load_apnea_ecg_record(kApnea + "/a14", &table);
  Record a02 = load_apnea_ecg_record(kApnea + "/a02", &table);
  EXPECT_EQ(a01.group(), a14.group());
  EXPECT_NE(a01.group(), a02.group());
}

TEST(ApneaEcg, RespirationRecordWithoutSignals) {
  // a01r ships with header and .apn only: 4 signals listed, absent; no beats; labels read.
  Record r = load_record(kApnea + "/a01r");
  EXPECT_EQ(r.database, Database::ApneaEcg);
  EXPECT_EQ(r.meta.night, "a01");
  EXPECT_EQ(r.num_beats(), 0);
  ASSERT_EQ(r.signals.size(), 4u);
  EXPECT_EQ(r.signals[3].name, "SpO2");
  EXPECT_FALSE(r.signals[0].present);
  EXPECT_EQ(count_labels(r).apnea, 470);
}

TEST(ApneaEcgTable, ColumnsByNameAndUnitsLineSkipped) {
  const std::string text =
      "Some prose.\n\n"
      "Record\tAHI\tLength\tapnea\tnon-apn\tSex\n"
      "\tminutes\tminutes\tminutes\n"
      "\n"
      "a01\t69.6\t490\t470\t20\tM\t\t\n"
      "\t\n"
      "x01\t63\t524\t375\t149\tF\n";
  ApneaEcgTable t = parse_apnea_ecg_table(text, "info.txt");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].record, "a01");
  EXPECT_EQ(t.rows[0].minutes, 490);
  EXPECT_EQ(t.rows[0].apnea_minutes, 470);
  EXPECT_DOUBLE_EQ(t.rows[0].ahi, 69.6);
  EXPECT_FALSE(t.rows[0].age.has_value());
  EXPECT_EQ(t.rows[1].sex, "F");
  EXPECT_EQ(t.rows[1].line, 8);
}

TEST(ApneaEcgTable, GarbledRowsAreErrorsNamingFileLineAndColumn) {
  const std::string good = test::read_bytes(kApnea + "/additional-information.txt");
  auto with_row = [&](const std::string& from, const std::string& to) {
    std::string t = good;
    size_t p = t.find(from);
    EXPECT_NE(p, std::string::npos);
    t.replace(p, from.size(), to);
    return t;
  };
  // A letter in a number.
  EXPECT_ERROR_CONTAINS(
      parse_apnea_ecg_table(with_row("a05\t455\t179\t276", "a05\t455\t1x9\t276"), "additional-information.txt"),
      {"additional-information.txt:", "a05", "non-apn", "'1x9'"});
  // A missing cell.
  EXPECT_ERROR_CONTAINS(
      parse_apnea_ecg_table(with_row("a05\t455\t179\t276", "a05\t455\t276"), "additional-information.txt"),
      {"additional-information.txt:", "cells, expected 12"});
  // Counts that do not add up.
  EXPECT_ERROR_CONTAINS(
      parse_apnea_ecg_table(with_row("a05\t455\t179\t276", "a05\t455\t179\t277"), "additional-information.txt"),
      {"additional-information.txt:", "a05", "!= Length"});
  // A record name that is not one.
  EXPECT_ERROR_CONTAINS(parse_apnea_ecg_table(with_row("\na05\t455", "\n#05\t455"), "additional-information.txt"),
                        {"additional-information.txt:", "Record", "'#05'"});
  // A duplicated row.
  EXPECT_ERROR_CONTAINS(parse_apnea_ecg_table(with_row("a06\t511", "a05\t511"), "additional-information.txt"),
                        {"additional-information.txt:", "a05", "twice"});
  // No header, no required column.
  EXPECT_ERROR_CONTAINS(parse_apnea_ecg_table("just text\n", "t.txt"), {"t.txt", "Record"});
  EXPECT_ERROR_CONTAINS(parse_apnea_ecg_table("Record Length apnea\na01 1 1\n", "t.txt"), {"t.txt:1", "non-apn"});
  // The line number is right: a05 sits on the line after a04.
  const std::string bad = with_row("a05\t455\t179\t276", "a05\t455\tabc\t276");
  int line = 1;
  for (size_t i = 0; i < bad.find("a05\t455\tabc"); ++i) line += bad[i] == '\n';
  EXPECT_ERROR_CONTAINS(parse_apnea_ecg_table(bad, "additional-information.txt"),
                        {fmt::format("additional-information.txt:{}:", line)});
}

TEST(ApneaEcgBadInput, GarbledTableFailsTheDatabaseLoadNamingTheFile) {
  test::TempDir dir;
  copy_files(kApnea, dir.path(), {"a01.hea", "a01.qrs", "a01.apn"});
  std::string table = test::read_bytes(kApnea + "/additional-information.txt");
  table.replace(table.find("a01\t490"), 7, "a01\t4?0");
  test::write_bytes(dir.file("additional-information.txt"), table);
  test::write_bytes(dir.file("RECORDS"), "a01\n");
  EXPECT_ERROR_CONTAINS(load_database(dir.path()), {"additional-information.txt", "a01", "Length", "'4?0'"});
  EXPECT_ERROR_CONTAINS(load_record(dir.file("a01")), {"additional-information.txt", "Length"});
}

TEST(ApneaEcgBadInput, ApnCutMidFileIsAnErrorNamingTheFile) {
  test::TempDir dir;
  copy_files(kApnea, dir.path(), {"a01.hea", "a01.qrs"});
  const std::string apn = test::read_bytes(kApnea + "/a01.apn");
  // Cut at an odd byte: inside a 16-bit word.
  test::write_bytes(dir.file("a01.apn"), apn.substr(0, apn.size() / 2 + 1 - (apn.size() / 2) % 2));
  EXPECT_ERROR_CONTAINS(load_record(dir.file("a01")), {"a01.apn"});
  // Cut at a word boundary: a valid-looking prefix without the end marker.
  test::write_bytes(dir.file("a01.apn"), apn.substr(0, (apn.size() / 2) & ~size_t{1}));
  EXPECT_ERROR_CONTAINS(load_record(dir.file("a01")), {"a01.apn", "end-of-file marker", "truncated"});
  // The whole file loads.
  test::write_bytes(dir.file("a01.apn"), apn);
  EXPECT_EQ(count_labels(load_record(dir.file("a01"))).apnea, 470);
}

TEST(ApneaEcgBadInput, ApnWithOtherCodesOrDisorderIsAnError) {
  std::vector<WfdbAnnotation> anns(3);
  for (int i = 0; i < 3; ++i) {
    anns[i].sample = 6000 * i;
    anns[i].code = ann::NORMAL;
  }
  anns[1].code = ann::PVC;
  EXPECT_ERROR_CONTAINS(apnea_windows_from_annotations(anns, 100, 1e5, "x.apn"),
                        {"x.apn", "annotation 1", "expected N (no apnea) or A"});
  anns[1].code = ann::APC;
  anns[2].sample = 9000;  // 30 s after the previous minute
  EXPECT_ERROR_CONTAINS(apnea_windows_from_annotations(anns, 100, 1e5, "x.apn"), {"x.apn", "60 s apart"});
  anns[2].sample = 12000;
  EXPECT_ERROR_CONTAINS(apnea_windows_from_annotations(anns, 100, 100.0, "x.apn"), {"x.apn", "after the record end"});
  EXPECT_EQ(apnea_windows_from_annotations(anns, 100, 1e5, "x.apn").size(), 3u);
}

// ---------------------------------------------------------------------------------------------
// slpdb
// ---------------------------------------------------------------------------------------------

TEST(Slpdb, AuxParsing) {
  SlpdbEpochLabel a = parse_slpdb_aux("2 OA X");
  EXPECT_EQ(a.stage, StageLabel::S2);
  EXPECT_EQ(a.events, (std::vector<std::string>{"OA", "X"}));
  EXPECT_TRUE(a.other.empty());
  SlpdbEpochLabel b = parse_slpdb_aux(std::string("W\0", 2));  // slp41 / slp45 write a NUL
  EXPECT_EQ(b.stage, StageLabel::Wake);
  EXPECT_TRUE(b.events.empty());
  EXPECT_EQ(parse_slpdb_aux(std::string("M\0", 2)).stage, StageLabel::Movement);
  EXPECT_EQ(parse_slpdb_aux("MT").stage, StageLabel::Movement);
  SlpdbEpochLabel c = parse_slpdb_aux("R L CAA HA LLLL");
  EXPECT_EQ(c.stage, StageLabel::REM);
  EXPECT_EQ(c.events, (std::vector<std::string>{"CAA", "HA"}));
  EXPECT_EQ(c.other, (std::vector<std::string>{"L", "LLLL"}));
  SlpdbEpochLabel d = parse_slpdb_aux("H");  // no stage token
  EXPECT_FALSE(d.has_stage_token);
  EXPECT_EQ(d.stage, StageLabel::Unknown);
  for (const char* t : {"H", "HA", "OA", "X", "CA", "CAA"}) EXPECT_TRUE(slpdb_is_respiratory_event(t)) << t;
  for (const char* t : {"L", "LA", "A", "MT", "W", "2"}) EXPECT_FALSE(slpdb_is_respiratory_event(t)) << t;
}

TEST(Slpdb, EveryRecordParses) {
  DatabaseLoad db = load_database(kSlpdb);
  EXPECT_EQ(db.database, Database::Slpdb);
  EXPECT_TRUE(db.warnings.empty()) << db.warnings.front();
  ASSERT_EQ(db.records.size(), 18u);
  for (const Record& r : db.records) {
    SCOPED_TRACE(r.id);
    EXPECT_EQ(r.database, Database::Slpdb);
    EXPECT_GT(r.num_beats(), 5000);
    EXPECT_EQ(r.label_source, r.id + ".st");
    // One window per whole 30-s epoch of the record.
    EXPECT_EQ(r.windows.size(), static_cast<size_t>(r.duration_s / 30.0));
    LabelCounts c = count_labels(r);
    EXPECT_GT(c.sleep, 0);
    EXPECT_EQ(c.sleep + c.wake + c.sleep_unknown, c.windows);
    ASSERT_TRUE(r.meta.reference_ahi.has_value());
    EXPECT_GE(*r.meta.reference_ahi, 0.0);
    EXPECT_FALSE(r.meta.record_class.empty());
    for (const auto& n : r.notes) EXPECT_EQ(n.find("unknown token"), std::string::npos) << n;
  }
}

TEST(Slpdb, Slp01aStageCountsAndAhi) {
  Record r = load_record(kSlpdb + "/slp01a");
  ASSERT_EQ(r.windows.size(), 240u);
  LabelCounts c = count_labels(r);
  auto stage = [&](StageLabel s) { return c.stage[static_cast<int>(s) + 1]; };
  // Counted from the .st aux strings (rdann): W 7, 1 1, 2 105, 3 47, 4 66, R 13, MT 1.
  EXPECT_EQ(stage(StageLabel::Wake), 7);
  EXPECT_EQ(stage(StageLabel::S1), 1);
  EXPECT_EQ(stage(StageLabel::S2), 105);
  EXPECT_EQ(stage(StageLabel::S3), 47);
  EXPECT_EQ(stage(StageLabel::S4), 66);
  EXPECT_EQ(stage(StageLabel::REM), 13);
  EXPECT_EQ(stage(StageLabel::Movement), 1);
  EXPECT_EQ(c.sleep, 232);
  EXPECT_EQ(c.wake, 7);
  EXPECT_EQ(c.sleep_unknown, 1);
  // 37 epochs hold respiratory events, one of them two ("2 H H"): 38 tokens, of which one
  // (W HA) is in a wake epoch: 37 events in 232 sleep epochs.
  EXPECT_EQ(c.apnea, 37);
  EXPECT_EQ(c.events, 38);
  SlpdbAhi a = slpdb_ahi(r);
  EXPECT_EQ(a.events, 37);
  EXPECT_EQ(a.sleep_epochs, 232);
  EXPECT_NEAR(a.ahi, 37 / (232 * 30.0 / 3600.0), 1e-9);
  EXPECT_NEAR(*r.meta.reference_ahi, a.ahi, 1e-12);
  // Merging adjacent epochs' tokens gives a lower bound.
  SlpdbAhi m = slpdb_ahi(r, SlpdbEventCount::MergeAdjacent);
  EXPECT_LT(m.events, a.events);
  EXPECT_GT(m.events, 0);
}

TEST(Slpdb, LateScoringStartAndNulTerminatedStages) {
  // slp14: the first annotation is at sample 45000 = epoch 6; epochs 0-5 are unscored.
  Record r = load_record(kSlpdb + "/slp14");
  for (int k = 0; k < 6; ++k) {
    EXPECT_EQ(r.windows[k].stage, StageLabel::Unknown);
    EXPECT_EQ(r.windows[k].apnea, -1);
  }
  EXPECT_NE(r.windows[6].stage, StageLabel::Unknown);
  EXPECT_EQ(count_labels(r).stage[0], 6);
  // slp45 writes "M\0" for movement time (4 epochs) and no events.
  Record s = load_record(kSlpdb + "/slp45");
  LabelCounts c = count_labels(s);
  EXPECT_EQ(c.stage[static_cast<int>(StageLabel::Movement) + 1], 4);
  EXPECT_EQ(c.stage[static_cast<int>(StageLabel::S4) + 1], 52);
  EXPECT_EQ(c.apnea, 0);
  EXPECT_DOUBLE_EQ(*s.meta.reference_ahi, 0.0);
}

TEST(SlpdbBadInput, MalformedStFiles) {
  std::vector<WfdbAnnotation> anns(2);
  anns[0].sample = 1;
  anns[0].code = ann::NOTE;
  anns[0].aux = "W";
  anns[1] = anns[0];
  anns[1].sample = 7400;  // rounds to epoch 1
  EXPECT_EQ(slpdb_windows_from_annotations(anns, 250, 600, "s.st").size(), 20u);
  anns[1].sample = 2000;  // rounds to epoch 0 again
  EXPECT_ERROR_CONTAINS(slpdb_windows_from_annotations(anns, 250, 600, "s.st"), {"s.st", "epoch 0", "twice"});
  anns[1].sample = 250 * 600;  // epoch 20 of a 20-epoch record
  EXPECT_ERROR_CONTAINS(slpdb_windows_from_annotations(anns, 250, 600, "s.st"), {"s.st", "outside"});
  // Unknown tokens are notes, not errors.
  anns[1].sample = 7500;
  anns[1].aux = "2 ZZ";
  std::vector<std::string> notes;
  auto w = slpdb_windows_from_annotations(anns, 250, 600, "s.st", &notes);
  EXPECT_EQ(w[1].stage, StageLabel::S2);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].find("'ZZ'"), std::string::npos);
  // A .st cut mid-file.
  test::TempDir dir;
  copy_files(kSlpdb, dir.path(), {"slp01a.hea", "slp01a.ecg"});
  const std::string st = test::read_bytes(kSlpdb + "/slp01a.st");
  test::write_bytes(dir.file("slp01a.st"), st.substr(0, st.size() / 2 + 1));
  EXPECT_ERROR_CONTAINS(load_record(dir.file("slp01a")), {"slp01a.st"});
}

// ---------------------------------------------------------------------------------------------
// UCDDB
// ---------------------------------------------------------------------------------------------

TEST(Ucddb, EveryStageFileParsesWithTableMetadata) {
  DatabaseOptions lenient;
  lenient.require_beats = false;
  DatabaseLoad db = load_database(kUcddb, lenient);
  EXPECT_EQ(db.database, Database::Ucddb);
  EXPECT_TRUE(db.warnings.empty());
  ASSERT_EQ(db.records.size(), 25u);
  int64_t code8 = 0;
  for (const Record& r : db.records) {
    SCOPED_TRACE(r.id);
    EXPECT_EQ(r.database, Database::Ucddb);
    EXPECT_GT(r.windows.size(), 500u);
    EXPECT_EQ(r.num_beats(), 0);  // no .rec shipped
    ASSERT_TRUE(r.meta.reference_ahi.has_value());
    EXPECT_GE(r.duration_s, 30.0 * r.windows.size());
    LabelCounts c = count_labels(r);
    EXPECT_EQ(c.apnea_unknown, c.windows);  // no _respevt.txt shipped
    EXPECT_EQ(c.stage[0], 0);               // every epoch has a code
    code8 += c.stage[static_cast<int>(StageLabel::Undocumented) + 1];
  }
  // Code 8 occurs in ucddb008 (11 epochs) and ucddb024.
  EXPECT_GT(code8, 11);
  const Record& r002 = db.records.front();
  EXPECT_EQ(r002.id, "ucddb002");
  EXPECT_DOUBLE_EQ(*r002.meta.reference_ahi, 23.0);
  EXPECT_EQ(r002.meta.age.value_or(0), 54);
  Record r008 = load_record(kUcddb + "/ucddb008");
  EXPECT_EQ(count_labels(r008).stage[static_cast<int>(StageLabel::Undocumented) + 1], 11);
  EXPECT_EQ(count_labels(r008).sleep_unknown, 11);
  // The default (require_beats) skips them all, each with one warning.
  DatabaseLoad strict = load_database(kUcddb);
  EXPECT_TRUE(strict.records.empty());
  EXPECT_EQ(strict.warnings.size(), 25u);
}

TEST(Ucddb, RespiratoryEventsLabelEpochs) {
  test::TempDir dir;
  copy_files(kUcddb, dir.path(), {"ucddb002_stage.txt", "SubjectDetails.csv"});
  // PSG start 00:11:04. Events: an obstructive apnea 00:12:00-00:12:30 (56-86 s: epochs 1 and
  // 2), a periodic-breathing entry (not an apnea/hypopnea), a hypopnea 00:19:40-00:19:55
  // (516-531 s: epoch 17).
  test::write_bytes(dir.file("ucddb002_respevt.txt"),
                    "00:12:00 APNEA-O 30 90 4\n00:15:00 PB CS 40\n00:19:40 HYP-C 15 92 3\n");
  Record r = load_record(dir.file("ucddb002"));
  EXPECT_EQ(r.label_source, "ucddb002_stage.txt + ucddb002_respevt.txt");
  LabelCounts c = count_labels(r);
  EXPECT_EQ(c.apnea_unknown, 0);
  EXPECT_EQ(c.apnea, 3);
  EXPECT_EQ(r.windows[1].apnea, 1);
  EXPECT_EQ(r.windows[2].apnea, 1);
  EXPECT_EQ(r.windows[3].apnea, 0);
  EXPECT_EQ(r.windows[17].apnea, 1);
  EXPECT_EQ(r.windows[1].events, 1);
  EXPECT_EQ(r.windows[2].events, 0);
  EXPECT_EQ(c.events, 2);
  // Without the subject table the events cannot be placed.
  fs::remove(dir.file("SubjectDetails.csv"));
  EXPECT_ERROR_CONTAINS(load_record(dir.file("ucddb002")), {"ucddb002_respevt.txt", "SubjectDetails.csv"});
}

TEST(Ucddb, EdfRecordingGivesSignalsAndDetectedBeats) {
  // A synthetic EDF at 128 Hz (UCDDB's ECG rate) named like a UCDDB record, next to a stage file.
  test::TempDir dir;
  SynthConfig cfg;
  cfg.seed = 5;
  cfg.duration_s = 600;
  cfg.fs_hz = 128;
  cfg.write_st = false;
  SynthRecord truth = write_synthetic_record(cfg, dir.path(), "ucddb900");
  fs::rename(dir.file("ucddb900.edf"), dir.file("ucddb900.rec"));
  std::string stages;
  for (int k = 0; k < 20; ++k) stages += "3\n";
  test::write_bytes(dir.file("ucddb900_stage.txt"), stages);
  Record r = load_ucddb_record(dir.file("ucddb900"), nullptr);
  EXPECT_EQ(r.database, Database::Ucddb);
  EXPECT_DOUBLE_EQ(r.duration_s, 600.0);
  EXPECT_EQ(r.windows.size(), 20u);
  ASSERT_GE(r.signals.size(), 2u);
  EXPECT_EQ(r.signals[0].name, "ECG");
  EXPECT_NE(r.beat_source.find("QRS detector"), std::string::npos);
  std::vector<int64_t> det;
  for (double t : r.beat_times_s) det.push_back(std::llround(t * 128));
  BeatMatch m = match_beats(truth.beat_samples, det, std::llround(0.15 * 128));
  EXPECT_GE(m.sensitivity(), 0.99) << m.to_string();
  EXPECT_GE(m.positive_predictivity(), 0.99) << m.to_string();
  EXPECT_EQ(r.r_amplitudes.size(), r.beat_times_s.size());
  // The .rec path itself loads the same record.
  Record again = load_record(dir.file("ucddb900.rec"));
  EXPECT_EQ(again.num_beats(), r.num_beats());
}

// ---------------------------------------------------------------------------------------------
// Raw signals (synthetic WFDB records)
// ---------------------------------------------------------------------------------------------

TEST(RawEcg, BeatsFromAnnotationsWithAmplitudesOrFromTheDetector) {
  test::TempDir dir;
  SynthConfig cfg;
  cfg.seed = 11;
  cfg.duration_s = 900;
  cfg.fs_hz = 100;
  cfg.write_edf = false;
  SynthRecord truth = write_synthetic_record(cfg, dir.path(), "s01");
  // .qrs + .dat: beats from the annotations, amplitudes from the ECG; minutes from .apn.
  Record r = load_record(dir.file("s01"));
  EXPECT_EQ(r.database, Database::ApneaEcg);  // an .apn next to it
  EXPECT_EQ(r.num_beats(), static_cast<int64_t>(truth.beat_samples.size()));
  ASSERT_EQ(r.r_amplitudes.size(), truth.beat_samples.size());
  int close = 0;
  for (size_t i = 0; i < truth.r_amplitude_mv.size(); ++i)
    close += std::abs(std::abs(r.r_amplitudes[i]) - truth.r_amplitude_mv[i]) < 0.35f * truth.r_amplitude_mv[i];
  EXPECT_GT(close, 0.9 * truth.r_amplitude_mv.size());
  EXPECT_EQ(r.windows.size(), 15u);
  EXPECT_EQ(r.label_source, "s01.apn");
  // detect_qrs: beats from the detector instead.
  LoadOptions detect;
  detect.detect_qrs = true;
  Record d = load_record(dir.file("s01"), detect);
  EXPECT_NE(d.beat_source.find("QRS detector on s01.dat (ECG)"), std::string::npos);
  std::vector<int64_t> det;
  for (double t : d.beat_times_s) det.push_back(std::llround(t * 100));
  BeatMatch m = match_beats(truth.beat_samples, det, 15);
  EXPECT_GE(m.sensitivity(), 0.99) << m.to_string();
  // No .qrs: the detector runs by itself. Epoch windows on request (.st present).
  fs::remove(dir.file("s01.qrs"));
  LoadOptions epochs;
  epochs.windows = LoadOptions::Windows::Epochs;
  Record e = load_record(dir.file("s01"), epochs);
  EXPECT_EQ(e.num_beats(), d.num_beats());
  EXPECT_EQ(e.windows.size(), 30u);
  EXPECT_EQ(e.label_source, "s01.st");
  // load_signals reads the respiration channels.
  LoadOptions signals;
  signals.load_signals = true;
  Record s = load_record(dir.file("s01"), signals);
  for (const SignalChannel& c : s.signals) {
    if (c.name == "ECG") continue;
    EXPECT_EQ(c.samples.size(), static_cast<size_t>(900 * 100)) << c.name;
  }
}

TEST(RawEcg, GenericWfdbRecordWithoutLabels) {
  test::TempDir dir;
  SynthConfig cfg;
  cfg.seed = 3;
  cfg.duration_s = 300;
  cfg.write_edf = false;
  cfg.write_st = false;
  write_synthetic_record(cfg, dir.path(), "night");
  fs::remove(dir.file("night.apn"));
  Record r = load_record(dir.file("night.hea"));
  EXPECT_EQ(r.database, Database::Wfdb);
  EXPECT_EQ(r.windows.size(), 5u);
  EXPECT_EQ(count_labels(r).apnea_unknown, 5);
  EXPECT_TRUE(r.label_source.empty());
  EXPECT_GT(r.num_beats(), 200);
}

// ---------------------------------------------------------------------------------------------
// Database loader
// ---------------------------------------------------------------------------------------------

TEST(DatabaseLoader, ApneaEcgShippedDirectory) {
  DatabaseLoad db = load_database(kApnea);
  EXPECT_EQ(db.database, Database::ApneaEcg);
  ASSERT_EQ(db.records.size(), 35u);
  EXPECT_EQ(db.records.front().id, "a01");
  EXPECT_EQ(db.records.back().id, "c10");
  // x01..x35 are listed in RECORDS but absent: one warning each; a01r... are skipped by default.
  ASSERT_EQ(db.warnings.size(), 35u);
  EXPECT_EQ(db.warnings.front(), "x01: skipped: files absent (x01.hea)");
  // With the respiration records: their .hea and .apn exist but without .dat they have no beats
  // (8 more warnings); the a01er ones have no files at all (8 more).
  DatabaseOptions with_resp;
  with_resp.respiration_records = true;
  DatabaseLoad all = load_database(kApnea, with_resp);
  EXPECT_EQ(all.records.size(), 35u);
  EXPECT_EQ(all.warnings.size(), 35u + 16u);
  int no_beats = 0;
  for (const auto& w : all.warnings) no_beats += w.find("a01r: skipped: no beats") == 0;
  EXPECT_EQ(no_beats, 1);
}

TEST(DatabaseLoader, MissingAndBrokenRecordsAreSkippedWithOneWarningEach) {
  test::TempDir dir;
  copy_files(kApnea, dir.path(), {"a01.hea", "a01.qrs", "a01.apn", "a02.hea", "a02.qrs", "a02.apn",
                                  "additional-information.txt"});
  // a02.apn cut: loads fail for a02 only; zz9 has no files.
  const std::string apn = test::read_bytes(kApnea + "/a02.apn");
  test::write_bytes(dir.file("a02.apn"), apn.substr(0, 100));
  test::write_bytes(dir.file("RECORDS"), "a01\nzz9\na02\n\n");
  DatabaseLoad db = load_database(dir.path());
  ASSERT_EQ(db.records.size(), 1u);
  EXPECT_EQ(db.records[0].id, "a01");
  ASSERT_EQ(db.warnings.size(), 2u);
  EXPECT_EQ(db.warnings[0], "zz9: skipped: files absent (zz9.hea)");
  EXPECT_NE(db.warnings[1].find("a02: skipped:"), std::string::npos);
  EXPECT_NE(db.warnings[1].find("a02.apn"), std::string::npos);
  // An explicit list overrides RECORDS.
  DatabaseOptions listed;
  listed.records = {"a01"};
  DatabaseLoad one = load_database(dir.path(), listed);
  EXPECT_EQ(one.records.size(), 1u);
  EXPECT_TRUE(one.warnings.empty());
  // No RECORDS and no list: an error naming the directory.
  fs::remove(dir.file("RECORDS"));
  EXPECT_ERROR_CONTAINS(load_database(dir.path()), {dir.path(), "RECORDS"});
  EXPECT_ERROR_CONTAINS(load_database(dir.file("nope")), {"nope", "not a directory"});
}

TEST(DatabaseLoader, RecordDetection) {
  EXPECT_EQ(detect_database(kApnea), Database::ApneaEcg);
  EXPECT_EQ(detect_database(kSlpdb), Database::Slpdb);
  EXPECT_EQ(detect_database(kUcddb), Database::Ucddb);
  EXPECT_EQ(load_record(kSlpdb + "/slp01a.hea").database, Database::Slpdb);
  EXPECT_EQ(load_record(kApnea + "/a03.qrs").id, "a03");
  EXPECT_ERROR_CONTAINS(load_record(kApnea + "/x01"), {"x01", "no such record", "x01.hea"});
}
