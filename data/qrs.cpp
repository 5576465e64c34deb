// qrs.cpp: Pan-Tompkins R-peak detector (offline, zero-phase) and beat matching. See qrs.h.
#include "data/qrs.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "data/signal.h"
#include "tensor/tensor.h"  // sleepnet::Error

namespace sleepnet::data {

void QrsConfig::validate(double fs_hz) const {
  if (!std::isfinite(fs_hz) || fs_hz < 50 || fs_hz > 2000)
    throw Error(fmt::format("detect_qrs: sampling frequency must be in [50, 2000] Hz, got {}", fs_hz));
  auto bad = [](const char* field, const char* want, double got) {
    throw Error(fmt::format("QrsConfig: field '{}' must be {}, got {}", field, want, got));
  };
  if (!(qrs_band_lo_hz > 0 && qrs_band_lo_hz < qrs_band_hi_hz)) bad("qrs_band_lo_hz", "in (0, qrs_band_hi_hz)", qrs_band_lo_hz);
  if (!(qrs_band_hi_hz < 0.5 * fs_hz)) bad("qrs_band_hi_hz", "below fs/2", qrs_band_hi_hz);
  if (!(integration_window_s > 0 && integration_window_s < 1)) bad("integration_window_s", "in (0, 1) s", integration_window_s);
  if (!(refractory_s > 0 && refractory_s < 1)) bad("refractory_s", "in (0, 1) s", refractory_s);
  if (!(twave_window_s >= refractory_s && twave_window_s < 1)) bad("twave_window_s", "in [refractory_s, 1) s", twave_window_s);
  if (!(searchback_factor > 1 && searchback_factor < 10)) bad("searchback_factor", "in (1, 10)", searchback_factor);
  if (!(refine_window_s >= 0 && refine_window_s < 0.5)) bad("refine_window_s", "in [0, 0.5) s", refine_window_s);
  if (!(wide_band_lo_hz > 0 && wide_band_lo_hz < wide_band_hi_hz && wide_band_lo_hz < 0.45 * fs_hz))
    bad("wide_band_lo_hz", "in (0, min(wide_band_hi_hz, 0.45 fs))", wide_band_lo_hz);
}

namespace {

struct Candidate {
  int64_t pos;   // sample of the MWI peak
  double value;  // MWI height
  double slope;  // steepest |derivative| around it
};

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  auto mid = v.begin() + v.size() / 2;
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

}  // namespace

QrsResult detect_qrs(std::span<const float> ecg, double fs, const QrsConfig& cfg) {
  cfg.validate(fs);
  QrsResult res;
  const int64_t n = static_cast<int64_t>(ecg.size());
  if (n < 8) return res;
  std::vector<float> x(ecg.begin(), ecg.end());
  res.nonfinite_replaced = interpolate_nonfinite(x);
  if (res.nonfinite_replaced == n) return res;

  // Band-pass, derivative, square, integrate (all zero-phase, so mwi peaks sit on the QRS).
  std::vector<float> bp = filtfilt(butter_bandpass(2, cfg.qrs_band_lo_hz, cfg.qrs_band_hi_hz, fs), x);
  std::vector<float> deriv(n, 0.0f), sq(n, 0.0f);
  for (int64_t i = 2; i + 2 < n; ++i) {
    deriv[i] = float((2.0 * (bp[i + 1] - bp[i - 1]) + (bp[i + 2] - bp[i - 2])) * fs / 8.0);
    sq[i] = deriv[i] * deriv[i];
  }
  int width = std::max(1, int(std::lround(cfg.integration_window_s * fs)));
  if (width % 2 == 0) ++width;
  std::vector<float> mwi = moving_average(sq, width);
  std::vector<float>().swap(sq);  // (an 8-hour record at 256 Hz: 30 MB per signal copy)
  std::vector<float>().swap(bp);

  // Candidates: local maxima of mwi, then non-maximum suppression within the refractory period.
  const int64_t refractory = std::max<int64_t>(1, std::lround(cfg.refractory_s * fs));
  const int64_t slope_half = std::max<int64_t>(1, width / 2);
  std::vector<Candidate> cand;
  for (int64_t i = 1; i + 1 < n; ++i)
    if (mwi[i] > mwi[i - 1] && mwi[i] >= mwi[i + 1] && mwi[i] > 0) cand.push_back({i, mwi[i], 0.0});
  if (cand.empty()) return res;
  {
    std::vector<size_t> order(cand.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cand[a].value > cand[b].value; });
    std::vector<char> alive(cand.size(), 1);
    for (size_t oi : order) {
      if (!alive[oi]) continue;
      for (size_t j = oi + 1; j < cand.size() && cand[j].pos - cand[oi].pos < refractory; ++j) alive[j] = 0;
      for (size_t j = oi; j-- > 0 && cand[oi].pos - cand[j].pos < refractory;) alive[j] = 0;
    }
    std::vector<Candidate> kept;
    for (size_t i = 0; i < cand.size(); ++i)
      if (alive[i]) kept.push_back(cand[i]);
    cand.swap(kept);
  }
  for (Candidate& c : cand) {
    int64_t lo = std::max<int64_t>(0, c.pos - slope_half), hi = std::min<int64_t>(n - 1, c.pos + slope_half);
    for (int64_t i = lo; i <= hi; ++i) c.slope = std::max(c.slope, double(std::abs(deriv[i])));
  }

