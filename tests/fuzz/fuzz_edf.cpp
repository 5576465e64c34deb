// fuzz_edf.cpp: libFuzzer target for the EDF/EDF+ reader (data/edf.cpp): header parsing, reading
// every signal and the EDF+ annotations from a file held in memory. Any input must be read or throw
// sleepnet::Error. Built and run by tests/fuzz/run_fuzz.sh.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "data/edf.h"
#include "tensor/tensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sleepnet::data;
  try {
    EdfReader r = EdfReader::from_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz.edf");
    const EdfHeader& h = r.header();
    for (int s = 0; s < h.num_signals(); ++s) {
      (void)h.sampling_rate(s);
      std::vector<float> x = r.read_physical(s);
      if (x.size() != static_cast<size_t>(h.num_records * h.signals[static_cast<size_t>(s)].samples_per_record))
        std::abort();
      if (h.num_records > 1) (void)r.read_digital(s, 1, 1);
    }
    (void)r.read_annotations();
    (void)h.find_signal("ECG");
  } catch (const sleepnet::Error&) {
  }
  return 0;
}
