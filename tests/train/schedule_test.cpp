// Learning-rate schedules against Hugging Face transformers' lambdas. The table comes from
// tests/train/schedule_oracle.py (the lambdas of transformers' optimization.py, run through
// torch's LambdaLR when torch is installed, else through LambdaLR's rule base_lr * lambda(step)):
// regenerate it with `python3 tests/train/schedule_oracle.py`. Every case has the boundary steps:
// 0, 1, warmup-1, warmup end, warmup+1, the middle, the last update (N-1), N and past the end.
#include <gtest/gtest.h>

#include <cmath>

#include "train/schedule.h"
#include "util/error.h"

namespace seqit::train {
namespace {

struct OracleCase {
  ScheduleKind kind;
  double base_lr;
  int64_t warmup, total, step;
  double lr;
};

const OracleCase kOracle[] = {
    {ScheduleKind::linear, 2e-05, 12, 390, 0, 0.0},
    {ScheduleKind::linear, 2e-05, 12, 390, 1, 1.6666666666666667e-06},
    {ScheduleKind::linear, 2e-05, 12, 390, 11, 1.8333333333333333e-05},
    {ScheduleKind::linear, 2e-05, 12, 390, 12, 2e-05},
    {ScheduleKind::linear, 2e-05, 12, 390, 13, 1.9947089947089948e-05},
    {ScheduleKind::linear, 2e-05, 12, 390, 195, 1.031746031746032e-05},
    {ScheduleKind::linear, 2e-05, 12, 390, 389, 5.291005291005291e-08},
    {ScheduleKind::linear, 2e-05, 12, 390, 390, 0.0},
    {ScheduleKind::linear, 2e-05, 12, 390, 395, 0.0},
    {ScheduleKind::linear, 0.0001, 1, 10, 0, 0.0},
    {ScheduleKind::linear, 0.0001, 1, 10, 1, 0.0001},
    {ScheduleKind::linear, 0.0001, 1, 10, 2, 8.888888888888889e-05},
    {ScheduleKind::linear, 0.0001, 1, 10, 5, 5.555555555555556e-05},
    {ScheduleKind::linear, 0.0001, 1, 10, 9, 1.1111111111111112e-05},
    {ScheduleKind::linear, 0.0001, 1, 10, 10, 0.0},
    {ScheduleKind::linear, 0.0001, 1, 10, 15, 0.0},
    {ScheduleKind::linear, 0.0003, 0, 100, 0, 0.0003},
    {ScheduleKind::linear, 0.0003, 0, 100, 1, 0.00029699999999999996},
    {ScheduleKind::linear, 0.0003, 0, 100, 50, 0.00015},
    {ScheduleKind::linear, 0.0003, 0, 100, 99, 2.9999999999999997e-06},
    {ScheduleKind::linear, 0.0003, 0, 100, 100, 0.0},
    {ScheduleKind::linear, 0.0003, 0, 100, 105, 0.0},
    {ScheduleKind::linear, 0.001, 7, 7, 0, 0.0},
    {ScheduleKind::linear, 0.001, 7, 7, 1, 0.00014285714285714284},
    {ScheduleKind::linear, 0.001, 7, 7, 3, 0.00042857142857142855},
    {ScheduleKind::linear, 0.001, 7, 7, 6, 0.0008571428571428571},
    {ScheduleKind::linear, 0.001, 7, 7, 7, 0.0},
    {ScheduleKind::linear, 0.001, 7, 7, 8, 0.0},
    {ScheduleKind::linear, 0.001, 7, 7, 12, 0.0},
    {ScheduleKind::cosine, 2e-05, 12, 390, 0, 0.0},
    {ScheduleKind::cosine, 2e-05, 12, 390, 1, 1.6666666666666667e-06},
    {ScheduleKind::cosine, 2e-05, 12, 390, 11, 1.8333333333333333e-05},
    {ScheduleKind::cosine, 2e-05, 12, 390, 12, 2e-05},
    {ScheduleKind::cosine, 2e-05, 12, 390, 13, 1.999965463076377e-05},
    {ScheduleKind::cosine, 2e-05, 12, 390, 195, 1.0498458856606972e-05},
    {ScheduleKind::cosine, 2e-05, 12, 390, 389, 3.4536923623096353e-10},
    {ScheduleKind::cosine, 2e-05, 12, 390, 390, 0.0},
    {ScheduleKind::cosine, 2e-05, 12, 390, 395, 8.633038164358454e-09},
    {ScheduleKind::cosine, 0.0001, 1, 10, 0, 0.0},
    {ScheduleKind::cosine, 0.0001, 1, 10, 1, 0.0001},
    {ScheduleKind::cosine, 0.0001, 1, 10, 2, 9.698463103929542e-05},
    {ScheduleKind::cosine, 0.0001, 1, 10, 5, 5.868240888334653e-05},
    {ScheduleKind::cosine, 0.0001, 1, 10, 9, 3.0153689607045845e-06},
    {ScheduleKind::cosine, 0.0001, 1, 10, 10, 0.0},
    {ScheduleKind::cosine, 0.0001, 1, 10, 15, 5.8682408883346504e-05},
    {ScheduleKind::cosine, 0.0003, 0, 100, 0, 0.0003},
    {ScheduleKind::cosine, 0.0003, 0, 100, 1, 0.0002999259840548597},
    {ScheduleKind::cosine, 0.0003, 0, 100, 50, 0.00015},
    {ScheduleKind::cosine, 0.0003, 0, 100, 99, 7.401594514025999e-08},
    {ScheduleKind::cosine, 0.0003, 0, 100, 100, 0.0},
    {ScheduleKind::cosine, 0.0003, 0, 100, 105, 1.8467489107293343e-06},
    {ScheduleKind::cosine, 0.001, 7, 7, 0, 0.0},
    {ScheduleKind::cosine, 0.001, 7, 7, 1, 0.00014285714285714284},
    {ScheduleKind::cosine, 0.001, 7, 7, 3, 0.00042857142857142855},
    {ScheduleKind::cosine, 0.001, 7, 7, 6, 0.0008571428571428571},
    {ScheduleKind::cosine, 0.001, 7, 7, 7, 0.001},
    {ScheduleKind::cosine, 0.001, 7, 7, 8, 0.0},
    {ScheduleKind::cosine, 0.001, 7, 7, 12, 0.0},
    {ScheduleKind::constant, 2e-05, 12, 390, 0, 0.0},
    {ScheduleKind::constant, 2e-05, 12, 390, 1, 1.6666666666666667e-06},
    {ScheduleKind::constant, 2e-05, 12, 390, 11, 1.8333333333333333e-05},
    {ScheduleKind::constant, 2e-05, 12, 390, 12, 2e-05},
    {ScheduleKind::constant, 2e-05, 12, 390, 13, 2e-05},
    {ScheduleKind::constant, 2e-05, 12, 390, 195, 2e-05},
    {ScheduleKind::constant, 2e-05, 12, 390, 389, 2e-05},
    {ScheduleKind::constant, 2e-05, 12, 390, 390, 2e-05},
    {ScheduleKind::constant, 2e-05, 12, 390, 395, 2e-05},
    {ScheduleKind::constant, 0.0001, 1, 10, 0, 0.0},
    {ScheduleKind::constant, 0.0001, 1, 10, 1, 0.0001},
    {ScheduleKind::constant, 0.0001, 1, 10, 2, 0.0001},
    {ScheduleKind::constant, 0.0001, 1, 10, 5, 0.0001},
    {ScheduleKind::constant, 0.0001, 1, 10, 9, 0.0001},
    {ScheduleKind::constant, 0.0001, 1, 10, 10, 0.0001},
    {ScheduleKind::constant, 0.0001, 1, 10, 15, 0.0001},
    {ScheduleKind::constant, 0.0003, 0, 100, 0, 0.0003},
    {ScheduleKind::constant, 0.0003, 0, 100, 1, 0.0003},
    {ScheduleKind::constant, 0.0003, 0, 100, 50, 0.0003},
    {ScheduleKind::constant, 0.0003, 0, 100, 99, 0.0003},
    {ScheduleKind::constant, 0.0003, 0, 100, 100, 0.0003},
    {ScheduleKind::constant, 0.0003, 0, 100, 105, 0.0003},
    {ScheduleKind::constant, 0.001, 7, 7, 0, 0.0},
    {ScheduleKind::constant, 0.001, 7, 7, 1, 0.00014285714285714284},
    {ScheduleKind::constant, 0.001, 7, 7, 3, 0.00042857142857142855},
    {ScheduleKind::constant, 0.001, 7, 7, 6, 0.0008571428571428571},
    {ScheduleKind::constant, 0.001, 7, 7, 7, 0.001},
    {ScheduleKind::constant, 0.001, 7, 7, 8, 0.001},
    {ScheduleKind::constant, 0.001, 7, 7, 12, 0.001},
};

TEST(Schedule, MatchesTransformersLambdasAtEveryBoundary) {
  for (const OracleCase& c : kOracle) {
    LrSchedule s{c.kind, c.base_lr, c.warmup, c.total};
    // Same operations in the same order as the Python lambdas: equal up to libm's cos (the same
    // glibc), so a few ulps at most.
    EXPECT_DOUBLE_EQ(s.lr(c.step), c.lr) << schedule_name(c.kind) << " warmup " << c.warmup
                                         << " total " << c.total << " step " << c.step;
  }
}

TEST(Schedule, ShapesAUserWouldRecognise) {
  LrSchedule linear{ScheduleKind::linear, 1.0, 4, 20};
  EXPECT_EQ(linear.lr(0), 0.0);   // HF: the first update has lr 0 under warmup
  EXPECT_EQ(linear.lr(2), 0.5);   // halfway up
  EXPECT_EQ(linear.lr(4), 1.0);   // peak at the warmup end
  EXPECT_EQ(linear.lr(12), 0.5);  // halfway down
  EXPECT_EQ(linear.lr(20), 0.0);
  EXPECT_EQ(linear.lr(25), 0.0);  // never negative past the end

  LrSchedule cosine{ScheduleKind::cosine, 1.0, 0, 10};
  EXPECT_EQ(cosine.lr(0), 1.0);
  EXPECT_NEAR(cosine.lr(5), 0.5, 1e-15);
  EXPECT_NEAR(cosine.lr(10), 0.0, 1e-15);

  LrSchedule constant{ScheduleKind::constant, 2e-5, 3, 100};
  EXPECT_DOUBLE_EQ(constant.lr(1), 2e-5 / 3);
  EXPECT_EQ(constant.lr(3), 2e-5);
  EXPECT_EQ(constant.lr(1000), 2e-5);
}

TEST(Schedule, WarmupRoundsUpLikeMathCeil) {
  EXPECT_EQ(warmup_steps_for(390, 0.03), 12);   // 11.7
  EXPECT_EQ(warmup_steps_for(100, 0.03), 3);    // 3.0 in double too
  EXPECT_EQ(warmup_steps_for(1170, 0.03), 36);  // 35.1
  EXPECT_EQ(warmup_steps_for(7, 0.03), 1);
  EXPECT_EQ(warmup_steps_for(50, 0.0), 0);
  EXPECT_EQ(warmup_steps_for(390, 0.03, 5), 5);   // explicit steps win (HF)
  EXPECT_EQ(warmup_steps_for(390, 0.03, 0), 12);  // 0 = not given, as HF
}

TEST(Schedule, CountsOptimizerSteps) {
  EXPECT_EQ(total_optimizer_steps(10, 4, 3), 9);  // ceil(10/4) = 3 per epoch
  EXPECT_EQ(total_optimizer_steps(8, 4, 3), 6);
  EXPECT_EQ(total_optimizer_steps(8, 4, 3, 5), 5);  // max_steps replaces the count
  EXPECT_THROW(total_optimizer_steps(8, 0, 1), Error);
}

TEST(Schedule, ParsesNames) {
  EXPECT_EQ(parse_schedule("cosine"), ScheduleKind::cosine);
  try {
    parse_schedule("cosin");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("linear, cosine or constant"), std::string::npos);
  }
}

}  // namespace
}  // namespace seqit::train
