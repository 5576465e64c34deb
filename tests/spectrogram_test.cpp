// spectrogram_test.cpp: the time-frequency image puts a sinusoidal RR / amplitude modulation at the
// right row, is stable for caching, handles empty, constant and gappy windows, and is the same
// computed one window at a time or in parallel.
#include "data/spectrogram.h"

#include <cmath>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "data/wfdb_annotation.h"
#include "tensor/tensor.h"

using namespace sleepnet::data;
using sleepnet::Error;

namespace {

constexpr double kPi = std::numbers::pi;

// Beats whose RR follows rr(t) = base + a_rr * sin(2 pi f_rr t), amplitude 1 + a_amp sin(2 pi f_amp t).
BeatSeries modulated_beats(double duration_s, double f_rr, double a_rr, double f_amp = 0.0,
                           double a_amp = 0.0, double base = 0.9) {
  BeatSeries b;
  double t = 0.5;
  while (t < duration_s) {
    double rr = base + a_rr * std::sin(2 * kPi * f_rr * t);
    t += rr;
    b.time_s.push_back(t);
    b.rr_s.push_back(float(rr));
    b.amp.push_back(float(1.0 + a_amp * std::sin(2 * kPi * f_amp * t)));
  }
  return b;
}

// Row whose mean over all columns is largest, in channel c.
int peak_row(const TFImage& img, int c) {
  int best = -1;
  double best_v = -1e30;
  for (int h = 0; h < img.height; ++h) {
    double m = 0;
    for (int w = 0; w < img.width; ++w) m += img.at(c, h, w);
    if (m > best_v) {
      best_v = m;
      best = h;
    }
  }
  return best;
}

int row_of(const SpectrogramSettings& s, double f) {
  auto rf = s.row_frequencies();
  int best = 0;
  for (int i = 1; i < int(rf.size()); ++i)
    if (std::abs(rf[i] - f) < std::abs(rf[best] - f)) best = i;
  return best;
}

}  // namespace

TEST(Spectrogram, SinusoidalRrModulationPeaksAtItsFrequency) {
  SpectrogramSettings s;  // defaults: 0.01-0.5 Hz over 64 rows, 5-minute span
  for (double f : {0.02, 0.033, 0.1, 0.25, 0.4}) {
    BeatSeries b = modulated_beats(900, f, 0.05);
    TFImage img = tf_image(b, 400, 60, s);
    ASSERT_EQ(img.channels, 2);
    ASSERT_EQ(img.data.size(), size_t(2 * 64 * 64));
    int got = peak_row(img, 0), want = row_of(s, f);
    // The row spacing is 0.0077 Hz and the frame resolution 1/64 Hz: allow one row.
    EXPECT_LE(std::abs(got - want), 1) << "f " << f << " got row " << got << " ("
                                       << s.row_frequencies()[got] << " Hz), want " << want;
    EXPECT_NEAR(img.coverage, 1.0, 1e-9);
  }
}

TEST(Spectrogram, AmplitudeChannelSeesRespiration) {
  SpectrogramSettings s;
  s.height = 32;
  s.width = 32;
  BeatSeries b = modulated_beats(900, 0.03, 0.05, 0.3, 0.1);
  TFImage img = tf_image(b, 300, 60, s);
  EXPECT_FALSE(img.amplitude_missing);
  EXPECT_LE(std::abs(peak_row(img, 0) - row_of(s, 0.03)), 1);
  EXPECT_LE(std::abs(peak_row(img, 1) - row_of(s, 0.3)), 1);
}

TEST(Spectrogram, LogFrequencyAxis) {
  SpectrogramSettings s;
  s.log_frequency = true;
  s.f_min_hz = 0.01;
  auto rf = s.row_frequencies();
  EXPECT_NEAR(rf[1] / rf[0], rf[40] / rf[39], 1e-9);  // constant ratio
  for (double f : {0.02, 0.25}) {
    TFImage img = tf_image(modulated_beats(900, f, 0.05), 400, 60, s);
    // At low frequency several log rows share one FFT bin: allow the bin's width in rows.
    int tol = f < 0.05 ? 4 : 1;
    EXPECT_LE(std::abs(peak_row(img, 0) - row_of(s, f)), tol) << f;
  }
  s.f_min_hz = 0.0;
  EXPECT_THROW(s.validate(), Error);
}

