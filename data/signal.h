// signal.h: the signal processing sleepnet needs between raw recordings and the models.
//
// Three groups of plain functions over std::vector / std::span (no tensors, no autograd):
//
//  1. Filters for sampled signals (ECG, respiration).
//     - Butterworth low/high/band-pass filters designed here, in code, as a cascade of second-order
//       sections (SOS, "biquads"): analog prototype poles -> frequency transform -> bilinear
//       transform with pre-warping -> pairs of conjugate poles -> one biquad each. SOS rather than one
//       long polynomial because a high-order polynomial loses precision (float or double) near
//       z = 1, where the ECG's 0.5 Hz corner sits at 250 Hz.
//     - `sos_filter` runs the cascade forward (causal, transposed direct form II, in double).
//     - `filtfilt` runs it forward then backward: zero phase, squared magnitude (so a band-pass of
//       order N has the attenuation of order 2N and exactly -6 dB at its corners). Edges: the signal
//       is extended by an odd reflection about its end samples (2*x[0] - x[k]) over `padlen`
//       samples, and each pass starts from the filter's steady state for the first input sample, so
//       a constant or slowly varying signal gives no start-up transient. padlen defaults to the
//       length over which the slowest pole decays to 1e-3, capped at n-1.
//     - `moving_average` (centered, odd width, shrinking window at the edges) and `median_filter`
//       (centered, odd width, shrinking window at the edges).
//     Non-finite samples: the filters refuse them (Error naming the function and the sample index);
//     `interpolate_nonfinite` fills NaN/Inf runs linearly first when the caller wants that.
//
//  2. Beat series: R-peak times (sample indices) -> RR intervals and R amplitudes at the beat times
//     (`beat_series`), then cleaning (`clean_beat_series`):
//       a. non-finite RR or amplitude -> removed;
//       b. physiological range: RR outside [rr_min_s, rr_max_s] (default 0.3-2.0 s, 30-200 bpm);
//       c. ectopic / outlier beats: |RR - local median| / local median > max_rel_diff (default
//          0.2), the median taken over `median_half_window` beats on each side (default 5, i.e. an
//          11-beat median), as in the classic "20 % rule" of HRV editing;
//       with `CleanStats` counting what was removed and why. Removed intervals leave gaps: the
//       resampler bridges them, so the spectrogram sees no spurious steps.
//
//  3. Resampling of an irregular series (t_i, v_i) to a uniform grid (`resample_uniform`), e.g. RR at
//     4 Hz: linear interpolation, or monotone cubic (PCHIP, Fritsch-Carlson) which is smooth but
//     never overshoots between beats. Outside [t_first, t_last] the edge value is held.
//
//  4. Respiratory signals, where a record has them (airflow, chest/abdominal effort, SpO2):
//     - `find_desaturations`: SpO2 averaged per second (values outside 50-100 % are invalid and
//       bridged); a desaturation starts where SpO2 falls `min_drop_pct` (default 3) below the
//       highest value of the preceding `baseline_window_s` (default 60 s), its nadir is the lowest
//       value before SpO2 comes back within 1 point of that baseline (or `max_duration_s`).
//       Count / hours = the oxygen desaturation index (ODI).
//     - `respiration_amplitude`: breathing amplitude once per second: the signal band-passed to
//       0.05-1 Hz (zero phase), then max - min over a centred `amplitude_window_s` (default 6 s,
//       longer than one breath at >= 10 breaths/min).
//     - `detect_flow_events`: apneas and hypopneas from airflow, after the AASM rules in a simple
//       form: amplitude relative to a baseline (the 80th percentile of the preceding 120 s);
//       a run of seconds at <= 70 % of baseline lasting >= 10 s (after adding back the half
//       amplitude window at each end) is an event; an apnea when its median ratio is <= 10 %
//       (a >= 90 % drop), else a hypopnea, which needs a >= 3 % desaturation starting within the
//       event or the 30 s after it when SpO2 is given. Apneas are central when the effort
//       amplitude (if given) stays <= 20 % of its own baseline, obstructive otherwise.
//
// Every function accepts empty input (empty result, or a clear Error where a result cannot be
// defined, e.g. resampling zero points) and never crashes on NaN or constant signals.
#pragma once

