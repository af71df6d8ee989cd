// SFT examples on real tokenizers and templates: exactly the assistant content and its end-of-turn
// marker are targets, each target sits one position before its token (the first reply token is the
// target of the last header token), one BOS, truncation and dropping counted by reason, bad records
// located by file, line and field.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <numeric>
#include <set>

#include "chat/chat_template.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "train/batcher.h"
#include "train/sft_data.h"

namespace seqit::train {
namespace {
using testing::shared_data;
using tokenizer::Tokenizer;

const Tokenizer& load(const char* relative) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[relative];
  if (!slot) slot = tokenizer::load_tokenizer(shared_data(relative));
  return *slot;
}

data::Message msg(std::string_view role, std::string content) {
  return {std::string(role), std::move(content), {}};
}

data::Conversation two_turns() {
  data::Conversation c;
  c.id = "chat-1";
  c.messages = {msg("system", "You are a concise assistant."),
                msg("user", "What is the capital of France?"),
                msg("assistant", "Paris is the capital of France."), msg("user", "And of Italy?"),
                msg("assistant", "Rome.")};
  return c;
}

// Runs of consecutive trained positions, as [first, end) position ranges.
std::vector<std::pair<size_t, size_t>> target_runs(const Example& ex) {
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t t = 0; t < ex.targets.size(); ++t) {
    if (ex.targets[t] == kIgnoreIndex) continue;
    if (!runs.empty() && runs.back().second == t)
      runs.back().second = t + 1;
    else
      runs.emplace_back(t, t + 1);
  }
  return runs;
}

std::string decode_targets(const Tokenizer& tok, const Example& ex, std::pair<size_t, size_t> run) {
  std::vector<TokenId> ids(ex.targets.begin() + long(run.first),
                           ex.targets.begin() + long(run.second));
  std::string s = tok.decode(ids);
  size_t lead = s.find_first_not_of(' ');  // SentencePiece decoders drop/keep a leading space
  return lead == std::string::npos ? s : s.substr(lead);
}

Example build_one(const chat::ChatTemplate& t, const Tokenizer& tok, const data::Conversation& c,
                  ExampleOptions options = {}, ExampleSummary* summary_out = nullptr) {
  ExampleBuilder builder(t, tok, options);
  ExampleSummary summary;
  auto ex = builder.build(c, {}, summary);
  if (summary_out) *summary_out = summary;
  if (!ex) throw std::runtime_error("example dropped: " + summary.describe());
  return *ex;
}

// Every target is the next token; the last position has none.
void expect_next_token_targets(const Example& ex) {
  ASSERT_EQ(ex.tokens.size(), ex.targets.size());
  ASSERT_FALSE(ex.targets.empty());
  EXPECT_EQ(ex.targets.back(), kIgnoreIndex);
  int64_t count = 0;
  for (size_t t = 0; t + 1 < ex.tokens.size(); ++t) {
    if (ex.targets[t] == kIgnoreIndex) continue;
    ++count;
    EXPECT_EQ(ex.targets[t], ex.tokens[t + 1]) << "position " << t;
  }
  EXPECT_EQ(ex.target_count, count);
}

// The tulu checks for one tokenizer: targets = each reply's content + EOS, the first reply token is
// the target of the last header token ("<|assistant|>\n" ends right before it), one BOS.
void check_tulu_two_turns(const char* tokenizer_path) {
  SCOPED_TRACE(tokenizer_path);
  const Tokenizer& tok = load(tokenizer_path);
  chat::ChatTemplate tulu = chat::ChatTemplate::builtin("tulu");
  const data::Conversation c = two_turns();
  Example ex = build_one(tulu, tok, c);
  expect_next_token_targets(ex);

  ASSERT_TRUE(tok.bos_id() && tok.eos_id());
  const std::string eos = tok.token_text(*tok.eos_id());
  EXPECT_EQ(ex.tokens[0], *tok.bos_id());
  EXPECT_NE(ex.tokens[1], *tok.bos_id()) << "double BOS";
  EXPECT_EQ(std::count(ex.tokens.begin(), ex.tokens.end(), *tok.bos_id()), 1);

  auto runs = target_runs(ex);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(decode_targets(tok, ex, runs[0]), "Paris is the capital of France." + eos);
  EXPECT_EQ(decode_targets(tok, ex, runs[1]), "Rome." + eos);
  // The reply's EOS is the last target of each run; the final token of the text is the last EOS.
  EXPECT_EQ(ex.targets[runs[0].second - 1], *tok.eos_id());
  EXPECT_EQ(ex.targets[runs[1].second - 1], *tok.eos_id());
  EXPECT_EQ(ex.tokens.back(), *tok.eos_id());

  // The position whose target is the first reply token holds the end of the header: its "\n",
  // after "<|assistant|>". (The runs decode to exactly the replies, so they start at their first
  // token.)
  for (auto run : runs) {
    EXPECT_EQ(tok.token_bytes(ex.tokens[run.first]), "\n");
    std::vector<TokenId> header(ex.tokens.begin() + long(std::max<size_t>(1, run.first - 20)),
                                ex.tokens.begin() + long(run.first) + 1);
    EXPECT_TRUE(tok.decode(header).ends_with("<|assistant|>\n")) << tok.decode(header);
    EXPECT_EQ(ex.targets[run.first - 1], kIgnoreIndex) << "a header token is trained";
  }
  ExampleSummary summary;
  build_one(tulu, tok, c, {}, &summary);
  EXPECT_EQ(summary.no_end_marker, 0);
  EXPECT_EQ(summary.double_bos_removed, 0);
}

