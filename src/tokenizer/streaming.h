// Token-by-token detokenization for generation output: push() returns only complete UTF-8, and the
// concatenation of everything returned equals decode() of all the tokens (including SentencePiece's
// "drop the leading space of the first token" rule, which must apply once, not once per chunk).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace seqit::tokenizer {

class StreamingDecoder {
 public:
  // `tokenizer` must outlive the decoder. skip_special as in Tokenizer::decode.
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special = true);

  // Adds one token; returns the text that is now complete (often empty while a multi-byte
  // character is split over byte tokens).
  std::string push(TokenId id);
  // Ends the stream: returns whatever is still held (an unfinished character becomes U+FFFD, as
  // decode() does).
  std::string finish();
  // Starts a new stream.
  void reset();

 private:
  std::string decode_window() const;
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::vector<TokenId> window_;  // tokens not yet emitted
  bool started_ = false;         // a token has already reached the decoder
  // A plain token decoded in front of each later window, so rules about "the first token" (strip a
  // leading space) apply to it and not to the window; its own text is then cut off.
  std::optional<TokenId> anchor_;
  std::string anchor_text_;
};

}  // namespace seqit::tokenizer
