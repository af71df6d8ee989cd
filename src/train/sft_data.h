// Supervised fine-tuning examples: instruction data (any data/ format) -> conversations -> a chat
// template (the model's own, or a builtin format such as the SIT paper's `tulu`) -> token ids with
// next-token targets that train exactly the assistant replies and their end-of-turn markers.
//
//   Example {tokens (T), targets (T)}: targets[t] is the token the model must predict after reading
//   tokens[0..t], i.e. tokens[t+1] when that token is learned (chat::encode_with_assistant_mask's
//   mask is 1 on it), else kIgnoreIndex. So the first reply token is the target of the last header
//   token, and the end-of-turn marker (EOS, <|eot_id|>, <|im_end|>) of every trained reply is the
//   target of the reply's last content token. targets[T-1] is always kIgnoreIndex (nothing
//   follows).
//
// Truncation keeps the head: an example longer than max_len keeps tokens[0..max_len) and the target
// at position max_len-1 becomes kIgnoreIndex (its next token is gone), as Hugging Face's truncate-
// then-shift does. Examples left with no target are dropped and counted by reason
// (docs/training.md, "Data → batches").
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "data/format.h"
#include "data/reader.h"
#include "data/record.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace seqit::train {

using tokenizer::TokenId;

// The target value of a position that is not trained (PyTorch's cross-entropy ignore_index).
inline constexpr int32_t kIgnoreIndex = -100;

// Which assistant turns are trained.
enum class TurnPolicy {
  all_assistant,   // every assistant reply (default; the SIT recipe)
  last_assistant,  // only the last assistant message of each conversation
};
// "all" or "last"; throws seqit::Error otherwise.
TurnPolicy parse_turn_policy(std::string_view name);

struct ExampleOptions {
  TurnPolicy turns = TurnPolicy::all_assistant;
  // Train on every token after the first (the legacy Alpaca-LoRA recipe, SIT_SPEC §3.3); the turn
  // policy is then ignored.
  bool train_on_inputs = false;
  // Longest example in tokens (SIT_SPEC §3.1: 2048); longer ones are truncated on the right. 0 = no
  // limit.
  int64_t max_len = 2048;
  // Whether the tokenizer adds its special tokens (BOS) to the rendered text. Default: the
  // template's own rule (yes for the builtin tulu/alpaca, no for Hugging Face templates, which
  // write BOS themselves). Either way a doubled leading BOS is reduced to one.
  std::optional<bool> add_special;
  // When set, a conversation without a system message gets one with this content first. The SIT
  // data always has a system block, also an empty one (SIT_SPEC §3.2): default_system = "".
  std::optional<std::string> default_system;
  // A record that cannot be read or rendered: stop (throw its error) or skip (count it, go on).
  data::OnError on_error = data::OnError::stop;
  // The input format (as --from); nullopt = detected. Only used when reading files.
  std::optional<data::FormatRequest> from;
  size_t report_first = 5;  // how many dropped examples / warnings the summary keeps verbatim
};

struct Example {
  std::string id;               // the record's id ("" when it had none)
  int64_t record = -1;          // 0-based index of the record in its source
  std::vector<TokenId> tokens;  // (T)
  // (T) next-token target or kIgnoreIndex; targets.back() == kIgnoreIndex
  std::vector<int32_t> targets;
  int64_t target_count = 0;      // targets that are not kIgnoreIndex (> 0 for every kept example)
  int64_t truncated_tokens = 0;  // tokens cut off the end by max_len (0 = not truncated)

  int64_t size() const { return int64_t(tokens.size()); }
};

// Why an example was dropped.
enum class DropReason {
  no_assistant,     // the conversation has no assistant message (e.g. a prompt without output)
  empty_assistant,  // every trained assistant message is empty (or whitespace only)
  assistant_not_rendered,  // the template left the assistant content out of the text
  truncated_away,          // all its targets lay beyond max_len
  render_error,            // the template or the tokenizer failed on it (only with on_error = skip)
};
inline constexpr size_t kDropReasonCount = 5;
std::string_view drop_reason_name(DropReason reason);

struct DroppedExample {
  DropReason reason;
  std::string id;
  ErrorContext where;  // file, line, record of the source record
  std::string detail;  // the error message for render_error, else a short explanation
};

