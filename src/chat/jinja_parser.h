// Parser: tokens -> Program, following jinja2's grammar and operator precedence:
//   conditional (a if b else c) < or < and < not < comparisons (== != < <= > >= in, not in;
//   chained) < + - < ~ < * / // % < ** < unary - + < postfix (.attr [item] (call)) and
//   filters/tests (| f, is t), which bind to the unary operand.
#pragma once

#include <string>
#include <string_view>

#include "chat/jinja_ast.h"
#include "chat/jinja_lexer.h"

namespace seqit::chat::jinja {

// Parses a whole template. Syntax errors throw seqit::Error naming the template, line and column.
Program parse_template(std::string_view source, const std::string& template_name,
                       const LexOptions& options = {});

}  // namespace seqit::chat::jinja
