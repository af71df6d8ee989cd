#include "synth/teacher.h"

#include <fmt/format.h>

#include "synth/grade.h"
#include "util/error.h"

namespace seqit::synth {

namespace {

// The markers of the default prompt set (configs/seqinstruct/default.yaml as built by
// seqinstruct/prompts.cpp): the classify query follows kClassifyMarker; the generate query is
// the last kGenerateMarker, and the option's lead-in follows its closing quote.
constexpr std::string_view kClassifyMarker = "Now the instruction to decide on:";
constexpr std::string_view kClassifyQuery = "Instruction: \"";
constexpr std::string_view kGenerateMarker = "#Original Instruction#: \"";

llm::LlmError invalid(std::string message) {
  llm::LlmError e;
  e.kind = llm::ErrorKind::invalid_request;
  e.message = "synth teacher: " + std::move(message);
  return e;
}

// At most 160 bytes of `text` for an error message.
std::string shortened(std::string_view text) {
  return text.size() <= 160 ? std::string(text) : std::string(text.substr(0, 157)) + "...";
}

llm::Response reply(std::string text) {
  llm::Response r;
  r.choices.push_back({std::move(text), "stop", {}});
  r.model = "synth-teacher";
  return r;
}

// The text between `open` (already past the opening quote) and the last '"' of `text`, and what
// follows that quote.
std::optional<std::pair<std::string_view, std::string_view>> quoted_tail(std::string_view text,
                                                                         size_t open) {
  const std::string_view rest = text.substr(open);
  const size_t close = rest.rfind('"');
  if (close == std::string_view::npos) return std::nullopt;
  return std::make_pair(rest.substr(0, close), rest.substr(close + 1));
}

bool is_number(std::string_view t) {
  if (t.empty() || t.size() > 2) return false;
  for (char c : t)
    if (c < '0' || c > '9') return false;
  return !(t.size() == 2 && t[0] == '0');
}

const std::string& other_word(const std::vector<std::string>& words, std::string_view not_this,
                              Rng& rng) {
  for (;;) {
    const std::string& w = rng.pick(words);
    if (w != not_this) return w;
  }
}

// A wrong output with the shape of `expected` (same kind, same number of world tokens): one word
// or number replaced by another of the same sort (for facts, one value by another adjective).
std::string wrong_output(const std::string& expected, Rng& rng) {
  const std::optional<Kind> kind = classify_text(expected);
  if (!kind) throw Error(fmt::format("cannot corrupt '{}': not world text", expected));
  const std::vector<std::string> tokens = split_world_tokens(expected);
  std::vector<size_t> slots;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (*kind == Kind::kFacts ? i > 0 && tokens[i - 1] == ":"
                              : tokens[i].find_first_of(",.:;?") == std::string::npos)
      slots.push_back(i);
  }
  for (int attempt = 0; attempt < 64 && !slots.empty(); ++attempt) {
    std::vector<std::string> t = tokens;
    std::string& tok = t[rng.pick(slots)];
    const std::string lower = to_lower_ascii(tok);
    if (*kind == Kind::kFacts) {
      tok = other_word(fact_values(), tok, rng);
    } else if (is_number(tok)) {
      tok = std::to_string(rng.below(kMaxNumber + 1));
    } else if (is_english_word(lower)) {
      tok = other_word(english_words(), lower, rng);
    } else {
      tok = other_word(vellan_words(), lower, rng);
    }
    if (*kind == Kind::kUpper) tok = to_upper_ascii(tok);
    std::string out = join_world_tokens(t);
    if (output_has_shape(out, expected) && !output_matches(out, expected)) return out;
  }
  throw Error(fmt::format("cannot corrupt '{}': no wrong output of its shape found", expected));
}

std::string reasoning(const Chain& chain, Edit edit) {
  const size_t n = chain.steps.size();
  std::string out = fmt::format("The instruction has {} step{}.", n, n == 1 ? "" : "s");
  switch (edit) {
    case Edit::kDecompose:
      return out + " One of them asks for two things at once; splitting it makes both explicit.";
    case Edit::kPrefix:
      return out + " A task on the input can come first and feed the original steps.";
    case Edit::kSuffix:
      return out + " A task can follow the last step and work on its output.";
    case Edit::kKeep:
      return out + " It is fine as it is.";
  }
  return out;
}

}  // namespace

std::optional<WorldPrompt> split_world_prompt(std::string_view full_prompt) {
  for (size_t p = 1; p < full_prompt.size(); ++p) {
    if (full_prompt[p] != ' ' || full_prompt[p - 1] != '.') continue;
    std::optional<Chain> chain = parse_instruction(full_prompt.substr(0, p));
    if (!chain) continue;
    const std::string_view input = full_prompt.substr(p + 1);
    const std::optional<Kind> kind = classify_text(input);
    if (!kind || !is_type_valid(*chain, *kind)) continue;
    return WorldPrompt{std::move(*chain), std::string(full_prompt.substr(0, p)),
                       std::string(input)};
  }
  return std::nullopt;
}

std::string corrupt_steps(const Chain& chain, std::string_view input, double rate, Rng& rng) {
  std::vector<std::string> outputs = run_chain(chain, input);
  std::string out;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const bool last = i + 1 == outputs.size();
    if (!last && rng.chance(rate)) outputs[i] = wrong_output(outputs[i], rng);
    if (i > 0) out += "\n";
    out += last ? "Answer: " + outputs[i] : fmt::format("Step {}: {}", i + 1, outputs[i]);
  }
  return out;
}

