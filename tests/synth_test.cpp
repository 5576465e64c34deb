// synth_test.cpp: the synthetic recording generator: determinism, ground-truth consistency, the
// physiology it promises (stage-dependent heart rate, cyclic variation, apnea breathing patterns,
// desaturations, ECG-derived respiration), the SNR definition, and files that read back exactly
// through the WFDB and EDF readers.
#include "data/synth.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/edf.h"
#include "data/wfdb_annotation.h"
#include "data/wfdb_header.h"
#include "data/wfdb_signal.h"
#include "tensor/tensor.h"

using namespace sleepnet::data;
using sleepnet::Error;

namespace {

SynthConfig small_config(uint64_t seed = 7) {
  SynthConfig c;
  c.seed = seed;
  c.duration_s = 1800;
  c.fs_hz = 100;
  c.ahi = 30;
  return c;
}

double mean_of(const std::vector<double>& v) {
  return v.empty() ? NAN : std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}

// Mean absolute value of a signal over [a, b) seconds.
double mean_abs(const std::vector<float>& x, double fs, double a, double b) {
  int64_t i0 = std::max<int64_t>(0, std::lround(a * fs)), i1 = std::min<int64_t>(x.size(), std::lround(b * fs));
  double s = 0;
  for (int64_t i = i0; i < i1; ++i) s += std::abs(x[i]);
  return i1 > i0 ? s / double(i1 - i0) : NAN;
}

// Heart rate (bpm) from the true beats between a and b seconds.
double heart_rate(const SynthRecord& r, double a, double b) {
  std::vector<double> rr;
  for (size_t i = 1; i < r.beat_samples.size(); ++i) {
    double t = r.beat_samples[i] / r.fs();
    if (t >= a && t < b) rr.push_back((r.beat_samples[i] - r.beat_samples[i - 1]) / r.fs());
  }
  return 60.0 / mean_of(rr);
}

std::string temp_dir(const std::string& leaf) {
  auto p = std::filesystem::temp_directory_path() / ("sleepnet_synth_test_" + leaf);
  std::filesystem::remove_all(p);
  return p.string();
}

}  // namespace

TEST(Synth, SameSeedSameRecordOtherSeedOtherRecord) {
  SynthConfig c = small_config();
  c.duration_s = 600;
  SynthRecord a = generate_synthetic_record(c), b = generate_synthetic_record(c);
  ASSERT_EQ(a.signals.size(), 5u);
  for (size_t s = 0; s < a.signals.size(); ++s) EXPECT_EQ(a.signals[s].values, b.signals[s].values) << s;
  EXPECT_EQ(a.beat_samples, b.beat_samples);
  EXPECT_EQ(a.apnea_minutes, b.apnea_minutes);
  ASSERT_EQ(a.events.size(), b.events.size());
  for (size_t i = 0; i < a.events.size(); ++i) EXPECT_EQ(a.events[i].onset_s, b.events[i].onset_s);
  c.seed = 8;
  SynthRecord d = generate_synthetic_record(c);
  EXPECT_NE(a.beat_samples, d.beat_samples);
  EXPECT_NE(a.signals[0].values, d.signals[0].values);
}

TEST(Synth, PhysiologyDoesNotDependOnSamplingRateOrNoise) {
  SynthConfig c = small_config(3);
  c.duration_s = 900;
  SynthRecord a = generate_synthetic_record(c);
  c.fs_hz = 256;
  c.snr_db = 10;
  c.wfdb_format = 212;
  SynthRecord b = generate_synthetic_record(c);
  ASSERT_EQ(a.beat_samples.size(), b.beat_samples.size());
  for (size_t i = 0; i < a.beat_samples.size(); ++i)
    EXPECT_NEAR(a.beat_samples[i] / 100.0, b.beat_samples[i] / 256.0, 0.5 / 100 + 0.5 / 256 + 1e-9) << i;
  EXPECT_EQ(a.stages, b.stages);
  EXPECT_EQ(a.apnea_minutes, b.apnea_minutes);
  EXPECT_EQ(a.events.size(), b.events.size());
}

