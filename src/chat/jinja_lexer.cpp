// The lexer follows jinja2's lexer rules (root state: text up to the next tag; tag state:
// expression tokens up to the closing delimiter), written from jinja2's documented behaviour and
// checked against it by tests/chat/ (rendering every real template in shared/data).
#include "chat/jinja_lexer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <cstring>

#include "util/error.h"
#include "util/utf8.h"

namespace seqit::chat::jinja {

bool python_isspace(char32_t cp) {
  switch (cp) {
    case ' ':
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case 0x1c:
    case 0x1d:
    case 0x1e:
    case 0x1f:
    case 0x85:
    case 0xa0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202f:
    case 0x205f:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200a;
  }
}

namespace {

// Length of the whitespace code point at s[i], or 0 when s[i] does not start one.
size_t space_at(std::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return python_isspace(c) ? 1 : 0;
  utf8proc_int32_t cp = -1;
  auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                            utf8proc_ssize_t(s.size() - i), &cp);
  if (n <= 0 || cp < 0) return 0;
  return python_isspace(char32_t(cp)) ? size_t(n) : 0;
}

size_t skip_space(std::string_view s, size_t i) {
  while (i < s.size()) {
    size_t n = space_at(s, i);
    if (!n) break;
    i += n;
  }
  return i;
}

// Python str.rstrip(): length of `s` without its trailing whitespace.
size_t rstrip_length(std::string_view s) {
  size_t keep = 0;
  for (size_t i = 0; i < s.size();) {
    size_t n = space_at(s, i);
    if (n) {
      i += n;
    } else {
      i += utf8::sequence_length(static_cast<unsigned char>(s[i]));
      keep = std::min(i, s.size());
    }
  }
  return keep;
}

bool all_space(std::string_view s) {
  if (s.empty()) return false;
  return skip_space(s, 0) == s.size();
}

bool is_name_start(unsigned char c) {
  return std::isalpha(c) || c == '_' || c >= 0x80;
}
bool is_name_char(unsigned char c) {
  return std::isalnum(c) || c == '_' || c >= 0x80;
}

class Lexer {
 public:
  Lexer(std::string_view source, const std::string& name, const LexOptions& options)
      : name_(name), options_(options) {
    // jinja2 splits on \r\n|\r|\n and joins with \n, dropping one trailing newline.
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!options_.keep_trailing_newline && !src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      size_t tag = find_tag(pos);
      if (tag == std::string_view::npos) {
        emit_text(pos, src_.size(), pos);
        break;
      }
      char kind = src_[tag + 1];  // '{', '%' or '#'
      char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      if (sign != '-' && sign != '+') sign = '\0';
      std::string_view text(src_.data() + pos, tag - pos);
      size_t text_end = tag;
      if (sign == '-') {
        text_end = pos + rstrip_length(text);
      } else if (sign != '+' && options_.lstrip_blocks && kind != '{') {
        size_t nl = text.rfind('\n');
        size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
        if ((l_pos > 0 || line_starting) && all_space(text.substr(l_pos))) text_end = pos + l_pos;
      }
      size_t inner = tag + 2 + (sign ? 1 : 0);
      if (kind == '%' && is_raw_begin(inner)) {
        emit_text(pos, text_end, pos);
        pos = lex_raw(tag, inner);
      } else {
        emit_text(pos, text_end, pos);
        if (kind == '#') {
          pos = lex_comment(tag, inner);
        } else {
          pos = lex_tag(tag, inner, kind == '%');
        }
      }
      line_starting = pos > 0 && src_[pos - 1] == '\n';
    }
    Token end;
    end.type = TokenType::End;
    locate(src_.size(), end);
    tokens_.push_back(std::move(end));
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(size_t offset, const std::string& message) {
    Token where;
    locate(offset, where);
    throw Error(message).in_file(name_).at_line(where.line, where.column);
  }

  void locate(size_t offset, Token& t) const {
    size_t lo = 0, hi = line_starts_.size();
    while (hi - lo > 1) {
      size_t mid = (lo + hi) / 2;
      if (line_starts_[mid] <= offset)
        lo = mid;
      else
        hi = mid;
    }
    t.line = int(lo + 1);
    t.column = int(offset - line_starts_[lo] + 1);
  }

  size_t find_tag(size_t pos) const {
    while (true) {
      size_t p = src_.find('{', pos);
      if (p == std::string::npos || p + 1 >= src_.size()) return std::string_view::npos;
      char c = src_[p + 1];
      if (c == '{' || c == '%' || c == '#') return p;
      pos = p + 1;
    }
  }

  void emit_text(size_t begin, size_t end, size_t at) {
    if (end <= begin) return;
    Token t;
    t.type = TokenType::Text;
    t.value.assign(src_, begin, end - begin);
    locate(at, t);
    tokens_.push_back(std::move(t));
  }

