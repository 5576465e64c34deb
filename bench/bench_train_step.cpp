// bench/bench_train_step.cpp: one MobileNetV2 training step, end to end: forward (train mode),
// MSE loss, backward, Adam. The configuration the screening app trains: width 1.0, one input
// channel (a 64x64 time-frequency image), one output, batch 32.
//
// Before anything is timed, the program trains the model for a few steps on one fixed batch and
// checks that the loss goes down (and prints it), so a fast but broken step cannot be reported.
// Each benchmark reports images/s and, as counters, the time of each phase (forward, backward,
// optimizer step) and the forward's multiply-adds per second (from nn::summarize).
//
//   bench_train_step                                   width 1.0, 1x64x64, batch 32, 1 and 2 threads
//   bench_train_step --benchmark_filter=/threads:2     one of them
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn/functional.h"
#include "nn/kernels/blas_core.h"
#include "nn/mobilenet.h"
#include "nn/summary.h"
#include "optim/adam.h"

namespace sleepnet {
namespace {

struct Config {
  double width;
  int64_t batch, size;
};

void set_threads(int64_t t) {
#ifdef _OPENMP
  omp_set_num_threads(static_cast<int>(t));
#endif
  openblas_set_num_threads(static_cast<int>(t));
}

using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct Setup {
  nn::MobileNetV2 model;
  optim::Adam opt;
  Tensor x, y;
  int64_t forward_mult_adds;

  explicit Setup(const Config& c)
      : model({.width_mult = c.width, .in_channels = 1, .num_outputs = 1, .dropout = 0.2f, .seed = 1}),
        opt(model.named_parameters(), {.lr = 1e-3}) {
    Generator gen(2);
    x = Tensor::normal({c.batch, 1, c.size, c.size}, 0.f, 1.f, gen);
    y = Tensor::normal({c.batch, 1}, 0.f, 1.f, gen);
    forward_mult_adds = nn::summarize(model, x.shape()).total_mult_adds;
  }

  // Returns the loss; adds the phase times to t[0..2].
  float step(double* t) {
    const auto t0 = Clock::now();
    opt.zero_grad();
    Tensor loss = nn::functional::mse_loss(model(x), y);
    const auto t1 = Clock::now();
    loss.backward();
    const auto t2 = Clock::now();
    opt.step();
    const auto t3 = Clock::now();
    t[0] += seconds(t0, t1), t[1] += seconds(t1, t2), t[2] += seconds(t2, t3);
    return loss.item();
  }
};

// The sanity check before timing: the loss must fall over a few steps on one batch.
void check_learns(const Config& c) {
  set_threads(2);
  Setup s(c);
  double t[3] = {0, 0, 0};
  std::fprintf(stderr, "MobileNetV2 width %.2f, batch %lld x 1x%lldx%lld: %s parameters; loss per step:",
               c.width, static_cast<long long>(c.batch), static_cast<long long>(c.size),
               static_cast<long long>(c.size), std::to_string(s.model.num_parameters()).c_str());
  float first = 0, last = 0;
  for (int i = 0; i < 6; ++i) {
    last = s.step(t);
    if (i == 0) first = last;
    std::fprintf(stderr, " %.4f", last);
  }
  std::fprintf(stderr, "\n");
  if (!(last < 0.7f * first)) {
    std::fprintf(stderr, "bench_train_step: the loss did not go down (%.4f -> %.4f); not timing a broken step\n",
                 first, last);
    std::exit(1);
  }
}

void train_step(benchmark::State& state, Config c) {
  set_threads(state.range(0));
  Setup s(c);
  double t[3] = {0, 0, 0};
  s.step(t);  // warm-up: scratch buffers, optimizer state
  t[0] = t[1] = t[2] = 0;
  for (auto _ : state) benchmark::DoNotOptimize(s.step(t));
  const double n = static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations() * c.batch);  // images
  state.counters["forward_ms"] = 1e3 * t[0] / n;
  state.counters["backward_ms"] = 1e3 * t[1] / n;
  state.counters["adam_ms"] = 1e3 * t[2] / n;
  state.counters["fwd_GMAC/s"] = s.forward_mult_adds / 1e9 / (t[0] / n);
  state.counters["threads"] = static_cast<double>(state.range(0));
}

}  // namespace
}  // namespace sleepnet

int main(int argc, char** argv) {
  using namespace sleepnet;
  kernels::select_blas_core(argv);  // as the app does: OpenBLAS's kernels for this CPU
  const Config full{1.0, 32, 64};
  check_learns(full);
  benchmark::RegisterBenchmark("train_step/mobilenet_v2_w1.0/1x64x64/batch32", train_step, full)
      ->Arg(1)
      ->Arg(2)
      ->ArgName("threads")
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
