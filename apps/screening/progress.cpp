// progress.cpp: see progress.h.
#include "apps/screening/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace sleepnet::screening {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02d}:{:02d}", t / 3600, (t / 60) % 60, t % 60);
  return fmt::format("{}:{:02d}", t / 60, t % 60);
}

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit, double log_every_s)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(isatty(fileno(stderr)) != 0),
      log_every_s_(log_every_s), start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

double ProgressBar::rate() const {
  double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return el > 0 ? done_ / el : 0.0;
}

void ProgressBar::update(int64_t n, const std::string& status) {
  done_ += n;
  status_ = status;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if ((tty_ && since > 0.2) || (!tty_ && since > log_every_s_)) draw(false);
}

void ProgressBar::finish(const std::string& status) {
  if (!status.empty()) status_ = status;
  draw(true);
}

void ProgressBar::draw(bool final_line) {
  last_draw_ = std::chrono::steady_clock::now();
  const double el = std::chrono::duration<double>(last_draw_ - start_).count();
  const double r = rate();
  const double frac = total_ > 0 ? std::min(1.0, static_cast<double>(done_) / total_) : 0.0;
  const double eta = r > 0 ? (total_ - done_) / r : NAN;
  std::string line;
  if (tty_) {
    const int width = 24;
    const int fill = static_cast<int>(frac * width);
    line = fmt::format("\r{} [{}{}] {:3.0f}% {:.0f} {}/s {} ETA {} {}", label_, std::string(fill, '#'),
                       std::string(width - fill, '.'), 100 * frac, r, unit_, format_duration(el),
                       final_line ? "0:00" : format_duration(eta), status_);
    line += "\033[K";
    if (final_line) line += "\n";
  } else {
    line = fmt::format("{} {}/{} {} ({:.0f}%), {:.0f} {}/s, elapsed {}, ETA {} {}\n", label_, done_, total_, unit_,
                       100 * frac, r, unit_, format_duration(el), final_line ? "0:00" : format_duration(eta), status_);
  }
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace sleepnet::screening