  // After a closing delimiter at [.., close_end): `-` strips all following whitespace; plain block
  // and comment ends drop one newline (trim_blocks); `+` keeps everything.
  size_t after_close(size_t close_end, char sign, bool block_like) const {
    if (sign == '-') return skip_space(src_, close_end);
    if (sign != '+' && block_like && options_.trim_blocks && close_end < src_.size() &&
        src_[close_end] == '\n')
      return close_end + 1;
    return close_end;
  }

  size_t lex_comment(size_t tag, size_t inner) {
    size_t close = src_.find("#}", inner);
    if (close == std::string::npos) fail(tag, "missing end of comment tag");
    char sign = '\0';
    if (close > inner && (src_[close - 1] == '-' || src_[close - 1] == '+')) sign = src_[close - 1];
    return after_close(close + 2, sign, true);
  }

  bool is_raw_begin(size_t inner) const {
    size_t p = skip_space(src_, inner);
    if (src_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    if (p < src_.size() && is_name_char(static_cast<unsigned char>(src_[p]))) return false;
    p = skip_space(src_, p);
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    return src_.compare(p, 2, "%}") == 0;
  }

  // {% raw %}...{% endraw %}: the body is text, untouched.
  size_t lex_raw(size_t tag, size_t inner) {
    size_t p = skip_space(src_, inner) + 3;
    p = skip_space(src_, p);
    char sign = '\0';
    if (src_[p] == '-' || src_[p] == '+') sign = src_[p++];
    size_t body = after_close(p + 2, sign, true);
    size_t search = body;
    while (true) {
      size_t open = src_.find("{%", search);
      if (open == std::string::npos) fail(tag, "missing end of raw directive");
      size_t q = open + 2;
      char open_sign = '\0';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) open_sign = src_[q++];
      q = skip_space(src_, q);
      if (src_.compare(q, 6, "endraw") == 0) {
        q = skip_space(src_, q + 6);
        char close_sign = '\0';
        if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) close_sign = src_[q++];
        if (src_.compare(q, 2, "%}") == 0) {
          size_t text_end = open;
          if (open_sign == '-')
            text_end = body + rstrip_length(std::string_view(src_).substr(body, open - body));
          emit_text(body, text_end, body);
          return after_close(q + 2, close_sign, true);
        }
      }
      search = open + 2;
    }
  }

  // Tokens of one {{ ... }} or {% ... %}; returns the position after the closing delimiter.
  size_t lex_tag(size_t tag, size_t inner, bool block) {
    Token begin;
    begin.type = block ? TokenType::BlockBegin : TokenType::VariableBegin;
    locate(tag, begin);
    tokens_.push_back(std::move(begin));
    std::vector<char> brackets;
    size_t p = inner;
    while (true) {
      p = skip_space(src_, p);
      if (p >= src_.size())
        fail(tag, block ? "unexpected end of template: unclosed '{%' tag"
                        : "unexpected end of template: unclosed '{{' tag");
      if (brackets.empty()) {
        const char* close = block ? "%}" : "}}";
        char sign = '\0';
        size_t q = p;
        if (src_[q] == '-' || src_[q] == '+') {
          if (src_.compare(q + 1, 2, close) == 0) sign = src_[q++];
        }
        // '+}}' is not a delimiter in jinja2; only '-}}' and '}}' are.
        if (src_.compare(q, 2, close) == 0 && !(sign == '+' && !block)) {
          Token end;
          end.type = block ? TokenType::BlockEnd : TokenType::VariableEnd;
          locate(p, end);
          tokens_.push_back(std::move(end));
          return after_close(q + 2, sign, block);
        }
      }
      Token t;
      locate(p, t);
      unsigned char c = static_cast<unsigned char>(src_[p]);
      if (c == '\'' || c == '"') {
        p = lex_string(p, t);
      } else if (std::isdigit(c)) {
        p = lex_number(p, t);
      } else if (is_name_start(c)) {
        size_t q = p;
        while (q < src_.size() && is_name_char(static_cast<unsigned char>(src_[q]))) ++q;
        t.type = TokenType::Name;
        t.value.assign(src_, p, q - p);
        p = q;
      } else {
        static const char* const two[] = {"//", "**", "==", "!=", ">=", "<="};
        t.type = TokenType::Operator;
        bool matched = false;
        for (const char* op : two) {
          if (src_.compare(p, 2, op) == 0) {
            t.value = op;
            p += 2;
            matched = true;
            break;
          }
        }
        if (!matched) {
          if (!std::strchr("+-/*%~[](){}><=.:|,;", c) || c == '\0') {
            fail(p, std::string("unexpected character '") + char(c) + "'");
          }
          t.value = std::string(1, char(c));
          ++p;
          if (c == '(' || c == '[' || c == '{') {
            brackets.push_back(char(c));
          } else if (c == ')' || c == ']' || c == '}') {
            char want = c == ')' ? '(' : c == ']' ? '[' : '{';
            if (brackets.empty() || brackets.back() != want) {
              std::string msg = std::string("unexpected '") + char(c) + "'";
              if (!brackets.empty()) {
                char open = brackets.back();
                msg += std::string(", expected '") +
                       (open == '('   ? ')'
                        : open == '[' ? ']'
                                      : '}') +
                       "'";
              }
              fail(p - 1, msg);
            }
            brackets.pop_back();
          }
        }
      }
      tokens_.push_back(std::move(t));
    }
  }

