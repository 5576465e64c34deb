// synth.h: seeded synthetic sleep recordings with ground truth, written as real WFDB records and EDF.
//
// Why: the shipped PhysioNet data has annotations but no signals, so the raw-signal paths (signal
// readers, QRS detector, R amplitudes, EDR, the `predict` command on a raw ECG) need recordings
// whose truth is known. Everything below is a model, chosen to be plausible and to exercise the
// code, not a physiological simulator. One seed gives the same record on every run and machine
// (own xoshiro256** generator and Box-Muller normals; no std:: distributions).
//
// The model, in the order it is generated (all on a 10 Hz physiological grid, so the same seed
// gives the same beats and events at every sampling rate):
//
//  1. Hypnogram (30-s epochs): sleep-onset latency 5-20 min of wake (at most 5 % of the record),
//     then ~90-min cycles N1 -> N2 -> N3 -> N2 -> REM with deep sleep shrinking and REM growing
//     across the night, wake between cycles and brief awakenings, wake again at the end (a night
//     comes out at roughly W 10 %, N1 5-10 %, N2 50 %, N3 10 %, REM 20-25 %).
//  2. Respiratory events during sleep only, at `ahi` events per hour of sleep, in clusters
//     ("periodic" apnea episodes of 2-10 events, 15-40 s recovery between them), more in REM and
//     light sleep, fewer in N3. Types: hypopnea (share `hypopnea_fraction`), central apnea (share
//     `central_fraction` of the apneas), otherwise obstructive. Durations 10-60 s (mostly 15-40).
//     Each event ends with an arousal with probability 0.7.
//  3. Breathing: respiratory phase at a stage-dependent rate (wake 15/min, N2 14, N3 13 and very
//     regular, REM 16 and irregular); tidal amplitude and its changes:
//       obstructive apnea: airflow -> ~5 %, efforts continue and grow, chest and abdomen drift
//                          into opposite phase (paradoxical breathing);
//       central apnea:     airflow and efforts -> ~3 %;
//       hypopnea:          airflow and efforts -> 35-55 %;
//       after each event:  3-5 large recovery breaths (x1.5-2).
//  4. SpO2: baseline 95-97 %, each event a desaturation of 3-12 % (deeper for longer apneas) whose
//     nadir comes ~20 s after the event ends (circulation delay), recovery over ~10 s; stored at
//     integer-percent resolution like an oximeter.
//  5. Heart rate (bpm) = subject baseline + stage offset (wake +8, N1 +3, N2 0, N3 -3, REM +4)
//     + slow drift + LF (0.1 Hz Mayer waves, largest in wake/REM) + RSA (locked to the breathing
//     phase, largest in N3, absent while breathing stops) + the cyclic variation of apnea:
//     bradycardia deepening through each apnea (-4..-10 bpm) and a tachycardia surge after it
//     (+10..+25 bpm peaking ~5 s after the event end, decaying over ~10 s) + arousal bumps.
//     Beats are the crossings of the integrated rate (integral pulse frequency modulation).
//     A fraction `ectopic_rate` of beats are premature ventricular beats (at 60-75 % of the sinus
//     interval, followed by a compensatory pause).
//  6. ECG: each beat a sum of Gaussian waves (P, Q, R, S, T; ECGSYN-like in the time domain, the
//     T wave at a Bazett-scaled sqrt(RR) distance), subject-specific amplitudes (75 % of subjects
//     with a dominant R, 25 % with an rS complex as in lead V2), QRS amplitude modulated by the
//     chest effort (ECG-derived respiration, +-10-20 %), 2 % beat-to-beat jitter; PVCs wide, no P,
//     discordant T. Noise: baseline wander (breathing-locked + slow random, `baseline_wander_mv`),
//     white "EMG" noise at `snr_db`, motion artifacts (`motion_artifacts_per_hour`, 0.5-3 s bursts
//     of 1-8 Hz noise, mostly in wake and at arousals) and mains hum (`powerline_hz`, skipped when
//     not below 0.45 fs).
//     SNR definition (as in the MIT-BIH Noise Stress Test): S = (QRS peak-to-peak)^2 / 8,
//     N = variance of the white noise, snr_db = 10 log10(S / N).
//
// Ground truth: beat times (sample indices) and types, true R amplitudes (the modulated R-wave
// height in mV), 30-s stages, the event list, per-minute apnea labels (a minute is apneic when
// apnea/hypopnea events cover at least `apnea_minute_min_overlap_s` of it) and the AHI.
//
// Files written by write_synthetic_record(cfg, dir, name):
//   name.hea, name.dat  WFDB record, format 16 or 212 (cfg.wfdb_format), signals
//                       "ECG" (mV) and, when cfg.respiration, "Resp N" (airflow), "Resp C" (chest),
//                       "Resp A" (abdomen) (mV) and "SpO2" (%), as the Apnea-ECG "r" records;
//                       header comments hold the seed, the config string and the true AHI
//   name.qrs            beat annotations (N / V at the true R samples), as Apnea-ECG's .qrs
//   name.apn            one annotation per minute at sample 60*m*fs: N (normal) or A (apnea)
//   name.st             (cfg.write_st) slpdb style: a '"' (NOTE) annotation per 30-s epoch at
//                       sample 1 + 30*e*fs, aux = stage ("W","1","2","3","R") + event tokens of
//                       events starting in the epoch ("OA"/"X", "CA"/"CAA", "H"/"HA")
//   name.edf            (cfg.write_edf) the same signals as EDF (1-s data records; needs integer fs)
//   name_events.csv     the event list: type,onset_s,duration_s,desaturation_pct,arousal
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sleepnet::data {

enum class SleepStage : uint8_t { Wake = 0, N1 = 1, N2 = 2, N3 = 3, REM = 4 };
// "W", "1", "2", "3", "R" (slpdb spelling; N3 is written as "3").
const char* sleep_stage_code(SleepStage s);
inline bool is_sleep(SleepStage s) { return s != SleepStage::Wake; }

enum class RespEventType : uint8_t { ObstructiveApnea, CentralApnea, Hypopnea };
// slpdb tokens: OA / X, CA / CAA, H / HA (the second with arousal).
const char* resp_event_token(RespEventType t, bool arousal);

struct RespEvent {
  RespEventType type = RespEventType::ObstructiveApnea;
  double onset_s = 0.0;
  double duration_s = 0.0;
  double desaturation_pct = 0.0;  // depth of the SpO2 drop it causes
  bool arousal = false;
};

struct SynthConfig {
  uint64_t seed = 1;
  double duration_s = 3600.0;       // record length
  double fs_hz = 100.0;             // sampling rate of every signal (Apnea-ECG: 100, slpdb: 250)
  int wfdb_format = 16;             // 16 or 212
  // Breathing disorder
  double ahi = 15.0;                // events per hour of sleep (0: a healthy control)
  double hypopnea_fraction = 0.35;  // of all events
  double central_fraction = 0.1;    // of the apneas
  double apnea_minute_min_overlap_s = 5.0;
  // Heart
  double mean_hr_bpm = 0.0;         // subject baseline; 0 = drawn from the seed (52-78 bpm)
  double ectopic_rate = 0.002;      // fraction of beats that are PVCs
  // ECG noise
  double snr_db = 20.0;             // white noise, see the top of this file
  double baseline_wander_mv = 0.1;
  double motion_artifacts_per_hour = 4.0;
  double powerline_hz = 50.0;       // 0: none
  double powerline_mv = 0.01;
  // Output
  bool respiration = true;          // Resp N/C/A and SpO2 channels
  bool write_st = true;
  bool write_edf = true;

  // Throws sleepnet::Error naming the field when a value is out of range.
  void validate() const;
  // Every field, fixed order ("synth v1 seed=1 duration_s=3600 ...").
  std::string to_string() const;
};

struct SynthSignal {
  std::string name;   // WFDB description / EDF label: "ECG", "Resp N", "Resp C", "Resp A", "SpO2"
  std::string units;  // "mV" or "%"
  double gain = 200;  // WFDB ADC units per unit for the configured format
  std::vector<float> values;  // physical units, one per sample
};

struct SynthRecord {
  SynthConfig config;
  int64_t num_samples = 0;
  std::vector<SynthSignal> signals;        // signals[0] is the ECG
  // Ground truth
  std::vector<int64_t> beat_samples;       // R peaks, increasing
  std::vector<char> beat_types;            // 'N' or 'V'
  std::vector<float> r_amplitude_mv;       // true R-wave height of each beat (mV, before noise)
  std::vector<SleepStage> stages;          // one per 30-s epoch (the last may be partial)
  std::vector<RespEvent> events;           // sorted by onset
  std::vector<uint8_t> apnea_minutes;      // one per whole minute: 1 = apnea
  double sleep_hours = 0.0;
  double true_ahi = 0.0;                   // events / sleep_hours

  double fs() const { return config.fs_hz; }
};

// Generates the record in memory (validates the config first).
SynthRecord generate_synthetic_record(const SynthConfig& config);

// Generates and writes the files listed at the top of this file into out_dir (created when
// missing) under `name` (a plain file name: letters, digits, '_' and '-'). Returns the record.
SynthRecord write_synthetic_record(const SynthConfig& config, const std::string& out_dir,
                                   const std::string& name);

}  // namespace sleepnet::data
