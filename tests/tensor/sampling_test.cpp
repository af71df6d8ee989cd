// Sampling math: each filter against hand-computed distributions, seeded draws, rng state round
// trip.
#include "tensor/sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "util/error.h"

namespace seqit::tensor {
namespace {

std::vector<double> softmax(const std::vector<double>& z) {
  double mx = -INFINITY, sum = 0;
  for (double v : z) mx = std::max(mx, v);
  std::vector<double> p(z.size());
  for (size_t i = 0; i < z.size(); ++i) sum += (p[i] = std::exp(z[i] - mx));
  for (double& v : p) v /= sum;
  return p;
}

void expect_probs(const std::vector<float>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << "token " << i;
}

const std::vector<float> kLogits{2.0f, 1.0f, 0.5f, -1.0f, 3.0f, 0.0f};

TEST(Sampling, TemperatureAndArgmax) {
  EXPECT_EQ(argmax(kLogits), 4);
  EXPECT_EQ(argmax(std::vector<float>{1.0f, 5.0f, 5.0f}), 1);  // first on ties
  SamplingConfig cfg;
  cfg.temperature = 0.5f;
  std::vector<double> z;
  for (float l : kLogits) z.push_back(l / 0.5);
  expect_probs(sampling_probabilities(kLogits, cfg), softmax(z));
  cfg.temperature = 0.0f;
  Rng rng(1);
  EXPECT_EQ(sample_token(kLogits, cfg, {}, rng), 4);
}

TEST(Sampling, TopKTopPMinP) {
  SamplingConfig cfg;
  cfg.top_k = 2;  // keeps logits 3.0 (id 4) and 2.0 (id 0)
  std::vector<double> want(6, 0.0);
  const std::vector<double> two = softmax({2.0, 3.0});
  want[0] = two[0];
  want[4] = two[1];
  expect_probs(sampling_probabilities(kLogits, cfg), want);

  cfg = SamplingConfig();
  const std::vector<double> full = softmax({2.0, 1.0, 0.5, -1.0, 3.0, 0.0});
  // Sorted: id4 .6 , id0 .22, id1 .08 ...; top_p 0.7 keeps id4 (0.6 < 0.7) and id0 (0.6+.22 >= .7
  // stop).
  cfg.top_p = 0.7f;
  const std::vector<double> kept = softmax({2.0, 3.0});
  want.assign(6, 0.0);
  want[0] = kept[0];
  want[4] = kept[1];
  ASSERT_LT(full[4], 0.7);
  ASSERT_GE(full[4] + full[0], 0.7);
  expect_probs(sampling_probabilities(kLogits, cfg), want);

  cfg = SamplingConfig();
  cfg.min_p = 0.1f;  // drop tokens below 0.1 · p(id4)
  want.assign(6, 0.0);
  std::vector<double> zs;
  std::vector<size_t> ids;
  for (size_t i = 0; i < 6; ++i)
    if (full[i] >= 0.1 * full[4]) {
      zs.push_back(kLogits[i]);
      ids.push_back(i);
    }
  const std::vector<double> renorm = softmax(zs);
  for (size_t j = 0; j < ids.size(); ++j) want[ids[j]] = renorm[j];
  expect_probs(sampling_probabilities(kLogits, cfg), want);
  EXPECT_LT(ids.size(), 6u);
}

TEST(Sampling, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  std::vector<float> l = kLogits;
  apply_repetition_penalty(l, std::vector<int32_t>{4, 3, 4, 99, -1}, 2.0f);
  EXPECT_FLOAT_EQ(l[4], 1.5f);   // 3 / 2, once despite the repeat
  EXPECT_FLOAT_EQ(l[3], -2.0f);  // -1 * 2
  EXPECT_FLOAT_EQ(l[0], 2.0f);
  SamplingConfig cfg;
  cfg.temperature = 0.0f;
  cfg.repetition_penalty = 3.0f;
  Rng rng(0);
  EXPECT_EQ(sample_token(kLogits, cfg, std::vector<int32_t>{4}, rng), 0);  // 3/3 = 1 < 2
}

TEST(Sampling, SeededDrawsFollowTheDistributionAndResume) {
  SamplingConfig cfg;
  cfg.top_k = 3;
  const std::vector<float> probs = sampling_probabilities(kLogits, cfg);
  Rng rng(42);
  std::vector<int> counts(6, 0);
  const int draws = 20000;
  for (int i = 0; i < draws; ++i)
    ++counts[static_cast<size_t>(sample_token(kLogits, cfg, {}, rng))];
  for (size_t i = 0; i < 6; ++i) {
    // Binomial standard deviation at most sqrt(0.25/20000) = 0.0035: 5 sigma.
    EXPECT_NEAR(counts[i] / static_cast<double>(draws), probs[i], 0.018) << i;
  }
  // Same seed, same tokens; a saved state resumes the exact sequence.
  Rng a(7), b(7);
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(sample_token(kLogits, cfg, {}, a), sample_token(kLogits, cfg, {}, b));
  const std::vector<uint64_t> saved = a.state();
  const int32_t next = sample_token(kLogits, cfg, {}, a);
  Rng c(999);
  c.set_state(saved);
  EXPECT_EQ(sample_token(kLogits, cfg, {}, c), next);
  const double u = Rng(3).next_double();
  EXPECT_GE(u, 0.0);
  EXPECT_LT(u, 1.0);
}

TEST(Sampling, RejectsInvalidSettings) {
  SamplingConfig cfg;
  cfg.top_p = 0.0f;
  EXPECT_THROW(sampling_probabilities(kLogits, cfg), Error);
  cfg = SamplingConfig();
  cfg.temperature = -1.0f;
  EXPECT_THROW(sampling_probabilities(kLogits, cfg), Error);
  cfg = SamplingConfig();
  cfg.repetition_penalty = 0.0f;
  EXPECT_THROW(sampling_probabilities(kLogits, cfg), Error);
}

}  // namespace
}  // namespace seqit::tensor
