// nn/kernels/activation.cpp: ReLU6, global average pooling, linear and dropout kernels.
#include "nn/kernels/activation.h"

#include <algorithm>
#include <string>

#include "nn/kernels/common.h"
#include "nn/kernels/gemm.h"

namespace sleepnet::kernels {

namespace {

// (Messages are built only on failure: these checks run on every call.)
void check_n(int64_t n, const char* who) {
  require(n >= 0, who, [&] { return "n = " + std::to_string(n) + ", expected >= 0 (nn/kernels/activation.h)"; });
}

void check_pool(int64_t N, int64_t C, int64_t HW, const char* who) {
  require(N >= 1 && C >= 1 && HW >= 1, who, [&] {
    return "N, C, HW = " + std::to_string(N) + ", " + std::to_string(C) + ", " + std::to_string(HW) +
           ", expected all >= 1 (nn/kernels/activation.h)";
  });
}

void check_p(float p, const char* who) {
  require(p >= 0.f && p <= 1.f, who,
          [&] { return "p = " + std::to_string(p) + ", expected in [0, 1] (nn/kernels/activation.h)"; });
}

// Element-wise kernels use a second thread only for at least this many elements per thread
// (below it, waking the team costs more than the work; see common.h).
constexpr int64_t kGrain = 1 << 14;
// Chunk boundaries on whole cache lines (16 floats), so threads never write the same line.
constexpr int64_t kLine = 16;

}  // namespace

// ---- ReLU6 ----

void relu6_forward(int64_t n, const float* x, float* y) {
  check_n(n, "relu6_forward");
  parallel_for(n, threads_for(n, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = std::min(std::max(x[i], 0.f), 6.f);
  }, kLine);
}

void relu6_forward_ref(int64_t n, const float* x, float* y) {
  check_n(n, "relu6_forward_ref");
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.f ? 0.f : (x[i] > 6.f ? 6.f : x[i]);
}

void relu6_backward(int64_t n, const float* x, const float* dy, float* dx) {
  check_n(n, "relu6_backward");
  parallel_for(n, threads_for(n, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      // `|`, not `||`, and dy read unconditionally: a select without branches, so it vectorizes.
      const float xi = x[i], d = dy[i];
      const bool kill = (xi <= 0.f) | (xi >= 6.f);
      dx[i] = kill ? 0.f : d;
    }
  }, kLine);
}

void relu6_backward_ref(int64_t n, const float* x, const float* dy, float* dx) {
  check_n(n, "relu6_backward_ref");
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] <= 0.f || x[i] >= 6.f)
      dx[i] = 0.f;
    else
      dx[i] = dy[i];
  }
}

// ---- global average pooling ----

void global_avg_pool_forward(int64_t N, int64_t C, int64_t HW, const float* x, float* y) {
  check_pool(N, C, HW, "global_avg_pool_forward");
  if (HW < 16) {  // tiny planes (2x2 ... 3x3): a plain double sum beats the lanes' overhead
    for (int64_t p = 0; p < N * C; ++p) {
      double s = 0.0;
      for (int64_t i = 0; i < HW; ++i) s += x[p * HW + i];
      y[p] = static_cast<float>(s / HW);
    }
    return;
  }
  parallel_for(N * C, threads_for(N * C * HW, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) y[p] = static_cast<float>(sum_lanes(x + p * HW, HW) / HW);
  });
}

void global_avg_pool_forward_ref(int64_t N, int64_t C, int64_t HW, const float* x, float* y) {
  check_pool(N, C, HW, "global_avg_pool_forward_ref");
  for (int64_t p = 0; p < N * C; ++p) {
    double s = 0.0;
    for (int64_t i = 0; i < HW; ++i) s += x[p * HW + i];
    y[p] = static_cast<float>(s / HW);
  }
}

void global_avg_pool_backward(int64_t N, int64_t C, int64_t HW, const float* dy, float* dx) {
  check_pool(N, C, HW, "global_avg_pool_backward");
  const float inv = static_cast<float>(HW);
  parallel_for(N * C, threads_for(N * C * HW, kGrain), [&](int64_t b, int64_t e) {
    // (locals, not the lambda's captures: a float store could otherwise change the captured `inv`)
    const float* __restrict src = dy;
    float* __restrict dst = dx;
    const float scale = inv;
    const int64_t hw = HW;
    for (int64_t p = b; p < e; ++p) {
      const float v = src[p] / scale;
      for (int64_t i = 0; i < hw; ++i) dst[p * hw + i] = v;
    }
  });
}

