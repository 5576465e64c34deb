// tests/kernels_test_util.h: helpers shared by the kernel tests (tests/kernels_*_test.cpp).
//
//   random_floats(n, seed)           reproducible uniform values in [lo, hi) (own generator, so the
//                                    data is the same with every standard library)
//   expect_close(got, want, scale, rtol, what)
//                                    |got[i] - want[i]| <= rtol * scale[i] + atol for every i, where
//                                    scale[i] is the natural size of the rounding error at i (for a
//                                    sum, the sum of |terms|); on failure prints the worst element
//   dot(a, b)                        inner product in double
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace sleepnet::kernels::testing {

// splitmix64: tiny, good enough for test data.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 12345) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
  }

 private:
  uint64_t s_;
};

inline std::vector<float> random_floats(int64_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  Rng r(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = r.uniform(lo, hi);
  return v;
}

inline std::vector<float> abs_of(const std::vector<float>& v) {
  std::vector<float> a(v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

inline double dot(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double s = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

inline double max_abs(const std::vector<float>& v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

// Element-wise check with a per-element error scale. Returns the worst |err| / allowed ratio.
inline double expect_close(const std::vector<float>& got, const std::vector<float>& want,
                           const std::vector<float>& scale, double rtol, const std::string& what,
                           double atol = 1e-30) {
  EXPECT_EQ(got.size(), want.size()) << what;
  EXPECT_EQ(got.size(), scale.size()) << what;
  double worst = 0.0;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size() && i < want.size() && i < scale.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double allowed = rtol * std::fabs(scale[i]) + atol;
    const double ratio = std::isnan(err) ? 1e30 : err / allowed;
    if (ratio > worst) worst = ratio, worst_i = i;
  }
  EXPECT_LE(worst, 1.0) << what << ": worst element " << worst_i << " got " << got[worst_i]
                        << " want " << want[worst_i] << " (error scale " << scale[worst_i]
                        << ", rtol " << rtol << ")";
  return worst;
}

// Same, with one scale for every element (e.g. max |want|).
inline double expect_close(const std::vector<float>& got, const std::vector<float>& want,
                           double scale, double rtol, const std::string& what) {
  return expect_close(got, want, std::vector<float>(got.size(), static_cast<float>(scale)), rtol,
                      what);
}

inline void expect_equal(const std::vector<float>& got, const std::vector<float>& want,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(got[i] == want[i])) {
      ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << want[i];
      return;
    }
}

}  // namespace sleepnet::kernels::testing
