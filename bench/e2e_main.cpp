// bench/e2e_main.cpp: MobileNetV2 end to end (training steps and inference), one configuration per
// process, with a one-line machine-readable result. Its twin is bench/torch_e2e.py (PyTorch), and
// bench/compare_pytorch.py runs the two alternately and prints the ratios.
//
// A plain program, not a Google Benchmark one: the peak resident memory of a process is only
// meaningful when the process trains a single configuration, and the PyTorch twin must do exactly
// the same sequence of work.
//
// Sequence (identical in torch_e2e.py):
//   1. build the model (seed 1) and Adam (lr 1e-3); x ~ N(0, 1) [N, C, H, W], y ~ N(0, 1) [N, 1]
//   2. check: `--check-steps` training steps on that fixed batch; the loss must fall below
//      0.8 x the first step's loss, or the program exits with status 1 (a fast but broken step is
//      never reported). These steps also warm up scratch buffers and the optimizer state.
//   3. `--warmup` more training steps, untimed
//   4. `--steps` timed training steps: zero_grad, forward in train mode, MSE, backward, Adam step
//   5. peak resident memory so far (VmHWM): the training process's peak
//   6. eval mode, no grad: `--warmup` untimed forwards, then `--steps` timed forwards
//
// Output, on stdout, one line of key=value pairs (times in ms, memory in MiB):
//   result impl=sleepnet config=a width=1.0 input=1x64x64 batch=32 threads=2 steps=10
//          train_samples_per_s=.. infer_samples_per_s=.. train_step_ms=.. (median) ...
//          peak_rss_mib=.. base_rss_mib=.. loss_first=.. loss_last=..
// samples/s come from the MEDIAN step time (robust to a busy machine); *_mean_ms are given too, and
// *_cpu_ms, the median CPU time of a step summed over all threads (wall x threads when they never
// wait for a core; more than the work when OpenMP threads spin at barriers).
//
//   e2e_main --config a --threads 2
//   e2e_main --config b --threads 2 --steps 3
//   e2e_main --config s --only train          (for a profiler: one phase only)
//   e2e_main --width 0.5 --channels 1 --size 32 --batch 64 --threads 2   (any other configuration)
#include <cblas.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <tuple>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "autograd/engine.h"
#include "nn/functional.h"
#include "nn/kernels/blas_core.h"
#include "nn/mobilenet.h"
#include "optim/adam.h"

namespace {

using namespace sleepnet;
using Clock = std::chrono::steady_clock;

struct Config {
  double width = 1.0;
  int64_t channels = 1, size = 64, batch = 32;
};

// The issue-6 configurations, plus "s": what the screening app trains.
const std::map<std::string, Config> kConfigs = {
    {"a", {1.0, 1, 64, 32}},
    {"b", {1.0, 3, 224, 8}},
    {"c", {0.5, 1, 64, 64}},
    {"s", {0.5, 1, 32, 64}},
};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// CPU time of the whole process (every thread), in ms. Beside the wall time it shows how much of a
// step the threads spent running (work plus OpenMP spin-waiting) on a machine that others share.
double cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return 1e3 * static_cast<double>(ts.tv_sec) + 1e-6 * static_cast<double>(ts.tv_nsec);
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double median(std::vector<double> v) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double mean(const std::vector<double>& v) {
  if (v.empty()) return kNaN;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

// Peak resident set size of this process in MiB: VmHWM from /proc/self/status, else ru_maxrss.
double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // "VmHWM:  1234 kB"
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // kB on Linux
}

void set_threads(int t) {
#ifdef _OPENMP
  omp_set_num_threads(t);
#endif
  openblas_set_num_threads(t);
}

}  // namespace

