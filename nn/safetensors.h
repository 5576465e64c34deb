// nn/safetensors.h: checkpoints in the safetensors format (the format of Hugging Face's
// `safetensors` library, which PyTorch users can read and write with `safetensors.torch`).
//
// A file is
//     8 bytes       N, the header length, unsigned little-endian
//     N bytes       a JSON object (UTF-8, may be padded with trailing spaces):
//                     { "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//                       ...,
//                       "__metadata__": {"<key>": "<string value>", ...} }      (optional)
//     the rest      raw little-endian tensor data; each tensor's bytes are [begin, end) counted
//                   from the first byte after the header, row-major (C order)
//
// sleepnet tensors are float32. Integer tensors (PyTorch's BatchNorm2d.num_batches_tracked is an
// int64) are held in a float tensor and tagged DType::I64: they are written as int64 and read back
// exactly (values must be whole numbers of magnitude <= 2^24, which float32 holds exactly).
// F64 tensors are read (rounded to float32) but never written.
//
// Model checkpoints use PyTorch's / torchvision's names (`features.1.conv.0.0.weight`,
// `features.1.conv.0.1.running_mean`, ...), so `torch.save`-free interchange works both ways:
//     python:  safetensors.torch.save_file(model.state_dict(), "m.safetensors")
//     C++:     model.load_state_dict(load_safetensors("m.safetensors").tensors);
// Other state (optimizer moments, ...) goes in the same file under its own prefix, e.g.
// `optim.<param name>.exp_avg`; select_prefix / drop_prefix split a loaded map again.
//
// Writes are atomic: the file is written to a temporary name in the same directory, flushed to
// disk (fsync), then renamed over the target, so a crash never leaves a half-written checkpoint.
// Reading validates everything (header length, JSON, dtypes, shapes, offsets inside the file, no
// overlaps or gaps) and throws sleepnet::Error naming the file and the tensor.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "tensor/tensor.h"

namespace sleepnet::nn {

// How a tensor is stored on disk (in memory it is always float32).
enum class DType { F32, I64, F64 };
const char* dtype_name(DType d);  // "F32", "I64", "F64"

struct TensorRecord {
  Tensor tensor;            // float32, any layout (written row-major)
  DType dtype = DType::F32;
};

// Name -> tensor, sorted by name (the order safetensors files are written in).
using TensorMap = std::map<std::string, TensorRecord>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  TensorMap tensors;
  Metadata metadata;  // the "__metadata__" object (empty when absent)
};

// Writes `tensors` and `metadata` to `path` atomically. F64 records are refused.
void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});
// Reads a whole file. Every tensor comes back as a new contiguous float32 tensor.
SafetensorsFile load_safetensors(const std::string& path);
// The same from bytes in memory; `source` names them in error messages (tests, fuzzing).
SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& source);
// The file image save_safetensors writes (header + data).
std::string serialize_safetensors(const TensorMap& tensors, const Metadata& metadata = {});

// Entries whose name starts with `prefix`, with the prefix removed ("init.", "optim.", ...).
TensorMap select_prefix(const TensorMap& m, std::string_view prefix);
// Entries whose name does not start with `prefix`, names unchanged.
TensorMap drop_prefix(const TensorMap& m, std::string_view prefix);
// Every entry with `prefix` put in front of its name.
TensorMap add_prefix(const TensorMap& m, std::string_view prefix);

}  // namespace sleepnet::nn