TEST(Synth, GroundTruthIsConsistent) {
  SynthConfig c = small_config(11);
  c.duration_s = 2 * 3600 + 45;  // partial last epoch and minute
  c.ectopic_rate = 0.01;
  SynthRecord r = generate_synthetic_record(c);
  EXPECT_EQ(r.num_samples, std::lround(c.duration_s * c.fs_hz));
  for (const SynthSignal& s : r.signals) EXPECT_EQ(int64_t(s.values.size()), r.num_samples) << s.name;
  EXPECT_EQ(r.stages.size(), size_t(std::ceil(c.duration_s / 30)));
  EXPECT_EQ(r.apnea_minutes.size(), size_t(c.duration_s / 60));
  ASSERT_EQ(r.beat_types.size(), r.beat_samples.size());
  ASSERT_EQ(r.r_amplitude_mv.size(), r.beat_samples.size());
  for (size_t i = 1; i < r.beat_samples.size(); ++i) ASSERT_GT(r.beat_samples[i], r.beat_samples[i - 1]);
  EXPECT_GE(r.beat_samples.front(), 0);
  EXPECT_LT(r.beat_samples.back(), r.num_samples);
  int64_t pvc = std::count(r.beat_types.begin(), r.beat_types.end(), 'V');
  EXPECT_GT(pvc, 0.004 * r.beat_samples.size());
  EXPECT_LT(pvc, 0.02 * r.beat_samples.size());
  // Events: during sleep, sorted, separated, counted into the AHI.
  for (size_t i = 0; i < r.events.size(); ++i) {
    const RespEvent& e = r.events[i];
    EXPECT_GE(e.duration_s, 10.0);
    EXPECT_LE(e.duration_s, 60.0);
    for (double t = e.onset_s; t <= e.onset_s + e.duration_s; t += 1.0) {
      ASSERT_TRUE(is_sleep(r.stages[size_t(t / 30)])) << "event " << i << " at " << t << " s in wake";
    }
    if (i > 0) {
      EXPECT_GE(e.onset_s, r.events[i - 1].onset_s + r.events[i - 1].duration_s + 10);
    }
  }
  EXPECT_NEAR(r.true_ahi, double(r.events.size()) / r.sleep_hours, 1e-9);
  EXPECT_NEAR(r.true_ahi, c.ahi, 0.1 * c.ahi);
  EXPECT_GT(r.sleep_hours, 1.0);
  EXPECT_LT(r.sleep_hours, c.duration_s / 3600.0);
  // Every apnea minute overlaps an event by >= 5 s, every other minute by less.
  for (size_t m = 0; m < r.apnea_minutes.size(); ++m) {
    double cover = 0;
    for (const RespEvent& e : r.events)
      cover += std::max(0.0, std::min(60.0 * (m + 1), e.onset_s + e.duration_s) - std::max(60.0 * m, e.onset_s));
    EXPECT_EQ(r.apnea_minutes[m], cover >= 5.0 ? 1 : 0) << m;
  }
  // A variety of event types and stages.
  auto count_type = [&](RespEventType t) {
    return std::count_if(r.events.begin(), r.events.end(), [&](const RespEvent& e) { return e.type == t; });
  };
  EXPECT_GT(count_type(RespEventType::ObstructiveApnea), 0);
  EXPECT_GT(count_type(RespEventType::Hypopnea), 0);
  for (SleepStage s : {SleepStage::Wake, SleepStage::N1, SleepStage::N2, SleepStage::N3, SleepStage::REM})
    EXPECT_NE(std::find(r.stages.begin(), r.stages.end(), s), r.stages.end()) << sleep_stage_code(s);
}

TEST(Synth, HealthyControlHasNoEvents) {
  SynthConfig c = small_config(5);
  c.ahi = 0;
  SynthRecord r = generate_synthetic_record(c);
  EXPECT_TRUE(r.events.empty());
  EXPECT_EQ(std::count(r.apnea_minutes.begin(), r.apnea_minutes.end(), 1), 0);
  EXPECT_EQ(r.true_ahi, 0.0);
}

TEST(Synth, HeartRateFollowsStagesAndApneas) {
  SynthConfig c = small_config(21);
  c.duration_s = 4 * 3600;
  c.ahi = 40;
  c.mean_hr_bpm = 60;
  SynthRecord r = generate_synthetic_record(c);
  // Wake faster than deep sleep.
  std::vector<double> wake, deep;
  for (size_t e = 0; e < r.stages.size(); ++e) {
    double hr = heart_rate(r, 30.0 * e, 30.0 * (e + 1));
    if (!std::isfinite(hr)) continue;
    if (r.stages[e] == SleepStage::Wake) wake.push_back(hr);
    if (r.stages[e] == SleepStage::N3) deep.push_back(hr);
  }
  ASSERT_FALSE(wake.empty());
  ASSERT_FALSE(deep.empty());
  EXPECT_GT(mean_of(wake), mean_of(deep) + 5);
  // Cyclic variation: slower at the end of apneas than in the 10 s after them.
  std::vector<double> late, after;
  for (const RespEvent& e : r.events) {
    if (e.type == RespEventType::Hypopnea) continue;
    double end = e.onset_s + e.duration_s;
    late.push_back(heart_rate(r, end - 8, end));
    after.push_back(heart_rate(r, end + 2, end + 12));
  }
  ASSERT_GT(late.size(), 10u);
  EXPECT_GT(mean_of(after), mean_of(late) + 8);
}

