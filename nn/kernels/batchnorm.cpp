// nn/kernels/batchnorm.cpp: BatchNorm2d forward (train, eval; each also fused with ReLU6) and
// backward (plain, and through the fused ReLU6).
//
// ---- Derivation of the backward pass (train mode) ----------------------------------------------
// Take one channel; its M = N*H*W values x_i, i = 1..M. The forward pass is
//
//   mu = (1/M) sum_j x_j          var = (1/M) sum_j (x_j - mu)^2          r = (var + eps)^(-1/2)
//   xhat_i = (x_i - mu) * r       y_i = gamma * xhat_i + beta
//
// Given g_i = dL/dy_i:
//
//   dL/dbeta  = sum_i g_i                                                                    (1)
//   dL/dgamma = sum_i g_i * xhat_i                                                           (2)
//
// For the input, every xhat_j depends on every x_i through mu and var. The pieces:
//
//   d mu / d x_i   = 1/M
//   d var / d x_i  = (2/M) sum_j (x_j - mu) (delta_ij - 1/M) = (2/M) (x_i - mu)
//                    (the 1/M term vanishes because sum_j (x_j - mu) = 0)
//   d r / d x_i    = -1/2 (var + eps)^(-3/2) * d var / d x_i = -r^3 (x_i - mu) / M
//   d xhat_j / d x_i = (delta_ij - 1/M) r + (x_j - mu) * d r / d x_i
//                    = r (delta_ij - 1/M - xhat_j xhat_i / M)
//
// so, with dL/dxhat_j = gamma g_j,
//
//   dL/dx_i = sum_j gamma g_j r (delta_ij - 1/M - xhat_j xhat_i / M)
//           = gamma r ( g_i - (1/M) sum_j g_j - xhat_i (1/M) sum_j g_j xhat_j )
//           = gamma r ( g_i - dbeta / M - xhat_i * dgamma / M )                              (3)
//
// Two passes per channel: the sums (1) and (2), then (3) for every element. Written with
// d_i = x_i - mu (so xhat_i = d_i r), (3) is dx_i = a g_i + b d_i + c with
//   a = gamma r,   b = -gamma r^3 dgamma' / M,   c = -gamma r dbeta / M
// where dgamma' = sum_j g_j d_j = dgamma / r.
//
// The running variance uses the unbiased estimate var * M / (M - 1), as PyTorch does, while the
// normalisation uses the biased var: both are PyTorch's documented behaviour.
//
// ---- Fused ReLU6 ----------------------------------------------------------------------------------
// z = relu6(y) with y the BN output: dL/dy_i = g_i = dL/dz_i * [0 < y_i < 6] (PyTorch's mask: zero
// at both kinks), and [0 < y_i < 6] = [0 < z_i < 6], so the backward reads the mask from the fused
// output z and feeds g into (1)-(3) as it is read: the masked gradient is never stored.
#include "nn/kernels/batchnorm.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "nn/kernels/common.h"

namespace sleepnet::kernels {

void BatchNormGeom::validate(const char* who) const {
  const std::string w = std::string(who) + " (nn/kernels/batchnorm.h BatchNormGeom)";
  require(N >= 1, w.c_str(), "N = " + std::to_string(N) + ", expected >= 1");
  require(C >= 1, w.c_str(), "C = " + std::to_string(C) + ", expected >= 1");
  require(HW >= 1, w.c_str(), "HW = " + std::to_string(HW) + ", expected >= 1");
  require(eps >= 0.f, w.c_str(), "eps = " + std::to_string(eps) + ", expected >= 0");
  require(momentum >= 0.f && momentum <= 1.f, w.c_str(),
          "momentum = " + std::to_string(momentum) + ", expected in [0, 1]");
}

namespace {

// Below this many elements a batch-norm pass runs on one thread (waking the team costs more).
constexpr int64_t kMinParallel = 1 << 15;

void check_train(const BatchNormGeom& g, const char* who) {
  g.validate(who);
  require(g.N * g.HW > 1, who,
          "expected more than 1 value per channel when training, got N*HW = " +
              std::to_string(g.N * g.HW) + " (nn/kernels/batchnorm.h)");
}

void check_pointers(const char* who, std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs) require(p != nullptr, who, "a required array pointer is null");
}

// Shifted sums over n values: s1 += sum (p - k), s2 += sum (p - k)^2. Float partial sums over
// blocks of 64 values (`omp simd` lets the compiler keep them in vector lanes: it may reorder
// these additions and no others), each block added into double: accurate for any n.
// (Explicit 16-lane sums, flushed to double every 256 values, ran 14x14 and 28x28 planes 1.3-1.5x
// faster, but moved the parity fixture's final.* values, which after three Adam steps depend on
// the order of every float sum, past their tolerance: bench/README.md. On AVX-512 CPUs the same
// sums, in the same order, come from "Sixteen blocks at once" below.)
[[gnu::always_inline]] inline void moments_loop(const float* __restrict p, int64_t n, float k, double& s1,
                                                double& s2) {
  constexpr int64_t kBlock = 64;  // short enough that even an in-order float sum stays accurate
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    simd_acc a = 0, q = 0;
#pragma omp simd reduction(+ : a, q)
    for (int64_t i = b; i < e; ++i) {
      const float d = p[i] - k;
      a += d;
      q += d * d;
    }
    s1 += a, s2 += q;
  }
}

// The gradient that reaches the BN output through a ReLU6 whose output is z: g where 0 < z < 6,
// else 0. `|` and an unconditional read of g: a select without branches, so loops vectorize (and
// NaN passes g through, as in relu6_backward and PyTorch).
inline float relu6_pass(float g, float z) { return ((z <= 0.f) | (z >= 6.f)) ? 0.f : g; }

// sg += sum g, sgd += sum g * (x - mu), same blocking as above. kRelu6: g masked by the fused
// output zp (relu6_pass); zp is unused otherwise.
template <bool kRelu6>
[[gnu::always_inline]] inline void grad_sums_loop(const float* __restrict gp, const float* __restrict zp,
                                                  const float* __restrict xp, int64_t n, float mu, double& sg,
                                                  double& sgd) {
  constexpr int64_t kBlock = 64;  // short enough that even an in-order float sum stays accurate
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    simd_acc a = 0, q = 0;
#pragma omp simd reduction(+ : a, q)
    for (int64_t i = b; i < e; ++i) {
      float gv = gp[i];
      if constexpr (kRelu6) gv = relu6_pass(gv, zp[i]);
      a += gv;
      q += gv * (xp[i] - mu);
    }
    sg += a, sgd += q;
  }
}
SLEEPNET_MULTIVERSION void grad_sums(const float* gp, const float* xp, int64_t n, float mu, double& sg,
                                     double& sgd) {
  grad_sums_loop<false>(gp, nullptr, xp, n, mu, sg, sgd);
}
SLEEPNET_MULTIVERSION void grad_sums_relu6(const float* gp, const float* zp, const float* xp, int64_t n, float mu,
                                           double& sg, double& sgd) {
  grad_sums_loop<true>(gp, zp, xp, n, mu, sg, sgd);
}
template <bool kRelu6>
void grad_sums_any(const float* gp, const float* zp, const float* xp, int64_t n, float mu, double& sg, double& sgd) {
  if constexpr (kRelu6)
    grad_sums_relu6(gp, zp, xp, n, mu, sg, sgd);
  else
    grad_sums(gp, xp, n, mu, sg, sgd);
}

