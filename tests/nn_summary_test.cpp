// nn_summary_test.cpp: the model summary (nn/summary.h) against counts from torchvision/PyTorch
// (forward hooks on torchvision.models.mobilenet_v2, counting Conv2d as out.numel() * C/groups *
// KH*KW, Linear as out.numel() * IN, BatchNorm2d as out.numel()).
#include <gtest/gtest.h>

#include "nn/layers.h"
#include "nn/mobilenet.h"
#include "nn/summary.h"

namespace sleepnet::nn {
namespace {

int64_t sum_of(const ModelSummary& s, const std::string& type) {
  int64_t t = 0;
  for (const LayerSummary& r : s.layers)
    if (r.type == type) t += r.mult_adds;
  return t;
}

const LayerSummary& row(const ModelSummary& s, const std::string& name) {
  for (const LayerSummary& r : s.layers)
    if (r.name == name) return r;
  throw Error("no row " + name);
}

TEST(Summary, MobileNetV2At224MatchesTorchvisionCounts) {
  MobileNetV2 model({.width_mult = 1.0});
  ModelSummary s = summarize(model, {1, 3, 224, 224});
  EXPECT_EQ(s.total_params, 3504872);
  EXPECT_EQ(sum_of(s, "Conv2d") + sum_of(s, "Linear"), 300774272);  // the paper's "300M"
  EXPECT_EQ(sum_of(s, "BatchNorm2d"), 6678112);
  EXPECT_EQ(s.total_mult_adds, 300774272 + 6678112);
  EXPECT_EQ(row(s, "").mult_adds, s.total_mult_adds);  // the model row sums its layers
  EXPECT_EQ(row(s, "features.1.conv.0.0").output, (Shape{1, 32, 112, 112}));
  EXPECT_EQ(row(s, "features.18").output, (Shape{1, 1280, 7, 7}));
  EXPECT_EQ(row(s, "classifier").output, (Shape{1, 1000}));
  EXPECT_EQ(row(s, "features.2").params, row(s, "features.2.conv").params);
}

TEST(Summary, MobileNetV2At64x64Batch32) {
  MobileNetV2 model({.width_mult = 1.0, .in_channels = 1, .num_outputs = 1});
  BatchNorm2d& bn = dynamic_cast<BatchNorm2d&>(dynamic_cast<Sequential&>((*model.features)[0])[1]);
  const std::vector<float> rm = bn.running_mean.to_vector();
  ModelSummary s = summarize(model, {32, 1, 64, 64});
  EXPECT_EQ(s.total_params, 2224577);
  EXPECT_EQ(sum_of(s, "Conv2d"), 763478016);
  EXPECT_EQ(sum_of(s, "Linear"), 40960);
  EXPECT_EQ(sum_of(s, "BatchNorm2d"), 17444864);
  // Depthwise 3x3 of block 2: 96 channels at 32x32 -> 16x16 (stride 2), 9 mult-adds per output.
  const LayerSummary& dw = row(s, "features.2.conv.1.0");
  EXPECT_EQ(dw.output, (Shape{32, 96, 16, 16}));
  EXPECT_EQ(dw.mult_adds, 32 * 96 * 16 * 16 * 9);
  EXPECT_EQ(dw.params, 96 * 9);
  EXPECT_EQ(dw.activation_bytes, 32 * 96 * 16 * 16 * 4);
  // The summary ran in eval mode without touching BN statistics, and restored training mode.
  EXPECT_EQ(bn.running_mean.to_vector(), rm);
  EXPECT_EQ(bn.num_batches_tracked.item(), 0.f);
  EXPECT_TRUE(model.is_training());
  const std::string text = format_summary(s, 2);
  EXPECT_NE(text.find("Total params: 2,224,577"), std::string::npos) << text;
  EXPECT_NE(text.find("features.2 (InvertedResidual)"), std::string::npos) << text;
  EXPECT_EQ(text.find("features.2.conv.1.0 (Conv2d)"), std::string::npos) << text;  // deeper than 2
}

TEST(Summary, BadInputShapeIsAnErrorAndModeIsRestored) {
  MobileNetV2 model({.width_mult = 0.35, .in_channels = 1, .num_outputs = 1});
  model.eval();
  EXPECT_THROW(summarize(model, {2, 3, 32, 32}), Error);
  EXPECT_FALSE(model.is_training());
}

}  // namespace
}  // namespace sleepnet::nn
