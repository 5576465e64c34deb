// svg.h: a small hand-written SVG writer and the parts every 2-D plot needs (no plotting library).
//
//   svg::Document doc(640, 440);                 // width, height in px (also the viewBox)
//   svg::Axes ax = svg::draw_axes(doc, spec);    // frame, grid, ticks, tick labels, axis labels, title
//   doc.polyline({{ax.px(x0), ax.py(y0)}, ...}, "stroke=\"#0072B2\" fill=\"none\"");
//   std::string text = doc.str();                // a complete, standalone .svg file
//
// Coordinates are pixels with y pointing down, as in SVG; `Axes::px/py` map data to pixels.
// Attributes are passed as a ready string (`fill="#fff" stroke="#333"`): this is internal plumbing
// for plots.cpp, not a general API. Text content is always XML-escaped. An element with a
// non-finite coordinate is dropped (and counted), so NaN metrics can never produce broken SVG.
// Documents use no ids, so several can be embedded inline in one HTML page without clashes.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sleepnet::screening::svg {

// The font stack every plot uses (DejaVu Sans ships with Debian; the rest are fallbacks).
inline constexpr const char* kFontFamily = "DejaVu Sans, Helvetica, Arial, sans-serif";

// The Okabe-Ito colour-blind-safe palette, in the order series use it.
inline constexpr const char* kPalette[] = {"#0072B2", "#E69F00", "#009E73", "#D55E00",
                                           "#CC79A7", "#56B4E9", "#F0E442", "#000000"};
inline constexpr int kPaletteSize = 8;

// XML-escapes & < > " ' for text content and attribute values.
std::string escape(std::string_view text);

// Formats a coordinate with 2 decimals ("12.35"), the precision SVG needs for pixels.
std::string num(double v);

// An axis range widened to round numbers, and the ticks on it ("1-2-5" steps).
struct NiceRange {
  double lo = 0.0, hi = 1.0, step = 0.2;
  std::vector<double> ticks() const;  // lo, lo + step, ..., hi
};
// About `target` intervals covering [lo, hi]. A degenerate or non-finite range becomes a sensible
// default (a constant v gets v +- 50 %, 0 gets +-1, non-finite gets [0, 1]). min_step: e.g. 1 for epochs.
NiceRange nice_range(double lo, double hi, int target = 5, double min_step = 0.0);
// A tick label with as many decimals as the step needs: 0.05 -> "0.25", 5 -> "15", 0.2 -> "0.6".
std::string tick_label(double v, double step);

class Document {
 public:
  Document(double width, double height);
  double width() const { return width_; }
  double height() const { return height_; }

  void rect(double x, double y, double w, double h, std::string_view attrs);
  void line(double x1, double y1, double x2, double y2, std::string_view attrs);
  // Points with a non-finite coordinate are dropped (not drawn as 0).
  void polyline(const std::vector<std::pair<double, double>>& points, std::string_view attrs);
  // `tooltip` becomes a <title> child (shown on hover in a browser).
  void circle(double cx, double cy, double r, std::string_view attrs,
              std::string_view tooltip = {});
  // `content` is escaped. Typical attrs: font-size="13" text-anchor="middle".
  void text(double x, double y, std::string_view content, std::string_view attrs = {});
  // Rotated -90 degrees about (x, y): a y-axis label.
  void vertical_text(double x, double y, std::string_view content, std::string_view attrs = {});

  int dropped() const { return dropped_; }  // elements skipped for non-finite coordinates
  std::string str() const;                  // <?xml ...?><svg ...> ... </svg>

 private:
  bool finite_or_drop(std::initializer_list<double> values);
  double width_, height_;
  std::string body_;
  int dropped_ = 0;
};

// A plotting area inside a Document: pixel box plus the data range it shows.
struct Axes {
  double left = 0, top = 0, width = 0, height = 0;  // plotting area, px
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;            // data range shown
  double px(double x) const { return left + (x - x0) / (x1 - x0) * width; }
  double py(double y) const { return top + height - (y - y0) / (y1 - y0) * height; }
  double right() const { return left + width; }
  double bottom() const { return top + height; }
};

struct AxesSpec {
  std::string title;
  std::string subtitle;  // one smaller line under the title (may be empty)
  std::string x_label, y_label;
  NiceRange x, y;
  bool grid = true;
  // margins around the plotting area, px
  double margin_left = 72, margin_right = 24, margin_top = 64, margin_bottom = 56;
};

// Draws background, title, subtitle, grid, frame, ticks with labels and the axis labels.
Axes draw_axes(Document& doc, const AxesSpec& spec);

// A legend box in a corner of the axes: one row per entry, each with a short line sample (dashed if
// asked) or a dot. The corner is the first of `corners` whose box covers the fewest of the `avoid`
// pixel positions (the plotted data), so the legend does not hide the curves when it can help it.
struct LegendEntry {
  std::string label;
  std::string color;
  bool dashed = false;
  bool dot = false;   // a filled marker instead of a line sample
  bool ring = false;  // a hollow marker (an operating point)
};
enum class Corner { top_left, top_right, bottom_left, bottom_right };
void draw_legend(Document& doc, const Axes& ax, const std::vector<LegendEntry>& entries,
                 const std::vector<std::pair<double, double>>& avoid = {},
                 const std::vector<Corner>& corners = {Corner::top_right, Corner::top_left,
                                                       Corner::bottom_right, Corner::bottom_left});

// Points every `spacing` px along a polyline (pixel coordinates): what a legend should avoid.
std::vector<std::pair<double, double>> densify(const std::vector<std::pair<double, double>>& line,
                                               double spacing = 4.0);

}  // namespace sleepnet::screening::svg
