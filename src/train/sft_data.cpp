#include "train/sft_data.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <exception>

#include "chat/assistant_mask.h"
#include "train/random_order.h"

namespace seqit::train {

TurnPolicy parse_turn_policy(std::string_view name) {
  if (name == "all") return TurnPolicy::all_assistant;
  if (name == "last") return TurnPolicy::last_assistant;
  throw Error(fmt::format("unknown assistant-turn policy '{}' (expected all or last)", name));
}

std::string_view drop_reason_name(DropReason reason) {
  switch (reason) {
    case DropReason::no_assistant:
      return "no assistant message";
    case DropReason::empty_assistant:
      return "empty assistant reply";
    case DropReason::assistant_not_rendered:
      return "assistant reply not in the rendered text";
    case DropReason::truncated_away:
      return "every trained token beyond max_len";
    case DropReason::render_error:
      return "render/mask error";
  }
  return "?";
}

int64_t ExampleSummary::dropped_total() const {
  int64_t n = 0;
  for (int64_t d : dropped) n += d;
  return n;
}

std::string ExampleSummary::describe() const {
  std::string out =
      fmt::format("{} record{} -> {} example{}: {} tokens, {} trained ({:.1f}%)", records,
                  records == 1 ? "" : "s", examples, examples == 1 ? "" : "s", tokens,
                  target_tokens, tokens > 0 ? 100.0 * double(target_tokens) / double(tokens) : 0.0);
  if (dropped_total() > 0) {
    out += fmt::format("\ndropped {}:", dropped_total());
    bool first = true;
    for (size_t r = 0; r < kDropReasonCount; ++r) {
      if (dropped[r] == 0) continue;
      out += fmt::format("{} {} {}", first ? "" : ",", dropped[r], drop_reason_name(DropReason(r)));
      first = false;
    }
    for (const auto& d : first_dropped) {
      std::string where = d.where.location();
      out += fmt::format("\n  {}{}{}: {}", where, where.empty() ? "" : ": ",
                         drop_reason_name(d.reason), d.detail);
    }
    if (dropped_total() > int64_t(first_dropped.size())) {
      out += fmt::format("\n  ... and {} more", dropped_total() - int64_t(first_dropped.size()));
    }
  }
  if (truncated_examples > 0) {
    out += fmt::format("\ntruncated {} example{} on the right at max_len ({} tokens cut)",
                       truncated_examples, truncated_examples == 1 ? "" : "s", truncated_tokens);
  }
  if (empty_turns > 0)
    out += fmt::format("\n{} empty assistant message{} not trained", empty_turns,
                       empty_turns == 1 ? "" : "s");
  if (double_bos_removed > 0) {
    out += fmt::format("\n{} example{} had a doubled BOS (template + tokenizer); one was removed",
                       double_bos_removed, double_bos_removed == 1 ? "" : "s");
  }
  if (no_end_marker > 0) {
    out += fmt::format(
        "\nWARNING: {} trained repl{} have no end-of-turn token after them: the model will not "
        "learn to "
        "stop (does the tokenizer read the template's EOS text as its EOS token?)",
        no_end_marker, no_end_marker == 1 ? "y" : "ies");
  }
  if (warnings > 0) {
    out += fmt::format("\n{} mask warning{}", warnings, warnings == 1 ? "" : "s");
    for (const auto& w : first_warnings) out += "\n  " + w;
  }
  if (bad_records.count > 0) out += "\n" + bad_records.summary();
  return out;
}

namespace {

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n") == std::string::npos;
}

void note_drop(ExampleSummary& summary, DropReason reason, const std::string& id,
               const ErrorContext& where, std::string detail) {
  ++summary.dropped[size_t(reason)];
  if (summary.first_dropped.size() < summary.keep) {
    summary.first_dropped.push_back({reason, id, where, std::move(detail)});
  }
}

}  // namespace

ExampleBuilder::ExampleBuilder(const chat::ChatTemplate& chat_template,
                               const tokenizer::Tokenizer& tok, ExampleOptions options)
    : template_(chat_template), tok_(&tok), options_(std::move(options)) {
  template_.special_tokens().fill_from(tok);
  if (options_.max_len < 0)
    throw Error(fmt::format("max_len must be >= 0 (0 = no limit), not {}", options_.max_len));
}

