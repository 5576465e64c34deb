// ops.cpp: every differentiable tensor op, forward and backward side by side.
//
// Pattern: compute the forward with tensor/ops.h, then `record` a backward closure that captures
// exactly what it needs (detached, so a saved tensor never holds its own graph alive). Backward
// closures run with grad mode off, so they freely use the ops of this file.
#include "autograd/ops.h"

#include <fmt/format.h>

#include <cmath>
#include <numeric>

#include "tensor/ops.h"

namespace sleepnet {

using raw::Binary;
using raw::Unary;
using raw::sum_to;

// ================================================================ elementwise

Tensor add(const Tensor& a, const Tensor& b) {
  return record("add", raw::binary(Binary::Add, a, b), {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
    return grads{sum_to(g, sa), sum_to(g, sb)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  return record("sub", raw::binary(Binary::Sub, a, b), {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
    return grads{sum_to(g, sa), sum_to(raw::unary(Unary::Neg, g), sb)};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  return record("mul", raw::binary(Binary::Mul, a, b), {a, b}, [a = a.detach(), b = b.detach()](const Tensor& g) {
    return grads{sum_to(g * b, a.shape()), sum_to(g * a, b.shape())};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
  return record("div", raw::binary(Binary::Div, a, b), {a, b}, [a = a.detach(), b = b.detach()](const Tensor& g) {
    return grads{sum_to(g / b, a.shape()), sum_to(-(g * a) / (b * b), b.shape())};
  });
}

Tensor neg(const Tensor& a) {
  return record("neg", raw::unary(Unary::Neg, a), {a}, [](const Tensor& g) { return grads{-g}; });
}

Tensor exp(const Tensor& a) {
  Tensor out = raw::unary(Unary::Exp, a);
  return record("exp", out, {a}, [out = out.detach()](const Tensor& g) { return grads{g * out}; });
}

Tensor log(const Tensor& a) {
  return record("log", raw::unary(Unary::Log, a), {a}, [a = a.detach()](const Tensor& g) { return grads{g / a}; });
}

Tensor sqrt(const Tensor& a) {
  Tensor out = raw::unary(Unary::Sqrt, a);
  return record("sqrt", out, {a}, [out = out.detach()](const Tensor& g) { return grads{g / (out * 2.f)}; });
}

Tensor pow(const Tensor& a, float p) {
  return record("pow", raw::binary(Binary::Pow, a, p), {a}, [a = a.detach(), p](const Tensor& g) {
    return grads{g * raw::binary(Binary::Pow, a, p - 1.f) * p};
  });
}

Tensor pow(const Tensor& a, const Tensor& e) {
  // d(a^e)/da = e a^(e-1); d(a^e)/de = a^e log(a)
  Tensor out = raw::binary(Binary::Pow, a, e);
  return record("pow", out, {a, e}, [a = a.detach(), e = e.detach(), out = out.detach()](const Tensor& g) {
    Tensor ga = g * e * raw::binary(Binary::Pow, a, raw::binary(Binary::Sub, e, 1.f));
    Tensor ge = g * out * raw::unary(Unary::Log, a);
    return grads{sum_to(ga, a.shape()), sum_to(ge, e.shape())};
  });
}

Tensor abs(const Tensor& a) {
  return record("abs", raw::unary(Unary::Abs, a), {a},
                [a = a.detach()](const Tensor& g) { return grads{g * raw::unary(Unary::Sign, a)}; });
}

Tensor clamp(const Tensor& a, float lo, float hi) {
  return record("clamp", raw::clamp(a, lo, hi), {a}, [a = a.detach(), lo, hi](const Tensor& g) {
    Tensor pass = raw::binary(Binary::Mul, raw::binary(Binary::Ge, a, lo), raw::binary(Binary::Le, a, hi));
    return grads{g * pass};
  });
}

// maximum/minimum: the gradient goes to the winner; on a tie each side gets half (as PyTorch).
static Tensor extremum(const char* name, Binary op, Binary wins, const Tensor& a, const Tensor& b) {
  return record(name, raw::binary(op, a, b), {a, b}, [a = a.detach(), b = b.detach(), wins](const Tensor& g) {
    Tensor tie = raw::binary(Binary::Eq, a, b) * 0.5f;
    Tensor wa = raw::binary(wins, a, b) + tie;
    Tensor wb = raw::binary(wins, b, a) + tie;
    return grads{sum_to(g * wa, a.shape()), sum_to(g * wb, b.shape())};
  });
}
Tensor maximum(const Tensor& a, const Tensor& b) { return extremum("maximum", Binary::Maximum, Binary::Gt, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum("minimum", Binary::Minimum, Binary::Lt, a, b); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Tensor out = raw::where(cond, a, b);
  return record("where", out, {a, b}, [c = cond.detach(), sa = a.shape(), sb = b.shape()](const Tensor& g) {
    Tensor zero = Tensor::scalar(0.f);
    return grads{sum_to(raw::where(c, g, zero), sa), sum_to(raw::where(c, zero, g), sb)};
  });
}

Tensor sigmoid(const Tensor& a) {
  Tensor out = raw::unary(Unary::Reciprocal, raw::binary(Binary::Add, raw::unary(Unary::Exp, raw::unary(Unary::Neg, a)), 1.f));
  return record("sigmoid", out, {a}, [s = out.detach()](const Tensor& g) { return grads{g * s * (1.f - s)}; });
}

Tensor tanh(const Tensor& a) {
  Tensor e2 = raw::unary(Unary::Exp, raw::binary(Binary::Mul, a, -2.f));
  Tensor out = raw::binary(Binary::Div, raw::binary(Binary::Sub, Tensor::scalar(1.f), e2), raw::binary(Binary::Add, e2, 1.f));
  return record("tanh", out, {a}, [t = out.detach()](const Tensor& g) { return grads{g * (1.f - t * t)}; });
}

Tensor eq(const Tensor& a, const Tensor& b) { return raw::binary(Binary::Eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return raw::binary(Binary::Ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return raw::binary(Binary::Lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return raw::binary(Binary::Le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return raw::binary(Binary::Gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return raw::binary(Binary::Ge, a, b); }

// ================================================================ reductions

// The shape a reduction's output has with keepdim=true: reduced dims set to 1.
static Shape kept_shape(const Shape& in, const std::vector<int64_t>& dims, const char* op) {
  Shape s = in;
  if (dims.empty()) std::fill(s.begin(), s.end(), 1);
  for (int64_t d : dims) s[wrap_dim(d, static_cast<int64_t>(in.size()), op)] = 1;
  return s;
}

// Spreads a reduction's output gradient back over the input: reshape to keepdim form, broadcast.
static Tensor spread(const Tensor& g, const Shape& in_shape, const std::vector<int64_t>& dims, const char* op) {
  Tensor gk = g.reshape(kept_shape(in_shape, dims, op));
  Tensor out = Tensor::empty(in_shape);
  out.copy_(gk);
  return out;
}

static int64_t reduced_count(const Shape& in, const std::vector<int64_t>& dims, const char* op) {
  return shape_numel(in) / std::max<int64_t>(shape_numel(kept_shape(in, dims, op)), 1);
}

Tensor sum(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  return record("sum", raw::sum(a, dims, keepdim), {a},
                [sa = a.shape(), dims](const Tensor& g) { return grads{spread(g, sa, dims, "sum")}; });
}

Tensor mean(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  return record("mean", raw::mean(a, dims, keepdim), {a}, [sa = a.shape(), dims](const Tensor& g) {
    return grads{spread(g, sa, dims, "mean") / static_cast<float>(reduced_count(sa, dims, "mean"))};
  });
}

Tensor var(const Tensor& a, const std::vector<int64_t>& dims, int64_t correction, bool keepdim) {
  // d var / d a_i = 2 (a_i - mean) / (n - correction)
  return record("var", raw::var(a, dims, correction, keepdim), {a}, [a = a.detach(), dims, correction](const Tensor& g) {
    const int64_t n = reduced_count(a.shape(), dims, "var");
    Tensor centered = a - raw::mean(a, dims, true);
    return grads{spread(g, a.shape(), dims, "var") * centered * (2.f / static_cast<float>(n - correction))};
  });
}

Tensor max(const Tensor& a, const std::vector<int64_t>& dims, bool keepdim) {
  Tensor out = raw::amax(a, dims, keepdim);
  return record("max", out, {a}, [a = a.detach(), dims, m = out.detach()](const Tensor& g) {
    Tensor is_max = raw::binary(Binary::Eq, a, m.reshape(kept_shape(a.shape(), dims, "max")));
    Tensor count = raw::sum(is_max, dims, true);
    return grads{spread(g, a.shape(), dims, "max") * is_max / count};
  });
}

Tensor argmax(const Tensor& a, int64_t dim, bool keepdim) { return raw::argmax(a, dim, keepdim); }

// ================================================================ matmul

Tensor matmul(const Tensor& a, const Tensor& b) {
  // Vectors become matrices ([K] -> [1, K] on the left, [K, 1] on the right) so that one
  // backward rule serves all cases; the extra dim is removed again by a differentiable squeeze.
  if (a.dim() == 1 && b.dim() == 1) return matmul(a.unsqueeze(0), b.unsqueeze(1)).reshape({});
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(1)).squeeze(-1);
  // C = A B  =>  dA = dC B^T,  dB = A^T dC  (batch dims summed where they were broadcast)
  return record("matmul", raw::matmul(a, b), {a, b}, [a = a.detach(), b = b.detach()](const Tensor& g) {
    return grads{sum_to(raw::matmul(g, b.transpose(-1, -2)), a.shape()),
                 sum_to(raw::matmul(a.transpose(-1, -2), g), b.shape())};
  });
}

// ================================================================ joining

Tensor cat(const std::vector<Tensor>& ts, int64_t dim) {
  if (ts.empty()) throw Error("cat: no tensors given");
  const int64_t nd = ts[0].dim();
  const int64_t d = wrap_dim(dim, nd, "cat");
  Shape shape = ts[0].shape();
  shape[d] = 0;
  std::vector<int64_t> sizes;
  for (const Tensor& t : ts) {
    bool ok = t.dim() == nd;
    for (int64_t i = 0; ok && i < nd; ++i) ok = i == d || t.shape()[i] == ts[0].shape()[i];
    if (!ok)
      throw Error(fmt::format("cat: shape {} does not match {} outside dim {}", shape_str(t.shape()),
                              shape_str(ts[0].shape()), d));
    sizes.push_back(t.shape()[d]);
    shape[d] += t.shape()[d];
  }
  Tensor out = Tensor::empty(shape);
  int64_t at = 0;
  for (const Tensor& t : ts) {
    Tensor dst = out.detach().narrow(d, at, t.shape()[d]);
    dst.copy_(t);
    at += t.shape()[d];
  }
  return record("cat", out, ts, [d, sizes](const Tensor& g) {
    grads gs;
    int64_t at = 0;
    for (int64_t s : sizes) {
      gs.push_back(g.narrow(d, at, s).contiguous());
      at += s;
    }
    return gs;
  });
}

Tensor stack(const std::vector<Tensor>& ts, int64_t dim) {
  if (ts.empty()) throw Error("stack: no tensors given");
  std::vector<Tensor> u;
  const int64_t d = wrap_dim(dim, ts[0].dim() + 1, "stack");
  for (const Tensor& t : ts) u.push_back(t.unsqueeze(d));
  return cat(u, d);
}

// ================================================================ views (Tensor methods)

// Infers one -1 size and checks that the element count is kept.
static Shape infer_shape(Shape shape, int64_t numel, const Shape& from, const char* op) {
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) throw Error(fmt::format("{}: only one size may be -1 in {}", op, shape_str(shape)));
      infer = static_cast<int64_t>(i);
    } else if (shape[i] < 0) {
      throw Error(fmt::format("{}: invalid size in {}", op, shape_str(shape)));
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known)
      throw Error(fmt::format("{}: cannot view {} as {}", op, shape_str(from), shape_str(shape)));
    shape[infer] = numel / known;
  }
  if (shape_numel(shape) != numel)
    throw Error(fmt::format("{}: cannot view {} ({} elements) as {}", op, shape_str(from), numel, shape_str(shape)));
  return shape;
}

// Strides for viewing `t` as `shape` without copying, when its layout allows: the old dims are
// cut into chunks that are each contiguous in memory, and every chunk must map onto whole new
// dims (the rule PyTorch's view follows). Returns false when no such view exists.
static bool view_strides(const Tensor& t, const Shape& shape, Shape& out) {
  if (t.is_contiguous() || t.numel() == 0) {
    out = contiguous_strides(shape);
    return true;
  }
  const Shape& os = t.shape();
  const Shape& ost = t.strides();
  out.assign(shape.size(), 0);
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    tensor_numel *= os[d];
    const bool chunk_ends = d == 0 || (os[d - 1] != 1 && ost[d - 1] != tensor_numel * chunk_base_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
      out[view_d] = view_numel * chunk_base_stride;
      view_numel *= shape[view_d];
      --view_d;
    }
    if (view_numel != tensor_numel) return false;
    if (d > 0) {
      chunk_base_stride = ost[d - 1];
      tensor_numel = view_numel = 1;
    }
  }
  return view_d == -1;
}

Tensor Tensor::view(const Shape& shape_in) const {
  Shape shape = infer_shape(shape_in, numel(), this->shape(), "view");
  Shape st;
  if (!view_strides(*this, shape, st))
    throw Error(fmt::format("view: the layout of a tensor of shape {} with strides {} does not allow viewing it as {}; "
                            "use reshape()",
                            shape_str(this->shape()), shape_str(strides()), shape_str(shape)));
  Tensor out = make_view(storage(), offset(), shape, st);
  return record("view", out, {*this}, [from = this->shape()](const Tensor& g) { return grads{g.reshape(from)}; });
}

Tensor Tensor::reshape(const Shape& shape_in) const {
  Shape shape = infer_shape(shape_in, numel(), this->shape(), "reshape");
  Shape st;
  if (view_strides(*this, shape, st)) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  const int64_t s = wrap_dim(start_dim, dim(), "flatten"), e = wrap_dim(end_dim, dim(), "flatten");
  if (s > e) throw Error(fmt::format("flatten: start_dim {} after end_dim {}", start_dim, end_dim));
  Shape shape(this->shape().begin(), this->shape().begin() + s);
  int64_t n = 1;
  for (int64_t i = s; i <= e; ++i) n *= this->shape()[i];
  shape.push_back(n);
  shape.insert(shape.end(), this->shape().begin() + e + 1, this->shape().end());
  return reshape(shape);
}

Tensor Tensor::permute(const Shape& dims) const {
  if (static_cast<int64_t>(dims.size()) != dim())
    throw Error(fmt::format("permute: {} dims given for a tensor of shape {}", dims.size(), shape_str(shape())));
  Shape shape(dim()), st(dim()), inverse(dim(), -1);
  for (int64_t i = 0; i < dim(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    if (inverse[d] >= 0) throw Error(fmt::format("permute: dim {} repeated in {}", d, shape_str(dims)));
    inverse[d] = i;
    shape[i] = this->shape()[d];
    st[i] = strides()[d];
  }
  Tensor out = make_view(storage(), offset(), shape, st);
  return record("permute", out, {*this}, [inverse](const Tensor& g) { return grads{g.permute(inverse)}; });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  Shape dims(dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[wrap_dim(d0, dim(), "transpose")], dims[wrap_dim(d1, dim(), "transpose")]);
  return permute(dims);
}

Tensor Tensor::narrow(int64_t d_in, int64_t start, int64_t length) const {
  const int64_t d = wrap_dim(d_in, dim(), "narrow");
  if (start < 0 || length < 0 || start + length > shape()[d])
    throw Error(fmt::format("narrow: [{}, {}) is outside dim {} of shape {}", start, start + length, d,
                            shape_str(shape())));
  Shape shape = this->shape();
  shape[d] = length;
  Tensor out = make_view(storage(), offset() + start * strides()[d], shape, strides());
  return record("narrow", out, {*this}, [from = this->shape(), d, start, length](const Tensor& g) {
    Tensor full = Tensor::zeros(from);
    Tensor part = full.narrow(d, start, length);
    part.copy_(g);
    return grads{full};
  });
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  const int64_t w = wrap_dim(d, dim(), "select");
  if (index < 0) index += shape()[w];
  return narrow(w, index, 1).squeeze(w);
}

Tensor Tensor::unsqueeze(int64_t d_in) const {
  const int64_t d = wrap_dim(d_in, dim() + 1, "unsqueeze");
  Shape shape = this->shape(), st = strides();
  int64_t stride = d < dim() ? st[d] * shape[d] : 1;
  shape.insert(shape.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  Tensor out = make_view(storage(), offset(), shape, st);
  return record("unsqueeze", out, {*this}, [from = this->shape()](const Tensor& g) { return grads{g.reshape(from)}; });
}

Tensor Tensor::squeeze(int64_t d_in) const {
  const int64_t d = wrap_dim(d_in, dim(), "squeeze");
  if (shape()[d] != 1)
    throw Error(fmt::format("squeeze: dim {} of shape {} has size {}, not 1", d, shape_str(shape()), shape()[d]));
  Shape shape = this->shape(), st = strides();
  shape.erase(shape.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = make_view(storage(), offset(), shape, st);
  return record("squeeze", out, {*this}, [from = this->shape()](const Tensor& g) { return grads{g.reshape(from)}; });
}

Tensor Tensor::squeeze() const {
  Tensor out = *this;
  for (int64_t d = dim() - 1; d >= 0; --d)
    if (shape()[d] == 1) out = out.squeeze(d);
  return out;
}

Tensor Tensor::expand(const Shape& shape_in) const {
  Shape shape = shape_in;
  const int64_t lead = static_cast<int64_t>(shape.size()) - dim();
  if (lead < 0) throw Error(fmt::format("expand: cannot expand {} to {}", shape_str(this->shape()), shape_str(shape_in)));
  for (int64_t i = 0; i < dim(); ++i)
    if (shape[lead + i] == -1) shape[lead + i] = this->shape()[i];
  Shape st = raw::broadcast_strides(*this, shape, "expand");
  Tensor out = make_view(storage(), offset(), shape, st);
  return record("expand", out, {*this}, [from = this->shape()](const Tensor& g) { return grads{sum_to(g, from)}; });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return record("contiguous", raw::contiguous(*this), {*this}, [](const Tensor& g) { return grads{g}; });
}

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape());
  out.copy_(*this);
  return record("clone", out, {*this}, [](const Tensor& g) { return grads{g}; });
}

// ================================================================ operators

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, float b) { return add(a, Tensor::scalar(b)); }
Tensor operator-(const Tensor& a, float b) { return sub(a, Tensor::scalar(b)); }
Tensor operator*(const Tensor& a, float b) { return mul(a, Tensor::scalar(b)); }
Tensor operator/(const Tensor& a, float b) { return div(a, Tensor::scalar(b)); }
Tensor operator*(float a, const Tensor& b) { return mul(Tensor::scalar(a), b); }
Tensor operator-(float a, const Tensor& b) { return sub(Tensor::scalar(a), b); }

}  // namespace sleepnet
