#include "synth/rng.h"

#include <string_view>

#include "util/error.h"

namespace seqit::synth {

uint64_t Rng::next() {
  return gen_.next();
}

uint64_t Rng::below(uint64_t n) {
  if (n == 0) throw Error("synth::Rng::below: empty range");
  return gen_.below(n);
}

int64_t Rng::between(int64_t lo, int64_t hi) {
  if (lo > hi) throw Error("synth::Rng::between: lo > hi");
  return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo) + 1));
}

double Rng::unit() {
  return static_cast<double>(next() >> 11) * 0x1.0p-53;
}

size_t Rng::weighted(const std::vector<double>& weights) {
  double total = 0;
  for (double w : weights) total += w;
  if (!(total > 0)) throw Error("synth::Rng::weighted: weights sum to zero");
  double x = unit() * total;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (x < weights[i]) return i;
    x -= weights[i];
  }
  // Rounding left x at the very top: the last positive weight.
  for (size_t i = weights.size(); i > 0; --i)
    if (weights[i - 1] > 0) return i - 1;
  return 0;
}

Rng Rng::fork(uint64_t salt) const {
  Rng r(gen_.state() ^ (salt * 0xD1B54A32D192ED03ull));
  r.next();
  return Rng(r.next());
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace seqit::synth
