#include "infer/text_stream.h"

#include <algorithm>

#include "util/utf8.h"

namespace seqit::infer {

namespace {
const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// Could `tail` (shorter than a full sequence) still become a valid sequence with more bytes?
bool is_unfinished_sequence(std::string_view tail) {
  auto lead = static_cast<unsigned char>(tail[0]);
  size_t need = utf8::sequence_length(lead);
  if (need <= 1 || lead < 0xC2 || lead > 0xF4 || tail.size() >= need) return false;
  for (size_t k = 1; k < tail.size(); ++k) {
    if ((static_cast<unsigned char>(tail[k]) & 0xC0) != 0x80) return false;
  }
  // The second byte's range is restricted for some leads (no overlongs, surrogates, > U+10FFFF).
  if (tail.size() >= 2) {
    auto b = static_cast<unsigned char>(tail[1]);
    if ((lead == 0xE0 && b < 0xA0) || (lead == 0xED && b > 0x9F) || (lead == 0xF0 && b < 0x90) ||
        (lead == 0xF4 && b > 0x8F)) {
      return false;
    }
  }
  return true;
}
}  // namespace

size_t append_valid_utf8(std::string& out, std::string_view bytes, bool final) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    std::string_view rest = bytes.substr(pos);
    size_t bad = utf8::first_invalid(rest);
    if (bad == std::string_view::npos) {
      out.append(rest);
      return bytes.size();
    }
    out.append(rest.substr(0, bad));
    pos += bad;
    if (!final && is_unfinished_sequence(bytes.substr(pos))) return pos;
    out.append(kReplacement);
    ++pos;  // one replacement per byte that cannot be part of a valid sequence here
  }
  return pos;
}

bool drops_leading_space(const tokenizer::Tokenizer& tokenizer, tokenizer::TokenId id) {
  std::string bytes = tokenizer.token_bytes(id);
  if (bytes.empty() || bytes[0] != ' ') return false;
  tokenizer::TokenId ids[] = {id};
  return tokenizer.decode(ids) == bytes.substr(1);
}

TextStream::TextStream(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stop_strings,
                       bool at_text_start)
    : tokenizer_(tokenizer), at_text_start_(at_text_start) {
  for (std::string& s : stop_strings) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

std::string TextStream::push(tokenizer::TokenId id) {
  if (stopped_ || tokenizer_.is_special(id)) return {};
  std::string bytes = tokenizer_.token_bytes(id);
  if (at_text_start_ && !bytes.empty()) {
    if (drops_leading_space(tokenizer_, id)) bytes.erase(0, 1);
    at_text_start_ = false;
  }
  pending_ += bytes;
  return release(false);
}

std::string TextStream::finish() {
  if (stopped_) return {};
  return release(true);
}

std::string TextStream::release(bool final) {
  size_t used = append_valid_utf8(held_, pending_, final);
  pending_.erase(0, used);
  // A stop string can only begin inside held_: any earlier start would have been held back.
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) {
    size_t at = held_.find(s);
    if (at != std::string::npos && (cut == std::string::npos || at < cut)) {
      cut = at;
      matched_stop_ = s;
    }
  }
  std::string out;
  if (cut != std::string::npos) {
    stopped_ = true;
    out = held_.substr(0, cut);
    held_.clear();
    pending_.clear();
  } else {
    size_t keep = 0;
    if (!final) {
      // Hold the longest suffix of held_ that is a proper prefix of a stop string.
      for (const std::string& s : stops_) {
        for (size_t len = std::min(s.size() - 1, held_.size()); len > keep; --len) {
          if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
            keep = len;
            break;
          }
        }
      }
    }
    out = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
  }
  text_ += out;
  return out;
}

}  // namespace seqit::infer
