// Assistant masks for supervised fine-tuning: the token ids of a rendered conversation and a mask
// that is 1 exactly on the tokens the model must learn — each assistant message's content plus
// the end-of-turn marker that follows it (EOS, <|eot_id|>, <|im_end|>, <end_of_turn>, ...) — and 0
// on everything else (system, user and tool turns, role headers, BOS, generation prompts).
//
// Method (docs/chat.md, "Assistant masks"): render once with every message's content tagged; the
// interpreter carries the tags through every string operation, so the rendered text comes with
// the exact byte ranges of each message's content. An assistant turn's learned region starts
// where the generation prompt for it ends (the text rendered for the messages before it with
// add_generation_prompt=true, when that is a prefix of the full text and holds no later message)
// — or at its first content byte otherwise — and ends with the end-of-turn marker: the first token
// after the content, past whitespace-only tokens, that is a special end-of-turn token. For plain
// templates the region is exactly content + marker; for templates that wrap the content (think
// tags, tool calls) the wrapping the model must produce is learned too. The whole text is tokenized
// once with byte spans per token, and a token is masked when its span overlaps a learned region,
// so tokens that merge across the boundary between template text and content are handled.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace seqit::chat {

struct MaskOptions {
  RenderOptions render;  // add_generation_prompt stays false for training
  // Whether the tokenizer adds its special tokens (BOS) to the rendered text. Default: the
  // template's tokenizer_adds_special_tokens() (false for HF templates, as apply_chat_template).
  std::optional<bool> add_special;
  // Also learn the end-of-turn marker after each assistant content (what makes a model stop).
  bool train_end_marker = true;
};

struct MaskedTurn {
  size_t message_index = 0;
  std::vector<ByteRange>
      content;  // assistant content in the text; empty when the template dropped it
  // Where the generation prompt for this turn ends in the text, when the template renders it
  // consistently (the learned region starts there).
  std::optional<size_t> prompt_end;
  size_t first_token = 0, end_token = 0;  // masked token range [first, end) of this turn
  std::optional<ByteRange> end_marker;    // where the end marker is in the text, when there is one
};

struct MaskedConversation {
  std::string text;
  std::vector<tokenizer::TokenId> ids;
  std::vector<tokenizer::Span> spans;  // byte range of each token in `text`
  std::vector<uint8_t> mask;           // 1 = learn this token
  std::vector<MaskedTurn> turns;       // one per assistant message, in order
  // Problems found while masking (an assistant message whose content is not in the text, no end
  // marker after a turn); empty when all is well.
  std::vector<std::string> warnings;

  size_t masked_count() const;
};

// Is `token_text` an end-of-turn marker (EOS or a special token such as <|eot_id|>, <|im_end|>,
// <|end|>, <end_of_turn>, </s>, <|endoftext|>)?
bool is_end_marker_text(std::string_view token_text, const std::optional<std::string>& eos_token);

MaskedConversation encode_with_assistant_mask(const ChatTemplate& chat_template,
                                              const tokenizer::Tokenizer& tokenizer,
                                              const jinja::Value& messages,
                                              const MaskOptions& options = {});

}  // namespace seqit::chat
