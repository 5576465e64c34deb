// bench/bench_kernels_misc.cpp: batch-norm, ReLU6, global average pooling and Adam on
// MobileNetV2's real shapes, against memcpy over the same number of bytes.
//
// All of these are memory-bound: each reports GB/s of its minimal traffic (n = elements):
//   bn_fwd_train   read x, write y (2n)      bn_bwd          read x, dy, write dx (3n)
//   bn_fwd_eval    read x, write y (2n)      bn_relu6_eval   read x, write y (2n), fused
//   relu6_fwd      2n                        relu6_bwd       read x, dy, write dx (3n)
//   pool_fwd       read n, write N*C         pool_bwd        read N*C, write n
//   adam           read p, g, m, v, write p, m, v (7n) over all MobileNetV2 parameters
// beside "memcpy/<bytes>B/t<threads>" moving the same bytes. Each kernel is checked against its
// _ref once before timing. Batch-norm shapes are those after every convolution (N, OC, OH*OW);
// ReLU6 shapes those of the layers followed by ReLU6. On AVX-512 CPUs bn_fwd_train_loops and
// bn_bwd_loops time the train kernels with their sums in the `omp simd` loops, beside the
// sixteen-block version bn_fwd_train and bn_bwd use (same bits; nn/kernels/batchnorm.cpp).
//
// Example: bench_kernels_misc --sizes=64 --batches=32 --threads=1,2 --benchmark_min_time=0.05
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "bench/bench_kernels_util.h"
#include "nn/kernels/activation.h"
#include "nn/kernels/adam.h"
#include "nn/kernels/batchnorm.h"