void global_avg_pool_backward_ref(int64_t N, int64_t C, int64_t HW, const float* dy, float* dx) {
  check_pool(N, C, HW, "global_avg_pool_backward_ref");
  for (int64_t p = 0; p < N * C; ++p)
    for (int64_t i = 0; i < HW; ++i) dx[p * HW + i] = dy[p] / static_cast<float>(HW);
}

// ---- linear ----

void LinearGeom::validate(const char* who) const {
  require(N >= 1 && IN >= 1 && OUT >= 1, who, [&] {
    return "LinearGeom N, IN, OUT = " + std::to_string(N) + ", " + std::to_string(IN) + ", " + std::to_string(OUT) +
           ", expected all >= 1 (nn/kernels/activation.h)";
  });
}

void linear_forward(const LinearGeom& g, const float* x, const float* w, const float* b, float* y) {
  g.validate("linear_forward");
  BlasThreads blas(max_threads());
  sgemm(false, true, g.N, g.OUT, g.IN, 1.f, x, g.IN, w, g.IN, 0.f, y, g.OUT);  // y = x w^T
  if (b)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t o = 0; o < g.OUT; ++o) y[n * g.OUT + o] += b[o];
}

void linear_forward_ref(const LinearGeom& g, const float* x, const float* w, const float* b, float* y) {
  g.validate("linear_forward_ref");
  sgemm_ref(false, true, g.N, g.OUT, g.IN, 1.f, x, g.IN, w, g.IN, 0.f, y, g.OUT);
  if (b)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t o = 0; o < g.OUT; ++o) y[n * g.OUT + o] += b[o];
}

void linear_backward(const LinearGeom& g, const float* x, const float* w, const float* dy, float* dx,
                     float* dw, float* db) {
  g.validate("linear_backward");
  BlasThreads blas(max_threads());
  if (dx) sgemm(false, false, g.N, g.IN, g.OUT, 1.f, dy, g.OUT, w, g.IN, 0.f, dx, g.IN);  // dy w
  if (dw) sgemm(true, false, g.OUT, g.IN, g.N, 1.f, dy, g.OUT, x, g.IN, 0.f, dw, g.IN);   // dy^T x
  if (db)
    for (int64_t o = 0; o < g.OUT; ++o) {
      double s = 0.0;
      for (int64_t n = 0; n < g.N; ++n) s += dy[n * g.OUT + o];
      db[o] = static_cast<float>(s);
    }
}

void linear_backward_ref(const LinearGeom& g, const float* x, const float* w, const float* dy,
                         float* dx, float* dw, float* db) {
  g.validate("linear_backward_ref");
  if (dx) sgemm_ref(false, false, g.N, g.IN, g.OUT, 1.f, dy, g.OUT, w, g.IN, 0.f, dx, g.IN);
  if (dw) sgemm_ref(true, false, g.OUT, g.IN, g.N, 1.f, dy, g.OUT, x, g.IN, 0.f, dw, g.IN);
  if (db)
    for (int64_t o = 0; o < g.OUT; ++o) {
      double s = 0.0;
      for (int64_t n = 0; n < g.N; ++n) s += dy[n * g.OUT + o];
      db[o] = static_cast<float>(s);
    }
}

// ---- dropout ----

void dropout_mask(int64_t n, float p, const float* uniform, float* mask) {
  check_n(n, "dropout_mask");
  check_p(p, "dropout_mask");
  const float keep = static_cast<float>(1.0 - p);
  const float scale = p < 1.f ? 1.f / keep : 0.f;
  parallel_for(n, threads_for(n, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) mask[i] = uniform[i] < keep ? scale : 0.f;
  }, kLine);
}

void dropout_mask_ref(int64_t n, float p, const float* uniform, float* mask) {
  check_n(n, "dropout_mask_ref");
  check_p(p, "dropout_mask_ref");
  for (int64_t i = 0; i < n; ++i) {
    const bool kept = uniform[i] < static_cast<float>(1.0 - p);
    mask[i] = kept ? 1.f / static_cast<float>(1.0 - p) : 0.f;
  }
}

void dropout_apply(int64_t n, const float* x, const float* mask, float* y) {
  check_n(n, "dropout_apply");
  parallel_for(n, threads_for(n, kGrain), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = x[i] * mask[i];
  }, kLine);
}

void dropout_apply_ref(int64_t n, const float* x, const float* mask, float* y) {
  check_n(n, "dropout_apply_ref");
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * mask[i];
}

}  // namespace sleepnet::kernels
