#include "eval/prompting.h"

namespace seqit::eval {

namespace {

llm::Request render(const FewShotPrompt& p, const TaskOptions& options,
                    llm::SamplingParams params) {
  llm::Request r;
  r.model = options.model;
  r.params = std::move(params);
  if (!options.chat) {
    r.kind = llm::RequestKind::completion;
    std::string text;
    if (!p.header.empty()) text += p.header + p.separator;
    for (const Shot& s : p.shots) text += s.question + "\n" + p.cue + " " + s.answer + p.separator;
    text += p.question + "\n" + p.cue;
    r.prompt = std::move(text);
    return r;
  }
  r.kind = llm::RequestKind::chat;
  r.params.stop.clear();  // completion stops guard the next exemplar; a chat reply ends by itself
  if (options.shots_as_turns) {
    std::string lead = p.header.empty() ? std::string() : p.header + p.separator;
    for (const Shot& s : p.shots) {
      r.messages.push_back({"user", lead + s.question});
      r.messages.push_back({"assistant", s.answer});
      lead.clear();
    }
    r.messages.push_back({"user", lead + p.question});
    return r;
  }
  std::string text;
  if (!p.header.empty()) text += p.header + p.separator;
  for (const Shot& s : p.shots) text += s.question + "\n" + p.cue + " " + s.answer + p.separator;
  text += p.question;
  r.messages.push_back({"user", std::move(text)});
  return r;
}

}  // namespace

size_t request_chars(const llm::Request& request) {
  size_t n = request.prompt.size();
  for (const auto& m : request.messages) n += m.content.size();
  return n;
}

FewShotPrompt fit_prompt(FewShotPrompt prompt, const TaskOptions& options) {
  if (options.max_prompt_chars <= 0) return prompt;
  const size_t budget = static_cast<size_t>(options.max_prompt_chars);
  while (!prompt.shots.empty() && request_chars(render(prompt, options, {})) > budget)
    prompt.shots.pop_back();
  return prompt;
}

llm::Request few_shot_request(const FewShotPrompt& p, const TaskOptions& options,
                              llm::SamplingParams params) {
  return render(fit_prompt(p, options), options, std::move(params));
}

std::string prompt_layout(const TaskOptions& options) {
  if (!options.chat) return "completion (no chat template), ends with the answer cue";
  return options.shots_as_turns ? "chat template, one user/assistant turn pair per exemplar"
                                : "chat template, exemplars in one user turn";
}

llm::SamplingParams greedy(const TaskOptions& options, int default_max_tokens,
                           std::vector<std::string> completion_stops) {
  llm::SamplingParams p;
  p.temperature = 0;
  p.top_p = 1;
  p.max_tokens = options.max_tokens > 0 ? options.max_tokens : default_max_tokens;
  p.stop = std::move(completion_stops);
  return p;
}

}  // namespace seqit::eval