// Train-mode passes work on blocks of channels. A block holds enough channels that its data
// (N * HW values per channel) is about 256 KB, so the second pass over it (normalise, or dx)
// reads from L2, and small planes (2x2, 4x4) are streamed image by image through many channels
// rather than 4 floats at a time; blocks are small enough to give every thread several.
//
// Except for large tensors (x of kStreamBytes and more, which do not stay in the caches between two
// steps anyway) whose blocks would read short runs: a block's N reads, one per image and C * HW
// floats apart, of kShortRun bytes or less are as many short streams from memory for the
// prefetchers to pick up. There one block per thread (each pass then reads long runs, image after
// image) was faster even though its second pass reads x from memory again: the 96x32x32 layer at
// batch 32 (12.6 MB, runs of 8 KB), forward 0.78-1.42 -> 0.50-0.66 ms, backward 1.67-2.12 ->
// 1.12-1.31 ms on one thread (bench_kernels_misc, three alternating runs; bench/README.md), the
// 96x56x56 and 144x56x56 layers at batch 8 (runs of 25 KB) 1.1-1.3x; 4-5 MB tensors (32x32x32,
// 144x16x16) were 5-10 % slower that way, and so was 96x112x112 at batch 8 on two threads (38 MB,
// runs of 50 KB: 10-15 %, where the second read of x costs more than the long runs save). Each
// channel still adds its blocks in the same order: the same bits.
constexpr int64_t kStreamBytes = int64_t{8} << 20;
constexpr int64_t kShortRun = 32 * 1024;

int64_t channel_block(const BatchNormGeom& g, int threads) {
  const int64_t per_channel = g.N * g.HW;
  const int64_t fit = std::max<int64_t>(1, (64 * 1024) / per_channel);
  const int64_t share = std::max<int64_t>(1, (g.C + 4 * threads - 1) / (4 * threads));
  const int64_t G = std::min(fit, share);
  const int64_t bytes = g.N * g.C * g.HW * static_cast<int64_t>(sizeof(float));
  const int64_t run = G * g.HW * static_cast<int64_t>(sizeof(float));  // one image's part of a block
  if (bytes >= kStreamBytes && run <= kShortRun) return (g.C + threads - 1) / threads;
  return G;
}

// ---- a block's channels of one image ----
// x [nb, HW]: nb consecutive channel planes of one image. One call per image and block instead of
// one per plane: at batch 1 a plane of 7x7 or 14x14 values is too short to pay for a call (and
// its CPU dispatch) of its own. Per plane, the same loops as above.

// s1[c] += sum (x_c - k[c]), s2[c] += sum (x_c - k[c])^2 for each plane c < nb.
SLEEPNET_MULTIVERSION void block_moments(const float* x, int64_t nb, int64_t HW, const float* k, double* s1,
                                         double* s2) {
  for (int64_t c = 0; c < nb; ++c) moments_loop(x + c * HW, HW, k[c], s1[c], s2[c]);
}

// sg[c] += sum g_c, sgd[c] += sum g_c (x_c - mu[c]); kRelu6: g masked by the fused output z.
template <bool kRelu6>
[[gnu::always_inline]] inline void block_grad_sums_loop(const float* g, const float* z, const float* x, int64_t nb, int64_t HW,
                                 const float* mu, double* sg, double* sgd) {
  for (int64_t c = 0; c < nb; ++c)
    grad_sums_loop<kRelu6>(g + c * HW, kRelu6 ? z + c * HW : nullptr, x + c * HW, HW, mu[c], sg[c], sgd[c]);
}
SLEEPNET_MULTIVERSION void block_grad_sums(const float* g, const float* x, int64_t nb, int64_t HW, const float* mu,
                                           double* sg, double* sgd) {
  block_grad_sums_loop<false>(g, nullptr, x, nb, HW, mu, sg, sgd);
}
SLEEPNET_MULTIVERSION void block_grad_sums_relu6(const float* g, const float* z, const float* x, int64_t nb,
                                                 int64_t HW, const float* mu, double* sg, double* sgd) {
  block_grad_sums_loop<true>(g, z, x, nb, HW, mu, sg, sgd);
}

// ---- per-channel coefficients ----
// A block's channels [0, nb) (every pointer below already at the block's first channel; weight,
// bias, running_* may be null), from the sums of pass 1 (forward) or of the gradient (backward).
struct ForwardCoefficients {
  int64_t nb, M;
  float eps, momentum;
  const double *s1, *s2;  // sums of x - shift, (x - shift)^2
  const float *shift, *weight, *bias;
  float *save_mean, *save_invstd, *running_mean, *running_var;
  float *alpha, *beta;  // y = x * alpha + beta
};
struct BackwardCoefficients {
  int64_t nb, M;
  const double *sg, *sgd;  // sums of g, g (x - mu)
  const float *save_invstd, *weight;
  float *dbias, *dweight;
  float *ka, *kb, *kc;  // formula (3): dx = ka g + kb (x - mu) + kc
};

void forward_coefficients(const ForwardCoefficients& k) {
  const double M = static_cast<double>(k.M);
  for (int64_t i = 0; i < k.nb; ++i) {
    const double dmean = k.s1[i] / M;
    const double var = std::max(0.0, k.s2[i] / M - dmean * dmean);  // biased
    const double mean = k.shift[i] + dmean;
    const double invstd = 1.0 / std::sqrt(var + k.eps);
    k.save_mean[i] = static_cast<float>(mean);
    k.save_invstd[i] = static_cast<float>(invstd);
    if (k.running_mean) {
      const double m = k.momentum;
      k.running_mean[i] = static_cast<float>((1.0 - m) * k.running_mean[i] + m * mean);
      k.running_var[i] = static_cast<float>((1.0 - m) * k.running_var[i] + m * var * M / static_cast<double>(k.M - 1));
    }
    const double a = (k.weight ? k.weight[i] : 1.0) * invstd;
    k.alpha[i] = static_cast<float>(a);
    k.beta[i] = static_cast<float>((k.bias ? k.bias[i] : 0.0) - mean * a);
  }
}

void backward_coefficients(const BackwardCoefficients& k) {
  const double M = static_cast<double>(k.M);
  for (int64_t i = 0; i < k.nb; ++i) {
    const double r = k.save_invstd[i], gamma = k.weight ? k.weight[i] : 1.0;
    if (k.dbias) k.dbias[i] = static_cast<float>(k.sg[i]);            // (1)
    if (k.dweight) k.dweight[i] = static_cast<float>(k.sgd[i] * r);  // (2)
    k.ka[i] = static_cast<float>(gamma * r);                          // (3)
    k.kb[i] = static_cast<float>(-gamma * r * r * r * k.sgd[i] / M);
    k.kc[i] = static_cast<float>(-gamma * r * k.sg[i] / M);
  }
}

