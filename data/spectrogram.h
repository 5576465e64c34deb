// spectrogram.h: the time-frequency image of a window of heart beats, the input of the models.
//
// What the image shows. Sleep apnea leaves two marks on the heart-beat series: the cyclic variation
// of heart rate (CVHR: bradycardia during each apnea, tachycardia at its end, one cycle every
// 30-90 s, so 0.01-0.04 Hz) and the change of breathing itself, visible in the RR series through
// respiratory sinus arrhythmia and in the R amplitude through ECG-derived respiration (EDR), at
// 0.1-0.4 Hz, which stops or weakens during an apnea. Sleep stages change the same spectrum
// (wake: more low-frequency power, deep sleep: a narrow respiratory peak). A spectrogram of the
// RR (and R-amplitude) series over a few minutes shows all of it as an image.
//
// The pipeline for one scored window [start, start + duration) (Apnea-ECG minute: 60 s, sleep
// epoch: 30 s), every number a field of SpectrogramSettings:
//
//  1. Span: the window plus `context_s` on each side (default 120 s: five minutes for a scored
//     minute, enough for 3-10 apnea cycles). Beats in the span (plus a small margin) are taken
//     from a *cleaned* BeatSeries (data/signal.h: range + ectopic removal).
//  2. Uniform series: RR (seconds) and, when the record has it, R amplitude (EDR), resampled at
//     `series_fs_hz` (default 4 Hz: Nyquist 2 Hz, far above 0.5 Hz; the HRV-standard rate) with
//     linear interpolation (`interp`; PCHIP on request). Gaps left by removed beats are bridged;
//     the edges of a record are held.
//  3. Short-time FFT: frames of `stft_window_s` (default 64 s = 256 samples: bins 1/64 Hz apart,
//     so CVHR at 0.015-0.04 Hz falls in 1-3 separate bins while a frame still spans ~1-2 apnea
//     cycles), `overlap` (default 15/16: hop 4 s, ~60 frames over five minutes), frames centred
//     in the span. Each frame: mean removed (`detrend`: constant; linear on request, which also
//     removes a slow drift of heart rate), periodic Hann window, zero-padded to `nfft` (default 0 =
//     the next power of two >= 2x the frame: 512, i.e. interpolated bins 1/128 Hz apart),
//     one-sided power spectral density (FFTW r2c; unit: series-unit^2 / Hz).
//  4. Frequency range `f_min_hz`..`f_max_hz` (default 0.01-0.5 Hz: CVHR through the fastest
//     breathing; below 0.01 Hz a 64-s frame cannot resolve anything). Axis linear by default;
//     `log_frequency` gives logarithmically spaced rows, which spends more rows on CVHR.
//  5. Resize to `height` x `width` (default 64 x 64; 32 x 32 for fast models): along each axis a
//     box (area) average when shrinking, linear interpolation at cell centres when enlarging (the
//     conventions of OpenCV INTER_AREA and PyTorch bilinear with align_corners=false). Rows are
//     frequency, row 0 = f_min (lowest frequency); columns are time, column 0 = earliest frame.
//     Power is resized before the logarithm (averages of power, not of decibels).
//  6. Scaling: `log_scale` (default on): 10 * log10(P + floor), floor = `log_floor_rel` (default
//     1e-6, i.e. 60 dB of dynamic range) times the image's largest power, plus 1e-30 so a flat
//     series gives a finite image.
//  7. Normalisation per image and channel (`normalization`, default ZScore: mean 0, std 1; MinMax
//     to [0, 1]; None keeps dB values). A constant channel (std or range ~ 0) becomes all zeros.
//
// Channels: 0 = RR, 1 = R amplitude when `amplitude_channel` (default on). A record without
// amplitudes (beat annotations only, like the shipped Apnea-ECG .qrs files) gets a zero channel 1
// and `amplitude_missing = true`, so every image of a run has the same shape. With
// `level_channel`, a last channel holds what step 3 removes from every frame: its mean RR
// (seconds), resized along time exactly like the spectrogram's columns and repeated down every
// row. The spectrogram shows how heart rate varies; this channel shows how fast the heart beats
// (higher when awake, a slow swing around apneas), which a per-record normalisation then turns
// into "faster or slower than this night's usual".
//
// Quality: `coverage` is the fraction of the span in which consecutive kept beats are at most
// `max_gap_s` (default 3 s) apart. A window with no beats at all is not an error: its image is
// zeros and coverage 0; the dataset decides what to drop.
//
// Caching: the dataset caches images keyed on `to_string()` / `hash()`; both are stable across
// runs, builds and machines (fixed field order, shortest round-trip number formatting, FNV-1a 64,
// and a version tag bumped whenever the pipeline above changes).
//
// Speed: FFTW plans are made once per size (under a mutex: FFTW's planner is not thread-safe) and
// executed with thread-local buffers; `tf_images` processes windows in parallel with OpenMP.
// Measured (one core, -O2): 0.24 ms CPU per 5-minute 2-channel 64x64 image (0.12 ms per channel;
// 32x32: 0.16 ms), i.e. 17,280 windows (36 nights of minutes) in ~4 s, ~2 s on 2 cores.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/signal.h"

