// synth.cpp: the synthetic sleep-recording generator and its WFDB/EDF writer. The model is
// described at the top of synth.h; this file follows its numbered steps.
#include "data/synth.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>

#include <fmt/format.h>

#include "data/edf.h"
#include "data/wfdb_annotation.h"
#include "data/wfdb_header.h"
#include "data/wfdb_signal.h"
#include "tensor/tensor.h"  // sleepnet::Error

namespace sleepnet::data {

namespace {

constexpr double kPi = std::numbers::pi;
constexpr double kDt = 0.1;  // physiological grid step (s)

// One independent random stream per part of the model (sleepnet::Generator: xoshiro256** seeded
// with splitmix64), so changing e.g. the noise settings leaves the beats and events of a seed
// unchanged. Normals are drawn in double here (Generator::normal is float).
class Rng {
 public:
  Rng(uint64_t seed, uint64_t stream) : gen_(seed ^ (0x9E3779B97F4A7C15ull * (stream + 1))) {}
  uint64_t next() { return gen_.next_u64(); }
  double uniform() { return gen_.uniform_double(); }  // [0, 1)
  double uniform(double a, double b) { return a + (b - a) * uniform(); }
  int integer(int lo, int hi) { return lo + int(uniform() * (hi - lo + 1)); }  // [lo, hi]
  bool bernoulli(double p) { return uniform() < p; }
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform(), u2 = uniform();
    double r = std::sqrt(-2.0 * std::log(1.0 - u1));
    spare_ = r * std::sin(2 * kPi * u2);
    has_spare_ = true;
    return r * std::cos(2 * kPi * u2);
  }