// ---- Sixteen blocks at once (AVX-512) ----------------------------------------------------------------
// What GCC makes of the reductions above in their AVX-512 clone (read off `objdump -d`): for each
// block of L <= 64 values, 16 float lanes start at 0 and lane l adds values l, l+16, l+32, ... of
// the block's whole 16-value vectors in order (the squares by fused multiply-add); the values after
// the last whole vector (all L of them when L < 16) are added into lane 0, in order; then the 16
// lanes are summed one after the other, lane 0 first, and that float is added into the double. The
// last step is a chain of 16 dependent scalar additions per block, longer than the block's own
// vector work: on 32x32 planes it was most of a statistics pass.
//
// The functions below compute the same lanes with the same operations in the same order, then
// finish sixteen blocks together: the blocks' lane vectors as the rows of a 16x16 matrix,
// transposed, so that vector l holds lane l of every block, and added up l = 0, 1, ..., 15: each
// block's sum is the same chain of additions as before, sixteen chains per instruction. Same bits
// as the loops they replace (tests: BatchNormLanes16.*), so no parity fixture moves. That order is
// GCC's (read off GCC 12, Debian's) in the default build, whose baseline is plain x86-64; Clang
// reduces lanes in another order, and a build for a newer baseline (-march=native,
// SLEEPNET_NATIVE) lets the CPU's tuning choose the loops' vector width (8 lanes under
// -march=skylake-avx512, which that test caught), so both keep the loops only. A GCC that changed
// its order would fail that test rather than move results silently.
#if defined(_OPENMP) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(SLEEPNET_NO_MULTIVERSION)
#define SLEEPNET_BN_LANES16 1
#pragma GCC push_options
#pragma GCC target("avx512f")  // everything up to pop_options, the lambdas included
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's false alarm inside _mm512_setzero_ps
#pragma GCC diagnostic ignored "-Wuninitialized"  // and inside the *_round_pd intrinsics

// Up to 16 blocks' lane vectors, waiting for their sums; each sum goes into its own double.
struct LaneGroup {
  __m512 a[16], q[16];
  double *da[16], *dq[16];
  int n = 0;
};

// r[0..15] as the rows of a 16x16 matrix -> its columns: r[l][b] becomes r[b][l].
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {  // pairs of rows interleaved: (r_i[j], r_i+1[j]) pairs
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // quads of rows: u[i + j] holds rows i..i+3 of columns j, j+4, j+8, j+12
    const __m512d a0 = _mm512_castps_pd(t[i]), a1 = _mm512_castps_pd(t[i + 1]);
    const __m512d b0 = _mm512_castps_pd(t[i + 2]), b1 = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, b0));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, b0));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, b1));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, b1));
  }
  // 128-bit quarters: u[4g + j] (rows 4g..4g+3) holds columns j, j+4, j+8, j+12 in its quarters.
  for (int j = 0; j < 4; ++j) {
    // v: rows 0-7 and 8-15 of columns j, j+8 (0x88: quarters 0 and 2) and j+4, j+12 (0xdd: 1 and 3)
    const __m512 v0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), v1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
    const __m512 v2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88),
                 v3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
    t[j] = _mm512_shuffle_f32x4(v0, v2, 0x88);       // column j
    t[j + 8] = _mm512_shuffle_f32x4(v0, v2, 0xdd);   // column j + 8
    t[j + 4] = _mm512_shuffle_f32x4(v1, v3, 0x88);   // column j + 4
    t[j + 12] = _mm512_shuffle_f32x4(v1, v3, 0xdd);  // column j + 12
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// The waiting blocks' sums, lane 0 first, each added into its double in the order the blocks came.
inline void flush(LaneGroup& G) {
  if (G.n == 0) return;
  for (int b = G.n; b < 16; ++b) G.a[b] = G.q[b] = _mm512_setzero_ps();
  transpose16(G.a);
  transpose16(G.q);
  __m512 sa = _mm512_setzero_ps(), sq = _mm512_setzero_ps();
  for (int l = 0; l < 16; ++l) {
    sa = _mm512_add_ps(sa, G.a[l]);
    sq = _mm512_add_ps(sq, G.q[l]);
  }
  alignas(64) float fa[16], fq[16];
  _mm512_store_ps(fa, sa);
  _mm512_store_ps(fq, sq);
  if (G.da[0] == G.da[G.n - 1] && G.dq[0] == G.dq[G.n - 1]) {
    // All the blocks of one channel (planes of 1024 values and more; a call's blocks come in
    // channel order, so the first and last sharing their doubles means all do): the same
    // additions in the same order, in a register. Through memory, the compiler unable to know
    // that the pointers are equal, the chain of stores and reloads was a third of the statistics
    // pass on 32x32 planes.
    double va = *G.da[0], vq = *G.dq[0];
    for (int b = 0; b < G.n; ++b) va += fa[b], vq += fq[b];
    *G.da[0] = va, *G.dq[0] = vq;
  } else {
    for (int b = 0; b < G.n; ++b) *G.da[b] += fa[b], *G.dq[b] += fq[b];
  }
  G.n = 0;
}

// One block's lanes. Val(i) -> (u, v) for value i: a += u, q = fma(u, v, q) (kProducts = false:
// q += v, for sums of values already multiplied); VecVal(i) the same for the 16 values from i.
template <bool kProducts = true, class Val, class VecVal>
inline void block_lanes(int64_t L, Val val, VecVal vec, LaneGroup& G, double* da, double* dq) {
  __m512 a = _mm512_setzero_ps(), q = _mm512_setzero_ps();
  int64_t i = 0;
  if (L >= 16)
    for (; i + 16 <= L; i += 16) {
      const auto [u, v] = vec(i);
      q = kProducts ? _mm512_fmadd_ps(u, v, q) : _mm512_add_ps(q, v);
      a = _mm512_add_ps(a, u);
    }
  if (i < L) {  // the rest into lane 0
    float a0 = _mm512_cvtss_f32(a), q0 = _mm512_cvtss_f32(q);
    for (; i < L; ++i) {
      const auto [u, v] = val(i);
      a0 = a0 + u;
      q0 = kProducts ? __builtin_fmaf(u, v, q0) : q0 + v;
    }
    a = _mm512_mask_mov_ps(a, 1, _mm512_set1_ps(a0));
    q = _mm512_mask_mov_ps(q, 1, _mm512_set1_ps(q0));
  }
  G.a[G.n] = a, G.q[G.n] = q, G.da[G.n] = da, G.dq[G.n] = dq;
  if (++G.n == 16) flush(G);
}

// block_moments, sixteen blocks at once.
void block_moments_lanes16(const float* x, int64_t nb, int64_t HW, const float* k, double* s1, double* s2) {
  LaneGroup G;
  for (int64_t c = 0; c < nb; ++c) {
    const float kc = k[c];
    const __m512 kv = _mm512_set1_ps(kc);
    for (int64_t b = 0; b < HW; b += 64) {
      const float* p = x + c * HW + b;
      block_lanes(
          std::min<int64_t>(64, HW - b),
          [&](int64_t i) {
            const float d = p[i] - kc;
            return std::pair{d, d};
          },
          [&](int64_t i) {
            const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(p + i), kv);
            return std::pair{d, d};
          },
          G, s1 + c, s2 + c);
    }
  }
  flush(G);
}

// slab_channel_sums (below), sixteen channels at once: GCC compiles its per-channel `omp simd`
// sum of HW < 64 slab positions as one block of the lanes above (whole 16-value vectors into
// lanes, the rest into lane 0, lanes summed from lane 0; read off `objdump -d`), a and q alike,
// with plain additions. Per channel, that horizontal sum was a chain of 32 dependent additions
// through memory: a quarter of a 2x2 layer's batch-norm time at batch 32.
void slab_channel_sums_lanes16(const float* a, const float* q, int64_t nb, int64_t HW, double* s1, double* s2) {
  LaneGroup G;
  for (int64_t c = 0; c < nb; ++c) {
    const float *ac = a + c * HW, *qc = q + c * HW;
    block_lanes<false>(
        HW, [&](int64_t i) { return std::pair{ac[i], qc[i]}; },
        [&](int64_t i) { return std::pair{_mm512_loadu_ps(ac + i), _mm512_loadu_ps(qc + i)}; }, G, s1 + c, s2 + c);
  }
  flush(G);
}

