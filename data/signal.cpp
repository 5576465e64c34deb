// signal.cpp: Butterworth design, SOS filtering, filtfilt, running mean/median, beat-series
// building and cleaning, uniform resampling. See signal.h for the design notes.
#include "data/signal.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <string>

#include <fmt/format.h>

#include "tensor/tensor.h"  // sleepnet::Error (header-only use)

namespace sleepnet::data {

namespace {

using cplx = std::complex<double>;

void check_design(const char* fn, int order, double fs_hz) {
  if (order < 1 || order > 12)
    throw Error(fmt::format("{}: order must be in [1, 12], got {}", fn, order));
  if (!std::isfinite(fs_hz) || fs_hz <= 0)
    throw Error(fmt::format("{}: sampling frequency must be positive and finite, got {}", fn, fs_hz));
}

void check_freq(const char* fn, const char* name, double f, double fs_hz) {
  if (!std::isfinite(f) || f <= 0 || f >= fs_hz / 2)
    throw Error(fmt::format("{}: {} must be in (0, fs/2 = {}) Hz, got {}", fn, name, fs_hz / 2, f));
}

// Analog Butterworth prototype poles (cutoff 1 rad/s), all in the left half plane.
std::vector<cplx> prototype_poles(int n) {
  std::vector<cplx> p;
  for (int k = 0; k < n; ++k) {
    double theta = std::numbers::pi * (2.0 * k + n + 1) / (2.0 * n);
    p.push_back(std::polar(1.0, theta));
  }
  return p;
}

// Pre-warped analog frequency (rad/s) for a digital corner at f_hz.
double prewarp(double f_hz, double fs_hz) { return 2 * fs_hz * std::tan(std::numbers::pi * f_hz / fs_hz); }

cplx bilinear(cplx s, double fs_hz) { return (2 * fs_hz + s) / (2 * fs_hz - s); }

// Groups digital poles into sections (conjugate pairs, then real pairs, then one real single),
// attaching numerator `b2` (two zeros) or `b1` (one zero) to each.
SosFilter make_sos(const std::vector<cplx>& zpoles, const Biquad& num2, const Biquad& num1, int order) {
  SosFilter f;
  f.order = order;
  const double eps = 1e-10;
  std::vector<double> real;
  for (const cplx& p : zpoles) {
    if (p.imag() > eps) {
      Biquad q = num2;
      q.a1 = -2 * p.real();
      q.a2 = std::norm(p);
      f.sections.push_back(q);
    } else if (std::abs(p.imag()) <= eps) {
      real.push_back(p.real());
    }
  }
  std::sort(real.begin(), real.end());
  size_t i = 0;
  for (; i + 1 < real.size(); i += 2) {
    Biquad q = num2;
    q.a1 = -(real[i] + real[i + 1]);
    q.a2 = real[i] * real[i + 1];
    f.sections.push_back(q);
  }
  if (i < real.size()) {
    Biquad q = num1;
    q.a1 = -real[i];
    q.a2 = 0;
    f.sections.push_back(q);
  }
  return f;
}

cplx section_response(const Biquad& q, double w) {
  cplx z1 = std::polar(1.0, -w), z2 = z1 * z1;
  return (q.b0 + q.b1 * z1 + q.b2 * z2) / (1.0 + q.a1 * z1 + q.a2 * z2);
}

// Scales every section to unit magnitude at digital frequency f_ref.
void normalise(SosFilter& f, double f_ref, double fs_hz) {
  double w = 2 * std::numbers::pi * f_ref / fs_hz;
  for (Biquad& q : f.sections) {
    double g = std::abs(section_response(q, w));
    q.b0 /= g;
    q.b1 /= g;
    q.b2 /= g;
  }
}

// Steady-state internal states (transposed direct form II) of each section for a unit constant
// input to the cascade: [s1, s2] per section.
std::vector<std::array<double, 2>> steady_state(const SosFilter& f) {
  std::vector<std::array<double, 2>> zi;
  double u = 1.0;  // input level reaching this section
  for (const Biquad& q : f.sections) {
    double g = (q.b0 + q.b1 + q.b2) / (1 + q.a1 + q.a2);  // DC gain of the section
    double y = g * u;
    zi.push_back({y - q.b0 * u, q.b2 * u - q.a2 * y});
    u = y;
  }
  return zi;
}

// Runs the cascade in place over x, each section starting from state init[k] * x0_scale (or rest).
void run_cascade(const SosFilter& f, std::vector<double>& x,
                 const std::vector<std::array<double, 2>>* init, double x0_scale) {
  for (size_t k = 0; k < f.sections.size(); ++k) {
    const Biquad& q = f.sections[k];
    double s1 = 0, s2 = 0;
    if (init) {
      s1 = (*init)[k][0] * x0_scale;
      s2 = (*init)[k][1] * x0_scale;
    }
    for (double& v : x) {
      double in = v;
      double y = q.b0 * in + s1;
      s1 = q.b1 * in - q.a1 * y + s2;
      s2 = q.b2 * in - q.a2 * y;
      v = y;
    }
  }
}

// Samples until the slowest pole's impulse response falls to 1e-3.
int64_t decay_length(const SosFilter& f) {
  double rmax = 0;
  for (const Biquad& q : f.sections) {
    // poles of z^2 + a1 z + a2
    cplx disc = std::sqrt(cplx(q.a1 * q.a1 - 4 * q.a2, 0));
    cplx p1 = (-q.a1 + disc) / 2.0, p2 = (-q.a1 - disc) / 2.0;
    rmax = std::max({rmax, std::abs(p1), std::abs(p2)});
  }
  if (rmax <= 0) return 0;
  if (rmax >= 1) return INT64_MAX / 4;
  return static_cast<int64_t>(std::ceil(std::log(1e-3) / std::log(rmax)));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Design
// ---------------------------------------------------------------------------------------------

SosFilter butter_lowpass(int order, double fc_hz, double fs_hz) {
  check_design("butter_lowpass", order, fs_hz);
  check_freq("butter_lowpass", "cutoff", fc_hz, fs_hz);
  double wc = prewarp(fc_hz, fs_hz);
  std::vector<cplx> zp;
  for (cplx p : prototype_poles(order)) zp.push_back(bilinear(wc * p, fs_hz));
  // zeros at s = infinity -> z = -1
  SosFilter f = make_sos(zp, Biquad{1, 2, 1, 0, 0}, Biquad{1, 1, 0, 0, 0}, order);
  normalise(f, 0.0, fs_hz);
  return f;
}

SosFilter butter_highpass(int order, double fc_hz, double fs_hz) {
  check_design("butter_highpass", order, fs_hz);
  check_freq("butter_highpass", "cutoff", fc_hz, fs_hz);
  double wc = prewarp(fc_hz, fs_hz);
  std::vector<cplx> zp;
  for (cplx p : prototype_poles(order)) zp.push_back(bilinear(wc / p, fs_hz));
  // zeros at s = 0 -> z = +1
  SosFilter f = make_sos(zp, Biquad{1, -2, 1, 0, 0}, Biquad{1, -1, 0, 0, 0}, order);
  normalise(f, fs_hz / 2, fs_hz);
  return f;
}

SosFilter butter_bandpass(int order, double f_lo_hz, double f_hi_hz, double fs_hz) {
  check_design("butter_bandpass", order, fs_hz);
  check_freq("butter_bandpass", "low corner", f_lo_hz, fs_hz);
  check_freq("butter_bandpass", "high corner", f_hi_hz, fs_hz);
  if (!(f_lo_hz < f_hi_hz))
    throw Error(fmt::format("butter_bandpass: low corner {} Hz must be below high corner {} Hz",
                            f_lo_hz, f_hi_hz));
  double w1 = prewarp(f_lo_hz, fs_hz), w2 = prewarp(f_hi_hz, fs_hz);
  double w0 = std::sqrt(w1 * w2), bw = w2 - w1;
  std::vector<cplx> zp;
  for (cplx p : prototype_poles(order)) {
    // s^2 - p*bw*s + w0^2 = 0 for each prototype pole p (low-pass -> band-pass transform)
    cplx half = p * bw / 2.0;
    cplx root = std::sqrt(half * half - w0 * w0);
    zp.push_back(bilinear(half + root, fs_hz));
    zp.push_back(bilinear(half - root, fs_hz));
  }
  // N zeros at s = 0 (z = +1) and N at infinity (z = -1): one of each per section.
  SosFilter f = make_sos(zp, Biquad{1, 0, -1, 0, 0}, Biquad{1, 0, -1, 0, 0}, 2 * order);
  double f0 = fs_hz / std::numbers::pi * std::atan(w0 / (2 * fs_hz));
  normalise(f, f0, fs_hz);
  return f;
}

std::complex<double> frequency_response(const SosFilter& filter, double f_hz, double fs_hz) {
  double w = 2 * std::numbers::pi * f_hz / fs_hz;
  cplx h = 1.0;
  for (const Biquad& q : filter.sections) h *= section_response(q, w);
  return h;
}

// ---------------------------------------------------------------------------------------------
// Filtering
// ---------------------------------------------------------------------------------------------

void require_finite(std::span<const float> x, const char* what) {
  for (size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i]))
      throw Error(fmt::format("{}: sample {} is {} (use interpolate_nonfinite first)", what, i,
                              std::isnan(x[i]) ? "NaN" : "Inf"));
}

std::vector<float> sos_filter(const SosFilter& filter, std::span<const float> x) {
  require_finite(x, "sos_filter");
  std::vector<double> buf(x.begin(), x.end());
  run_cascade(filter, buf, nullptr, 0.0);
  return std::vector<float>(buf.begin(), buf.end());
}

std::vector<float> filtfilt(const SosFilter& filter, std::span<const float> x, int64_t padlen) {
  require_finite(x, "filtfilt");
  const int64_t n = static_cast<int64_t>(x.size());
  if (n == 0) return {};
  if (filter.sections.empty()) return std::vector<float>(x.begin(), x.end());
  if (padlen < 0)
    padlen = std::max<int64_t>(decay_length(filter), 3 * (2 * (int64_t)filter.sections.size() + 1));
  padlen = std::min(padlen, n - 1);

  // Odd extension: [2*x0 - x[pad..1], x, 2*x[n-1] - x[n-2..n-1-pad]]
  std::vector<double> ext(n + 2 * padlen);
  const double x0 = x[0], xn = x[n - 1];
  for (int64_t i = 0; i < padlen; ++i) ext[i] = 2 * x0 - x[padlen - i];
  for (int64_t i = 0; i < n; ++i) ext[padlen + i] = x[i];
  for (int64_t j = 0; j < padlen; ++j) ext[padlen + n + j] = 2 * xn - x[n - 2 - j];

  const auto zi = steady_state(filter);
  run_cascade(filter, ext, &zi, ext.front());
  std::reverse(ext.begin(), ext.end());
  run_cascade(filter, ext, &zi, ext.front());
  std::reverse(ext.begin(), ext.end());
  return std::vector<float>(ext.begin() + padlen, ext.begin() + padlen + n);
}

std::vector<float> bandpass_ecg(std::span<const float> ecg, double fs_hz, double f_lo_hz,
                                double f_hi_hz) {
  if (!std::isfinite(fs_hz) || fs_hz <= 0)
    throw Error(fmt::format("bandpass_ecg: sampling frequency must be positive, got {}", fs_hz));
  double hi = std::min(f_hi_hz, 0.45 * fs_hz);
  return filtfilt(butter_bandpass(2, f_lo_hz, hi, fs_hz), ecg);
}

std::vector<float> moving_average(std::span<const float> x, int width) {
  if (width < 1 || width % 2 == 0)
    throw Error(fmt::format("moving_average: width must be odd and >= 1, got {}", width));
  require_finite(x, "moving_average");
  const int64_t n = static_cast<int64_t>(x.size()), h = width / 2;
  std::vector<double> prefix(n + 1, 0.0);
  for (int64_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + x[i];
  std::vector<float> y(n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t r = std::min({h, i, n - 1 - i});
    y[i] = static_cast<float>((prefix[i + r + 1] - prefix[i - r]) / double(2 * r + 1));
  }
  return y;
}

std::vector<float> median_filter(std::span<const float> x, int width) {
  if (width < 1 || width % 2 == 0)
    throw Error(fmt::format("median_filter: width must be odd and >= 1, got {}", width));
  require_finite(x, "median_filter");
  const int64_t n = static_cast<int64_t>(x.size()), h = width / 2;
  std::vector<float> y(n);
  std::vector<float> tmp;
  auto direct = [&](int64_t i) {  // clipped window
    int64_t lo = std::max<int64_t>(0, i - h), hi = std::min<int64_t>(n - 1, i + h);
    tmp.assign(x.begin() + lo, x.begin() + hi + 1);
    auto mid = tmp.begin() + tmp.size() / 2;
    std::nth_element(tmp.begin(), mid, tmp.end());
    float m = *mid;
    if (tmp.size() % 2 == 0) {  // even (only at clipped edges): mean of the two middle values
      float lower = *std::max_element(tmp.begin(), mid);
      m = 0.5f * (m + lower);
    }
    y[i] = m;
  };
  if (n <= 2 * h + 1) {
    for (int64_t i = 0; i < n; ++i) direct(i);
    return y;
  }
  for (int64_t i = 0; i < h; ++i) direct(i);
  for (int64_t i = n - h; i < n; ++i) direct(i);
  // Middle: sorted sliding window of exactly `width` values.
  std::vector<float> win(x.begin(), x.begin() + width);
  std::sort(win.begin(), win.end());
  for (int64_t i = h;; ++i) {
    y[i] = win[h];
    if (i + 1 > n - 1 - h) break;
    float out = x[i - h], in = x[i + h + 1];
    win.erase(std::lower_bound(win.begin(), win.end(), out));
    win.insert(std::upper_bound(win.begin(), win.end(), in), in);
  }
  return y;
}

int64_t interpolate_nonfinite(std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  int64_t replaced = 0, last = -1;  // index of the last finite sample
  for (int64_t i = 0; i <= n; ++i) {
    if (i < n && !std::isfinite(x[i])) continue;
    int64_t gap = i - last - 1;  // non-finite samples between last and i
    if (gap > 0) {
      replaced += gap;
      for (int64_t k = last + 1; k < i; ++k) {
        if (last < 0 && i >= n) x[k] = 0.0f;
        else if (last < 0) x[k] = x[i];
        else if (i >= n) x[k] = x[last];
        else x[k] = x[last] + (x[i] - x[last]) * float(k - last) / float(i - last);
      }
    }
    last = i;
  }
  return replaced;
}

// ---------------------------------------------------------------------------------------------
// Beat series
// ---------------------------------------------------------------------------------------------

bool BeatSeries::has_amplitude() const {
  return std::any_of(amp.begin(), amp.end(), [](float a) { return std::isfinite(a); });
}

BeatSeries beat_series(std::span<const int64_t> r_samples, double fs_hz, std::span<const float> r_amp) {
  if (!std::isfinite(fs_hz) || fs_hz <= 0)
    throw Error(fmt::format("beat_series: sampling frequency must be positive, got {}", fs_hz));
  if (!r_amp.empty() && r_amp.size() != r_samples.size())
    throw Error(fmt::format("beat_series: {} amplitudes for {} peaks (expected none or one per peak)",
                            r_amp.size(), r_samples.size()));
  for (size_t i = 1; i < r_samples.size(); ++i)
    if (r_samples[i] <= r_samples[i - 1])
      throw Error(fmt::format("beat_series: R peaks must be strictly increasing, peak {} at sample {} "
                              "follows sample {}", i, r_samples[i], r_samples[i - 1]));
  BeatSeries s;
  if (r_samples.size() < 2) return s;
  const size_t m = r_samples.size() - 1;
  s.time_s.resize(m);
  s.rr_s.resize(m);
  if (!r_amp.empty()) s.amp.resize(m);
  for (size_t i = 0; i < m; ++i) {
    s.time_s[i] = double(r_samples[i + 1]) / fs_hz;
    s.rr_s[i] = static_cast<float>(double(r_samples[i + 1] - r_samples[i]) / fs_hz);
    if (!r_amp.empty()) s.amp[i] = r_amp[i + 1];
  }
  return s;
}

std::string CleanStats::to_string() const {
  return fmt::format("{} intervals: kept {}, removed {} non-finite, {} out of range, {} outliers",
                     input, kept, removed_nonfinite, removed_range, removed_outlier);
}

BeatSeries clean_beat_series(const BeatSeries& in, const CleanConfig& cfg, CleanStats* stats) {
  const size_t n = in.time_s.size();
  if (in.rr_s.size() != n || (!in.amp.empty() && in.amp.size() != n))
    throw Error(fmt::format("clean_beat_series: field lengths differ (time_s {}, rr_s {}, amp {})", n,
                            in.rr_s.size(), in.amp.size()));
  if (!(cfg.rr_min_s >= 0) || !(cfg.rr_max_s > cfg.rr_min_s) || !(cfg.max_rel_diff > 0) ||
      cfg.median_half_window < 1)
    throw Error(fmt::format("clean_beat_series: bad CleanConfig (rr_min_s {}, rr_max_s {}, "
                            "max_rel_diff {}, median_half_window {})",
                            cfg.rr_min_s, cfg.rr_max_s, cfg.max_rel_diff, cfg.median_half_window));
  CleanStats st;
  st.input = static_cast<int64_t>(n);
  // a + b: finite and in range
  std::vector<size_t> idx;
  idx.reserve(n);
  double prev_t = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    double t = in.time_s[i];
    float rr = in.rr_s[i];
    if (!std::isfinite(t) || !std::isfinite(rr)) {
      ++st.removed_nonfinite;
      continue;
    }
    if (t <= prev_t)
      throw Error(fmt::format("clean_beat_series: beat times must increase, beat {} at {} s follows "
                              "{} s", i, t, prev_t));
    prev_t = t;
    if (rr < cfg.rr_min_s || rr > cfg.rr_max_s) {
      ++st.removed_range;
      continue;
    }
    idx.push_back(i);
  }
  // c: relative difference to the local median of in-range intervals
  std::vector<char> keep(idx.size(), 1);
  if (cfg.remove_outliers && !idx.empty()) {
    const int64_t m = static_cast<int64_t>(idx.size()), h = cfg.median_half_window;
    std::vector<float> win;
    for (int64_t j = 0; j < m; ++j) {
      int64_t lo = std::max<int64_t>(0, j - h), hi = std::min<int64_t>(m - 1, j + h);
      win.clear();
      for (int64_t k = lo; k <= hi; ++k) win.push_back(in.rr_s[idx[k]]);
      auto mid = win.begin() + win.size() / 2;
      std::nth_element(win.begin(), mid, win.end());
      float med = *mid;
      float rr = in.rr_s[idx[j]];
      if (std::abs(rr - med) > cfg.max_rel_diff * med) {
        keep[j] = 0;
        ++st.removed_outlier;
      }
    }
  }
  BeatSeries out;
  for (size_t j = 0; j < idx.size(); ++j) {
    if (!keep[j]) continue;
    size_t i = idx[j];
    out.time_s.push_back(in.time_s[i]);
    out.rr_s.push_back(in.rr_s[i]);
    if (!in.amp.empty()) out.amp.push_back(in.amp[i]);
  }
  st.kept = static_cast<int64_t>(out.size());
  if (stats) *stats = st;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Resampling
// ---------------------------------------------------------------------------------------------

std::vector<float> resample_uniform(std::span<const double> t, std::span<const float> v, double t0,
                                    double fs_hz, int64_t n, Interp method) {
  if (t.size() != v.size())
    throw Error(fmt::format("resample_uniform: {} times for {} values", t.size(), v.size()));
  if (!std::isfinite(fs_hz) || fs_hz <= 0)
    throw Error(fmt::format("resample_uniform: rate must be positive, got {}", fs_hz));
  if (!std::isfinite(t0)) throw Error("resample_uniform: start time is not finite");
  if (n < 0) throw Error(fmt::format("resample_uniform: negative output length {}", n));
  if (n == 0) return {};
  std::vector<double> xs, ys;
  xs.reserve(t.size());
  ys.reserve(t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    if (!std::isfinite(t[i]) || !std::isfinite(v[i])) continue;
    if (!xs.empty() && t[i] <= xs.back())
      throw Error(fmt::format("resample_uniform: times must be strictly increasing, point {} at {} "
                              "follows {}", i, t[i], xs.back()));
    xs.push_back(t[i]);
    ys.push_back(v[i]);
  }
  if (xs.empty())
    throw Error("resample_uniform: no finite point to interpolate (empty or all-NaN series)");
  const size_t m = xs.size();
  std::vector<float> out(n);
  if (m == 1) {
    std::fill(out.begin(), out.end(), static_cast<float>(ys[0]));
    return out;
  }
  // PCHIP slopes (Fritsch-Carlson), only when asked.
  std::vector<double> d;
  if (method == Interp::Pchip) {
    std::vector<double> hk(m - 1), dk(m - 1);
    for (size_t k = 0; k + 1 < m; ++k) {
      hk[k] = xs[k + 1] - xs[k];
      dk[k] = (ys[k + 1] - ys[k]) / hk[k];
    }
    d.assign(m, 0.0);
    auto sign = [](double a) { return (a > 0) - (a < 0); };
    if (m == 2) {
      d[0] = d[1] = dk[0];
    } else {
      for (size_t k = 1; k + 1 < m; ++k) {
        if (dk[k - 1] * dk[k] <= 0) continue;
        double w1 = 2 * hk[k] + hk[k - 1], w2 = hk[k] + 2 * hk[k - 1];
        d[k] = (w1 + w2) / (w1 / dk[k - 1] + w2 / dk[k]);
      }
      auto edge = [&](double h0, double h1, double d0, double d1) {
        double e = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1);
        if (sign(e) != sign(d0)) e = 0;
        else if (sign(d0) != sign(d1) && std::abs(e) > 3 * std::abs(d0)) e = 3 * d0;
        return e;
      };
      d[0] = edge(hk[0], hk[1], dk[0], dk[1]);
      d[m - 1] = edge(hk[m - 2], hk[m - 3], dk[m - 2], dk[m - 3]);
    }
  }
  size_t j = 0;  // segment [xs[j], xs[j+1]]
  for (int64_t k = 0; k < n; ++k) {
    double tk = t0 + double(k) / fs_hz;
    double val;
    if (tk <= xs[0]) {
      val = ys[0];
    } else if (tk >= xs[m - 1]) {
      val = ys[m - 1];
    } else {
      if (xs[j] > tk) j = 0;  // (grid is increasing, so this never triggers; kept for safety)
      while (xs[j + 1] < tk) ++j;
      double h = xs[j + 1] - xs[j], s = (tk - xs[j]) / h;
      if (method == Interp::Linear) {
        val = ys[j] + s * (ys[j + 1] - ys[j]);
      } else {  // cubic Hermite
        double s2 = s * s, s3 = s2 * s;
        val = (2 * s3 - 3 * s2 + 1) * ys[j] + (s3 - 2 * s2 + s) * h * d[j] +
              (-2 * s3 + 3 * s2) * ys[j + 1] + (s3 - s2) * h * d[j + 1];
      }
    }
    out[k] = static_cast<float>(val);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Respiratory signals
// ---------------------------------------------------------------------------------------------

namespace {

void check_rate(const char* fn, double fs_hz, double min_hz) {
  if (!std::isfinite(fs_hz) || fs_hz < min_hz || fs_hz > 10000)
    throw Error(fmt::format("{}: sampling frequency must be in [{}, 10000] Hz, got {}", fn, min_hz, fs_hz));
}

// q-quantile (0..1) of v (copied).
float quantile(std::vector<float> v, double q) {
  if (v.empty()) return NAN;
  size_t k = std::min(v.size() - 1, size_t(q * double(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

// Per-second amplitude ratio to a running baseline (quantile of the preceding window; the first
// seconds, with less than 30 s of history, use the first window instead).
std::vector<float> amplitude_ratio(const std::vector<float>& amp, const FlowEventConfig& cfg) {
  const int64_t n = static_cast<int64_t>(amp.size()), w = std::max<int64_t>(1, std::lround(cfg.baseline_window_s));
  std::vector<float> ratio(n, 1.0f);
  std::vector<float> win;
  for (int64_t k = 0; k < n; ++k) {
    int64_t a = k - w, b = k;  // [a, b)
    if (k < 30) a = 0, b = std::min(n, w);
    a = std::max<int64_t>(0, a);
    win.assign(amp.begin() + a, amp.begin() + b);
    float base = quantile(win, cfg.baseline_percentile);
    ratio[k] = base > 0 ? amp[k] / base : 1.0f;
  }
  return ratio;
}

}  // namespace

std::vector<Desaturation> find_desaturations(std::span<const float> spo2, double fs_hz,
                                             const DesaturationConfig& cfg) {
  check_rate("find_desaturations", fs_hz, 1e-3);
  if (!(cfg.min_drop_pct > 0) || !(cfg.baseline_window_s >= 1) || !(cfg.max_duration_s >= 1))
    throw Error(fmt::format("find_desaturations: bad DesaturationConfig (min_drop_pct {}, baseline_window_s {}, "
                            "max_duration_s {})", cfg.min_drop_pct, cfg.baseline_window_s, cfg.max_duration_s));
  // Mean per second of the valid samples.
  const int64_t n_sec = static_cast<int64_t>(std::floor(double(spo2.size()) / fs_hz));
  std::vector<float> s(n_sec, NAN);
  for (int64_t k = 0; k < n_sec; ++k) {
    int64_t i0 = std::lround(double(k) * fs_hz), i1 = std::min<int64_t>(spo2.size(), std::lround(double(k + 1) * fs_hz));
    double sum = 0;
    int cnt = 0;
    for (int64_t i = i0; i < std::max(i1, i0 + 1) && i < int64_t(spo2.size()); ++i)
      if (std::isfinite(spo2[i]) && spo2[i] >= 50 && spo2[i] <= 100) sum += spo2[i], ++cnt;
    if (cnt) s[k] = float(sum / cnt);
  }
  std::vector<Desaturation> out;
  if (n_sec == 0 || interpolate_nonfinite(s) == n_sec) return out;
  const int64_t w = std::lround(cfg.baseline_window_s), maxd = std::lround(cfg.max_duration_s);
  for (int64_t k = 1; k < n_sec; ++k) {
    float base = -INFINITY;
    for (int64_t j = std::max<int64_t>(0, k - w); j < k; ++j) base = std::max(base, s[j]);
    if (!(s[k] <= base - cfg.min_drop_pct)) continue;
    int64_t start = k;
    while (start > 0 && s[start - 1] < base) --start;
    int64_t m = k, nadir = k;
    while (m + 1 < n_sec && s[m + 1] < base - 1 && m + 1 - start < maxd) {
      ++m;
      if (s[m] < s[nadir]) nadir = m;
    }
    Desaturation d;
    d.start_s = double(start);
    d.nadir_s = double(nadir) + 0.5;
    d.end_s = double(m + 1);
    d.baseline_pct = base;
    d.nadir_pct = s[nadir];
    out.push_back(d);
    k = m + 1;
  }
  return out;
}

std::vector<float> respiration_amplitude(std::span<const float> resp, double fs_hz, double window_s) {
  check_rate("respiration_amplitude", fs_hz, 4.0);
  if (!(window_s >= 1 && window_s <= 60))
    throw Error(fmt::format("respiration_amplitude: amplitude window must be in [1, 60] s, got {}", window_s));
  const int64_t n_sec = static_cast<int64_t>(std::floor(double(resp.size()) / fs_hz));
  if (n_sec == 0) return {};
  std::vector<float> x(resp.begin(), resp.end());
  interpolate_nonfinite(x);
  std::vector<float> bp = filtfilt(butter_bandpass(2, 0.05, 1.0, fs_hz), x);
  // 10 Hz copy of the band-passed signal (its content is below 1 Hz), then max - min per window.
  const int64_t n10 = static_cast<int64_t>(double(bp.size()) * 10.0 / fs_hz);
  std::vector<float> y(n10);
  for (int64_t i = 0; i < n10; ++i) y[i] = bp[std::min<int64_t>(bp.size() - 1, std::lround(double(i) * fs_hz / 10.0))];
  const int64_t h = std::lround(window_s * 5.0);  // half window in 10 Hz samples
  std::vector<float> amp(n_sec);
  for (int64_t k = 0; k < n_sec; ++k) {
    int64_t c = 10 * k + 5, a = std::max<int64_t>(0, c - h), b = std::min<int64_t>(n10 - 1, c + h);
    if (a > b) {
      amp[k] = 0;
      continue;
    }
    auto [lo, hi] = std::minmax_element(y.begin() + a, y.begin() + b + 1);
    amp[k] = *hi - *lo;
  }
  return amp;
}

const char* flow_event_name(FlowEventType t) {
  switch (t) {
    case FlowEventType::Apnea: return "apnea";
    case FlowEventType::ObstructiveApnea: return "obstructive";
    case FlowEventType::CentralApnea: return "central";
    case FlowEventType::Hypopnea: return "hypopnea";
  }
  return "?";
}

std::vector<FlowEvent> detect_flow_events(std::span<const float> flow, double fs_hz, std::span<const float> effort,
                                          std::span<const float> spo2, const FlowEventConfig& cfg) {
  check_rate("detect_flow_events", fs_hz, 4.0);
  if ((!effort.empty() && effort.size() != flow.size()) || (!spo2.empty() && spo2.size() != flow.size()))
    throw Error(fmt::format("detect_flow_events: flow has {} samples but effort {} and spo2 {} (expected equal "
                            "lengths or empty)", flow.size(), effort.size(), spo2.size()));
  if (!(cfg.apnea_ratio > 0 && cfg.apnea_ratio < cfg.hypopnea_ratio && cfg.hypopnea_ratio < 1) ||
      !(cfg.min_duration_s > 0 && cfg.max_duration_s > cfg.min_duration_s) ||
      !(cfg.baseline_percentile > 0 && cfg.baseline_percentile <= 1) || !(cfg.baseline_window_s >= 10) ||
      !(cfg.central_effort_ratio > 0) || !(cfg.desaturation_search_s >= 0))
    throw Error("detect_flow_events: bad FlowEventConfig (need 0 < apnea_ratio < hypopnea_ratio < 1, "
                "0 < min_duration_s < max_duration_s, 0 < baseline_percentile <= 1, baseline_window_s >= 10)");
  std::vector<float> amp = respiration_amplitude(flow, fs_hz, cfg.amplitude_window_s);
  const int64_t n = static_cast<int64_t>(amp.size());
  std::vector<FlowEvent> out;
  if (n == 0) return out;
  std::vector<float> ratio = amplitude_ratio(amp, cfg);
  std::vector<float> effort_ratio;
  if (!effort.empty()) effort_ratio = amplitude_ratio(respiration_amplitude(effort, fs_hz, cfg.amplitude_window_s), cfg);
  std::vector<Desaturation> desats;
  if (!spo2.empty()) desats = find_desaturations(spo2, fs_hz);
  const double half = cfg.amplitude_window_s / 2;
  for (int64_t k = 0; k < n;) {
    if (!(ratio[k] <= cfg.hypopnea_ratio)) {
      ++k;
      continue;
    }
    int64_t e = k;
    while (e < n && ratio[e] <= cfg.hypopnea_ratio) ++e;  // run [k, e)
    double onset = std::max(0.0, double(k) - half + 0.5), end = std::min(double(n), double(e) + half - 0.5);
    double dur = end - onset;
    if (dur >= cfg.min_duration_s && dur <= cfg.max_duration_s) {
      FlowEvent ev;
      ev.onset_s = onset;
      ev.duration_s = dur;
      ev.amplitude_ratio = quantile(std::vector<float>(ratio.begin() + k, ratio.begin() + e), 0.5);
      bool keep = true;
      if (ev.amplitude_ratio <= cfg.apnea_ratio) {
        ev.type = FlowEventType::Apnea;
        if (!effort_ratio.empty()) {
          float er = quantile(std::vector<float>(effort_ratio.begin() + k, effort_ratio.begin() + e), 0.5);
          ev.type = er <= cfg.central_effort_ratio ? FlowEventType::CentralApnea : FlowEventType::ObstructiveApnea;
        }
      } else {
        ev.type = FlowEventType::Hypopnea;
        if (!spo2.empty())
          keep = std::any_of(desats.begin(), desats.end(), [&](const Desaturation& d) {
            return d.start_s >= onset - 5 && d.start_s <= end + cfg.desaturation_search_s;
          });
      }
      if (keep) out.push_back(ev);
    }
    k = e;
  }
  return out;
}

}  // namespace sleepnet::data
