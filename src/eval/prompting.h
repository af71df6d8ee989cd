// Building few-shot generation requests the same way for every task, in the three layouts a report
// names: chat with the exemplars in one user turn, chat with one user/assistant turn pair per
// exemplar, or a raw completion prompt (no chat template) that ends with the answer cue.
#pragma once

#include <string>
#include <vector>

#include "eval/task.h"
#include "llm/backend.h"

namespace seqit::eval {

struct Shot {
  std::string question;  // the whole user side, cue-less: "Question: ..."
  std::string answer;    // what the assistant says
};

struct FewShotPrompt {
  std::string header;  // instruction before the exemplars ("" for none)
  std::vector<Shot> shots;
  std::string question;  // the item, formatted like the shots' questions
  std::string cue;       // "Answer:" — ends a completion prompt (and each completion exemplar)
  std::string separator = "\n\n";  // between exemplars in one text
};

// A chat request (options.chat) or a completion request (after fit_prompt) whose prompt is
//   header + sep + (question + "\n" + cue + " " + answer + sep)... + question + "\n" + cue
// In chat, the cue is not written: the assistant's reply is the answer.
llm::Request few_shot_request(const FewShotPrompt& prompt, const TaskOptions& options,
                              llm::SamplingParams params);

// The prompt with exemplars dropped from the last until its request fits
// options.max_prompt_chars (unchanged when that is 0). few_shot_request applies it; tasks call it
// to report how many shots an item kept.
FewShotPrompt fit_prompt(FewShotPrompt prompt, const TaskOptions& options);
// Characters a request sends: the prompt, or every message's content.
size_t request_chars(const llm::Request& request);

// "chat, exemplars in one user turn" / "chat, one turn pair per exemplar" / "completion (no chat
// template)".
std::string prompt_layout(const TaskOptions& options);

// Greedy decoding with the given token budget (options.max_tokens overrides it).
llm::SamplingParams greedy(const TaskOptions& options, int default_max_tokens,
                           std::vector<std::string> completion_stops = {});

}  // namespace seqit::eval