// block_grad_sums (kRelu6: block_grad_sums_relu6), sixteen blocks at once.
template <bool kRelu6>
void block_grad_sums_lanes16(const float* g, const float* z, const float* x, int64_t nb, int64_t HW, const float* mu,
                             double* sg, double* sgd) {
  LaneGroup G;
  const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.f);
  for (int64_t c = 0; c < nb; ++c) {
    const float mc = mu[c];
    const __m512 mv = _mm512_set1_ps(mc);
    for (int64_t b = 0; b < HW; b += 64) {
      const int64_t o = c * HW + b;
      block_lanes(
          std::min<int64_t>(64, HW - b),
          [&](int64_t i) {
            float gv = g[o + i];
            if constexpr (kRelu6) gv = relu6_pass(gv, z[o + i]);
            return std::pair{gv, x[o + i] - mc};
          },
          [&](int64_t i) {
            __m512 gv = _mm512_loadu_ps(g + o + i);
            if constexpr (kRelu6) {  // relu6_pass: 0 where z <= 0 or z >= 6 (NaN z passes g)
              const __m512 zv = _mm512_loadu_ps(z + o + i);
              const __mmask16 off = _mm512_cmp_ps_mask(zv, zero, _CMP_LE_OQ) | _mm512_cmp_ps_mask(zv, six, _CMP_GE_OQ);
              gv = _mm512_mask_mov_ps(gv, off, zero);
            }
            return std::pair{gv, _mm512_sub_ps(_mm512_loadu_ps(x + o + i), mv)};
          },
          G, sg + c, sgd + c);
    }
  }
  flush(G);
}

// The coefficients above, eight channels at a time: the same IEEE operations on the same values
// in the same order (division, square root, conversions and max are exact-rounded alike in scalar
// and vector form; the products and sums are rounded one by one, *_round_pd, since GCC would fuse
// plain vector multiplies and adds into FMAs that the scalar code, built for baseline x86-64, does
// not have). The scalar loops were a chain of three divisions and a square root per channel: a
// third of a 1280x7x7 layer's forward at batch 1. Same bits (BatchNormLanes16; which catches a
// wrong formula, but not a product fused by mistake: such a double's last bit rarely survives the
// rounding to float, which is why the rounded intrinsics are used rather than trusted to a test).
constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
inline __m512d mul_r(__m512d a, __m512d b) { return _mm512_mul_round_pd(a, b, kRound); }
inline __m512d add_r(__m512d a, __m512d b) { return _mm512_add_round_pd(a, b, kRound); }
inline __m512d sub_r(__m512d a, __m512d b) { return _mm512_sub_round_pd(a, b, kRound); }
// Eight floats (m: which) widened, or v where p is null.
inline __m512d load8(__mmask8 m, const float* p, double v) {
  return p ? _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps(m, p))) : _mm512_set1_pd(v);
}
inline void store8(__mmask8 m, float* p, __m512d v) {
  _mm512_mask_storeu_ps(p, m, _mm512_castps256_ps512(_mm512_cvtpd_ps(v)));
}

void forward_coefficients_lanes8(const ForwardCoefficients& k) {
  const __m512d M = _mm512_set1_pd(static_cast<double>(k.M)), M1 = _mm512_set1_pd(static_cast<double>(k.M - 1));
  const __m512d one = _mm512_set1_pd(1.0), zero = _mm512_setzero_pd(), eps = _mm512_set1_pd(k.eps);
  const __m512d m = _mm512_set1_pd(k.momentum), keep = sub_r(one, m);
  for (int64_t i = 0; i < k.nb; i += 8) {
    const __mmask8 w = k.nb - i >= 8 ? __mmask8(0xFF) : __mmask8((1u << (k.nb - i)) - 1);
    const __m512d dmean = _mm512_div_pd(_mm512_maskz_loadu_pd(w, k.s1 + i), M);
    // std::max(0.0, v) = v if 0 < v, else 0 (NaN too): vmaxpd(v, 0) gives v if v > 0, else 0
    const __m512d var = _mm512_max_pd(sub_r(_mm512_div_pd(_mm512_maskz_loadu_pd(w, k.s2 + i), M), mul_r(dmean, dmean)), zero);
    const __m512d mean = add_r(load8(w, k.shift + i, 0.0), dmean);
    const __m512d invstd = _mm512_div_pd(one, _mm512_sqrt_pd(add_r(var, eps)));
    store8(w, k.save_mean + i, mean);
    store8(w, k.save_invstd + i, invstd);
    if (k.running_mean) {
      store8(w, k.running_mean + i, add_r(mul_r(keep, load8(w, k.running_mean + i, 0.0)), mul_r(m, mean)));
      store8(w, k.running_var + i,
             add_r(mul_r(keep, load8(w, k.running_var + i, 0.0)), _mm512_div_pd(mul_r(mul_r(m, var), M), M1)));
    }
    const __m512d a = mul_r(load8(w, k.weight ? k.weight + i : nullptr, 1.0), invstd);
    store8(w, k.alpha + i, a);
    store8(w, k.beta + i, sub_r(load8(w, k.bias ? k.bias + i : nullptr, 0.0), mul_r(mean, a)));
  }
}

void backward_coefficients_lanes8(const BackwardCoefficients& k) {
  const __m512d M = _mm512_set1_pd(static_cast<double>(k.M));
  for (int64_t i = 0; i < k.nb; i += 8) {
    const __mmask8 w = k.nb - i >= 8 ? __mmask8(0xFF) : __mmask8((1u << (k.nb - i)) - 1);
    const __m512d r = load8(w, k.save_invstd + i, 0.0), gamma = load8(w, k.weight ? k.weight + i : nullptr, 1.0);
    const __m512d sg = _mm512_maskz_loadu_pd(w, k.sg + i), sgd = _mm512_maskz_loadu_pd(w, k.sgd + i);
    // -gamma: the sign flipped, as the scalar negation does (0 - gamma would turn -0 into +0)
    const __m512d ng = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(gamma), _mm512_set1_epi64(INT64_MIN)));
    if (k.dbias) store8(w, k.dbias + i, sg);
    if (k.dweight) store8(w, k.dweight + i, mul_r(sgd, r));
    store8(w, k.ka + i, mul_r(gamma, r));
    store8(w, k.kb + i, _mm512_div_pd(mul_r(mul_r(mul_r(mul_r(ng, r), r), r), sgd), M));
    store8(w, k.kc + i, _mm512_div_pd(mul_r(mul_r(ng, r), sg), M));
  }
}

#pragma GCC diagnostic pop
#pragma GCC pop_options

const bool lanes16_available = cpu_has_avx512f();
#else
const bool lanes16_available = false;
#endif
bool lanes16_on = lanes16_available;

void forward_coefficients_any(const ForwardCoefficients& k) {
#ifdef SLEEPNET_BN_LANES16
  if (lanes16_on) return forward_coefficients_lanes8(k);
#endif
  forward_coefficients(k);
}
void backward_coefficients_any(const BackwardCoefficients& k) {
#ifdef SLEEPNET_BN_LANES16
  if (lanes16_on) return backward_coefficients_lanes8(k);
#endif
  backward_coefficients(k);
}

