// nn/kernels/gemm.cpp: row-major sgemm through OpenBLAS, and its naive reference.
#include "nn/kernels/gemm.h"

#include <cblas.h>

#include <climits>
#include <algorithm>
#include <string>
#include <vector>

#include "nn/kernels/common.h"

namespace sleepnet::kernels {

static void check_gemm_args(const char* who, bool trans_a, bool trans_b, int64_t M, int64_t N,
                            int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
  require(M >= 0 && N >= 0 && K >= 0, who, [&] {
    return "M, N, K must be >= 0, got " + std::to_string(M) + ", " + std::to_string(N) + ", " + std::to_string(K);
  });
  require(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX && lda <= INT_MAX && ldb <= INT_MAX &&
              ldc <= INT_MAX,
          who, "sizes must fit OpenBLAS's 32-bit int");
  const int64_t min_lda = trans_a ? M : K;
  const int64_t min_ldb = trans_b ? K : N;
  require(lda >= (min_lda > 1 ? min_lda : 1), who,
          [&] { return "lda = " + std::to_string(lda) + " must be >= " + std::to_string(min_lda); });
  require(ldb >= (min_ldb > 1 ? min_ldb : 1), who,
          [&] { return "ldb = " + std::to_string(ldb) + " must be >= " + std::to_string(min_ldb); });
  require(ldc >= (N > 1 ? N : 1), who,
          [&] { return "ldc = " + std::to_string(ldc) + " must be >= N = " + std::to_string(N); });
}

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  check_gemm_args("nn/kernels/gemm.cpp sgemm", trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A,
              static_cast<int>(lda), B, static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

void sgemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc) {
  check_gemm_args("nn/kernels/gemm.cpp sgemm_ref", trans_a, trans_b, M, N, K, lda, ldb, ldc);
  // Loop order i, k, j so that B and C are walked along rows (fast enough to check the real
  // MobileNetV2 layer shapes); each C[i, j] still sums its K products in order, in double.
  std::vector<double> row(static_cast<size_t>(N));
  for (int64_t i = 0; i < M; ++i) {
    std::fill(row.begin(), row.end(), 0.0);
    for (int64_t k = 0; k < K; ++k) {
      const double a = trans_a ? A[k * lda + i] : A[i * lda + k];
      if (trans_b)
        for (int64_t j = 0; j < N; ++j) row[static_cast<size_t>(j)] += a * B[j * ldb + k];
      else
        for (int64_t j = 0; j < N; ++j) row[static_cast<size_t>(j)] += a * B[k * ldb + j];
    }
    for (int64_t j = 0; j < N; ++j) {
      float& c = C[i * ldc + j];
      // beta == 0 ignores C's old contents (which may be uninitialised), as BLAS does.
      c = static_cast<float>(alpha * row[static_cast<size_t>(j)] + (beta == 0.f ? 0.0 : static_cast<double>(beta) * c));
    }
  }
}

}  // namespace sleepnet::kernels
