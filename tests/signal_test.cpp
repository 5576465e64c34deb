// signal_test.cpp: Butterworth design against the closed-form magnitude, zero phase of filtfilt,
// edge behaviour, running mean/median, beat-series building and cleaning, uniform resampling.
#include "data/signal.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <iostream>
#include <cstdint>
#include <limits>
#include <numbers>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "data/synth.h"
#include "tensor/tensor.h"

using namespace sleepnet::data;
using sleepnet::Error;

namespace {

constexpr double kPi = std::numbers::pi;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

// Closed-form squared magnitudes of the bilinear-transformed Butterworth filters.
double lp_mag2(int n, double f, double fc, double fs) {
  double r = std::tan(kPi * f / fs) / std::tan(kPi * fc / fs);
  return 1.0 / (1.0 + std::pow(r, 2 * n));
}
double hp_mag2(int n, double f, double fc, double fs) {
  double r = std::tan(kPi * fc / fs) / std::tan(kPi * f / fs);
  return 1.0 / (1.0 + std::pow(r, 2 * n));
}
double bp_mag2(int n, double f, double f1, double f2, double fs) {
  double w = 2 * fs * std::tan(kPi * f / fs);
  double w1 = 2 * fs * std::tan(kPi * f1 / fs), w2 = 2 * fs * std::tan(kPi * f2 / fs);
  double q = (w * w - w1 * w2) / (w * (w2 - w1));
  return 1.0 / (1.0 + std::pow(q, 2 * n));
}

std::vector<float> sine(int64_t n, double f, double fs, double amp = 1.0, double phase = 0.0) {
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = float(amp * std::sin(2 * kPi * f * i / fs + phase));
  return x;
}

double rms(const std::vector<float>& x, int64_t from, int64_t to) {
  double s = 0;
  for (int64_t i = from; i < to; ++i) s += double(x[i]) * x[i];
  return std::sqrt(s / double(to - from));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Design
// ---------------------------------------------------------------------------------------------

TEST(Butterworth, LowpassMatchesClosedForm) {
  for (int n : {1, 2, 3, 4, 7}) {
    SosFilter f = butter_lowpass(n, 10.0, 250.0);
    EXPECT_EQ(f.sections.size(), size_t((n + 1) / 2));
    for (double freq : {0.0, 1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 124.0}) {
      double got = std::norm(frequency_response(f, freq, 250.0));
      EXPECT_NEAR(got, lp_mag2(n, freq, 10.0, 250.0), 1e-9) << "order " << n << " f " << freq;
    }
    EXPECT_NEAR(std::abs(frequency_response(f, 10.0, 250.0)), std::sqrt(0.5), 1e-9);
  }
}

TEST(Butterworth, HighpassMatchesClosedForm) {
  for (int n : {1, 2, 5}) {
    SosFilter f = butter_highpass(n, 0.5, 100.0);
    for (double freq : {0.05, 0.2, 0.5, 1.0, 5.0, 30.0, 49.0}) {
      double got = std::norm(frequency_response(f, freq, 100.0));
      EXPECT_NEAR(got, hp_mag2(n, freq, 0.5, 100.0), 1e-9) << "order " << n << " f " << freq;
    }
    EXPECT_NEAR(std::abs(frequency_response(f, 0.0, 100.0)), 0.0, 1e-9);
  }
}

TEST(Butterworth, BandpassMatchesClosedForm) {
  for (int n : {1, 2, 3, 4}) {
    for (double fs : {100.0, 128.0, 250.0, 256.0}) {
      SosFilter f = butter_bandpass(n, 5.0, 15.0, fs);
      EXPECT_EQ(f.order, 2 * n);
      EXPECT_EQ(f.sections.size(), size_t(n));
      for (double freq : {0.1, 1.0, 3.0, 5.0, 8.66, 10.0, 15.0, 25.0, 40.0, fs / 2 - 1}) {
        double got = std::norm(frequency_response(f, freq, fs));
        EXPECT_NEAR(got, bp_mag2(n, freq, 5.0, 15.0, fs), 1e-9) << "n " << n << " fs " << fs << " f " << freq;
      }
      EXPECT_NEAR(std::abs(frequency_response(f, 5.0, fs)), std::sqrt(0.5), 1e-9);
      EXPECT_NEAR(std::abs(frequency_response(f, 15.0, fs)), std::sqrt(0.5), 1e-9);
    }
  }
  // A very low corner at a high rate stays accurate (the reason for second-order sections).
  SosFilter ecg = butter_bandpass(4, 0.5, 40.0, 256.0);
  EXPECT_NEAR(std::norm(frequency_response(ecg, 0.25, 256.0)), bp_mag2(4, 0.25, 0.5, 40.0, 256.0), 1e-9);
}

TEST(Butterworth, BadDesignThrows) {
  EXPECT_THROW(butter_lowpass(0, 10, 100), Error);
  EXPECT_THROW(butter_lowpass(13, 10, 100), Error);
  EXPECT_THROW(butter_lowpass(2, 50, 100), Error);   // at Nyquist
  EXPECT_THROW(butter_lowpass(2, 0, 100), Error);
  EXPECT_THROW(butter_lowpass(2, 10, -1), Error);
  EXPECT_THROW(butter_highpass(2, std::nan(""), 100), Error);
  EXPECT_THROW(butter_bandpass(2, 15, 5, 100), Error);  // corners swapped
  EXPECT_THROW(butter_bandpass(2, 5, 60, 100), Error);
}

// ---------------------------------------------------------------------------------------------
// Filtering
// ---------------------------------------------------------------------------------------------

TEST(Filtfilt, GainIsSquaredMagnitudeAndPhaseIsZero) {
  const double fs = 250.0;
  SosFilter f = butter_bandpass(2, 5.0, 15.0, fs);
  for (double freq : {3.0, 5.0, 10.0, 15.0, 20.0}) {
    auto x = sine(5000, freq, fs, 1.0, 0.3);
    auto y = filtfilt(f, x);
    double expected = std::norm(frequency_response(f, freq, fs));  // squared magnitude
    // Middle of the record: y == expected * x sample by sample (same phase).
    double max_err = 0;
    for (int64_t i = 1000; i < 4000; ++i) max_err = std::max(max_err, std::abs(y[i] - expected * x[i]));
    EXPECT_LT(max_err, 2e-3) << "f " << freq;
  }
}

TEST(Filtfilt, SymmetricPulseStaysCentered) {
  // A Gaussian pulse filtered with any causal filter moves; filtfilt keeps it centered and symmetric.
  const double fs = 100.0;
  std::vector<float> x(601, 0.0f);
  for (int i = 0; i < 601; ++i) x[i] = float(std::exp(-0.5 * std::pow((i - 300) / 3.0, 2)));
  auto y = filtfilt(butter_bandpass(3, 5.0, 15.0, fs), x);
  auto causal = sos_filter(butter_bandpass(3, 5.0, 15.0, fs), x);
  auto argmax = [](const std::vector<float>& v) { return std::max_element(v.begin(), v.end()) - v.begin(); };
  EXPECT_EQ(argmax(y), 300);
  EXPECT_NE(argmax(causal), 300);  // the causal filter delays the pulse
  for (int k = 1; k < 100; ++k) EXPECT_NEAR(y[300 - k], y[300 + k], 1e-5) << k;
}

TEST(Filtfilt, EdgesHaveNoTransient) {
  // Constant through a low-pass stays constant to the last sample; through a high-pass it vanishes.
  std::vector<float> c(400, 3.5f);
  auto lp = filtfilt(butter_lowpass(4, 5.0, 100.0), c);
  auto hp = filtfilt(butter_highpass(2, 0.5, 100.0), c);
  for (size_t i = 0; i < c.size(); ++i) {
    EXPECT_NEAR(lp[i], 3.5f, 1e-5) << i;
    EXPECT_NEAR(hp[i], 0.0f, 1e-5) << i;
  }
  // A ramp is kept by a low-pass (odd extension continues it), including both edges.
  std::vector<float> ramp(400);
  for (int i = 0; i < 400; ++i) ramp[i] = 0.01f * i;
  auto r = filtfilt(butter_lowpass(2, 5.0, 100.0), ramp);
  for (int i = 0; i < 400; ++i) EXPECT_NEAR(r[i], ramp[i], 2e-4) << i;
}

TEST(Filtfilt, ShortEmptyAndNonFinite) {
  SosFilter f = butter_bandpass(2, 0.5, 40.0, 250.0);
  EXPECT_TRUE(filtfilt(f, std::vector<float>{}).empty());
  EXPECT_EQ(filtfilt(f, std::vector<float>{1.0f}).size(), 1u);
  auto two = filtfilt(f, std::vector<float>{1.0f, 2.0f});
  ASSERT_EQ(two.size(), 2u);
  EXPECT_TRUE(std::isfinite(two[0]) && std::isfinite(two[1]));
  std::vector<float> bad(100, 1.0f);
  bad[42] = kNaN;
  try {
    filtfilt(f, bad);
    FAIL() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sample 42"), std::string::npos) << e.what();
  }
  bad[42] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(sos_filter(f, bad), Error);
  EXPECT_THROW(moving_average(bad, 3), Error);
  EXPECT_THROW(median_filter(bad, 3), Error);
}

TEST(Filtfilt, BandpassEcgRemovesWanderAndKeepsQrsBand) {
  const double fs = 250.0;
  auto wander = sine(10000, 0.1, fs, 2.0);
  auto qrs = sine(10000, 12.0, fs, 1.0);
  std::vector<float> x(10000);
  for (int i = 0; i < 10000; ++i) x[i] = wander[i] + qrs[i];
  auto y = bandpass_ecg(x, fs);
  EXPECT_NEAR(rms(y, 1000, 9000), rms(qrs, 1000, 9000), 0.01);
  EXPECT_THROW(bandpass_ecg(x, 0.0), Error);
  // At 100 Hz the 40 Hz corner is allowed (< 45 Hz) and the design succeeds.
  EXPECT_EQ(bandpass_ecg(sine(1000, 10, 100), 100.0).size(), 1000u);
}

TEST(SosFilter, StepResponseSettlesToDcGain) {
  std::vector<float> step(2000, 1.0f);
  auto y = sos_filter(butter_lowpass(3, 2.0, 100.0), step);
  EXPECT_NEAR(y.back(), 1.0f, 1e-5);
  EXPECT_LT(y.front(), 0.01f);  // causal, from rest
}

TEST(MovingAverage, CenteredWithShrinkingEdges) {
  std::vector<float> x = {1, 2, 3, 4, 5, 6};
  auto y = moving_average(x, 3);
  std::vector<float> want = {1, 2, 3, 4, 5, 6};  // a line is its own centered mean
  for (size_t i = 0; i < x.size(); ++i) EXPECT_FLOAT_EQ(y[i], want[i]);
  std::vector<float> z = {0, 0, 9, 0, 0};
  auto m = moving_average(z, 3);
  EXPECT_FLOAT_EQ(m[0], 0.0f);
  EXPECT_FLOAT_EQ(m[1], 3.0f);
  EXPECT_FLOAT_EQ(m[2], 3.0f);
  EXPECT_FLOAT_EQ(m[3], 3.0f);
  EXPECT_THROW(moving_average(x, 2), Error);
  EXPECT_THROW(moving_average(x, 0), Error);
  EXPECT_TRUE(moving_average(std::vector<float>{}, 5).empty());
  EXPECT_EQ(moving_average(x, 101).size(), x.size());
}

TEST(MedianFilter, MatchesBruteForceAndRemovesSpikes) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(500);
  for (auto& v : x) v = u(rng);
  for (int w : {1, 3, 5, 11, 51}) {
    auto y = median_filter(x, w);
    int h = w / 2;
    for (int i = 0; i < 500; ++i) {
      int lo = std::max(0, i - h), hi = std::min(499, i + h);
      std::vector<float> win(x.begin() + lo, x.begin() + hi + 1);
      std::sort(win.begin(), win.end());
      size_t k = win.size();
      float want = k % 2 ? win[k / 2] : 0.5f * (win[k / 2 - 1] + win[k / 2]);
      ASSERT_FLOAT_EQ(y[i], want) << "w " << w << " i " << i;
    }
  }
  std::vector<float> spike(21, 1.0f);
  spike[10] = 100.0f;
  EXPECT_FLOAT_EQ(median_filter(spike, 3)[10], 1.0f);
  EXPECT_TRUE(median_filter(std::vector<float>{}, 3).empty());
  EXPECT_EQ(median_filter(std::vector<float>{2.0f, 1.0f}, 7).size(), 2u);
  EXPECT_THROW(median_filter(spike, 4), Error);
}

TEST(InterpolateNonfinite, FillsGapsAndEdges) {
  std::vector<float> x = {kNaN, 1, kNaN, kNaN, 4, std::numeric_limits<float>::infinity()};
  EXPECT_EQ(interpolate_nonfinite(x), 4);
  std::vector<float> want = {1, 1, 2, 3, 4, 4};
  for (size_t i = 0; i < x.size(); ++i) EXPECT_FLOAT_EQ(x[i], want[i]);
  std::vector<float> all = {kNaN, kNaN};
  EXPECT_EQ(interpolate_nonfinite(all), 2);
  EXPECT_EQ(all[0], 0.0f);
  std::vector<float> none;
  EXPECT_EQ(interpolate_nonfinite(none), 0);
}

// ---------------------------------------------------------------------------------------------
// Beat series
// ---------------------------------------------------------------------------------------------

TEST(BeatSeries, IntervalsTimesAndAmplitudes) {
  std::vector<int64_t> r = {100, 200, 310, 400};
  std::vector<float> a = {1.0f, 1.1f, 1.2f, 1.3f};
  BeatSeries s = beat_series(r, 100.0, a);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_DOUBLE_EQ(s.time_s[0], 2.0);
  EXPECT_FLOAT_EQ(s.rr_s[0], 1.0f);
  EXPECT_FLOAT_EQ(s.rr_s[1], 1.1f);
  EXPECT_FLOAT_EQ(s.rr_s[2], 0.9f);
  EXPECT_FLOAT_EQ(s.amp[2], 1.3f);
  EXPECT_TRUE(s.has_amplitude());
  BeatSeries no_amp = beat_series(r, 100.0);
  EXPECT_TRUE(no_amp.amp.empty());
  EXPECT_FALSE(no_amp.has_amplitude());
  EXPECT_EQ(beat_series(std::vector<int64_t>{5}, 100.0).size(), 0u);
  EXPECT_EQ(beat_series(std::vector<int64_t>{}, 100.0).size(), 0u);
  EXPECT_THROW(beat_series(std::vector<int64_t>{1, 5, 5}, 100.0), Error);
  EXPECT_THROW(beat_series(std::vector<int64_t>{1, 5, 3}, 100.0), Error);
  EXPECT_THROW(beat_series(r, 100.0, std::vector<float>{1.0f}), Error);
  EXPECT_THROW(beat_series(r, 0.0), Error);
}

TEST(CleanBeatSeries, CountsEachKindOfRemoval) {
  // 60 beats at ~0.8 s with a premature (ectopic) beat, a missed beat, an out-of-range pause and a NaN.
  BeatSeries s;
  double t = 0;
  std::vector<float> rr(60, 0.8f);
  for (int i = 0; i < 60; ++i) rr[i] = 0.8f + 0.01f * float(i % 3);  // small normal variability
  rr[10] = 0.5f;   // premature beat: short interval ...
  rr[11] = 1.1f;   // ... then the compensatory pause
  rr[30] = 1.6f;   // a missed beat (double interval), in range but an outlier
  rr[40] = 2.5f;   // > rr_max: out of range
  rr[41] = 0.2f;   // < rr_min: out of range
  rr[50] = kNaN;
  for (int i = 0; i < 60; ++i) {
    t += std::isfinite(rr[i]) ? rr[i] : 0.8;
    s.time_s.push_back(t);
    s.rr_s.push_back(rr[i]);
    s.amp.push_back(1.0f);
  }
  CleanStats st;
  BeatSeries c = clean_beat_series(s, {}, &st);
  EXPECT_EQ(st.input, 60);
  EXPECT_EQ(st.removed_nonfinite, 1);
  EXPECT_EQ(st.removed_range, 2);
  EXPECT_EQ(st.removed_outlier, 3);
  EXPECT_EQ(st.kept, 54);
  EXPECT_EQ(c.size(), 54u);
  EXPECT_EQ(c.amp.size(), 54u);
  for (float v : c.rr_s) EXPECT_TRUE(v >= 0.8f && v <= 0.83f) << v;
  EXPECT_NE(st.to_string().find("54"), std::string::npos);

  CleanConfig no_outliers;
  no_outliers.remove_outliers = false;
  BeatSeries c2 = clean_beat_series(s, no_outliers, &st);
  EXPECT_EQ(st.removed_outlier, 0);
  EXPECT_EQ(c2.size(), 57u);
}

TEST(CleanBeatSeries, EmptyConstantAndBadInput) {
  CleanStats st;
  EXPECT_EQ(clean_beat_series(BeatSeries{}, {}, &st).size(), 0u);
  EXPECT_EQ(st.input, 0);
  BeatSeries constant;
  for (int i = 0; i < 20; ++i) {
    constant.time_s.push_back(i);
    constant.rr_s.push_back(1.0f);
  }
  EXPECT_EQ(clean_beat_series(constant).size(), 20u);
  BeatSeries bad = constant;
  bad.rr_s.pop_back();
  EXPECT_THROW(clean_beat_series(bad), Error);
  BeatSeries back = constant;
  back.time_s[5] = 2.0;  // goes backwards
  EXPECT_THROW(clean_beat_series(back), Error);
  CleanConfig cfg;
  cfg.rr_max_s = 0.1;
  EXPECT_THROW(clean_beat_series(constant, cfg), Error);
}

// ---------------------------------------------------------------------------------------------
// Resampling
// ---------------------------------------------------------------------------------------------

TEST(Resample, LinearAndPchipReproduceALine) {
  std::vector<double> t = {0.3, 1.1, 1.7, 2.9, 3.2, 4.8};
  std::vector<float> v;
  for (double ti : t) v.push_back(float(2.0 * ti + 1.0));
  for (Interp m : {Interp::Linear, Interp::Pchip}) {
    auto y = resample_uniform(t, v, 0.0, 4.0, 24, m);
    ASSERT_EQ(y.size(), 24u);
    for (int k = 0; k < 24; ++k) {
      double tk = k / 4.0;
      double want = 2.0 * std::clamp(tk, 0.3, 4.8) + 1.0;  // edges held
      EXPECT_NEAR(y[k], want, 1e-5) << "k " << k;
    }
  }
}

TEST(Resample, PchipIsMonotoneAndSmooth) {
  // A step: linear and PCHIP stay within [min, max]; PCHIP has no overshoot.
  std::vector<double> t = {0, 1, 2, 3, 4, 5};
  std::vector<float> v = {1, 1, 1, 2, 2, 2};
  auto y = resample_uniform(t, v, 0.0, 20.0, 101, Interp::Pchip);
  for (size_t k = 1; k < y.size(); ++k) {
    EXPECT_GE(y[k], 1.0f - 1e-6f);
    EXPECT_LE(y[k], 2.0f + 1e-6f);
    EXPECT_GE(y[k], y[k - 1] - 1e-6f);
  }
  // A sine sampled irregularly is reproduced better by PCHIP than by linear interpolation.
  std::vector<double> ts;
  std::vector<float> vs;
  for (double x = 0; x < 60; x += 0.7 + 0.2 * std::sin(x)) {
    ts.push_back(x);
    vs.push_back(float(std::sin(2 * kPi * 0.1 * x)));
  }
  auto lin = resample_uniform(ts, vs, 1.0, 4.0, 200, Interp::Linear);
  auto cub = resample_uniform(ts, vs, 1.0, 4.0, 200, Interp::Pchip);
  double el = 0, ec = 0;
  for (int k = 0; k < 200; ++k) {
    double want = std::sin(2 * kPi * 0.1 * (1.0 + k / 4.0));
    el = std::max(el, std::abs(lin[k] - want));
    ec = std::max(ec, std::abs(cub[k] - want));
  }
  EXPECT_LT(ec, el);
  EXPECT_LT(ec, 0.03);  // PCHIP flattens at extrema (slope 0 where the data turn)
}

TEST(Resample, MissingValuesAndBadInput) {
  std::vector<double> t = {0, 1, 2, 3};
  std::vector<float> v = {0, kNaN, 2, 3};
  auto y = resample_uniform(t, v, 0.0, 2.0, 5);
  EXPECT_FLOAT_EQ(y[1], 0.5f);  // NaN point skipped: bridged linearly
  EXPECT_FLOAT_EQ(y[2], 1.0f);
  auto one = resample_uniform(std::vector<double>{5.0}, std::vector<float>{7.0f}, 0.0, 1.0, 3);
  EXPECT_EQ(one, (std::vector<float>{7, 7, 7}));
  EXPECT_TRUE(resample_uniform(t, v, 0.0, 4.0, 0).empty());
  EXPECT_THROW(resample_uniform(std::vector<double>{}, std::vector<float>{}, 0.0, 4.0, 10), Error);
  EXPECT_THROW(resample_uniform(t, std::vector<float>(4, kNaN), 0.0, 4.0, 10), Error);
  EXPECT_THROW(resample_uniform(t, std::vector<float>(3, 1.0f), 0.0, 4.0, 10), Error);
  EXPECT_THROW(resample_uniform(std::vector<double>{0, 2, 1}, std::vector<float>(3, 1.0f), 0.0, 4.0, 10), Error);
  EXPECT_THROW(resample_uniform(t, v, 0.0, 0.0, 10), Error);
  EXPECT_THROW(resample_uniform(t, v, 0.0, 4.0, -1), Error);
}

// ---------------------------------------------------------------------------------------------
// Respiratory signals
// ---------------------------------------------------------------------------------------------

TEST(Desaturations, FindsDropsOfAtLeastThreePoints) {
  // 1 Hz SpO2 at 96 %: a 5-point dip (30 s down, 10 s back), a 2-point dip (ignored), a 4-point dip
  // with invalid samples (0 %, oximeter off the finger) inside it.
  std::vector<float> s(400, 96.0f);
  for (int k = 100; k < 130; ++k) s[k] = 96.0f - 5.0f * float(k - 100) / 30.0f;
  for (int k = 130; k < 140; ++k) s[k] = 91.0f + 0.5f * float(k - 130);
  for (int k = 200; k < 220; ++k) s[k] = 94.0f;
  for (int k = 300; k < 320; ++k) s[k] = 92.0f;
  s[305] = 0.0f;
  s[306] = std::numeric_limits<float>::quiet_NaN();
  auto d = find_desaturations(s, 1.0);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_NEAR(d[0].start_s, 100, 1.0);
  EXPECT_NEAR(d[0].nadir_s, 130, 1.0);
  EXPECT_NEAR(d[0].drop_pct(), 5.0, 0.2);
  EXPECT_NEAR(d[0].end_s, 138, 1.0);
  EXPECT_NEAR(d[1].start_s, 300, 0.5);
  EXPECT_NEAR(d[1].drop_pct(), 4.0, 1e-4);
  // The same at 25 Hz gives the same events.
  std::vector<float> fast;
  for (float v : s)
    for (int i = 0; i < 25; ++i) fast.push_back(v);
  auto f = find_desaturations(fast, 25.0);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].start_s, d[0].start_s);
  EXPECT_TRUE(find_desaturations(std::vector<float>{}, 1.0).empty());
  EXPECT_TRUE(find_desaturations(std::vector<float>(100, 0.0f), 1.0).empty());  // all invalid
  EXPECT_TRUE(find_desaturations(std::vector<float>(100, 97.0f), 1.0).empty());  // constant
  EXPECT_THROW(find_desaturations(s, 0.0), Error);
}

