// ops.cpp: raw (graph-free) tensor computations over any strides, with NumPy broadcasting.
//
// Everything here funnels through one strided loop (`for_each_strided`), with a flat fast path when
// all operands are contiguous and of one shape. Reductions accumulate in double.
#include "tensor/ops.h"

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

namespace sleepnet::raw {

namespace {

// Visits every index of `shape` in row-major order; `f` receives, for each of the K operands, the
// element offset (base offset + sum of index * stride).
template <size_t K, class F>
void for_each_strided(const Shape& shape, const std::array<const Shape*, K>& st, std::array<int64_t, K> off, F&& f) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (shape_numel(shape) == 0) return;
  if (nd == 0) {
    f(off);
    return;
  }
  std::vector<int64_t> idx(nd, 0);
  const int64_t inner = shape[nd - 1];
  std::array<int64_t, K> inner_st;
  for (size_t k = 0; k < K; ++k) inner_st[k] = (*st[k])[nd - 1];
  while (true) {
    auto o = off;
    for (int64_t i = 0; i < inner; ++i) {
      f(o);
      for (size_t k = 0; k < K; ++k) o[k] += inner_st[k];
    }
    int64_t d = nd - 2;
    for (; d >= 0; --d) {
      ++idx[d];
      for (size_t k = 0; k < K; ++k) off[k] += (*st[k])[d];
      if (idx[d] < shape[d]) break;
      for (size_t k = 0; k < K; ++k) off[k] -= (*st[k])[d] * shape[d];
      idx[d] = 0;
    }
    if (d < 0) break;
  }
}

template <class F>
Tensor map_binary(const Tensor& a, const Tensor& b, const char* name, F f) {
  Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape);
  float* o = out.data();
  const float* pa = a.data();
  const float* pb = b.data();
  const int64_t n = out.numel();
  if (a.is_contiguous() && b.is_contiguous() && a.shape() == shape && b.shape() == shape) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(pa[i], pb[i]);
  } else if (a.is_contiguous() && a.shape() == shape && b.numel() == 1) {
    const float s = pb[0];
    for (int64_t i = 0; i < n; ++i) o[i] = f(pa[i], s);
  } else {
    Shape sa = broadcast_strides(a, shape, name), sb = broadcast_strides(b, shape, name);
    int64_t i = 0;
    for_each_strided<2>(shape, {&sa, &sb}, {0, 0}, [&](const std::array<int64_t, 2>& off) { o[i++] = f(pa[off[0]], pb[off[1]]); });
  }
  return out;
}

template <class F>
Tensor map_unary(const Tensor& a, F f) {
  Tensor out = Tensor::empty(a.shape());
  float* o = out.data();
  const float* pa = a.data();
  if (a.is_contiguous()) {
    for (int64_t i = 0, n = a.numel(); i < n; ++i) o[i] = f(pa[i]);
  } else {
    int64_t i = 0;
    for_each_strided<1>(a.shape(), {&a.strides()}, {0}, [&](const std::array<int64_t, 1>& off) { o[i++] = f(pa[off[0]]); });
  }
  return out;
}

// Normalises a list of reduction dims (empty = all); returns a mask over dims.
std::vector<bool> reduce_mask(const Tensor& a, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> mask(a.dim(), dims.empty());
  for (int64_t d : dims) {
    int64_t w = wrap_dim(d, a.dim(), op);
    if (mask[w] && !dims.empty())
      throw Error(fmt::format("{}: dim {} listed twice for shape {}", op, d, shape_str(a.shape())));
    mask[w] = true;
  }
  return mask;
}

