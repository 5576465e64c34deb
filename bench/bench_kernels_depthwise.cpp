// bench/bench_kernels_depthwise.cpp: depthwise convolution on MobileNetV2's real layer shapes,
// against memcpy over the same number of bytes.
//
// Depthwise layers do 9 multiply-adds per output: they are limited by memory traffic, not
// arithmetic, so each kernel reports GB/s of its minimal traffic (every input read once, every
// output written once; the 3x3 weights are negligible) and sits beside a memcpy moving the same
// bytes with the same threads ("memcpy/<bytes>B/t<threads>"):
//   dw_fwd         reads x, writes y          dw_bwd_data    reads dy, writes dx
//   dw_bwd_weight  reads x and dy
// Each kernel is checked against its _ref once before timing.
//
// Example: bench_kernels_depthwise --sizes=64 --batches=32 --threads=1,2 --benchmark_min_time=0.05
#include <string>
#include <vector>

#include "bench/bench_kernels_util.h"
#include "nn/kernels/depthwise.h"

namespace sleepnet::bench {
namespace {

using kernels::Conv2dGeom;

enum class Pass { Forward, BackwardData, BackwardWeight };
const char* pass_name(Pass p) {
  return p == Pass::Forward ? "fwd" : p == Pass::BackwardData ? "bwd_data" : "bwd_weight";
}

int64_t pass_bytes(const Conv2dGeom& g, Pass) { return 4 * (g.x_numel() + g.y_numel()); }

void dw_bench(benchmark::State& state, const std::string& key, Conv2dGeom g, Pass pass, int64_t threads) {
  set_threads(threads);
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
            register_memcpy(pass_bytes(l.geom, p), t);
          }
      }
    }
}

}  // namespace
}  // namespace sleepnet::bench

int main(int argc, char** argv) { return sleepnet::bench::bench_main(argc, argv, sleepnet::bench::register_all); }