TEST(Synth, BreathingSpo2AndEdrDuringEvents) {
  SynthConfig c = small_config(4);
  c.duration_s = 3 * 3600;
  c.ahi = 40;
  c.central_fraction = 0.4;
  SynthRecord r = generate_synthetic_record(c);
  const auto& flow = r.signals[1].values;
  const auto& chest = r.signals[2].values;
  const auto& spo2 = r.signals[4].values;
  ASSERT_EQ(r.signals[1].name, "Resp N");
  ASSERT_EQ(r.signals[4].name, "SpO2");
  const double fs = r.fs();
  // Reference breathing: 30-s stretches of sleep at least 60 s away from any event.
  auto quiet = [&](double a) {
    if (!is_sleep(r.stages[size_t(a / 30)])) return false;
    for (const RespEvent& e : r.events)
      if (a < e.onset_s + e.duration_s + 60 && e.onset_s < a + 30 + 60) return false;
    return true;
  };
  std::vector<double> ref_flow, ref_chest, ref_spo2;
  for (double a = 0; a + 30 < c.duration_s; a += 30) {
    if (!quiet(a)) continue;
    ref_flow.push_back(mean_abs(flow, fs, a, a + 30));
    ref_chest.push_back(mean_abs(chest, fs, a, a + 30));
    ref_spo2.push_back(spo2[std::lround((a + 15) * fs)]);
  }
  ASSERT_GT(ref_flow.size(), 20u);
  const double before_flow = mean_of(ref_flow), before_chest = mean_of(ref_chest), base = mean_of(ref_spo2);
  int checked[3] = {0, 0, 0};
  for (const RespEvent& e : r.events) {
    double a = e.onset_s + 4, b = e.onset_s + e.duration_s - 2;
    if (b - a < 5) continue;
    double in_flow = mean_abs(flow, fs, a, b), in_chest = mean_abs(chest, fs, a, b);
    switch (e.type) {
      case RespEventType::ObstructiveApnea:  // no airflow, effort continues
        EXPECT_LT(in_flow, 0.25 * before_flow) << e.onset_s;
        EXPECT_GT(in_chest, 0.6 * before_chest) << e.onset_s;
        break;
      case RespEventType::CentralApnea:  // neither
        EXPECT_LT(in_flow, 0.25 * before_flow) << e.onset_s;
        EXPECT_LT(in_chest, 0.25 * before_chest) << e.onset_s;
        break;
      case RespEventType::Hypopnea:  // reduced
        EXPECT_LT(in_flow, 0.8 * before_flow) << e.onset_s;
        EXPECT_GT(in_flow, 0.15 * before_flow) << e.onset_s;
        break;
    }
    ++checked[int(e.type)];
    // Desaturation after the event, at least 2 points below the quiet-sleep level.
    float nadir = 100;
    for (double t = e.onset_s + e.duration_s; t < e.onset_s + e.duration_s + 35 && t * fs < spo2.size(); t += 0.5)
      nadir = std::min(nadir, spo2[std::lround(t * fs)]);
    EXPECT_LE(nadir, base - 2) << "event at " << e.onset_s;
  }
  EXPECT_GT(checked[0], 5);
  EXPECT_GT(checked[1], 2);
  EXPECT_GT(checked[2], 5);
  for (float v : spo2) ASSERT_EQ(v, std::round(v));  // integer percent
  // EDR: the true R amplitude follows the chest signal at the beat.
  std::vector<double> amp, ch;
  for (size_t i = 0; i < r.beat_samples.size(); ++i) {
    if (r.beat_types[i] != 'N') continue;
    amp.push_back(r.r_amplitude_mv[i]);
    ch.push_back(chest[r.beat_samples[i]]);
  }
  double ma = mean_of(amp), mc = mean_of(ch), sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < amp.size(); ++i) {
    sab += (amp[i] - ma) * (ch[i] - mc);
    saa += (amp[i] - ma) * (amp[i] - ma);
    sbb += (ch[i] - mc) * (ch[i] - mc);
  }
  EXPECT_GT(sab / std::sqrt(saa * sbb), 0.5);
}