// Calls f(out_index, reduced element offsets...) by splitting the dims into kept and reduced.
// Returns the output shape (with or without kept size-1 dims).
template <class Init, class Step, class Finish>
Tensor reduce(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim, const char* op, Init init, Step step,
              Finish finish) {
  std::vector<bool> mask = reduce_mask(a, dims, op);
  Shape kept, kept_st, red, red_st, out_shape;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (mask[d]) {
      red.push_back(a.shape()[d]);
      red_st.push_back(a.strides()[d]);
      if (keepdim) out_shape.push_back(1);
    } else {
      kept.push_back(a.shape()[d]);
      kept_st.push_back(a.strides()[d]);
      out_shape.push_back(a.shape()[d]);
    }
  }
  const int64_t count = shape_numel(red);
  Tensor out = Tensor::empty(out_shape);
  float* o = out.data();
  const float* pa = a.data();
  int64_t i = 0;
  for_each_strided<1>(kept, {&kept_st}, {0}, [&](const std::array<int64_t, 1>& base) {
    auto acc = init();
    int64_t j = 0;
    for_each_strided<1>(red, {&red_st}, {base[0]}, [&](const std::array<int64_t, 1>& off) { step(acc, pa[off[0]], j++); });
    o[i++] = finish(acc, count);
  });
  return out;
}

}  // namespace

// ---------------------------------------------------------------- layout

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      throw Error(fmt::format("{}: shapes {} and {} cannot be broadcast together", op, shape_str(a), shape_str(b)));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Shape broadcast_strides(const Tensor& t, const Shape& shape, const char* op) {
  if (t.dim() > static_cast<int64_t>(shape.size()))
    throw Error(fmt::format("{}: cannot broadcast shape {} to {}", op, shape_str(t.shape()), shape_str(shape)));
  Shape st(shape.size(), 0);
  const size_t lead = shape.size() - t.dim();
  for (int64_t d = 0; d < t.dim(); ++d) {
    int64_t s = t.shape()[d];
    if (s == shape[lead + d]) {
      st[lead + d] = s == 1 ? 0 : t.strides()[d];
    } else if (s != 1) {
      throw Error(fmt::format("{}: cannot broadcast shape {} to {}", op, shape_str(t.shape()), shape_str(shape)));
    }
  }
  return st;
}

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape());
  copy(out, t);
  return out;
}

void fill(Tensor& dst, float value) {
  float* p = dst.data();
  if (dst.is_contiguous()) {
    std::fill(p, p + dst.numel(), value);
    return;
  }
  for_each_strided<1>(dst.shape(), {&dst.strides()}, {0}, [&](const std::array<int64_t, 1>& off) { p[off[0]] = value; });
}

void copy(Tensor& dst, const Tensor& src) {
  Shape ss = broadcast_strides(src, dst.shape(), "copy_");
  float* d = dst.data();
  const float* s = src.data();
  if (dst.is_contiguous() && src.is_contiguous() && src.shape() == dst.shape()) {
    if (dst.numel()) std::memmove(d, s, sizeof(float) * dst.numel());
    return;
  }
  // Copy through a temporary when the two views may overlap in one storage.
  if (dst.storage() == src.storage()) {
    Tensor tmp = contiguous(src).same(src) ? Tensor::from_blob(src.data(), src.shape()) : contiguous(src);
    copy(dst, tmp);
    return;
  }
  for_each_strided<2>(dst.shape(), {&dst.strides(), &ss}, {0, 0},
                      [&](const std::array<int64_t, 2>& off) { d[off[0]] = s[off[1]]; });
}

// ---------------------------------------------------------------- elementwise