// Llama-2's SentencePiece model (as transformers' LlamaTokenizer reads it) and stories260K's vocab.
TEST(SftExamples, TuluTwoTurnsLlama2) {
  check_tulu_two_turns("tokenizers/llama2/tokenizer.model");
}
TEST(SftExamples, TuluTwoTurnsStories260K) {
  check_tulu_two_turns("models/stories260K/tok512.bin");
}

TEST(SftExamples, PadEqualsEosStillTrainsEveryEos) {
  const Tokenizer& tok = load("tokenizers/llama2/tokenizer.model");
  const TokenId eos = *tok.eos_id();
  data::Conversation short_chat;
  short_chat.messages = {msg("user", "Hi"), msg("assistant", "Hello!")};
  std::vector<Example> examples = {build_one(chat::ChatTemplate::builtin("tulu"), tok, two_turns()),
                                   build_one(chat::ChatTemplate::builtin("tulu"), tok, short_chat)};
  ASSERT_NE(examples[0].size(), examples[1].size());  // so the shorter row is padded
  BatchOptions options;
  options.batch_size = 2;
  options.pad_id = eos;
  BatchPlan plan(examples, options, 7);
  auto batches = plan.epoch_batches(0);
  ASSERT_EQ(batches.size(), 1u);
  Batch b = plan.materialize(batches[0]);
  ASSERT_EQ(b.rows, 2);
  EXPECT_GT(b.padded_tokens, 0);
  int64_t eos_targets = 0, pad_cells = 0;
  for (size_t k = 0; k < b.tokens.size(); ++k) {
    if (b.segment_ids[k] == 0) {
      ++pad_cells;
      EXPECT_EQ(b.tokens[k], eos);  // padding is written with the pad id ...
      EXPECT_EQ(b.targets[k], kIgnoreIndex)
          << "padding is trained at " << k;  // ... and never trained
    }
    if (b.targets[k] == eos) ++eos_targets;
  }
  EXPECT_EQ(pad_cells, b.padded_tokens);
  EXPECT_EQ(eos_targets, 3)
      << "two replies in the first chat, one in the second: each EOS is a target";
  EXPECT_EQ(b.count_targets(), examples[0].target_count + examples[1].target_count);
}

TEST(SftExamples, LastTurnOnly) {
  const Tokenizer& tok = load("tokenizers/llama2/tokenizer.model");
  ExampleOptions options;
  options.turns = TurnPolicy::last_assistant;
  Example ex = build_one(chat::ChatTemplate::builtin("tulu"), tok, two_turns(), options);
  expect_next_token_targets(ex);
  auto runs = target_runs(ex);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(decode_targets(tok, ex, runs[0]), "Rome.</s>");
  Example all = build_one(chat::ChatTemplate::builtin("tulu"), tok, two_turns());
  EXPECT_EQ(all.tokens, ex.tokens);  // the same text; only the targets differ
  EXPECT_GT(all.target_count, ex.target_count);
  EXPECT_EQ(parse_turn_policy("last"), TurnPolicy::last_assistant);
  EXPECT_THROW(parse_turn_policy("first"), Error);
}