TEST(Spectrogram, NormalisationModes) {
  BeatSeries b = modulated_beats(900, 0.05, 0.05);
  SpectrogramSettings s;
  s.amplitude_channel = false;
  TFImage z = tf_image(b, 400, 60, s);
  ASSERT_EQ(z.channels, 1);
  double mean = 0, var = 0;
  for (float v : z.data) mean += v;
  mean /= z.data.size();
  for (float v : z.data) var += (v - mean) * (v - mean);
  EXPECT_NEAR(mean, 0.0, 1e-4);
  EXPECT_NEAR(var / z.data.size(), 1.0, 1e-3);
  s.normalization = SpecNormalization::MinMax;
  TFImage m = tf_image(b, 400, 60, s);
  EXPECT_FLOAT_EQ(*std::min_element(m.data.begin(), m.data.end()), 0.0f);
  EXPECT_FLOAT_EQ(*std::max_element(m.data.begin(), m.data.end()), 1.0f);
  s.normalization = SpecNormalization::None;
  TFImage d = tf_image(b, 400, 60, s);
  // dB with a 60 dB floor below the peak
  float hi = *std::max_element(d.data.begin(), d.data.end()), lo = *std::min_element(d.data.begin(), d.data.end());
  EXPECT_LE(hi - lo, 60.0f + 1e-3f);
  EXPECT_GT(hi - lo, 20.0f);
}

TEST(Spectrogram, EmptyConstantAndGappyWindows) {
  SpectrogramSettings s;
  // No beats at all: zeros, coverage 0, amplitude missing.
  TFImage e = tf_image(BeatSeries{}, 100, 60, s);
  EXPECT_EQ(e.coverage, 0.0);
  EXPECT_TRUE(e.amplitude_missing);
  for (float v : e.data) EXPECT_EQ(v, 0.0f);
  // Constant RR: a flat spectrum normalises to zeros, finite everywhere.
  BeatSeries c = modulated_beats(900, 0.1, 0.0);
  TFImage ci = tf_image(c, 400, 60, s);
  for (float v : ci.data) {
    ASSERT_TRUE(std::isfinite(v));
    EXPECT_EQ(v, 0.0f);
  }
  // Beats without amplitudes: channel 1 zeros and flagged.
  BeatSeries na = modulated_beats(900, 0.1, 0.05);
  na.amp.clear();
  TFImage ni = tf_image(na, 400, 60, s);
  EXPECT_TRUE(ni.amplitude_missing);
  for (int h = 0; h < 64; ++h)
    for (int w = 0; w < 64; ++w) ASSERT_EQ(ni.at(1, h, w), 0.0f);
  // A 60-s hole in the middle of the span: coverage ~ (300 - 60) / 300, image still finite.
  BeatSeries g;
  for (size_t i = 0; i < na.size(); ++i) {
    if (na.time_s[i] > 420 && na.time_s[i] < 480) continue;
    g.time_s.push_back(na.time_s[i]);
    g.rr_s.push_back(na.rr_s[i]);
  }
  TFImage gi = tf_image(g, 400, 60, s);
  EXPECT_NEAR(gi.coverage, 0.8, 0.01);
  for (float v : gi.data) ASSERT_TRUE(std::isfinite(v));
  // A window at the very start of the record (context before 0 s): edge held, finite.
  TFImage first = tf_image(na, 0, 60, s);
  EXPECT_LT(first.coverage, 0.65);
  for (float v : first.data) ASSERT_TRUE(std::isfinite(v));
}

