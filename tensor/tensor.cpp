// tensor.cpp: Storage, Generator, creation, element access and printing of Tensor.
// Views and everything that autograd records are in autograd/ops.cpp.
#include "tensor/tensor.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "tensor/allocator.h"
#include "tensor/ops.h"

namespace sleepnet {

// ---------------------------------------------------------------- shapes

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t acc = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return st;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim)
    throw Error(fmt::format("{}: dim {} out of range for a tensor with {} dims", op, dim, ndim));
  return d;
}

static void check_shape(const Shape& shape, const char* op) {
  constexpr int64_t kMaxElements = int64_t(1) << 40;
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0) throw Error(fmt::format("{}: negative size in shape {}", op, shape_str(shape)));
    if (s > 0 && n > kMaxElements / s)
      throw Error(fmt::format("{}: shape {} is too large", op, shape_str(shape)));
    n *= s;
  }
}

// ---------------------------------------------------------------- storage

// Memory comes from the caching allocator (tensor/allocator.h): 64-byte aligned, NOT zeroed.
Storage::Storage(int64_t size) : size_(size) {
  if (size < 0) throw Error("Storage: negative size");
  data_ = static_cast<float*>(storage_allocator().allocate(static_cast<size_t>(size) * sizeof(float)));
}

Storage::~Storage() { storage_allocator().deallocate(data_, static_cast<size_t>(size_) * sizeof(float)); }

// ---------------------------------------------------------------- generator

static uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void Generator::manual_seed(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(x);
  has_spare_ = false;
}

uint64_t Generator::next_u64() {  // xoshiro256**
  auto rotl = [](uint64_t v, int k) { return (v << k) | (v >> (64 - k)); };
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

float Generator::uniform() { return static_cast<float>(next_u64() >> 40) * (1.0f / 16777216.0f); }

double Generator::uniform_double() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

float Generator::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = uniform_double(), u2 = uniform_double();
  if (u1 < 1e-300) u1 = 1e-300;
  double r = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * M_PI * u2;
  spare_ = static_cast<float>(r * std::sin(th));
  has_spare_ = true;
  return static_cast<float>(r * std::cos(th));
}

uint64_t Generator::state_hash() const { return s_[0] ^ (s_[1] * 3) ^ (s_[2] * 5) ^ (s_[3] * 7); }

std::vector<uint64_t> Generator::state() const {
  uint32_t spare_bits;
  std::memcpy(&spare_bits, &spare_, 4);
  return {s_[0], s_[1], s_[2], s_[3], has_spare_ ? 1u : 0u, spare_bits};
}

void Generator::set_state(const std::vector<uint64_t>& s) {
  if (s.size() != 6) throw Error("Generator::set_state: expected 6 words");
  for (int i = 0; i < 4; ++i) s_[i] = s[i];
  has_spare_ = s[4] != 0;
  uint32_t spare_bits = static_cast<uint32_t>(s[5]);
  std::memcpy(&spare_, &spare_bits, 4);
}

// ---------------------------------------------------------------- creation

Tensor Tensor::make_view(std::shared_ptr<Storage> storage, int64_t offset, Shape shape, Shape strides) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->offset = offset;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  return Tensor(std::move(impl));
}

Tensor Tensor::empty(const Shape& shape) {
  check_shape(shape, "empty");
  return make_view(std::make_shared<Storage>(shape_numel(shape)), 0, shape, contiguous_strides(shape));
}

Tensor Tensor::zeros(const Shape& shape) { return full(shape, 0.f); }
Tensor Tensor::ones(const Shape& shape) { return full(shape, 1.f); }

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  float* p = t.data();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = value;
  return t;
}

Tensor Tensor::scalar(float value) { return full({}, value); }

Tensor Tensor::arange(int64_t n) { return arange(0.f, static_cast<float>(n), 1.f); }