TEST(SftExamples, TrainOnInputs) {
  const Tokenizer& tok = load("tokenizers/llama2/tokenizer.model");
  ExampleOptions options;
  options.train_on_inputs = true;
  Example ex = build_one(chat::ChatTemplate::builtin("tulu"), tok, two_turns(), options);
  expect_next_token_targets(ex);
  EXPECT_EQ(ex.target_count, ex.size() - 1);  // every token after the first (BOS) is a target
  for (size_t t = 0; t + 1 < ex.tokens.size(); ++t) EXPECT_EQ(ex.targets[t], ex.tokens[t + 1]);
}

TEST(SftExamples, DefaultSystemAddsTheEmptySystemBlock) {
  const Tokenizer& tok = load("tokenizers/llama2/tokenizer.model");
  data::Conversation c;
  c.messages = {msg("user", "Hi"), msg("assistant", "Hello!")};
  ExampleOptions options;
  options.default_system = "";
  Example with = build_one(chat::ChatTemplate::builtin("tulu"), tok, c, options);
  Example without = build_one(chat::ChatTemplate::builtin("tulu"), tok, c);
  with.tokens.erase(with.tokens.begin());  // BOS
  without.tokens.erase(without.tokens.begin());
  EXPECT_EQ(tok.decode(with.tokens), "<|system|>\n\n<|user|>\nHi\n<|assistant|>\nHello!</s>");
  EXPECT_EQ(tok.decode(without.tokens), "<|user|>\nHi\n<|assistant|>\nHello!</s>");
  EXPECT_EQ(with.target_count, without.target_count);
}

// The model's own template: Llama 3's tokenizer_config chat_template trains <|eot_id|>; the
// template writes BOS, the tokenizer adds none (as apply_chat_template).
TEST(SftExamples, Llama3TemplateTrainsEotId) {
  const Tokenizer& tok = load("tokenizers/llama3/tokenizer.json");
  chat::ChatTemplate t =
      chat::ChatTemplate::from_file(shared_data("tokenizers/llama3/tokenizer_config.json"));
  const TokenId bos = *tok.token_id("<|begin_of_text|>");
  const TokenId eot = *tok.token_id("<|eot_id|>");
  ExampleSummary summary;
  Example ex = build_one(t, tok, two_turns(), {}, &summary);
  expect_next_token_targets(ex);
  EXPECT_EQ(ex.tokens[0], bos);
  EXPECT_EQ(std::count(ex.tokens.begin(), ex.tokens.end(), bos), 1) << "double BOS";
  auto runs = target_runs(ex);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(decode_targets(tok, ex, runs[0]), "Paris is the capital of France.<|eot_id|>");
  EXPECT_EQ(decode_targets(tok, ex, runs[1]), "Rome.<|eot_id|>");
  EXPECT_EQ(ex.targets[runs[1].second - 1], eot);
  // This template always ends with an assistant header (Llama-3's base template does): not trained.
  EXPECT_EQ(tok.decode(std::vector<TokenId>(ex.tokens.begin() + long(runs[1].second) + 1,
                                            ex.tokens.end())),
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // The position before each reply holds the header's "\n\n" after <|end_header_id|>.
  for (auto run : runs) EXPECT_EQ(tok.decode(std::vector<TokenId>{ex.tokens[run.first]}), "\n\n");
  EXPECT_EQ(summary.no_end_marker, 0);
}

// A template that writes BOS, encoded by a tokenizer that adds BOS too: one BOS is kept.
TEST(SftExamples, NoDoubleBos) {
  const Tokenizer& tok = load("tokenizers/llama2/tokenizer.model");
  chat::ChatTemplate t =
      chat::ChatTemplate::from_file(shared_data("tokenizers/chat_templates/mistralrs_llama2.json"));
  ASSERT_NE(t.source().find("bos_token"), std::string::npos);
  for (std::optional<bool> add_special : {std::optional<bool>(), std::optional<bool>(true)}) {
    SCOPED_TRACE(add_special ? "tokenizer adds BOS too" : "template default (tokenizer adds none)");
    ExampleOptions options;
    options.add_special = add_special;
    ExampleSummary summary;
    data::Conversation c;
    c.messages = {msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "Bye"),
                  msg("assistant", "Bye!")};
    Example ex = build_one(t, tok, c, options, &summary);
    expect_next_token_targets(ex);
    EXPECT_EQ(ex.tokens[0], *tok.bos_id());
    EXPECT_NE(ex.tokens[1], *tok.bos_id());
    EXPECT_EQ(summary.double_bos_removed, add_special ? 1 : 0);
    auto runs = target_runs(ex);
    ASSERT_EQ(runs.size(), 2u);
    EXPECT_EQ(ex.targets[runs[0].second - 1], *tok.eos_id());
    EXPECT_EQ(ex.targets[runs[1].second - 1], *tok.eos_id());
  }
}

