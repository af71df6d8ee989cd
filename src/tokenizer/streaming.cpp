#include "tokenizer/streaming.h"

#include "util/utf8.h"

namespace seqit::tokenizer {

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {
  for (const char* candidate : {"a", "x", "e", ".", "0"}) {
    auto id = tokenizer_.token_id(candidate);
    if (!id || tokenizer_.is_special(*id)) continue;
    std::vector<TokenId> one = {*id};
    std::string text = tokenizer_.decode(one, false);
    if (text == candidate) {
      anchor_ = id;
      anchor_text_ = text;
      break;
    }
  }
}

void StreamingDecoder::reset() {
  window_.clear();
  started_ = false;
}

std::string StreamingDecoder::decode_window() const {
  if (!started_ || !anchor_) return tokenizer_.decode(window_, skip_special_);
  std::vector<TokenId> ids;
  ids.reserve(window_.size() + 1);
  ids.push_back(*anchor_);
  ids.insert(ids.end(), window_.begin(), window_.end());
  std::string text = tokenizer_.decode(ids, skip_special_);
  if (text.compare(0, anchor_text_.size(), anchor_text_) == 0)
    return text.substr(anchor_text_.size());
  return tokenizer_.decode(window_, skip_special_);
}

std::string StreamingDecoder::push(TokenId id) {
  window_.push_back(id);
  // Wait while the raw bytes end inside a UTF-8 sequence that a later token may complete.
  std::string raw;
  bool any_text = false;
  for (TokenId t : window_) {
    if (skip_special_ && tokenizer_.is_special(t)) continue;
    raw += tokenizer_.token_bytes(t);
    any_text = true;
  }
  if (utf8::complete_prefix(raw) < raw.size()) return {};
  std::string out = decode_window();
  if (any_text) started_ = true;
  window_.clear();
  return out;
}

std::string StreamingDecoder::finish() {
  if (window_.empty()) return {};
  std::string out = decode_window();
  window_.clear();
  started_ = true;
  return out;
}

}  // namespace seqit::tokenizer