TEST(Spectrogram, BatchEqualsSingleAndIsDeterministic) {
  BeatSeries b = modulated_beats(1800, 0.03, 0.05, 0.25, 0.1);
  SpectrogramSettings s;
  std::vector<double> starts;
  for (int m = 0; m < 30; ++m) starts.push_back(60.0 * m);
  auto many = tf_images(b, starts, 60, s);
  ASSERT_EQ(many.size(), starts.size());
  for (size_t i = 0; i < starts.size(); ++i) {
    TFImage one = tf_image(b, starts[i], 60, s);
    ASSERT_EQ(one.data, many[i].data) << i;
    EXPECT_EQ(one.coverage, many[i].coverage);
  }
  std::vector<double> bad = {0.0, std::numeric_limits<double>::quiet_NaN()};
  EXPECT_THROW(tf_images(b, bad, 60, s), Error);
}

TEST(Spectrogram, SettingsStringHashAndValidation) {
  SpectrogramSettings s;
  EXPECT_EQ(s.to_string(),
            "spectrogram v1 context_s=120 series_fs_hz=4 interp=linear stft_window_s=64 overlap=0.9375 "
            "nfft=0 detrend=constant f_min_hz=0.01 f_max_hz=0.5 log_frequency=0 height=64 width=64 "
            "log_scale=1 log_floor_rel=1e-06 normalization=zscore amplitude_channel=1 max_gap_s=3");
  EXPECT_EQ(s.hash(), SpectrogramSettings{}.hash());
  EXPECT_EQ(s.frame_samples(), 256);
  EXPECT_EQ(s.hop_samples(), 16);
  EXPECT_EQ(s.fft_size(), 512);
  SpectrogramSettings t = s;
  t.height = 32;
  EXPECT_NE(t.hash(), s.hash());
  t = s;
  t.overlap = 0.5;
  EXPECT_NE(t.to_string(), s.to_string());

  auto expect_field = [](SpectrogramSettings bad, const char* field) {
    try {
      bad.validate();
      FAIL() << field << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  SpectrogramSettings b = s;
  b.overlap = 1.0;
  expect_field(b, "overlap");
  b = s;
  b.f_max_hz = 3.0;
  expect_field(b, "f_max_hz");
  b = s;
  b.height = 0;
  expect_field(b, "height");
  b = s;
  b.series_fs_hz = -4;
  expect_field(b, "series_fs_hz");
  b = s;
  b.nfft = 100;
  expect_field(b, "nfft");
  b = s;
  b.context_s = 0;  // 60 s window < 64 s frame
  expect_field(b, "stft_window_s");
  EXPECT_THROW(tf_image(BeatSeries{}, 0, -1, s), Error);
  BeatSeries mismatched;
  mismatched.time_s = {1, 2};
  mismatched.rr_s = {1};
  EXPECT_THROW(tf_image(mismatched, 0, 60, s), Error);
}

TEST(Spectrogram, ChannelFromUniformSeries) {
  SpectrogramSettings s;
  s.height = 16;
  s.width = 8;
  s.normalization = SpecNormalization::None;
  std::vector<float> x(1200);
  for (int i = 0; i < 1200; ++i) x[i] = float(std::sin(2 * kPi * 0.2 * i / 4.0));
  std::vector<float> out(16 * 8);
  spectrogram_channel(x, s, out.data());
  // Every column peaks at the 0.2 Hz row.
  auto rf = s.row_frequencies();
  for (int c = 0; c < 8; ++c) {
    int best = 0;
    for (int h = 1; h < 16; ++h)
      if (out[h * 8 + c] > out[best * 8 + c]) best = h;
    EXPECT_LE(std::abs(rf[best] - 0.2), 0.5 * (rf[1] - rf[0]) + 1e-9) << c;
  }
  EXPECT_THROW(spectrogram_channel(std::vector<float>(100, 1.0f), s, out.data()), Error);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(spectrogram_channel(x, s, out.data()), Error);
}

// On the shipped Apnea-ECG beat annotations (real data): within each record, the scored apnea
// minutes carry more power in the cyclic-variation band (0.01-0.05 Hz of the RR spectrum) than
// the normal minutes, which is what the image is designed to show. Measured with the default
// settings (dB, before normalisation): a01 +7.5, a03 +13.3, a05 +6.6, b01 +8.2, b02 +7.3.
TEST(Spectrogram, RealApneaMinutesShowCyclicVariation) {
  const std::string dir = std::string(SLEEPNET_SOURCE_DIR) + "/data/physionet/apnea-ecg/";
  for (const char* rec : {"a01", "a03", "a05", "b01", "b02"}) {
    auto qrs = read_wfdb_annotations(dir + rec + ".qrs");
    auto apn = read_wfdb_annotations(dir + rec + ".apn");
    std::vector<int64_t> r;
    for (const auto& a : qrs)
      if (is_beat_annotation(a.code)) r.push_back(a.sample);
    BeatSeries beats = clean_beat_series(beat_series(r, 100.0));
    SpectrogramSettings s;
    s.normalization = SpecNormalization::None;
    s.amplitude_channel = false;
    std::vector<double> starts;
    for (size_t m = 0; m < apn.size(); ++m) starts.push_back(60.0 * m);
    std::vector<TFImage> img = tf_images(beats, starts, 60.0, s);
    auto rows = s.row_frequencies();
    double pa = 0, pn = 0;
    int na = 0, nn = 0;
    for (size_t m = 0; m < apn.size(); ++m) {
      double low = 0;
      int k = 0;
      for (int h = 0; h < s.height; ++h) {
        if (rows[h] > 0.05) continue;
        for (int w = 0; w < s.width; ++w, ++k) low += img[m].at(0, h, w);
      }
      low /= k;
      if (annotation_mnemonic(apn[m].code) == "A") pa += low, ++na;
      else pn += low, ++nn;
    }
    ASSERT_GT(na, 10) << rec;
    ASSERT_GT(nn, 10) << rec;
    EXPECT_GT(pa / na, pn / nn + 4.0) << rec << ": apnea " << pa / na << " dB, normal " << pn / nn << " dB";
  }
}

// Beats from 0.5 s to 900 s, each RR interval rr_at(time of the previous beat).
template <class F>
BeatSeries beats_for_900_s(F rr_at) {
  BeatSeries b;
  for (double t = 0.5; t < 900;) {
    const double rr = rr_at(t);
    t += rr;
    b.time_s.push_back(t);
    b.rr_s.push_back(float(rr));
  }
  return b;
}

// The trace channel: the RR series itself, averaged over each column's slice of the span, so the
// 30-90 s cycles of heart rate that apneas cause survive (the level channel's 64-s frames average
// them away); equal down every row; the last channel; off by default and then invisible.
TEST(Spectrogram, TraceChannelKeepsTheHeartRateCyclesTheLevelChannelSmoothsAway) {
  // RR 1.0 s +- 0.1 s in a 60-s cycle (a cyclic variation of heart rate, one apnea per minute).
  const BeatSeries b = beats_for_900_s([](double t) { return 1.0 + 0.1 * std::sin(2 * std::numbers::pi * t / 60.0); });
  SpectrogramSettings s;
  s.amplitude_channel = false;
  s.normalization = SpecNormalization::None;
  s.context_s = 180;
  s.height = 4;
  s.width = 32;
  s.level_channel = true;
  EXPECT_EQ(s.to_string().find("trace_channel"), std::string::npos);
  s.trace_channel = true;
  EXPECT_NE(s.to_string().find(" trace_channel=1"), std::string::npos);
  ASSERT_EQ(s.channels(), 3);
  ASSERT_EQ(s.trace_index(), 2);
  const TFImage img = tf_image(b, 420, 60, s);
  ASSERT_EQ(img.channels, 3);
  float lo = 10, hi = -10, level_lo = 10, level_hi = -10;
  for (int w = 0; w < img.width; ++w) {
    for (int h = 1; h < img.height; ++h) EXPECT_EQ(img.at(2, h, w), img.at(2, 0, w));
    lo = std::min(lo, img.at(2, 0, w)), hi = std::max(hi, img.at(2, 0, w));
    level_lo = std::min(level_lo, img.at(1, 0, w)), level_hi = std::max(level_hi, img.at(1, 0, w));
  }
  // ~11-s slices of a 60-s cycle keep most of its swing of 0.2 s; 64-s frames keep almost none.
  EXPECT_GT(hi - lo, 0.12f);
  EXPECT_LT(hi - lo, 0.21f);
  EXPECT_LT(level_hi - level_lo, 0.03f);
  // Slices tile the frame centres: on a ramp (value = sample index) each column holds its slice's
  // midpoint, so consecutive columns are one slice (nf * hop / width samples) apart.
  const int n = 420 * 4;  // a 420-s span at 4 Hz
  std::vector<float> ramp(n);
  for (int i = 0; i < n; ++i) ramp[i] = float(i);
  std::vector<float> out(size_t(s.height) * s.width);
  trace_channel(ramp, s, out.data());
  const int L = s.frame_samples(), hop = s.hop_samples(), nf = 1 + (n - L) / hop;
  const double slice = double(nf) * hop / s.width;
  for (int w = 1; w < s.width; ++w) EXPECT_NEAR(out[w] - out[w - 1], slice, 1.0) << w;
  const double start = (n - (L + double(nf - 1) * hop)) / 2;  // first sample of frame 0
  EXPECT_NEAR(out[0], start + 0.5 * L - 0.5 * hop + 0.5 * slice - 0.5, 1.0);
  // With every channel on, the trace comes last.
  s.amplitude_channel = true;
  EXPECT_EQ(s.channels(), 4);
  EXPECT_EQ(s.trace_index(), 3);
  EXPECT_EQ(s.level_index(), 2);
}

// The level channel: the heart rate the spectrogram's detrending removes, frame by frame, in the
// same columns as the spectrogram, equal down every row; off by default and then invisible.
TEST(Spectrogram, LevelChannelFollowsTheMeanRrOfEachColumn) {
  // RR 1.0 s for the first 450 s, then 0.7 s: the heart speeds up half-way through the window.
  const BeatSeries b = beats_for_900_s([](double t) { return t < 450 ? 1.0 : 0.7; });
  SpectrogramSettings s;
  s.amplitude_channel = false;
  s.normalization = SpecNormalization::None;
  s.height = 8;
  s.width = 16;
  EXPECT_EQ(s.to_string().find("level_channel"), std::string::npos);
  s.level_channel = true;
  EXPECT_NE(s.to_string().find(" level_channel=1"), std::string::npos);
  ASSERT_EQ(s.channels(), 2);
  ASSERT_EQ(s.level_index(), 1);
  const TFImage img = tf_image(b, 420, 60, s);  // span 240-540 s: the change sits in the middle
  ASSERT_EQ(img.channels, 2);
  for (int w = 0; w < img.width; ++w)
    for (int h = 1; h < img.height; ++h) EXPECT_EQ(img.at(1, h, w), img.at(1, 0, w));
  // Seconds per beat: 1.0 in the first column (its frames end before 450 s), 0.7 in the last,
  // falling in between and never outside [0.7, 1.0].
  EXPECT_NEAR(img.at(1, 0, 0), 1.0, 1e-3);
  EXPECT_NEAR(img.at(1, 0, img.width - 1), 0.7, 1e-3);
  for (int w = 1; w < img.width; ++w) {
    EXPECT_LE(img.at(1, 0, w), img.at(1, 0, w - 1) + 1e-6) << w;
    EXPECT_GE(img.at(1, 0, w), 0.7 - 1e-3);
  }
  // Channel 0 is the same spectrogram with or without the level channel.
  s.level_channel = false;
  const TFImage plain = tf_image(b, 420, 60, s);
  for (int h = 0; h < img.height; ++h)
    for (int w = 0; w < img.width; ++w) EXPECT_EQ(img.at(0, h, w), plain.at(0, h, w));
  // With the amplitude channel on, the level channel comes after it.
  s.level_channel = s.amplitude_channel = true;
  EXPECT_EQ(s.channels(), 3);
  EXPECT_EQ(s.level_index(), 2);
  EXPECT_EQ(tf_image(b, 420, 60, s).channels, 3);
}
