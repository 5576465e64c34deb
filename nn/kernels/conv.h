// nn/kernels/conv.h: 2-D convolution (NCHW, PyTorch's Conv2d) as im2col + GEMM.
//
// How it works. For one image and one group, im2col copies every receptive field of the input into
// a column of a matrix, so that the convolution becomes one matrix product:
//
//   col[Cg*KH*KW, OH*OW]     row r = (c*KH + kh)*KW + kw,  column p = oh*OW + ow
//                            col[r, p] = x[c, oh*SH - PH + kh, ow*SW - PW + kw]  (0 outside x)
//   y_g[OCg, OH*OW] = w_g[OCg, Cg*KH*KW] * col      (w_g: the group's rows of w, as stored)
//
// The backward passes are the two other products of the same three matrices:
//
//   backward-data:   dcol = w_g^T * dy_g, then col2im adds every column back where it came from
//                    (the adjoint of im2col: overlapping receptive fields sum)
//   backward-weight: dw_g = sum over images of dy_g * col^T
//   backward-bias:   db[oc] = sum over images and pixels of dy[n, oc, :, :]
//
// A 1x1 convolution with stride 1 and no padding needs no im2col: the image x[C, H*W] already IS
// the column matrix, so forward, backward-data and backward-weight are plain GEMMs on x and dy.
//
// Shapes (PyTorch's layouts):
//   x  [N, C, H, W]        w  [OC, C/groups, KH, KW]     bias [OC] (may be null)
//   y  [N, OC, OH, OW]     OH = (H + 2*PH - KH) / SH + 1, OW likewise
//
// Threading (measured in bench/bench_kernels_conv.cpp --modes, see bench/README.md): with at least
// as many (image, group) products as threads (batch 32), OpenMP gives each thread whole images and
// OpenBLAS runs single-threaded inside (two thread pools on 2 cores would fight). With fewer
// (batch 1), each product is split across the OpenMP threads by hand (Columns: by output columns,
// or by rows of dw for the weight gradient, so no sum is split), still with single-threaded
// OpenBLAS. ConvThreading lets benchmarks and tests force a strategy, including handing the
// product to OpenBLAS's own threads (Blas), up to 16x slower than Columns at batch 1 on the
// im2col layer. Inference asks for Chunks: a 1x1 layer on a small plane multiplies several images
// side by side, so its weights are packed once per chunk instead of once per image (1.5x the
// inference throughput at width 1.0, 64x64, batch 32); training does not (it would change the
// rounding of the gradients; chunk_images).
//
// Every optimized function has a `_ref` twin: plain loops, no OpenMP, no BLAS (sgemm_ref), kept
// for the tests.
#pragma once

#include <cstdint>

namespace sleepnet::kernels {

struct Conv2dGeom {
  int64_t N = 1, C = 1, H = 1, W = 1;  // input  [N, C, H, W]
  int64_t OC = 1;                      // output channels
  int64_t KH = 1, KW = 1;              // kernel
  int64_t SH = 1, SW = 1;              // stride
  int64_t PH = 0, PW = 0;              // zero padding on each side
  int64_t groups = 1;                  // C and OC are both split into `groups` equal parts

  int64_t OH() const { return (H + 2 * PH - KH) / SH + 1; }
  int64_t OW() const { return (W + 2 * PW - KW) / SW + 1; }
  int64_t Cg() const { return C / groups; }    // input channels per group
  int64_t OCg() const { return OC / groups; }  // output channels per group
  int64_t col_rows() const { return Cg() * KH * KW; }  // rows of one group's column matrix
  bool is_pointwise() const {  // 1x1, stride 1, no padding: no im2col needed
    return KH == 1 && KW == 1 && SH == 1 && SW == 1 && PH == 0 && PW == 0;
  }
  int64_t x_numel() const { return N * C * H * W; }
  int64_t y_numel() const { return N * OC * OH() * OW(); }
  int64_t w_numel() const { return OC * Cg() * KH * KW; }
  double flops() const { return 2.0 * N * OC * OH() * OW() * Cg() * KH * KW; }  // one pass

  // Throws sleepnet::Error naming the bad field (sizes < 1, groups not dividing C and OC,
  // kernel larger than the padded input, ...). `who` prefixes the message.
  void validate(const char* who) const;
};

// Images the Chunks mode multiplies in one product for this layer on `threads` threads: more than
// one only for an ungrouped 1x1 layer on a plane small enough for it to pay (conv.cpp); 1 means
// one image per product, as in every other mode.
int64_t chunk_images(const Conv2dGeom& g, int threads);

// Square-kernel shorthand: Conv2dGeom for kernel k, stride s, padding p in both directions.
Conv2dGeom conv2d_geom(int64_t N, int64_t C, int64_t H, int64_t W, int64_t OC, int64_t k,
                       int64_t stride, int64_t padding, int64_t groups = 1);

enum class ConvThreading {
  Auto,     // Images when N*groups >= threads, else Columns (see top of file)
  Images,   // OpenMP over (image, group) products, single-threaded OpenBLAS
  Columns,  // each product split across OpenMP threads, single-threaded OpenBLAS
  Blas,     // products one after another, OpenBLAS threads the GEMM (im2col still uses OpenMP)
  Chunks,   // forward of a 1x1 layer on small planes: chunks of images side by side, one product
            // each (else as Auto). For inference: results differ from Auto's in the last bits.
};

// ---- im2col / col2im for one image and one group ------------------------------------------
// x: [Cg, H, W] (the group's channels of one image)   col: [Cg*KH*KW, OH*OW]
void im2col(const Conv2dGeom& g, const float* x, float* col);
void im2col_ref(const Conv2dGeom& g, const float* x, float* col);
// dx: [Cg, H, W] is OVERWRITTEN with the sum of every col entry at the pixel it was copied from.
void col2im(const Conv2dGeom& g, const float* col, float* dx);
void col2im_ref(const Conv2dGeom& g, const float* col, float* dx);

// ---- convolution ------------------------------------------------------------------------------
// y = conv(x, w) + bias. bias may be null. y is overwritten.
void conv2d_forward(const Conv2dGeom& g, const float* x, const float* w, const float* bias,
                    float* y, ConvThreading mode = ConvThreading::Auto);
void conv2d_forward_ref(const Conv2dGeom& g, const float* x, const float* w, const float* bias,
                        float* y);

// dx = dL/dx given dy = dL/dy. dx [N, C, H, W] is overwritten.
void conv2d_backward_data(const Conv2dGeom& g, const float* dy, const float* w, float* dx,
                          ConvThreading mode = ConvThreading::Auto);
void conv2d_backward_data_ref(const Conv2dGeom& g, const float* dy, const float* w, float* dx);

// dw = dL/dw summed over the batch. dw [OC, C/groups, KH, KW] is overwritten.
void conv2d_backward_weight(const Conv2dGeom& g, const float* x, const float* dy, float* dw,
                            ConvThreading mode = ConvThreading::Auto);
void conv2d_backward_weight_ref(const Conv2dGeom& g, const float* x, const float* dy, float* dw);

// db[oc] = sum over n, oh, ow of dy[n, oc, oh, ow]. db [OC] is overwritten.
// (Shared with depthwise convolution: any dy [N, OC, P] with P pixels per channel.)
void conv2d_backward_bias(int64_t N, int64_t OC, int64_t P, const float* dy, float* db);
void conv2d_backward_bias_ref(int64_t N, int64_t OC, int64_t P, const float* dy, float* db);

}  // namespace sleepnet::kernels
