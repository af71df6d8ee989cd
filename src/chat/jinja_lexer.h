// Jinja lexer with Python jinja2's whitespace rules as Hugging Face configures them for chat
// templates: trim_blocks=True (the first newline after a block or comment tag is dropped),
// lstrip_blocks=True (spaces and tabs before a block or comment tag at the start of a line are
// dropped), `{%-`/`-%}` strip all whitespace on that side, `{%+`/`+%}` disable lstrip/trim, one
// trailing newline of the template is dropped, and \r\n / \r become \n.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace seqit::chat::jinja {

enum class TokenType : uint8_t {
  Text,           // literal template text (raw blocks included)
  VariableBegin,  // {{
  VariableEnd,    // }}
  BlockBegin,     // {%
  BlockEnd,       // %}
  Name,
  String,    // value: the decoded string
  Integer,   // int_value
  Float,     // float_value
  Operator,  // value: + - * / // % ** ~ == != < <= > >= = . : | , ( ) [ ] { } ;
  End,       // end of the template
};

struct Token {
  TokenType type = TokenType::End;
  std::string value;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1, column = 1;  // 1-based position in the template (byte column)
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

// Throws seqit::Error with the template name, line and column on malformed input (unterminated
// tags, strings or comments, unexpected characters, unbalanced brackets).
std::vector<Token> tokenize(std::string_view source, const std::string& template_name,
                            const LexOptions& options = {});

// Python's str.isspace() for one code point.
bool python_isspace(char32_t cp);

}  // namespace seqit::chat::jinja
