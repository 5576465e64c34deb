// svg.cpp: the SVG writer, nice tick ranges, and the axes/legend drawing shared by every plot.
#include "apps/screening/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>

namespace sleepnet::screening::svg {

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v) {
  std::string s = fmt::format("{:.2f}", v);
  if (s == "-0.00") s = "0.00";
  return s;
}

// ---- Nice ranges --------------------------------------------------------------------------------

std::vector<double> NiceRange::ticks() const {
  std::vector<double> t;
  if (!(step > 0) || !std::isfinite(lo) || !std::isfinite(hi)) return t;
  const int n = static_cast<int>(std::llround((hi - lo) / step));
  for (int i = 0; i <= n && i <= 1000; ++i) {
    double v = lo + i * step;
    if (std::abs(v) < step * 1e-9) v = 0.0;  // no "-0" or 1e-17 from rounding
    t.push_back(v);
  }
  return t;
}

// The step is 1, 2 or 5 times a power of ten, the smallest such that about `target` steps cover the
// range; the ends are then rounded outwards to multiples of the step.
NiceRange nice_range(double lo, double hi, int target, double min_step) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) {
    lo = 0.0;
    hi = 1.0;
  }
  if (lo > hi) std::swap(lo, hi);
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) {  // constant: a window of +-50 % around it
    const double pad = lo != 0.0 ? std::abs(lo) * 0.5 : 1.0;
    lo -= pad;
    hi += pad;
  }
  target = std::max(target, 1);
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  double step = (norm <= 1.0 ? 1.0 : norm <= 2.0 ? 2.0 : norm <= 5.0 ? 5.0 : 10.0) * mag;
  step = std::max(step, min_step);
  NiceRange r;
  r.step = step;
  r.lo = std::floor(lo / step + 1e-9) * step;
  r.hi = std::ceil(hi / step - 1e-9) * step;
  if (r.hi <= r.lo) r.hi = r.lo + step;
  return r;
}

// A 1-2-5 step of 10^k needs max(0, -k) decimals.
std::string tick_label(double v, double step) {
  int decimals = 0;
  if (step > 0 && std::isfinite(step)) {
    decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
  }
  if (std::abs(v) < std::abs(step) * 1e-9) v = 0.0;  // no "-0.0"
  return fmt::format("{:.{}f}", v, std::min(decimals, 12));
}

// ---- Document -----------------------------------------------------------------------------------

Document::Document(double width, double height) : width_(width), height_(height) {}

bool Document::finite_or_drop(std::initializer_list<double> values) {
  for (double v : values) {
    if (!std::isfinite(v)) {
      ++dropped_;
      return false;
    }
  }
  return true;
}

void Document::rect(double x, double y, double w, double h, std::string_view attrs) {
  if (!finite_or_drop({x, y, w, h})) return;
  body_ += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" {}/>\n", num(x), num(y),
                       num(std::max(w, 0.0)), num(std::max(h, 0.0)), attrs);
}

void Document::line(double x1, double y1, double x2, double y2, std::string_view attrs) {
  if (!finite_or_drop({x1, y1, x2, y2})) return;
  body_ += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {}/>\n", num(x1), num(y1),
                       num(x2), num(y2), attrs);
}

void Document::polyline(const std::vector<std::pair<double, double>>& points,
                        std::string_view attrs) {
  std::string pts;
  int kept = 0;
  for (const auto& [x, y] : points) {
    if (!finite_or_drop({x, y})) continue;
    if (kept++) pts += ' ';
    pts += num(x) + "," + num(y);
  }
  if (kept == 0) return;
  body_ += fmt::format("<polyline points=\"{}\" {}/>\n", pts, attrs);
}

void Document::circle(double cx, double cy, double r, std::string_view attrs,
                      std::string_view tooltip) {
  if (!finite_or_drop({cx, cy, r})) return;
  if (tooltip.empty()) {
    body_ += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"{}\" {}/>\n", num(cx), num(cy), num(r),
                         attrs);
  } else {
    body_ += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"{}\" {}><title>{}</title></circle>\n",
                         num(cx), num(cy), num(r), attrs, escape(tooltip));
  }
}

void Document::text(double x, double y, std::string_view content, std::string_view attrs) {
  if (!finite_or_drop({x, y})) return;
  body_ += fmt::format("<text x=\"{}\" y=\"{}\" {}>{}</text>\n", num(x), num(y), attrs,
                       escape(content));
}

void Document::vertical_text(double x, double y, std::string_view content, std::string_view attrs) {
  if (!finite_or_drop({x, y})) return;
  body_ += fmt::format("<text x=\"{0}\" y=\"{1}\" transform=\"rotate(-90 {0} {1})\" {2}>{3}</text>\n",
                       num(x), num(y), attrs, escape(content));
}

std::string Document::str() const {
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"{2}\" font-size=\"13\">\n{3}</svg>\n",
      num(width_), num(height_), kFontFamily, body_);
}

// ---- Axes and legend ----------------------------------------------------------------------------

