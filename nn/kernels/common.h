// nn/kernels/common.h: small helpers shared by the hand-written kernels.
//
//   require(cond, where, what)   throw sleepnet::Error("<where>: <what>") when cond is false
//   max_threads()                OpenMP's thread budget (1 when built without OpenMP)
//   BlasThreads guard(n)         OpenBLAS's thread count set to n for the guard's lifetime
//   scratch(slot, n)             a per-thread float buffer that grows and is reused (no malloc in
//                                the steady state); slots let one kernel hold two buffers at once
//
// Threading rule used by every kernel: parallelism comes from OpenMP. OpenBLAS (the pthread build
// on Debian) keeps its own pool of threads; letting both pools run at once oversubscribes the
// cores, so kernels that call sgemm from inside an OpenMP region first pin OpenBLAS to one thread.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include "tensor/tensor.h"  // sleepnet::Error

// SLEEPNET_MULTIVERSION on a hot leaf function compiles it three times, for AVX-512, AVX2 and
// baseline x86-64, and picks one when the program loads, by the CPU it runs on (GCC's
// target_clones). The default build targets baseline x86-64 (SSE2: 4 floats per instruction), which
// leaves compute-bound kernels such as depthwise convolution at a quarter of an AVX-512 machine.
// The AVX-512 clone may fuse a*b + c into one FMA (one rounding instead of two), so results can
// differ in the last bit between CPUs, as PyTorch's CPU kernels do; the tests' tolerances allow it.
// Off under sanitizers, elsewhere than x86-64, and with -DSLEEPNET_NO_MULTIVERSION.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(SLEEPNET_NO_MULTIVERSION)
#define SLEEPNET_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SLEEPNET_MULTIVERSION
#endif

namespace sleepnet::kernels {

inline void require(bool cond, const char* where, const std::string& what) {
  if (!cond) throw Error(std::string(where) + ": " + what);
}
// The same, with the message built only on failure: for checks that run on every call of a hot
// kernel (sgemm is called once per image and group).
template <class MakeWhat>
  requires std::is_invocable_r_v<std::string, MakeWhat>
inline void require(bool cond, const char* where, MakeWhat&& what) {
  if (!cond) throw Error(std::string(where) + ": " + what());
}

// Number of threads an `omp parallel` region would use here (1 without OpenMP).
int max_threads();

// Which thread of the current parallel region this is (0 outside one, or without OpenMP).
int thread_num();
// Threads in the current parallel region (1 outside one, or without OpenMP).
int team_size();

// RAII: sets OpenBLAS's thread count, restores the previous count on destruction.
class BlasThreads {
 public:
  explicit BlasThreads(int n);
  ~BlasThreads();
  BlasThreads(const BlasThreads&) = delete;
  BlasThreads& operator=(const BlasThreads&) = delete;

 private:
  int saved_;
};

// Per-thread scratch memory: returns at least n floats, contents unspecified. The pointer stays
// valid until the same thread asks the same slot for more. slot is 0 or 1.
float* scratch(int slot, int64_t n);

// Partial sums inside `omp simd` reductions: float vector lanes when OpenMP vectorizes them.
// Without OpenMP the pragma is ignored and the loop runs in order, so it accumulates in double.
#ifdef _OPENMP
using simd_acc = float;
#else
using simd_acc = double;
#endif

// Sum of n floats: float partial sums over blocks of 128 in vector lanes (`omp simd` allows
// exactly this reordering; without OpenMP the loop is plain), blocks added in double. The result
// does not depend on the thread count.
inline double sum_lanes(const float* __restrict p, int64_t n) {
  double s = 0.0;
  for (int64_t b = 0; b < n; b += 128) {
    const int64_t e = b + 128 < n ? b + 128 : n;
    simd_acc a = 0;
#pragma omp simd reduction(+ : a)
    for (int64_t i = b; i < e; ++i) a += p[i];
    s += a;
  }
  return s;
}

}  // namespace sleepnet::kernels
