// bench/bench_kernels_util.h: what the kernel benchmark programs (bench/bench_kernels_*.cpp) share.
//
//   Options         which MobileNetV2 configurations to register, from our own flags (read and
//                   removed before Google Benchmark sees argv):
//                     --sizes=64,224   input H = W          --batches=32,1   batch sizes
//                     --threads=1,2    thread counts        --width=1.0      width multiplier
//                     --modes          also time conv threading strategies (bench_kernels_conv)
//   set_threads(t)  OpenMP and OpenBLAS both set to t threads
//   Buffers         per-benchmark data, generated once and kept while that benchmark runs
//   check_close     the once-before-timing comparison of a kernel with its `_ref` twin
//   counters        GFLOP/s and GB/s as Google Benchmark rate counters
//
// Every kernel benchmark has a yardstick in the same program: sgemm on the same GEMM shapes for
// convolutions, memcpy over the same number of bytes for memory-bound kernels; bench/kernel_table.py
// turns a JSON run into "fraction of yardstick" tables (see bench/README.md).
#pragma once

#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn/kernels/blas_core.h"
#include "nn/kernels/mobilenet_shapes.h"

namespace sleepnet::bench {

struct Options {
  std::vector<int64_t> sizes{64, 224};
  std::vector<int64_t> batches{32, 1};
  std::vector<int64_t> threads{1, 2};
  double width = 1.0;
  int64_t in_channels = 3;
  bool modes = false;
};

inline std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(std::stoll(item));
  return out;
}

// Reads and removes our flags from argv; leaves the rest for benchmark::Initialize.
inline Options parse_options(int* argc, char** argv) {
  Options o;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> const char* {
      const size_t n = std::strlen(flag);
      return a.compare(0, n, flag) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = value("--sizes=")) o.sizes = parse_list(v);
    else if (const char* v2 = value("--batches=")) o.batches = parse_list(v2);
    else if (const char* v3 = value("--threads=")) o.threads = parse_list(v3);
    else if (const char* v4 = value("--width=")) o.width = std::atof(v4);
    else if (const char* v5 = value("--in_channels=")) o.in_channels = std::atoll(v5);
    else if (a == "--modes") o.modes = true;
    else argv[out++] = argv[i];
  }
  *argc = out;
  return o;
}

inline void set_threads(int64_t t) {
#ifdef _OPENMP
  omp_set_num_threads(static_cast<int>(t));
#endif
  openblas_set_num_threads(static_cast<int>(t));
}

// Fast reproducible fill (xorshift), uniform in [lo, hi).
inline void fill(std::vector<float>& v, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& x : v) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x = lo + (hi - lo) * static_cast<float>(s >> 40) * (1.0f / 16777216.0f);
  }
}

// Data of the benchmark currently running. Google Benchmark calls a benchmark's function several
// times (to size the iteration count); the arrays are made on the first call and kept until a
// different benchmark asks, so at most one benchmark's data is alive.
class Buffers {
 public:
  // Returns the named arrays for benchmark `key`; `fresh` tells whether they were just made.
  std::vector<float>& get(const std::string& key, const std::string& name, size_t n, uint64_t seed,
                          float lo = -1.f, float hi = 1.f) {
    if (key != key_) {
      arrays_.clear();
      key_ = key;
      checked_ = false;
    }
    auto it = arrays_.find(name);
    if (it == arrays_.end() || it->second.size() != n) {
      std::vector<float> v(n);
      fill(v, seed, lo, hi);
      it = arrays_.insert_or_assign(name, std::move(v)).first;
    }
    return it->second;
  }
  // True the first time it is asked for the current benchmark (so the check runs once).
  bool first_check() {
    if (checked_) return false;
    checked_ = true;
    return true;
  }

 private:
  std::string key_;
  std::map<std::string, std::vector<float>> arrays_;
  bool checked_ = false;
};

inline Buffers& buffers() {
  static Buffers b;
  return b;
}