  // A quoted string literal with Python escape sequences (jinja2 decodes them as unicode_escape).
  size_t lex_string(size_t p, Token& t) {
    char quote = src_[p];
    size_t q = p + 1;
    std::string out;
    while (true) {
      if (q >= src_.size()) fail(p, "unterminated string literal");
      char c = src_[q];
      if (c == quote) break;
      if (c != '\\') {
        out += c;
        ++q;
        continue;
      }
      if (q + 1 >= src_.size()) fail(p, "unterminated string literal");
      char e = src_[q + 1];
      q += 2;
      switch (e) {
        case '\n':
          break;  // line continuation
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'v':
          out += '\v';
          break;
        case 'x':
        case 'u':
        case 'U': {
          size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (size_t k = 0; k < digits; ++k) {
            if (q + k >= src_.size() || !std::isxdigit(static_cast<unsigned char>(src_[q + k]))) {
              fail(q - 2, std::string("truncated \\") + e + " escape in string literal");
            }
            char h = src_[q + k];
            cp = cp * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(h))
                                        ? h - '0'
                                        : (std::tolower(h) - 'a' + 10));
          }
          q += digits;
          if (cp > 0x10ffff) fail(q - digits - 2, "illegal Unicode character in string literal");
          utf8::append(out, char32_t(cp));
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = uint32_t(e - '0');
            for (int k = 0; k < 2 && q < src_.size() && src_[q] >= '0' && src_[q] <= '7';
                 ++k, ++q) {
              cp = cp * 8 + uint32_t(src_[q] - '0');
            }
            utf8::append(out, char32_t(cp));
          } else {
            out += '\\';  // unknown escapes stay as written, as in Python
            out += e;
          }
      }
    }
    t.type = TokenType::String;
    t.value = std::move(out);
    return q + 1;
  }

  size_t lex_number(size_t p, Token& t) {
    auto digits = [&](size_t q, int base) {
      auto ok = [&](char c) {
        if (base == 16) return bool(std::isxdigit(static_cast<unsigned char>(c)));
        if (base == 8) return c >= '0' && c <= '7';
        if (base == 2) return c == '0' || c == '1';
        return bool(std::isdigit(static_cast<unsigned char>(c)));
      };
      while (q < src_.size() &&
             (ok(src_[q]) || (src_[q] == '_' && q + 1 < src_.size() && ok(src_[q + 1]))))
        ++q;
      return q;
    };
    auto clean = [](std::string s) {
      std::string out;
      for (char c : s) {
        if (c != '_') out += c;
      }
      return out;
    };
    if (src_[p] == '0' && p + 1 < src_.size() && std::strchr("xXoObB", src_[p + 1])) {
      int base = std::tolower(src_[p + 1]) == 'x' ? 16 : std::tolower(src_[p + 1]) == 'o' ? 8 : 2;
      size_t q = digits(p + 2, base);
      t.type = TokenType::Integer;
      t.int_value = std::strtoll(clean(src_.substr(p + 2, q - p - 2)).c_str(), nullptr, base);
      t.value = src_.substr(p, q - p);
      return q;
    }
    size_t q = digits(p, 10);
    bool after_dot = !tokens_.empty() && tokens_.back().type == TokenType::Operator &&
                     tokens_.back().value == ".";
    bool is_float = false;
    if (!after_dot) {
      size_t r = q;
      if (r + 1 < src_.size() && src_[r] == '.' &&
          std::isdigit(static_cast<unsigned char>(src_[r + 1]))) {
        r = digits(r + 1, 10);
        is_float = true;
      }
      if (r < src_.size() && (src_[r] == 'e' || src_[r] == 'E')) {
        size_t s = r + 1;
        if (s < src_.size() && (src_[s] == '+' || src_[s] == '-')) ++s;
        if (s < src_.size() && std::isdigit(static_cast<unsigned char>(src_[s]))) {
          r = digits(s, 10);
          is_float = true;
        }
      }
      if (is_float) q = r;
    }
    std::string text = clean(src_.substr(p, q - p));
    t.value = src_.substr(p, q - p);
    if (is_float) {
      t.type = TokenType::Float;
      t.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      t.type = TokenType::Integer;
      t.int_value = std::strtoll(text.c_str(), nullptr, 10);
    }
    return q;
  }

  std::string src_;
  const std::string& name_;
  LexOptions options_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const std::string& template_name,
                            const LexOptions& options) {
  return Lexer(source, template_name, options).run();
}

}  // namespace seqit::chat::jinja
