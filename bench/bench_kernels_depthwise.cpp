// bench/bench_kernels_depthwise.cpp: depthwise convolution on MobileNetV2's real layer shapes,
// against memcpy over the same number of bytes.
//
// Depthwise layers do 9 multiply-adds per output, few enough that memory traffic bounds them on a
// machine whose memory is slow next to its arithmetic, so each kernel reports GB/s of its minimal
// traffic (every input read once, every output written once; the 3x3 weights are negligible) and
// sits beside a memcpy moving the same bytes with the same threads ("memcpy/<bytes>B/t<threads>"):
//   dw_fwd         reads x, writes y          dw_bwd_data    reads dy, writes dx
//   dw_bwd_weight  reads x and dy
// Each kernel is checked against its _ref once before timing.
//
// Where the working sets sit in large caches, a copy asks nearly as much as the arithmetic can
// give: 8 bytes per 18 flops at 120 GB/s is 270 GFLOP/s, the whole multiply-add peak of one AMD
// EPYC (Zen 5) core. So the kernels also report GFLOP/s, and a second yardstick,
// "fma_peak/t<threads>", measures what the cores' multiply-adds can do at most (independent
// vector FMA chains, compiled like the kernels: AVX-512 / AVX2 / baseline chosen at load time);
// bench/kernel_table.py puts both side by side.
//
// On AVX-512 CPUs dw_fwd_phases and dw_bwd_data_phases time the same passes through the padded
// phases, beside the path straight from the input that replaced them (same bits).
//
// Example: bench_kernels_depthwise --sizes=64 --batches=32 --threads=1,2 --benchmark_min_time=0.05
#include <string>
#include <vector>

#include "bench/bench_kernels_util.h"
#include "nn/kernels/common.h"  // SLEEPNET_MULTIVERSION
#include "nn/kernels/depthwise.h"

namespace sleepnet::bench {
namespace {

using kernels::Conv2dGeom;

enum class Pass { Forward, BackwardData, BackwardWeight };
const char* pass_name(Pass p) {
  return p == Pass::Forward ? "fwd" : p == Pass::BackwardData ? "bwd_data" : "bwd_weight";
}

int64_t pass_bytes(const Conv2dGeom& g, Pass) { return 4 * (g.x_numel() + g.y_numel()); }

// The arithmetic yardstick: kChains independent chains acc = acc * a + b of 16-float vectors
// (GCC's vector extension, one AVX-512 register, two AVX2 ones), enough in flight to cover the
// FMA latency on both pipes of a core. Returns a value that depends on every chain, so nothing is
// optimised away. 2 flops per multiply-add.
constexpr int kChains = 12;
using v16 = float __attribute__((vector_size(64)));
SLEEPNET_MULTIVERSION float fma_chains(int64_t iters, float a, float b) {
  v16 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = v16{} + static_cast<float>(k);
  const v16 va = v16{} + a, vb = v16{} + b;
  for (int64_t i = 0; i < iters; ++i)
    for (int k = 0; k < kChains; ++k) acc[k] = acc[k] * va + vb;
  v16 s{};
  for (int k = 0; k < kChains; ++k) s += acc[k];
  float out = 0;
  for (int l = 0; l < 16; ++l) out += s[l];
  return out;
}

void fma_peak(benchmark::State& state, int64_t threads) {
  set_threads(threads);
  constexpr int64_t kIters = 1 << 14;
  const int T = static_cast<int>(threads);
  for (auto _ : state) {
    float sink = 0;
#pragma omp parallel for num_threads(T) schedule(static) reduction(+ : sink)
    for (int t = 0; t < T; ++t) sink += fma_chains(kIters, 0.999999f, 1e-7f);
    benchmark::DoNotOptimize(sink);
  }
  set_gflops(state, 2.0 * kIters * kChains * 16 * static_cast<double>(threads));
}

// phases: forward and backward-data through the padded phases instead of the AVX-512 path straight
// from the input (depthwise.h, depthwise_set_direct; same bits, registered only where both exist).
void dw_bench(benchmark::State& state, const std::string& key, Conv2dGeom g, Pass pass, int64_t threads,
              bool phases = false) {
  set_threads(threads);
  kernels::depthwise_set_direct(!phases);
  struct Restore {
    ~Restore() { kernels::depthwise_set_direct(true); }
  } restore;
  Buffers& B = buffers();
  std::vector<float>& x = B.get(key, "x", static_cast<size_t>(g.x_numel()), 1);
  std::vector<float>& w = B.get(key, "w", static_cast<size_t>(g.w_numel()), 2);
  std::vector<float>& dy = B.get(key, "dy", static_cast<size_t>(g.y_numel()), 3);
  const size_t n_out = static_cast<size_t>(pass == Pass::Forward ? g.y_numel() : pass == Pass::BackwardData ? g.x_numel() : g.w_numel());
  std::vector<float>& out = B.get(key, "out", n_out, 4);
  auto run = [&](float* o) {
    if (pass == Pass::Forward) kernels::depthwise_forward(g, x.data(), w.data(), nullptr, o);
    else if (pass == Pass::BackwardData) kernels::depthwise_backward_data(g, dy.data(), w.data(), o);
    else kernels::depthwise_backward_weight(g, x.data(), dy.data(), o);
  };
  if (B.first_check()) {
    std::vector<float> ref(n_out);
    if (pass == Pass::Forward) kernels::depthwise_forward_ref(g, x.data(), w.data(), nullptr, ref.data());
    else if (pass == Pass::BackwardData) kernels::depthwise_backward_data_ref(g, dy.data(), w.data(), ref.data());
    else kernels::depthwise_backward_weight_ref(g, x.data(), dy.data(), ref.data());
    run(out.data());
    if (!check_close(state, out.data(), ref.data(), n_out, max_abs(ref.data(), n_out), 1e-5, "depthwise")) return;
  }
  for (auto _ : state) {
    run(out.data());
    benchmark::ClobberMemory();
  }
  set_gbytes(state, static_cast<double>(pass_bytes(g, pass)));
  set_gflops(state, g.flops());
}

void register_all(const Options& o) {
  for (int64_t t : o.threads)
    add("fma_peak/t" + std::to_string(t), [t](benchmark::State& s) { fma_peak(s, t); });
  for (int64_t size : o.sizes)
    for (int64_t batch : o.batches) {
      const auto net = net_shapes(o, size, batch);
      for (const auto& l : kernels::distinct_layers(net.convs)) {
        if (l.kind != kernels::LayerKind::Depthwise) continue;
        for (int64_t t : o.threads)
          for (Pass p : {Pass::Forward, Pass::BackwardData, Pass::BackwardWeight}) {
            const std::string name = std::string("dw_") + pass_name(p) + "/" + tag(size, batch, t) + "/" +
                                     l.name + ":" + kernels::layer_label(l) + "/bytes:" +
                                     std::to_string(pass_bytes(l.geom, p));
            add(name, [=](benchmark::State& s) { dw_bench(s, name, l.geom, p, t); });
            if (p != Pass::BackwardWeight && kernels::depthwise_direct_available()) {
              const std::string twin = std::string("dw_") + pass_name(p) + "_phases" +
                                       name.substr(std::string("dw_").size() + std::string(pass_name(p)).size());
              add(twin, [=](benchmark::State& s) { dw_bench(s, twin, l.geom, p, t, true); });
            }
            register_memcpy(pass_bytes(l.geom, p), t);
          }
      }
    }
}

}  // namespace
}  // namespace sleepnet::bench

int main(int argc, char** argv) { return sleepnet::bench::bench_main(argc, argv, sleepnet::bench::register_all); }
