#include "tensor/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <unordered_set>

#include "util/error.h"

namespace seqit::tensor {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

namespace {
inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

void check_config(const SamplingConfig& c) {
  if (!(c.temperature >= 0.0f) || !std::isfinite(c.temperature)) {
    throw Error("sampling: temperature must be >= 0, got " + std::to_string(c.temperature));
  }
  if (c.top_k < 0) throw Error("sampling: top_k must be >= 0, got " + std::to_string(c.top_k));
  if (!(c.top_p > 0.0f && c.top_p <= 1.0f))
    throw Error("sampling: top_p must be in (0, 1], got " + std::to_string(c.top_p));
  if (!(c.min_p >= 0.0f && c.min_p < 1.0f))
    throw Error("sampling: min_p must be in [0, 1), got " + std::to_string(c.min_p));
  if (!(c.repetition_penalty > 0.0f)) {
    throw Error("sampling: repetition_penalty must be > 0, got " +
                std::to_string(c.repetition_penalty));
  }
}
}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (uint64_t& w : s_) w = splitmix64(x);
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::next_double() {
  return static_cast<double>(next_u64() >> 11) * 0x1p-53;
}

std::vector<uint64_t> Rng::state() const {
  return {s_[0], s_[1], s_[2], s_[3]};
}

void Rng::set_state(std::span<const uint64_t> state) {
  if (state.size() != 4)
    throw Error("sampling: an Rng state has 4 words, got " + std::to_string(state.size()));
  std::copy(state.begin(), state.end(), s_);
}

int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) return -1;
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> previous,
                              float penalty) {
  if (penalty == 1.0f) return;
  std::unordered_set<int32_t> seen;
  for (int32_t id : previous) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size() || !seen.insert(id).second) continue;
    float& l = logits[static_cast<size_t>(id)];
    l = l > 0 ? l / penalty : l * penalty;
  }
}

std::vector<float> sampling_probabilities(std::span<const float> logits,
                                          const SamplingConfig& config,
                                          std::span<const int32_t> previous) {
  check_config(config);
  const size_t n = logits.size();
  std::vector<float> work(logits.begin(), logits.end());
  apply_repetition_penalty(work, previous, config.repetition_penalty);
  std::vector<float> probs(n, 0.0f);
  if (n == 0) return probs;
  if (config.temperature == 0.0f) {
    probs[static_cast<size_t>(argmax(work))] = 1.0f;
    return probs;
  }
  std::vector<double> z(n);
  for (size_t i = 0; i < n; ++i) z[i] = static_cast<double>(work[i]) / config.temperature;
  std::vector<bool> keep(n, true);
  for (size_t i = 0; i < n; ++i) keep[i] = !std::isnan(z[i]) && z[i] != -INFINITY;
  if (config.top_k > 0 && static_cast<size_t>(config.top_k) < n) {
    // Keep logits >= the k-th largest (ties at the threshold survive, as in transformers).
    std::vector<double> sorted = z;
    std::nth_element(sorted.begin(), sorted.begin() + (config.top_k - 1), sorted.end(),
                     std::greater<double>());
    const double threshold = sorted[static_cast<size_t>(config.top_k - 1)];
    for (size_t i = 0; i < n; ++i) keep[i] = keep[i] && z[i] >= threshold;
  }
  auto softmax_kept = [&](std::vector<double>& p) {
    double mx = -INFINITY;
    for (size_t i = 0; i < n; ++i)
      if (keep[i]) mx = std::max(mx, z[i]);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      p[i] = keep[i] ? std::exp(z[i] - mx) : 0.0;
      sum += p[i];
    }
    for (double& v : p) v /= sum;
  };
  std::vector<double> p(n);
  if (std::none_of(keep.begin(), keep.end(), [](bool k) { return k; })) {
    throw Error("sampling: every logit is -inf or NaN");
  }
  if (config.top_p < 1.0f) {
    softmax_kept(p);
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
    // Keep the most probable tokens until their mass reaches top_p (at least one token).
    double cumulative = 0;
    for (size_t rank = 0; rank < n; ++rank) {
      const size_t i = order[rank];
      if (rank > 0 && cumulative >= config.top_p) keep[i] = false;
      cumulative += p[i];
    }
  }
  if (config.min_p > 0.0f) {
    softmax_kept(p);
    const double top = *std::max_element(p.begin(), p.end());
    for (size_t i = 0; i < n; ++i) keep[i] = keep[i] && p[i] >= config.min_p * top;
  }
  softmax_kept(p);
  for (size_t i = 0; i < n; ++i) probs[i] = static_cast<float>(p[i]);
  return probs;
}

int32_t sample_token(std::span<const float> logits, const SamplingConfig& config,
                     std::span<const int32_t> previous, Rng& rng) {
  if (logits.empty()) throw Error("sampling: empty logits");
  if (config.temperature == 0.0f) {
    check_config(config);
    std::vector<float> work(logits.begin(), logits.end());
    apply_repetition_penalty(work, previous, config.repetition_penalty);
    return argmax(work);
  }
  const std::vector<float> probs = sampling_probabilities(logits, config, previous);
  const double u = rng.next_double();
  double cumulative = 0;
  int32_t last = -1;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0.0f) continue;
    cumulative += probs[i];
    last = static_cast<int32_t>(i);
    if (u < cumulative) return last;
  }
  return last;  // rounding left u above the total: the last surviving token
}

}  // namespace seqit::tensor
