// progress.h: a one-line progress bar with throughput and ETA.
//
// On a terminal it redraws one line (carriage return); when stderr is not a terminal (CI logs,
// pipes) it prints a plain line every `log_every_s` seconds instead, so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace sleepnet::screening {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, std::string unit = "samples", double log_every_s = 10.0);
  // Advances by `n` units; `status` is shown after the bar (e.g. "loss 0.1234").
  void update(int64_t n, const std::string& status = "");
  // Ends the line with the final throughput.
  void finish(const std::string& status = "");
  double rate() const;  // units per second so far

 private:
  void draw(bool final_line);
  std::string label_, unit_, status_;
  int64_t total_, done_ = 0;
  bool tty_;
  double log_every_s_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_duration(double seconds);  // "1:05:09", "4:07"

}  // namespace sleepnet::screening