std::optional<Example> ExampleBuilder::build(const data::Conversation& conversation,
                                             const ErrorContext& where,
                                             ExampleSummary& summary) const {
  const tokenizer::Tokenizer& tok = *tok_;
  // The messages as rendered, with the optional default system message first.
  std::vector<chat::Message> messages;
  if (options_.default_system &&
      (conversation.messages.empty() || conversation.messages.front().role != data::kRoleSystem)) {
    messages.push_back({std::string(data::kRoleSystem), *options_.default_system});
  }
  for (const auto& m : conversation.messages) messages.push_back({m.role, m.content});

  // Which assistant messages are trained (indices into `messages`).
  std::vector<size_t> assistant;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role == data::kRoleAssistant) assistant.push_back(i);
  }
  if (assistant.empty()) {
    note_drop(summary, DropReason::no_assistant, conversation.id, where, "nothing to learn");
    return std::nullopt;
  }
  std::vector<uint8_t> trained(messages.size(), 0);  // per message
  if (options_.turns == TurnPolicy::last_assistant)
    trained[assistant.back()] = 1;
  else
    for (size_t i : assistant) trained[i] = 1;
  int64_t empty = 0, nonempty = 0;
  for (size_t i : assistant) {
    if (!trained[i]) continue;
    if (blank(messages[i].content)) {
      trained[i] = 0;  // an empty reply would teach the model to say nothing
      ++empty;
    } else {
      ++nonempty;
    }
  }
  summary.empty_turns += empty;
  if (nonempty == 0) {
    note_drop(summary, DropReason::empty_assistant, conversation.id, where,
              options_.turns == TurnPolicy::last_assistant ? "the last assistant message is empty"
                                                           : "every assistant message is empty");
    return std::nullopt;
  }

  chat::MaskedConversation mc;
  try {
    chat::MaskOptions mask_options;
    mask_options.add_special = options_.add_special;
    mc = chat::encode_with_assistant_mask(template_, tok, chat::messages_value(messages),
                                          mask_options);
  } catch (const std::exception& e) {
    Error error =
        dynamic_cast<const Error*>(&e) ? *dynamic_cast<const Error*>(&e) : Error(e.what());
    ErrorContext context = where;
    if (context.field.empty()) context.field = "messages";
    Error located(fmt::format("cannot render with {}: {}", template_.name(), error.what()),
                  context);
    if (options_.on_error == data::OnError::stop) throw located;
    note_drop(summary, DropReason::render_error, conversation.id, where, located.message());
    return std::nullopt;
  }

  // A template that writes BOS itself, encoded by a tokenizer that adds one too: keep one.
  if (auto bos = tok.bos_id();
      bos && mc.ids.size() >= 2 && mc.ids[0] == *bos && mc.ids[1] == *bos) {
    mc.ids.erase(mc.ids.begin());
    mc.spans.erase(mc.spans.begin());
    mc.mask.erase(mc.mask.begin());
    for (auto& turn : mc.turns) {
      if (turn.end_token > turn.first_token) {
        --turn.first_token;
        --turn.end_token;
      }
    }
    ++summary.double_bos_removed;
  }
  for (const auto& w : mc.warnings) {
    ++summary.warnings;
    if (summary.first_warnings.size() < summary.keep) {
      std::string at = where.location();
      summary.first_warnings.push_back((at.empty() ? "" : at + ": ") + w);
    }
  }

  // learn[t] = 1: token t is a target (of position t-1).
  const size_t n = mc.ids.size();
  std::vector<uint8_t> learn(n, 0);
  if (options_.train_on_inputs) {
    for (size_t t = 1; t < n; ++t) learn[t] = 1;
  } else {
    learn = mc.mask;
    for (const auto& turn : mc.turns) {
      // The mask's message indices count `messages` as rendered, default system included.
      if (turn.message_index < trained.size() && trained[turn.message_index]) continue;
      for (size_t t = turn.first_token; t < turn.end_token && t < n; ++t) learn[t] = 0;
    }
  }
  int64_t missing_marker = 0;  // counted when the example is kept
  if (!options_.train_on_inputs) {
    for (const auto& turn : mc.turns) {
      const bool is_trained = turn.message_index < trained.size() && trained[turn.message_index];
      if (is_trained && turn.end_token > turn.first_token && !turn.end_marker) ++missing_marker;
    }
  }

  Example ex;
  ex.id = conversation.id;
  ex.record = where.record;
  ex.tokens = std::move(mc.ids);
  ex.targets.assign(n, kIgnoreIndex);
  for (size_t t = 0; t + 1 < n; ++t) {
    if (learn[t + 1]) ex.targets[t] = ex.tokens[t + 1];
  }
  const bool had_targets = std::any_of(ex.targets.begin(), ex.targets.end(),
                                       [](int32_t v) { return v != kIgnoreIndex; });
  if (!had_targets) {
    note_drop(summary, DropReason::assistant_not_rendered, conversation.id, where,
              mc.warnings.empty() ? "no assistant token is masked" : mc.warnings.front());
    return std::nullopt;
  }

  // Truncate on the right, keeping the head (the prompt and the start of the reply).
  if (options_.max_len > 0 && ex.size() > options_.max_len) {
    ex.truncated_tokens = ex.size() - options_.max_len;
    ex.tokens.resize(size_t(options_.max_len));
    ex.targets.resize(size_t(options_.max_len));
    ex.targets.back() = kIgnoreIndex;  // its next token was cut off
    ++summary.truncated_examples;
    summary.truncated_tokens += ex.truncated_tokens;
  }
  ex.target_count = std::count_if(ex.targets.begin(), ex.targets.end(),
                                  [](int32_t v) { return v != kIgnoreIndex; });
  if (ex.target_count == 0) {
    note_drop(summary, DropReason::truncated_away, conversation.id, where,
              fmt::format("{} tokens, none of the first {} trained",
                          ex.size() + ex.truncated_tokens, options_.max_len));
    return std::nullopt;
  }
  ++summary.examples;
  summary.no_end_marker += missing_marker;
  summary.tokens += ex.size();
  summary.target_tokens += ex.target_count;
  return ex;
}

