// fuzz_ucddb_text.cpp: libFuzzer target for the UCDDB text parsers (data/ucddb_text.cpp): stage
// files, respiratory event tables and the subject CSV. Any input must parse or throw
// sleepnet::Error. Built and run by tests/fuzz/run_fuzz.sh.
#include <cstdint>
#include <string_view>

#include "data/ucddb_text.h"
#include "tensor/tensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sleepnet::data;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)parse_ucddb_stages(text, "fuzz_stage.txt");
  } catch (const sleepnet::Error&) {
  }
  for (double start : {0.0, 23 * 3600.0 + 30 * 60.0}) {
    try {
      (void)parse_ucddb_respevt(text, "fuzz_respevt.txt", start);
    } catch (const sleepnet::Error&) {
    }
  }
  try {
    (void)parse_ucddb_subjects(text, "fuzz.csv");
  } catch (const sleepnet::Error&) {
  }
  (void)parse_clock_seconds(text.substr(0, 16));
  return 0;
}
