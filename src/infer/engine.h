// The generation engine: continuous batching over a model. Requests (prompt ids + sampling + stop
// rules) are added at any time; each step() admits waiting requests while there is room (their
// prompts are prefilled, in chunks when long), then decodes one token for every running request in
// one batched forward pass, samples, detokenises (valid UTF-8, stop strings held back) and reports
// what changed. A request leaves the batch when it finishes (EOS / end-of-turn token, stop string,
// max new tokens, context full) or is cancelled, and its place goes to the next waiting one.
//
// Results depend only on the request (prompt, sampling parameters, seed), never on what else is in
// the batch: every request has its own KV cache, positions and random generator.
//
// Thread safety: an Engine is used from one thread at a time. A server calls add()/cancel() and
// step() from its scheduling thread (or under one mutex); callbacks run inside step().
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "infer/constraint.h"
#include "infer/sampler.h"
#include "infer/text_stream.h"
#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace seqit::infer {

using tokenizer::TokenId;
using RequestId = int64_t;

struct StopParams {
  int64_t max_new_tokens = 256;
  std::vector<std::string>
      stop_strings;                  // generation ends before the first occurrence (not included)
  std::vector<TokenId> stop_tokens;  // end-of-turn tokens etc., in addition to the model's EOS
  bool ignore_eos = false;           // keep going past EOS (benchmarks)
};

// dead_end: a constraint admitted no token before it was complete (the tokenizer cannot spell what
// it needs); reported to OpenAI clients as "stop".
enum class FinishReason {
  none,
  length,
  stop_token,
  stop_string,
  context_full,
  cancelled,
  dead_end
};
std::string_view finish_reason_name(FinishReason reason);  // OpenAI's words: "length", "stop", ...

struct GenerationRequest {
  std::vector<TokenId> prompt;  // at least one token (usually starting with BOS)
  SamplingParams sampling;
  StopParams stop;
  // The reply is read on its own (a chat answer): a SentencePiece-style leading space of its first
  // token is dropped. Otherwise it continues the prompt's text and keeps the space, unless the
  // prompt has no text of its own (only special tokens such as BOS).
  bool text_standalone = false;
  // Report log p(token) of each generated token under the model's unmodified distribution (before
  // temperature, penalties and filters), as OpenAI's logprobs do.
  bool logprobs = false;
  // With logprobs: also the `top_logprobs` (0..20) most likely tokens of each step under the same
  // distribution, most likely first.
  int top_logprobs = 0;
  // Constrained decoding: the generated text stays inside this language (infer/constraint.h) and
  // the request finishes (reason stop) as soon as it is complete; the end tokens are allowed only
  // where the text is in the language. Tokens that would leave no room to finish within
  // max_new_tokens are masked too. Needs an engine with a tokenizer.
  std::shared_ptr<const Constraint> constraint;
  // Called inside step() with each new piece of text (valid UTF-8; never text after a stop string).
  std::function<void(std::string_view text)> on_text;
};

struct GenerationResult {
  RequestId id = 0;
  std::vector<TokenId> tokens;        // generated tokens (a final stop token is not included)
  std::vector<float> token_logprobs;  // one per token when the request asked for logprobs
  // With top_logprobs: per token, the most likely tokens of that step and their log-probabilities.
  std::vector<std::vector<std::pair<TokenId, float>>> top_logprobs;
  std::string text;  // their text, cut before a stop string
  FinishReason finish = FinishReason::none;
  int64_t prompt_tokens = 0;
  std::string stop_string;  // the stop string that ended it, if any
};

// What one step did for one request.
struct StepEvent {
  RequestId id = 0;
  std::vector<TokenId> tokens;  // sampled this step (at most one today)
  std::vector<float> logprobs;  // their log-probabilities, when the request asked for them
  std::vector<std::vector<std::pair<TokenId, float>>> top_logprobs;  // with top_logprobs
  std::string text;                                                  // text released this step
  bool finished = false;
  GenerationResult result;  // complete when finished
};

struct EngineOptions {
  int64_t max_batch = 16;         // requests decoded together
  int64_t max_step_tokens = 512;  // tokens per forward pass (decode tokens + prefill chunks)
  int64_t max_context = 0;        // positions per request; 0 = the model's context length
};

class Engine {
 public:
  // `tokenizer` may be null: then no text is produced (token ids only, no stop strings).
  Engine(const model::LlamaModel& model, const tokenizer::Tokenizer* tokenizer,
         EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request; it joins the batch at a following step. Throws seqit::Error for an empty
  // prompt, ids outside the vocabulary, or a prompt that leaves no room to generate.
  RequestId add(GenerationRequest request);
  // Stops a queued or running request; its finishing event (reason cancelled) comes with the next
  // step. Unknown or finished ids are ignored.
  void cancel(RequestId id);
  // One scheduling + forward + sampling round. Returns an event for every request that produced a
  // token, released text or finished.
  std::vector<StepEvent> step();
  // True when no request is queued or running.
  bool idle() const;
  size_t running() const { return running_.size(); }
  size_t waiting() const { return waiting_.size(); }

  // Convenience: runs `requests` to completion together; results in the same order.
  std::vector<GenerationResult> generate(std::vector<GenerationRequest> requests);

  const model::LlamaModel& model() const { return model_; }
  // Time spent building constrained rows (token masks, first computations of a state's mask
  // included) since the engine was made: the cost of constrained decoding beyond sampling.
  double constraint_seconds() const { return constraint_seconds_; }

 private:
  struct Sequence;
  void finish(Sequence& s, FinishReason reason, StepEvent& event);
  // Samples from `row` masked to what s's constraint allows; nullopt at a dead end.
  std::optional<TokenId> sample_constrained(Sequence& s, std::span<const float> row,
                                            int32_t* next_state);

  const model::LlamaModel& model_;
  const tokenizer::Tokenizer* tokenizer_;
  std::unique_ptr<TokenTrie> trie_;  // built for the first constrained request
  std::vector<float> masked_;        // a constrained row's logits
  double constraint_seconds_ = 0;
  EngineOptions options_;
  std::vector<TokenId> eos_ids_;
  RequestId next_id_ = 1;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  model::ForwardWorkspace workspace_;
  tensor::Tensor logits_;
};

}  // namespace seqit::infer
