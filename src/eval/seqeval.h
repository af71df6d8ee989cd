// SeqEval (SIT_SPEC §4): the 805 sequential instructions of seqeval/seqEval.json, answered by the
// model under test and judged by another model, both through llm::Backend.
//
//   1. responses  (seqeval_responses) the instruction as the user message, greedy, 2048 tokens,
//                 the reply stripped of surrounding newlines (§4.3);
//   2. judging    (seqeval) four judge requests per item, on the judge backend (T=0): following
//                 (FOLLOWED: YES/NO), quality (SCORE: 1-5), and pairwise against a reference
//                 model's output for the same AlpacaEval instruction (alpaca_eval/
//                 <reference>_model_outputs.json, same order), once in each presentation order
//                 (eval/judge.h). A reply that does not parse is asked once more with a new seed at
//                 temperature 0.7 (at T=0 a new seed would give the same reply); if that one does
//                 not parse either, the judgement is counted as unparsable and reported.
//
// Per item: followed, quality, preference (win 1, tie 0.5 — an order-inconsistent pair is a tie —
// loss 0), each only when parsable, and the unparsable flags; grouped by iteration level (1-4).
// Over the run: the raw and the length-controlled win rate (characters of response − reference).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eval/task.h"

namespace seqit::eval {

// The generation step (a plain task: it needs only the model's backend).
std::unique_ptr<Task> make_seqeval_responses(const TaskOptions& options);

struct SeqEvalJudgeOptions {
  std::string reference = "gpt4_1106_preview";  // alpaca_eval/<reference>_model_outputs.json
  std::string judge_model;                      // sent with judge requests ("": the default)
  int max_tokens = 1024;                        // per judge reply
  std::string judge_backend;                    // for the report
  // Send each judgement's answer format as a regex response format (eval/judge.h): the backend
  // then cannot return an unparsable reply (the local engine enforces it; over HTTP only servers
  // with vLLM's guided_regex accept it).
  bool constrained = false;
  // Ask the pairwise judgements for their top token log-probabilities and report AlpacaEval 2's
  // weighted win rate next to the counted one (needs a judge that returns chat logprobs).
  bool logprobs = false;
};

// The judging step over the responses of step 1, in seqEval.json order (responses[i] answers
// item i; an item whose response is missing is left out).
std::unique_ptr<Task> make_seqeval_judge(const TaskOptions& options,
                                         const std::vector<std::optional<std::string>>& responses,
                                         const SeqEvalJudgeOptions& judge);

}  // namespace seqit::eval
