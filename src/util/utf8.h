// UTF-8 checks shared by the readers, the tokenizers and streaming output.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace seqit::utf8 {

// Byte offset of the first invalid or incomplete sequence, or std::string_view::npos if `s` is
// valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
size_t first_invalid(std::string_view s);
inline bool is_valid(std::string_view s) {
  return first_invalid(s) == std::string_view::npos;
}

// Length of the longest prefix of `s` that does not end inside a multi-byte sequence: what can be
// printed now when `s` may continue in the next chunk of a stream.
size_t complete_prefix(std::string_view s);

// Length in bytes of the sequence that starts with lead byte `c` (1 for invalid leads).
size_t sequence_length(unsigned char c);

// Appends the UTF-8 encoding of code point `cp` to `out`.
void append(std::string& out, char32_t cp);

// Number of code points (invalid bytes count as one each).
size_t count_code_points(std::string_view s);

// `s` with every byte that does not belong to a valid sequence replaced by U+FFFD (a token that
// holds part of a character, shown as text).
std::string sanitize(std::string_view s);

}  // namespace seqit::utf8
