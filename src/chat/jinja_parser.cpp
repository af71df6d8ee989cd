#include "chat/jinja_parser.h"

#include <algorithm>
#include <initializer_list>

#include "chat/jinja_interpreter.h"
#include "util/error.h"

namespace seqit::chat::jinja {

const char* op_text(Op op) {
  switch (op) {
    case Op::Add:
      return "+";
    case Op::Sub:
      return "-";
    case Op::Mul:
      return "*";
    case Op::Div:
      return "/";
    case Op::FloorDiv:
      return "//";
    case Op::Mod:
      return "%";
    case Op::Pow:
      return "**";
    case Op::And:
      return "and";
    case Op::Or:
      return "or";
    case Op::Not:
      return "not";
    case Op::Neg:
      return "-";
    case Op::Pos:
      return "+";
    case Op::Eq:
      return "==";
    case Op::Ne:
      return "!=";
    case Op::Lt:
      return "<";
    case Op::Le:
      return "<=";
    case Op::Gt:
      return ">";
    case Op::Ge:
      return ">=";
    case Op::In:
      return "in";
    case Op::NotIn:
      return "not in";
    case Op::None:
      break;
  }
  return "?";
}

Op binary_op(std::string_view t) {
  if (t == "+") return Op::Add;
  if (t == "-") return Op::Sub;
  if (t == "*") return Op::Mul;
  if (t == "/") return Op::Div;
  if (t == "//") return Op::FloorDiv;
  if (t == "%") return Op::Mod;
  if (t == "**") return Op::Pow;
  if (t == "and") return Op::And;
  if (t == "or") return Op::Or;
  return Op::None;
}

Op compare_op(std::string_view t) {
  if (t == "==") return Op::Eq;
  if (t == "!=") return Op::Ne;
  if (t == "<") return Op::Lt;
  if (t == "<=") return Op::Le;
  if (t == ">") return Op::Gt;
  if (t == ">=") return Op::Ge;
  if (t == "in") return Op::In;
  if (t == "not in") return Op::NotIn;
  return Op::None;
}

namespace {

std::string describe(const Token& t) {
  switch (t.type) {
    case TokenType::Text:
      return "template text";
    case TokenType::VariableBegin:
      return "'{{'";
    case TokenType::VariableEnd:
      return "'}}'";
    case TokenType::BlockBegin:
      return "'{%'";
    case TokenType::BlockEnd:
      return "'%}'";
    case TokenType::Name:
      return "'" + t.value + "'";
    case TokenType::String:
      return "string literal";
    case TokenType::Integer:
    case TokenType::Float:
      return "number " + t.value;
    case TokenType::Operator:
      return "'" + t.value + "'";
    case TokenType::End:
      return "end of template";
  }
  return "token";
}

// Does any expression or statement in `body` read the variable `name`?
bool expr_references(const Expr* e, std::string_view name);
bool body_references(const Body& body, std::string_view name);

bool expr_references(const Expr* e, std::string_view name) {
  if (!e) return false;
  if (e->kind == Expr::Kind::Name && e->name == name) return true;
  for (const auto& c : e->children) {
    if (expr_references(c.get(), name)) return true;
  }
  for (const auto& a : e->args) {
    if (expr_references(a.get(), name)) return true;
  }
  for (const auto& [k, v] : e->kwargs) {
    if (expr_references(v.get(), name)) return true;
  }
  return expr_references(e->star_args.get(), name) || expr_references(e->star_kwargs.get(), name);
}

bool body_references(const Body& body, std::string_view name) {
  for (const auto& s : body) {
    if (expr_references(s->expr.get(), name) || expr_references(s->filter.get(), name) ||
        body_references(s->body, name) || body_references(s->else_body, name))
      return true;
    // A nested macro's own parameters are its own; jinja2 still counts the reference, as we do.
    for (const auto& p : s->params) {
      if (expr_references(p.default_value.get(), name)) return true;
    }
    for (const auto& [t, v] : s->assignments) {
      if (expr_references(v.get(), name)) return true;
    }
  }
  return false;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const std::string& name)
      : toks_(std::move(tokens)), name_(name) {}