// |got - want| <= rtol * scale (+ tiny) everywhere; on failure the benchmark is marked as an error
// (and not timed). Returns whether it passed.
inline bool check_close(benchmark::State& state, const float* got, const float* want, size_t n,
                        double scale, double rtol, const char* what) {
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(e <= worst)) worst = e, at = i;  // catches NaN too
  }
  if (!(worst <= rtol * scale + 1e-30)) {
    char msg[256];
    std::snprintf(msg, sizeof msg, "%s differs from its _ref: |err| %.3g at %zu (allowed %.3g)", what,
                  worst, at, rtol * scale);
    state.SkipWithError(msg);
    return false;
  }
  return true;
}

inline double max_abs(const float* p, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(std::fabs(p[i])));
  return m;
}

// Counters: value per iteration, reported per second (shown as "GFLOP=12.3/s", "GB=4.5/s").
inline void set_gflops(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOP"] = benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
inline void set_gbytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB"] = benchmark::Counter(bytes_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Registers a benchmark the way all kernel benchmarks are: microseconds and wall-clock time (the
// work is multi-threaded). With --benchmark_repetitions=K, kernel_table.py keeps the fastest
// repetition of each benchmark (on a busy machine, the least disturbed one).
inline void add(const std::string& name, std::function<void(benchmark::State&)> fn) {
  benchmark::RegisterBenchmark(name.c_str(), [fn](benchmark::State& s) { fn(s); })
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
}

// ---- the memcpy yardstick ----
// Copies `bytes / 2` bytes (bytes = read + written, the unit every memory-bound kernel reports),
// split across the threads like the kernels split their work.
inline void memcpy_yardstick(benchmark::State& state, int64_t bytes, int64_t threads) {
  set_threads(threads);
  const size_t n = static_cast<size_t>(bytes / 2 / 4);
  std::vector<float>& src = buffers().get("memcpy" + std::to_string(bytes), "src", n, 1);
  std::vector<float>& dst = buffers().get("memcpy" + std::to_string(bytes), "dst", n, 2);
  const int64_t T = threads;
  for (auto _ : state) {
#pragma omp parallel for num_threads(static_cast<int>(T)) schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const size_t b = n * static_cast<size_t>(t) / static_cast<size_t>(T);
      const size_t e = n * static_cast<size_t>(t + 1) / static_cast<size_t>(T);
      std::memcpy(dst.data() + b, src.data() + b, (e - b) * sizeof(float));
    }
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  set_gbytes(state, static_cast<double>(n) * 8.0);
}

// "memcpy/<bytes>/t<threads>" registered once per (bytes, threads).
inline void register_memcpy(int64_t bytes, int64_t threads) {
  static std::map<std::pair<int64_t, int64_t>, bool> done;
  if (done[{bytes, threads}]) return;
  done[{bytes, threads}] = true;
  const std::string name = "memcpy/" + std::to_string(bytes) + "B/t" + std::to_string(threads);
  add(name, [bytes, threads](benchmark::State& s) { memcpy_yardstick(s, bytes, threads); });
}

// The network's layers for one (input size, batch), MobileNetV2 as torchvision builds it.
inline kernels::MobileNetV2Shapes net_shapes(const Options& o, int64_t size, int64_t batch) {
  return kernels::mobilenet_v2_shapes(o.width, o.in_channels, size, size, batch);
}

inline std::string tag(int64_t size, int64_t batch, int64_t threads) {
  return std::to_string(size) + "/b" + std::to_string(batch) + "/t" + std::to_string(threads);
}

// The main() of every kernel benchmark program: our options first, then Google Benchmark's.
inline int bench_main(int argc, char** argv, void (*register_all)(const Options&)) {
  kernels::select_blas_core(argv);  // as the app does: OpenBLAS's kernels for this CPU (kernel and yardstick alike)
  const Options o = parse_options(&argc, argv);
  register_all(o);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace sleepnet::bench
