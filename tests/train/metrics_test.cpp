// The metrics log (rows round-trip; a resumed run drops the rows after its checkpoint and a torn
// last line, so no step is logged twice) and the loss chart (a PNG of the requested size that shows
// the data: much larger than the chart of an empty series; SEQIT_KEEP_CHART=out.png keeps it for a
// look).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "testing.h"
#include "train/loss_chart.h"
#include "train/metrics.h"
#include "util/error.h"

namespace seqit::train {
namespace {

namespace fs = std::filesystem;
using seqit::testing::slurp;
using seqit::testing::spit;
using seqit::testing::TempDir;
using ::testing::HasSubstr;

MetricsRow row(int64_t step) {
  MetricsRow r;
  r.step = step;
  r.epoch = double(step) / 30.0;
  r.loss = 2.0 + 1.0 / double(step + 1);
  r.lr = 2e-5 * double(step) / 10.0;
  r.grad_norm = 0.5 + 0.01 * double(step);
  r.tokens = 1000 * step;
  r.tokens_per_s = 2210.5;
  r.rss_mb = 1834.25;
  r.elapsed_s = 0.1 * double(step);
  if (step % 5 == 0) r.eval_loss = 2.5 - 0.01 * double(step);
  return r;
}

TEST(Metrics, RowsRoundTripAndLeaveUnknownsOut) {
  MetricsRow r = row(10);
  r.mfu = 0.41;
  EXPECT_EQ(parse_metrics_row(metrics_json(r)), r);
  EXPECT_THAT(metrics_json(r), ::testing::StartsWith(R"({"step":10,"epoch":0.3333333)"));

  MetricsRow nan_loss = row(3);
  nan_loss.loss = std::nan("");
  std::string line = metrics_json(nan_loss);
  EXPECT_THAT(line, ::testing::Not(HasSubstr("\"loss\"")));  // JSON has no NaN
  EXPECT_THAT(line, ::testing::Not(HasSubstr("eval_loss")));
  EXPECT_THAT(line, ::testing::Not(HasSubstr("mfu")));
  EXPECT_EQ(parse_metrics_row(line).loss, std::nullopt);

  try {
    parse_metrics_row(R"({"step": "ten"})");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("field 'step': expected an integer"));
  }
}

TEST(Metrics, LogAppendsAndReadsBack) {
  TempDir tmp;
  fs::path path = tmp / "metrics.jsonl";
  {
    MetricsLog log(path, std::nullopt);
    for (int64_t s = 1; s <= 5; ++s) log.append(row(s));
    EXPECT_EQ(log.rows().size(), 5u);
  }
  std::vector<MetricsRow> back = read_metrics(path);
  ASSERT_EQ(back.size(), 5u);
  for (int64_t s = 1; s <= 5; ++s) EXPECT_EQ(back[size_t(s - 1)], row(s));
  // A fresh run replaces an old log.
  MetricsLog fresh(path, std::nullopt);
  EXPECT_TRUE(fresh.rows().empty());
  EXPECT_EQ(slurp(path), "");
}

TEST(Metrics, ResumeDropsRowsAfterTheCheckpointAndATornLine) {
  TempDir tmp;
  fs::path path = tmp / "metrics.jsonl";
  {
    MetricsLog log(path, std::nullopt);
    for (int64_t s = 1; s <= 10; ++s) log.append(row(s));
  }
  // The run crashed mid-append after step 10; its last checkpoint was step 6.
  spit(path, slurp(path) + R"({"step":11,"epoch":0.3)");
  {
    MetricsLog log(path, 6);
    EXPECT_EQ(log.dropped_rows(), 4);
    ASSERT_EQ(log.rows().size(), 6u);
    EXPECT_EQ(log.rows().back().step, 6);
    for (int64_t s = 7; s <= 12; ++s) log.append(row(s));  // the resumed run logs 7.. again
  }
  std::vector<MetricsRow> rows = read_metrics(path);
  ASSERT_EQ(rows.size(), 12u);
  std::set<int64_t> steps;
  for (const MetricsRow& r : rows)
    EXPECT_TRUE(steps.insert(r.step).second) << "step " << r.step << " twice";
  EXPECT_EQ(*steps.rbegin(), 12);
  // Resuming at the last logged step drops nothing and does not rewrite.
  MetricsLog same(path, 12);
  EXPECT_EQ(same.dropped_rows(), 0);
  EXPECT_EQ(same.rows().size(), 12u);
  // Resuming with no log yet starts one.
  MetricsLog none(tmp / "new.jsonl", 100);
  EXPECT_TRUE(none.rows().empty());
}

TEST(Metrics, ACorruptLineIsNamed) {
  TempDir tmp;
  fs::path path = tmp / "metrics.jsonl";
  spit(path, metrics_json(row(1)) + "\n{oops\n");
  try {
    MetricsLog log(path, 5);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("metrics.jsonl:2"));
  }
}

