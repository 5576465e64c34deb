// ucddb.h: adapter for the St. Vincent's University Hospital / University College Dublin Sleep
// Apnea Database (UCDDB).
//
// A record `dir/ucddb002` is made of (ucddb_text.h and edf.h read the files):
//
//   ucddb002_stage.txt     one stage code per 30-s epoch from the PSG start (0 W, 1 REM, 2-5
//                          S1-S4, 6 artefact, 7 indeterminate, 8 undocumented)  -> windows
//   ucddb002_respevt.txt   respiratory events with clock times (full download)    -> apnea labels
//   ucddb002.rec           the EDF polysomnogram (full download): ECG -> QRS detector, R
//                          amplitudes; SpO2, Flow, ribcage, abdo ... as signals
//   SubjectDetails.csv     one row per study: PSG start clock time (needed to place the events),
//                          PSG AHI (the reference AHI), age, sex, EDF length
//
// Windows: one per stage line. apnea = 1 when an apnea or hypopnea (APNEA-O/C/M, HYP-O/C/M)
// overlaps the epoch by any amount, 0 otherwise, -1 for every epoch when there is no
// _respevt.txt; Window::events counts the events that start in the epoch. Duration: the EDF's
// when present, else the longer of the stages (30 s each) and the table's EDF length.
// The reference AHI is the table's PSG AHI (scored by the hospital on the full PSG).
#pragma once

#include <string>
#include <vector>

#include "data/record.h"
#include "data/ucddb_text.h"

namespace sleepnet::data {

// Loads `record_path`: "dir/ucddb002" or "dir/ucddb002.rec". `subjects` (may be null) is the
// parsed SubjectDetails.csv; without it there is no reference AHI and a _respevt.txt cannot be
// placed in time (an Error naming the file). Errors name the file and what is wrong; a record with
// neither a stage file nor an EDF is an Error.
Record load_ucddb_record(const std::string& record_path, const std::vector<UcddbSubject>* subjects,
                         const LoadOptions& options = {});

}  // namespace sleepnet::data
