// bench/bench_kernels_conv.cpp: im2col and 1x1 convolutions on MobileNetV2's real layer shapes,
// against OpenBLAS sgemm on the same GEMM shapes.
//
// For every distinct non-depthwise convolution of MobileNetV2 (the 3x3 stem, every 1x1), at each
// input size, batch and thread count from the flags (bench_kernels_util.h):
//   conv_fwd / conv_bwd_data / conv_bwd_weight   the kernel (checked against its _ref once)
//   sgemm_fwd / sgemm_bwd_data / sgemm_bwd_weight
//       yardstick: the same N*groups GEMMs the kernel performs, with no im2col, no bias and no
//       reduction, run the two ways OpenBLAS can be used here: "/images" (OpenMP over images,
//       single-threaded sgemm) and "/blas" (one image after another, OpenBLAS's threads). The
//       better of the two is the yardstick (bench/kernel_table.py).
// With --modes, conv_fwd_mode/<Images|Columns|Blas>/... times each threading strategy of
// conv2d_forward (the measurement behind ConvThreading::Auto; see bench/README.md), and
// conv_fwd_mode/Chunks/... the forward of each 1x1 layer as inference runs it.
//
// Example: bench_kernels_conv --sizes=64 --batches=32 --threads=2 --benchmark_min_time=0.05
#include <string>
#include <vector>

#include "bench/bench_kernels_util.h"
#include "nn/kernels/common.h"
#include "nn/kernels/conv.h"
#include "nn/kernels/gemm.h"