// The block sums through whichever implementation is on (same bits either way).
void block_moments_any(const float* x, int64_t nb, int64_t HW, const float* k, double* s1, double* s2) {
#ifdef SLEEPNET_BN_LANES16
  if (lanes16_on) return block_moments_lanes16(x, nb, HW, k, s1, s2);
#endif
  block_moments(x, nb, HW, k, s1, s2);
}
template <bool kRelu6>
void block_grad_sums_any(const float* g, const float* z, const float* x, int64_t nb, int64_t HW, const float* mu,
                         double* sg, double* sgd) {
#ifdef SLEEPNET_BN_LANES16
  if (lanes16_on) return block_grad_sums_lanes16<kRelu6>(g, z, x, nb, HW, mu, sg, sgd);
#endif
  if constexpr (kRelu6)
    block_grad_sums_relu6(g, z, x, nb, HW, mu, sg, sgd);
  else
    block_grad_sums(g, x, nb, HW, mu, sg, sgd);
}

// y = x * alpha + beta over n values, optionally clamped to [0, 6].
template <bool kRelu6>
[[gnu::always_inline]] inline void affine_loop(const float* __restrict x, float alpha, float beta, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i] * alpha + beta;
    if constexpr (kRelu6) v = std::min(std::max(v, 0.f), 6.f);
    y[i] = v;
  }
}

SLEEPNET_MULTIVERSION void affine_plain(const float* x, float alpha, float beta, float* y, int64_t n) {
  affine_loop<false>(x, alpha, beta, y, n);
}
SLEEPNET_MULTIVERSION void affine_relu6(const float* x, float alpha, float beta, float* y, int64_t n) {
  affine_loop<true>(x, alpha, beta, y, n);
}
template <bool kRelu6>
void affine(const float* x, float alpha, float beta, float* y, int64_t n) {
  (kRelu6 ? affine_relu6 : affine_plain)(x, alpha, beta, y, n);
}
// y_c = x_c * alpha[c] + beta[c] (clamped when kRelu6) for each plane c < nb of a block.
SLEEPNET_MULTIVERSION void block_affine(const float* x, int64_t nb, int64_t HW, const float* alpha, const float* beta,
                                        float* y) {
  for (int64_t c = 0; c < nb; ++c) affine_loop<false>(x + c * HW, alpha[c], beta[c], y + c * HW, HW);
}
SLEEPNET_MULTIVERSION void block_affine_relu6(const float* x, int64_t nb, int64_t HW, const float* alpha,
                                              const float* beta, float* y) {
  for (int64_t c = 0; c < nb; ++c) affine_loop<true>(x + c * HW, alpha[c], beta[c], y + c * HW, HW);
}

// dx = a g + b (x - mu) + c over n values: formula (3). kRelu6: g masked by the fused output zp.
template <bool kRelu6>
[[gnu::always_inline]] inline void dx_body(const float* __restrict gp, const float* __restrict zp, const float* __restrict xp, float a,
                    float b, float c, float mu, float* __restrict dp, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    float gv = gp[j];
    if constexpr (kRelu6) gv = relu6_pass(gv, zp[j]);
    dp[j] = a * gv + b * (xp[j] - mu) + c;
  }
}
// formula (3) for each plane c < nb of a block, with its own a, b, c and mu.
SLEEPNET_MULTIVERSION void block_dx(const float* g, const float* x, int64_t nb, int64_t HW, const float* a,
                                    const float* b, const float* c, const float* mu, float* dx) {
  for (int64_t i = 0; i < nb; ++i)
    dx_body<false>(g + i * HW, nullptr, x + i * HW, a[i], b[i], c[i], mu[i], dx + i * HW, HW);
}
SLEEPNET_MULTIVERSION void block_dx_relu6(const float* g, const float* z, const float* x, int64_t nb, int64_t HW,
                                          const float* a, const float* b, const float* c, const float* mu,
                                          float* dx) {
  for (int64_t i = 0; i < nb; ++i)
    dx_body<true>(g + i * HW, z + i * HW, x + i * HW, a[i], b[i], c[i], mu[i], dx + i * HW, HW);
}

// dx = a g over n values (eval mode), g masked by zp when kRelu6.
SLEEPNET_MULTIVERSION void scale_loop(const float* __restrict gp, float a, float* __restrict dp, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dp[i] = a * gp[i];
}
SLEEPNET_MULTIVERSION void scale_loop_relu6(const float* __restrict gp, const float* __restrict zp, float a,
                                            float* __restrict dp, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dp[i] = a * relu6_pass(gp[i], zp[i]);
}

// ---- slabs: small planes ----
// With H*W below kSlab (7x7 ... 2x2), per-plane loops are all overhead. Instead the block's
// channels of one image, [nb * HW] contiguous values, are processed as one "slab" with per-value
// coefficients (each channel's value repeated HW times): every loop runs over the whole slab.
// Sums are kept per slab position in float for up to 16 images, then added into double.
constexpr int64_t kSlab = 64;
// Slabs pay for their per-value coefficient arrays over many images; at batch 1 a plane of 16 or
// more values runs plane by plane (block_* above) instead: 7x7 at batch 1 was 3x faster that way.
bool use_slabs(const BatchNormGeom& g) { return g.HW < kSlab && (g.N > 1 || g.HW < 16); }

SLEEPNET_MULTIVERSION void slab_moments(const float* __restrict x, const float* __restrict k, float* __restrict a,
                                        float* __restrict q, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float d = x[j] - k[j];
    a[j] += d;
    q[j] += d * d;
  }
}
SLEEPNET_MULTIVERSION void slab_grad_sums(const float* __restrict g, const float* __restrict x,
                                          const float* __restrict mu, float* __restrict a, float* __restrict q,
                                          int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    a[j] += g[j];
    q[j] += g[j] * (x[j] - mu[j]);
  }
}
SLEEPNET_MULTIVERSION void slab_grad_sums_relu6(const float* __restrict g, const float* __restrict z,
                                                const float* __restrict x, const float* __restrict mu,
                                                float* __restrict a, float* __restrict q, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const float gv = relu6_pass(g[j], z[j]);
    a[j] += gv;
    q[j] += gv * (x[j] - mu[j]);
  }
}
SLEEPNET_MULTIVERSION void slab_affine(const float* __restrict x, const float* __restrict alpha,
                                       const float* __restrict beta, float* __restrict y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = x[j] * alpha[j] + beta[j];
}
SLEEPNET_MULTIVERSION void slab_affine_relu6(const float* __restrict x, const float* __restrict alpha,
                                             const float* __restrict beta, float* __restrict y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] = std::min(std::max(x[j] * alpha[j] + beta[j], 0.f), 6.f);
}
SLEEPNET_MULTIVERSION void slab_dx(const float* __restrict g, const float* __restrict x, const float* __restrict a,
                                   const float* __restrict b, const float* __restrict c, const float* __restrict mu,
                                   float* __restrict dx, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dx[j] = a[j] * g[j] + b[j] * (x[j] - mu[j]) + c[j];
}
SLEEPNET_MULTIVERSION void slab_dx_relu6(const float* __restrict g, const float* __restrict z,
                                         const float* __restrict x, const float* __restrict a,
                                         const float* __restrict b, const float* __restrict c,
                                         const float* __restrict mu, float* __restrict dx, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dx[j] = a[j] * relu6_pass(g[j], z[j]) + b[j] * (x[j] - mu[j]) + c[j];
}

