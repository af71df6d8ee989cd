// Choosing the next token from a row of logits: greedy, or sampled after repetition penalty,
// temperature, top-k, top-p and min-p, with a per-request seeded generator so a request's output
// depends only on its seed. The arithmetic is tensor/sampling.h's; this holds the per-request
// state.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tensor/sampling.h"
#include "tokenizer/tokenizer.h"

namespace seqit::infer {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy (argmax)
  int32_t top_k = 0;         // keep the k most likely tokens; 0 = all
  float top_p = 1.0f;        // keep the smallest set whose probability reaches p; 1 = all
  float min_p = 0.0f;        // drop tokens below min_p x the top probability; 0 = off
  float repetition_penalty =
      1.0f;  // CTRL/HF: logits of tokens already seen divided (>0) or multiplied (<0)
  int32_t repetition_window =
      64;  // how many recent tokens (prompt included) the penalty looks at; 0 = all
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks the next token from `logits`; `history` = the request's tokens so far (prompt +
  // generated), whose last repetition_window entries the repetition penalty looks at.
  tokenizer::TokenId sample(std::span<const float> logits,
                            std::span<const tokenizer::TokenId> history);
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  tensor::Rng rng_;
};

}  // namespace seqit::infer
