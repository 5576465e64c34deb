// nn/safetensors.cpp: safetensors reading (validated) and writing (atomic). See safetensors.h.
#include "nn/safetensors.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

namespace sleepnet::nn {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

using json = nlohmann::json;

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::I64: return "I64";
    case DType::F64: return "F64";
  }
  return "?";
}

static int64_t dtype_size(DType d) { return d == DType::F32 ? 4 : 8; }

// Integers up to 2^24 are exactly representable in float32.
constexpr double kMaxExactInt = 16777216.0;

// ---------------------------------------------------------------- reading

SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& source) {
  auto fail = [&](const std::string& what) { return Error(fmt::format("safetensors '{}': {}", source, what)); };
  if (bytes.size() < 8) throw fail(fmt::format("file has {} bytes, too short for the 8-byte header length", bytes.size()));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8)
    throw fail(fmt::format("header length {} is larger than the {} bytes that follow it", n, bytes.size() - 8));
  const std::string_view header_text = bytes.substr(8, n);
  const std::string_view data = bytes.substr(8 + n);

  json header;
  try {
    header = json::parse(header_text);
  } catch (const json::exception& e) {
    throw fail(fmt::format("header is not valid JSON ({})", e.what()));
  }
  if (!header.is_object()) throw fail("header is not a JSON object");

  SafetensorsFile out;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not a JSON object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw fail(fmt::format("__metadata__ value '{}' is not a string", m.key()));
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) { return fail(fmt::format("tensor '{}': {}", name, what)); };
    if (!v.is_object()) throw bad("entry is not a JSON object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) throw bad("missing string field 'dtype'");
    const std::string dt = v["dtype"].get<std::string>();
    DType dtype;
    if (dt == "F32")
      dtype = DType::F32;
    else if (dt == "I64")
      dtype = DType::I64;
    else if (dt == "F64")
      dtype = DType::F64;
    else
      throw bad(fmt::format("dtype '{}' is not supported (F32, I64, F64 are)", dt));

    if (!v.contains("shape") || !v["shape"].is_array()) throw bad("missing array field 'shape'");
    Shape shape;
    uint64_t numel = 1;
    for (const json& d : v["shape"]) {
      if (!d.is_number_unsigned()) throw bad(fmt::format("shape {} has an entry that is not a non-negative integer", d.dump()));
      const uint64_t s = d.get<uint64_t>();
      if (s > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || (s != 0 && numel > (uint64_t{1} << 40) / s))
        throw bad(fmt::format("shape {} is too large", v["shape"].dump()));
      numel *= s;
      shape.push_back(static_cast<int64_t>(s));
    }
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2 ||
        !v["data_offsets"][0].is_number_unsigned() || !v["data_offsets"][1].is_number_unsigned())
      throw bad("'data_offsets' must be an array of two non-negative integers");
    const uint64_t begin = v["data_offsets"][0].get<uint64_t>(), end = v["data_offsets"][1].get<uint64_t>();
    if (end < begin) throw bad(fmt::format("data_offsets [{}, {}] end before they begin", begin, end));
    if (end > data.size())
      throw bad(fmt::format("data_offsets [{}, {}] run past the {} data bytes of the file", begin, end, data.size()));
    const uint64_t want = numel * static_cast<uint64_t>(dtype_size(dtype));
    if (end - begin != want)
      throw bad(fmt::format("{} bytes of data for shape {} of {} ({} bytes expected)", end - begin, shape_str(shape),
                            dt, want));
    spans.push_back({begin, end, name});

    Tensor t = Tensor::empty(shape);
    float* p = t.data();
    const char* src = data.data() + begin;
    if (dtype == DType::F32) {
      if (numel) std::memcpy(p, src, numel * 4);
    } else if (dtype == DType::F64) {
      for (uint64_t i = 0; i < numel; ++i) {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        p[i] = static_cast<float>(d);
      }
    } else {
      for (uint64_t i = 0; i < numel; ++i) {
        int64_t k;
        std::memcpy(&k, src + 8 * i, 8);
        if (std::fabs(static_cast<double>(k)) > kMaxExactInt)
          throw bad(fmt::format("I64 value {} at element {} is beyond 2^24, which sleepnet holds exactly", k, i));
        p[i] = static_cast<float>(k);
      }
    }
    out.tensors[name] = {t, dtype};
  }
  // The data section must be covered exactly: no overlapping tensors, no holes, nothing after.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  uint64_t at = 0;
  for (const Span& s : spans) {
    if (s.begin < at) throw fail(fmt::format("tensor '{}' overlaps the data of another tensor", s.name));
    if (s.begin > at) throw fail(fmt::format("{} unused data bytes before tensor '{}'", s.begin - at, s.name));
    at = s.end;
  }
  if (at != data.size()) throw fail(fmt::format("{} data bytes after the last tensor belong to none", data.size() - at));
  return out;
}

SafetensorsFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("safetensors '{}': cannot open ({})", path, std::strerror(errno)));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw Error(fmt::format("safetensors '{}': cannot determine the file size", path));
  in.seekg(0, std::ios::beg);
  std::string bytes(static_cast<size_t>(size), '\0');
  if (size > 0 && !in.read(bytes.data(), size))
    throw Error(fmt::format("safetensors '{}': read error", path));
  return parse_safetensors(bytes, path);
}

// ---------------------------------------------------------------- writing

std::string serialize_safetensors(const TensorMap& tensors, const Metadata& metadata) {
  json header = json::object();
  uint64_t off = 0;
  for (const auto& [name, r] : tensors) {
    if (name == "__metadata__") throw Error("save_safetensors: '__metadata__' cannot be a tensor name");
    if (!r.tensor.defined()) throw Error(fmt::format("save_safetensors: tensor '{}' is undefined", name));
    if (r.dtype == DType::F64) throw Error(fmt::format("save_safetensors: tensor '{}': F64 is read-only", name));
    const uint64_t bytes = static_cast<uint64_t>(r.tensor.numel()) * dtype_size(r.dtype);
    header[name] = {{"dtype", dtype_name(r.dtype)}, {"shape", r.tensor.shape()}, {"data_offsets", {off, off + bytes}}};
    off += bytes;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // align the data to 8 bytes, as the reference writer does

  std::string out;
  out.reserve(8 + h.size() + off);
  const uint64_t n = h.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  out += h;
  for (const auto& [name, r] : tensors) {
    const std::vector<float> v = r.tensor.to_vector();
    if (r.dtype == DType::F32) {
      out.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
    } else {
      for (size_t i = 0; i < v.size(); ++i) {
        if (!(std::fabs(v[i]) <= kMaxExactInt) || v[i] != std::trunc(v[i]))
          throw Error(fmt::format("save_safetensors: I64 tensor '{}' holds {} at element {}, not a whole number", name,
                                  v[i], i));
        const int64_t k = static_cast<int64_t>(v[i]);
        out.append(reinterpret_cast<const char*>(&k), 8);
      }
    }
  }
  return out;
}

static std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  const std::string bytes = serialize_safetensors(tensors, metadata);
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = fmt::format("{}.tmp.{}.{}", path, static_cast<long>(::getpid()), counter++);
  auto fail = [&](const char* what) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Error(fmt::format("save_safetensors '{}': {} ({})", path, what, std::strerror(err)));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("save_safetensors '{}': cannot create '{}' ({})", path, tmp, std::strerror(errno)));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      throw fail("write failed");
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    throw fail("fsync failed");
  }
  if (::close(fd) != 0) throw fail("close failed");
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw fail("rename failed");
  // Make the rename itself durable (best effort: some filesystems refuse to fsync a directory).
  const int dfd = ::open(parent_dir(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// ---------------------------------------------------------------- name prefixes

TensorMap select_prefix(const TensorMap& m, std::string_view prefix) {
  TensorMap out;
  for (const auto& [name, r] : m)
    if (name.size() > prefix.size() && std::string_view(name).substr(0, prefix.size()) == prefix)
      out[name.substr(prefix.size())] = r;
  return out;
}

TensorMap drop_prefix(const TensorMap& m, std::string_view prefix) {
  TensorMap out;
  for (const auto& [name, r] : m)
    if (std::string_view(name).substr(0, prefix.size()) != prefix) out[name] = r;
  return out;
}

TensorMap add_prefix(const TensorMap& m, std::string_view prefix) {
  TensorMap out;
  for (const auto& [name, r] : m) out[std::string(prefix) + name] = r;
  return out;
}

}  // namespace sleepnet::nn