namespace sleepnet::data {

enum class SpecNormalization { None, ZScore, MinMax };
enum class Detrend { Constant, Linear };

struct SpectrogramSettings {
  double context_s = 120.0;        // seconds added before and after the scored window
  double series_fs_hz = 4.0;       // uniform rate of the RR / amplitude series
  Interp interp = Interp::Linear;  // beat series -> uniform series
  double stft_window_s = 64.0;     // frame length
  double overlap = 0.9375;         // fraction of a frame shared with the next, [0, 1)
  int nfft = 0;                    // FFT length (>= frame samples); 0 = next pow2 >= 2 * frame
  Detrend detrend = Detrend::Constant;
  double f_min_hz = 0.01;
  double f_max_hz = 0.5;
  bool log_frequency = false;      // rows spaced logarithmically in frequency (needs f_min > 0)
  int height = 64;                 // rows (frequency)
  int width = 64;                  // columns (time)
  bool log_scale = true;
  double log_floor_rel = 1e-6;
  SpecNormalization normalization = SpecNormalization::ZScore;
  bool amplitude_channel = true;   // add the R-amplitude (EDR) channel
  bool level_channel = false;      // add the heart-rate level channel (mean RR of each frame)
  bool trace_channel = false;      // add the RR trace channel (mean RR of each column's time slice)
  double max_gap_s = 3.0;          // for `coverage`

  int channels() const {
    return 1 + (amplitude_channel ? 1 : 0) + (level_channel ? 1 : 0) + (trace_channel ? 1 : 0);
  }
  int level_index() const { return amplitude_channel ? 2 : 1; }  // its channel, when on
  int trace_index() const { return channels() - 1; }              // its channel, when on (the last)
  int frame_samples() const;       // round(stft_window_s * series_fs_hz)
  int hop_samples() const;         // max(1, round(frame_samples * (1 - overlap)))
  int fft_size() const;            // nfft, or its automatic value
  // Throws sleepnet::Error naming the field when a value is out of range, or when the span of a
  // window of `duration_s` would be shorter than one frame.
  void validate(double duration_s = 60.0) const;
  // "spectrogram v1 context_s=120 series_fs_hz=4 ..." (every field, fixed order).
  std::string to_string() const;
  uint64_t hash() const;           // FNV-1a 64 of to_string()
  // Centre frequency (Hz) of each image row, row 0 first.
  std::vector<double> row_frequencies() const;
};

// A float image [channels][height][width], row-major.
struct TFImage {
  int channels = 0, height = 0, width = 0;
  std::vector<float> data;
  double coverage = 0.0;          // see the top of this file
  bool amplitude_missing = false; // channel 1 is zeros because no amplitude was available
  float at(int c, int h, int w) const { return data[(size_t(c) * height + h) * width + w]; }
};

// The image of the window [start_s, start_s + duration_s) of a record whose cleaned beats are
// `beats` (times from the record start). Beats outside the span are ignored; `beats` must be sorted
// by time (as beat_series / clean_beat_series produce).
TFImage tf_image(const BeatSeries& beats, double start_s, double duration_s,
                 const SpectrogramSettings& settings);

// tf_image for many windows of one record (OpenMP-parallel over windows). Result i is the image
// of [starts[i], starts[i] + duration_s).
std::vector<TFImage> tf_images(const BeatSeries& beats, std::span<const double> starts,
                               double duration_s, const SpectrogramSettings& settings);

// One channel from an already uniform series (sampled at settings.series_fs_hz): steps 3-7.
// series must be finite and at least one frame long. out: [height][width].
void spectrogram_channel(std::span<const float> series, const SpectrogramSettings& settings,
                         float* out);

// The level channel from the same uniform series: the mean of each STFT frame, resized along time
// as spectrogram_channel resizes its columns, every row equal; normalised per image like the other
// channels (`normalization`; no log scale). out: [height][width].
void level_channel(std::span<const float> series, const SpectrogramSettings& settings, float* out);

// The trace channel from the same uniform series: column c is the mean of the series over the
// time slice between the centres of the frames that column c of the spectrogram stands for (the
// spectrogram's columns tile the frame centres, so the slices tile them too: about 11 s each for a
// 420-s span in 32 columns), every row equal; normalised like level_channel. Where the level
// channel shows each 64-s frame's mean (the slow course of heart rate), this one keeps the cycles
// of 30-90 s that apneas leave in it. out: [height][width].
void trace_channel(std::span<const float> series, const SpectrogramSettings& settings, float* out);

}  // namespace sleepnet::data
