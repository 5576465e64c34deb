// reader_test_util.h: helpers for the file-format reader tests (WFDB, EDF, UCDDB text): a scratch
// directory removed at the end of the test, file writing, and an assertion that a call throws a
// sleepnet::Error whose message contains given substrings.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

#include "tensor/tensor.h"

namespace sleepnet::test {

// A fresh directory under the system temp dir, deleted (recursively) by the destructor.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "sleepnet_" + std::string(info ? info->name() : "test") + "_" +
                       std::to_string(::getpid()) + "_" + std::to_string(counter++);
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// EXPECT_ERROR_CONTAINS(statement, {"part1", "part2"}): the statement throws sleepnet::Error and
// the message holds every part.
#define EXPECT_ERROR_CONTAINS(statement, ...)                                                   \
  do {                                                                                          \
    try {                                                                                       \
      statement;                                                                                \
      ADD_FAILURE() << "expected sleepnet::Error from: " #statement;                            \
    } catch (const ::sleepnet::Error& e_) {                                                     \
      const std::string msg_ = e_.what();                                                       \
      for (const std::string& part_ : std::initializer_list<std::string> __VA_ARGS__)           \
        EXPECT_NE(msg_.find(part_), std::string::npos) << "message: " << msg_ << "\nmissing: " << part_; \
    }                                                                                           \
  } while (0)

}  // namespace sleepnet::test