// A tokenizer that does not read the template's "</s>" as its EOS token (this tokenizer.json marks
// "</s>" "normalized": true, so HF matches it only as "▁</s>"): the replies are kept, and the
// summary says, loudly, that no end-of-turn token is trained.
TEST(SftExamples, EosTextNotReadAsEosIsReported) {
  const Tokenizer& tok = load("tokenizers/llama2/tokenizer.json");
  ExampleSummary summary;
  Example ex = build_one(chat::ChatTemplate::builtin("tulu"), tok, two_turns(), {}, &summary);
  EXPECT_EQ(std::count(ex.tokens.begin(), ex.tokens.end(), *tok.eos_id()), 0);
  EXPECT_EQ(summary.no_end_marker, 2);
  EXPECT_EQ(summary.warnings, 2);
  EXPECT_NE(summary.describe().find("will not learn to stop"), std::string::npos)
      << summary.describe();
}

// ChatML (Qwen's vocabulary): <|im_end|> is trained, "<|im_start|>assistant\n" is not.
TEST(SftExamples, ChatMlTrainsImEnd) {
  const Tokenizer& tok = load("tokenizers/qwen/qwen3_tokenizer.json");
  Example ex = build_one(chat::ChatTemplate::builtin("chatml"), tok, two_turns());
  expect_next_token_targets(ex);
  auto runs = target_runs(ex);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(decode_targets(tok, ex, runs[0]), "Paris is the capital of France.<|im_end|>");
  EXPECT_EQ(decode_targets(tok, ex, runs[1]), "Rome.<|im_end|>");
}

// A record set that exercises every way to lose tokens or examples.
std::vector<data::Record> awkward_records() {
  std::vector<data::Record> records;
  data::Instruction ok;
  ok.id = "ok";
  ok.instruction = "Say hi.";
  ok.output = "Hi!";
  records.push_back(ok);
  data::Instruction long_prompt;  // the reply starts past max_len
  long_prompt.id = "long-prompt";
  for (int i = 0; i < 40; ++i) long_prompt.instruction += "word ";
  long_prompt.output = "Done.";
  records.push_back(long_prompt);
  data::Instruction long_reply;  // kept, truncated inside the reply
  long_reply.id = "long-reply";
  long_reply.instruction = "Count.";
  for (int i = 0; i < 40; ++i) long_reply.output += "one ";
  records.push_back(long_reply);
  data::Instruction no_output;  // a prompt without an answer
  no_output.id = "no-output";
  no_output.instruction = "Unanswered.";
  records.push_back(no_output);
  data::Conversation blank;  // an assistant message of whitespace only
  blank.id = "blank";
  blank.messages = {msg("user", "Hello?"), msg("assistant", "  \n ")};
  records.push_back(blank);
  data::Conversation tool;  // the tulu format has no tool role: a render error
  tool.id = "tool";
  tool.messages = {msg("user", "Weather?"), msg("tool", "{\"temp\": 20}"),
                   msg("assistant", "20 degrees.")};
  records.push_back(tool);
  return records;
}

