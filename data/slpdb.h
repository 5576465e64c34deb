// slpdb.h: adapter for the MIT-BIH Polysomnographic Database (Ichimaru & Moody 1999).
//
//   slp01a.hea   header: 4, 6 or 7 signals at 250 Hz (format 212), the first is the ECG; a
//                comment line "age sex weight date" ("# 44 M 89 32-01-89", "x" when unknown)
//   slp01a.ecg   beat annotations (beat codes become beats; others are counted)
//   slp01a.st    one NOTE annotation per scored 30-s epoch; it applies to the 30 s that follow it.
//                Its aux string holds the stage and the events of the epoch (README.st):
//                   stages   W 1 2 3 4 R, MT (movement time)
//                   events   H (hypopnea), HA (... with arousal), OA (obstructive apnea),
//                            X (obstructive apnea with arousal), CA (central apnea),
//                            CAA (... with arousal); L LA (leg movements), A (arousal)
//                The first annotation sits at sample 1 (epoch 0) or later (slp14, slp16, slp37,
//                slp59, slp61 start scoring minutes in); epoch k = round(sample / 7500).
//   slp01a.dat   the raw signals (full download only): ECG -> R amplitudes or QRS detector,
//                respiration / SpO2 / BP / EEG listed as signals
//
// Quirks handled: slp41 and slp45 write the stage followed by a NUL byte ("W\0") and slp45 writes
// "M\0" for movement time; leg-movement tokens appear as "LL" / "LLLL". Unknown tokens are kept
// in the window note and counted in Record::notes, never an error.
//
// Windows: one per 30-s epoch from 0 to the record end; epochs without an annotation (before
// scoring starts) are unlabelled (stage Unknown, apnea -1). apnea = 1 when the epoch has at
// least one respiratory event token (H HA OA X CA CAA), else 0. sleep = 1 for stages 1-4 and R,
// 0 for W, -1 for MT and unscored epochs.
//
// Reference AHI (there is no table): respiratory events per hour of sleep,
//     AHI = (events scored in sleep epochs) / (30 s * number of sleep epochs / 3600 s).
// The annotations give no event boundaries, only the tokens of each epoch. Counting:
//   PerToken (default)   every token is one event ("2 X X" = 2 events). An event that runs
//                        across an epoch boundary and is written in both epochs counts twice;
//                        the database does not let us tell it from two events.
//   MergeAdjacent        a token type also present in the previous scored epoch is taken as the
//                        same event continuing (counts once per run of epochs): a lower bound,
//                        which undercounts severe records (one apnea a minute writes X into
//                        nearly every epoch).
// Events in wake or MT epochs are not counted (scored during sleep only, as for a PSG AHI).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "data/record.h"

namespace sleepnet::data {

inline constexpr double kSlpdbEpochSeconds = 30.0;

// What one .st aux string says.
struct SlpdbEpochLabel {
  StageLabel stage = StageLabel::Unknown;
  std::vector<std::string> events;  // respiratory event tokens in order (H HA OA X CA CAA)
  std::vector<std::string> other;   // other tokens (L, LA, A, LL, unknown ones)
  bool has_stage_token = false;     // the first token was a stage
};
// Parses an aux string: NUL bytes and surrounding white space dropped, tokens split on spaces.
SlpdbEpochLabel parse_slpdb_aux(std::string_view aux);
// True for H HA OA X CA CAA.
bool slpdb_is_respiratory_event(std::string_view token);

enum class SlpdbEventCount { PerToken, MergeAdjacent };

struct SlpdbAhi {
  double ahi = 0.0;
  int64_t events = 0;        // counted events in sleep epochs
  int64_t sleep_epochs = 0;
  double sleep_hours = 0.0;
};
// Computes the AHI from the windows of a loaded slpdb record (see the top of this file).
// Windows must carry the per-epoch tokens in `note` (as load_slpdb_record leaves them).
SlpdbAhi slpdb_ahi(const Record& record, SlpdbEventCount counting = SlpdbEventCount::PerToken);

// 30-s windows from the annotations of a .st file (`source` names it in errors), covering
// [0, duration_s): epoch round(sample / (30 fs)) gets the annotation's aux; epochs without one
// are unlabelled. Non-NOTE annotations are ignored. Two annotations for one epoch, or one beyond
// the record end, are an Error. Unknown tokens are counted into `notes` (one line per token).
std::vector<Window> slpdb_windows_from_annotations(const std::vector<WfdbAnnotation>& annotations,
                                                   double fs_hz, double duration_s,
                                                   const std::string& source,
                                                   std::vector<std::string>* notes = nullptr);

// Loads `record_path` ("dir/slp01a"). Errors name the file: missing header, malformed .st (two
// annotations for one epoch, an epoch beyond the record end, no end marker).
Record load_slpdb_record(const std::string& record_path, const LoadOptions& options = {});

}  // namespace sleepnet::data
