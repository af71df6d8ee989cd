// Text helpers shared by the tokenizer formats: UTF-8 decoding, lossy UTF-8 repair (Rust's
// from_utf8_lossy rules, which HF decode follows), GPT-2's byte<->char table, "<0xXX>" byte tokens,
// and TextPart: a piece of (possibly normalised) text that still knows which bytes of the caller's
// original input each of its bytes came from, so token spans survive normalisation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace seqit::tokenizer {

// Decodes the code point at s[i] (s must be valid UTF-8 there) and advances i.
inline char32_t next_code_point(std::string_view s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  auto at = [&](size_t k) {
    return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F);
  };
  char32_t cp;
  if (c < 0xE0) {
    cp = (char32_t(c & 0x1F) << 6) | at(1);
    i += 2;
  } else if (c < 0xF0) {
    cp = (char32_t(c & 0x0F) << 12) | (at(1) << 6) | at(2);
    i += 3;
  } else {
    cp = (char32_t(c & 0x07) << 18) | (at(1) << 12) | (at(2) << 6) | at(3);
    i += 4;
  }
  return cp;
}

// Length of the UTF-8 character starting with lead byte c (1 for ASCII and stray bytes).
inline size_t utf8_char_length(unsigned char c) {
  return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

// Appends `bytes` to `out`, replacing each maximal ill-formed subsequence by U+FFFD (the
// Unicode-recommended practice that Rust's String::from_utf8_lossy and HF decode use).
void append_utf8_lossy(std::string& out, std::string_view bytes);

// Unicode White_Space (what Oniguruma's \s and Rust's char::is_whitespace match).
bool is_unicode_whitespace(char32_t cp);

// GPT-2's reversible byte <-> printable character map used by byte-level BPE.
struct ByteLevelTable {
  std::array<char32_t, 256> byte_to_char;
  // UTF-8 of byte_to_char, for building token strings.
  std::array<std::string, 256> byte_to_utf8;
  // Inverse: the byte a character stands for, or -1.
  int char_to_byte(char32_t cp) const { return cp < 324 ? char_to_byte_[cp] : -1; }
  std::array<int16_t, 324> char_to_byte_;
};
const ByteLevelTable& byte_level_table();
// The raw bytes of a byte-level token string ("Ġthe" -> " the"); nullopt when a character is not in
// the table (then HF's decoder uses the token's own UTF-8 bytes).
std::optional<std::string> byte_level_decode(std::string_view token);
// "Ġthe" from " the".
std::string byte_level_encode(std::string_view bytes);

// The byte of a SentencePiece byte token "<0x0A>", or -1.
int parse_byte_token(std::string_view token);
// "<0x0A>" for byte 0x0A.
std::string byte_token_text(uint8_t byte);

// A view of text plus where each byte came from in the caller's input. When `align` is null the
// bytes are the input itself: byte i <-> input byte base + i. Otherwise align[i] is the input range
// that produced byte i; inserted bytes (e.g. a prepended "▁") have an empty range at the insertion
// point. Replaced text (" " -> "▁", NFC compositions) maps every output byte to the whole input
// range.
struct TextPart {
  std::string_view text;
  const Span* align = nullptr;
  size_t base = 0;

  TextPart slice(size_t begin, size_t end) const {
    TextPart p;
    p.text = text.substr(begin, end - begin);
    p.align = align ? align + begin : nullptr;
    p.base = base + begin;
    return p;
  }
  // The input bytes that text[begin, end) came from: the smallest range covering every non-empty
  // byte range; when every byte was inserted, the empty range at the first insertion point.
  Span original(size_t begin, size_t end) const;
  // Where the part starts in the input (HF's offsets_original().0).
  size_t original_begin() const {
    return align ? (text.empty() ? 0 : original(0, text.size()).begin) : base;
  }
};

// Owns the strings and alignments that transformed TextParts point into, for one encode call.
class PartArena {
 public:
  // Builds a new part byte by byte; finish() returns it (valid while the arena lives).
  class Builder {
   public:
    explicit Builder(PartArena& arena);
    // Appends bytes that all came from input range `from`.
    void append(std::string_view bytes, Span from);
    // Copies source[begin, end) with its own alignment.
    void copy(const TextPart& source, size_t begin, size_t end);
    size_t size() const { return text_->size(); }
    TextPart finish();

   private:
    std::string* text_;
    std::vector<Span>* align_;
  };
  void clear() {
    strings_.clear();
    aligns_.clear();
  }

 private:
  std::deque<std::string> strings_;
  std::deque<std::vector<Span>> aligns_;
};

// The input as valid UTF-8: the text itself when valid, else a copy where each ill-formed
// subsequence is replaced by U+FFFD (aligned to the replaced bytes), stored in `arena`.
TextPart repair_utf8(std::string_view input, PartArena& arena);

}  // namespace seqit::tokenizer
