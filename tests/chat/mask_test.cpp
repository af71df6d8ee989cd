// Assistant masks on real tokenizers and templates: decoding the masked tokens of each assistant
// turn gives exactly its content plus the end-of-turn marker; no byte of a system or user message
// is ever in a masked token; every byte of assistant content is.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>

#include "chat/assistant_mask.h"
#include "chat/chat_template.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"

namespace seqit::chat {
namespace {
using testing::shared_data;
using tokenizer::Tokenizer;

// Tokenizers are loaded once per test binary (the large tokenizer.json files take a while).
const Tokenizer& load(const char* relative) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[relative];
  if (!slot) slot = tokenizer::load_tokenizer(shared_data(relative));
  return *slot;
}

const std::vector<Message> kConversation = {
    {"system", "You are a concise assistant."},
    {"user", "What is the capital of France?"},
    {"assistant", "Paris is the capital of France."},
    {"user", "And 2 + 2? Answer in one line, naïvely."},
    {"assistant", "2 + 2 = 4 — naïve café 😀"},
    {"user", "Thanks!"},
    {"assistant", "You're welcome."},
};

struct Expectation {
  std::string marker;  // the end-of-turn token text
  std::string gap;     // text the template puts between the content and the marker
};

std::vector<std::pair<size_t, size_t>> masked_runs(const MaskedConversation& mc) {
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t k = 0; k < mc.mask.size(); ++k) {
    if (!mc.mask[k]) continue;
    if (!runs.empty() && runs.back().second == k)
      runs.back().second = k + 1;
    else
      runs.emplace_back(k, k + 1);
  }
  return runs;
}

bool is_space_only(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; });
}

void check_masks(const ChatTemplate& t, const Tokenizer& tok, const std::vector<Message>& messages,
                 const Expectation& e) {
  MaskedConversation mc = encode_with_assistant_mask(t, tok, messages_value(messages));
  Rendered r = t.render(messages);
  ASSERT_EQ(mc.text, r.text);
  EXPECT_TRUE(mc.warnings.empty()) << (mc.warnings.empty() ? "" : mc.warnings[0]);
  std::vector<size_t> assistant;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role == "assistant") assistant.push_back(i);
  }
  auto runs = masked_runs(mc);
  ASSERT_EQ(runs.size(), assistant.size()) << mc.text;
  ASSERT_EQ(mc.turns.size(), assistant.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    auto [b, end] = runs[i];
    SCOPED_TRACE("assistant message " + std::to_string(assistant[i]));
    EXPECT_EQ(mc.turns[i].first_token, b);
    EXPECT_EQ(mc.turns[i].end_token, end);
    // The masked bytes: [whitespace from the header that merged into the first token] + content
    // + gap + marker, and nothing else.
    size_t from = mc.spans[b].begin, to = mc.spans[end - 1].end;
    std::string masked = mc.text.substr(from, to - from);
    std::string expected = messages[assistant[i]].content + e.gap + e.marker;
    ASSERT_GE(masked.size(), expected.size()) << masked;
    EXPECT_EQ(masked.substr(masked.size() - expected.size()), expected);
    EXPECT_TRUE(is_space_only(masked.substr(0, masked.size() - expected.size()))) << masked;
    // Decoding the masked tokens gives the content and its end marker (SentencePiece decoders drop
    // the leading space of the first piece, as HF's decode does).
    std::vector<tokenizer::TokenId> ids(mc.ids.begin() + long(b), mc.ids.begin() + long(end));
    std::string decoded = tok.decode(ids);
    size_t lead = decoded.find_first_not_of(' ');
    EXPECT_EQ(decoded.substr(lead == std::string::npos ? 0 : lead), expected);
    ASSERT_TRUE(mc.turns[i].end_marker.has_value());
    EXPECT_EQ(mc.text.substr(mc.turns[i].end_marker->begin,
                             mc.turns[i].end_marker->end - mc.turns[i].end_marker->begin),
              e.marker);
  }
  // No masked token touches a system or user message; every assistant content byte is masked.
  for (const auto& m : r.messages) {
    for (const auto& range : m.content) {
      for (size_t k = 0; k < mc.ids.size(); ++k) {
        bool overlaps = mc.spans[k].begin < range.end && mc.spans[k].end > range.begin;
        if (!overlaps) continue;
        if (m.role == "assistant") {
          EXPECT_EQ(mc.mask[k], 1) << "assistant byte not learned in token " << k;
        } else {
          EXPECT_EQ(mc.mask[k], 0)
              << m.role << " token " << k << " '" << tok.token_text(mc.ids[k]) << "' is learned";
        }
      }
    }
  }
  for (size_t k = 0; k < mc.ids.size(); ++k) {
    if (mc.spans[k].begin == mc.spans[k].end && tok.is_special(mc.ids[k])) {
      EXPECT_EQ(mc.mask[k], 0) << "inserted token " << k << " is learned";
    }
  }
}