namespace sleepnet::bench {
namespace {

using kernels::Conv2dGeom;
using kernels::ConvThreading;

enum class Pass { Forward, BackwardData, BackwardWeight };
const char* pass_name(Pass p) {
  return p == Pass::Forward ? "fwd" : p == Pass::BackwardData ? "bwd_data" : "bwd_weight";
}

void conv_bench(benchmark::State& state, const std::string& key, Conv2dGeom g, Pass pass, int64_t threads,
                ConvThreading mode) {
  set_threads(threads);
  Buffers& B = buffers();
  std::vector<float>& x = B.get(key, "x", static_cast<size_t>(g.x_numel()), 1);
  std::vector<float>& w = B.get(key, "w", static_cast<size_t>(g.w_numel()), 2);
  std::vector<float>& dy = B.get(key, "dy", static_cast<size_t>(g.y_numel()), 3);
  std::vector<float>& out = B.get(key, "out", static_cast<size_t>(pass == Pass::Forward ? g.y_numel()
                                                                    : pass == Pass::BackwardData ? g.x_numel()
                                                                                                 : g.w_numel()), 4);
  auto run = [&](float* o) {
    if (pass == Pass::Forward) kernels::conv2d_forward(g, x.data(), w.data(), nullptr, o, mode);
    else if (pass == Pass::BackwardData) kernels::conv2d_backward_data(g, dy.data(), w.data(), o, mode);
    else kernels::conv2d_backward_weight(g, x.data(), dy.data(), o, mode);
  };
  if (B.first_check()) {
    std::vector<float> ref(out.size());
    if (pass == Pass::Forward) kernels::conv2d_forward_ref(g, x.data(), w.data(), nullptr, ref.data());
    else if (pass == Pass::BackwardData) kernels::conv2d_backward_data_ref(g, dy.data(), w.data(), ref.data());
    else kernels::conv2d_backward_weight_ref(g, x.data(), dy.data(), ref.data());
    run(out.data());
    if (!check_close(state, out.data(), ref.data(), out.size(), max_abs(ref.data(), ref.size()), 1e-4, "conv"))
      return;
  }
  for (auto _ : state) {
    run(out.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, g.flops());
}

// The GEMMs of one pass, per (image, group): shapes as in conv.h.
void sgemm_bench(benchmark::State& state, const std::string& key, Conv2dGeom g, Pass pass, int64_t threads,
                 bool over_images) {
  set_threads(threads);
  const int64_t items = g.N * g.groups, OCg = g.OCg(), K = g.col_rows(), P = g.OH() * g.OW();
  // A: weights or dy; B: one column matrix (or dy / x) per item; C: one output per item (per thread
  // for the weight gradient, which accumulates).
  int64_t M, Nn, Kk, a_size, b_size, c_size;
  bool ta = false, tb = false;
  if (pass == Pass::Forward) M = OCg, Nn = P, Kk = K, a_size = OCg * K, b_size = K * P, c_size = OCg * P;
  else if (pass == Pass::BackwardData) M = K, Nn = P, Kk = OCg, ta = true, a_size = OCg * K, b_size = OCg * P, c_size = K * P;
  else M = OCg, Nn = K, Kk = P, tb = true, a_size = OCg * P, b_size = K * P, c_size = OCg * K;
  const bool per_item_a = pass == Pass::BackwardWeight;  // dy differs per image; weights do not
  Buffers& Bf = buffers();
  std::vector<float>& A = Bf.get(key, "A", static_cast<size_t>(a_size * (per_item_a ? items : 1)), 1);
  std::vector<float>& Bm = Bf.get(key, "B", static_cast<size_t>(b_size * items), 2);
  const int64_t c_copies = pass == Pass::BackwardWeight ? threads : items;
  std::vector<float>& C = Bf.get(key, "C", static_cast<size_t>(c_size * c_copies), 3);
  const float beta = pass == Pass::BackwardWeight ? 1.f : 0.f;
  auto gemm = [&](int64_t i, int64_t c_index) {
    kernels::sgemm(ta, tb, M, Nn, Kk, 1.f, A.data() + (per_item_a ? i * a_size : 0), ta ? M : Kk,
                   Bm.data() + i * b_size, tb ? Kk : Nn, beta, C.data() + c_index * c_size, Nn);
  };
  for (auto _ : state) {
    if (over_images) {
      openblas_set_num_threads(1);
#pragma omp parallel for schedule(dynamic) num_threads(static_cast<int>(threads))
      for (int64_t i = 0; i < items; ++i)
        gemm(i, pass == Pass::BackwardWeight ? kernels::thread_num() : i);
    } else {
      for (int64_t i = 0; i < items; ++i) gemm(i, pass == Pass::BackwardWeight ? 0 : i);
    }
    benchmark::ClobberMemory();
  }
  set_gflops(state, g.flops());
}

std::string layer_name(const kernels::LayerShape& l) { return l.name + ":" + kernels::layer_label(l); }

void register_all(const Options& o) {
  for (int64_t size : o.sizes)
    for (int64_t batch : o.batches) {
      const auto net = net_shapes(o, size, batch);
      for (const auto& l : kernels::distinct_layers(net.convs)) {
        if (l.kind == kernels::LayerKind::Depthwise) continue;
        for (int64_t t : o.threads) {
          const std::string suffix = tag(size, batch, t) + "/" + layer_name(l);
          for (Pass p : {Pass::Forward, Pass::BackwardData, Pass::BackwardWeight}) {
            const std::string name = std::string("conv_") + pass_name(p) + "/" + suffix;
            add(name, [=](benchmark::State& s) {
              conv_bench(s, name, l.geom, p, t, ConvThreading::Auto);
            });
            for (bool images : {true, false}) {
              if (!images && t == 1) continue;  // identical to /images with one thread
              const std::string yname = std::string("sgemm_") + pass_name(p) + (images ? "/images/" : "/blas/") + suffix;
              add(yname, [=](benchmark::State& s) {
                sgemm_bench(s, yname, l.geom, p, t, images);
              });
            }
          }
          if (o.modes && l.geom.is_pointwise()) {  // inference's mode for 1x1 layers (forward only)
            const std::string name = std::string("conv_") + pass_name(Pass::Forward) + "_mode/Chunks/" + suffix;
            add(name, [=](benchmark::State& s) {
              conv_bench(s, name, l.geom, Pass::Forward, t, ConvThreading::Chunks);
            });
          }
          if (o.modes && t > 1)
            for (ConvThreading m : {ConvThreading::Images, ConvThreading::Columns, ConvThreading::Blas})
              for (Pass p : {Pass::Forward, Pass::BackwardData, Pass::BackwardWeight}) {
                const char* mn = m == ConvThreading::Images ? "Images" : m == ConvThreading::Columns ? "Columns" : "Blas";
                const std::string name = std::string("conv_") + pass_name(p) + "_mode/" + mn + "/" + suffix;
                add(name, [=](benchmark::State& s) {
                  conv_bench(s, name, l.geom, p, t, m);
                });
              }
        }
      }
    }
}

}  // namespace
}  // namespace sleepnet::bench

int main(int argc, char** argv) { return sleepnet::bench::bench_main(argc, argv, sleepnet::bench::register_all); }
