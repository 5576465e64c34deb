// spectrogram.cpp: short-time FFT of the RR / R-amplitude series of a window, resized to an image.
// See spectrogram.h for every choice and its reason.
#include "data/spectrogram.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <map>
#include <mutex>
#include <numbers>

#include <fftw3.h>
#include <fmt/format.h>

#include "tensor/tensor.h"  // sleepnet::Error

namespace sleepnet::data {

namespace {

constexpr const char* kVersion = "spectrogram v1";

// ---------------------------------------------------------------------------------------------
// FFTW plans: one per size, made once under a mutex (the planner is not thread-safe), executed
// concurrently with the new-array interface on thread-local fftwf_malloc'd buffers (same alignment
// as the planning buffers, as FFTW requires).
// ---------------------------------------------------------------------------------------------

std::mutex g_plan_mutex;

// Plans live until the program ends; destroying them then keeps leak checkers quiet.
struct PlanCache {
  std::map<int, fftwf_plan> plans;
  ~PlanCache() {
    for (auto& [n, p] : plans) fftwf_destroy_plan(p);
  }
};

fftwf_plan r2c_plan(int n) {
  static PlanCache cache;
  auto& plans = cache.plans;
  std::lock_guard<std::mutex> lock(g_plan_mutex);
  auto it = plans.find(n);
  if (it != plans.end()) return it->second;
  float* in = fftwf_alloc_real(n);
  fftwf_complex* out = fftwf_alloc_complex(n / 2 + 1);
  fftwf_plan p = fftwf_plan_dft_r2c_1d(n, in, out, FFTW_ESTIMATE);
  fftwf_free(in);
  fftwf_free(out);
  if (!p) throw Error(fmt::format("spectrogram: FFTW could not plan a real FFT of size {}", n));
  plans.emplace(n, p);
  return p;
}

struct FftBuffers {
  int n = 0;
  float* in = nullptr;
  fftwf_complex* out = nullptr;
  std::vector<float> hann;  // periodic Hann window of the current frame length
  int hann_len = 0;
  ~FftBuffers() {
    if (in) fftwf_free(in);
    if (out) fftwf_free(out);
  }
  void ensure(int nfft) {
    if (n == nfft) return;
    if (in) fftwf_free(in);
    if (out) fftwf_free(out);
    in = fftwf_alloc_real(nfft);
    out = fftwf_alloc_complex(nfft / 2 + 1);
    n = nfft;
  }
  const std::vector<float>& window(int len) {
    if (hann_len != len) {
      hann.resize(len);
      for (int i = 0; i < len; ++i)
        hann[i] = float(0.5 - 0.5 * std::cos(2 * std::numbers::pi * i / len));
      hann_len = len;
    }
    return hann;
  }
};

FftBuffers& thread_buffers() {
  thread_local FftBuffers buffers;
  return buffers;
}

// ---------------------------------------------------------------------------------------------
// Axis resampling as a sparse matrix: out[i] = sum_k w * in[k]. Input sample k sits at x0 + k*dx and
// stands for the cell [x - dx/2, x + dx/2]. Output cell i is [edges[i], edges[i+1]]: area average
// over the input cells when it is at least dx wide, otherwise linear interpolation at its centre.
// ---------------------------------------------------------------------------------------------

struct AxisMap {
  std::vector<int> offset;  // size n_out + 1
  std::vector<int> index;
  std::vector<float> weight;
};

AxisMap axis_map(int n_in, double x0, double dx, const std::vector<double>& edges) {
  AxisMap m;
  const int n_out = static_cast<int>(edges.size()) - 1;
  m.offset.push_back(0);
  for (int i = 0; i < n_out; ++i) {
    double a = edges[i], b = edges[i + 1];
    if (b - a >= dx * (1 - 1e-9)) {
      int k0 = std::max(0, int(std::floor((a - x0) / dx + 0.5)));
      int k1 = std::min(n_in - 1, int(std::ceil((b - x0) / dx - 0.5)));
      double total = 0;
      size_t first = m.index.size();
      for (int k = k0; k <= k1; ++k) {
        double lo = std::max(a, x0 + (k - 0.5) * dx), hi = std::min(b, x0 + (k + 0.5) * dx);
        if (hi > lo) {
          m.index.push_back(k);
          m.weight.push_back(float(hi - lo));
          total += hi - lo;
        }
      }
      if (total <= 0) {  // cell entirely outside the input: nearest sample
        m.index.push_back(std::clamp(int(std::lround(((a + b) / 2 - x0) / dx)), 0, n_in - 1));
        m.weight.push_back(1.0f);
      } else {
        for (size_t j = first; j < m.weight.size(); ++j) m.weight[j] = float(m.weight[j] / total);
      }
    } else {
      double u = std::clamp(((a + b) / 2 - x0) / dx, 0.0, double(n_in - 1));
      int k = std::min(int(std::floor(u)), n_in - 1);
      double f = u - k;
      m.index.push_back(k);
      m.weight.push_back(float(1 - f));
      if (f > 0 && k + 1 < n_in) {
        m.index.push_back(k + 1);
        m.weight.push_back(float(f));
      }
    }
    m.offset.push_back(static_cast<int>(m.index.size()));
  }
  return m;
}

std::vector<double> frequency_edges(const SpectrogramSettings& s) {
  std::vector<double> e(s.height + 1);
  for (int i = 0; i <= s.height; ++i) {
    double u = double(i) / s.height;
    e[i] = s.log_frequency ? s.f_min_hz * std::pow(s.f_max_hz / s.f_min_hz, u)
                           : s.f_min_hz + u * (s.f_max_hz - s.f_min_hz);
  }
  return e;
}

void detrend_frame(float* x, int n, Detrend mode) {
  double mean = 0;
  for (int i = 0; i < n; ++i) mean += x[i];
  mean /= n;
  if (mode == Detrend::Constant || n < 2) {
    for (int i = 0; i < n; ++i) x[i] = float(x[i] - mean);
    return;
  }
  // least-squares line over i = 0..n-1
  double ic = (n - 1) / 2.0, sxy = 0, sxx = 0;
  for (int i = 0; i < n; ++i) {
    sxy += (i - ic) * (x[i] - mean);
    sxx += (i - ic) * (i - ic);
  }
  double slope = sxy / sxx;
  for (int i = 0; i < n; ++i) x[i] = float(x[i] - mean - slope * (i - ic));
}

void normalise(float* v, size_t n, SpecNormalization mode) {
  if (mode == SpecNormalization::None || n == 0) return;
  if (mode == SpecNormalization::ZScore) {
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; ++i) mean += v[i];
    mean /= double(n);
    for (size_t i = 0; i < n; ++i) var += (v[i] - mean) * (v[i] - mean);
    double sd = std::sqrt(var / double(n));
    if (!(sd > 1e-6 * std::max(1.0, std::abs(mean)))) {
      std::fill(v, v + n, 0.0f);
      return;
    }
    for (size_t i = 0; i < n; ++i) v[i] = float((v[i] - mean) / sd);
  } else {
    auto [lo, hi] = std::minmax_element(v, v + n);
    double a = *lo, b = *hi;
    if (!(b - a > 1e-6 * std::max(1.0, std::abs(b)))) {
      std::fill(v, v + n, 0.0f);
      return;
    }
    for (size_t i = 0; i < n; ++i) v[i] = float((v[i] - a) / (b - a));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

int SpectrogramSettings::frame_samples() const {
  return static_cast<int>(std::lround(stft_window_s * series_fs_hz));
}

int SpectrogramSettings::hop_samples() const {
  return std::max(1, static_cast<int>(std::lround(frame_samples() * (1.0 - overlap))));
}

int SpectrogramSettings::fft_size() const {
  if (nfft > 0) return nfft;
  int n = 1;
  while (n < 2 * frame_samples()) n *= 2;
  return n;
}

void SpectrogramSettings::validate(double duration_s) const {
  auto bad = [](const std::string& field, const std::string& want, const std::string& got) {
    throw Error(fmt::format("SpectrogramSettings: field '{}' must be {}, got {}", field, want, got));
  };
  if (!std::isfinite(context_s) || context_s < 0) bad("context_s", ">= 0", fmt::format("{}", context_s));
  if (!std::isfinite(series_fs_hz) || series_fs_hz <= 0 || series_fs_hz > 1000)
    bad("series_fs_hz", "in (0, 1000]", fmt::format("{}", series_fs_hz));
  if (!std::isfinite(stft_window_s) || frame_samples() < 4 || frame_samples() > (1 << 20))
    bad("stft_window_s", "4 to 2^20 samples long at series_fs_hz", fmt::format("{}", stft_window_s));
  if (!(overlap >= 0 && overlap < 1)) bad("overlap", "in [0, 1)", fmt::format("{}", overlap));
  if (nfft != 0 && (nfft < frame_samples() || nfft > (1 << 22)))
    bad("nfft", fmt::format("0 (auto) or in [frame samples {}, 2^22]", frame_samples()), fmt::format("{}", nfft));
  if (!std::isfinite(f_min_hz) || f_min_hz < 0 || (log_frequency && f_min_hz <= 0))
    bad("f_min_hz", log_frequency ? "> 0 (log_frequency)" : ">= 0", fmt::format("{}", f_min_hz));
  if (!std::isfinite(f_max_hz) || f_max_hz <= f_min_hz || f_max_hz > series_fs_hz / 2)
    bad("f_max_hz", fmt::format("in (f_min_hz, series_fs_hz / 2 = {}]", series_fs_hz / 2), fmt::format("{}", f_max_hz));
  if (height < 1 || height > 1024) bad("height", "in [1, 1024]", fmt::format("{}", height));
  if (width < 1 || width > 1024) bad("width", "in [1, 1024]", fmt::format("{}", width));
  if (!(log_floor_rel > 0 && log_floor_rel < 1)) bad("log_floor_rel", "in (0, 1)", fmt::format("{}", log_floor_rel));
  if (!(max_gap_s > 0)) bad("max_gap_s", "> 0", fmt::format("{}", max_gap_s));
  if (!std::isfinite(duration_s) || duration_s <= 0)
    throw Error(fmt::format("spectrogram: window duration must be positive, got {}", duration_s));
  double span = duration_s + 2 * context_s;
  if (std::lround(span * series_fs_hz) < frame_samples())
    throw Error(fmt::format("SpectrogramSettings: window of {} s + 2 x context_s {} s = {} s is shorter "
                            "than one frame (stft_window_s {} s)", duration_s, context_s, span, stft_window_s));
}

std::string SpectrogramSettings::to_string() const {
  auto interp_name = interp == Interp::Linear ? "linear" : "pchip";
  auto norm_name = normalization == SpecNormalization::None     ? "none"
                   : normalization == SpecNormalization::ZScore ? "zscore"
                                                                : "minmax";
  return fmt::format(
      "{} context_s={} series_fs_hz={} interp={} stft_window_s={} overlap={} nfft={} detrend={} "
      "f_min_hz={} f_max_hz={} log_frequency={} height={} width={} log_scale={} log_floor_rel={} "
      "normalization={} amplitude_channel={} max_gap_s={}{}",
      kVersion, context_s, series_fs_hz, interp_name, stft_window_s, overlap, nfft,
      detrend == Detrend::Constant ? "constant" : "linear", f_min_hz, f_max_hz, int(log_frequency),
      height, width, int(log_scale), log_floor_rel, norm_name, int(amplitude_channel), max_gap_s,
      // Named only when on, so the images (and cache keys) of every earlier setting stay as they were.
      std::string(level_channel ? " level_channel=1" : "") + (trace_channel ? " trace_channel=1" : ""));
}

uint64_t SpectrogramSettings::hash() const {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : to_string()) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::vector<double> SpectrogramSettings::row_frequencies() const {
  std::vector<double> e = frequency_edges(*this), c(height);
  for (int i = 0; i < height; ++i)
    c[i] = log_frequency ? std::sqrt(e[i] * e[i + 1]) : 0.5 * (e[i] + e[i + 1]);
  return c;
}

// ---------------------------------------------------------------------------------------------
// One channel
// ---------------------------------------------------------------------------------------------

namespace {

// The STFT frames of a series of N samples (nf frames of L samples, hop apart, centred in the
// series) and the map from frame index to image column, shared by both kinds of channel.
struct FrameGrid {
  int nf = 0;
  int64_t start = 0;          // first sample of frame 0
  std::vector<double> edges;  // column c covers frame indices [edges[c], edges[c + 1])
  AxisMap tmap;
};

FrameGrid frame_grid(std::span<const float> series, const SpectrogramSettings& s, const char* who) {
  const int L = s.frame_samples(), hop = s.hop_samples();
  const int64_t N = static_cast<int64_t>(series.size());
  if (N < L) throw Error(fmt::format("{}: series of {} samples is shorter than one frame ({})", who, N, L));
  require_finite(series, who);
  FrameGrid g;
  g.nf = static_cast<int>(1 + (N - L) / hop);
  g.start = (N - (L + int64_t(g.nf - 1) * hop)) / 2;
  g.edges.resize(s.width + 1);
  for (int i = 0; i <= s.width; ++i) g.edges[i] = -0.5 + double(i) * g.nf / s.width;
  g.tmap = axis_map(g.nf, 0.0, 1.0, g.edges);
  return g;
}

// prefix[i] = series[0] + ... + series[i - 1] (in double): any run's mean in O(1).
std::vector<double> prefix_sums(std::span<const float> series) {
  std::vector<double> prefix(series.size() + 1, 0.0);
  for (size_t i = 0; i < series.size(); ++i) prefix[i + 1] = prefix[i] + series[i];
  return prefix;
}

// out[h][c] = column[c] for every row h, then the per-image normalisation: the level and trace
// channels.
void column_channel(const std::vector<double>& column, const SpectrogramSettings& s, float* out) {
  for (int c = 0; c < s.width; ++c)
    for (int h = 0; h < s.height; ++h) out[size_t(h) * s.width + c] = float(column[c]);
  normalise(out, size_t(s.height) * s.width, s.normalization);
}

}  // namespace

void spectrogram_channel(std::span<const float> series, const SpectrogramSettings& s, float* out) {
  const int L = s.frame_samples(), hop = s.hop_samples(), nfft = s.fft_size();
  const FrameGrid grid = frame_grid(series, s, "spectrogram_channel");
  const int nf = grid.nf;
  const int64_t start = grid.start;
  const AxisMap& tmap = grid.tmap;

  // Frequency map over bins k at k * fs / nfft (the time map over frame indices is the grid's).
  const double df = s.series_fs_hz / nfft;
  const int nbins = nfft / 2 + 1;
  AxisMap fmap = axis_map(nbins, 0.0, df, frequency_edges(s));
  int kmin = nbins, kmax = -1;
  for (int k : fmap.index) {
    kmin = std::min(kmin, k);
    kmax = std::max(kmax, k);
  }

  FftBuffers& buf = thread_buffers();
  buf.ensure(nfft);
  const std::vector<float>& w = buf.window(L);
  double wss = 0;
  for (float v : w) wss += double(v) * v;
  const double scale = 1.0 / (s.series_fs_hz * wss);  // PSD: |X|^2 / (fs * sum w^2), one-sided x2
  fftwf_plan plan = r2c_plan(nfft);

  // cols[h][j]: frequency-resized power of frame j. [H][nf]
  std::vector<double> cols(size_t(s.height) * nf);
  std::vector<double> power(kmax - kmin + 1);
  // Prefix sums give each frame's mean in O(1) (constant detrend, the default).
  const std::vector<double> prefix = prefix_sums(series);
  float* in = buf.in;
  std::fill(in + L, in + nfft, 0.0f);  // zero padding, never overwritten below
  for (int j = 0; j < nf; ++j) {
    const int64_t f0 = start + int64_t(j) * hop;
    const float* x = series.data() + f0;
    if (s.detrend == Detrend::Constant) {
      const float mean = float((prefix[f0 + L] - prefix[f0]) / L);
      for (int i = 0; i < L; ++i) in[i] = (x[i] - mean) * w[i];
    } else {
      std::copy(x, x + L, in);
      detrend_frame(in, L, s.detrend);
      for (int i = 0; i < L; ++i) in[i] *= w[i];
    }
    fftwf_execute_dft_r2c(plan, in, buf.out);
    for (int k = kmin; k <= kmax; ++k) {
      double re = buf.out[k][0], im = buf.out[k][1];
      double one_sided = (k == 0 || 2 * k == nfft) ? 1.0 : 2.0;
      power[k - kmin] = (re * re + im * im) * scale * one_sided;
    }
    for (int h = 0; h < s.height; ++h) {
      double acc = 0;
      for (int q = fmap.offset[h]; q < fmap.offset[h + 1]; ++q) acc += fmap.weight[q] * power[fmap.index[q] - kmin];
      cols[size_t(h) * nf + j] = acc;
    }
  }
  // Time resize: out[h][c] = sum_j tmap(c, j) * cols[h][j]
  double pmax = 0;
  for (int h = 0; h < s.height; ++h) {
    for (int c = 0; c < s.width; ++c) {
      double acc = 0;
      for (int q = tmap.offset[c]; q < tmap.offset[c + 1]; ++q) acc += tmap.weight[q] * cols[size_t(h) * nf + tmap.index[q]];
      out[size_t(h) * s.width + c] = float(acc);
      pmax = std::max(pmax, acc);
    }
  }
  const size_t npix = size_t(s.height) * s.width;
  if (s.log_scale) {
    double floor = s.log_floor_rel * pmax + 1e-30;
    const float ffloor = float(floor);
    for (size_t i = 0; i < npix; ++i) out[i] = 10.0f * std::log10(std::max(0.0f, out[i]) + ffloor);
  }
  normalise(out, npix, s.normalization);
}

void level_channel(std::span<const float> series, const SpectrogramSettings& s, float* out) {
  const int L = s.frame_samples(), hop = s.hop_samples();
  const FrameGrid g = frame_grid(series, s, "level_channel");  // spectrogram_channel's frames
  const std::vector<double> prefix = prefix_sums(series);
  std::vector<double> frame_mean(g.nf), column(s.width, 0.0);
  for (int j = 0; j < g.nf; ++j) {
    const int64_t f0 = g.start + int64_t(j) * hop;
    frame_mean[j] = (prefix[f0 + L] - prefix[f0]) / L;
  }
  for (int c = 0; c < s.width; ++c)
    for (int q = g.tmap.offset[c]; q < g.tmap.offset[c + 1]; ++q) column[c] += g.tmap.weight[q] * frame_mean[g.tmap.index[q]];
  column_channel(column, s, out);
}

void trace_channel(std::span<const float> series, const SpectrogramSettings& s, float* out) {
  const int L = s.frame_samples(), hop = s.hop_samples();
  const int64_t N = static_cast<int64_t>(series.size());
  const FrameGrid g = frame_grid(series, s, "trace_channel");  // spectrogram_channel's frames
  const std::vector<double> prefix = prefix_sums(series);
  // Frame j is centred at sample start + L/2 + j*hop, and column c covers the frames between its
  // edges: so its slice of samples runs between those frames' centres.
  const double centre0 = g.start + 0.5 * L;
  std::vector<double> column(s.width);
  for (int c = 0; c < s.width; ++c) {
    int64_t a = std::llround(centre0 + g.edges[c] * hop), b = std::llround(centre0 + g.edges[c + 1] * hop);
    a = std::clamp<int64_t>(a, 0, N - 1);
    b = std::clamp<int64_t>(b, a + 1, N);
    column[c] = (prefix[b] - prefix[a]) / double(b - a);
  }
  column_channel(column, s, out);
}

// ---------------------------------------------------------------------------------------------
// Windows of a record
// ---------------------------------------------------------------------------------------------

namespace {

TFImage tf_image_unchecked(const BeatSeries& beats, double start_s, double duration_s,
                           const SpectrogramSettings& s) {
  TFImage img;
  img.channels = s.channels();
  img.height = s.height;
  img.width = s.width;
  const size_t npix = size_t(s.height) * s.width;
  img.data.assign(npix * img.channels, 0.0f);

  const double t0 = start_s - s.context_s, t1 = start_s + duration_s + s.context_s;
  const int64_t N = std::lround((t1 - t0) * s.series_fs_hz);
  const auto& t = beats.time_s;
  // Beats in [t0, t1] plus one on each side, so interpolation at the span edges is not a hold.
  size_t lo = std::lower_bound(t.begin(), t.end(), t0) - t.begin();
  size_t hi = std::upper_bound(t.begin(), t.end(), t1) - t.begin();
  if (lo > 0) --lo;
  if (hi < t.size()) ++hi;

  // Coverage: span time between consecutive kept beats at most max_gap_s apart.
  double covered = 0;
  for (size_t i = lo; i + 1 < hi; ++i) {
    if (t[i + 1] - t[i] > s.max_gap_s) continue;
    double a = std::max(t[i], t0), b = std::min(t[i + 1], t1);
    if (b > a) covered += b - a;
  }
  img.coverage = std::clamp(covered / (t1 - t0), 0.0, 1.0);

  std::span<const double> ts(t.data() + lo, hi - lo);
  auto channel = [&](std::span<const float> values, int c, bool rr) -> bool {
    bool any = std::any_of(values.begin(), values.end(), [](float v) { return std::isfinite(v); });
    if (!any) return false;
    std::vector<float> u = resample_uniform(ts, values, t0, s.series_fs_hz, N, s.interp);
    spectrogram_channel(u, s, img.data.data() + npix * c);
    if (rr && s.level_channel) level_channel(u, s, img.data.data() + npix * s.level_index());
    if (rr && s.trace_channel) trace_channel(u, s, img.data.data() + npix * s.trace_index());
    return true;
  };
  if (hi > lo) channel(std::span<const float>(beats.rr_s.data() + lo, hi - lo), 0, true);
  if (s.amplitude_channel) {
    bool ok = hi > lo && !beats.amp.empty() &&
              channel(std::span<const float>(beats.amp.data() + lo, hi - lo), 1, false);
    img.amplitude_missing = !ok;
  }
  return img;
}

void check_beats(const BeatSeries& beats) {
  if (beats.rr_s.size() != beats.time_s.size() || (!beats.amp.empty() && beats.amp.size() != beats.time_s.size()))
    throw Error(fmt::format("tf_image: beat series field lengths differ (time_s {}, rr_s {}, amp {})",
                            beats.time_s.size(), beats.rr_s.size(), beats.amp.size()));
}

}  // namespace

TFImage tf_image(const BeatSeries& beats, double start_s, double duration_s, const SpectrogramSettings& s) {
  s.validate(duration_s);
  check_beats(beats);
  if (!std::isfinite(start_s)) throw Error("tf_image: window start is not finite");
  return tf_image_unchecked(beats, start_s, duration_s, s);
}

std::vector<TFImage> tf_images(const BeatSeries& beats, std::span<const double> starts,
                               double duration_s, const SpectrogramSettings& s) {
  s.validate(duration_s);
  check_beats(beats);
  for (size_t i = 0; i < starts.size(); ++i)
    if (!std::isfinite(starts[i])) throw Error(fmt::format("tf_images: window start {} is not finite", i));
  std::vector<TFImage> out(starts.size());
  std::exception_ptr error;
  const int64_t n = static_cast<int64_t>(starts.size());
#pragma omp parallel for schedule(dynamic, 8)
  for (int64_t i = 0; i < n; ++i) {
    try {
      out[i] = tf_image_unchecked(beats, starts[i], duration_s, s);
    } catch (...) {
#pragma omp critical(sleepnet_tf_images_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  return out;
}

}  // namespace sleepnet::data