TEST(AssistantMask, Llama3) {
  const Tokenizer* tok = &load("tokenizers/llama3/tokenizer.json");
  ChatTemplate t = ChatTemplate::from_file(shared_data("tokenizers/llama3/tokenizer_config.json"));
  check_masks(t, *tok, kConversation, {"<|eot_id|>", ""});
  ChatTemplate llama31 = ChatTemplate::from_file(
      shared_data("tokenizers/chat_templates/llamacpp/meta-llama-Llama-3.1-8B-Instruct.jinja"));
  llama31.special_tokens() = t.special_tokens();
  check_masks(llama31, *tok, kConversation, {"<|eot_id|>", ""});
  // The template writes <|begin_of_text|> itself, so the tokenizer must not add another.
  MaskedConversation mc = encode_with_assistant_mask(t, *tok, messages_value(kConversation));
  EXPECT_EQ(tok->token_text(mc.ids[0]), "<|begin_of_text|>");
  EXPECT_NE(tok->token_text(mc.ids[1]), "<|begin_of_text|>");
}

TEST(AssistantMask, ChatmlQwen25) {
  const Tokenizer* tok = &load("tokenizers/qwen/qwen3_tokenizer.json");
  ChatTemplate t = ChatTemplate::from_file(
      shared_data("tokenizers/chat_templates/llamacpp/Qwen-Qwen2.5-7B-Instruct.jinja"));
  t.special_tokens() =
      read_special_tokens(shared_data("tokenizers/qwen/qwen3_tokenizer_config.json"));
  check_masks(t, *tok, kConversation, {"<|im_end|>", ""});
  check_masks(ChatTemplate::builtin("chatml", t.special_tokens()), *tok, kConversation,
              {"<|im_end|>", ""});
}