#include <complex>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace sleepnet::data {

// ---------------------------------------------------------------------------------------------
// 1. Filters
// ---------------------------------------------------------------------------------------------

// One second-order section:  H(z) = (b0 + b1 z^-1 + b2 z^-2) / (1 + a1 z^-1 + a2 z^-2).
// A first-order section has b2 = a2 = 0.
struct Biquad {
  double b0 = 1, b1 = 0, b2 = 0;
  double a1 = 0, a2 = 0;
};

// A cascade of biquads, applied in order.
struct SosFilter {
  std::vector<Biquad> sections;
  int order = 0;  // order of the designed filter (a band-pass of prototype order N has order 2N)
};

// Butterworth designs. `order` in [1, 12]; frequencies in Hz, strictly inside (0, fs/2).
// Unit gain at DC (low-pass), at Nyquist (high-pass), at the geometric centre (band-pass).
SosFilter butter_lowpass(int order, double fc_hz, double fs_hz);
SosFilter butter_highpass(int order, double fc_hz, double fs_hz);
// Prototype order N -> digital order 2N; pass band [f_lo_hz, f_hi_hz].
SosFilter butter_bandpass(int order, double f_lo_hz, double f_hi_hz, double fs_hz);

// Complex response of the (single-pass) filter at frequency f_hz.
std::complex<double> frequency_response(const SosFilter& filter, double f_hz, double fs_hz);

// Causal filtering from rest (zero initial state). x: [n] -> [n].
std::vector<float> sos_filter(const SosFilter& filter, std::span<const float> x);

// Zero-phase forward-backward filtering (see the top of this file). padlen < 0: default.
std::vector<float> filtfilt(const SosFilter& filter, std::span<const float> x, int64_t padlen = -1);

// The ECG band-pass used before beat detection and R-amplitude measurement: Butterworth prototype
// order 2, applied with filtfilt. Default band 0.5-40 Hz (the upper corner drops to 0.45 * fs when
// fs is low, e.g. 100 Hz records keep 0.5-40 Hz, but 50 Hz would give 0.5-22.5 Hz).
std::vector<float> bandpass_ecg(std::span<const float> ecg, double fs_hz, double f_lo_hz = 0.5,
                                double f_hi_hz = 40.0);

// Centered moving average of odd `width` >= 1; near the edges the window shrinks symmetrically
// clipped to the signal (so a constant signal stays exactly constant).
std::vector<float> moving_average(std::span<const float> x, int width);

// Centered running median of odd `width` >= 1, window clipped at the edges (median of what is
// inside). NaN input is refused like the filters.
std::vector<float> median_filter(std::span<const float> x, int width);

// Replaces runs of NaN/Inf by linear interpolation between the finite neighbours (edge runs take
// the nearest finite value). Returns the number of samples replaced. An all-non-finite signal is
// set to 0 and reported as fully replaced.
int64_t interpolate_nonfinite(std::vector<float>& x);

// Throws Error("<what>: sample i is NaN/Inf") at the first non-finite value.
void require_finite(std::span<const float> x, const char* what);

// ---------------------------------------------------------------------------------------------
// 2. Beat series
// ---------------------------------------------------------------------------------------------

// An irregular series indexed by beat. Entry i describes beat i+1 of the input: its time, the RR
// interval that ends at it, and its R amplitude (NaN when the record has no ECG to measure it).
struct BeatSeries {
  std::vector<double> time_s;  // beat time in seconds from the record start, increasing
  std::vector<float> rr_s;     // RR interval ending at this beat, seconds
  std::vector<float> amp;      // R amplitude at this beat (signal units, e.g. mV): either empty
                               // (no ECG to measure it) or one per beat, NaN where unknown
  size_t size() const { return time_s.size(); }
  bool has_amplitude() const;  // true when at least one amplitude is finite
};

// R-peak sample indices (increasing; duplicates and decreasing indices are an Error naming the
// position) -> series of n-1 intervals. r_amp: empty (then `amp` stays empty), or one amplitude
// per peak (the amplitude of the beat ending each interval is kept). Fewer than 2 peaks -> empty.
BeatSeries beat_series(std::span<const int64_t> r_samples, double fs_hz,
                       std::span<const float> r_amp = {});

