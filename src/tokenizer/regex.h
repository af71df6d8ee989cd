// Pre-tokenizer regular expressions (GPT-2, Llama-3, Qwen2 splits) through PCRE2 with UTF, UCP and
// JIT. HF tokenizers compiles these patterns with Oniguruma, whose \s is Unicode White_Space
// (U+0085 included, U+FEFF not); PCRE2's \s differs on U+0085, so \s and \S are rewritten to that
// exact set before compiling.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace seqit::tokenizer {

class Regex {
 public:
  // `where` names the file and component for errors (a pattern PCRE2 rejects).
  Regex(std::string_view pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(begin, end) for each successive non-overlapping match in `text`, which must be
  // valid UTF-8 (not re-checked). An empty match advances by one character.
  template <typename F>
  void for_each_match(std::string_view text, F&& on_match) const {
    size_t pos = 0;
    size_t begin, end;
    while (pos <= text.size() && next_match(text, pos, &begin, &end)) {
      on_match(begin, end);
      if (end == begin) {
        if (end >= text.size()) break;
        pos = end + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      } else {
        pos = end;
      }
    }
  }

  const std::string& pattern() const { return pattern_; }

 private:
  bool next_match(std::string_view text, size_t from, size_t* begin, size_t* end) const;
  std::string pattern_;
  std::string where_;
  void* code_ = nullptr;  // pcre2_code_8*
};

// Rewrites \s and \S in an Oniguruma-syntax pattern to explicit White_Space classes (see above).
std::string translate_oniguruma_pattern(std::string_view pattern);

}  // namespace seqit::tokenizer
