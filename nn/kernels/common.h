// nn/kernels/common.h: small helpers shared by the hand-written kernels.
//
//   require(cond, where, what)   throw sleepnet::Error("<where>: <what>") when cond is false
//   max_threads()                OpenMP's thread budget (1 when built without OpenMP)
//   threads_for(work, grain)     how many threads `work` units are worth (see below)
//   parallel_for(n, T, f)        f(begin, end) over T contiguous chunks of [0, n): one parallel
//                                region, no barrier inside; T == 1 is a plain call
//   BlasThreads guard(n)         OpenBLAS's thread count set to n for the guard's lifetime
//   scratch(slot, n)             a per-thread float buffer that grows and is reused (no malloc in
//                                the steady state); slots let one kernel hold two buffers at once
//
// Threading rule used by every kernel: parallelism comes from OpenMP. OpenBLAS (the pthread build
// on Debian) keeps its own pool of threads; letting both pools run at once oversubscribes the
// cores, so kernels that call sgemm from inside an OpenMP region first pin OpenBLAS to one thread.
//
// Fork/join and barriers. A parallel region wakes the thread team and ends in a join; every
// `omp for` or `omp single` without `nowait` adds a barrier. Each one costs microseconds on an idle
// machine and a scheduler time slice on a busy one (a barrier waits for the thread that lost its
// core), and a MobileNetV2 training step runs hundreds of kernels. So a kernel opens at most one
// region per call, with no barrier inside unless a result must be complete before the next phase
// (the weight-gradient reduction in conv.cpp), and small work never reaches the OpenMP runtime:
// threads_for() gives 1 below `grain` units per thread, and parallel_for() with one thread is a
// plain function call (an `omp parallel if(false)` region still enters libgomp, which allocates
// and frees a team each time).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

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

// Threads worth using for `work` units when each thread should get at least `grain` of them:
// between 1 and max_threads().
inline int threads_for(int64_t work, int64_t grain) {
  const int64_t most = max_threads();
  const int64_t t = grain > 0 ? work / grain : most;
  return static_cast<int>(t < 1 ? 1 : (t > most ? most : t));
}

// Calls f(begin, end) on `threads` contiguous chunks of [0, n), in one parallel region with no
// barrier but the join (thread t gets chunk t; chunk boundaries are multiples of `align`). With one
// thread (or without OpenMP) it is a plain call f(0, n).
template <class F>
void parallel_for(int64_t n, int threads, F&& f, int64_t align = 1) {
  if (n <= 0) return;
  if (threads <= 1 || n <= align) {
    f(int64_t{0}, n);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t units = (n + align - 1) / align;
    const int64_t b = std::min(n, units * t / T * align), e = std::min(n, units * (t + 1) / T * align);
    if (b < e) f(b, e);
  }
#else
  f(int64_t{0}, n);
#endif
}

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

// Whether the CPU the program runs on has AVX-512F (false off x86-64): the condition under which
// GCC's target_clones pick their AVX-512 clone, and under which the kernels' hand-written AVX-512
// paths (batch-norm sums, depthwise straight from the input) may run.
bool cpu_has_avx512f();

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