namespace {
// Breathing at 0.25 Hz, amplitude a(t).
std::vector<float> breathing(double fs, double seconds, const std::function<double(double)>& a) {
  std::vector<float> x(int64_t(seconds * fs));
  for (size_t i = 0; i < x.size(); ++i) {
    double t = double(i) / fs;
    x[i] = float(a(t) * std::sin(2 * kPi * 0.25 * t));
  }
  return x;
}
}  // namespace

TEST(RespirationAmplitude, PeakToPeakPerSecond) {
  auto x = breathing(50, 300, [](double t) { return (t >= 100 && t < 140) ? 0.0 : 0.5; });
  auto a = respiration_amplitude(x, 50.0);
  ASSERT_EQ(a.size(), 300u);
  EXPECT_NEAR(a[50], 1.0, 0.1);   // peak to peak of 0.5 sin
  EXPECT_LT(a[120], 0.05);        // no breathing
  EXPECT_TRUE(respiration_amplitude(std::vector<float>(10, 1.0f), 50.0).empty());  // < 1 s
  EXPECT_THROW(respiration_amplitude(x, 2.0), Error);
  EXPECT_THROW(respiration_amplitude(x, 50.0, 0.1), Error);
}

TEST(FlowEvents, ApneaHypopneaAndTheirTypes) {
  const double fs = 25;
  // 20-s apnea at 300 s, 25-s hypopnea (50 %) at 500 s.
  auto amp = [](double t) { return (t >= 300 && t < 320) ? 0.02 : (t >= 500 && t < 525) ? 0.25 : 0.5; };
  auto flow = breathing(fs, 700, amp);
  auto ev = detect_flow_events(flow, fs);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].type, FlowEventType::Apnea);
  EXPECT_NEAR(ev[0].onset_s, 300, 3);
  EXPECT_NEAR(ev[0].duration_s, 20, 4);
  EXPECT_EQ(ev[1].type, FlowEventType::Hypopnea);
  EXPECT_NEAR(ev[1].onset_s, 500, 3);
  EXPECT_NEAR(ev[1].amplitude_ratio, 0.5, 0.1);
  // Effort continuing through the apnea: obstructive; effort stopping too: central.
  auto effort_on = breathing(fs, 700, [](double) { return 1.0; });
  auto effort_off = breathing(fs, 700, [](double t) { return (t >= 300 && t < 320) ? 0.01 : 1.0; });
  EXPECT_EQ(detect_flow_events(flow, fs, effort_on)[0].type, FlowEventType::ObstructiveApnea);
  EXPECT_EQ(detect_flow_events(flow, fs, effort_off)[0].type, FlowEventType::CentralApnea);
  // With SpO2 that never drops, the hypopnea is not scored; with a desaturation after it, it is.
  std::vector<float> flat(flow.size(), 96.0f), dip = flat;
  for (size_t i = 0; i < dip.size(); ++i) {
    double t = double(i) / fs;
    if (t >= 530 && t < 545) dip[i] = 92.0f;
  }
  auto no_desat = detect_flow_events(flow, fs, {}, flat);
  ASSERT_EQ(no_desat.size(), 1u);
  EXPECT_EQ(no_desat[0].type, FlowEventType::Apnea);
  EXPECT_EQ(detect_flow_events(flow, fs, {}, dip).size(), 2u);
  // Degenerate and bad input.
  EXPECT_TRUE(detect_flow_events(std::vector<float>{}, fs).empty());
  EXPECT_TRUE(detect_flow_events(std::vector<float>(7000, 0.0f), fs).empty());  // constant: ratio 1
  EXPECT_THROW(detect_flow_events(flow, fs, std::vector<float>(10, 0.0f)), Error);
  FlowEventConfig bad;
  bad.apnea_ratio = 0.9;
  EXPECT_THROW(detect_flow_events(flow, fs, {}, {}, bad), Error);
  EXPECT_STREQ(flow_event_name(FlowEventType::CentralApnea), "central");
}