namespace sleepnet::bench {
namespace {

using kernels::BatchNormGeom;

enum class Bn { Train, Eval, Relu6Eval, Backward };
const char* bn_name(Bn k) {
  return k == Bn::Train ? "bn_fwd_train" : k == Bn::Eval ? "bn_fwd_eval" : k == Bn::Relu6Eval ? "bn_relu6_eval" : "bn_bwd";
}
int64_t bn_bytes(const BatchNormGeom& g, Bn k) { return 4 * g.N * g.C * g.HW * (k == Bn::Backward ? 3 : 2); }

// loops: the train kernels with their sums through the `omp simd` loops instead of the AVX-512
// sixteen-block version (batchnorm.h, batchnorm_set_lanes16; same bits, registered only where both exist).
void bn_bench(benchmark::State& state, const std::string& key, BatchNormGeom g, Bn kind, int64_t threads,
              bool loops = false) {
  set_threads(threads);
  kernels::batchnorm_set_lanes16(!loops);
  struct Restore {
    ~Restore() { kernels::batchnorm_set_lanes16(true); }
  } restore;
  Buffers& B = buffers();
  const size_t n = static_cast<size_t>(g.N * g.C * g.HW), C = static_cast<size_t>(g.C);
  std::vector<float>& x = B.get(key, "x", n, 1, -2.f, 3.f);
  std::vector<float>& dy = B.get(key, "dy", n, 2);
  std::vector<float>& out = B.get(key, "out", n, 3);
  std::vector<float>& w = B.get(key, "w", C, 4, 0.5f, 1.5f);
  std::vector<float>& b = B.get(key, "b", C, 5);
  std::vector<float>& rm = B.get(key, "rm", C, 6);
  std::vector<float>& rv = B.get(key, "rv", C, 7, 0.5f, 2.f);
  std::vector<float>& mean = B.get(key, "mean", C, 8);
  std::vector<float>& invstd = B.get(key, "invstd", C, 9);
  std::vector<float>& dw = B.get(key, "dw", C, 10);
  std::vector<float>& db = B.get(key, "db", C, 11);
  // save_mean / save_invstd for the backward pass come from a train-mode forward.
  if (kind == Bn::Backward && B.first_check()) {
    kernels::batchnorm_forward_train_ref(g, x.data(), w.data(), b.data(), out.data(), mean.data(), invstd.data(),
                                         nullptr, nullptr);
    std::vector<float> ref(n), rdw(C), rdb(C);
    kernels::batchnorm_backward_ref(g, x.data(), dy.data(), w.data(), mean.data(), invstd.data(), ref.data(),
                                    rdw.data(), rdb.data());
    kernels::batchnorm_backward(g, x.data(), dy.data(), w.data(), mean.data(), invstd.data(), out.data(), dw.data(),
                                db.data());
    if (!check_close(state, out.data(), ref.data(), n, max_abs(ref.data(), n), 1e-4, "batchnorm_backward")) return;
  } else if (B.first_check()) {
    std::vector<float> ref(n), rrm(rm), rrv(rv), rmean(C), rinv(C);
    if (kind == Bn::Train) {
      std::vector<float> orm(rm), orv(rv);
      kernels::batchnorm_forward_train_ref(g, x.data(), w.data(), b.data(), ref.data(), rmean.data(), rinv.data(),
                                           rrm.data(), rrv.data());
      kernels::batchnorm_forward_train(g, x.data(), w.data(), b.data(), out.data(), mean.data(), invstd.data(),
                                       orm.data(), orv.data());
      if (!check_close(state, orv.data(), rrv.data(), C, max_abs(rrv.data(), C), 1e-5, "running_var")) return;
    } else if (kind == Bn::Eval) {
      kernels::batchnorm_forward_eval_ref(g, x.data(), w.data(), b.data(), rm.data(), rv.data(), ref.data());
      kernels::batchnorm_forward_eval(g, x.data(), w.data(), b.data(), rm.data(), rv.data(), out.data());
    } else {
      kernels::batchnorm_relu6_eval_ref(g, x.data(), w.data(), b.data(), rm.data(), rv.data(), ref.data());
      kernels::batchnorm_relu6_eval(g, x.data(), w.data(), b.data(), rm.data(), rv.data(), out.data());
    }
    if (!check_close(state, out.data(), ref.data(), n, max_abs(ref.data(), n), 1e-5, bn_name(kind))) return;
  }
  for (auto _ : state) {
    switch (kind) {
      case Bn::Train:
        kernels::batchnorm_forward_train(g, x.data(), w.data(), b.data(), out.data(), mean.data(), invstd.data(),
                                         rm.data(), rv.data());
        break;
      case Bn::Eval:
        kernels::batchnorm_forward_eval(g, x.data(), w.data(), b.data(), rm.data(), rv.data(), out.data());
        break;
      case Bn::Relu6Eval:
        kernels::batchnorm_relu6_eval(g, x.data(), w.data(), b.data(), rm.data(), rv.data(), out.data());
        break;
      case Bn::Backward:
        kernels::batchnorm_backward(g, x.data(), dy.data(), w.data(), mean.data(), invstd.data(), out.data(),
                                    dw.data(), db.data());
        break;
    }
    benchmark::ClobberMemory();
  }
  set_gbytes(state, static_cast<double>(bn_bytes(g, kind)));
}

// ---- element-wise: ReLU6, pooling ----

enum class Ew { Relu6Fwd, Relu6Bwd, PoolFwd, PoolBwd };
const char* ew_name(Ew k) {
  return k == Ew::Relu6Fwd ? "relu6_fwd" : k == Ew::Relu6Bwd ? "relu6_bwd" : k == Ew::PoolFwd ? "pool_fwd" : "pool_bwd";
}
int64_t ew_bytes(int64_t N, int64_t C, int64_t HW, Ew k) {
  const int64_t n = N * C * HW;
  return 4 * (k == Ew::Relu6Fwd ? 2 * n : k == Ew::Relu6Bwd ? 3 * n : n + N * C);
}

void ew_bench(benchmark::State& state, const std::string& key, int64_t N, int64_t C, int64_t HW, Ew kind,
              int64_t threads) {
  set_threads(threads);
  Buffers& B = buffers();
  const size_t n = static_cast<size_t>(N * C * HW), nc = static_cast<size_t>(N * C);
  std::vector<float>& x = B.get(key, "x", n, 1, -2.f, 8.f);
  std::vector<float>& dy = B.get(key, "dy", kind == Ew::PoolBwd ? nc : n, 2);
  std::vector<float>& out = B.get(key, "out", kind == Ew::PoolFwd ? nc : n, 3);
  auto run = [&](float* o) {
    switch (kind) {
      case Ew::Relu6Fwd: kernels::relu6_forward(static_cast<int64_t>(n), x.data(), o); break;
      case Ew::Relu6Bwd: kernels::relu6_backward(static_cast<int64_t>(n), x.data(), dy.data(), o); break;
      case Ew::PoolFwd: kernels::global_avg_pool_forward(N, C, HW, x.data(), o); break;
      case Ew::PoolBwd: kernels::global_avg_pool_backward(N, C, HW, dy.data(), o); break;
    }
  };
  if (B.first_check()) {
    std::vector<float> ref(out.size());
    switch (kind) {
      case Ew::Relu6Fwd: kernels::relu6_forward_ref(static_cast<int64_t>(n), x.data(), ref.data()); break;
      case Ew::Relu6Bwd: kernels::relu6_backward_ref(static_cast<int64_t>(n), x.data(), dy.data(), ref.data()); break;
      case Ew::PoolFwd: kernels::global_avg_pool_forward_ref(N, C, HW, x.data(), ref.data()); break;
      case Ew::PoolBwd: kernels::global_avg_pool_backward_ref(N, C, HW, dy.data(), ref.data()); break;
    }
    run(out.data());
    if (!check_close(state, out.data(), ref.data(), ref.size(), max_abs(ref.data(), ref.size()), 1e-5, ew_name(kind)))
      return;
  }
  for (auto _ : state) {
    run(out.data());
    benchmark::ClobberMemory();
  }
  set_gbytes(state, static_cast<double>(ew_bytes(N, C, HW, kind)));
}

// ---- Adam over all of MobileNetV2's parameters ----

int64_t mobilenet_parameter_count(const Options& o) {
  const auto net = net_shapes(o, 64, 1);
  int64_t n = 0;
  for (const auto& l : net.convs) n += l.geom.w_numel() + 2 * l.geom.OC;  // conv weight, BN weight and bias
  return n + net.last_channel + 1;                                          // Linear(last_channel, 1)
}

void adam_bench(benchmark::State& state, const std::string& key, int64_t n, int64_t threads, bool decoupled) {
  set_threads(threads);
  Buffers& B = buffers();
  const size_t un = static_cast<size_t>(n);
  std::vector<float>& p = B.get(key, "p", un, 1);
  std::vector<float>& g = B.get(key, "g", un, 2);
  std::vector<float>& m = B.get(key, "m", un, 3, -0.1f, 0.1f);
  std::vector<float>& v = B.get(key, "v", un, 4, 0.f, 0.01f);
  kernels::AdamHyper h;
  h.weight_decay = decoupled ? 0.01 : 0.0;
  h.decoupled = decoupled;
  if (B.first_check()) {
    std::vector<float> p1(p), m1(m), v1(v), p2(p), m2(m), v2(v);
    kernels::adam_step(n, p1.data(), g.data(), m1.data(), v1.data(), 3, h);
    kernels::adam_step_ref(n, p2.data(), g.data(), m2.data(), v2.data(), 3, h);
    if (!check_close(state, p1.data(), p2.data(), un, 1.0, 1e-6, "adam")) return;
  }
  int64_t step = 1;
  for (auto _ : state) {
    kernels::adam_step(n, p.data(), g.data(), m.data(), v.data(), step++, h);
    benchmark::ClobberMemory();
  }
  set_gbytes(state, 28.0 * static_cast<double>(n));
}

void register_all(const Options& o) {
  for (int64_t size : o.sizes)
    for (int64_t batch : o.batches) {
      const auto net = net_shapes(o, size, batch);
      std::set<std::tuple<int64_t, int64_t>> bn_seen, relu_seen;
      for (const auto& l : net.convs) {
        const BatchNormGeom g{batch, l.geom.OC, l.geom.OH() * l.geom.OW()};
        const std::string shape = std::to_string(g.C) + "x" + std::to_string(l.geom.OH()) + "x" + std::to_string(l.geom.OW());
        if (bn_seen.insert({g.C, g.HW}).second)
          for (int64_t t : o.threads)
            for (Bn k : {Bn::Train, Bn::Backward, Bn::Eval, Bn::Relu6Eval}) {
              const std::string name = std::string(bn_name(k)) + "/" + tag(size, batch, t) + "/" + l.name + ":" + shape +
                                       "/bytes:" + std::to_string(bn_bytes(g, k));
              add(name, [=](benchmark::State& s) { bn_bench(s, name, g, k, t); });
              register_memcpy(bn_bytes(g, k), t);
              if ((k == Bn::Train || k == Bn::Backward) && kernels::batchnorm_lanes16_available()) {
                const std::string loops = std::string(bn_name(k)) + "_loops" + name.substr(std::string(bn_name(k)).size());
                add(loops, [=](benchmark::State& s) { bn_bench(s, loops, g, k, t, true); });
              }
            }
        if (l.relu6 && relu_seen.insert({g.C, g.HW}).second)
          for (int64_t t : o.threads)
            for (Ew k : {Ew::Relu6Fwd, Ew::Relu6Bwd}) {
              const int64_t bytes = ew_bytes(batch, g.C, g.HW, k);
              const std::string name = std::string(ew_name(k)) + "/" + tag(size, batch, t) + "/" + l.name + ":" + shape +
                                       "/bytes:" + std::to_string(bytes);
              add(name, [=](benchmark::State& s) { ew_bench(s, name, batch, g.C, g.HW, k, t); });
              register_memcpy(bytes, t);
            }
      }
      const int64_t C = net.last_channel, HW = net.last_h * net.last_w;
      for (int64_t t : o.threads)
        for (Ew k : {Ew::PoolFwd, Ew::PoolBwd}) {
          const int64_t bytes = ew_bytes(batch, C, HW, k);
          const std::string name = std::string(ew_name(k)) + "/" + tag(size, batch, t) + "/" + std::to_string(C) + "x" +
                                   std::to_string(net.last_h) + "x" + std::to_string(net.last_w) + "/bytes:" +
                                   std::to_string(bytes);
          add(name, [=](benchmark::State& s) { ew_bench(s, name, batch, C, HW, k, t); });
          register_memcpy(bytes, t);
        }
    }
  const int64_t n = mobilenet_parameter_count(o);
  for (int64_t t : o.threads)
    for (bool decoupled : {false, true}) {
      const std::string name = std::string(decoupled ? "adamw" : "adam") + "/t" + std::to_string(t) + "/params:" +
                               std::to_string(n) + "/bytes:" + std::to_string(28 * n);
      add(name, [=](benchmark::State& s) { adam_bench(s, name, n, t, decoupled); });
      register_memcpy(28 * n, t);
    }
}

}  // namespace
}  // namespace sleepnet::bench

int main(int argc, char** argv) { return sleepnet::bench::bench_main(argc, argv, sleepnet::bench::register_all); }