TEST(SftExamples, TruncationAndDroppingAreCountedByReason) {
  const Tokenizer& tok = load("tokenizers/llama2/tokenizer.model");
  ExampleOptions options;
  options.max_len = 32;
  options.on_error = data::OnError::skip;
  SftExamples out = build_sft_examples(awkward_records(), chat::ChatTemplate::builtin("tulu"), tok,
                                       options, "mem");
  const ExampleSummary& s = out.summary;
  ASSERT_EQ(out.examples.size(), 2u) << s.describe();
  EXPECT_EQ(out.examples[0].id, "ok");
  EXPECT_EQ(out.examples[1].id, "long-reply");
  EXPECT_EQ(s.records, 6);
  EXPECT_EQ(s.examples, 2);
  EXPECT_EQ(s.count(DropReason::truncated_away), 1);
  EXPECT_EQ(s.count(DropReason::no_assistant), 1);
  EXPECT_EQ(s.count(DropReason::empty_assistant), 1);
  EXPECT_EQ(s.count(DropReason::render_error), 1);
  EXPECT_EQ(s.count(DropReason::assistant_not_rendered), 0);
  EXPECT_EQ(s.records, s.examples + s.dropped_total());
  // Truncated: the long prompt (dropped) and the long reply (kept).
  EXPECT_EQ(s.truncated_examples, 2);
  const Example& cut = out.examples[1];
  EXPECT_EQ(cut.size(), 32);
  EXPECT_GT(cut.truncated_tokens, 0);
  EXPECT_LT(cut.truncated_tokens, s.truncated_tokens);  // the dropped one lost tokens too
  EXPECT_EQ(cut.targets.back(), kIgnoreIndex);          // its next token was cut off
  expect_next_token_targets(cut);
  EXPECT_EQ(s.tokens, out.examples[0].size() + cut.size());
  EXPECT_EQ(s.target_tokens, out.examples[0].target_count + cut.target_count);
  // The report names each reason and where the first drops were.
  ASSERT_EQ(s.first_dropped.size(), 4u);
  EXPECT_EQ(s.first_dropped[0].id, "long-prompt");
  EXPECT_EQ(s.first_dropped[0].where.record, 1);
  EXPECT_EQ(s.first_dropped[3].reason, DropReason::render_error);
  EXPECT_NE(s.first_dropped[3].detail.find("no role tool"), std::string::npos)
      << s.first_dropped[3].detail;
  const std::string text = s.describe();
  for (const char* part : {"6 records -> 2 examples", "dropped 4", "1 no assistant message",
                           "1 empty assistant reply", "1 every trained token beyond max_len",
                           "1 render/mask error", "truncated 2 examples", "mem: record 5"}) {
    EXPECT_NE(text.find(part), std::string::npos) << part << " not in:\n" << text;
  }

  // Under on_error = stop the render error is thrown, naming the record and the field.
  options.on_error = data::OnError::stop;
  try {
    build_sft_examples(awkward_records(), chat::ChatTemplate::builtin("tulu"), tok, options, "mem");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().record, 5);
    EXPECT_EQ(e.context().field, "messages");
    EXPECT_NE(std::string(e.what()).find("mem: record 5, field 'messages'"), std::string::npos)
        << e.what();
  }
}

TEST(SftExamples, BadRecordNamesFileLineAndField) {
  const Tokenizer& tok = load("tokenizers/llama2/tokenizer.model");
  testing::TempDir dir;
  const auto path = dir / "train.jsonl";
  testing::spit(path,
                "{\"instruction\": \"Say hi.\", \"input\": \"\", \"output\": \"Hi!\"}\n"
                "{\"instruction\": \"Add 2 and 2.\", \"input\": \"\", \"output\": \"4\"}\n"
                "{\"instruction\": \"Broken.\", \"input\": \"\", \"output\": 5}\n"
                "{\"instruction\": \"Say bye.\", \"input\": \"\", \"output\": \"Bye!\"}\n");
  chat::ChatTemplate tulu = chat::ChatTemplate::builtin("tulu");
  try {
    load_sft_examples(path, tulu, tok);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().file, path.string());
    EXPECT_EQ(e.context().line, 3);
    EXPECT_EQ(e.context().field, "output");
    EXPECT_NE(std::string(e.what()).find(path.string() + ":3"), std::string::npos) << e.what();
  }
  ExampleOptions skip;
  skip.on_error = data::OnError::skip;
  SftExamples out = load_sft_examples(path, tulu, tok, skip);
  EXPECT_EQ(out.examples.size(), 3u);
  EXPECT_EQ(out.summary.records, 3);
  EXPECT_EQ(out.summary.bad_records.count, 1);
  EXPECT_NE(out.summary.describe().find(path.string() + ":3"), std::string::npos)
      << out.summary.describe();

  // A record that reads well but cannot be rendered: the error has its file and line too.
  const auto chats = dir / "chats.jsonl";
  testing::spit(chats,
                "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": "
                "\"assistant\", \"content\": \"Hello\"}]}\n"
                "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"critic\", "
                "\"content\": \"meh\"}, "
                "{\"role\": \"assistant\", \"content\": \"Hello\"}]}\n");
  try {
    load_sft_examples(chats, tulu, tok);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().line, 2);
    EXPECT_EQ(e.context().field, "messages");
    EXPECT_NE(std::string(e.what()).find(chats.string() + ":2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("critic"), std::string::npos) << e.what();
  }
}

