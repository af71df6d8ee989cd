#include "infer/sampler.h"

#include <fmt/format.h>

#include <cmath>

#include "util/error.h"

namespace seqit::infer {

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  if (!(params.temperature >= 0) || !std::isfinite(params.temperature)) {
    throw Error(fmt::format("temperature must be >= 0, got {}", params.temperature));
  }
  if (params.top_k < 0) throw Error(fmt::format("top-k must be >= 0, got {}", params.top_k));
  if (!(params.top_p > 0 && params.top_p <= 1))
    throw Error(fmt::format("top-p must be in (0, 1], got {}", params.top_p));
  if (!(params.min_p >= 0 && params.min_p <= 1))
    throw Error(fmt::format("min-p must be in [0, 1], got {}", params.min_p));
  if (!(params.repetition_penalty > 0)) {
    throw Error(fmt::format("repetition penalty must be > 0, got {}", params.repetition_penalty));
  }
  if (params.repetition_window < 0) throw Error("repetition window must be >= 0");
}

tokenizer::TokenId Sampler::sample(std::span<const float> logits,
                                   std::span<const tokenizer::TokenId> history) {
  tensor::SamplingConfig config;
  config.temperature = params_.temperature;
  config.top_k = params_.top_k;
  config.top_p = params_.top_p;
  config.min_p = params_.min_p;
  config.repetition_penalty = params_.repetition_penalty;
  std::span<const tokenizer::TokenId> previous = history;
  if (params_.repetition_window > 0 &&
      previous.size() > static_cast<size_t>(params_.repetition_window)) {
    previous = previous.last(static_cast<size_t>(params_.repetition_window));
  }
  if (params_.repetition_penalty == 1.0f) previous = {};
  return tensor::sample_token(logits, config, previous, rng_);
}

}  // namespace seqit::infer
