// The world's only source of randomness: SplitMix64 (Steele, Lea & Flood 2014; the seeder of
// xoshiro), with the few draws the generators need written out here. std:: distributions are
// avoided on purpose: their output differs between standard libraries, and the synthetic world
// must give the same items for the same seed on every machine.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "util/random.h"

namespace seqit::synth {

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}

  // The next 64 raw bits (SplitMix64).
  uint64_t next();
  // Uniform in [0, n), without modulo bias (rejection); n > 0.
  uint64_t below(uint64_t n);
  // Uniform in [lo, hi] (inclusive); lo <= hi.
  int64_t between(int64_t lo, int64_t hi);
  // Uniform in [0, 1) with 53 random bits.
  double unit();
  // True with probability p.
  bool chance(double p) { return unit() < p; }
  // An index drawn with probability proportional to weights[i] (weights >= 0, sum > 0).
  size_t weighted(const std::vector<double>& weights);

  // Fisher–Yates with below(), so that a shuffle is portable too.
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }

  // An independent stream for sub-generator `salt` (e.g. one per split), so that adding draws to
  // one split does not shift another.
  Rng fork(uint64_t salt) const;

 private:
  SplitMix64 gen_;  // util/random.h: the project's one SplitMix64
};

// 64-bit FNV-1a: the portable hash behind the documented held-out input rule.
uint64_t fnv1a64(std::string_view s);

}  // namespace seqit::synth