// The Alpaca 5k subset through the paper's format: every count in the summary adds up.
TEST(SftExamples, Alpaca5kThroughTulu) {
  const Tokenizer& tok = load("tokenizers/llama2/tokenizer.model");
  ExampleOptions options;
  options.max_len = 256;
  options.default_system = "";
  SftExamples out = load_sft_examples(shared_data("train/alpaca/alpaca_5000.json"),
                                      chat::ChatTemplate::builtin("tulu"), tok, options);
  const ExampleSummary& s = out.summary;
  SCOPED_TRACE(s.describe());
  EXPECT_EQ(s.records, 5000);
  EXPECT_EQ(s.bad_records.count, 0);
  EXPECT_EQ(s.records, s.examples + s.dropped_total());
  EXPECT_EQ(int64_t(out.examples.size()), s.examples);
  EXPECT_GT(s.examples, 4900);
  EXPECT_EQ(s.warnings, 0);
  EXPECT_GT(s.truncated_examples, 0);  // some Alpaca answers are longer than 256 tokens
  int64_t tokens = 0, targets = 0, truncated_kept = 0, truncated_count = 0;
  for (const Example& ex : out.examples) {
    ASSERT_LE(ex.size(), 256);
    ASSERT_GT(ex.target_count, 0);
    ASSERT_EQ(ex.targets.back(), kIgnoreIndex);
    ASSERT_EQ(ex.tokens[0], *tok.bos_id());
    ASSERT_NE(ex.tokens[1], *tok.bos_id());
    tokens += ex.size();
    targets += ex.target_count;
    truncated_kept += ex.truncated_tokens;
    truncated_count += ex.truncated_tokens > 0;
    // Untruncated examples end with the reply's EOS, which is the last target.
    if (ex.truncated_tokens == 0) {
      ASSERT_EQ(ex.tokens.back(), *tok.eos_id());
      ASSERT_EQ(ex.targets[ex.targets.size() - 2], *tok.eos_id());
    }
  }
  EXPECT_EQ(tokens, s.tokens);
  EXPECT_EQ(targets, s.target_tokens);
  EXPECT_LE(truncated_kept, s.truncated_tokens);
  EXPECT_EQ(truncated_count + s.count(DropReason::truncated_away), s.truncated_examples);
  EXPECT_LT(s.target_tokens, s.tokens);

  // Packed into rows of 256: the epoch's accounting adds up to the summary.
  BatchOptions bo;
  bo.mode = BatchMode::packed;
  bo.batch_size = 8;
  bo.max_len = 256;
  bo.pad_id = *tok.eos_id();
  BatchPlan plan(out.examples, bo, 42);
  BatchAccounting a = plan.accounting(0);
  EXPECT_EQ(a.examples, s.examples);
  EXPECT_EQ(a.tokens_kept, s.tokens);
  EXPECT_EQ(a.target_tokens, s.target_tokens);
  EXPECT_EQ(a.tokens_truncated, truncated_kept);
  EXPECT_EQ(a.tokens_kept + a.tokens_padded, a.slots);
  EXPECT_GT(a.fill(), 0.95) << a.describe();
}

TEST(SftExamples, HeldOutSplit) {
  std::vector<int> items(100);
  std::iota(items.begin(), items.end(), 0);
  auto a = split(items, EvalSplit::of_fraction(0.1), 42);
  auto b = split(items, EvalSplit::of_fraction(0.1), 42);
  auto c = split(items, EvalSplit::of_fraction(0.1), 43);
  EXPECT_EQ(a.eval.size(), 10u);
  EXPECT_EQ(a.train.size(), 90u);
  EXPECT_EQ(a.eval, b.eval);
  EXPECT_NE(a.eval, c.eval);
  EXPECT_TRUE(std::is_sorted(a.eval.begin(), a.eval.end()));
  EXPECT_TRUE(std::is_sorted(a.train.begin(), a.train.end()));
  std::set<int> all(a.train.begin(), a.train.end());
  all.insert(a.eval.begin(), a.eval.end());
  EXPECT_EQ(all.size(), 100u);  // disjoint and complete
  EXPECT_EQ(split(items, EvalSplit::of_count(7), 1).eval.size(), 7u);
  EXPECT_EQ(split(items, EvalSplit::of_count(0), 1).eval.size(), 0u);
  EXPECT_THROW(split(items, EvalSplit::of_count(101), 1), Error);
  EXPECT_THROW(split(items, EvalSplit::of_fraction(1.0), 1), Error);
}

}  // namespace
}  // namespace seqit::train
