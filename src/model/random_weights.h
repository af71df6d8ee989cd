// Deterministic random weights for a config: for tests, benchmarks and training from scratch. Each
// weight's values depend only on (seed, weight name), so any subset can be produced in any order.
#pragma once

#include <cstdint>

#include "model/checkpoint.h"

namespace seqit::model {

class RandomWeights : public WeightSource {
 public:
  // Linear and embedding weights ~ N(0, std^2); norm weights ~ 1 + N(0, (std)^2); biases ~ N(0,
  // std^2).
  RandomWeights(ModelConfig config, uint64_t seed, float std = 0.02f,
                StorageType preferred = StorageType::f32);
  const ModelConfig& config() const override { return config_; }
  void read_f32(const WeightSpec& spec, float* out) const override;
  StorageType preferred_type() const override { return preferred_; }

 private:
  ModelConfig config_;
  uint64_t seed_;
  float std_;
  StorageType preferred_;
};

}  // namespace seqit::model
