// nn/kernels/common.cpp: thread helpers and per-thread scratch memory for the kernels.
#include "nn/kernels/common.h"

#include <cblas.h>

#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace sleepnet::kernels {

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int thread_num() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

BlasThreads::BlasThreads(int n) : saved_(openblas_get_num_threads()) {
  if (n != saved_) openblas_set_num_threads(n);
}

BlasThreads::~BlasThreads() {
  if (openblas_get_num_threads() != saved_) openblas_set_num_threads(saved_);
}

float* scratch(int slot, int64_t n) {
  // (the lazy require: this runs once per plane in some kernels, and a 19-character message would
  // cost a heap allocation per call)
  require(slot == 0 || slot == 1, "nn/kernels/common.cpp scratch", [] { return std::string("slot must be 0 or 1"); });
  thread_local std::vector<float> buffers[2];
  std::vector<float>& b = buffers[slot];
  if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}

bool cpu_has_avx512f() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();  // may run before libgcc's own constructor has (static initialisers)
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

}  // namespace sleepnet::kernels