TEST(AssistantMask, TokensMergingAcrossTheContentBoundary) {
  // "<|im_start|>assistant\n" + "\n\nHello" — the template's newline and the content's newlines
  // become one token; it carries content bytes, so it is learned; the header before it is not.
  const Tokenizer* tok = &load("tokenizers/qwen/qwen3_tokenizer.json");
  ChatTemplate t = ChatTemplate::builtin("chatml");
  std::vector<Message> messages = {{"user", "Hi"}, {"assistant", "\n\nHello there\n"}};
  MaskedConversation mc = encode_with_assistant_mask(t, *tok, messages_value(messages));
  auto runs = masked_runs(mc);
  ASSERT_EQ(runs.size(), 1u);
  size_t first = runs[0].first;
  EXPECT_LT(mc.spans[first].begin, mc.turns[0].content[0].begin)
      << "first token should straddle the boundary";
  std::string masked = mc.text.substr(mc.spans[first].begin,
                                      mc.spans[runs[0].second - 1].end - mc.spans[first].begin);
  EXPECT_EQ(masked, "\n\n\nHello there\n<|im_end|>");
  EXPECT_EQ(mc.text.substr(0, mc.spans[first].begin),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant");
}

TEST(AssistantMask, MistralSentencePiece) {
  const Tokenizer* v1 = &load("tokenizers/mistral/tokenizer.model.v1");
  ChatTemplate t =
      ChatTemplate::from_file(shared_data("tokenizers/chat_templates/mistralrs_mistral.json"));
  t.special_tokens().fill_from(*v1);
  std::vector<Message> no_system(kConversation.begin() + 1, kConversation.end());
  check_masks(t, *v1, no_system, {"</s>", ""});
  const Tokenizer* v3 = &load("tokenizers/mistral/mistral_instruct_tokenizer_240323.model.v3");
  SpecialTokens tokens;
  tokens.fill_from(*v3);
  check_masks(ChatTemplate::builtin("mistral", tokens), *v3, kConversation, {"</s>", ""});
}

TEST(AssistantMask, ZephyrTinyLlama) {
  const Tokenizer* tok = &load("tokenizers/llama2/tokenizer.model");
  ChatTemplate t = ChatTemplate::from_file(
      shared_data("tokenizers/chat_templates/tinyllama_zephyr_chat_template.jinja"));
  t.special_tokens() = read_special_tokens(shared_data("tokenizers/llama2/tokenizer_config.json"));
  check_masks(t, *tok, kConversation, {"</s>", ""});
  // Llama-2's own format puts a space before EOS: " {reply} </s>"; the space is learned with it.
  ChatTemplate llama2 =
      ChatTemplate::from_file(shared_data("tokenizers/chat_templates/mistralrs_llama2.json"));
  llama2.special_tokens() = t.special_tokens();
  check_masks(llama2, *tok, kConversation, {"</s>", " "});
}

TEST(AssistantMask, EosWrittenAsTextThatTheTokenizerDoesNotParseIsReported) {
  // shared/data's llama2/tokenizer.json declares </s> with "normalized": true, and HF tokenizers
  // (like seqit) then does not recognise "</s>" in the text: the template's EOS would be learned
  // as the plain pieces ".</", "s", ">" and never as token 2. The mask refuses to call that an
  // end marker and says so.
  const Tokenizer* tok = &load("tokenizers/llama2/tokenizer.json");
  ChatTemplate t = ChatTemplate::from_file(
      shared_data("tokenizers/chat_templates/tinyllama_zephyr_chat_template.jinja"));
  t.special_tokens() = read_special_tokens(shared_data("tokenizers/llama2/tokenizer_config.json"));
  std::vector<Message> messages = {{"user", "Hi"}, {"assistant", "Hello."}};
  MaskedConversation mc = encode_with_assistant_mask(t, *tok, messages_value(messages));
  ASSERT_EQ(mc.warnings.size(), 1u);
  EXPECT_NE(mc.warnings[0].find("no end-of-turn token"), std::string::npos) << mc.warnings[0];
  EXPECT_EQ(std::count(mc.ids.begin(), mc.ids.end(), 2), 0);
}

TEST(AssistantMask, TuluIsTheSitTrainingFormat) {
  // SIT_SPEC §3.2: <|system|>\n{sys}\n<|user|>\n{user}\n<|assistant|>\n{reply}{eos}\n..., stripped;
  // Llama-3's tokenizer adds <|begin_of_text|>; the loss covers the reply and EOS.
  const Tokenizer* tok = &load("tokenizers/llama3/tokenizer.json");
  SpecialTokens tokens =
      read_special_tokens(shared_data("tokenizers/llama3/tokenizer_config.json"));
  ChatTemplate t = ChatTemplate::builtin("tulu", tokens);
  std::vector<Message> single = {{"system", ""},
                                 {"user", "Translate to French, then answer: Hi?"},
                                 {"assistant", "Salut ? Bonjour !"}};
  EXPECT_EQ(t.render(single).text,
            "<|system|>\n\n<|user|>\nTranslate to French, then answer: Hi?\n<|assistant|>\nSalut ? "
            "Bonjour !<|end_of_text|>");
  check_masks(t, *tok, single, {"<|end_of_text|>", ""});
  check_masks(t, *tok, kConversation, {"<|end_of_text|>", ""});
  // With Llama-2's SentencePiece tokenizer (the paper's early LLaMA-2 runs): its encoder adds
  // <s>, which is not learned.
  const Tokenizer* sp = &load("tokenizers/llama2/tokenizer.model");
  SpecialTokens sp_tokens;
  sp_tokens.fill_from(*sp);
  ChatTemplate sp_tulu = ChatTemplate::builtin("tulu", sp_tokens);
  check_masks(sp_tulu, *sp, kConversation, {"</s>", ""});
  MaskedConversation mc = encode_with_assistant_mask(sp_tulu, *sp, messages_value(single));
  EXPECT_EQ(sp->token_text(mc.ids[0]), "<s>");
  EXPECT_EQ(mc.mask[0], 0);
}

TEST(AssistantMask, WarnsWhenNoEndMarkerFollows) {
  const Tokenizer* tok = &load("tokenizers/qwen/qwen3_tokenizer.json");
  ChatTemplate t = ChatTemplate::from_source(
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}\n{% endfor %}",
      "no-end.jinja");
  std::vector<Message> messages = {{"user", "Hi"}, {"assistant", "Hello"}};
  MaskedConversation mc = encode_with_assistant_mask(t, *tok, messages_value(messages));
  ASSERT_EQ(mc.warnings.size(), 1u);
  EXPECT_NE(mc.warnings[0].find("no end-of-turn token"), std::string::npos) << mc.warnings[0];
  EXPECT_FALSE(mc.turns[0].end_marker.has_value());
  EXPECT_EQ(mc.masked_count(), 1u);  // "Hello" only
}

