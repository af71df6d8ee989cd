#include "chat/jinja.h"

#include <nlohmann/json.hpp>

#include "chat/jinja_interpreter.h"
#include "chat/jinja_parser.h"
#include "util/json_io.h"

namespace seqit::chat::jinja {

TemplateRaisedError::TemplateRaisedError(std::string message, int line, int column,
                                         std::string template_name)
    : Error(std::move(message)) {
  in_file(std::move(template_name));
  at_line(line, column);
}

Template Template::parse(std::string_view source, std::string name) {
  Template t;
  t.program_ = std::make_shared<const Program>(parse_template(source, name));
  return t;
}

StringData Template::render(const std::vector<std::pair<std::string, Value>>& variables,
                            const RenderSettings& settings) const {
  InterpreterSettings s;
  s.now_unix = settings.now_unix;
  Interpreter interpreter(*program_, s);
  return interpreter.render(variables);
}

const std::string& Template::name() const {
  return program_->name;
}

namespace {

template <typename F>
void visit_exprs(const Expr* e, F& f) {
  if (!e) return;
  f(*e);
  for (const auto& c : e->children) visit_exprs(c.get(), f);
  for (const auto& a : e->args) visit_exprs(a.get(), f);
  for (const auto& [k, v] : e->kwargs) visit_exprs(v.get(), f);
  visit_exprs(e->star_args.get(), f);
  visit_exprs(e->star_kwargs.get(), f);
}

template <typename S, typename F>
void visit_body(const Body& body, S& on_stmt, F& on_expr) {
  for (const auto& s : body) {
    on_stmt(*s);
    visit_exprs(s->expr.get(), on_expr);
    visit_exprs(s->target.get(), on_expr);
    visit_exprs(s->filter.get(), on_expr);
    for (const auto& p : s->params) visit_exprs(p.default_value.get(), on_expr);
    for (const auto& [t, v] : s->assignments) visit_exprs(v.get(), on_expr);
    visit_body(s->body, on_stmt, on_expr);
    visit_body(s->else_body, on_stmt, on_expr);
  }
}

}  // namespace

bool Template::has_generation_blocks() const {
  bool found = false;
  auto on_stmt = [&](const Stmt& s) { found |= s.kind == Stmt::Kind::Generation; };
  auto on_expr = [](const Expr&) {};
  visit_body(program_->body, on_stmt, on_expr);
  return found;
}

std::vector<std::string> Template::unknown_filters_and_tests() const {
  std::vector<std::string> unknown;
  auto add = [&](std::string name) {
    if (std::find(unknown.begin(), unknown.end(), name) == unknown.end())
      unknown.push_back(std::move(name));
  };
  auto on_stmt = [](const Stmt&) {};
  auto on_expr = [&](const Expr& e) {
    if (e.kind == Expr::Kind::Filter && !find_filter(e.name)) add("filter '" + e.name + "'");
    if (e.kind == Expr::Kind::Test && !find_test(e.name)) add("test '" + e.name + "'");
  };
  visit_body(program_->body, on_stmt, on_expr);
  return unknown;
}

namespace {

template <typename Json>
Value convert(const Json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value::none();
    case nlohmann::json::value_t::boolean:
      return Value(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned:
      return Value(int64_t(j.template get<uint64_t>()));
    case nlohmann::json::value_t::number_float:
      return Value(j.template get<double>());
    case nlohmann::json::value_t::string:
      return Value(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(convert(x));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      std::vector<std::pair<Value, Value>> items;
      items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it)
        items.emplace_back(Value(it.key()), convert(it.value()));
      return Value::dict(std::move(items));
    }
    default:
      return Value::none();
  }
}

}  // namespace

Value from_json(const nlohmann::json& j) {
  return convert(j);
}
Value from_json(const nlohmann::ordered_json& j) {
  return convert(j);
}

Value parse_json_value(std::string_view text, const std::string& source_name) {
  // convert() recurses once per level: deeper JSON gets parse_json's positioned depth error.
  if (json_too_deep(text)) parse_json(text, source_name);
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // a parse error, or a number out of range
    // Re-parse with the util reader for a positioned error message.
    parse_json(text, source_name);
    throw Error(clean_json_error(e.what())).in_file(source_name);
  }
  return convert(j);
}

}  // namespace seqit::chat::jinja