  Program parse() {
    Program program;
    program.name = name_;
    program.body = subparse({});
    if (peek().type != TokenType::End) fail(peek(), "unexpected " + describe(peek()));
    return program;
  }

 private:
  // ---- token helpers
  const Token& peek(size_t ahead = 0) const {
    return toks_[std::min(pos_ + ahead, toks_.size() - 1)];
  }
  const Token& next() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool is_op(std::string_view op, size_t ahead = 0) const {
    const Token& t = peek(ahead);
    return t.type == TokenType::Operator && t.value == op;
  }
  bool is_name(std::string_view n, size_t ahead = 0) const {
    const Token& t = peek(ahead);
    return t.type == TokenType::Name && t.value == n;
  }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  [[noreturn]] void fail(const Token& at, const std::string& message) const {
    throw Error(message).in_file(name_).at_line(at.line, at.column);
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) fail(peek(), "expected '" + std::string(op) + "', got " + describe(peek()));
  }
  const Token& expect_name() {
    if (peek().type != TokenType::Name) fail(peek(), "expected a name, got " + describe(peek()));
    return next();
  }
  void expect_block_end() {
    if (peek().type != TokenType::BlockEnd) {
      fail(peek(), "expected end of statement block '%}', got " + describe(peek()));
    }
    next();
  }
  void expect_end_tag(const char* tag) {
    // Called with the stream at the tag name after subparse() stopped on it.
    if (!skip_name(tag)) fail(peek(), std::string("expected '") + tag + "'");
    expect_block_end();
  }

  // ---- statements

  // Parses until a block tag whose name is one of `end_tags` (left unconsumed, stream at its
  // name) or the end of the template (an error when end_tags is not empty).
  Body subparse(std::initializer_list<const char*> end_tags, const Token* opener = nullptr,
                const char* opener_name = nullptr) {
    Body body;
    while (true) {
      const Token& t = peek();
      switch (t.type) {
        case TokenType::End:
          if (end_tags.size() == 0) return body;
          {
            std::string wanted;
            for (const char* e : end_tags)
              wanted += (wanted.empty() ? "'" : " or '") + std::string(e) + "'";
            fail(opener ? *opener : t, std::string("unexpected end of template: '") + opener_name +
                                           "' block is never closed (looking for " + wanted + ")");
          }
        case TokenType::Text: {
          auto s = std::make_unique<Stmt>(Stmt::Kind::Text, t.line, t.column);
          s->text = t.value;
          next();
          body.push_back(std::move(s));
          break;
        }
        case TokenType::VariableBegin: {
          auto s = std::make_unique<Stmt>(Stmt::Kind::Output, t.line, t.column);
          next();
          s->expr = parse_tuple(true, false);
          if (peek().type != TokenType::VariableEnd) {
            fail(peek(), "expected end of print statement '}}', got " + describe(peek()));
          }
          next();
          body.push_back(std::move(s));
          break;
        }
        case TokenType::BlockBegin: {
          const Token& tag = peek(1);
          if (tag.type == TokenType::Name) {
            for (const char* e : end_tags) {
              if (tag.value == e) {
                next();  // '{%'
                return body;
              }
            }
          }
          next();
          body.push_back(parse_statement(t));
          break;
        }
        default:
          fail(t, "unexpected " + describe(t));
      }
    }
  }

