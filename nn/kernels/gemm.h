// nn/kernels/gemm.h: the one matrix product the kernels use, row-major, as in C++ arrays.
//
//   C[M, N] = alpha * op(A)[M, K] * op(B)[K, N] + beta * C[M, N]
//   op(A) = A when !trans_a (A stored [M, K], row stride lda >= K)
//         = A^T when trans_a (A stored [K, M], row stride lda >= M); likewise for B.
//
// sgemm calls OpenBLAS's cblas_sgemm (with however many threads OpenBLAS is set to use; see
// common.h); sgemm_ref is the textbook triple loop, accumulating in double, for tests.
#pragma once

#include <cstdint>

namespace sleepnet::kernels {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

void sgemm_ref(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
               int64_t ldc);

}  // namespace sleepnet::kernels
