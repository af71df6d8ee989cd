#include "model/random_weights.h"

#include <cmath>
#include <string_view>

#include "tensor/sampling.h"

namespace seqit::model {
namespace {
uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}
}  // namespace

RandomWeights::RandomWeights(ModelConfig config, uint64_t seed, float std, StorageType preferred)
    : config_(std::move(config)), seed_(seed), std_(std), preferred_(preferred) {
  config_.validate("random weights");
}

void RandomWeights::read_f32(const WeightSpec& spec, float* out) const {
  uint64_t state = seed_ ^ fnv1a(spec.name);
  const int64_t n = spec.elements();
  const bool is_norm = spec.name.find("norm.weight") != std::string::npos;
  // Box-Muller: two uniforms in (0, 1] give two standard normals.
  for (int64_t i = 0; i < n; i += 2) {
    double u1 = (static_cast<double>(tensor::splitmix64(state) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = static_cast<double>(tensor::splitmix64(state) >> 11) * 0x1.0p-53;
    double r = std::sqrt(-2.0 * std::log(u1));
    double z0 = r * std::cos(2 * M_PI * u2), z1 = r * std::sin(2 * M_PI * u2);
    out[i] = static_cast<float>((is_norm ? 1.0 : 0.0) + std_ * z0);
    if (i + 1 < n) out[i + 1] = static_cast<float>((is_norm ? 1.0 : 0.0) + std_ * z1);
  }
}

}  // namespace seqit::model