  // Initial thresholds from the first 16 s: median of 2-s block maxima (signal), half the mean (noise).
  const int64_t block = std::max<int64_t>(1, std::lround(2.0 * fs));
  const int64_t learn = std::min<int64_t>(n, std::lround(16.0 * fs));
  std::vector<double> block_max;
  double mean = 0;
  for (int64_t b0 = 0; b0 < learn; b0 += block) {
    double m = 0;
    for (int64_t i = b0; i < std::min(learn, b0 + block); ++i) m = std::max(m, double(mwi[i]));
    block_max.push_back(m);
  }
  for (int64_t i = 0; i < learn; ++i) mean += mwi[i];
  mean /= double(learn);
  double spki = 0.5 * median(block_max), npki = 0.5 * mean;
  auto thr1 = [&] { return npki + 0.25 * (spki - npki); };

  std::vector<int64_t> qrs;            // accepted QRS locations (mwi peaks)
  std::vector<double> qrs_slope;
  std::vector<Candidate> noise_since;  // noise candidates after the last QRS (searchback pool)
  auto rr_median = [&]() -> double {
    if (qrs.size() < 3) return 0.0;
    std::vector<double> rr;
    for (size_t k = qrs.size() - 1; k > 0 && rr.size() < 8; --k) rr.push_back(double(qrs[k] - qrs[k - 1]));
    return median(rr);
  };
  auto accept = [&](const Candidate& c, double weight) {
    double v = std::min(c.value, 2.5 * spki);
    spki += weight * (v - spki);
    qrs.push_back(c.pos);
    qrs_slope.push_back(c.slope);
    noise_since.clear();
  };
  // Searchback over the gap ending at `until`: the largest pooled candidate above THRESHOLD2.
  auto searchback = [&](int64_t until) {
    for (;;) {
      double rr = rr_median();
      if (rr <= 0 || qrs.empty() || double(until - qrs.back()) <= cfg.searchback_factor * rr) return;
      const Candidate* best = nullptr;
      for (const Candidate& c : noise_since)
        if (c.pos - qrs.back() >= refractory && until - c.pos >= refractory && c.value > 0.5 * thr1() &&
            (!best || c.value > best->value))
          best = &c;
      if (!best) return;
      Candidate b = *best;
      std::vector<Candidate> later;
      for (const Candidate& c : noise_since)
        if (c.pos > b.pos) later.push_back(c);
      accept(b, 0.25);
      noise_since = std::move(later);
    }
  };