// s1[c] += the sum of a[c*HW, (c+1)*HW), s2[c] likewise from q, for c < nb: the slab positions of
// each channel added up, in vector lanes (a plain loop here is a chain of dependent adds, one per
// position: 4 cycles each, which made 7x7 planes at batch 1 the slowest batch-norm layers).
SLEEPNET_MULTIVERSION void slab_channel_sums(const float* __restrict a, const float* __restrict q, int64_t nb,
                                             int64_t HW, double* __restrict s1, double* __restrict s2) {
  for (int64_t c = 0; c < nb; ++c) {
    simd_acc sa = 0, sq = 0;  // at most HW < 64 values of at most 16 images each
#pragma omp simd reduction(+ : sa, sq)
    for (int64_t i = 0; i < HW; ++i) {
      sa += a[c * HW + i];
      sq += q[c * HW + i];
    }
    s1[c] += sa, s2[c] += sq;
  }
}

// Per-channel sums (s1, s2 [nb]) over images of f(image n's slab, a, q): float per 16 images, then double.
template <class F>
void slab_sums(int64_t N, int64_t nb, int64_t HW, F add_image, double* s1, double* s2) {
  const int64_t L = nb * HW;
  std::vector<float> a(static_cast<size_t>(L)), q(static_cast<size_t>(L));
  for (int64_t n0 = 0; n0 < N; n0 += 16) {
    std::fill(a.begin(), a.end(), 0.f);
    std::fill(q.begin(), q.end(), 0.f);
    for (int64_t n = n0; n < std::min(N, n0 + 16); ++n) add_image(n, a.data(), q.data());
#ifdef SLEEPNET_BN_LANES16
    if (lanes16_on) {
      slab_channel_sums_lanes16(a.data(), q.data(), nb, HW, s1, s2);
      continue;
    }
#endif
    slab_channel_sums(a.data(), q.data(), nb, HW, s1, s2);
  }
}

// v[c] repeated HW times.
std::vector<float> expand(const float* v, int64_t nb, int64_t HW) {
  std::vector<float> e(static_cast<size_t>(nb * HW));
  for (int64_t c = 0; c < nb; ++c) std::fill(e.begin() + c * HW, e.begin() + (c + 1) * HW, v[c]);
  return e;
}

// Per-channel alpha = weight / sqrt(var + eps), beta = bias - mean * alpha, from running stats.
void eval_coefficients(const BatchNormGeom& g, const float* weight, const float* bias,
                       const float* running_mean, const float* running_var, float* alpha, float* beta) {
  for (int64_t c = 0; c < g.C; ++c) {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + g.eps);
    const double a = (weight ? weight[c] : 1.0) * invstd;
    alpha[c] = static_cast<float>(a);
    beta[c] = static_cast<float>((bias ? bias[c] : 0.0) - running_mean[c] * a);
  }
}

template <bool kRelu6>
void eval_forward(const char* who, const BatchNormGeom& g, const float* x, const float* weight,
                  const float* bias, const float* running_mean, const float* running_var, float* y) {
  g.validate(who);
  check_pointers(who, {x, running_mean, running_var, y});
  float* alpha = scratch(0, 2 * g.C);
  float* beta = alpha + g.C;
  eval_coefficients(g, weight, bias, running_mean, running_var, alpha, beta);
  const int64_t C = g.C, HW = g.HW;
  if (HW < kSlab) {  // small planes: one slab per image, coefficients repeated per pixel
    const std::vector<float> av = expand(alpha, C, HW), bv = expand(beta, C, HW);
#pragma omp parallel for schedule(static) if (g.N * g.C * g.HW >= kMinParallel)
    for (int64_t n = 0; n < g.N; ++n)
      (kRelu6 ? slab_affine_relu6 : slab_affine)(x + n * C * HW, av.data(), bv.data(), y + n * C * HW, C * HW);
    return;
  }
#pragma omp parallel for schedule(static) if (g.N * g.C * g.HW >= kMinParallel)
  for (int64_t p = 0; p < g.N * C; ++p) affine<kRelu6>(x + p * HW, alpha[p % C], beta[p % C], y + p * HW, HW);
}

// ---- train forward (kRelu6: clamp the output to [0, 6] in the normalisation pass) ------------------

template <bool kRelu6>
void train_forward(const char* who, const BatchNormGeom& g, const float* x, const float* weight, const float* bias,
                   float* y, float* save_mean, float* save_invstd, float* running_mean, float* running_var) {
  check_train(g, who);
  check_pointers(who, {x, y, save_mean, save_invstd});
  require((running_mean == nullptr) == (running_var == nullptr), who,
          "running_mean and running_var must both be given or both be null");
  const int64_t N = g.N, C = g.C, HW = g.HW, M = N * HW;
  const bool parallel = N * C * HW >= kMinParallel;
  const int64_t G = channel_block(g, parallel ? max_threads() : 1), blocks = (C + G - 1) / G;
  const bool slabs = use_slabs(g);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * G, c1 = std::min(C, c0 + G);
    std::vector<double> s1(static_cast<size_t>(c1 - c0), 0.0), s2(s1.size(), 0.0);
    std::vector<float> alpha(s1.size()), beta(s1.size());
    // Pass 1, statistics: sums shifted by each channel's first value, so that the sum of squares
    // does not cancel when the mean is large.
    const int64_t nb = c1 - c0;
    std::vector<float> shift(static_cast<size_t>(nb));
    for (int64_t c = c0; c < c1; ++c) shift[static_cast<size_t>(c - c0)] = x[c * HW];
    if (slabs) {
      const std::vector<float> kv = expand(shift.data(), nb, HW);
      slab_sums(N, nb, HW, [&](int64_t n, float* a, float* q) {
        slab_moments(x + (n * C + c0) * HW, kv.data(), a, q, nb * HW);
      }, s1.data(), s2.data());
    } else {
      for (int64_t n = 0; n < N; ++n) block_moments_any(x + (n * C + c0) * HW, nb, HW, shift.data(), s1.data(), s2.data());
    }
    const ForwardCoefficients k{nb,
                                M,
                                g.eps,
                                g.momentum,
                                s1.data(),
                                s2.data(),
                                shift.data(),
                                weight ? weight + c0 : nullptr,
                                bias ? bias + c0 : nullptr,
                                save_mean + c0,
                                save_invstd + c0,
                                running_mean ? running_mean + c0 : nullptr,
                                running_var ? running_var + c0 : nullptr,
                                alpha.data(),
                                beta.data()};
    forward_coefficients_any(k);
    // Pass 2, normalise: y = x * alpha + beta (then min(max(y, 0), 6) when fused with ReLU6).
    if (slabs) {
      const std::vector<float> av = expand(alpha.data(), nb, HW), bv = expand(beta.data(), nb, HW);
      for (int64_t n = 0; n < N; ++n)
        (kRelu6 ? slab_affine_relu6 : slab_affine)(x + (n * C + c0) * HW, av.data(), bv.data(),
                                                   y + (n * C + c0) * HW, nb * HW);
    } else {
      for (int64_t n = 0; n < N; ++n)
        (kRelu6 ? block_affine_relu6 : block_affine)(x + (n * C + c0) * HW, nb, HW, alpha.data(), beta.data(),
                                                      y + (n * C + c0) * HW);
    }
  }
}

}  // namespace

bool batchnorm_lanes16_available() { return lanes16_available; }
void batchnorm_set_lanes16(bool on) { lanes16_on = on && lanes16_available; }

// ---- train forward ---------------------------------------------------------------------------------