TEST(Synth, WhiteNoiseFollowsTheSnrDefinition) {
  // Only white noise: the ECG minus its noise-free version (same seed, SNR 80 dB) is the noise.
  SynthConfig c = small_config(9);
  c.duration_s = 300;
  c.fs_hz = 250;
  c.baseline_wander_mv = 0;
  c.motion_artifacts_per_hour = 0;
  c.powerline_mv = 0;
  c.snr_db = 80;
  SynthRecord clean = generate_synthetic_record(c);
  // Nominal QRS peak-to-peak: median over beats of max - min within +-60 ms of R.
  std::vector<double> p2p;
  const auto& x = clean.signals[0].values;
  for (int64_t s : clean.beat_samples) {
    if (s < 15 || s + 15 >= int64_t(x.size())) continue;
    auto [lo, hi] = std::minmax_element(x.begin() + s - 15, x.begin() + s + 16);
    p2p.push_back(*hi - *lo);
  }
  std::nth_element(p2p.begin(), p2p.begin() + p2p.size() / 2, p2p.end());
  double a = p2p[p2p.size() / 2];
  for (double snr : {20.0, 10.0}) {
    c.snr_db = snr;
    SynthRecord noisy = generate_synthetic_record(c);
    double var = 0;
    for (size_t i = 0; i < x.size(); ++i) var += std::pow(double(noisy.signals[0].values[i]) - x[i], 2);
    var /= double(x.size());
    double measured = 10 * std::log10(a * a / 8 / var);
    EXPECT_NEAR(measured, snr, 1.0) << "p2p " << a;
  }
}