struct CleanConfig {
  double rr_min_s = 0.3;         // 200 bpm
  double rr_max_s = 2.0;         // 30 bpm
  double max_rel_diff = 0.2;     // |RR - local median| / local median above this: ectopic/outlier
  int median_half_window = 5;    // local median over 2*h+1 beats (in-range beats only)
  bool remove_outliers = true;   // step c on/off
};

struct CleanStats {
  int64_t input = 0;             // intervals in
  int64_t removed_nonfinite = 0;
  int64_t removed_range = 0;
  int64_t removed_outlier = 0;
  int64_t kept = 0;
  std::string to_string() const;
};

// Removes non-finite, out-of-range and ectopic/outlier intervals (see top of file); a removed
// interval takes its amplitude with it, a NaN amplitude on a good interval is kept as NaN.
// Error if the fields have different lengths or the times are not strictly increasing.
BeatSeries clean_beat_series(const BeatSeries& in, const CleanConfig& cfg = {},
                             CleanStats* stats = nullptr);

// ---------------------------------------------------------------------------------------------
// 3. Resampling to a uniform grid
// ---------------------------------------------------------------------------------------------

enum class Interp { Linear, Pchip };

// Samples the series (t, v) at t0 + k / fs_hz, k = 0..n-1. t must be strictly increasing and the
// same length as v; non-finite v entries are skipped (treated as missing). Outside the covered
// range the first/last value is held. Error if no finite point is left (nothing to interpolate).
std::vector<float> resample_uniform(std::span<const double> t, std::span<const float> v, double t0,
                                    double fs_hz, int64_t n, Interp method = Interp::Linear);

// ---------------------------------------------------------------------------------------------
// 4. Respiratory signals
// ---------------------------------------------------------------------------------------------

struct Desaturation {
  double start_s = 0;       // first second below the baseline
  double nadir_s = 0;
  double end_s = 0;         // back within 1 point of the baseline (or cut at max_duration_s)
  float baseline_pct = 0;
  float nadir_pct = 0;
  float drop_pct() const { return baseline_pct - nadir_pct; }
};

struct DesaturationConfig {
  double min_drop_pct = 3.0;
  double baseline_window_s = 60.0;
  double max_duration_s = 180.0;
};

// spo2 in percent at fs_hz (any rate > 0; typically 1-256 Hz). Events in time order.
std::vector<Desaturation> find_desaturations(std::span<const float> spo2, double fs_hz,
                                             const DesaturationConfig& cfg = {});

// Breathing amplitude (signal units) at 1 Hz: value k describes second [k, k+1). Non-finite
// samples are bridged first. Empty input -> empty result; error if fs_hz < 4 Hz.
std::vector<float> respiration_amplitude(std::span<const float> resp, double fs_hz,
                                         double amplitude_window_s = 6.0);

enum class FlowEventType : uint8_t {
  Apnea,             // >= 90 % drop, no effort signal to classify it
  ObstructiveApnea,  // ... with effort continuing
  CentralApnea,      // ... with effort absent
  Hypopnea,          // >= 30 % drop (with a desaturation when SpO2 is given)
};
const char* flow_event_name(FlowEventType t);  // "apnea", "obstructive", "central", "hypopnea"

struct FlowEvent {
  FlowEventType type = FlowEventType::Apnea;
  double onset_s = 0;
  double duration_s = 0;
  float amplitude_ratio = 0;  // median amplitude / baseline during the event
};

struct FlowEventConfig {
  double amplitude_window_s = 6.0;
  double baseline_window_s = 120.0;
  double baseline_percentile = 0.8;
  double apnea_ratio = 0.1;
  double hypopnea_ratio = 0.7;
  double min_duration_s = 10.0;
  double max_duration_s = 120.0;
  double central_effort_ratio = 0.2;
  double desaturation_search_s = 30.0;  // after the event end
};

// flow (airflow), optional effort (chest or abdomen) and spo2, all at fs_hz and of equal length
// (Error otherwise). Events in time order.
std::vector<FlowEvent> detect_flow_events(std::span<const float> flow, double fs_hz,
                                          std::span<const float> effort = {},
                                          std::span<const float> spo2 = {},
                                          const FlowEventConfig& cfg = {});

}  // namespace sleepnet::data