void batchnorm_forward_train(const BatchNormGeom& g, const float* x, const float* weight,
                             const float* bias, float* y, float* save_mean, float* save_invstd,
                             float* running_mean, float* running_var) {
  train_forward<false>("batchnorm_forward_train", g, x, weight, bias, y, save_mean, save_invstd, running_mean,
                       running_var);
}

void batchnorm_relu6_forward_train(const BatchNormGeom& g, const float* x, const float* weight,
                                   const float* bias, float* y, float* save_mean, float* save_invstd,
                                   float* running_mean, float* running_var) {
  train_forward<true>("batchnorm_relu6_forward_train", g, x, weight, bias, y, save_mean, save_invstd, running_mean,
                      running_var);
}


void batchnorm_forward_train_ref(const BatchNormGeom& g, const float* x, const float* weight,
                                 const float* bias, float* y, float* save_mean, float* save_invstd,
                                 float* running_mean, float* running_var) {
  const char* who = "batchnorm_forward_train_ref";
  check_train(g, who);
  check_pointers(who, {x, y, save_mean, save_invstd});
  const int64_t N = g.N, C = g.C, HW = g.HW, M = N * HW;
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0.0;  // two passes, in double: mean, then variance
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) sum += x[(n * C + c) * HW + i];
    const double mean = sum / M;
    double ss = 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const double d = x[(n * C + c) * HW + i] - mean;
        ss += d * d;
      }
    const double var = ss / M;
    const double invstd = 1.0 / std::sqrt(var + g.eps);
    save_mean[c] = static_cast<float>(mean);
    save_invstd[c] = static_cast<float>(invstd);
    if (running_mean) {
      running_mean[c] = static_cast<float>((1.0 - g.momentum) * running_mean[c] + g.momentum * mean);
      running_var[c] = static_cast<float>((1.0 - g.momentum) * running_var[c] +
                                          g.momentum * var * M / (M - 1));
    }
    const double w = weight ? weight[c] : 1.0, b = bias ? bias[c] : 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        y[j] = static_cast<float>((x[j] - mean) * invstd * w + b);
      }
  }
}

void batchnorm_relu6_forward_train_ref(const BatchNormGeom& g, const float* x, const float* weight,
                                       const float* bias, float* y, float* save_mean,
                                       float* save_invstd, float* running_mean, float* running_var) {
  check_train(g, "batchnorm_relu6_forward_train_ref");
  check_pointers("batchnorm_relu6_forward_train_ref", {x, y, save_mean, save_invstd});
  batchnorm_forward_train_ref(g, x, weight, bias, y, save_mean, save_invstd, running_mean, running_var);
  for (int64_t j = 0; j < g.N * g.C * g.HW; ++j) y[j] = y[j] < 0.f ? 0.f : (y[j] > 6.f ? 6.f : y[j]);
}

// ---- eval forward ----------------------------------------------------------------------------------

void batchnorm_forward_eval(const BatchNormGeom& g, const float* x, const float* weight,
                            const float* bias, const float* running_mean, const float* running_var,
                            float* y) {
  eval_forward<false>("batchnorm_forward_eval", g, x, weight, bias, running_mean, running_var, y);
}

void batchnorm_relu6_eval(const BatchNormGeom& g, const float* x, const float* weight,
                          const float* bias, const float* running_mean, const float* running_var,
                          float* y) {
  eval_forward<true>("batchnorm_relu6_eval", g, x, weight, bias, running_mean, running_var, y);
}

void batchnorm_forward_eval_ref(const BatchNormGeom& g, const float* x, const float* weight,
                                const float* bias, const float* running_mean,
                                const float* running_var, float* y) {
  g.validate("batchnorm_forward_eval_ref");
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t c = 0; c < g.C; ++c) {
      const double invstd = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + g.eps);
      const double w = weight ? weight[c] : 1.0, b = bias ? bias[c] : 0.0;
      for (int64_t i = 0; i < g.HW; ++i) {
        const int64_t j = (n * g.C + c) * g.HW + i;
        y[j] = static_cast<float>((x[j] - running_mean[c]) * invstd * w + b);
      }
    }
}

void batchnorm_relu6_eval_ref(const BatchNormGeom& g, const float* x, const float* weight,
                              const float* bias, const float* running_mean,
                              const float* running_var, float* y) {
  batchnorm_forward_eval_ref(g, x, weight, bias, running_mean, running_var, y);
  for (int64_t j = 0; j < g.N * g.C * g.HW; ++j) y[j] = std::min(std::max(y[j], 0.f), 6.f);
}

// ---- backward ----------------------------------------------------------------------------------------

namespace {

// Train-mode backward; kRelu6: the gradient of the fused forward, dy masked by its output z.
template <bool kRelu6>
void train_backward(const char* who, const BatchNormGeom& g, const float* x, const float* z, const float* dy,
                    const float* weight, const float* save_mean, const float* save_invstd, float* dx, float* dweight,
                    float* dbias) {
  check_train(g, who);
  check_pointers(who, {x, dy, save_mean, save_invstd, dx});
  if (kRelu6) check_pointers(who, {z});
  const int64_t N = g.N, C = g.C, HW = g.HW, M = N * HW;
  const bool parallel = N * C * HW >= kMinParallel;
  const int64_t G = channel_block(g, parallel ? max_threads() : 1), blocks = (C + G - 1) / G;
  const bool slabs = use_slabs(g);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * G, c1 = std::min(C, c0 + G);
    std::vector<double> sg(static_cast<size_t>(c1 - c0), 0.0), sgd(sg.size(), 0.0);  // sum g, sum g (x - mu)
    std::vector<float> ka(sg.size()), kb(sg.size()), kc(sg.size());
    const int64_t nb = c1 - c0;
    const std::vector<float> muv = slabs ? expand(save_mean + c0, nb, HW) : std::vector<float>();
    if (slabs) {
      slab_sums(N, nb, HW, [&](int64_t n, float* a, float* q) {
        const int64_t o = (n * C + c0) * HW;
        if constexpr (kRelu6)
          slab_grad_sums_relu6(dy + o, z + o, x + o, muv.data(), a, q, nb * HW);
        else
          slab_grad_sums(dy + o, x + o, muv.data(), a, q, nb * HW);
      }, sg.data(), sgd.data());
    } else {
      for (int64_t n = 0; n < N; ++n) {
        const int64_t o = (n * C + c0) * HW;
        block_grad_sums_any<kRelu6>(dy + o, kRelu6 ? z + o : nullptr, x + o, nb, HW, save_mean + c0, sg.data(),
                                    sgd.data());
      }
    }
    const BackwardCoefficients k{nb,
                                 M,
                                 sg.data(),
                                 sgd.data(),
                                 save_invstd + c0,
                                 weight ? weight + c0 : nullptr,
                                 dbias ? dbias + c0 : nullptr,
                                 dweight ? dweight + c0 : nullptr,
                                 ka.data(),
                                 kb.data(),
                                 kc.data()};
    backward_coefficients_any(k);
    if (slabs) {
      const std::vector<float> av = expand(ka.data(), nb, HW), bv = expand(kb.data(), nb, HW),
                               cv = expand(kc.data(), nb, HW);
      for (int64_t n = 0; n < N; ++n) {
        const int64_t o = (n * C + c0) * HW;
        if constexpr (kRelu6)
          slab_dx_relu6(dy + o, z + o, x + o, av.data(), bv.data(), cv.data(), muv.data(), dx + o, nb * HW);
        else
          slab_dx(dy + o, x + o, av.data(), bv.data(), cv.data(), muv.data(), dx + o, nb * HW);
      }
    } else {
      for (int64_t n = 0; n < N; ++n) {
        const int64_t o = (n * C + c0) * HW;
        if constexpr (kRelu6)
          block_dx_relu6(dy + o, z + o, x + o, nb, HW, ka.data(), kb.data(), kc.data(), save_mean + c0, dx + o);
        else
          block_dx(dy + o, x + o, nb, HW, ka.data(), kb.data(), kc.data(), save_mean + c0, dx + o);
      }
    }
  }
}