Tensor binary(Binary op, const Tensor& a, const Tensor& b) {
  switch (op) {
    case Binary::Add: return map_binary(a, b, "add", [](float x, float y) { return x + y; });
    case Binary::Sub: return map_binary(a, b, "sub", [](float x, float y) { return x - y; });
    case Binary::Mul: return map_binary(a, b, "mul", [](float x, float y) { return x * y; });
    case Binary::Div: return map_binary(a, b, "div", [](float x, float y) { return x / y; });
    case Binary::Pow: return map_binary(a, b, "pow", [](float x, float y) { return std::pow(x, y); });
    case Binary::Maximum: return map_binary(a, b, "maximum", [](float x, float y) { return std::max(x, y); });
    case Binary::Minimum: return map_binary(a, b, "minimum", [](float x, float y) { return std::min(x, y); });
    case Binary::Eq: return map_binary(a, b, "eq", [](float x, float y) { return float(x == y); });
    case Binary::Ne: return map_binary(a, b, "ne", [](float x, float y) { return float(x != y); });
    case Binary::Lt: return map_binary(a, b, "lt", [](float x, float y) { return float(x < y); });
    case Binary::Le: return map_binary(a, b, "le", [](float x, float y) { return float(x <= y); });
    case Binary::Gt: return map_binary(a, b, "gt", [](float x, float y) { return float(x > y); });
    case Binary::Ge: return map_binary(a, b, "ge", [](float x, float y) { return float(x >= y); });
  }
  throw Error("binary: unknown op");
}

Tensor binary(Binary op, const Tensor& a, float b) { return binary(op, a, Tensor::scalar(b)); }

Tensor unary(Unary op, const Tensor& a) {
  switch (op) {
    case Unary::Neg: return map_unary(a, [](float x) { return -x; });
    case Unary::Exp: return map_unary(a, [](float x) { return std::exp(x); });
    case Unary::Log: return map_unary(a, [](float x) { return std::log(x); });
    case Unary::Sqrt: return map_unary(a, [](float x) { return std::sqrt(x); });
    case Unary::Abs: return map_unary(a, [](float x) { return std::fabs(x); });
    case Unary::Sign: return map_unary(a, [](float x) { return float((x > 0) - (x < 0)); });
    case Unary::Square: return map_unary(a, [](float x) { return x * x; });
    case Unary::Reciprocal: return map_unary(a, [](float x) { return 1.f / x; });
  }
  throw Error("unary: unknown op");
}

Tensor clamp(const Tensor& a, float lo, float hi) {
  if (lo > hi) throw Error(fmt::format("clamp: min {} is greater than max {}", lo, hi));
  return map_unary(a, [lo, hi](float x) { return std::min(std::max(x, lo), hi); });
}

Tensor inside(const Tensor& a, float lo, float hi) {
  return map_unary(a, [lo, hi](float x) { return float(x > lo && x < hi); });
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = Tensor::empty(shape);
  Shape sc = broadcast_strides(cond, shape, "where"), sa = broadcast_strides(a, shape, "where"),
        sb = broadcast_strides(b, shape, "where");
  const float *pc = cond.data(), *pa = a.data(), *pb = b.data();
  float* o = out.data();
  int64_t i = 0;
  for_each_strided<3>(shape, {&sc, &sa, &sb}, {0, 0, 0},
                      [&](const std::array<int64_t, 3>& off) { o[i++] = pc[off[0]] != 0.f ? pa[off[1]] : pb[off[2]]; });
  return out;
}

// ---------------------------------------------------------------- reductions

Tensor sum(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(
      a, dims, keepdim, "sum", [] { return 0.0; }, [](double& acc, float x, int64_t) { acc += x; },
      [](double acc, int64_t) { return static_cast<float>(acc); });
}

Tensor mean(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(
      a, dims, keepdim, "mean", [] { return 0.0; }, [](double& acc, float x, int64_t) { acc += x; },
      [](double acc, int64_t n) { return n ? static_cast<float>(acc / n) : std::numeric_limits<float>::quiet_NaN(); });
}

Tensor var(const Tensor& a, const std::vector<int64_t>& dims, int64_t correction, bool keepdim) {
  // Welford's running mean and M2, in double.
  struct Acc {
    double mean = 0, m2 = 0;
    int64_t n = 0;
  };
  return reduce(
      a, dims, keepdim, "var", [] { return Acc{}; },
      [](Acc& s, float x, int64_t) {
        ++s.n;
        double d = x - s.mean;
        s.mean += d / s.n;
        s.m2 += d * (x - s.mean);
      },
      [correction](const Acc& s, int64_t n) {
        return n - correction > 0 ? static_cast<float>(s.m2 / (n - correction)) : std::numeric_limits<float>::quiet_NaN();
      });
}

