// Log-likelihood of given continuations (multiple-choice evaluation, perplexity): for each request,
// Σ log p(continuation[i] | context, continuation[<i]) under the model, and whether every
// continuation token is the model's greedy choice. Requests are packed into batched forward passes.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace seqit::infer {

struct ScoreRequest {
  std::vector<tokenizer::TokenId> context;       // at least one token (usually BOS + prompt)
  std::vector<tokenizer::TokenId> continuation;  // at least one token
};

struct ScoreResult {
  double logprob = 0;                 // sum over the continuation tokens
  bool is_greedy = true;              // every continuation token was the argmax
  std::vector<float> token_logprobs;  // one per continuation token
};

struct ScoreOptions {
  int64_t max_step_tokens = 1024;  // tokens per forward pass
};

// Throws seqit::Error for an empty context or continuation, ids outside the vocabulary, or a
// request longer than the model's context.
std::vector<ScoreResult> score_continuations(const model::LlamaModel& model,
                                             std::span<const ScoreRequest> requests,
                                             const ScoreOptions& options = {});

// Requests that follow one shared context (a multiple-choice question's prompt): the shared
// tokens run once and each request continues from their cache, so a question with four answers
// costs one prompt, not four. Each request's `context` holds the tokens after the shared ones, at
// least one (the position whose logits predict its first continuation token).
struct ScoreGroup {
  std::vector<tokenizer::TokenId> shared;  // may be empty
  std::vector<ScoreRequest> requests;
};

// Scores several groups together: forward passes are filled to max_step_tokens with the shared
// prompts of several groups, then with one request of every group at a time (each group's cache
// cut back to its shared prompt between them). results[g][i] answers groups[g].requests[i].
std::vector<std::vector<ScoreResult>> score_groups(const model::LlamaModel& model,
                                                   std::span<const ScoreGroup> groups,
                                                   const ScoreOptions& options = {});

}  // namespace seqit::infer
