// safetensors_test.cpp: the safetensors reader and writer (nn/safetensors.h): exact round trips,
// the byte layout, files written by PyTorch's side (the golden fixtures), atomic writes, and a
// clear error (naming the file and the tensor) for every kind of malformed file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nn/mobilenet.h"
#include "nn/safetensors.h"

namespace sleepnet::nn {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sleepnet_st_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// A file image from a header (as JSON text) and raw data bytes.
std::string image(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::string floats(std::initializer_list<float> v) {
  return std::string(reinterpret_cast<const char*>(v.begin()), v.size() * 4);
}

void expect_error(const std::string& bytes, const std::vector<std::string>& fragments) {
  try {
    parse_safetensors(bytes, "bad.safetensors");
    ADD_FAILURE() << "no error; expected one mentioning " << fragments.front();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

TEST_F(Safetensors, RoundTripIsExact) {
  Generator gen(1);
  TensorMap m;
  m["a.weight"] = {Tensor::normal({3, 4, 2}, 0, 1, gen), DType::F32};
  m["scalar"] = {Tensor::scalar(-2.5f), DType::F32};
  m["empty"] = {Tensor::zeros({0, 3}), DType::F32};
  m["bn.num_batches_tracked"] = {Tensor::scalar(12345.f), DType::I64};
  m["counts"] = {Tensor::from_vector({0.f, -3.f, 16777216.f}, {3}), DType::I64};
  m["view"] = {Tensor::arange(12).reshape({3, 4}).transpose(0, 1), DType::F32};  // non-contiguous
  Metadata meta{{"config", "{\"kind\": \"test\"}"}, {"format", "pt"}};
  save_safetensors(path("m.safetensors"), m, meta);
  SafetensorsFile f = load_safetensors(path("m.safetensors"));
  EXPECT_EQ(f.metadata, meta);
  ASSERT_EQ(f.tensors.size(), m.size());
  for (auto& [name, r] : m) {
    const TensorRecord& got = f.tensors.at(name);
    EXPECT_EQ(got.dtype, r.dtype) << name;
    EXPECT_EQ(got.tensor.shape(), r.tensor.shape()) << name;
    EXPECT_EQ(got.tensor.to_vector(), r.tensor.to_vector()) << name;
  }
}

TEST_F(Safetensors, ByteLayoutFollowsTheFormat) {
  TensorMap m;
  m["b"] = {Tensor::from_vector({1.f, 2.f}, {2}), DType::F32};
  m["a"] = {Tensor::scalar(3.f), DType::I64};
  const std::string bytes = serialize_safetensors(m, {{"k", "v"}});
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);                                  // data aligned to 8 bytes
  ASSERT_EQ(bytes.size(), 8 + n + 8 + 8);                // I64 scalar + two floats
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["a"]["dtype"], "I64");
  EXPECT_EQ(header["a"]["shape"], nlohmann::json::array());
  EXPECT_EQ(header["a"]["data_offsets"], (nlohmann::json{0, 8}));  // sorted by name
  EXPECT_EQ(header["b"]["data_offsets"], (nlohmann::json{8, 16}));
  EXPECT_EQ(header["__metadata__"]["k"], "v");
  int64_t a = 0;
  std::memcpy(&a, bytes.data() + 8 + n, 8);
  EXPECT_EQ(a, 3);
  float b[2];
  std::memcpy(b, bytes.data() + 8 + n + 8, 8);
  EXPECT_EQ(b[0], 1.f);
  EXPECT_EQ(b[1], 2.f);
}

TEST_F(Safetensors, ReadsF64AndHeaderPadding) {
  const double d[2] = {0.1, -3.0};
  const std::string data(reinterpret_cast<const char*>(d), 16);
  SafetensorsFile f =
      parse_safetensors(image(R"({"x":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}    )", data), "mem");
  EXPECT_EQ(f.tensors.at("x").dtype, DType::F64);
  EXPECT_EQ(f.tensors.at("x").tensor.to_vector(), (std::vector<float>{0.1f, -3.f}));
  TensorMap back = f.tensors;
  EXPECT_THROW(serialize_safetensors(back), Error);  // F64 is read-only
}

TEST_F(Safetensors, TorchvisionStateDictLoadsIntoSleepnetAndBack) {
  // The golden fixture holds torchvision's state dict under "init." (written by PyTorch's side).
  const std::string fixture = SLEEPNET_SOURCE_DIR "/tests/golden/mobilenet_v2_w035_c1_64x64.safetensors";
  SafetensorsFile f = load_safetensors(fixture);
  TensorMap init = select_prefix(f.tensors, "init.");
  MobileNetV2 model({.width_mult = 0.35, .in_channels = 1, .num_outputs = 1});
  model.load_state_dict(init);
  save_safetensors(path("model.safetensors"), model.state_dict());
  SafetensorsFile back = load_safetensors(path("model.safetensors"));
  ASSERT_EQ(back.tensors.size(), init.size());
  for (auto& [name, r] : init) {
    const TensorRecord& got = back.tensors.at(name);
    EXPECT_EQ(got.dtype, r.dtype) << name;
    EXPECT_EQ(got.tensor.shape(), r.tensor.shape()) << name;
    EXPECT_EQ(got.tensor.to_vector(), r.tensor.to_vector()) << name;
  }
  // Model and optimizer state side by side in one checkpoint, split again by prefix.
  TensorMap both = model.state_dict();
  both["optim.classifier.1.weight.exp_avg"] = {Tensor::zeros({1, 1280}), DType::F32};
  save_safetensors(path("ckpt.safetensors"), both, {{"step", "3"}});
  SafetensorsFile ck = load_safetensors(path("ckpt.safetensors"));
  model.load_state_dict(drop_prefix(ck.tensors, "optim."));
  EXPECT_EQ(select_prefix(ck.tensors, "optim.").count("classifier.1.weight.exp_avg"), 1u);
  EXPECT_EQ(add_prefix(select_prefix(ck.tensors, "optim."), "optim.").size(), 1u);
}

TEST_F(Safetensors, WritesAreAtomic) {
  TensorMap m;
  m["x"] = {Tensor::ones({4}), DType::F32};
  save_safetensors(path("c.safetensors"), m);
  m["x"].tensor.fill_(2.f);
  save_safetensors(path("c.safetensors"), m);  // replaces the old file
  EXPECT_EQ(load_safetensors(path("c.safetensors")).tensors.at("x").tensor.to_vector(), std::vector<float>(4, 2.f));
  // A write that fails before the rename (bad I64 value) leaves the old file and no temporary.
  TensorMap bad = m;
  bad["n"] = {Tensor::scalar(0.5f), DType::I64};
  EXPECT_THROW(save_safetensors(path("c.safetensors"), bad), Error);
  EXPECT_EQ(load_safetensors(path("c.safetensors")).tensors.size(), 1u);
  int files = 0;
  for (auto& e : fs::directory_iterator(dir_)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  // A directory that does not exist: a clear error naming the path.
  try {
    save_safetensors(path("missing/dir/c.safetensors"), m);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing/dir/c.safetensors"), std::string::npos) << e.what();
  }
}

TEST_F(Safetensors, MissingFileIsAClearError) {
  try {
    load_safetensors(path("nope.safetensors"));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.safetensors"), std::string::npos) << e.what();
  }
}

TEST_F(Safetensors, MalformedFilesAreClearErrors) {
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  expect_error("abc", {"too short"});
  expect_error(image("{}     ").substr(0, 10), {"header length 7"});  // 7 announced, 2 present
  std::string big(8, '\0');
  const uint64_t huge = 1ull << 60;
  std::memcpy(big.data(), &huge, 8);
  expect_error(big + "{}", {"header length"});
  expect_error(image("{not json"), {"not valid JSON"});
  expect_error(image("[1, 2]"), {"not a JSON object"});
  expect_error(image(R"({"w": 3})"), {"'w'", "not a JSON object"});
  expect_error(image(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", floats({1, 2})), {"'w'", "dtype"});
  expect_error(image(R"({"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", "abcd"), {"'w'", "BF16"});
  expect_error(image(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", floats({1, 2})), {"'w'", "shape"});
  expect_error(image(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", floats({1, 2})), {"'w'", "shape"});
  expect_error(image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", floats({1, 2})), {"'w'", "data_offsets"});
  expect_error(image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", floats({1, 2})), {"'w'", "end before"});
  expect_error(image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}})", floats({1, 2})), {"'w'", "run past"});
  expect_error(image(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", floats({1, 2})), {"'w'", "12 bytes expected"});
  expect_error(image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                     floats({1, 2})),
               {"overlaps"});
  expect_error(image("{" + ok_entry + "}", floats({1, 2, 3})), {"after the last tensor"});
  expect_error(image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", floats({1, 2})), {"'w'", "unused"});
  expect_error(image("{" + ok_entry + R"(,"__metadata__":{"a":1}})", floats({1, 2})), {"__metadata__", "'a'"});
  expect_error(image("{" + ok_entry + R"(,"__metadata__":[1]})", floats({1, 2})), {"__metadata__"});
  const int64_t too_big = (1ll << 24) + 1;
  expect_error(image(R"({"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]}})",
                     std::string(reinterpret_cast<const char*>(&too_big), 8)),
               {"'n'", "2^24"});
  // A valid minimal file still parses after all that.
  EXPECT_EQ(parse_safetensors(image("{" + ok_entry + "}", floats({1, 2})), "ok").tensors.size(), 1u);
  EXPECT_EQ(parse_safetensors(image("{}"), "empty").tensors.size(), 0u);
}

TEST_F(Safetensors, EveryTruncationOfAValidFileFailsCleanly) {
  TensorMap m;
  m["a"] = {Tensor::arange(5), DType::F32};
  m["b"] = {Tensor::scalar(2.f), DType::I64};
  const std::string bytes = serialize_safetensors(m, {{"x", "y"}});
  for (size_t n = 0; n < bytes.size(); ++n) EXPECT_THROW(parse_safetensors(bytes.substr(0, n), "cut"), Error) << n;
  EXPECT_EQ(parse_safetensors(bytes, "whole").tensors.size(), 2u);
}

}  // namespace
}  // namespace sleepnet::nn