data::Conversation training_conversation(const data::Record& record) {
  if (const auto* c = std::get_if<data::Conversation>(&record)) return *c;
  return data::to_conversation(std::get<data::Instruction>(record));
}

namespace {

// One record: conversation (a failure there is a bad record), then the example.
void add_record(const data::Record& record, const ErrorContext& where,
                const ExampleBuilder& builder, SftExamples& out) {
  data::Conversation conversation;
  try {
    conversation = training_conversation(record);
  } catch (Error& e) {
    e.add_context(where);
    if (builder.options().on_error == data::OnError::stop) throw;
    out.summary.bad_records.add(e);
    return;
  }
  ++out.summary.records;
  if (auto ex = builder.build(conversation, where, out.summary))
    out.examples.push_back(std::move(*ex));
}

ExampleSummary fresh_summary(const ExampleOptions& options) {
  ExampleSummary s;
  s.keep = options.report_first;
  s.bad_records.keep = options.report_first;
  return s;
}

}  // namespace

SftExamples load_sft_examples(const std::filesystem::path& path,
                              const chat::ChatTemplate& chat_template,
                              const tokenizer::Tokenizer& tok, const ExampleOptions& options) {
  ExampleBuilder builder(chat_template, tok, options);
  SftExamples out;
  out.summary = fresh_summary(options);
  data::ReadOptions read;
  read.from = options.from;
  read.on_error = options.on_error;
  read.report_errors = options.report_first;
  read.progress_label = "examples";
  data::ReadReport report =
      data::read_records(path, read, [&](data::Record&& record, const ErrorContext& where) {
        add_record(record, where, builder, out);
      });
  // The reader's bad records join those refused on conversion.
  out.summary.bad_records.count += report.bad.count;
  for (const auto& e : report.bad.first) {
    if (out.summary.bad_records.first.size() < out.summary.bad_records.keep)
      out.summary.bad_records.first.push_back(e);
  }
  return out;
}

SftExamples build_sft_examples(const std::vector<data::Record>& records,
                               const chat::ChatTemplate& chat_template,
                               const tokenizer::Tokenizer& tok, const ExampleOptions& options,
                               const std::string& source) {
  ExampleBuilder builder(chat_template, tok, options);
  SftExamples out;
  out.summary = fresh_summary(options);
  for (size_t i = 0; i < records.size(); ++i) {
    ErrorContext where;
    where.file = source;
    where.record = int64_t(i);
    add_record(records[i], where, builder, out);
  }
  return out;
}

std::vector<size_t> eval_indices(size_t n, const EvalSplit& how, uint64_t seed) {
  size_t count;
  if (how.count >= 0) {
    if (size_t(how.count) > n)
      throw Error(fmt::format("cannot hold out {} of {} examples", how.count, n));
    count = size_t(how.count);
  } else {
    if (!(how.fraction >= 0 && how.fraction < 1)) {
      throw Error(fmt::format("the eval fraction must be in [0, 1), not {}", how.fraction));
    }
    count = size_t(std::llround(how.fraction * double(n)));
  }
  SplitMix64 rng(stream_seed(seed, /*purpose=*/3, 0));
  std::vector<size_t> order = shuffled_indices(n, rng);
  order.resize(count);
  std::sort(order.begin(), order.end());
  return order;
}

}  // namespace seqit::train
