// nn/kernels/blas_core.cpp: choosing OpenBLAS's kernels by the CPU's instruction sets (see the header).
#include "nn/kernels/blas_core.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sleepnet::kernels {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// The instruction-set level an OpenBLAS x86-64 core name stands for: 0 SSE-class kernels, 1 AVX,
// 2 AVX2, 3 AVX-512; -1 for a name we do not know (then we leave OpenBLAS alone).
int core_level(const std::string& name) {
  const std::string n = lower(name);
  for (const char* c : {"skylakex", "cooperlake", "sapphirerapids"})
    if (n == c) return 3;
  for (const char* c : {"haswell", "zen"})
    if (n == c) return 2;
  for (const char* c : {"sandybridge", "bulldozer", "piledriver", "steamroller", "excavator"})
    if (n == c) return 1;
  for (const char* c : {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "nano",
                        "opteron", "opteron_sse3", "barcelona", "bobcat", "katmai", "coppermine",
                        "northwood", "banias", "athlon", "unknown"})
    if (n == c) return 0;
  return -1;
}

}  // namespace

std::string blas_core_name() {
  const char* name = openblas_get_corename();
  return name ? std::string(name) : std::string();
}

std::string preferred_blas_core() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  if (__builtin_cpu_supports("avx")) return "Sandybridge";
#endif
  return "";
}

std::string better_core(const std::string& running, const std::string& preferred) {
  const int r = core_level(running), p = core_level(preferred);
  return r >= 0 && r < p ? preferred : "";
}

std::string blas_core_held_back() {
  if (!std::getenv("OPENBLAS_CORETYPE")) return "";
  return better_core(blas_core_name(), preferred_blas_core());
}

std::string blas_core_upgrade() {
  if (std::getenv("OPENBLAS_CORETYPE")) return "";  // the user (or an earlier re-execution) chose
  if (const char* keep = std::getenv("SLEEPNET_BLAS_CORE"); keep && std::strcmp(keep, "keep") == 0)
    return "";
  return better_core(blas_core_name(), preferred_blas_core());
}

void select_blas_core(char** argv) {
  const std::string core = blas_core_upgrade();
  if (core.empty() || !argv || !argv[0]) return;
  if (setenv("OPENBLAS_CORETYPE", core.c_str(), 1) != 0) return;
  std::fflush(nullptr);
  execv("/proc/self/exe", argv);
  // Only reached if the re-execution failed: carry on with OpenBLAS's own choice, and do not leave
  // the variable to child processes as if it were in effect here.
  unsetenv("OPENBLAS_CORETYPE");
  std::fprintf(stderr, "sleepnet: could not re-execute with OPENBLAS_CORETYPE=%s (%s); "
               "OpenBLAS runs its %s kernels\n", core.c_str(), std::strerror(errno), blas_core_name().c_str());
}

}  // namespace sleepnet::kernels