  for (const Candidate& c : cand) {
    searchback(c.pos);
    bool is_qrs = false;
    if (c.value > thr1()) {
      is_qrs = true;
      if (!qrs.empty()) {
        int64_t since = c.pos - qrs.back();
        if (since < refractory) is_qrs = false;
        else if (since < std::lround(cfg.twave_window_s * fs) && c.slope < 0.5 * qrs_slope.back()) is_qrs = false;
      }
    }
    if (is_qrs) {
      accept(c, 0.125);
    } else {
      npki += 0.125 * (c.value - npki);
      noise_since.push_back(c);
    }
  }
  searchback(n);

  // R peaks on the wide-band ECG, of the record's dominant polarity.
  std::vector<float> wide = bandpass_ecg(x, fs, cfg.wide_band_lo_hz, cfg.wide_band_hi_hz);
  const int64_t half = std::lround(cfg.refine_window_s * fs);
  int up = 0;
  for (int64_t q : qrs) {
    float mx = -INFINITY, mn = INFINITY;
    for (int64_t i = std::max<int64_t>(0, q - half); i <= std::min<int64_t>(n - 1, q + half); ++i) {
      mx = std::max(mx, wide[i]);
      mn = std::min(mn, wide[i]);
    }
    up += std::abs(mx) >= std::abs(mn) ? 1 : -1;
  }
  res.polarity = up >= 0 ? 1 : -1;
  std::vector<int64_t> peaks;
  for (int64_t q : qrs) {
    int64_t best = q;
    float best_v = -INFINITY;
    for (int64_t i = std::max<int64_t>(0, q - half); i <= std::min<int64_t>(n - 1, q + half); ++i) {
      float v = float(res.polarity) * wide[i];
      if (v > best_v) {
        best_v = v;
        best = i;
      }
    }
    peaks.push_back(best);
  }
  std::sort(peaks.begin(), peaks.end());
  // Two QRS locations refined onto (nearly) the same peak: keep the larger.
  for (int64_t p : peaks) {
    if (!res.r_samples.empty() && p - res.r_samples.back() < refractory) {
      if (float(res.polarity) * wide[p] > float(res.polarity) * wide[res.r_samples.back()]) {
        res.r_samples.back() = p;
        res.r_amplitude.back() = wide[p];
      }
      continue;
    }
    res.r_samples.push_back(p);
    res.r_amplitude.push_back(wide[p]);
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------------

double BeatMatch::sensitivity() const {
  int64_t d = true_positives + false_negatives;
  return d == 0 ? 1.0 : double(true_positives) / double(d);
}

double BeatMatch::positive_predictivity() const {
  int64_t d = true_positives + false_positives;
  return d == 0 ? 1.0 : double(true_positives) / double(d);
}

std::string BeatMatch::to_string() const {
  return fmt::format("TP {} FN {} FP {}: Se {:.4f} +P {:.4f}", true_positives, false_negatives,
                     false_positives, sensitivity(), positive_predictivity());
}

BeatMatch match_beats(std::span<const int64_t> ref, std::span<const int64_t> det, int64_t tol) {
  if (tol < 0) throw Error(fmt::format("match_beats: tolerance must be >= 0, got {}", tol));
  for (size_t i = 1; i < ref.size(); ++i)
    if (ref[i] < ref[i - 1]) throw Error(fmt::format("match_beats: reference beats not sorted at index {}", i));
  for (size_t i = 1; i < det.size(); ++i)
    if (det[i] < det[i - 1]) throw Error(fmt::format("match_beats: detected beats not sorted at index {}", i));
  BeatMatch m;
  std::vector<char> used(det.size(), 0);
  size_t j0 = 0;
  for (int64_t r : ref) {
    while (j0 < det.size() && det[j0] < r - tol) ++j0;
    size_t best = det.size();
    for (size_t j = j0; j < det.size() && det[j] <= r + tol; ++j)
      if (!used[j] && (best == det.size() || std::abs(det[j] - r) < std::abs(det[best] - r))) best = j;
    if (best < det.size()) {
      used[best] = 1;
      ++m.true_positives;
    } else {
      ++m.false_negatives;
    }
  }
  m.false_positives = int64_t(det.size()) - m.true_positives;
  return m;
}

}  // namespace sleepnet::data
