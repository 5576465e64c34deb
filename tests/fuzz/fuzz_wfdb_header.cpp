// fuzz_wfdb_header.cpp: libFuzzer target for the WFDB header parser (data/wfdb_header.cpp).
// Any input must either parse or throw sleepnet::Error; anything else (another exception, a crash,
// a sanitizer report, a hang) is a bug. A header that parses must survive a write/parse round trip.
// Built and run by tests/fuzz/run_fuzz.sh (clang, -fsanitize=fuzzer,address,undefined).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "data/wfdb_header.h"
#include "tensor/tensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sleepnet::data;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  WfdbHeader h;
  try {
    h = parse_wfdb_header(text, "fuzz.hea");
  } catch (const sleepnet::Error&) {
    return 0;
  }
  (void)h.base_time_seconds();
  (void)h.find_signal("ECG");
  std::string again;
  try {
    again = format_wfdb_header(h);
  } catch (const sleepnet::Error&) {
    return 0;  // some parsed headers cannot be written back (e.g. a name with a space) - that's fine
  }
  // What the writer produced must parse to the same model.
  WfdbHeader back = parse_wfdb_header(again, "fuzz-roundtrip.hea");
  if (back.num_signals != h.num_signals || back.signals.size() != h.signals.size() ||
      back.num_samples != h.num_samples || back.sampling_frequency != h.sampling_frequency ||
      back.comments != h.comments)
    std::abort();
  for (size_t i = 0; i < h.signals.size(); ++i)
    if (back.signals[i].description != h.signals[i].description || back.signals[i].gain != h.signals[i].gain ||
        back.signals[i].baseline != h.signals[i].baseline || back.signals[i].checksum != h.signals[i].checksum)
      std::abort();
  return 0;
}
