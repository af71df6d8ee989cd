// Samplers against their definitions: empirical frequencies of many seeded draws compared with the
// distribution computed here in fp64 from the published definitions (HF transformers' warpers).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "infer/sampler.h"
#include "util/error.h"

using namespace seqit::infer;

namespace {
const std::vector<float> kLogits = {2.0f, 1.5f, 1.2f, 0.5f, 0.0f, -0.3f, -1.0f, -2.5f, 3.1f, 0.9f};

// The target distribution, step by step as defined: temperature, top-k, top-p, min-p.
std::vector<double> expected(const SamplingParams& p, std::vector<double> logits) {
  const size_t V = logits.size();
  for (double& l : logits) l /= p.temperature;
  std::vector<size_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] > logits[b]; });
  std::vector<bool> keep(V, true);
  if (p.top_k > 0) {
    for (size_t r = static_cast<size_t>(p.top_k); r < V; ++r) keep[order[r]] = false;
  }
  auto softmax = [&]() {
    std::vector<double> pr(V, 0.0);
    double mx = -1e300, z = 0;
    for (size_t i = 0; i < V; ++i) {
      if (keep[i]) mx = std::max(mx, logits[i]);
    }
    for (size_t i = 0; i < V; ++i) {
      if (keep[i]) z += (pr[i] = std::exp(logits[i] - mx));
    }
    for (double& x : pr) x /= z;
    return pr;
  };
  if (p.top_p < 1) {
    // Smallest top set whose probability reaches top_p.
    std::vector<double> pr = softmax();
    double cum = 0;
    for (size_t r = 0; r < V; ++r) {
      if (!keep[order[r]]) continue;
      if (cum >= p.top_p) keep[order[r]] = false;
      cum += pr[order[r]];
    }
  }
  if (p.min_p > 0) {
    std::vector<double> pr = softmax();
    double top = *std::max_element(pr.begin(), pr.end());
    for (size_t i = 0; i < V; ++i) {
      if (pr[i] < p.min_p * top) keep[i] = false;
    }
  }
  return softmax();
}

void check_frequencies(const SamplingParams& params, const std::string& what) {
  const int draws = 40000;
  std::vector<int> counts(kLogits.size(), 0);
  Sampler sampler(params);
  for (int i = 0; i < draws; ++i) ++counts[sampler.sample(kLogits, {})];
  std::vector<double> want = expected(params, std::vector<double>(kLogits.begin(), kLogits.end()));
  for (size_t t = 0; t < kLogits.size(); ++t) {
    double freq = static_cast<double>(counts[t]) / draws;
    if (want[t] == 0) {
      EXPECT_EQ(counts[t], 0) << what << ": token " << t << " is filtered out";
    } else {
      // 5 standard deviations of a binomial proportion: fails by chance with probability ~1e-6.
      double sigma = std::sqrt(want[t] * (1 - want[t]) / draws);
      EXPECT_NEAR(freq, want[t], 5 * sigma + 1e-4) << what << ": token " << t;
    }
  }
}
}  // namespace

TEST(Sampler, GreedyTakesTheArgmax) {
  Sampler s({});
  EXPECT_EQ(s.sample(kLogits, {}), 8);
}

TEST(Sampler, TemperatureAloneIsTheSoftmax) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 1;
  check_frequencies(p, "t=1");
  p.temperature = 0.5f;
  p.seed = 2;
  check_frequencies(p, "t=0.5");
  p.temperature = 2.0f;
  p.seed = 3;
  check_frequencies(p, "t=2");
}

TEST(Sampler, TopKTopPAndMinPFilterAsDefined) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 3;
  p.seed = 4;
  check_frequencies(p, "top-k 3");
  p.top_k = 0;
  p.top_p = 0.7f;
  p.seed = 5;
  check_frequencies(p, "top-p 0.7");
  p.top_p = 1.0f;
  p.min_p = 0.2f;
  p.seed = 6;
  check_frequencies(p, "min-p 0.2");
  p.temperature = 0.8f;
  p.top_k = 5;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.seed = 7;
  check_frequencies(p, "all together");
}

TEST(Sampler, RepetitionPenaltyLooksAtTheRecentWindow) {
  // Penalty 3 on token 8 (logit 3.1 -> 1.03): the greedy choice moves to token 0 (2.0).
  SamplingParams p;
  p.repetition_penalty = 3.0f;
  p.repetition_window = 2;
  Sampler s(p);
  std::vector<int32_t> recent = {1, 8};
  EXPECT_EQ(s.sample(kLogits, recent), 0);
  std::vector<int32_t> old = {8, 1, 2};  // 8 is outside the window of 2
  EXPECT_EQ(s.sample(kLogits, old), 8);
  // A negative logit is multiplied: token 7 (-2.5) becomes even less likely, never chosen greedily.
}

TEST(Sampler, SameSeedSameDrawsDifferentSeedDifferentDraws) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 1234;
  Sampler a(p), b(p);
  p.seed = 99;
  Sampler c(p);
  std::vector<int32_t> da, db, dc;
  for (int i = 0; i < 200; ++i) {
    da.push_back(a.sample(kLogits, {}));
    db.push_back(b.sample(kLogits, {}));
    dc.push_back(c.sample(kLogits, {}));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(Sampler, InvalidParametersAreErrors) {
  SamplingParams p;
  p.top_p = 0.0f;
  EXPECT_THROW(Sampler{p}, seqit::Error);
  p = {};
  p.temperature = -1;
  EXPECT_THROW(Sampler{p}, seqit::Error);
  p = {};
  p.repetition_penalty = 0;
  EXPECT_THROW(Sampler{p}, seqit::Error);
}