Teacher::Teacher(TeacherOptions options) : options_(std::move(options)) {
  if (!(options_.corrupt >= 0 && options_.corrupt <= 1))
    throw Error(fmt::format("teacher corrupt rate {} is not in [0, 1]", options_.corrupt));
  worker_ = std::thread([this] { loop(); });
}

Teacher::~Teacher() {
  {
    std::lock_guard lock(mutex_);
    quit_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

std::string Teacher::describe() const {
  return fmt::format("synth teacher (corrupt {})", options_.corrupt);
}

void Teacher::submit(llm::Request request, llm::ResponseCallback done) {
  {
    std::lock_guard lock(mutex_);
    queue_.emplace_back(std::move(request), std::move(done));
  }
  cv_.notify_one();
}

void Teacher::loop() {
  for (;;) {
    std::pair<llm::Request, llm::ResponseCallback> job;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return quit_ || !queue_.empty(); });
      if (queue_.empty()) return;  // quit, and everything queued was answered
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    llm::Result<llm::Response> result = invalid("unanswered");
    try {
      result = answer(job.first);
    } catch (const std::exception& e) {
      llm::LlmError error;
      error.kind = llm::ErrorKind::internal;
      error.message = std::string("synth teacher: ") + e.what();
      result = error;
    }
    job.second(std::move(result));
  }
}

llm::Result<llm::Response> Teacher::answer(const llm::Request& request) const {
  if (request.kind != llm::RequestKind::chat)
    return invalid(
        fmt::format("only chat requests are answered, not {}", llm::to_string(request.kind)));
  if (request.params.n != 1)
    return invalid(fmt::format("one choice per request, not n = {}", request.params.n));
  const llm::Message* user = nullptr;
  for (const llm::Message& m : request.messages)
    if (m.role == "user") user = &m;
  if (!user) return invalid("the request has no user message");
  const std::string_view text = user->content;
  Rng rng(request.params.seed.value_or(0));

  // classify
  if (const size_t marker = text.rfind(kClassifyMarker); marker != std::string_view::npos) {
    const size_t query = text.find(kClassifyQuery, marker);
    if (query == std::string_view::npos)
      return invalid("a classify request without 'Instruction: \"...\"' after its marker");
    const auto quoted = quoted_tail(text, query + kClassifyQuery.size());
    if (!quoted) return invalid("the classify query's instruction has no closing quote");
    const std::optional<WorldPrompt> prompt = split_world_prompt(quoted->first);
    if (!prompt)
      return invalid(fmt::format("classify: not a world instruction and input: '{}'",
                                 shortened(quoted->first)));
    const Kind kind = *classify_text(prompt->input);
    const EditPolicy& policy =
        prompt->chain.steps.size() <= 1 ? options_.first_pass : options_.later_pass;
    const Edit edit = choose_edit(prompt->chain, kind, policy, rng);
    return reply(fmt::format("{}\nOption: {}", reasoning(prompt->chain, edit), edit_letter(edit)));
  }

  // generate
  if (const size_t marker = text.rfind(kGenerateMarker); marker != std::string_view::npos) {
    const auto quoted = quoted_tail(text, marker + kGenerateMarker.size());
    if (!quoted) return invalid("the generate query's instruction has no closing quote");
    const std::string lead_in = to_lower_ascii(quoted->second);
    Edit edit;
    if (lead_in.find("decompose") != std::string::npos) {
      edit = Edit::kDecompose;
    } else if (lead_in.find("prefix") != std::string::npos) {
      edit = Edit::kPrefix;
    } else if (lead_in.find("suffix") != std::string::npos) {
      edit = Edit::kSuffix;
    } else {
      return invalid(fmt::format("generate: no edit named in the lead-in '{}'", quoted->second));
    }
    const std::optional<WorldPrompt> prompt = split_world_prompt(quoted->first);
    if (!prompt)
      return invalid(fmt::format("generate: not a world instruction and input: '{}'",
                                 shortened(quoted->first)));
    const Kind kind = *classify_text(prompt->input);
    // Any length limit: the classify step already kept chains within its policy's max_steps.
    EditPolicy any;
    any.max_steps = kMaxEvalSteps;
    if (!edit_applies(prompt->chain, kind, edit, any))
      return invalid(fmt::format("generate: edit {} does not apply to '{}'", edit_letter(edit),
                                 prompt->instruction));
    const Chain edited = apply_edit(prompt->chain, kind, edit, rng);
    return reply(fmt::format("{}\n#New Instruction#: {}###", reasoning(prompt->chain, edit),
                             render_instruction(edited)));
  }

  // respond
  const std::optional<WorldPrompt> prompt = split_world_prompt(text);
  if (!prompt)
    return invalid(fmt::format(
        "not a classify or generate prompt, and not a world instruction and input: '{}'",
        shortened(text)));
  if (options_.corrupt > 0)
    return reply(corrupt_steps(prompt->chain, prompt->input, options_.corrupt, rng));
  return reply(reference_response(prompt->chain, prompt->input));
}

}  // namespace seqit::synth
