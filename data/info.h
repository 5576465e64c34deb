// info.h: the text `sleepnet info RECORD...` prints: what was read from a record.
//
//     a01 (apnea-ecg)  data/physionet/apnea-ecg/a01
//       duration    29570 s (8:12:50)
//       signals     1: ECG (mV, 100 Hz, a01.dat absent)
//       beats       29938 from a01.qrs (beat annotations only; 0 other annotations)
//       windows     489 x 60 s from a01.apn
//         apnea     470 apnea, 19 normal
//       reference   AHI 69.6 (additional-information.txt), class A
//       table       490 minutes, 470 apnea, 20 non-apnea (additional-information.txt)
//       subject     age 51, sex M, 175 cm, 102 kg
//       note        signal file a01.dat absent: signals listed, not read
//
// Sleep-staged records add a `stages` line (counts per stage, in W S1 S2 S3 S4 REM MT artefact
// indeterminate code8 unscored order, zero counts left out) and a `sleep` line (sleep / wake /
// unknown epochs). Numbers come straight from the Record (record.h), so the text agrees with the
// databases' own tables wherever the Record does (tests/info_test.cpp checks a01 and others).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "data/record.h"

namespace sleepnet::data {

// The description of an already loaded record.
std::string describe(const Record& record);
// Loads `path` with load_record (record.h) and describes it; errors are sleepnet::Error naming the
// path and what is wrong (no such record, malformed file).
std::string describe_record(const std::string& path, const LoadOptions& options = {});

// `sleepnet info`: prints describe_record of each path to `out` (a blank line between records);
// a record that cannot be read prints "sleepnet info: <message>" to `err` and the others are
// still printed. Returns 0 when every record was read, 1 otherwise.
int print_info(const std::vector<std::string>& paths, std::FILE* out, std::FILE* err,
               const LoadOptions& options = {});

}  // namespace sleepnet::data
