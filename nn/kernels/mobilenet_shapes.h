// nn/kernels/mobilenet_shapes.h: every convolution of torchvision's MobileNetV2, as kernel shapes.
//
// One table, shared by tests/ (every kernel is checked on every real layer shape) and bench/
// (every kernel is timed on them). It follows torchvision's `mobilenet_v2` structure:
//
//   features.0        3x3 conv, stride 2, in_channels -> c0 = make_divisible(32 * width), BN, ReLU6
//   features.1 ..     inverted residual blocks, settings (t, c, n, s):
//                       (1, 16, 1, 1) (6, 24, 2, 2) (6, 32, 3, 2) (6, 64, 4, 2)
//                       (6, 96, 3, 1) (6, 160, 3, 2) (6, 320, 1, 1)
//                     out = make_divisible(c * width); the first of the n blocks has stride s,
//                     the others stride 1; hidden = round(in * t). A block is
//                       conv.0  1x1 in -> hidden, BN, ReLU6          (only when t != 1)
//                       next    3x3 depthwise hidden, stride, pad 1, BN, ReLU6
//                       next    1x1 hidden -> out, BN (no activation)
//   features.last     1x1 conv -> make_divisible(1280 * max(1, width)), BN, ReLU6
//   then global average pooling, dropout, Linear(last_channel, num_outputs).
//
// Every convolution here has bias = false (each is followed by a BatchNorm2d of OC channels over
// OH*OW pixels). Names are torchvision's module paths of the Conv2d, e.g. "features.2.conv.1.0".
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/kernels/conv.h"

namespace sleepnet::kernels {

// torchvision's _make_divisible(v, divisor): round to the nearest multiple of divisor, at least
// divisor, and never more than 10 % below v.
inline int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t new_v = std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (static_cast<double>(new_v) < 0.9 * v) new_v += divisor;
  return new_v;
}

enum class LayerKind {
  Conv,       // the dense 3x3 stride-2 stem (im2col + sgemm)
  Pointwise,  // 1x1 stride 1 (sgemm, no im2col)
  Depthwise,  // 3x3 depthwise (nn/kernels/depthwise.h)
};

inline const char* layer_kind_name(LayerKind k) {
  return k == LayerKind::Conv ? "conv" : k == LayerKind::Pointwise ? "pointwise" : "depthwise";
}

struct LayerShape {
  std::string name;  // torchvision module path of the Conv2d
  LayerKind kind;
  Conv2dGeom geom;
  bool relu6;  // BN then ReLU6 follow (false: BN only, the block's linear projection)
};

struct MobileNetV2Shapes {
  std::vector<LayerShape> convs;  // in network order
  int64_t last_channel;           // channels entering pooling and the classifier
  int64_t last_h, last_w;         // spatial size entering global average pooling
};

inline MobileNetV2Shapes mobilenet_v2_shapes(double width, int64_t in_channels, int64_t H, int64_t W,
                                             int64_t N) {
  struct Setting {
    int64_t t, c, n, s;
  };
  const Setting settings[] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                              {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  MobileNetV2Shapes out;
  int64_t c = make_divisible(32 * width), h = H, w = W;
  Conv2dGeom stem = conv2d_geom(N, in_channels, h, w, c, 3, 2, 1);
  out.convs.push_back({"features.0.0", LayerKind::Conv, stem, true});
  h = stem.OH(), w = stem.OW();
  int index = 1;
  for (const Setting& st : settings) {
    const int64_t oc = make_divisible(st.c * width);
    for (int64_t i = 0; i < st.n; ++i, ++index) {
      const int64_t stride = i == 0 ? st.s : 1;
      const int64_t hidden = static_cast<int64_t>(std::lround(static_cast<double>(c * st.t)));
      const std::string base = "features." + std::to_string(index) + ".conv.";
      int sub = 0;
      if (st.t != 1) {
        out.convs.push_back({base + "0.0", LayerKind::Pointwise, conv2d_geom(N, c, h, w, hidden, 1, 1, 0), true});
        sub = 1;
      }
      Conv2dGeom dw = conv2d_geom(N, hidden, h, w, hidden, 3, stride, 1, hidden);
      out.convs.push_back({base + std::to_string(sub) + ".0", LayerKind::Depthwise, dw, true});
      h = dw.OH(), w = dw.OW();
      out.convs.push_back({base + std::to_string(sub + 1), LayerKind::Pointwise,
                           conv2d_geom(N, hidden, h, w, oc, 1, 1, 0), false});
      c = oc;
    }
  }
  out.last_channel = make_divisible(1280 * std::max(1.0, width));
  out.convs.push_back({"features." + std::to_string(index) + ".0", LayerKind::Pointwise,
                       conv2d_geom(N, c, h, w, out.last_channel, 1, 1, 0), true});
  out.last_h = h, out.last_w = w;
  return out;
}

inline bool same_geom(const Conv2dGeom& a, const Conv2dGeom& b) {
  return a.N == b.N && a.C == b.C && a.H == b.H && a.W == b.W && a.OC == b.OC && a.KH == b.KH &&
         a.KW == b.KW && a.SH == b.SH && a.SW == b.SW && a.PH == b.PH && a.PW == b.PW &&
         a.groups == b.groups;
}

// The first layer of each distinct geometry, in network order (MobileNetV2 repeats blocks).
inline std::vector<LayerShape> distinct_layers(const std::vector<LayerShape>& layers) {
  std::vector<LayerShape> out;
  for (const LayerShape& l : layers) {
    bool seen = false;
    for (const LayerShape& o : out) seen = seen || same_geom(o.geom, l.geom);
    if (!seen) out.push_back(l);
  }
  return out;
}

// "dw3x3/s2 96x16x16" style label for benchmark and test names.
inline std::string layer_label(const LayerShape& l) {
  const Conv2dGeom& g = l.geom;
  std::string k = l.kind == LayerKind::Depthwise ? "dw" : "";
  std::string s = k + std::to_string(g.KH) + "x" + std::to_string(g.KW) + "s" + std::to_string(g.SH) +
                  "_" + std::to_string(g.C) + "x" + std::to_string(g.H) + "x" + std::to_string(g.W);
  if (l.kind != LayerKind::Depthwise) s += "_to" + std::to_string(g.OC);
  return s;
}

}  // namespace sleepnet::kernels