 private:
  Generator gen_;
  bool has_spare_ = false;
  double spare_ = 0;
};

enum Stream : uint64_t { kHypnogram = 1, kEvents, kBreath, kSpo2, kHeart, kMorphology, kNoise, kMotion };

double smoothstep(double x) {
  x = std::clamp(x, 0.0, 1.0);
  return x * x * (3 - 2 * x);
}

// Ornstein-Uhlenbeck step: stationary standard deviation sigma, correlation time tau.
double ou_step(double x, double sigma, double tau, Rng& rng) {
  return x - x * kDt / tau + sigma * std::sqrt(2 * kDt / tau) * rng.normal();
}

// Lung volume above rest (0..1) and its normalised derivative (airflow, peak ~1) at phase phi.
// Inspiration takes 40 % of the cycle, expiration 60 %.
double breath_volume(double phi) {
  double p = phi / (2 * kPi);
  p -= std::floor(p);
  return p < 0.4 ? 0.5 * (1 - std::cos(kPi * p / 0.4)) : 0.5 * (1 + std::cos(kPi * (p - 0.4) / 0.6));
}
double breath_flow(double phi) {
  double p = phi / (2 * kPi);
  p -= std::floor(p);
  return p < 0.4 ? std::sin(kPi * p / 0.4) : -(0.4 / 0.6) * std::sin(kPi * (p - 0.4) / 0.6);
}

// Linear interpolation of a grid series at time t (s).
double at_time(const std::vector<double>& g, double t) {
  double u = t / kDt;
  if (u <= 0) return g.front();
  size_t i = size_t(u);
  if (i + 1 >= g.size()) return g.back();
  double f = u - double(i);
  return g[i] + f * (g[i + 1] - g[i]);
}

struct Wave {
  double offset_s;  // from the R time (T: at RR = 1 s, scaled by sqrt(RR))
  double amp_mv;
  double sigma_s;
};

struct Morphology {
  Wave p, q, r, s, t;
  Wave pvc_qrs, pvc_t;
  double edr_gain;  // QRS amplitude change per unit of centred chest volume
  double qrs_p2p;   // nominal QRS peak-to-peak (for the SNR definition)
};

double wave_at(const Wave& w, double t) { return w.amp_mv * std::exp(-0.5 * std::pow((t - w.offset_s) / w.sigma_s, 2)); }

Morphology draw_morphology(Rng& rng) {
  Morphology m;
  bool rs = rng.bernoulli(0.25);
  m.p = {-rng.uniform(0.16, 0.20), rng.uniform(0.08, 0.18), rng.uniform(0.022, 0.030)};
  m.q = {-0.030, -rng.uniform(0.04, 0.14), rng.uniform(0.008, 0.010)};
  if (rs) {
    m.r = {0.0, rng.uniform(0.3, 0.6), rng.uniform(0.009, 0.012)};
    m.s = {rng.uniform(0.030, 0.038), -rng.uniform(0.8, 1.4), rng.uniform(0.010, 0.013)};
  } else {
    m.r = {0.0, rng.uniform(0.8, 1.6), rng.uniform(0.009, 0.013)};
    m.s = {rng.uniform(0.028, 0.036), -rng.uniform(0.12, 0.35), rng.uniform(0.009, 0.011)};
  }
  m.t = {rng.uniform(0.26, 0.30), rng.uniform(0.18, 0.40), rng.uniform(0.045, 0.060)};
  double sign = rng.bernoulli(0.5) ? 1.0 : -1.0;
  double big = std::max(m.r.amp_mv, -m.s.amp_mv);
  m.pvc_qrs = {0.0, sign * rng.uniform(1.2, 1.8) * big, rng.uniform(0.030, 0.040)};
  m.pvc_t = {0.30, -sign * rng.uniform(0.3, 0.5), 0.08};
  m.edr_gain = rng.uniform(0.2, 0.4);
  double lo = 0, hi = 0;  // peak-to-peak of the QRS waves, finely sampled
  for (double t = -0.08; t <= 0.08; t += 0.0005) {
    double v = wave_at(m.q, t) + wave_at(m.r, t) + wave_at(m.s, t);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  m.qrs_p2p = hi - lo;
  return m;
}

// Adds a * exp(-(t - c)^2 / 2 sigma^2) to x over +-5 sigma.
void add_gaussian(std::vector<float>& x, double fs, double c, double a, double sigma) {
  const int64_t n = static_cast<int64_t>(x.size());
  int64_t lo = std::max<int64_t>(0, int64_t(std::floor((c - 5 * sigma) * fs)));
  int64_t hi = std::min<int64_t>(n - 1, int64_t(std::ceil((c + 5 * sigma) * fs)));
  for (int64_t i = lo; i <= hi; ++i) {
    double z = (double(i) / fs - c) / sigma;
    x[i] += float(a * std::exp(-0.5 * z * z));
  }
}

// Largest/smallest physical value storable with a gain in a WFDB format (baseline 0; the format's
// minimum is reserved for invalid samples).
double adc_max_physical(int format, double gain) { return wfdb_format_max(format) / gain; }
double adc_min_physical(int format, double gain) { return (wfdb_format_min(format) + 1) / gain; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Names and config
// ---------------------------------------------------------------------------------------------

const char* sleep_stage_code(SleepStage s) {
  switch (s) {
    case SleepStage::Wake: return "W";
    case SleepStage::N1: return "1";
    case SleepStage::N2: return "2";
    case SleepStage::N3: return "3";
    case SleepStage::REM: return "R";
  }
  return "?";
}

const char* resp_event_token(RespEventType t, bool arousal) {
  switch (t) {
    case RespEventType::ObstructiveApnea: return arousal ? "X" : "OA";
    case RespEventType::CentralApnea: return arousal ? "CAA" : "CA";
    case RespEventType::Hypopnea: return arousal ? "HA" : "H";
  }
  return "?";
}

void SynthConfig::validate() const {
  auto bad = [](const char* field, const char* want, double got) {
    throw Error(fmt::format("SynthConfig: field '{}' must be {}, got {}", field, want, got));
  };
  auto in = [](double v, double lo, double hi) { return std::isfinite(v) && v >= lo && v <= hi; };
  if (!in(duration_s, 60, 48 * 3600)) bad("duration_s", "in [60, 172800] s", duration_s);
  if (!in(fs_hz, 50, 1000)) bad("fs_hz", "in [50, 1000] Hz", fs_hz);
  if (wfdb_format != 16 && wfdb_format != 212) bad("wfdb_format", "16 or 212", wfdb_format);
  if (!in(ahi, 0, 120)) bad("ahi", "in [0, 120] events/h", ahi);
  if (!in(hypopnea_fraction, 0, 1)) bad("hypopnea_fraction", "in [0, 1]", hypopnea_fraction);
  if (!in(central_fraction, 0, 1)) bad("central_fraction", "in [0, 1]", central_fraction);
  if (!in(apnea_minute_min_overlap_s, 0, 60)) bad("apnea_minute_min_overlap_s", "in [0, 60] s", apnea_minute_min_overlap_s);
  if (mean_hr_bpm != 0 && !in(mean_hr_bpm, 35, 120)) bad("mean_hr_bpm", "0 (random) or in [35, 120]", mean_hr_bpm);
  if (!in(ectopic_rate, 0, 0.2)) bad("ectopic_rate", "in [0, 0.2]", ectopic_rate);
  if (!in(snr_db, -10, 80)) bad("snr_db", "in [-10, 80] dB", snr_db);
  if (!in(baseline_wander_mv, 0, 5)) bad("baseline_wander_mv", "in [0, 5] mV", baseline_wander_mv);
  if (!in(motion_artifacts_per_hour, 0, 600)) bad("motion_artifacts_per_hour", "in [0, 600]", motion_artifacts_per_hour);
  if (!in(powerline_hz, 0, 1000)) bad("powerline_hz", "in [0, 1000] Hz", powerline_hz);
  if (!in(powerline_mv, 0, 5)) bad("powerline_mv", "in [0, 5] mV", powerline_mv);
}

std::string SynthConfig::to_string() const {
  return fmt::format(
      "synth v1 seed={} duration_s={} fs_hz={} wfdb_format={} ahi={} hypopnea_fraction={} "
      "central_fraction={} apnea_minute_min_overlap_s={} mean_hr_bpm={} ectopic_rate={} snr_db={} "
      "baseline_wander_mv={} motion_artifacts_per_hour={} powerline_hz={} powerline_mv={} "
      "respiration={} write_st={} write_edf={}",
      seed, duration_s, fs_hz, wfdb_format, ahi, hypopnea_fraction, central_fraction,
      apnea_minute_min_overlap_s, mean_hr_bpm, ectopic_rate, snr_db, baseline_wander_mv,
      motion_artifacts_per_hour, powerline_hz, powerline_mv, int(respiration), int(write_st),
      int(write_edf));
}

// ---------------------------------------------------------------------------------------------
// Generation
// ---------------------------------------------------------------------------------------------

namespace {

// Step 1: 30-s epochs.
std::vector<SleepStage> make_hypnogram(int64_t n_ep, Rng& rng) {
  std::vector<SleepStage> st;
  auto push = [&](SleepStage s, double minutes) {
    int64_t k = std::max<int64_t>(0, std::lround(minutes * 2));
    for (int64_t i = 0; i < k && int64_t(st.size()) < n_ep; ++i) st.push_back(s);
  };
  push(SleepStage::Wake, std::min(rng.uniform(5, 20), 0.05 * n_ep));  // latency (short records: short)
  for (int c = 0; int64_t(st.size()) < n_ep; ++c) {
    push(SleepStage::N1, rng.uniform(1, 5));
    push(SleepStage::N2, rng.uniform(15, 30));
    push(SleepStage::N3, std::max(0.0, rng.uniform(20, 40) - 15.0 * c));
    push(SleepStage::N2, rng.uniform(5, 15));
    push(SleepStage::REM, std::min(25.0, 4 + 4.0 * c + rng.uniform(0, 6)));
    if (rng.bernoulli(0.6)) push(SleepStage::Wake, rng.uniform(1, 5));
  }
  // Brief awakenings (30 s to 2 min) inside light sleep, and wake at the end of a night-long record.
  for (int64_t e = 0; e < n_ep; ++e) {
    if ((st[e] == SleepStage::N1 || st[e] == SleepStage::N2) && rng.bernoulli(0.015)) {
      int64_t len = rng.integer(1, 4);
      for (int64_t k = e; k < std::min(n_ep, e + len); ++k) st[k] = SleepStage::Wake;
      e += len;
    }
  }
  if (n_ep >= 240) {
    int64_t tail = rng.integer(4, 20);
    for (int64_t e = n_ep - tail; e < n_ep; ++e) st[e] = SleepStage::Wake;
  }
  return st;
}

SleepStage stage_at(const std::vector<SleepStage>& st, double t) {
  int64_t e = std::clamp<int64_t>(int64_t(t / 30.0), 0, int64_t(st.size()) - 1);
  return st[e];
}

bool asleep_throughout(const std::vector<SleepStage>& st, double t0, double t1) {
  for (int64_t e = int64_t(t0 / 30.0); e <= int64_t(t1 / 30.0); ++e)
    if (e < 0 || e >= int64_t(st.size()) || !is_sleep(st[e])) return false;
  return true;
}

// Step 2: events in clusters.
std::vector<RespEvent> make_events(const SynthConfig& cfg, const std::vector<SleepStage>& st,
                                   double sleep_hours, Rng& rng) {
  std::vector<RespEvent> ev;
  const int64_t target = std::lround(cfg.ahi * sleep_hours);
  if (target == 0) return ev;
  std::vector<double> weight(st.size()), cum;
  double total = 0;
  for (size_t e = 0; e < st.size(); ++e) {
    static const double w[] = {0.0, 1.2, 1.0, 0.3, 1.6};
    total += w[int(st[e])];
    cum.push_back(total);
  }
  if (total <= 0) return ev;
  auto free_at = [&](double a, double b) {
    for (const RespEvent& x : ev)
      if (a < x.onset_s + x.duration_s + 10 && x.onset_s < b + 10) return false;
    return true;
  };
  for (int64_t attempts = 0; int64_t(ev.size()) < target && attempts < 200 * target + 200; ++attempts) {
    double u = rng.uniform(0, total);
    size_t e = std::lower_bound(cum.begin(), cum.end(), u) - cum.begin();
    double t = 30.0 * double(e) + rng.uniform(0, 30);
    int len = rng.integer(2, 10);
    for (int j = 0; j < len && int64_t(ev.size()) < target; ++j) {
      RespEvent x;
      if (rng.bernoulli(cfg.hypopnea_fraction)) x.type = RespEventType::Hypopnea;
      else if (rng.bernoulli(cfg.central_fraction)) x.type = RespEventType::CentralApnea;
      else x.type = RespEventType::ObstructiveApnea;
      double median = x.type == RespEventType::Hypopnea ? 25.0 : 22.0;
      x.duration_s = std::clamp(std::exp(std::log(median) + 0.35 * rng.normal()), 10.0, 60.0);
      x.onset_s = t;
      x.arousal = rng.bernoulli(0.7);
      if (x.type == RespEventType::Hypopnea) x.desaturation_pct = rng.uniform(3, 6);
      else x.desaturation_pct = std::clamp(3 + 0.15 * x.duration_s + rng.uniform(0, 3), 3.0, 12.0);
      double end = t + x.duration_s;
      if (t < 5 || end + 25 > cfg.duration_s || !asleep_throughout(st, t, end) || !free_at(t, end)) break;
      ev.push_back(x);
      t = end + rng.uniform(15, 40);
    }
  }
  std::sort(ev.begin(), ev.end(), [](const RespEvent& a, const RespEvent& b) { return a.onset_s < b.onset_s; });
  return ev;
}

struct Grid {
  size_t n = 0;
  std::vector<double> phase;     // breathing phase (rad, unwrapped)
  std::vector<double> flow_env;  // airflow amplitude multiplier
  std::vector<double> effort_env;
  std::vector<double> paradox;   // 0 normal .. 1 chest and abdomen in opposite phase
  std::vector<double> spo2;      // %
  std::vector<double> hr;        // bpm
  std::vector<double> wander;    // baseline wander shape (mV per unit of config amplitude)
};

// Step 3: breathing envelopes and phase.
void make_breathing(const SynthConfig& cfg, const std::vector<SleepStage>& st,
                    const std::vector<RespEvent>& ev, Grid& g, Rng& rng) {
  static const double rate_factor[] = {1.05, 1.0, 0.97, 0.93, 1.08};
  static const double irregular[] = {0.08, 0.05, 0.04, 0.02, 0.10};
  const double br0 = rng.uniform(0.22, 0.27);  // breaths per second
  g.phase.assign(g.n, 0.0);
  g.flow_env.assign(g.n, 1.0);
  g.effort_env.assign(g.n, 1.0);
  g.paradox.assign(g.n, 0.0);
  double factor = rate_factor[int(stage_at(st, 0))], ou_rate = 0, ou_amp = 0, phi = rng.uniform(0, 2 * kPi);
  for (size_t i = 0; i < g.n; ++i) {
    SleepStage s = stage_at(st, double(i) * kDt);
    factor += (rate_factor[int(s)] - factor) * kDt / 20.0;
    ou_rate = ou_step(ou_rate, irregular[int(s)], 20.0, rng);
    ou_amp = ou_step(ou_amp, 0.08, 5.0, rng);
    g.phase[i] = phi;
    phi += 2 * kPi * br0 * factor * std::max(0.3, 1 + ou_rate) * kDt;
    double a = std::max(0.5, 1 + ou_amp);
    g.flow_env[i] = a;
    g.effort_env[i] = a;
  }
  const double ramp = 3.0;
  for (const RespEvent& x : ev) {
    double o = x.onset_s, e = o + x.duration_s;
    double flow_level, effort_start, effort_end, par;
    switch (x.type) {
      case RespEventType::ObstructiveApnea:
        flow_level = 0.05, effort_start = 0.9, effort_end = 1.4, par = 1.0;
        break;
      case RespEventType::CentralApnea:
        flow_level = 0.03, effort_start = 0.03, effort_end = 0.03, par = 0.0;
        break;
      default:
        flow_level = rng.uniform(0.35, 0.55), effort_start = effort_end = rng.uniform(0.5, 0.8), par = 0.2;
        break;
    }
    double recovery = rng.uniform(0.5, 1.0);
    size_t i0 = size_t(std::max(0.0, (o - ramp) / kDt)), i1 = std::min(g.n, size_t((e + 30) / kDt));
    for (size_t i = i0; i < i1; ++i) {
      double t = double(i) * kDt;
      double w = smoothstep((t - o + ramp / 2) / ramp) * (1 - smoothstep((t - e + ramp / 2) / ramp));
      double frac = std::clamp((t - o) / x.duration_s, 0.0, 1.0);
      double effort_level = effort_start + (effort_end - effort_start) * frac;
      double rec = t > e ? recovery * std::exp(-(t - e) / 8.0) * smoothstep((t - e) / 2.0) : 0.0;
      g.flow_env[i] *= (1 + w * (flow_level - 1)) + rec;
      g.effort_env[i] *= (1 + w * (effort_level - 1)) + rec;
      g.paradox[i] = std::max(g.paradox[i], w * par * smoothstep(frac * 3));
    }
  }
  (void)cfg;
}

// Step 4: SpO2 (integer percent, as an oximeter reports it).
void make_spo2(const std::vector<RespEvent>& ev, Grid& g, Rng& rng) {
  const double base = rng.uniform(95, 97.5);
  std::vector<double> deficit(g.n, 0.0);
  for (const RespEvent& x : ev) {
    double lag = rng.uniform(15, 25);
    double a = x.onset_s + lag, b = x.onset_s + x.duration_s + lag;
    size_t i0 = size_t(a / kDt), i1 = std::min(g.n, size_t((b + 20) / kDt));
    for (size_t i = i0; i < i1; ++i) {
      double t = double(i) * kDt;
      double d = t <= b ? x.desaturation_pct * (t - a) / (b - a)
                        : x.desaturation_pct * (1 - smoothstep((t - b) / 12.0));
      deficit[i] = std::max(deficit[i], d);
    }
  }
  g.spo2.assign(g.n, base);
  double drift = 0;
  for (size_t i = 0; i < g.n; ++i) {
    drift = ou_step(drift, 0.3, 60.0, rng);
    g.spo2[i] = std::clamp(std::round(base + drift - deficit[i]), 50.0, 100.0);
  }
}

// Step 5: heart rate.
void make_heart_rate(const SynthConfig& cfg, const std::vector<SleepStage>& st,
                     const std::vector<RespEvent>& ev, Grid& g, Rng& rng) {
  static const double offset[] = {8, 3, 0, -3, 4};
  static const double lf_amp[] = {3.0, 2.0, 1.5, 0.7, 2.5};
  static const double rsa_amp[] = {1.5, 2.0, 2.5, 3.5, 1.5};
  const double hr0 = cfg.mean_hr_bpm > 0 ? cfg.mean_hr_bpm : rng.uniform(52, 78);
  const double rsa_subject = rng.uniform(0.6, 1.4);
  g.hr.assign(g.n, hr0);
  SleepStage s0 = stage_at(st, 0);
  double off = offset[int(s0)], lf_a = lf_amp[int(s0)], rsa_a = rsa_amp[int(s0)];
  double drift = 0, lf_phase = rng.uniform(0, 2 * kPi), lf_f = 0, lf_m = 0;
  for (size_t i = 0; i < g.n; ++i) {
    SleepStage s = stage_at(st, double(i) * kDt);
    off += (offset[int(s)] - off) * kDt / 30.0;
    lf_a += (lf_amp[int(s)] - lf_a) * kDt / 30.0;
    rsa_a += (rsa_amp[int(s)] - rsa_a) * kDt / 30.0;
    drift = ou_step(drift, 2.5, 300.0, rng);
    lf_f = ou_step(lf_f, 1.0, 30.0, rng);
    lf_m = ou_step(lf_m, 0.3, 20.0, rng);
    lf_phase += 2 * kPi * (0.1 + 0.015 * lf_f) * kDt;
    double effort = std::clamp(g.effort_env[i], 0.0, 1.5);
    double rsa = rsa_a * rsa_subject * effort * std::sin(g.phase[i] - 0.5);
    g.hr[i] = hr0 + off + drift + lf_a * (1 + lf_m) * std::sin(lf_phase) + rsa;
  }
  // Cyclic variation: bradycardia through each apnea, tachycardia surge after it.
  for (const RespEvent& x : ev) {
    double o = x.onset_s, d = x.duration_s, e = o + d;
    double severity = x.type == RespEventType::Hypopnea ? 0.6 : 1.0;
    double brady = rng.uniform(4, 10) * severity * std::clamp(d / 30.0, 0.5, 1.5);
    double tachy = rng.uniform(10, 25) * severity * (x.arousal ? 1.0 : 0.5);
    size_t i0 = size_t(o / kDt), i1 = std::min(g.n, size_t((e + 60) / kDt));
    for (size_t i = i0; i < i1; ++i) {
      double t = double(i) * kDt, v;
      if (t <= e) v = -brady * (t - o) / d;
      else {
        double x1 = t - e;
        v = -brady * (1 - smoothstep(x1 / 3.0)) + tachy * smoothstep(x1 / 5.0) * std::exp(-std::max(0.0, x1 - 5) / 10.0);
      }
      g.hr[i] += v;
    }
  }
  for (double& h : g.hr) h = std::clamp(h, 35.0, 160.0);
}

struct Beat {
  double t;
  char type;  // 'N' or 'V'
};

// Integral pulse frequency modulation: a beat where the integral of HR/60 crosses an integer.
std::vector<Beat> make_beats(const SynthConfig& cfg, const Grid& g, Rng& rng) {
  std::vector<Beat> beats;
  double acc = rng.uniform(0, 1);  // initial phase of the sinus node
  for (size_t i = 0; i + 1 < g.n; ++i) {
    double r0 = g.hr[i] / 60.0, r1 = g.hr[i + 1] / 60.0;
    double inc = 0.5 * (r0 + r1) * kDt;
    while (acc + inc >= 1.0) {
      double need = 1.0 - acc, frac = need / inc;
      double t = (double(i) + frac) * kDt;
      beats.push_back({t, 'N'});
      acc -= 1.0;
    }
    acc += inc;
  }
  // Premature ventricular beats: the PVC comes early and the sinus beat it replaces is lost
  // (compensatory pause).
  for (size_t k = 2; k + 2 < beats.size(); ++k) {
    if (beats[k - 1].type == 'V' || !rng.bernoulli(cfg.ectopic_rate)) continue;
    double c = rng.uniform(0.6, 0.75);
    beats[k].t = beats[k - 1].t + c * (beats[k].t - beats[k - 1].t);
    beats[k].type = 'V';
  }
  return beats;
}

}  // namespace

SynthRecord generate_synthetic_record(const SynthConfig& cfg) {
  cfg.validate();
  SynthRecord rec;
  rec.config = cfg;
  const double fs = cfg.fs_hz;
  const int64_t N = std::lround(cfg.duration_s * fs);
  rec.num_samples = N;

  // 1. Hypnogram
  Rng hyp_rng(cfg.seed, kHypnogram);
  const int64_t n_ep = int64_t(std::ceil(cfg.duration_s / 30.0));
  rec.stages = make_hypnogram(n_ep, hyp_rng);
  double sleep_s = 0;
  for (int64_t e = 0; e < n_ep; ++e)
    if (is_sleep(rec.stages[e])) sleep_s += std::min(30.0, cfg.duration_s - 30.0 * double(e));
  rec.sleep_hours = sleep_s / 3600.0;

  // 2. Events, per-minute labels, AHI
  Rng ev_rng(cfg.seed, kEvents);
  rec.events = make_events(cfg, rec.stages, rec.sleep_hours, ev_rng);
  rec.true_ahi = rec.sleep_hours > 0 ? double(rec.events.size()) / rec.sleep_hours : 0.0;
  const int64_t n_min = int64_t(cfg.duration_s / 60.0);
  rec.apnea_minutes.assign(n_min, 0);
  for (int64_t m = 0; m < n_min; ++m) {
    double a = 60.0 * double(m), b = a + 60.0, covered = 0;
    for (const RespEvent& x : rec.events)
      covered += std::max(0.0, std::min(b, x.onset_s + x.duration_s) - std::max(a, x.onset_s));
    rec.apnea_minutes[m] = covered >= std::max(cfg.apnea_minute_min_overlap_s, 1e-9) ? 1 : 0;
  }

  // 3-5. Physiology on the 10 Hz grid
  Grid g;
  g.n = size_t(std::ceil(cfg.duration_s / kDt)) + 2;
  Rng br_rng(cfg.seed, kBreath), sp_rng(cfg.seed, kSpo2), hr_rng(cfg.seed, kHeart);
  make_breathing(cfg, rec.stages, rec.events, g, br_rng);
  make_spo2(rec.events, g, sp_rng);
  make_heart_rate(cfg, rec.stages, rec.events, g, hr_rng);
  std::vector<Beat> beats = make_beats(cfg, g, hr_rng);

  // 6. ECG
  Rng morph_rng(cfg.seed, kMorphology);
  Morphology m = draw_morphology(morph_rng);
  std::vector<float> ecg(N, 0.0f);
  double prev_t = -1;
  for (const Beat& b : beats) {
    int64_t sample = std::lround(b.t * fs);
    double rr = prev_t < 0 ? 60.0 / at_time(g.hr, b.t) : b.t - prev_t;
    prev_t = b.t;
    double chest = std::clamp(at_time(g.effort_env, b.t), 0.0, 2.0) * (breath_volume(at_time(g.phase, b.t)) - 0.5);
    double mod = (1 + m.edr_gain * chest) * (1 + 0.02 * morph_rng.normal());
    if (b.type == 'V') {
      add_gaussian(ecg, fs, b.t + m.pvc_qrs.offset_s, m.pvc_qrs.amp_mv * mod, m.pvc_qrs.sigma_s);
      add_gaussian(ecg, fs, b.t + m.pvc_t.offset_s * std::sqrt(rr), m.pvc_t.amp_mv, m.pvc_t.sigma_s);
    } else {
      add_gaussian(ecg, fs, b.t + m.p.offset_s, m.p.amp_mv, m.p.sigma_s);
      for (const Wave* w : {&m.q, &m.r, &m.s}) add_gaussian(ecg, fs, b.t + w->offset_s, w->amp_mv * mod, w->sigma_s);
      add_gaussian(ecg, fs, b.t + m.t.offset_s * std::sqrt(std::clamp(rr, 0.3, 2.0)), m.t.amp_mv, m.t.sigma_s);
    }
    if (sample < 0 || sample >= N) continue;
    if (!rec.beat_samples.empty() && sample <= rec.beat_samples.back()) continue;  // (cannot happen above 50 Hz)
    rec.beat_samples.push_back(sample);
    rec.beat_types.push_back(b.type);
    rec.r_amplitude_mv.push_back(float((b.type == 'V' ? m.pvc_qrs.amp_mv : m.r.amp_mv) * mod));
  }

  // Noise
  Rng noise_rng(cfg.seed, kNoise), motion_rng(cfg.seed, kMotion);
  g.wander.assign(g.n, 0.0);
  double slow = 0;
  for (size_t i = 0; i < g.n; ++i) {
    slow = ou_step(slow, 1.0, 8.0, noise_rng);
    g.wander[i] = 0.6 * 2 * (breath_volume(g.phase[i]) - 0.5) * std::min(g.effort_env[i], 2.0) + 0.5 * slow;
  }
  const double sigma_w = std::sqrt(m.qrs_p2p * m.qrs_p2p / 8.0 / std::pow(10.0, cfg.snr_db / 10.0));
  const bool hum = cfg.powerline_hz > 0 && cfg.powerline_hz < 0.45 * fs && cfg.powerline_mv > 0;
  const double hum_phase = noise_rng.uniform(0, 2 * kPi);
  for (int64_t i = 0; i < N; ++i) {
    double t = double(i) / fs;
    double v = ecg[i] + cfg.baseline_wander_mv * at_time(g.wander, t) + sigma_w * noise_rng.normal();
    if (hum) v += cfg.powerline_mv * std::sin(2 * kPi * cfg.powerline_hz * t + hum_phase);
    ecg[i] = float(v);
  }
  // Motion artifacts: mostly at arousals and in wake.
  const int64_t n_art = std::lround(cfg.motion_artifacts_per_hour * cfg.duration_s / 3600.0);
  std::vector<double> arousal_times;
  for (const RespEvent& x : rec.events)
    if (x.arousal) arousal_times.push_back(x.onset_s + x.duration_s);
  for (int64_t a = 0; a < n_art; ++a) {
    double c;
    if (!arousal_times.empty() && motion_rng.bernoulli(0.4)) {
      c = arousal_times[motion_rng.integer(0, int(arousal_times.size()) - 1)] + motion_rng.uniform(0, 5);
    } else {
      c = motion_rng.uniform(0, cfg.duration_s);
      for (int tries = 0; tries < 5 && is_sleep(stage_at(rec.stages, c)); ++tries) c = motion_rng.uniform(0, cfg.duration_s);
    }
    double dur = motion_rng.uniform(0.5, 3.0), amp = motion_rng.uniform(0.3, 1.0) * m.qrs_p2p;
    double f[3], ph[3];
    for (int k = 0; k < 3; ++k) {
      f[k] = motion_rng.uniform(1, 8);
      ph[k] = motion_rng.uniform(0, 2 * kPi);
    }
    int64_t i0 = std::max<int64_t>(0, std::lround((c - dur / 2) * fs)), i1 = std::min<int64_t>(N, std::lround((c + dur / 2) * fs));
    for (int64_t i = i0; i < i1; ++i) {
      double t = double(i) / fs, u = (t - (c - dur / 2)) / dur;
      double env = 0.5 - 0.5 * std::cos(2 * kPi * u);
      double v = 0;
      for (int k = 0; k < 3; ++k) v += std::sin(2 * kPi * f[k] * t + ph[k]) / 3.0;
      ecg[i] += float(amp * env * v);
    }
  }

  // Signals, clamped to what the WFDB format can store so the files hold exactly these values.
  const int fmt_ = cfg.wfdb_format;
  auto finish = [&](SynthSignal s) {
    float lo = float(adc_min_physical(fmt_, s.gain)), hi = float(adc_max_physical(fmt_, s.gain));
    for (float& v : s.values) v = std::clamp(v, lo, hi);
    rec.signals.push_back(std::move(s));
  };
  finish({"ECG", "mV", 200.0, std::move(ecg)});
  if (cfg.respiration) {
    const double resp_gain = fmt_ == 16 ? 20000.0 : 2000.0;
    SynthSignal flow{"Resp N", "mV", resp_gain, std::vector<float>(N)};
    SynthSignal chest{"Resp C", "mV", resp_gain, std::vector<float>(N)};
    SynthSignal abdo{"Resp A", "mV", resp_gain, std::vector<float>(N)};
    SynthSignal spo2{"SpO2", "%", 1.0, std::vector<float>(N)};
    for (int64_t i = 0; i < N; ++i) {
      double t = double(i) / fs;
      double phi = at_time(g.phase, t), fe = at_time(g.flow_env, t), ee = at_time(g.effort_env, t);
      double par = at_time(g.paradox, t);
      flow.values[i] = float(0.25 * fe * breath_flow(phi) + 0.004 * noise_rng.normal());
      chest.values[i] = float(0.25 * ee * (breath_volume(phi) - 0.5) + 0.003 * noise_rng.normal());
      abdo.values[i] = float(0.22 * ee * (breath_volume(phi + kPi * par) - 0.5) + 0.003 * noise_rng.normal());
      spo2.values[i] = float(g.spo2[std::min(g.n - 1, size_t(t / kDt))]);
    }
    finish(std::move(flow));
    finish(std::move(chest));
    finish(std::move(abdo));
    finish(std::move(spo2));
  }
  return rec;
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

SynthRecord write_synthetic_record(const SynthConfig& cfg, const std::string& out_dir,
                                   const std::string& name) {
  if (name.empty() || name.size() > 64 ||
      !std::all_of(name.begin(), name.end(), [](char c) { return std::isalnum((unsigned char)c) || c == '_' || c == '-'; }))
    throw Error(fmt::format("write_synthetic_record: record name '{}' must be 1-64 letters, digits, '_' or '-'", name));
  cfg.validate();
  if (cfg.write_edf && std::abs(cfg.fs_hz - std::round(cfg.fs_hz)) > 1e-9)
    throw Error(fmt::format("write_synthetic_record: EDF needs an integer sampling rate (1-s data records), "
                            "got fs_hz {}; set write_edf = false", cfg.fs_hz));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) throw Error(fmt::format("write_synthetic_record: cannot create directory '{}': {}", out_dir, ec.message()));

  SynthRecord rec = generate_synthetic_record(cfg);
  const double fs = cfg.fs_hz;
  const std::string base = (std::filesystem::path(out_dir) / name).string();

  // WFDB signals and header
  WfdbHeader h;
  h.record_name = name;
  h.num_signals = int(rec.signals.size());
  h.sampling_frequency = fs;
  h.sampling_frequency_given = true;
  h.num_samples = rec.num_samples;
  std::vector<std::vector<int32_t>> adc;
  for (const SynthSignal& s : rec.signals) {
    WfdbSignalSpec spec;
    spec.file_name = name + ".dat";
    spec.format = cfg.wfdb_format;
    spec.gain = s.gain;
    spec.gain_given = true;
    spec.baseline = 0;
    spec.units = s.units;
    spec.adc_resolution = cfg.wfdb_format == 212 ? 12 : 16;
    spec.adc_zero = 0;
    spec.description = s.name;
    h.signals.push_back(spec);
    adc.push_back(wfdb_physical_to_adc(s.values, s.gain, 0, cfg.wfdb_format));
  }
  h.comments.push_back("synthetic recording made by sleepnet synth (not a real subject)");
  h.comments.push_back(cfg.to_string());
  h.comments.push_back(fmt::format("truth: {} beats, {} events, sleep {:.3f} h, AHI {:.2f}, {} apnea minutes of {}",
                                   rec.beat_samples.size(), rec.events.size(), rec.sleep_hours, rec.true_ahi,
                                   std::count(rec.apnea_minutes.begin(), rec.apnea_minutes.end(), 1),
                                   rec.apnea_minutes.size()));
  write_wfdb_record(base, h, adc);

  // Beat annotations
  std::vector<WfdbAnnotation> qrs;
  for (size_t i = 0; i < rec.beat_samples.size(); ++i) {
    WfdbAnnotation a;
    a.sample = rec.beat_samples[i];
    a.code = rec.beat_types[i] == 'V' ? ann::PVC : ann::NORMAL;
    qrs.push_back(a);
  }
  write_wfdb_annotations(base + ".qrs", qrs);

  // Per-minute apnea annotations
  std::vector<WfdbAnnotation> apn;
  for (size_t m = 0; m < rec.apnea_minutes.size(); ++m) {
    WfdbAnnotation a;
    a.sample = std::lround(60.0 * double(m) * fs);
    a.code = rec.apnea_minutes[m] ? ann::APC : ann::NORMAL;
    apn.push_back(a);
  }
  write_wfdb_annotations(base + ".apn", apn);

  // slpdb-style stages and events
  if (cfg.write_st) {
    std::vector<WfdbAnnotation> st;
    for (size_t e = 0; e < rec.stages.size(); ++e) {
      WfdbAnnotation a;
      a.sample = 1 + std::lround(30.0 * double(e) * fs);
      if (a.sample >= rec.num_samples) break;
      a.code = ann::NOTE;
      a.aux = sleep_stage_code(rec.stages[e]);
      for (const RespEvent& x : rec.events)
        if (x.onset_s >= 30.0 * double(e) && x.onset_s < 30.0 * double(e + 1))
          a.aux += std::string(" ") + resp_event_token(x.type, x.arousal);
      st.push_back(a);
    }
    write_wfdb_annotations(base + ".st", st);
  }

  // EDF
  if (cfg.write_edf) {
    EdfHeader eh;
    eh.patient = "X X X synthetic";
    eh.recording = fmt::format("Startdate X X X sleepnet-synth seed {}", cfg.seed);
    eh.start_date = "01.01.00";
    eh.start_time = "22.00.00";
    eh.record_duration = 1.0;
    const int64_t spr = std::lround(fs);
    const int64_t n_rec = rec.num_samples / spr;  // whole seconds only
    std::vector<std::vector<float>> phys;
    for (const SynthSignal& s : rec.signals) {
      EdfSignal es;
      es.label = s.name;
      es.transducer = s.name == "SpO2" ? "pulse oximeter" : "synthetic";
      es.physical_dimension = s.units;
      es.physical_min = adc_min_physical(cfg.wfdb_format, s.gain);
      es.physical_max = adc_max_physical(cfg.wfdb_format, s.gain);
      es.digital_min = -32767;
      es.digital_max = 32767;
      es.samples_per_record = spr;
      eh.signals.push_back(es);
      phys.emplace_back(s.values.begin(), s.values.begin() + n_rec * spr);
    }
    write_edf(base + ".edf", eh, phys);
  }

  // Event list
  std::ofstream csv(base + "_events.csv");
  if (!csv) throw Error(fmt::format("write_synthetic_record: cannot write '{}_events.csv'", base));
  csv << "type,onset_s,duration_s,desaturation_pct,arousal\n";
  for (const RespEvent& x : rec.events)
    csv << fmt::format("{},{:.3f},{:.3f},{:.2f},{}\n", resp_event_token(x.type, false), x.onset_s,
                       x.duration_s, x.desaturation_pct, int(x.arousal));
  if (!csv) throw Error(fmt::format("write_synthetic_record: error writing '{}_events.csv'", base));
  return rec;
}

}  // namespace sleepnet::data