Axes draw_axes(Document& doc, const AxesSpec& spec) {
  Axes ax;
  ax.left = spec.margin_left;
  ax.top = spec.margin_top;
  ax.width = doc.width() - spec.margin_left - spec.margin_right;
  ax.height = doc.height() - spec.margin_top - spec.margin_bottom;
  ax.x0 = spec.x.lo;
  ax.x1 = spec.x.hi;
  ax.y0 = spec.y.lo;
  ax.y1 = spec.y.hi;

  doc.rect(0, 0, doc.width(), doc.height(), "fill=\"#ffffff\"");
  doc.text(doc.width() / 2, 26, spec.title,
           "font-size=\"17\" font-weight=\"bold\" text-anchor=\"middle\" fill=\"#222\"");
  if (!spec.subtitle.empty()) {
    doc.text(doc.width() / 2, 46, spec.subtitle,
             "font-size=\"13\" text-anchor=\"middle\" fill=\"#555\"");
  }
  doc.rect(ax.left, ax.top, ax.width, ax.height, "fill=\"#fbfbfb\"");

  const std::vector<double> xt = spec.x.ticks(), yt = spec.y.ticks();
  for (double v : xt) {
    const double x = ax.px(v);
    if (spec.grid) doc.line(x, ax.top, x, ax.bottom(), "stroke=\"#e3e3e3\" stroke-width=\"1\"");
    doc.line(x, ax.bottom(), x, ax.bottom() + 5, "stroke=\"#444\" stroke-width=\"1\"");
    doc.text(x, ax.bottom() + 19, tick_label(v, spec.x.step),
             "font-size=\"12\" text-anchor=\"middle\" fill=\"#333\"");
  }
  for (double v : yt) {
    const double y = ax.py(v);
    if (spec.grid) doc.line(ax.left, y, ax.right(), y, "stroke=\"#e3e3e3\" stroke-width=\"1\"");
    doc.line(ax.left - 5, y, ax.left, y, "stroke=\"#444\" stroke-width=\"1\"");
    doc.text(ax.left - 8, y + 4, tick_label(v, spec.y.step),
             "font-size=\"12\" text-anchor=\"end\" fill=\"#333\"");
  }
  doc.rect(ax.left, ax.top, ax.width, ax.height, "fill=\"none\" stroke=\"#444\" stroke-width=\"1\"");
  doc.text(ax.left + ax.width / 2, doc.height() - 14, spec.x_label,
           "font-size=\"14\" text-anchor=\"middle\" fill=\"#222\"");
  doc.vertical_text(18, ax.top + ax.height / 2, spec.y_label,
                    "font-size=\"14\" text-anchor=\"middle\" dominant-baseline=\"middle\" fill=\"#222\"");
  return ax;
}

void draw_legend(Document& doc, const Axes& ax, const std::vector<LegendEntry>& entries,
                 const std::vector<std::pair<double, double>>& avoid,
                 const std::vector<Corner>& corners) {
  if (entries.empty()) return;
  const double row = 20, pad = 8, sample = 26, font = 12.5, inset = 10;
  size_t longest = 0;
  for (const auto& e : entries) longest = std::max(longest, e.label.size());
  // no font metrics here: ~0.6 em per character is a safe upper estimate for DejaVu Sans
  const double w = pad * 3 + sample + 0.6 * font * static_cast<double>(longest);
  const double h = pad * 2 + row * static_cast<double>(entries.size()) - 4;

  double x = ax.right() - w - inset, y = ax.top + inset;
  size_t best = SIZE_MAX;
  for (Corner c : corners) {
    const bool right = c == Corner::top_right || c == Corner::bottom_right;
    const bool bottom = c == Corner::bottom_left || c == Corner::bottom_right;
    const double cx = right ? ax.right() - w - inset : ax.left + inset;
    const double cy = bottom ? ax.bottom() - h - inset : ax.top + inset;
    size_t covered = 0;
    for (const auto& [px, py] : avoid) {
      covered += (px >= cx - 4 && px <= cx + w + 4 && py >= cy - 4 && py <= cy + h + 4) ? 1 : 0;
    }
    if (covered < best) {  // strictly fewer: earlier corners win ties
      best = covered;
      x = cx;
      y = cy;
    }
  }
  doc.rect(x, y, w, h, "fill=\"#ffffff\" fill-opacity=\"0.92\" stroke=\"#bbb\" rx=\"4\"");
  for (size_t i = 0; i < entries.size(); ++i) {
    const LegendEntry& e = entries[i];
    const double cy = y + pad + row * static_cast<double>(i) + row / 2 - 2;
    if (e.ring) {
      doc.circle(x + pad + sample / 2, cy, 4.5,
                 fmt::format("fill=\"#ffffff\" stroke=\"{}\" stroke-width=\"2.2\"", e.color));
    } else if (e.dot) {
      doc.circle(x + pad + sample / 2, cy, 4.5,
                 fmt::format("fill=\"{}\" fill-opacity=\"0.8\" stroke=\"#fff\"", e.color));
    } else {
      doc.line(x + pad, cy, x + pad + sample, cy,
               fmt::format("stroke=\"{}\" stroke-width=\"2.5\"{}", e.color,
                           e.dashed ? " stroke-dasharray=\"6 4\"" : ""));
    }
    doc.text(x + pad * 2 + sample, cy + 4.5, e.label,
             fmt::format("font-size=\"{}\" fill=\"#222\"", font));
  }
}

std::vector<std::pair<double, double>> densify(const std::vector<std::pair<double, double>>& line,
                                               double spacing) {
  std::vector<std::pair<double, double>> out;
  for (size_t i = 0; i < line.size(); ++i) {
    out.push_back(line[i]);
    if (i + 1 == line.size()) break;
    const double dx = line[i + 1].first - line[i].first, dy = line[i + 1].second - line[i].second;
    const double len = std::hypot(dx, dy);
    if (!std::isfinite(len)) continue;
    const int steps = std::min(10000, static_cast<int>(len / spacing));
    for (int k = 1; k < steps; ++k) {
      const double f = static_cast<double>(k) / steps;
      out.emplace_back(line[i].first + f * dx, line[i].second + f * dy);
    }
  }
  return out;
}

}  // namespace sleepnet::screening::svg
