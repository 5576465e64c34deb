// tensor.h: sleepnet's one tensor type.
//
// A Tensor is a cheap handle (a shared pointer) to a TensorImpl, which is PyTorch's model cut to
// what we need:
//
//     Storage   an aligned, shared float32 buffer
//     offset    where element [0, 0, ...] sits in the storage, in elements
//     shape     sizes of each dimension, NCHW for images as in PyTorch
//     strides   step in elements from one index to the next along each dimension
//
// Views (view/reshape, permute, transpose, narrow, unsqueeze, squeeze, expand) make a new
// TensorImpl over the same Storage, so a write through a view is seen by its base. `contiguous()`
// is the one operation that copies to make the layout row-major; `clone()` always copies.
//
// The autograd fields (requires_grad, grad, grad_fn) live in the same TensorImpl, as in PyTorch.
// Operations that record the graph are declared in autograd/ops.h; the view methods below record it
// too (their definitions live in autograd/). Raw, graph-free computations are in tensor/ops.h.
//
// Copying a Tensor copies the handle: `Tensor b = a;` shares everything, including grad.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sleepnet {

using Shape = std::vector<int64_t>;

// Every error the library raises on bad use: the message names the op and the shapes involved.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string shape_str(const Shape& shape);    // "[2, 3, 4]"
int64_t shape_numel(const Shape& shape);       // product of sizes (1 for a scalar)
Shape contiguous_strides(const Shape& shape);  // row-major strides
// Wraps a possibly negative dim into [0, ndim); throws naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// An aligned (64-byte) float buffer from the caching allocator (tensor/allocator.h): its contents
// start undefined (not zero). Shared by every view of it; never resized.
class Storage {
 public:
  explicit Storage(int64_t size);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  float* data() { return data_; }
  const float* data() const { return data_; }
  int64_t size() const { return size_; }

 private:
  float* data_ = nullptr;
  int64_t size_ = 0;
};

class Tensor;
struct Node;  // autograd/engine.h

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;
  Shape shape;
  Shape strides;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf (same shape, contiguous)
  std::shared_ptr<Node> grad_fn;     // the node that produced this tensor (null for leaves)
};

// Seeded random numbers: the same seed gives the same numbers on every machine and build
// (xoshiro256** for bits, Box-Muller for normals; no std:: distributions, whose output varies
// between standard libraries).
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) { manual_seed(seed); }
  void manual_seed(uint64_t seed);
  uint64_t next_u64();
  float uniform();        // [0, 1)
  double uniform_double();  // [0, 1)
  float normal();         // mean 0, std 1
  uint64_t state_hash() const;  // for tests and checkpoints
  // Full state, so training can be resumed bit-identically.
  std::vector<uint64_t> state() const;
  void set_state(const std::vector<uint64_t>& s);

 private:
  uint64_t s_[4] = {};
  bool has_spare_ = false;
  float spare_ = 0.f;
};

// Fisher-Yates shuffle of v in place with g (the same permutation on every machine and build).
template <typename T>
void shuffle(std::vector<T>& v, Generator& g) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(g.next_u64() % i);
    std::swap(v[i - 1], v[j]);
  }
}

class Tensor {
 public:
  Tensor() = default;  // undefined tensor (no storage)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation (all contiguous, requires_grad = false) ----
  static Tensor empty(const Shape& shape);
  static Tensor zeros(const Shape& shape);
  static Tensor ones(const Shape& shape);
  static Tensor full(const Shape& shape, float value);
  static Tensor scalar(float value);  // 0-dim
  static Tensor arange(int64_t n);    // [0, 1, ..., n-1]
  static Tensor arange(float start, float end, float step = 1.f);
  static Tensor from_vector(const std::vector<float>& data, const Shape& shape);
  static Tensor from_blob(const float* data, const Shape& shape);  // copies
  static Tensor uniform(const Shape& shape, float low, float high, Generator& gen);
  static Tensor normal(const Shape& shape, float mean, float std, Generator& gen);
  // A view over existing storage (used by ops and by tests of view semantics).
  static Tensor make_view(std::shared_ptr<Storage> storage, int64_t offset, Shape shape, Shape strides);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(impl().shape); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  TensorImpl* unsafe_impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

  // ---- element access ----
  // data(): pointer to element [0, ...]; meaningful as a flat array only when is_contiguous().
  float* data();
  const float* data() const;
  float item() const;  // the value of a one-element tensor
  float at(std::initializer_list<int64_t> index) const;  // bounds-checked single element
  std::vector<float> to_vector() const;  // all elements in row-major order

  // ---- in place, never recorded by autograd ----
  Tensor& fill_(float value);
  Tensor& copy_(const Tensor& src);  // src broadcast to this shape
  Tensor& zero_() { return fill_(0.f); }

  // ---- views and copies (recorded by autograd; defined in autograd/ops.cpp) ----
  Tensor view(const Shape& shape) const;     // needs compatible strides; -1 infers one size
  Tensor reshape(const Shape& shape) const;  // view when possible, else a copy
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;
  Tensor permute(const Shape& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // narrow + squeeze
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;  // only a size-1 dim
  Tensor squeeze() const;             // every size-1 dim
  Tensor expand(const Shape& shape) const;
  Tensor contiguous() const;  // this tensor itself if already contiguous
  Tensor clone() const;

  // ---- autograd (defined in autograd/engine.cpp) ----
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool on = true);  // leaves only
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const;  // undefined until backward() reached this leaf
  void set_grad(const Tensor& g);
  void zero_grad();  // drops the gradient (like PyTorch's set_to_none)
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  Tensor detach() const;  // same storage, no history
  // Backpropagates from this tensor. `grad` defaults to 1 for a one-element tensor.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

  std::string str(int max_per_dim = 6) const;  // readable, with shape (fmt)

 private:
  TensorImpl& impl() const {
    if (!impl_) throw Error("use of an undefined tensor");
    return *impl_;
  }
  std::shared_ptr<TensorImpl> impl_;
};

// Arithmetic operators record the graph (autograd/ops.h).
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, float b);
Tensor operator-(const Tensor& a, float b);
Tensor operator*(const Tensor& a, float b);
Tensor operator/(const Tensor& a, float b);
Tensor operator*(float a, const Tensor& b);
Tensor operator-(float a, const Tensor& b);

}  // namespace sleepnet
