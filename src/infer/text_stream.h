// Turns generated tokens into text as they come: valid UTF-8 only (bytes of a character split
// across tokens are held until it completes; bytes that can never form one become U+FFFD), stop
// strings detected across token boundaries (text that might begin a stop string is held back until
// it is clear), special tokens left out of the text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace seqit::infer {

class TextStream {
 public:
  // `at_text_start`: the generated text begins a text (nothing but special tokens before it, e.g.
  // only BOS, or a chat reply read on its own), so a SentencePiece-style leading space of the first
  // token is dropped as the tokenizer's decode() would drop it.
  TextStream(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stop_strings,
             bool at_text_start);

  // Adds one generated token; returns the text that became final with it (possibly empty).
  std::string push(tokenizer::TokenId id);
  // Ends the stream: releases held-back text; an unfinished UTF-8 sequence becomes U+FFFD.
  std::string finish();

  // True once a stop string appeared; text() ends right before it and push() returns nothing more.
  bool stopped() const { return stopped_; }
  const std::string& stop_string() const { return matched_stop_; }
  // Everything returned so far.
  const std::string& text() const { return text_; }
  // Whether the next token with output starts the text (its SentencePiece space is then dropped).
  bool at_text_start() const { return at_text_start_; }

 private:
  std::string release(bool final);

  const tokenizer::Tokenizer& tokenizer_;
  std::vector<std::string> stops_;
  bool at_text_start_;
  bool stopped_ = false;
  std::string pending_;  // raw bytes, possibly ending inside a UTF-8 sequence
  std::string held_;     // valid text that may be the beginning of a stop string
  std::string text_;
  std::string matched_stop_;
};

// Whether `id`'s text at the start of a decoded text loses its leading space (SentencePiece's
// rule).
bool drops_leading_space(const tokenizer::Tokenizer& tokenizer, tokenizer::TokenId id);

// Appends `bytes` to `out` as valid UTF-8: complete sequences as they are, each byte that cannot
// start or continue a valid sequence as U+FFFD; returns the number of bytes consumed. When `final`
// is false an unfinished sequence at the end is left unconsumed (it may complete with the next
// bytes).
size_t append_valid_utf8(std::string& out, std::string_view bytes, bool final);

}  // namespace seqit::infer