TEST(Metrics, ResidentMemoryIsMeasured) {
  double rss = current_rss_mb();
  EXPECT_GT(rss, 1.0);
  EXPECT_LT(rss, 1e6);
}

TEST(Metrics, SmoothingIsTensorBoardsDebiasedEma) {
  std::vector<double> s = smooth_ema({4.0, 2.0, 2.0}, 0.5);
  EXPECT_DOUBLE_EQ(s[0], 4.0);                          // debiased: the first value itself
  EXPECT_DOUBLE_EQ(s[1], (0.25 * 4 + 0.5 * 2) / 0.75);  // (0.5·(0.5·4) + 0.5·2) / (1 - 0.25)
  EXPECT_EQ(smooth_ema({1.0, 5.0}, 0.0), (std::vector<double>{1.0, 5.0}));
}

// Width and height from the PNG's IHDR chunk (big-endian at bytes 16..23).
std::pair<uint32_t, uint32_t> png_size(const std::string& png) {
  auto be32 = [&](size_t at) {
    return uint32_t(uint8_t(png[at])) << 24 | uint32_t(uint8_t(png[at + 1])) << 16 |
           uint32_t(uint8_t(png[at + 2])) << 8 | uint32_t(uint8_t(png[at + 3]));
  };
  return {be32(16), be32(20)};
}

// A training run as a user sees it: loss falling with noise, warmup then linear decay, eval
// every 50 steps.
std::vector<MetricsRow> realistic_run(int64_t steps) {
  std::vector<MetricsRow> rows;
  uint32_t x = 12345;
  for (int64_t s = 1; s <= steps; ++s) {
    x = x * 1664525u + 1013904223u;
    double noise = (double(x >> 8) / double(1 << 24) - 0.5) * 0.4;
    MetricsRow r;
    r.step = s;
    r.epoch = double(s) / 100.0;
    r.loss = 1.3 + 1.6 * std::exp(-double(s) / 60.0) + noise;
    double warm = 9;
    r.lr = s < warm ? 2e-5 * double(s) / warm : 2e-5 * double(steps - s) / double(steps - warm);
    if (s % 50 == 0) r.eval_loss = 1.35 + 1.6 * std::exp(-double(s) / 60.0) + 0.05;
    rows.push_back(r);
  }
  return rows;
}

TEST(LossChart, IsAPngOfTheRequestedSizeThatShowsTheData) {
  TempDir tmp;
  fs::path chart = tmp / "loss.png", empty = tmp / "empty.png";
  write_loss_chart(chart, realistic_run(300));
  write_loss_chart(empty, {});
  std::string png = slurp(chart), blank = slurp(empty);
  ASSERT_GT(png.size(), 24u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(png_size(png), (std::pair<uint32_t, uint32_t>{1200, 800}));
  EXPECT_EQ(png_size(blank), (std::pair<uint32_t, uint32_t>{1200, 800}));
  // The curves (hundreds of antialiased segments, points, a legend) cost far more bytes than
  // the axes and grid of the empty chart.
  EXPECT_GT(png.size(), blank.size() * 3 / 2) << png.size() << " vs " << blank.size();
  // Kept for a person to look at: SEQIT_KEEP_CHART=path copies it there.
  if (const char* keep = std::getenv("SEQIT_KEEP_CHART")) {
    spit(keep, png);
    spit(std::string(keep) + ".empty.png", blank);
  }

  // Another size, and the file is replaced in place.
  LossChartOptions small;
  small.width = 640;
  small.height = 480;
  write_loss_chart(chart, realistic_run(20), small);
  EXPECT_EQ(png_size(slurp(chart)), (std::pair<uint32_t, uint32_t>{640, 480}));
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_FALSE(e.path().filename().string().starts_with(".")) << "temporary left: " << e.path();
}

TEST(LossChart, DrawsDegenerateSeries) {
  TempDir tmp;
  std::vector<MetricsRow> one = {row(7)};
  write_loss_chart(tmp / "one.png", one);  // a single step: the axis still has a width
  std::vector<MetricsRow> flat = realistic_run(10);
  for (MetricsRow& r : flat) r.loss = 2.0, r.lr = 1e-4;  // constant loss and lr
  flat[3].loss = std::nan("");
  write_loss_chart(tmp / "flat.png", flat);
  LossChartOptions raw;
  raw.smoothing = 0;
  write_loss_chart(tmp / "raw.png", realistic_run(50), raw);
  for (const char* name : {"one.png", "flat.png", "raw.png"})
    EXPECT_EQ(png_size(slurp(tmp / name)), (std::pair<uint32_t, uint32_t>{1200, 800})) << name;
}

TEST(LossChart, ErrorsNameTheFile) {
  TempDir tmp;
  try {
    write_loss_chart(tmp / "no-such-folder" / "loss.png", realistic_run(5));
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("loss.png"));
  }
}

}  // namespace
}  // namespace seqit::train
