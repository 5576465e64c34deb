// metrics_test.cpp: the screening metrics against values computed by hand (worked in the comments)
// or independently with numpy (np.corrcoef, np.polyfit; the commands are quoted next to the value).
#include "apps/screening/metrics.h"

#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tensor/tensor.h"

namespace sleepnet::screening {
namespace {

// Expects `stmt` to throw sleepnet::Error whose message contains `needle`.
#define EXPECT_ERROR_WITH(stmt, needle)                                                  \
  do {                                                                                   \
    try {                                                                                \
      stmt;                                                                              \
      ADD_FAILURE() << "expected sleepnet::Error from " #stmt;                           \
    } catch (const Error& e) {                                                           \
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();      \
    }                                                                                    \
  } while (0)

// ---- Binary decisions ----

TEST(BinaryMetrics, CountsAndRatiosByHand) {
  //            0  1  2  3  4  5  6  7  8  9
  std::vector<int> truth = {1, 1, 1, 0, 0, 0, 0, 0, 1, 0};
  std::vector<int> pred = {1, 0, 1, 1, 1, 0, 0, 0, 1, 0};
  // tp: 0 2 8; fn: 1; fp: 3 4; tn: 5 6 7 9
  BinaryMetrics m = binary_metrics(truth, pred);
  EXPECT_EQ(m.tp, 3);
  EXPECT_EQ(m.fn, 1);
  EXPECT_EQ(m.fp, 2);
  EXPECT_EQ(m.tn, 4);
  EXPECT_EQ(m.n(), 10);
  EXPECT_DOUBLE_EQ(m.accuracy(), 7.0 / 10);
  EXPECT_DOUBLE_EQ(m.sensitivity(), 3.0 / 4);
  EXPECT_DOUBLE_EQ(m.specificity(), 4.0 / 6);
  EXPECT_DOUBLE_EQ(m.precision(), 3.0 / 5);
  EXPECT_DOUBLE_EQ(m.f1(), 6.0 / 9);  // 2 * 0.6 * 0.75 / (0.6 + 0.75) = 0.9 / 1.35
}

TEST(BinaryMetrics, ThresholdIsInclusive) {
  std::vector<double> p = {0.5, 0.49, 0.51, 0.0};
  std::vector<int> truth = {1, 1, 0, 0};
  BinaryMetrics m = binary_metrics_at(p, truth, 0.5);  // predicted 1 0 1 0
  EXPECT_EQ(m.tp, 1);
  EXPECT_EQ(m.fn, 1);
  EXPECT_EQ(m.fp, 1);
  EXPECT_EQ(m.tn, 1);
}

TEST(BinaryMetrics, UndefinedRatiosAreNaN) {
  // no positives in truth nor prediction: sensitivity, precision, F1 undefined; specificity 1
  BinaryMetrics m = binary_metrics({0, 0, 0}, {0, 0, 0});
  EXPECT_TRUE(std::isnan(m.sensitivity()));
  EXPECT_TRUE(std::isnan(m.precision()));
  EXPECT_TRUE(std::isnan(m.f1()));
  EXPECT_DOUBLE_EQ(m.specificity(), 1.0);
  EXPECT_DOUBLE_EQ(m.accuracy(), 1.0);
  // no negatives: specificity undefined
  BinaryMetrics all_pos = binary_metrics({1, 1}, {1, 0});
  EXPECT_TRUE(std::isnan(all_pos.specificity()));
  EXPECT_DOUBLE_EQ(all_pos.sensitivity(), 0.5);
  // a default (empty) BinaryMetrics: everything NaN, nothing divides by zero
  EXPECT_TRUE(std::isnan(BinaryMetrics{}.accuracy()));
}

TEST(BinaryMetrics, BadInputIsAClearError) {
  EXPECT_ERROR_WITH(binary_metrics({}, {}), "empty");
  EXPECT_ERROR_WITH(binary_metrics({1, 0}, {1}), "truth has 2 values but predicted has 1");
  EXPECT_ERROR_WITH(binary_metrics({1, 2}, {1, 1}), "truth[1] = 2; expected 0 or 1");
  EXPECT_ERROR_WITH(binary_metrics({1, 0}, {1, -1}), "predicted[1] = -1");
  EXPECT_ERROR_WITH(binary_metrics_at({0.2, NAN}, {1, 0}, 0.5), "score[1] = nan");
  EXPECT_ERROR_WITH(binary_metrics_at({0.2, 0.3}, {1, 0}, NAN), "threshold is NaN");
}

// ---- ROC ----

TEST(Roc, SmallExampleByHand) {
  // The pairs (positive, negative): 0.35 beats 0.1 but not 0.4; 0.8 beats both -> 3 of 4.
  std::vector<double> s = {0.1, 0.4, 0.35, 0.8};
  std::vector<int> t = {0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(roc_auc(s, t), 0.75);
  // Descending: 0.8(+) 0.4(-) 0.35(+) 0.1(-).
  std::vector<RocPoint> c = roc_curve(s, t);
  ASSERT_EQ(c.size(), 5u);
  EXPECT_TRUE(std::isinf(c[0].threshold));
  const double want[5][3] = {{0, 0, 0}, {0.8, 0, 0.5}, {0.4, 0.5, 0.5}, {0.35, 0.5, 1}, {0.1, 1, 1}};
  for (int i = 1; i < 5; ++i) {
    EXPECT_DOUBLE_EQ(c[i].threshold, want[i][0]) << i;
    EXPECT_DOUBLE_EQ(c[i].fpr, want[i][1]) << i;
    EXPECT_DOUBLE_EQ(c[i].tpr, want[i][2]) << i;
  }
  EXPECT_DOUBLE_EQ(roc_area_trapezoid(c), 0.75);
}

TEST(Roc, TiesCountOneHalf) {
  // P = 2, N = 3. Positive 0.5 vs negatives 0.5, 0.5, 0.1: 1/2 + 1/2 + 1; positive 0.9 beats all 3.
  // U = 2 + 3 = 5, AUC = 5 / 6.
  std::vector<double> s = {0.5, 0.5, 0.5, 0.9, 0.1};
  std::vector<int> t = {1, 0, 0, 1, 0};
  EXPECT_NEAR(roc_auc(s, t), 5.0 / 6.0, 1e-15);
  // The tied group is one point: from (0, 0.5) straight to (2/3, 1).
  std::vector<RocPoint> c = roc_curve(s, t);
  ASSERT_EQ(c.size(), 4u);
  EXPECT_DOUBLE_EQ(c[1].tpr, 0.5);
  EXPECT_DOUBLE_EQ(c[2].fpr, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(c[2].tpr, 1.0);
  EXPECT_NEAR(roc_area_trapezoid(c), 5.0 / 6.0, 1e-15);
  // All scores equal: a coin, AUC 0.5 whatever the labels.
  EXPECT_DOUBLE_EQ(roc_auc({0.3, 0.3, 0.3}, {1, 0, 0}), 0.5);
}

TEST(Roc, MidRanksMatchBrutePairCountingOnManyTies) {
  // Integer-valued scores 0..4 (many ties) from a fixed LCG; the reference counts every pair.
  uint32_t state = 12345;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 5 + trial * 7;
    std::vector<double> s(n);
    std::vector<int> t(n);
    for (int i = 0; i < n; ++i) {
      t[i] = (next() >> 16) % 3 == 0 ? 1 : 0;
      s[i] = static_cast<double>((next() >> 16) % 5) + 0.5 * t[i] * ((next() >> 16) % 2);
    }
    t[0] = 1;
    t[1] = 0;  // both classes present
    double wins = 0.0;
    int64_t pairs = 0;
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        if (t[i] == 1 && t[j] == 0) {
          wins += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
          ++pairs;
        }
      }
    }
    EXPECT_NEAR(roc_auc(s, t), wins / pairs, 1e-12) << "trial " << trial;
    EXPECT_NEAR(roc_area_trapezoid(roc_curve(s, t)), wins / pairs, 1e-12) << "trial " << trial;
  }
}

TEST(Roc, UsesProbabilitiesNotHardLabels) {
  // At threshold 0.5 every window is predicted 0, so "AUC from hard labels" would be 0.5; the
  // probabilities still rank every positive above every negative: AUC 1.
  std::vector<double> p = {0.1, 0.2, 0.3, 0.4};
  std::vector<int> t = {0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(window_metrics(p, t, 0.5).roc_auc, 1.0);
  EXPECT_EQ(window_metrics(p, t, 0.5).decision.tp, 0);
  // Reversed ranking: 0.
  EXPECT_DOUBLE_EQ(roc_auc(p, {1, 1, 0, 0}), 0.0);
}

TEST(Roc, OneClassIsUndefinedNotAnError) {
  EXPECT_TRUE(std::isnan(roc_auc({0.1, 0.9}, {0, 0})));
  EXPECT_TRUE(std::isnan(roc_auc({0.1, 0.9}, {1, 1})));
  EXPECT_TRUE(roc_curve({0.1, 0.9}, {1, 1}).empty());
  EXPECT_TRUE(std::isnan(roc_area_trapezoid({})));
  WindowMetrics m = window_metrics({0.1, 0.9, 0.7}, {0, 0, 0});
  EXPECT_TRUE(std::isnan(m.roc_auc));
  EXPECT_TRUE(std::isnan(m.decision.sensitivity()));
  EXPECT_DOUBLE_EQ(m.decision.specificity(), 1.0 / 3.0);
}

TEST(Roc, BadInputIsAClearError) {
  EXPECT_ERROR_WITH(roc_auc({}, {}), "roc_auc: score and truth are empty");
  EXPECT_ERROR_WITH(roc_curve({0.1}, {1, 0}), "score has 1 values but truth has 2");
  EXPECT_ERROR_WITH(roc_auc({0.1, INFINITY}, {1, 0}), "score[1] = inf");
  EXPECT_ERROR_WITH(roc_auc({0.1, 0.2}, {1, 3}), "truth[1] = 3");
}

// ---- Confusion matrices and kappa ----

TEST(Confusion, CountsRowsAreTruth) {
  ConfusionMatrix cm = confusion_matrix({0, 0, 1, 2, 2, 2}, {0, 1, 1, 2, 0, 2}, {"a", "b", "c"});
  ASSERT_EQ(cm.classes(), 3);
  const int64_t want[3][3] = {{1, 1, 0}, {0, 1, 0}, {1, 0, 2}};
  for (int t = 0; t < 3; ++t)
    for (int p = 0; p < 3; ++p) EXPECT_EQ(cm.counts[t][p], want[t][p]) << t << "," << p;
  EXPECT_EQ(cm.total(), 6);
  EXPECT_DOUBLE_EQ(cm.accuracy(), 4.0 / 6.0);
  EXPECT_ERROR_WITH(confusion_matrix({0, 3}, {0, 0}, {"a", "b", "c"}), "truth[1] = 3");
  EXPECT_ERROR_WITH(confusion_matrix({0}, {0}, {"a"}), "1 class labels");
}

// Builds label vectors that realise a given K x K table (rows = rater 1, columns = rater 2).
ConfusionMatrix from_table(const std::vector<std::vector<int>>& table) {
  std::vector<int> a, b;
  std::vector<std::string> labels;
  for (size_t i = 0; i < table.size(); ++i) {
    labels.push_back("c" + std::to_string(i));
    for (size_t j = 0; j < table.size(); ++j)
      for (int k = 0; k < table[i][j]; ++k) {
        a.push_back(static_cast<int>(i));
        b.push_back(static_cast<int>(j));
      }
  }
  return confusion_matrix(a, b, labels);
}

TEST(Kappa, KnownTwoByTwo) {
  // 50 items: both "yes" 20, both "no" 15, disagreements 5 and 10.
  // p_o = 35/50 = 0.7; rater 1 says yes 25/50, rater 2 says yes 30/50:
  // p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / 0.5 = 0.4.
  EXPECT_NEAR(cohen_kappa(from_table({{20, 5}, {10, 15}})), 0.4, 1e-15);
  // Perfect agreement -> 1; agreement exactly at chance level -> 0.
  EXPECT_DOUBLE_EQ(cohen_kappa(from_table({{7, 0}, {0, 3}})), 1.0);
  EXPECT_NEAR(cohen_kappa(from_table({{1, 1}, {1, 1}})), 0.0, 1e-15);
}

TEST(Kappa, ThreeClassMatchesNumpy) {
  // cm = [[10,2,0],[1,8,3],[0,2,14]]; po = 32/40; pe = (12*11 + 12*12 + 16*17) / 40^2 = 0.3425
  // numpy: ((np.trace(cm)/n) - pe) / (1 - pe) = 0.6958174904942966
  EXPECT_NEAR(cohen_kappa(from_table({{10, 2, 0}, {1, 8, 3}, {0, 2, 14}})), 0.6958174904942966,
              1e-14);
}

TEST(Kappa, ConstantRatersAreUndefined) {
  // Both raters always say class 0: chance agreement is 1, kappa = 0/0.
  EXPECT_TRUE(std::isnan(cohen_kappa(from_table({{5, 0}, {0, 0}}))));
  // One rater constant, the other not: p_e < 1, kappa defined (here 0).
  EXPECT_NEAR(cohen_kappa(from_table({{5, 0}, {3, 0}})), 0.0, 1e-15);
}

TEST(Sleep, AccuracyKappaByHand) {
  // pred at 0.5: 1 1 0 1 0 1. wake row: [2, 1]; sleep row: [0, 3]. accuracy 5/6.
  // rows (3, 3), columns (2, 4): p_e = (3*2 + 3*4) / 36 = 0.5; kappa = (5/6 - 1/2) / (1/2) = 2/3.
  SleepMetrics m = sleep_metrics({0.9, 0.8, 0.2, 0.6, 0.1, 0.7}, {1, 1, 0, 0, 0, 1});
  EXPECT_EQ(m.confusion.counts[0][0], 2);
  EXPECT_EQ(m.confusion.counts[0][1], 1);
  EXPECT_EQ(m.confusion.counts[1][0], 0);
  EXPECT_EQ(m.confusion.counts[1][1], 3);
  EXPECT_EQ(m.confusion.labels[0], "wake");
  EXPECT_DOUBLE_EQ(m.accuracy, 5.0 / 6.0);
  EXPECT_NEAR(m.kappa, 2.0 / 3.0, 1e-15);
  EXPECT_DOUBLE_EQ(m.decision.sensitivity(), 1.0);
  // AUC: positives 0.9 0.8 0.7, negatives 0.2 0.6 0.1: every pair won -> 1.
  EXPECT_DOUBLE_EQ(m.roc_auc, 1.0);
}

// ---- Regression ----

TEST(Pearson, MatchesNumpy) {
  // np.corrcoef([1,2,3,4,5,6.5], [2.1,3.9,6.2,7.8,11,12])[0,1]
  EXPECT_NEAR(pearson_r({1, 2, 3, 4, 5, 6.5}, {2.1, 3.9, 6.2, 7.8, 11, 12}), 0.987111016476874,
              1e-13);
  EXPECT_NEAR(pearson_r({1, 2, 3}, {1, -1, -3}), -1.0, 1e-15);
  // Invariant to affine maps of either variable (large offset: no cancellation).
  EXPECT_NEAR(pearson_r({1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4.5}, {3, 1, 4, 1}),
              pearson_r({1, 2, 3, 4.5}, {3, 1, 4, 1}), 1e-9);
}

TEST(Pearson, ConstantIsNaNAndBadInputThrows) {
  EXPECT_TRUE(std::isnan(pearson_r({2, 2, 2}, {1, 2, 3})));
  EXPECT_TRUE(std::isnan(pearson_r({1, 2, 3}, {4, 4, 4})));
  EXPECT_TRUE(std::isnan(pearson_r({1}, {2})));
  EXPECT_ERROR_WITH(pearson_r({}, {}), "pearson_r: x and y are empty");
  EXPECT_ERROR_WITH(pearson_r({1, 2}, {1, NAN}), "y[1] = nan");
  EXPECT_ERROR_WITH(mean_absolute_error({1, 2}, {1}), "x has 2 values but y has 1");
}

TEST(Regression, MaeAndBias) {
  EXPECT_DOUBLE_EQ(mean_absolute_error({1, 5, 2}, {2, 3, 2}), 1.0);  // (1 + 2 + 0) / 3
  EXPECT_DOUBLE_EQ(mean_error({1, 5, 2}, {2, 3, 2}), 1.0 / 3.0);     // (-1 + 2 + 0) / 3
}

TEST(FitLinear, ExactLineAndNumpyPolyfit) {
  LinearFit f = fit_linear({0, 1, 2, 3}, {1, 3, 5, 7});  // y = 2x + 1
  EXPECT_NEAR(f.slope, 2.0, 1e-15);
  EXPECT_NEAR(f.intercept, 1.0, 1e-15);
  EXPECT_NEAR(f(10.0), 21.0, 1e-13);
  // np.polyfit([1,2,3,4,5,6.5], [2.1,3.9,6.2,7.8,11,12], 1)
  LinearFit g = fit_linear({1, 2, 3, 4, 5, 6.5}, {2.1, 3.9, 6.2, 7.8, 11, 12});
  EXPECT_NEAR(g.slope, 1.910927835051546, 1e-13);
  EXPECT_NEAR(g.intercept, 0.31917525773195554, 1e-13);
  // Calibration clamps at zero.
  EXPECT_DOUBLE_EQ(calibrated_ahi({2.0, -10.0}, 3.0), 0.0);
  EXPECT_DOUBLE_EQ(calibrated_ahi({2.0, -10.0}, 8.0), 6.0);
}

TEST(FitLinear, DegenerateInputThrows) {
  EXPECT_ERROR_WITH(fit_linear({}, {}), "empty");
  EXPECT_ERROR_WITH(fit_linear({1}, {2}), "expected at least 2");
  EXPECT_ERROR_WITH(fit_linear({3, 3, 3}, {1, 2, 3}), "x is constant");
  EXPECT_ERROR_WITH(fit_linear({1, 2}, {1, INFINITY}), "y[1] = inf");
}

// ---- Severity and record level ----

TEST(Severity, Boundaries) {
  EXPECT_EQ(severity(0.0), Severity::normal);
  EXPECT_EQ(severity(-1.0), Severity::normal);
  EXPECT_EQ(severity(4.999), Severity::normal);
  EXPECT_EQ(severity(5.0), Severity::mild);
  EXPECT_EQ(severity(14.99), Severity::mild);
  EXPECT_EQ(severity(15.0), Severity::moderate);
  EXPECT_EQ(severity(29.9), Severity::moderate);
  EXPECT_EQ(severity(30.0), Severity::severe);
  EXPECT_EQ(severity(120.0), Severity::severe);
  EXPECT_STREQ(severity_name(Severity::moderate), "moderate");
  ASSERT_EQ(severity_names().size(), 4u);
  EXPECT_EQ(severity_names()[3], "severe");
  EXPECT_ERROR_WITH(severity(NAN), "severity: AHI is NaN");
}

TEST(Records, ByHand) {
  //                          0  1   2   3   4  5
  std::vector<double> est = {3, 7, 20, 40, 12, 4};
  std::vector<double> ref = {2, 4, 25, 35, 16, 6};
  RecordMetrics m = record_metrics(est, ref);
  EXPECT_EQ(m.n, 6);
  // np.corrcoef([3,7,20,40,12,4], [2,4,25,35,16,6])[0,1]
  EXPECT_NEAR(m.pearson_r, 0.9590806713189183, 1e-13);
  EXPECT_DOUBLE_EQ(m.mae, 20.0 / 6.0);         // 1 + 3 + 5 + 5 + 4 + 2
  EXPECT_DOUBLE_EQ(m.mean_error, -2.0 / 6.0);  // 1 + 3 - 5 + 5 - 4 - 2
  // AHI >= 5: ref 0 0 1 1 1 1, est 0 1 1 1 1 0 -> tn 1, fp 1, fn 1, tp 3
  EXPECT_EQ(m.ahi5.decision.tn, 1);
  EXPECT_EQ(m.ahi5.decision.fp, 1);
  EXPECT_EQ(m.ahi5.decision.fn, 1);
  EXPECT_EQ(m.ahi5.decision.tp, 3);
  EXPECT_EQ(m.ahi5.confusion.counts[1][1], 3);
  EXPECT_EQ(m.ahi5.confusion.labels[1], "AHI >= 5");
  EXPECT_DOUBLE_EQ(m.ahi5.decision.accuracy(), 4.0 / 6.0);
  // AHI >= 15: ref 0 0 1 1 1 0, est 0 0 1 1 0 0 -> tn 3, fn 1, tp 2
  EXPECT_DOUBLE_EQ(m.ahi15.decision.accuracy(), 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(m.ahi15.decision.sensitivity(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.ahi15.decision.specificity(), 1.0);
  // Severity: ref N N Mo S Mo Mi; est N Mi Mo S Mi N
  const int64_t want[4][4] = {{1, 1, 0, 0}, {1, 0, 0, 0}, {0, 1, 1, 0}, {0, 0, 0, 1}};
  for (int t = 0; t < 4; ++t)
    for (int p = 0; p < 4; ++p) EXPECT_EQ(m.severity.counts[t][p], want[t][p]) << t << "," << p;
  EXPECT_DOUBLE_EQ(m.severity.accuracy(), 0.5);
}

TEST(Records, DegenerateCases) {
  // One record: Pearson undefined, the rest defined.
  RecordMetrics one = record_metrics({10}, {12});
  EXPECT_TRUE(std::isnan(one.pearson_r));
  EXPECT_DOUBLE_EQ(one.mae, 2.0);
  EXPECT_TRUE(std::isnan(one.ahi5.decision.specificity()));  // no record with AHI < 5
  EXPECT_ERROR_WITH(record_metrics({}, {}), "record_metrics: estimated and reference are empty");
  EXPECT_ERROR_WITH(record_metrics({1, NAN}, {1, 2}), "estimated[1] = nan");
}

}  // namespace
}  // namespace sleepnet::screening
