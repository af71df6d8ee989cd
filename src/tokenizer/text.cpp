#include "tokenizer/text.h"

#include "util/utf8.h"

namespace seqit::tokenizer {

namespace {
// Length of the maximal prefix of s[i..] that is a well-formed or truncated-but-valid-so-far UTF-8
// sequence, and whether it is complete. Follows Unicode's table of well-formed byte sequences.
size_t valid_run(const unsigned char* p, size_t n, bool* complete) {
  unsigned char c = p[0];
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // range for the second byte
  if (c < 0x80) {
    *complete = true;
    return 1;
  } else if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c == 0xE0) {
    need = 3, lo = 0xA0;
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    need = 3;
  } else if (c == 0xED) {
    need = 3, hi = 0x9F;
  } else if (c == 0xF0) {
    need = 4, lo = 0x90;
  } else if (c >= 0xF1 && c <= 0xF3) {
    need = 4;
  } else if (c == 0xF4) {
    need = 4, hi = 0x8F;
  } else {
    *complete = false;
    return 1;
  }
  size_t k = 1;
  for (; k < need && k < n; ++k) {
    unsigned char b = p[k];
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) break;
  }
  *complete = k == need;
  return k;
}
}  // namespace

void append_utf8_lossy(std::string& out, std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size(), i = 0;
  while (i < n) {
    size_t start = i;
    while (i < n && p[i] < 0x80) ++i;  // ASCII run
    if (i > start) out.append(bytes.data() + start, i - start);
    if (i >= n) break;
    bool complete;
    size_t len = valid_run(p + i, n - i, &complete);
    if (complete) {
      out.append(bytes.data() + i, len);
    } else {
      out.append("\xEF\xBF\xBD");
    }
    i += len;
  }
}

bool is_unicode_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table = [] {
    ByteLevelTable t;
    t.char_to_byte_.fill(-1);
    char32_t next_free = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      char32_t c = printable ? char32_t(b) : next_free++;
      t.byte_to_char[b] = c;
      t.char_to_byte_[c] = static_cast<int16_t>(b);
      utf8::append(t.byte_to_utf8[b], c);
    }
    return t;
  }();
  return table;
}

std::optional<std::string> byte_level_decode(std::string_view token) {
  const auto& table = byte_level_table();
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    char32_t cp = next_code_point(token, i);
    int b = table.char_to_byte(cp);
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
  }
  return out;
}

std::string byte_level_encode(std::string_view bytes) {
  const auto& table = byte_level_table();
  std::string out;
  for (unsigned char b : bytes) out += table.byte_to_utf8[b];
  return out;
}

int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

std::string byte_token_text(uint8_t byte) {
  static const char* digits = "0123456789ABCDEF";
  std::string s = "<0x00>";
  s[3] = digits[byte >> 4];
  s[4] = digits[byte & 15];
  return s;
}

Span TextPart::original(size_t begin, size_t end) const {
  if (!align) return {base + begin, base + end};
  size_t lo = SIZE_MAX, hi = 0;
  for (size_t i = begin; i < end; ++i) {
    const Span& s = align[i];
    if (s.begin == s.end) continue;
    if (s.begin < lo) lo = s.begin;
    if (s.end > hi) hi = s.end;
  }
  if (lo == SIZE_MAX) {
    size_t at =
        begin < text.size() ? align[begin].begin : (text.empty() ? 0 : align[text.size() - 1].end);
    return {at, at};
  }
  return {lo, hi};
}

PartArena::Builder::Builder(PartArena& arena)
    : text_(&arena.strings_.emplace_back()), align_(&arena.aligns_.emplace_back()) {}

void PartArena::Builder::append(std::string_view bytes, Span from) {
  text_->append(bytes);
  align_->insert(align_->end(), bytes.size(), from);
}

void PartArena::Builder::copy(const TextPart& source, size_t begin, size_t end) {
  text_->append(source.text.substr(begin, end - begin));
  if (source.align) {
    align_->insert(align_->end(), source.align + begin, source.align + end);
  } else {
    for (size_t i = begin; i < end; ++i) align_->push_back({source.base + i, source.base + i + 1});
  }
}

TextPart PartArena::Builder::finish() {
  TextPart p;
  p.text = *text_;
  p.align = align_->data();
  p.base = 0;
  return p;
}

TextPart repair_utf8(std::string_view input, PartArena& arena) {
  if (utf8::is_valid(input)) return TextPart{input, nullptr, 0};
  PartArena::Builder b(arena);
  const auto* p = reinterpret_cast<const unsigned char*>(input.data());
  size_t i = 0, n = input.size();
  while (i < n) {
    bool complete;
    size_t len = valid_run(p + i, n - i, &complete);
    if (complete) {
      for (size_t k = 0; k < len; ++k) b.append(input.substr(i + k, 1), {i + k, i + k + 1});
    } else {
      b.append("\xEF\xBF\xBD", {i, i + len});
    }
    i += len;
  }
  return b.finish();
}

}  // namespace seqit::tokenizer