// On synthetic polysomnography: the scored events are the generated ones.
TEST(FlowEvents, FindsTheSyntheticRecordsEvents) {
  for (uint64_t seed : {1u, 2u}) {
    SynthConfig c;
    c.seed = seed;
    c.duration_s = 2 * 3600;
    c.ahi = 30;
    c.central_fraction = 0.3;
    SynthRecord r = generate_synthetic_record(c);
    auto ev = detect_flow_events(r.signals[1].values, c.fs_hz, r.signals[2].values, r.signals[4].values);
    std::vector<char> used(ev.size(), 0);
    int tp = 0, same_type = 0;
    for (const RespEvent& t : r.events) {
      for (size_t j = 0; j < ev.size(); ++j) {
        if (used[j] || ev[j].onset_s >= t.onset_s + t.duration_s || t.onset_s >= ev[j].onset_s + ev[j].duration_s) continue;
        used[j] = 1;
        ++tp;
        FlowEventType want = t.type == RespEventType::Hypopnea       ? FlowEventType::Hypopnea
                             : t.type == RespEventType::CentralApnea ? FlowEventType::CentralApnea
                                                                     : FlowEventType::ObstructiveApnea;
        same_type += ev[j].type == want;
        break;
      }
    }
    double se = double(tp) / double(r.events.size()), ppv = double(tp) / double(ev.size());
    std::cout << "[ measured ] seed " << seed << ": " << r.events.size() << " true events, " << ev.size()
              << " scored, Se " << se << " PPV " << ppv << " type agreement " << double(same_type) / tp << "\n";
    EXPECT_GE(se, 0.9);
    EXPECT_GE(ppv, 0.9);
    EXPECT_GE(double(same_type) / tp, 0.85);
    // Every event desaturates: the ODI is close to the AHI.
    auto ds = find_desaturations(r.signals[4].values, c.fs_hz);
    EXPECT_NEAR(double(ds.size()), double(r.events.size()), 0.15 * double(r.events.size()));
  }
}