  StmtPtr parse_statement(const Token& open) {
    const Token& tag = peek();
    if (tag.type != TokenType::Name)
      fail(tag, "expected a statement name after '{%', got " + describe(tag));
    std::string name = tag.value;
    if (name == "if") return parse_if(open);
    if (name == "for") return parse_for(open);
    if (name == "set") return parse_set(open);
    if (name == "macro") return parse_macro(open);
    if (name == "call") return parse_call_block(open);
    if (name == "filter") return parse_filter_block(open);
    if (name == "with") return parse_with(open);
    if (name == "generation") {
      next();
      expect_block_end();
      auto s = std::make_unique<Stmt>(Stmt::Kind::Generation, open.line, open.column);
      s->body = subparse({"endgeneration"}, &open, "generation");
      expect_end_tag("endgeneration");
      return s;
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) fail(tag, "'" + name + "' outside of a loop");
      next();
      expect_block_end();
      return std::make_unique<Stmt>(name == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue,
                                    open.line, open.column);
    }
    static const char* const unsupported[] = {"include", "import", "from",
                                              "extends", "block",  "do"};
    for (const char* u : unsupported) {
      if (name == u) fail(tag, "the '" + name + "' tag is not available in chat templates");
    }
    fail(tag, "encountered unknown tag '" + name + "'");
  }

  StmtPtr parse_if(const Token& open) {
    next();  // if / elif
    auto s = std::make_unique<Stmt>(Stmt::Kind::If, open.line, open.column);
    s->expr = parse_tuple(false, false);
    expect_block_end();
    s->body = subparse({"elif", "else", "endif"}, &open, "if");
    if (is_name("elif")) {
      const Token& elif_open = toks_[pos_ - 1];
      s->else_body.push_back(parse_if(elif_open));
      return s;  // the nested if consumed the endif
    }
    if (skip_name("else")) {
      expect_block_end();
      s->else_body = subparse({"endif"}, &open, "if");
    }
    expect_end_tag("endif");
    return s;
  }

  StmtPtr parse_for(const Token& open) {
    next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::For, open.line, open.column);
    s->target = parse_assign_target(false, "in");
    if (!skip_name("in")) fail(peek(), "expected 'in' in for loop, got " + describe(peek()));
    s->expr = parse_tuple(false, false, "recursive");
    if (skip_name("if")) s->filter = parse_expression(true);
    if (skip_name("recursive")) s->recursive = true;
    expect_block_end();
    ++loop_depth_;
    s->body = subparse({"endfor", "else"}, &open, "for");
    --loop_depth_;
    if (skip_name("else")) {
      expect_block_end();
      s->else_body = subparse({"endfor"}, &open, "for");
    }
    expect_end_tag("endfor");
    return s;
  }

  StmtPtr parse_set(const Token& open) {
    next();
    ExprPtr target = parse_assign_target(true, nullptr);
    if (skip_op("=")) {
      auto s = std::make_unique<Stmt>(Stmt::Kind::Set, open.line, open.column);
      s->target = std::move(target);
      s->expr = parse_tuple(true, false);
      expect_block_end();
      return s;
    }
    if (target->kind != Expr::Kind::Name) fail(peek(), "expected '=' in set statement");
    auto s = std::make_unique<Stmt>(Stmt::Kind::SetBlock, open.line, open.column);
    s->text = target->name;
    s->target = std::move(target);
    if (is_op("|")) s->filter = parse_filter_chain(nullptr);
    expect_block_end();
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = subparse({"endset"}, &open, "set");
    loop_depth_ = saved;
    expect_end_tag("endset");
    return s;
  }

  std::vector<Parameter> parse_signature() {
    std::vector<Parameter> params;
    expect_op("(");
    while (!is_op(")")) {
      if (!params.empty()) expect_op(",");
      if (is_op(")")) break;
      const Token& n = expect_name();
      Parameter p;
      p.name = n.value;
      if (skip_op("=")) {
        p.default_value = parse_expression(true);
      } else if (!params.empty() && params.back().default_value) {
        fail(n, "non-default argument follows default argument");
      }
      params.push_back(std::move(p));
    }
    expect_op(")");
    return params;
  }

  void mark_special_names(Stmt& s) {
    s.uses_varargs = body_references(s.body, "varargs");
    s.uses_kwargs = body_references(s.body, "kwargs");
    s.uses_caller = body_references(s.body, "caller");
  }

  StmtPtr parse_macro(const Token& open) {
    next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::Macro, open.line, open.column);
    s->text = expect_name().value;
    s->params = parse_signature();
    expect_block_end();
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = subparse({"endmacro"}, &open, "macro");
    loop_depth_ = saved;
    expect_end_tag("endmacro");
    mark_special_names(*s);
    return s;
  }

  StmtPtr parse_call_block(const Token& open) {
    next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::CallBlock, open.line, open.column);
    if (is_op("(")) s->params = parse_signature();
    s->expr = parse_expression(true);
    if (s->expr->kind != Expr::Kind::Call) fail(open, "expected a call after 'call'");
    expect_block_end();
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = subparse({"endcall"}, &open, "call");
    loop_depth_ = saved;
    expect_end_tag("endcall");
    mark_special_names(*s);
    return s;
  }

  StmtPtr parse_filter_block(const Token& open) {
    next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::FilterBlock, open.line, open.column);
    s->filter = parse_filter_chain(nullptr, /*leading_pipe=*/false);
    expect_block_end();
    s->body = subparse({"endfilter"}, &open, "filter");
    expect_end_tag("endfilter");
    return s;
  }

  StmtPtr parse_with(const Token& open) {
    next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::With, open.line, open.column);
    while (peek().type != TokenType::BlockEnd) {
      if (!s->assignments.empty()) expect_op(",");
      ExprPtr target = parse_assign_target(false, nullptr);
      expect_op("=");
      s->assignments.emplace_back(std::move(target), parse_expression(true));
    }
    expect_block_end();
    s->body = subparse({"endwith"}, &open, "with");
    expect_end_tag("endwith");
    return s;
  }

  // Name, tuple of names (a, b), or with_namespace: name.attr.
  ExprPtr parse_assign_target(bool with_namespace, const char* end_name) {
    const Token& first = peek();
    if (with_namespace && first.type == TokenType::Name && is_op(".", 1) &&
        peek(2).type == TokenType::Name) {
      auto obj = std::make_unique<Expr>(Expr::Kind::Name, first.line, first.column);
      obj->name = next().value;
      next();  // '.'
      auto attr = std::make_unique<Expr>(Expr::Kind::Attribute, first.line, first.column);
      attr->name = next().value;
      attr->children.push_back(std::move(obj));
      return attr;
    }
    std::vector<ExprPtr> names;
    bool parens = skip_op("(");
    bool tuple = parens;
    while (true) {
      const Token& n = peek();
      if (n.type != TokenType::Name || (end_name && n.value == end_name)) {
        if (names.empty()) fail(n, "expected a variable name to assign to, got " + describe(n));
        break;
      }
      if (n.value == "true" || n.value == "false" || n.value == "none" || n.value == "True" ||
          n.value == "False" || n.value == "None") {
        fail(n, "cannot assign to '" + n.value + "'");
      }
      auto e = std::make_unique<Expr>(Expr::Kind::Name, n.line, n.column);
      e->name = next().value;
      names.push_back(std::move(e));
      if (!skip_op(",")) break;
      tuple = true;
    }
    if (parens) expect_op(")");
    if (!tuple) return std::move(names[0]);
    auto t = std::make_unique<Expr>(Expr::Kind::Tuple, first.line, first.column);
    t->children = std::move(names);
    return t;
  }

  // ---- expressions

  // Comma-separated expressions; one without a trailing comma is returned as itself.
  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens, const char* extra_end = nullptr) {
    const Token& first = peek();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) {
        if (!skip_op(",")) break;
        is_tuple = true;
      }
      const Token& t = peek();
      bool at_end = t.type == TokenType::VariableEnd || t.type == TokenType::BlockEnd ||
                    t.type == TokenType::End || is_op(")") ||
                    (extra_end && t.type == TokenType::Name && t.value == extra_end);
      if (at_end) {
        if (items.empty() && !explicit_parens)
          fail(t, "expected an expression, got " + describe(t));
        break;
      }
      items.push_back(parse_expression(with_condexpr));
    }
    if (!is_tuple && items.size() == 1) return std::move(items[0]);
    if (items.empty() && !explicit_parens) fail(first, "expected an expression");
    auto e = std::make_unique<Expr>(Expr::Kind::Tuple, first.line, first.column);
    e->children = std::move(items);
    return e;
  }

  // Expressions parse by recursion: 10,000 nested parentheses (or "not not ...", "- - ...") must be
  // an error naming the place, not a stack overflow. Real templates nest a few levels.
  static constexpr int kMaxExpressionDepth = 300;  // ~100 nested parentheses
  struct Nesting {
    int& depth;
    Nesting(Parser& p, const Token& at) : depth(p.expr_depth_) {
      if (++depth > kMaxExpressionDepth) {
        --depth;
        p.fail(at,
               "expression nested deeper than " + std::to_string(kMaxExpressionDepth) + " levels");
      }
    }
    ~Nesting() { --depth; }
  };

  ExprPtr parse_expression(bool with_condexpr) {
    Nesting nesting(*this, peek());
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    ExprPtr expr1 = parse_or();
    while (is_name("if")) {
      const Token& t = next();
      ExprPtr test = parse_or();
      ExprPtr otherwise;
      if (skip_name("else")) otherwise = parse_condexpr();
      auto e = std::make_unique<Expr>(Expr::Kind::Conditional, t.line, t.column);
      e->children.push_back(std::move(test));
      e->children.push_back(std::move(expr1));
      e->children.push_back(std::move(otherwise));
      expr1 = std::move(e);
    }
    return expr1;
  }

  ExprPtr binary(ExprPtr left, const Token& op, ExprPtr right) {
    auto e = std::make_unique<Expr>(Expr::Kind::Binary, op.line, op.column);
    e->name = op.value;
    e->op = binary_op(op.value);
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const Token& op = next();
      left = binary(std::move(left), op, parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const Token& op = next();
      left = binary(std::move(left), op, parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    Nesting nesting(*this, peek());
    if (is_name("not")) {
      const Token& t = next();
      auto e = std::make_unique<Expr>(Expr::Kind::Unary, t.line, t.column);
      e->name = "not";
      e->op = Op::Not;
      e->children.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& start = peek();
    ExprPtr expr = parse_math1();
    std::unique_ptr<Expr> cmp;
    while (true) {
      std::string op;
      const Token& t = peek();
      if (t.type == TokenType::Operator && (t.value == "==" || t.value == "!=" || t.value == "<" ||
                                            t.value == "<=" || t.value == ">" || t.value == ">=")) {
        op = t.value;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && is_name("in", 1)) {
        op = "not in";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = std::make_unique<Expr>(Expr::Kind::Compare, start.line, start.column);
        cmp->children.push_back(std::move(expr));
      }
      cmp->ops.push_back(compare_op(op));
      cmp->children.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(expr);
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& op = next();
      left = binary(std::move(left), op, parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    const Token& start = peek();
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto e = std::make_unique<Expr>(Expr::Kind::Concat, start.line, start.column);
    e->children.push_back(std::move(first));
    while (skip_op("~")) e->children.push_back(parse_math2());
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& op = next();
      left = binary(std::move(left), op, parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const Token& op = next();
      left = binary(std::move(left), op, parse_unary(true));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    Nesting nesting(*this, peek());
    const Token& t = peek();
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      next();
      node = std::make_unique<Expr>(Expr::Kind::Unary, t.line, t.column);
      node->name = t.value;
      node->op = t.value == "-" ? Op::Neg : Op::Pos;
      node->children.push_back(parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    switch (t.type) {
      case TokenType::Name: {
        next();
        if (t.value == "true" || t.value == "True") return literal(t, Value(true));
        if (t.value == "false" || t.value == "False") return literal(t, Value(false));
        if (t.value == "none" || t.value == "None") return literal(t, Value::none());
        auto e = std::make_unique<Expr>(Expr::Kind::Name, t.line, t.column);
        e->name = t.value;
        return e;
      }
      case TokenType::String: {
        std::string s = next().value;
        while (peek().type == TokenType::String) s += next().value;  // adjacent literals join
        return literal(t, Value(std::move(s)));
      }
      case TokenType::Integer:
        next();
        return literal(t, Value(t.int_value));
      case TokenType::Float:
        next();
        return literal(t, Value(t.float_value));
      case TokenType::Operator:
        if (t.value == "(") {
          next();
          ExprPtr e = parse_tuple(true, true);
          expect_op(")");
          return e;
        }
        if (t.value == "[") return parse_list();
        if (t.value == "{") return parse_dict();
        break;
      default:
        break;
    }
    fail(t, "unexpected " + describe(t));
  }

  ExprPtr literal(const Token& t, Value v) {
    auto e = std::make_unique<Expr>(Expr::Kind::Literal, t.line, t.column);
    e->value = std::move(v);
    return e;
  }

  ExprPtr parse_list() {
    const Token& open = next();
    auto e = std::make_unique<Expr>(Expr::Kind::List, open.line, open.column);
    while (!is_op("]")) {
      if (!e->children.empty()) expect_op(",");
      if (is_op("]")) break;
      e->children.push_back(parse_expression(true));
    }
    expect_op("]");
    return e;
  }

  ExprPtr parse_dict() {
    const Token& open = next();
    auto e = std::make_unique<Expr>(Expr::Kind::Dict, open.line, open.column);
    while (!is_op("}")) {
      if (!e->children.empty()) expect_op(",");
      if (is_op("}")) break;
      e->children.push_back(parse_expression(true));
      expect_op(":");
      e->children.push_back(parse_expression(true));
    }
    expect_op("}");
    return e;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filter_chain(std::move(node));
      } else if (is_name("is")) {
        node = parse_test(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const Token& t = next();
    if (t.value == ".") {
      const Token& attr = peek();
      if (attr.type == TokenType::Name) {
        next();
        auto e = std::make_unique<Expr>(Expr::Kind::Attribute, node->line, node->column);
        e->name = attr.value;
        e->children.push_back(std::move(node));
        return e;
      }
      if (attr.type == TokenType::Integer) {
        next();
        auto e = std::make_unique<Expr>(Expr::Kind::Item, node->line, node->column);
        e->children.push_back(std::move(node));
        e->children.push_back(literal(attr, Value(attr.int_value)));
        return e;
      }
      fail(attr, "expected an attribute name after '.', got " + describe(attr));
    }
    // '[' subscript: index, slice, or tuple of them
    std::vector<ExprPtr> parts;
    bool is_slice = false;
    ExprPtr slice_parts[3];
    while (!is_op("]")) {
      if (!parts.empty() || is_slice) {
        expect_op(",");
        if (is_slice) fail(peek(), "multi-dimensional slices are not supported");
      }
      // one subscript: expr, or [a]:[b][:[c]]
      ExprPtr first;
      if (!is_op(":")) first = parse_expression(true);
      if (is_op(":")) {
        is_slice = true;
        next();
        slice_parts[0] = std::move(first);
        if (!is_op("]") && !is_op(",") && !is_op(":")) slice_parts[1] = parse_expression(true);
        if (skip_op(":")) {
          if (!is_op("]") && !is_op(",")) slice_parts[2] = parse_expression(true);
        }
      } else {
        parts.push_back(std::move(first));
      }
    }
    expect_op("]");
    if (is_slice) {
      auto e = std::make_unique<Expr>(Expr::Kind::Slice, node->line, node->column);
      e->children.push_back(std::move(node));
      for (auto& p : slice_parts) e->children.push_back(std::move(p));
      return e;
    }
    if (parts.empty()) fail(t, "expected a subscript");
    auto e = std::make_unique<Expr>(Expr::Kind::Item, node->line, node->column);
    e->children.push_back(std::move(node));
    if (parts.size() == 1) {
      e->children.push_back(std::move(parts[0]));
    } else {
      auto tuple = std::make_unique<Expr>(Expr::Kind::Tuple, t.line, t.column);
      tuple->children = std::move(parts);
      e->children.push_back(std::move(tuple));
    }
    return e;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (skip_op("*")) {
        e.star_args = parse_expression(true);
      } else if (skip_op("**")) {
        e.star_kwargs = parse_expression(true);
      } else if (peek().type == TokenType::Name && is_op("=", 1)) {
        if (e.star_kwargs) fail(peek(), "invalid syntax for function call expression");
        std::string key = next().value;
        next();
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e.kwargs.empty() || e.star_args || e.star_kwargs) {
          fail(peek(), "positional argument follows keyword argument");
        }
        e.args.push_back(parse_expression(true));
      }
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr node) {
    auto e = std::make_unique<Expr>(Expr::Kind::Call, node->line, node->column);
    e->children.push_back(std::move(node));
    parse_call_args(*e);
    return e;
  }

  // `| f(args) | g ...` applied to `node` (null inside filter blocks / set blocks).
  ExprPtr parse_filter_chain(ExprPtr node, bool leading_pipe = true) {
    bool first = true;
    while (true) {
      if (!(first && !leading_pipe)) {
        if (!skip_op("|")) return node;
      }
      first = false;
      const Token& n = expect_name();
      std::string name = n.value;
      while (is_op(".") && peek(1).type == TokenType::Name) {
        next();
        name += "." + next().value;
      }
      auto e = std::make_unique<Expr>(Expr::Kind::Filter, n.line, n.column);
      e->name = std::move(name);
      e->filter_fn = find_filter(e->name);
      e->children.push_back(std::move(node));
      if (is_op("(")) parse_call_args(*e);
      node = std::move(e);
      if (!leading_pipe && !is_op("|")) return node;
      if (leading_pipe && !is_op("|")) return node;
    }
  }

  ExprPtr parse_test(ExprPtr node) {
    next();  // is
    bool negated = skip_name("not");
    const Token& n = expect_name();
    std::string name = n.value;
    while (is_op(".") && peek(1).type == TokenType::Name) {
      next();
      name += "." + next().value;
    }
    auto e = std::make_unique<Expr>(Expr::Kind::Test, n.line, n.column);
    e->name = std::move(name);
    e->test_fn = find_test(e->name);
    e->children.push_back(std::move(node));
    const Token& a = peek();
    if (is_op("(")) {
      parse_call_args(*e);
    } else if ((a.type == TokenType::Name || a.type == TokenType::String ||
                a.type == TokenType::Integer || a.type == TokenType::Float || is_op("[") ||
                is_op("{")) &&
               !(a.type == TokenType::Name &&
                 (a.value == "else" || a.value == "or" || a.value == "and"))) {
      if (is_name("is")) fail(a, "you cannot chain multiple tests with 'is'");
      e->args.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return e;
    auto neg = std::make_unique<Expr>(Expr::Kind::Unary, n.line, n.column);
    neg->name = "not";
    neg->op = Op::Not;
    neg->children.push_back(std::move(e));
    return neg;
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  const std::string& name_;
  int loop_depth_ = 0;
  int expr_depth_ = 0;  // parse_expression / parse_not / parse_unary recursion now
};

}  // namespace

Program parse_template(std::string_view source, const std::string& template_name,
                       const LexOptions& options) {
  return Parser(tokenize(source, template_name, options), template_name).parse();
}

}  // namespace seqit::chat::jinja