// Eval-mode backward (statistics are constants); kRelu6: dy masked by the fused output z.
template <bool kRelu6>
void eval_backward(const char* who, const BatchNormGeom& g, const float* x, const float* z, const float* dy,
                   const float* weight, const float* running_mean, const float* running_var, float* dx,
                   float* dweight, float* dbias) {
  g.validate(who);
  check_pointers(who, {x, dy, running_mean, running_var, dx});
  if (kRelu6) check_pointers(who, {z});
  const int64_t N = g.N, C = g.C, HW = g.HW;
#pragma omp parallel for schedule(static) if (g.N * g.C * g.HW >= kMinParallel)
  for (int64_t c = 0; c < C; ++c) {
    const double r = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + g.eps);
    const float mu = running_mean[c];
    if (dweight || dbias) {
      double sg = 0.0, sgd = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t o = (n * C + c) * HW;
        grad_sums_any<kRelu6>(dy + o, kRelu6 ? z + o : nullptr, x + o, HW, mu, sg, sgd);
      }
      if (dbias) dbias[c] = static_cast<float>(sg);
      if (dweight) dweight[c] = static_cast<float>(sgd * r);
    }
    const float a = static_cast<float>((weight ? weight[c] : 1.0) * r);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t o = (n * C + c) * HW;
      if constexpr (kRelu6)
        scale_loop_relu6(dy + o, z + o, a, dx + o, HW);
      else
        scale_loop(dy + o, a, dx + o, HW);
    }
  }
}

// dy * [0 < z < 6]: the gradient reaching the BN output of a fused forward (for the refs).
std::vector<float> masked_dy(const BatchNormGeom& g, const float* z, const float* dy, const char* who) {
  check_pointers(who, {z, dy});
  std::vector<float> m(static_cast<size_t>(g.N * g.C * g.HW));
  for (size_t j = 0; j < m.size(); ++j) m[j] = (z[j] <= 0.f || z[j] >= 6.f) ? 0.f : dy[j];
  return m;
}

}  // namespace

void batchnorm_backward(const BatchNormGeom& g, const float* x, const float* dy, const float* weight,
                        const float* save_mean, const float* save_invstd, float* dx, float* dweight,
                        float* dbias) {
  train_backward<false>("batchnorm_backward", g, x, nullptr, dy, weight, save_mean, save_invstd, dx, dweight,
                        dbias);
}

void batchnorm_relu6_backward(const BatchNormGeom& g, const float* x, const float* y, const float* dy,
                              const float* weight, const float* save_mean, const float* save_invstd,
                              float* dx, float* dweight, float* dbias) {
  train_backward<true>("batchnorm_relu6_backward", g, x, y, dy, weight, save_mean, save_invstd, dx, dweight, dbias);
}

void batchnorm_backward_ref(const BatchNormGeom& g, const float* x, const float* dy,
                            const float* weight, const float* save_mean, const float* save_invstd,
                            float* dx, float* dweight, float* dbias) {
  const char* who = "batchnorm_backward_ref";
  check_train(g, who);
  check_pointers(who, {x, dy, save_mean, save_invstd, dx});
  const int64_t N = g.N, C = g.C, HW = g.HW, M = N * HW;
  for (int64_t c = 0; c < C; ++c) {
    const double mu = save_mean[c], r = save_invstd[c], gamma = weight ? weight[c] : 1.0;
    double dbeta = 0.0, dgamma = 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        dbeta += dy[j];                    // (1)
        dgamma += dy[j] * (x[j] - mu) * r;  // (2)
      }
    if (dbias) dbias[c] = static_cast<float>(dbeta);
    if (dweight) dweight[c] = static_cast<float>(dgamma);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t j = (n * C + c) * HW + i;
        const double xhat = (x[j] - mu) * r;
        dx[j] = static_cast<float>(gamma * r * (dy[j] - dbeta / M - xhat * dgamma / M));  // (3)
      }
  }
}

// ---- eval-mode backward ------------------------------------------------------------------------------

void batchnorm_backward_eval(const BatchNormGeom& g, const float* x, const float* dy,
                             const float* weight, const float* running_mean,
                             const float* running_var, float* dx, float* dweight, float* dbias) {
  eval_backward<false>("batchnorm_backward_eval", g, x, nullptr, dy, weight, running_mean, running_var, dx, dweight,
                       dbias);
}

void batchnorm_relu6_backward_eval(const BatchNormGeom& g, const float* x, const float* y,
                                   const float* dy, const float* weight, const float* running_mean,
                                   const float* running_var, float* dx, float* dweight, float* dbias) {
  eval_backward<true>("batchnorm_relu6_backward_eval", g, x, y, dy, weight, running_mean, running_var, dx, dweight,
                      dbias);
}

void batchnorm_backward_eval_ref(const BatchNormGeom& g, const float* x, const float* dy,
                                 const float* weight, const float* running_mean,
                                 const float* running_var, float* dx, float* dweight, float* dbias) {
  const char* who = "batchnorm_backward_eval_ref";
  g.validate(who);
  check_pointers(who, {x, dy, running_mean, running_var, dx});
  for (int64_t c = 0; c < g.C; ++c) {
    const double r = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + g.eps);
    const double gamma = weight ? weight[c] : 1.0;
    double sg = 0.0, sgx = 0.0;
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t i = 0; i < g.HW; ++i) {
        const int64_t j = (n * g.C + c) * g.HW + i;
        sg += dy[j];
        sgx += dy[j] * (x[j] - running_mean[c]) * r;
        dx[j] = static_cast<float>(dy[j] * gamma * r);
      }
    if (dbias) dbias[c] = static_cast<float>(sg);
    if (dweight) dweight[c] = static_cast<float>(sgx);
  }
}

// ---- fused ReLU6 backward refs: the mask applied to dy, then the plain refs ----------------------------

void batchnorm_relu6_backward_ref(const BatchNormGeom& g, const float* x, const float* y,
                                  const float* dy, const float* weight, const float* save_mean,
                                  const float* save_invstd, float* dx, float* dweight, float* dbias) {
  const char* who = "batchnorm_relu6_backward_ref";
  check_train(g, who);
  const std::vector<float> gm = masked_dy(g, y, dy, who);
  batchnorm_backward_ref(g, x, gm.data(), weight, save_mean, save_invstd, dx, dweight, dbias);
}

void batchnorm_relu6_backward_eval_ref(const BatchNormGeom& g, const float* x, const float* y,
                                       const float* dy, const float* weight,
                                       const float* running_mean, const float* running_var, float* dx,
                                       float* dweight, float* dbias) {
  const char* who = "batchnorm_relu6_backward_eval_ref";
  g.validate(who);
  const std::vector<float> gm = masked_dy(g, y, dy, who);
  batchnorm_backward_eval_ref(g, x, gm.data(), weight, running_mean, running_var, dx, dweight, dbias);
}

}  // namespace sleepnet::kernels
