// Seeded orders that are the same on every platform and standard library (std::shuffle and the
// std distributions are not specified bit for bit): SplitMix64 and a Fisher-Yates shuffle on it.
// The trainer's epoch orders, the Seq-Instruct few-shot orders and the synthetic world all stand on
// these, so a resumed run and a rerun with the same seed see the same data in the same order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace seqit {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  // The generator's whole state (a generator made with it continues the same stream).
  uint64_t state() const { return state_; }
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n > 0 (rejection sampling: no modulo bias).
  uint64_t below(uint64_t n) {
    const uint64_t limit = ~uint64_t(0) - (~uint64_t(0) % n);
    uint64_t x;
    do x = next();
    while (x >= limit);
    return x % n;
  }

 private:
  uint64_t state_;
};

// One stream per (seed, purpose, epoch): independent orders for each epoch and each use.
inline uint64_t stream_seed(uint64_t seed, uint64_t purpose, uint64_t epoch) {
  SplitMix64 a(seed ^ (purpose * 0xD1B54A32D192ED03ull));
  uint64_t s = a.next();
  SplitMix64 b(s ^ (epoch * 0x8CB92BA72F3D8DD7ull + 0x632BE59BD9B4E019ull));
  return b.next();
}

template <typename T>
void seeded_shuffle(std::vector<T>& items, SplitMix64& rng) {
  for (size_t i = items.size(); i > 1; --i) {
    size_t j = size_t(rng.below(i));
    std::swap(items[i - 1], items[j]);
  }
}

inline std::vector<size_t> shuffled_indices(size_t n, SplitMix64& rng) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t(0));
  seeded_shuffle(order, rng);
  return order;
}

}  // namespace seqit