TEST(Synth, ConfigValidationNamesTheField) {
  auto expect_field = [](SynthConfig c, const char* field) {
    try {
      generate_synthetic_record(c);
      FAIL() << field << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  SynthConfig c;
  c.duration_s = 10;
  expect_field(c, "duration_s");
  c = {};
  c.fs_hz = 20;
  expect_field(c, "fs_hz");
  c = {};
  c.wfdb_format = 80;
  expect_field(c, "wfdb_format");
  c = {};
  c.ahi = -1;
  expect_field(c, "ahi");
  c = {};
  c.snr_db = NAN;
  expect_field(c, "snr_db");
  c = {};
  c.hypopnea_fraction = 1.5;
  expect_field(c, "hypopnea_fraction");
  EXPECT_NE(SynthConfig{}.to_string().find("seed=1 "), std::string::npos);
  EXPECT_THROW(write_synthetic_record(SynthConfig{}, temp_dir("badname"), "../evil"), Error);
  EXPECT_THROW(write_synthetic_record(SynthConfig{}, temp_dir("badname"), ""), Error);
}

// Writes a record, reads every file back with the readers, compares with the generated truth.
void check_round_trip(const SynthConfig& c, const std::string& leaf) {
  const std::string dir = temp_dir(leaf);
  SynthRecord r = write_synthetic_record(c, dir, "syn01");
  const std::string base = dir + "/syn01";

  // Header
  WfdbHeader h = read_wfdb_header(base);
  EXPECT_EQ(h.record_name, "syn01");
  EXPECT_EQ(h.num_signals, int(r.signals.size()));
  EXPECT_DOUBLE_EQ(h.sampling_frequency, c.fs_hz);
  ASSERT_TRUE(h.num_samples.has_value());
  EXPECT_EQ(*h.num_samples, r.num_samples);
  // Signals: ADC values identical to the generated values through the format's conversion, and
  // physical values within half a quantisation step.
  WfdbSignalReader reader = WfdbSignalReader::open(base);
  reader.verify_checksums();
  for (size_t s = 0; s < r.signals.size(); ++s) {
    const SynthSignal& sig = r.signals[s];
    EXPECT_EQ(h.signals[s].format, c.wfdb_format);
    EXPECT_EQ(h.signals[s].description, sig.name);
    EXPECT_EQ(h.signals[s].units, sig.units);
    std::vector<int32_t> adc = reader.read_adc(int(s), 0, r.num_samples);
    EXPECT_EQ(adc, wfdb_physical_to_adc(sig.values, sig.gain, 0, c.wfdb_format)) << sig.name;
    std::vector<float> phys = reader.read_physical(int(s));
    ASSERT_EQ(phys.size(), sig.values.size());
    for (size_t i = 0; i < phys.size(); ++i)
      ASSERT_NEAR(phys[i], sig.values[i], 0.5 / sig.gain + 1e-6) << sig.name << " sample " << i;
  }
  // Beat annotations
  auto qrs = read_wfdb_annotations(base + ".qrs");
  ASSERT_EQ(qrs.size(), r.beat_samples.size());
  for (size_t i = 0; i < qrs.size(); ++i) {
    EXPECT_EQ(qrs[i].sample, r.beat_samples[i]);
    EXPECT_EQ(qrs[i].code, r.beat_types[i] == 'V' ? ann::PVC : ann::NORMAL);
    EXPECT_TRUE(is_beat_annotation(qrs[i].code));
  }
  // Apnea minutes
  auto apn = read_wfdb_annotations(base + ".apn");
  ASSERT_EQ(apn.size(), r.apnea_minutes.size());
  for (size_t m = 0; m < apn.size(); ++m) {
    EXPECT_EQ(apn[m].sample, std::lround(60.0 * m * c.fs_hz));
    EXPECT_EQ(annotation_mnemonic(apn[m].code), r.apnea_minutes[m] ? "A" : "N");
  }
  // Stages and events (slpdb style)
  if (c.write_st) {
    auto st = read_wfdb_annotations(base + ".st");
    ASSERT_EQ(st.size(), r.stages.size());
    size_t tokens = 0;
    for (size_t e = 0; e < st.size(); ++e) {
      EXPECT_EQ(st[e].code, ann::NOTE);
      EXPECT_EQ(st[e].sample, 1 + std::lround(30.0 * e * c.fs_hz));
      EXPECT_EQ(st[e].aux.substr(0, st[e].aux.find(' ')), sleep_stage_code(r.stages[e]));
      tokens += std::count(st[e].aux.begin(), st[e].aux.end(), ' ');
    }
    EXPECT_EQ(tokens, r.events.size());
  }
  // EDF: digital values identical to the generated ones through the EDF scaling.
  if (c.write_edf) {
    EdfReader edf = EdfReader::open(base + ".edf");
    const EdfHeader& eh = edf.header();
    ASSERT_EQ(eh.num_signals(), int(r.signals.size()));
    const int64_t spr = std::lround(c.fs_hz);
    EXPECT_EQ(eh.num_records, r.num_samples / spr);
    for (size_t s = 0; s < r.signals.size(); ++s) {
      EXPECT_EQ(eh.signals[s].label, r.signals[s].name);
      EXPECT_DOUBLE_EQ(eh.sampling_rate(int(s)), c.fs_hz);
      std::vector<float> head(r.signals[s].values.begin(), r.signals[s].values.begin() + eh.num_records * spr);
      EXPECT_EQ(edf.read_digital(int(s)), edf_physical_to_digital(eh.signals[s], head)) << r.signals[s].name;
    }
  }
  // Event list
  std::ifstream csv(base + "_events.csv");
  std::string line;
  size_t lines = 0;
  while (std::getline(csv, line)) ++lines;
  EXPECT_EQ(lines, r.events.size() + 1);
  std::filesystem::remove_all(dir);
}

TEST(SynthFiles, Format16ReadsBackExactly) {
  SynthConfig c = small_config(31);
  c.duration_s = 600;
  check_round_trip(c, "f16");
}

TEST(SynthFiles, Format212ReadsBackExactly) {
  SynthConfig c = small_config(32);
  c.duration_s = 600;
  c.fs_hz = 250;
  c.wfdb_format = 212;
  check_round_trip(c, "f212");
}

TEST(SynthFiles, OddSampleCountEcgOnly) {
  SynthConfig c = small_config(33);
  c.duration_s = 61.01;  // 6101 samples: 212 ends with a half pair
  c.wfdb_format = 212;
  c.respiration = false;
  c.write_st = false;
  SynthRecord r = generate_synthetic_record(c);
  ASSERT_EQ(r.num_samples % 2, 1);
  ASSERT_EQ(r.signals.size(), 1u);
  check_round_trip(c, "odd");
}

TEST(SynthFiles, NonIntegerRateNeedsEdfOff) {
  SynthConfig c = small_config(34);
  c.duration_s = 120;
  c.fs_hz = 128.5;
  EXPECT_THROW(write_synthetic_record(c, temp_dir("nonint"), "x"), Error);
  c.write_edf = false;
  check_round_trip(c, "nonint");
}