int main(int argc, char** argv) {
  sleepnet::kernels::select_blas_core(argv);  // as the app does: OpenBLAS's kernels for this CPU
  CLI::App app{"sleepnet MobileNetV2 end to end: training steps and inference, one configuration"};
  std::string config_name = "a";
  int threads = 2, steps = 10, warmup = 1, check_steps = 5;
  std::string only, trace_path;
  double width = 0;
  int64_t channels = 0, size = 0, batch = 0;
  app.add_option("--config", config_name, "a: w1.0 1x64x64 b32, b: w1.0 3x224x224 b8, c: w0.5 1x64x64 b64, "
                                          "s: w0.5 1x32x32 b64 (the screening app)");
  app.add_option("--threads", threads, "OpenMP and OpenBLAS threads")->check(CLI::PositiveNumber);
  app.add_option("--steps", steps, "timed training steps, and timed inference steps")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "untimed steps before each timed phase")->check(CLI::NonNegativeNumber);
  app.add_option("--check-steps", check_steps, "steps of the loss-goes-down check (>= 2)")->check(CLI::Range(2, 1000));
  app.add_option("--only", only, "for profiling: run only the training steps (with their check) or only inference; "
                                "the other phase's fields print as nan")
      ->check(CLI::IsMember({"train", "infer"}));
  app.add_option("--trace", trace_path, "for profiling: write each phase's start and end (CLOCK_MONOTONIC) to this file");
  app.add_option("--width", width, "override: width multiplier")->check(CLI::PositiveNumber);
  app.add_option("--channels", channels, "override: input channels")->check(CLI::PositiveNumber);
  app.add_option("--size", size, "override: input H = W")->check(CLI::Range(8, 4096));
  app.add_option("--batch", batch, "override: batch size")->check(CLI::Range(2, 100000));
  CLI11_PARSE(app, argc, argv);

  const auto it = kConfigs.find(config_name);
  if (it == kConfigs.end()) {
    std::fprintf(stderr, "e2e_main: --config must be one of a, b, c, s (got '%s')\n", config_name.c_str());
    return 2;
  }
  Config c = it->second;
  if (width > 0) c.width = width;
  if (channels > 0) c.channels = channels;
  if (size > 0) c.size = size;
  if (batch > 0) c.batch = batch;
  if (width > 0 || channels > 0 || size > 0 || batch > 0) config_name = "custom";
  set_threads(threads);
  const double base_rss = peak_rss_mib();

  // 1. model, optimizer, one fixed batch
  nn::MobileNetV2 model({.width_mult = c.width, .in_channels = c.channels, .num_outputs = 1, .dropout = 0.2f, .seed = 1});
  optim::Adam opt(model.named_parameters(), {.lr = 1e-3});
  Generator gen(2);
  const Tensor x = Tensor::normal({c.batch, c.channels, c.size, c.size}, 0.f, 1.f, gen);  // [N, C, H, W]
  const Tensor y = Tensor::normal({c.batch, 1}, 0.f, 1.f, gen);                           // [N, 1]
  model.train();

  // --trace: every phase of every step as "<phase> <start> <end>" (steady_clock = CLOCK_MONOTONIC,
  // seconds), so that bench/perf_breakdown.py can attribute the samples of `perf record -k
  // CLOCK_MONOTONIC` to phases, on every thread.
  std::vector<std::tuple<const char*, Clock::time_point, Clock::time_point>> trace;
  auto mark = [&](const char* phase, Clock::time_point t0) {
    const auto t1 = Clock::now();
    if (!trace_path.empty()) trace.emplace_back(phase, t0, t1);
    return std::chrono::duration<double, std::milli>(t1 - t0).count();
  };

  double fwd_ms = 0, bwd_ms = 0, adam_ms = 0;  // phase times of the current step
  auto train_step = [&]() {
    auto t0 = Clock::now();
    opt.zero_grad();
    Tensor loss = nn::functional::mse_loss(model(x), y);
    fwd_ms = mark("forward", t0);
    t0 = Clock::now();
    loss.backward();
    bwd_ms = mark("backward", t0);
    t0 = Clock::now();
    opt.step();
    adam_ms = mark("adam", t0);
    return loss.item();
  };

  std::vector<float> losses;
  std::vector<double> step_ms, f_ms, b_ms, a_ms, step_cpu_ms;
  double train_rss = kNaN;
  if (only != "infer") {
    // 2. the loss must go down on the fixed batch before anything is timed
    for (int i = 0; i < check_steps; ++i) losses.push_back(train_step());
    std::fprintf(stderr, "sleepnet config=%s: loss per step:", config_name.c_str());
    for (float l : losses) std::fprintf(stderr, " %.4f", l);
    std::fprintf(stderr, "\n");
    if (!(losses.back() < 0.8f * losses.front())) {
      std::fprintf(stderr, "e2e_main: the loss did not go down (%.4f -> %.4f); not timing a broken step\n",
                   losses.front(), losses.back());
      return 1;
    }

    // 3, 4. timed training steps
    for (int i = 0; i < warmup; ++i) train_step();
    for (int i = 0; i < steps; ++i) {
      const auto t0 = Clock::now();
      const double c0 = cpu_ms();
      train_step();
      step_ms.push_back(ms_since(t0));
      step_cpu_ms.push_back(cpu_ms() - c0);
      f_ms.push_back(fwd_ms), b_ms.push_back(bwd_ms), a_ms.push_back(adam_ms);
    }
    // 5. the training process's peak
    train_rss = peak_rss_mib();
  }

  // 6. inference: eval mode (running statistics, no dropout), no graph
  model.eval();
  std::vector<double> infer_ms, infer_cpu_ms;
  if (only != "train") {
    NoGradGuard no_grad;
    for (int i = 0; i < warmup; ++i) model(x);
    for (int i = 0; i < steps; ++i) {
      const auto t0 = Clock::now();
      const double c0 = cpu_ms();
      Tensor out = model(x);
      infer_ms.push_back(mark("inference", t0));
      infer_cpu_ms.push_back(cpu_ms() - c0);
    }
  }

  if (!trace_path.empty()) {
    std::ofstream f(trace_path);
    auto sec = [](Clock::time_point t) { return std::chrono::duration<double>(t.time_since_epoch()).count(); };
    for (const auto& [phase, t0, t1] : trace) f << fmt::format("{} {:.9f} {:.9f}\n", phase, sec(t0), sec(t1));
    if (!f) {
      std::fprintf(stderr, "e2e_main: --trace: cannot write %s\n", trace_path.c_str());
      return 2;
    }
  }

  const double train_med = median(step_ms), infer_med = median(infer_ms);
  const double n = static_cast<double>(c.batch);
  std::printf(
      "result impl=sleepnet config=%s width=%.2f input=%lldx%lldx%lld batch=%lld threads=%d steps=%d "
      "train_samples_per_s=%.2f infer_samples_per_s=%.2f train_step_ms=%.2f train_mean_ms=%.2f "
      "forward_ms=%.2f backward_ms=%.2f adam_ms=%.2f infer_step_ms=%.2f infer_mean_ms=%.2f "
      "train_cpu_ms=%.2f infer_cpu_ms=%.2f "
      "peak_rss_mib=%.1f base_rss_mib=%.1f loss_first=%.4f loss_last=%.4f blas_core=%s\n",
      config_name.c_str(), c.width, static_cast<long long>(c.channels), static_cast<long long>(c.size),
      static_cast<long long>(c.size), static_cast<long long>(c.batch), threads, steps, 1e3 * n / train_med,
      1e3 * n / infer_med, train_med, mean(step_ms), median(f_ms), median(b_ms), median(a_ms), infer_med,
      mean(infer_ms), median(step_cpu_ms), median(infer_cpu_ms), train_rss, base_rss, losses.empty() ? kNaN : losses.front(),
      losses.empty() ? kNaN : losses.back(), sleepnet::kernels::blas_core_name().c_str());
  return 0;
}
