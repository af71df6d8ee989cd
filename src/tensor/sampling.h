// Logits post-processing for sampling, on one host row of logits (f32, vocabulary-sized). infer/
// builds its samplers (greedy, temperature, top-k, top-p, min-p, repetition penalty, seeds) from
// these.
//
// Order of processing, as Hugging Face transformers' generate() does it: repetition penalty ->
// temperature -> top-k -> top-p -> min-p, then a draw from the renormalised distribution.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace seqit::tensor {

struct SamplingConfig {
  float temperature = 1.0f;         // 0 = greedy (argmax after the repetition penalty)
  int64_t top_k = 0;                // 0 = off
  float top_p = 1.0f;               // 1 = off; keep the smallest set with cumulative prob >= top_p
  float min_p = 0.0f;               // 0 = off; drop tokens with prob < min_p · max prob
  float repetition_penalty = 1.0f;  // 1 = off; CTRL-style: logit > 0 ? logit / p : logit · p
};

// One step of SplitMix64 (Steele, Lea, Flood 2014): advances `state` and returns 64 well-mixed
// bits. Seeds Rng; also a stateless-enough stream for deterministic random weights.
uint64_t splitmix64(uint64_t& state);

// A small, fast, seedable generator (xoshiro256**), whose state can be saved and restored so a
// resumed generation draws exactly what the uninterrupted one would have.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t next_u64();
  double next_double();  // uniform in [0, 1), 53 random bits
  std::vector<uint64_t> state() const;
  void set_state(std::span<const uint64_t> state);  // 4 words from state()

 private:
  uint64_t s_[4];
};

// Index of the largest logit (the first one on ties); -1 for an empty row.
int32_t argmax(std::span<const float> logits);

// For every distinct token id in `previous`: logit > 0 ? logit / penalty : logit · penalty.
// Ids outside the row are ignored.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> previous,
                              float penalty);

// The probabilities sample_token draws from: penalties, temperature and the filters applied, then a
// softmax over the surviving tokens (filtered tokens get exactly 0). For temperature 0: a one-hot
// at the argmax.
std::vector<float> sampling_probabilities(std::span<const float> logits,
                                          const SamplingConfig& config,
                                          std::span<const int32_t> previous = {});

// Draws one token id (uses one rng.next_double() unless temperature is 0).
int32_t sample_token(std::span<const float> logits, const SamplingConfig& config,
                     std::span<const int32_t> previous, Rng& rng);

}  // namespace seqit::tensor