Tensor amax(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  if (a.numel() == 0) throw Error(fmt::format("max: empty tensor of shape {}", shape_str(a.shape())));
  return reduce(
      a, dims, keepdim, "max", [] { return -std::numeric_limits<float>::infinity(); },
      [](float& acc, float x, int64_t) { acc = (x > acc || std::isnan(x)) ? x : acc; }, [](float acc, int64_t) { return acc; });
}

Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) {
  if (a.numel() == 0) throw Error(fmt::format("argmax: empty tensor of shape {}", shape_str(a.shape())));
  struct Acc {
    float best = -std::numeric_limits<float>::infinity();
    int64_t idx = -1;
  };
  return reduce(
      a, {dim}, keepdim, "argmax", [] { return Acc{}; },
      [](Acc& s, float x, int64_t j) {
        if (s.idx < 0 || x > s.best) s = {x, j};
      },
      [](const Acc& s, int64_t) { return static_cast<float>(s.idx); });
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  if (lead < 0) throw Error(fmt::format("sum_to: cannot reduce {} to {}", shape_str(g.shape()), shape_str(shape)));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < g.dim(); ++d) {
    if (d < lead) {
      dims.push_back(d);
    } else if (shape[d - lead] == 1 && g.shape()[d] != 1) {
      dims.push_back(d);
    } else if (shape[d - lead] != g.shape()[d]) {
      throw Error(fmt::format("sum_to: cannot reduce {} to {}", shape_str(g.shape()), shape_str(shape)));
    }
  }
  if (dims.empty()) {
    Tensor c = contiguous(g);
    return Tensor::make_view(c.storage(), c.offset(), shape, contiguous_strides(shape));
  }
  Tensor s = sum(g, dims, true);
  // drop the leading dims, keep the size-1 ones of `shape`
  return Tensor::make_view(s.storage(), 0, shape, contiguous_strides(shape));
}

// ---------------------------------------------------------------- matmul

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  if (a_in.dim() == 0 || b_in.dim() == 0)
    throw Error(fmt::format("matmul: both operands need at least 1 dim, got {} and {}", shape_str(a_in.shape()),
                            shape_str(b_in.shape())));
  const bool a_vec = a_in.dim() == 1, b_vec = b_in.dim() == 1;
  Tensor a = a_vec ? Tensor::make_view(a_in.storage(), a_in.offset(), {1, a_in.size(0)}, {0, a_in.strides()[0]}) : a_in;
  Tensor b = b_vec ? Tensor::make_view(b_in.storage(), b_in.offset(), {b_in.size(0), 1}, {b_in.strides()[0], 0}) : b_in;
  const int64_t M = a.size(-2), K = a.size(-1), K2 = b.size(-2), N = b.size(-1);
  if (K != K2)
    throw Error(fmt::format("matmul: inner sizes differ: {} x {}", shape_str(a_in.shape()), shape_str(b_in.shape())));
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  const int64_t B = shape_numel(batch);
  Shape ea = batch, eb = batch, eo = batch;
  ea.insert(ea.end(), {M, K});
  eb.insert(eb.end(), {K, N});
  // Materialise both operands as contiguous [B, M, K] and [B, K, N].
  Tensor ac = Tensor::empty(ea), bc = Tensor::empty(eb);
  copy(ac, a);
  copy(bc, b);
  eo.insert(eo.end(), {M, N});
  Tensor out = Tensor::zeros(eo);
  for (int64_t i = 0; i < B; ++i) {
    if (M && N && K)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.f, ac.data() + i * M * K, K,
                  bc.data() + i * K * N, N, 0.f, out.data() + i * M * N, N);
  }
  Shape final_shape = batch;
  if (!a_vec) final_shape.push_back(M);
  if (!b_vec) final_shape.push_back(N);
  return Tensor::make_view(out.storage(), 0, final_shape, contiguous_strides(final_shape));
}

}  // namespace sleepnet::raw