Tensor Tensor::arange(float start, float end, float step) {
  if (step == 0.f || !std::isfinite(start) || !std::isfinite(end) || !std::isfinite(step))
    throw Error(fmt::format("arange: invalid range start={} end={} step={}", start, end, step));
  int64_t n = static_cast<int64_t>(std::ceil((static_cast<double>(end) - start) / step));
  Tensor t = empty({std::max<int64_t>(n, 0)});
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(start + static_cast<double>(i) * step);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& data, const Shape& shape) {
  check_shape(shape, "from_vector");
  if (static_cast<int64_t>(data.size()) != shape_numel(shape))
    throw Error(fmt::format("from_vector: {} values do not fill shape {} ({} elements)", data.size(),
                            shape_str(shape), shape_numel(shape)));
  return from_blob(data.data(), shape);
}

Tensor Tensor::from_blob(const float* data, const Shape& shape) {
  Tensor t = empty(shape);
  if (t.numel()) std::memcpy(t.data(), data, sizeof(float) * t.numel());
  return t;
}

Tensor Tensor::uniform(const Shape& shape, float low, float high, Generator& gen) {
  Tensor t = empty(shape);
  float* p = t.data();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = low + (high - low) * gen.uniform();
  return t;
}

Tensor Tensor::normal(const Shape& shape, float mean, float std, Generator& gen) {
  Tensor t = empty(shape);
  float* p = t.data();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = mean + std * gen.normal();
  return t;
}

// ---------------------------------------------------------------- metadata and access

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }

bool Tensor::is_contiguous() const {
  const auto& sh = shape();
  const auto& st = strides();
  int64_t expected = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (sh[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

float* Tensor::data() { return impl().storage->data() + impl().offset; }
const float* Tensor::data() const { return impl().storage->data() + impl().offset; }

float Tensor::item() const {
  if (numel() != 1)
    throw Error(fmt::format("item: tensor of shape {} has {} elements, expected 1", shape_str(shape()), numel()));
  return data()[0];
}

float Tensor::at(std::initializer_list<int64_t> index) const {
  if (static_cast<int64_t>(index.size()) != dim())
    throw Error(fmt::format("at: {} indices for a tensor of shape {}", index.size(), shape_str(shape())));
  int64_t off = 0, d = 0;
  for (int64_t i : index) {
    if (i < 0 || i >= shape()[d])
      throw Error(fmt::format("at: index {} out of range for dim {} of shape {}", i, d, shape_str(shape())));
    off += i * strides()[d++];
  }
  return data()[off];
}

std::vector<float> Tensor::to_vector() const {
  Tensor c = raw::contiguous(*this);
  return std::vector<float>(c.data(), c.data() + c.numel());
}

Tensor& Tensor::fill_(float value) {
  raw::fill(*this, value);
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  raw::copy(*this, src);
  return *this;
}

// ---------------------------------------------------------------- printing

static void print_rec(std::string& out, const Tensor& t, int64_t d, int64_t off, int max_per_dim, int indent) {
  const auto& sh = t.shape();
  const auto& st = t.strides();
  if (d == t.dim()) {
    out += fmt::format("{:.4g}", t.data()[off]);
    return;
  }
  out += "[";
  int64_t n = sh[d];
  for (int64_t i = 0; i < n; ++i) {
    if (n > max_per_dim && i == max_per_dim / 2) {
      out += "...";
      i = n - max_per_dim / 2 - 1;
      out += d + 1 == t.dim() ? ", " : ",\n" + std::string(indent + 1, ' ');
      continue;
    }
    print_rec(out, t, d + 1, off + i * st[d], max_per_dim, indent + 1);
    if (i + 1 < n) out += d + 1 == t.dim() ? ", " : ",\n" + std::string(indent + 1, ' ');
  }
  out += "]";
}

std::string Tensor::str(int max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::string out = "tensor(";
  print_rec(out, *this, 0, 0, std::max(max_per_dim, 2), 7);
  out += fmt::format(", shape={}", shape_str(shape()));
  if (requires_grad()) out += ", requires_grad=true";
  return out + ")";
}

}  // namespace sleepnet