TEST(AssistantMask, ToolCallTurnsLearnWhatTheTemplateWritesForThem) {
  // An assistant message with only tool_calls has no content; its learned region is what the
  // template writes after the generation prompt, up to and including <|im_end|>.
  const Tokenizer* tok = &load("tokenizers/qwen/qwen3_tokenizer.json");
  ChatTemplate t = ChatTemplate::from_file(
      shared_data("tokenizers/chat_templates/llamacpp/Qwen-Qwen2.5-7B-Instruct.jinja"));
  t.special_tokens() =
      read_special_tokens(shared_data("tokenizers/qwen/qwen3_tokenizer_config.json"));
  jinja::Value messages = jinja::parse_json_value(R"([
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "sunny"},
    {"role": "assistant", "content": "It is sunny."}])",
                                                  "messages");
  MaskedConversation mc = encode_with_assistant_mask(t, *tok, messages);
  EXPECT_TRUE(mc.warnings.empty());
  auto runs = masked_runs(mc);
  ASSERT_EQ(runs.size(), 2u);
  auto text_of = [&](std::pair<size_t, size_t> run) {
    return mc.text.substr(mc.spans[run.first].begin,
                          mc.spans[run.second - 1].end - mc.spans[run.first].begin);
  };
  EXPECT_EQ(text_of(runs[0]),
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
            "\"Paris\"}}\n</tool_call><|im_end|>");
  EXPECT_EQ(text_of(runs[1]), "It is sunny.<|im_end|>");
}

TEST(AssistantMask, TemplatesThatRewriteContentAreTrackedThroughStringOperations) {
  // Qwen3 splits the reasoning off the content and rebuilds the <think> block around it: the
  // learned region runs from the end of the generation prompt ("<|im_start|>assistant\n") to
  // <|im_end|>, so the think tags the model must produce are learned with the content.
  const Tokenizer* tok = &load("tokenizers/qwen/qwen3_tokenizer.json");
  ChatTemplate t =
      ChatTemplate::from_file(shared_data("tokenizers/qwen/qwen3_tokenizer_config.json"));
  std::vector<Message> messages = {{"user", "2+2?"},
                                   {"assistant", "<think>\nadd them\n</think>\n\nIt is 4."}};
  MaskedConversation mc = encode_with_assistant_mask(t, *tok, messages_value(messages));
  EXPECT_TRUE(mc.warnings.empty());
  auto runs = masked_runs(mc);
  std::string learned;
  for (auto [b, e] : runs)
    learned += mc.text.substr(mc.spans[b].begin, mc.spans[e - 1].end - mc.spans[b].begin) + "|";
  EXPECT_EQ(learned, "<think>\nadd them\n</think>\n\nIt is 4.<|im_end|>|") << mc.text;
  ASSERT_TRUE(mc.turns[0].prompt_end.has_value());
  EXPECT_EQ(mc.text.substr(0, *mc.turns[0].prompt_end),
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
}

}  // namespace
}  // namespace seqit::chat
