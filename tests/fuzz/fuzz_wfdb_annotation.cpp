// fuzz_wfdb_annotation.cpp: libFuzzer target for the MIT-format annotation parser and writer
// (data/wfdb_annotation.cpp). Any input must parse or throw sleepnet::Error; what parses and can be
// written back must read back identically. Built and run by tests/fuzz/run_fuzz.sh.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "data/wfdb_annotation.h"
#include "tensor/tensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sleepnet::data;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::vector<WfdbAnnotation> a;
  try {
    a = parse_wfdb_annotations(bytes, "fuzz.atr");
  } catch (const sleepnet::Error&) {
    return 0;
  }
  for (const auto& x : a) {
    (void)annotation_mnemonic(x.code);
    (void)is_beat_annotation(x.code);
  }
  std::string enc;
  try {
    enc = encode_wfdb_annotations(a);
  } catch (const sleepnet::Error&) {
    return 0;  // e.g. unsorted times after a negative SKIP, or aux longer than 255 bytes
  }
  if (parse_wfdb_annotations(enc, "fuzz-roundtrip.atr") != a) std::abort();
  return 0;
}
