// blas_core_test: the choice of OpenBLAS kernels by CPU (nn/kernels/blas_core.h). The
// re-execution itself is exercised by every run of the app; here: what decides it.
#include "nn/kernels/blas_core.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace sleepnet::kernels {
namespace {

// Sets (or unsets, with nullptr) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value) setenv(name, value, 1); else unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_, old_.c_str(), 1); else unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(BlasCore, BetterCoreOnlyForAKnownHigherLevel) {
  EXPECT_EQ(better_core("Haswell", "SkylakeX"), "SkylakeX");
  EXPECT_EQ(better_core("Zen", "SkylakeX"), "SkylakeX");
  EXPECT_EQ(better_core("Prescott", "Haswell"), "Haswell");
  EXPECT_EQ(better_core("SkylakeX", "Haswell"), "");
  EXPECT_EQ(better_core("Haswell", "Haswell"), "");
  EXPECT_EQ(better_core("Mystery", "SkylakeX"), "");
  EXPECT_EQ(better_core("Haswell", ""), "");
}

TEST(BlasCore, NoHintWithoutAUserChoice) {
  ScopedEnv user("OPENBLAS_CORETYPE", nullptr);
  EXPECT_EQ(blas_core_held_back(), "");
}

TEST(BlasCore, OpenBlasReportsItsCore) { EXPECT_FALSE(blas_core_name().empty()); }

TEST(BlasCore, PreferredCoreIsOneOpenBlasKnows) {
  const std::string p = preferred_blas_core();
  EXPECT_TRUE(p.empty() || p == "SkylakeX" || p == "Haswell" || p == "Sandybridge") << p;
}

TEST(BlasCore, AUserChoiceIsNeverOverridden) {
  ScopedEnv keep("SLEEPNET_BLAS_CORE", nullptr);
  ScopedEnv user("OPENBLAS_CORETYPE", "Prescott");
  EXPECT_EQ(blas_core_upgrade(), "");
}

TEST(BlasCore, KeepTurnsTheUpgradeOff) {
  ScopedEnv user("OPENBLAS_CORETYPE", nullptr);
  ScopedEnv keep("SLEEPNET_BLAS_CORE", "keep");
  EXPECT_EQ(blas_core_upgrade(), "");
}

TEST(BlasCore, AnUpgradeIsThePreferredCoreAndDiffersFromTheRunningOne) {
  ScopedEnv user("OPENBLAS_CORETYPE", nullptr);
  ScopedEnv keep("SLEEPNET_BLAS_CORE", nullptr);
  const std::string up = blas_core_upgrade();
  if (up.empty()) GTEST_SKIP() << "OpenBLAS already runs " << blas_core_name() << " kernels here";
  EXPECT_EQ(up, preferred_blas_core());
  EXPECT_NE(up, blas_core_name());
}

}  // namespace
}  // namespace sleepnet::kernels