// What happened to every record: kept, dropped (by reason), bad; tokens and truncation.
struct ExampleSummary {
  int64_t records = 0;   // records read well and turned into conversations
  int64_t examples = 0;  // kept
  std::array<int64_t, kDropReasonCount> dropped{};  // by DropReason
  std::vector<DroppedExample> first_dropped;
  data::BadRecords bad_records;  // records the reader (or the conversion to a conversation) refused
  int64_t tokens = 0;            // tokens of the kept examples (after truncation)
  int64_t target_tokens = 0;     // trained positions of the kept examples
  int64_t truncated_examples = 0;  // kept or dropped examples that were longer than max_len
  int64_t truncated_tokens = 0;    // tokens cut off by max_len (kept and dropped examples)
  int64_t empty_turns = 0;         // empty assistant messages left out of training
  int64_t double_bos_removed = 0;  // examples whose doubled leading BOS was reduced to one
  // Trained replies with no end-of-turn token after them: the model would not learn to stop. The
  // usual cause is a tokenizer that does not read the EOS text the template writes as the EOS
  // token (e.g. a tokenizer.json whose "</s>" is "normalized": true); the examples are kept.
  int64_t no_end_marker = 0;
  int64_t warnings = 0;  // mask warnings (each no_end_marker turn is one, with details)
  std::vector<std::string> first_warnings;
  size_t keep = 5;

  int64_t dropped_total() const;
  int64_t count(DropReason reason) const { return dropped[size_t(reason)]; }
  // records == examples + dropped_total() (bad records are not in `records`).
  // A few lines: "5000 records -> 4987 examples (812345 tokens, 401234 trained); dropped 13: ...".
  std::string describe() const;
};

// Turns conversations into examples with one template and tokenizer. Copies the template (and fills
// its BOS/EOS from the tokenizer when it has none); the tokenizer must outlive the builder.
class ExampleBuilder {
 public:
  ExampleBuilder(const chat::ChatTemplate& chat_template, const tokenizer::Tokenizer& tok,
                 ExampleOptions options = {});

  // The example for one conversation, or nullopt when it is dropped (counted in `summary` with
  // `where`). A template or tokenizer failure throws seqit::Error with `where` and field
  // "messages" under on_error = stop, and is counted as render_error under skip.
  std::optional<Example> build(const data::Conversation& conversation, const ErrorContext& where,
                               ExampleSummary& summary) const;

  const ExampleOptions& options() const { return options_; }
  const chat::ChatTemplate& chat_template() const { return template_; }

 private:
  chat::ChatTemplate template_;
  const tokenizer::Tokenizer* tok_;
  ExampleOptions options_;
};

struct SftExamples {
  std::vector<Example> examples;  // in record order
  ExampleSummary summary;
};

// Every record of `path` (any data/ format, detected unless options.from says) as examples.
// Instructions become conversations by data::to_conversation (user = instruction + " " + input).
SftExamples load_sft_examples(const std::filesystem::path& path,
                              const chat::ChatTemplate& chat_template,
                              const tokenizer::Tokenizer& tok, const ExampleOptions& options = {});

// The same for records already in memory; `source` names them in errors ("" = none).
SftExamples build_sft_examples(const std::vector<data::Record>& records,
                               const chat::ChatTemplate& chat_template,
                               const tokenizer::Tokenizer& tok, const ExampleOptions& options = {},
                               const std::string& source = "");

// A record as the conversation that is rendered (Instruction -> data::to_conversation).
data::Conversation training_conversation(const data::Record& record);

// Held-out split: which examples go to evaluation.
struct EvalSplit {
  double fraction = 0;  // of the examples, rounded to the nearest count
  int64_t count = -1;   // exact count; wins over fraction when >= 0
  static EvalSplit of_fraction(double f) { return {f, -1}; }
  static EvalSplit of_count(int64_t n) { return {0, n}; }
};

template <typename T>
struct SplitResult {
  std::vector<T> train, eval;  // each keeps the input order
};

// The eval indices for `n` items: a seeded random choice, sorted. Throws seqit::Error for a
// fraction outside [0, 1) or a count above n.
std::vector<size_t> eval_indices(size_t n, const EvalSplit& split, uint64_t seed);

template <typename T>
SplitResult<T> split(std::vector<T> items, const EvalSplit& how, uint64_t seed) {
  std::vector<size_t> eval = eval_indices(items.size(), how, seed);
  SplitResult<T> out;
  out.eval.reserve(eval.size());
  out.train.reserve(items.size() - eval.size());
  size_t e = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (e < eval.size() && eval[e] == i) {
      out.eval.push_back(std::move(items[i]));
      ++e;
    } else {
      out.train.push_back(std::move(items[i]));
    }
  }
  return out;
}

}  // namespace seqit::train
